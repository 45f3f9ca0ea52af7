/* envoy.filters.http.cache: the response cache filter.
 *
 * Its configuration comes from Envoy's CacheConfig
 * (envoy.extensions.filters.http.cache.v3.CacheConfig) or from tern's
 * superset (tern.extensions.filters.http.cache.v1.CacheConfig); both compile
 * into struct tn_cache_config (cache_config.c). Per-route overrides come from
 * tern.extensions.filters.http.cache.v1.CachePerRoute in a route's or a
 * virtual host's typed_per_filter_config (struct tn_cache_per_route). The
 * storage is store.c, the HTTP caching rules policy.c, the filter filter.c. */
#ifndef TN_CACHE_H
#define TN_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/core/matcher.h"
#include "dataplane/core/pool.h"
#include "filters/filter.h"

/* Durations are milliseconds; TN_CACHE_UNSET marks an optional one left out. */
#define TN_CACHE_UNSET UINT64_MAX

/* http.<stat_prefix>.cache.* */
#define TN_CACHE_STATS(X)                                                                                              \
    X(hit, COUNTER)                                                                                                    \
    X(miss, COUNTER)                                                                                                   \
    X(refresh, COUNTER)                                                                                                \
    X(bypass, COUNTER)                                                                                                 \
    X(insert, COUNTER)                                                                                                 \
    X(insert_failed, COUNTER)                                                                                          \
    X(purge, COUNTER)                                                                                                  \
    X(coalesced, COUNTER)                                                                                              \
    X(stale_served, COUNTER)                                                                                           \
    X(eviction, COUNTER)                                                                                               \
    X(bytes, GAUGE)                                                                                                    \
    X(entries, GAUGE)

struct tn_cache_stats {
#define TN_X(name, kind) uint32_t name;
    TN_CACHE_STATS(TN_X)
#undef TN_X
};

struct tn_cache_store;

struct tn_cache_config {
    struct tn_pool pool;
    bool tern;     /* configured with tern's CacheConfig (else Envoy's) */
    bool disabled; /* Envoy's `disabled` */

    /* storage */
    const char *name;        /* tern: sent as X-Served-By when set; NULL otherwise */
    uint64_t max_size_bytes; /* whole cache (default 256 MiB) */
    uint64_t max_entry_bytes; /* larger responses pass uncached (default 1 MiB;
                                 Envoy's max_body_bytes when set, else 1 MiB too) */

    /* freshness */
    uint64_t default_ttl_ms;  /* when the origin gives none; TN_CACHE_UNSET: not cached */
    uint64_t ttl_override_ms; /* replaces the origin's freshness; TN_CACHE_UNSET: none */
    bool only_if_origin_cacheable; /* store only responses with explicit freshness
                                      (max-age, s-maxage, Expires); default off */
    uint64_t stale_ttl_ms; /* how long an expired entry is kept for revalidation
                              and stale serving; 0: dropped when it expires */
    bool keep_stale;       /* Envoy's config: expired entries are kept (until
                              evicted for room) for revalidation, not for stale
                              serving; a per-route stale_ttl still wins */
    bool ignore_cache_control; /* Kong's cache_control: false: ignore the origin's
                                  Cache-Control/Expires, use default_ttl */
    bool ignore_request_cache_control; /* Envoy's ignore_request_cache_control_header */
    bool ignore_client_refresh;           /* a client's no-cache / max-age=0 does not
                                             force an upstream refresh */
    bool ignore_client_refresh_immutable; /* ... only for `immutable` responses */
    const char **targeted_cc; /* targeted cache-control fields (RFC 9213), lower
                                 case, most specific first; default
                                 cdn-cache-control; none: only Cache-Control */
    size_t n_targeted_cc;

    /* what is cached */
    uint32_t *response_codes; /* default 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501
                                 (RFC 9110's heuristically cacheable, without 206) */
    size_t n_response_codes;
    const char **request_methods; /* upper case, GET or HEAD only; default GET, HEAD */
    size_t n_request_methods;
    const char **content_types; /* media types, lower case, compared without
                                   parameters; none: any */
    size_t n_content_types;
    struct tn_string_matcher *allowed_vary; /* headers a response may Vary on (Envoy) */
    size_t n_allowed_vary;
    const char **vary_headers; /* tern: request headers (lower case) that go into the key */
    size_t n_vary_headers;
    const char **vary_query_params; /* tern: query parameters in the key; none: the
                                       whole query as sent */
    size_t n_vary_query_params;

    /* purge */
    bool purge;          /* the PURGE method is handled here (tern's Purge message present) */
    const char *purge_key; /* X-Purge-Key must equal it; "" or NULL: no header needed
                              (NULL exactly when !purge) */
    bool purge_allow_wildcard; /* PURGE /prefix** purges the prefix */

    /* response headers: X-Cache-Status, X-Cache-Key, X-Cache-Hits (on with
     * tern's config, off with Envoy's, which sends Age only) */
    bool status_headers;

    /* at run time: the store named `name` (the default store when unnamed),
     * shared by every filter naming it, and this connection manager's stats */
    struct tn_cache_store *store;
    struct tn_cache_stats stats;
    bool stats_registered;
};

/* tern.extensions.filters.http.cache.v1.CachePerRoute, compiled; the filter
 * finds it with tn_route_filter_config(route, vhost, &tn_cache_factory). */
struct tn_cache_per_route {
    bool disabled;
    uint64_t default_ttl_ms;  /* TN_CACHE_UNSET: the filter's */
    uint64_t ttl_override_ms; /* TN_CACHE_UNSET: the filter's */
    uint64_t stale_ttl_ms;    /* TN_CACHE_UNSET: the filter's */
};

extern const struct tn_filter_factory tn_cache_factory;

#endif
