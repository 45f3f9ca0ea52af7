/* Compiled route tables (envoy.config.route.v3.RouteConfiguration).
 *
 * A route table is immutable once compiled and reference-counted: a request
 * holds a reference for its whole life, so a new table from RDS can replace
 * the old one while requests finish on the table they started with. Virtual
 * hosts are indexed for Envoy's domain search order: exact, then longest
 * "*.suffix"/"-suffix" wildcard, then longest "prefix.*" wildcard, then "*". */
#ifndef TN_ROUTE_H
#define TN_ROUTE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/core/err.h"
#include "dataplane/http/http.h"
#include "dataplane/core/matcher.h"
#include "dataplane/core/pool.h"
#include "envoy/config/route/v3/route.pb-c.h"

typedef Envoy__Config__Route__V3__RouteConfiguration tn_pb_route_config;

struct tn_filter_factory;

/* One typed_per_filter_config entry of a virtual host or route, compiled by
 * its filter's create_route_config; freed with the route table. */
struct tn_route_filter_config {
    const char *name; /* the map key: the filter's name */
    const struct tn_filter_factory *factory;
    void *config;
};

struct tn_header_op {
    const char *key;
    const char *value;
    int action; /* HeaderValueOption.HeaderAppendAction: APPEND_IF_EXISTS_OR_ADD = 0, ADD_IF_ABSENT,
                   OVERWRITE_IF_EXISTS_OR_ADD, OVERWRITE_IF_EXISTS (the legacy `append` maps to 0 or 2) */
    bool keep_empty_value;
};

/* Request/response header mutations at one level (route config, vhost, route). */
struct tn_header_mutations {
    struct tn_header_op *req_add, *resp_add;
    size_t n_req_add, n_resp_add;
    const char **req_remove, **resp_remove;
    size_t n_req_remove, n_resp_remove;
};

struct tn_header_matcher {
    const char *name; /* lower case */
    struct tn_string_matcher m; /* kind PRESENT: presence only; RANGE: range_start..range_end */
    int64_t range_start, range_end;
    bool invert, treat_missing_as_empty, present;
};

/* Compiles an Envoy HeaderMatcher (route matches, access log and health
 * check filters) from pool: 0, or -1 with err set below the current path. */
int tn_header_matcher_compile(struct tn_pool *pool, const Envoy__Config__Route__V3__HeaderMatcher *pb,
                              struct tn_header_matcher *h, struct tn_err *err);

struct tn_query_matcher {
    const char *name;
    struct tn_string_matcher m; /* kind PRESENT: presence only */
};

struct tn_weighted_cluster {
    const char *name;
    uint32_t weight;
};

struct tn_retry_policy {
    uint32_t retry_on; /* TN_RETRY_ON_* bits */
    uint32_t num_retries;
    uint64_t per_try_timeout_ms; /* 0: none */
    uint32_t *retriable_status_codes;
    size_t n_retriable_status_codes;
    uint64_t back_off_base_ms, back_off_max_ms;
    bool set; /* a policy was configured at this level */
};

enum {
    TN_RETRY_ON_5XX = 1 << 0,
    TN_RETRY_ON_GATEWAY_ERROR = 1 << 1,
    TN_RETRY_ON_CONNECT_FAILURE = 1 << 2,
    TN_RETRY_ON_RESET = 1 << 3,
    TN_RETRY_ON_RETRIABLE_STATUS_CODES = 1 << 4,
    TN_RETRY_ON_RETRIABLE_4XX = 1 << 5,
    TN_RETRY_ON_REFUSED_STREAM = 1 << 6,
};

struct tn_mirror_policy {
    const char *cluster;        /* static cluster, or NULL */
    const char *cluster_header; /* lower case, or NULL */
    uint32_t numerator, denominator; /* runtime_fraction default_value; 100/100 when unset */
    bool disable_shadow_host_suffix_append;
};

enum tn_hash_kind {
    TN_HASH_HEADER = 0,
    TN_HASH_COOKIE,
    TN_HASH_SOURCE_IP,
    TN_HASH_QUERY_PARAMETER,
};

struct tn_hash_policy {
    enum tn_hash_kind kind;
    const char *name;
    bool terminal;
};

enum tn_route_kind {
    TN_ROUTE_CLUSTER = 0, /* RouteAction with cluster */
    TN_ROUTE_CLUSTER_HEADER,
    TN_ROUTE_WEIGHTED,
    TN_ROUTE_REDIRECT,
    TN_ROUTE_DIRECT,
};

enum tn_path_kind {
    TN_PATH_PREFIX = 0,
    TN_PATH_EXACT,
    TN_PATH_REGEX,
    TN_PATH_SEPARATED_PREFIX,
};

struct tn_route {
    const char *name;
    /* match */
    enum tn_path_kind path_kind;
    const char *path; /* PREFIX, EXACT, SEPARATED_PREFIX; REGEX: the literal text every match starts with */
    size_t path_len;
    struct pcre2_real_code_8 *path_re;
    bool case_sensitive;
    struct tn_header_matcher *headers;
    size_t n_headers;
    struct tn_query_matcher *queries;
    size_t n_queries;
    uint32_t fraction_num, fraction_den; /* runtime_fraction; 0/0 when unset */
    /* action */
    enum tn_route_kind kind;
    const char *cluster;        /* CLUSTER */
    const char *cluster_header; /* CLUSTER_HEADER, lower case */
    struct tn_weighted_cluster *weighted;
    size_t n_weighted;
    uint64_t total_weight;
    uint32_t cluster_not_found_code; /* 503 or 404 */
    const char *prefix_rewrite;
    struct pcre2_real_code_8 *regex_rewrite;
    const char *regex_substitution;
    const char *host_rewrite_literal;
    bool auto_host_rewrite;
    uint64_t timeout_ms;      /* 15 s by default; 0 disables */
    uint64_t idle_timeout_ms; /* 0: none */
    struct tn_retry_policy retry;
    struct tn_mirror_policy *mirrors; /* the effective list: the route's, else the vhost's */
    size_t n_mirrors;
    bool mirrors_from_vhost;
    struct tn_hash_policy *hashes;
    size_t n_hashes;
    struct tn_upgrade *upgrades; /* upgrade_configs: over the connection manager's */
    size_t n_upgrades;
    /* redirect */
    const char *redirect_scheme, *redirect_host, *redirect_path, *redirect_prefix;
    uint32_t redirect_port, redirect_code;
    bool strip_query;
    /* direct response */
    uint32_t direct_status;
    const char *direct_body;
    size_t direct_body_len;
    struct tn_header_mutations headers_mut;
    struct tn_route_filter_config *filter_configs; /* typed_per_filter_config */
    size_t n_filter_configs;
};

enum tn_domain_kind {
    TN_DOMAIN_EXACT = 0,
    TN_DOMAIN_SUFFIX, /* "*.example.com" or "*-bar.com": the part after '*' */
    TN_DOMAIN_PREFIX, /* "example.*": the part before '*' */
    TN_DOMAIN_ANY,
};

/* What route matching reads first about a route, packed so that scanning a
 * virtual host walks contiguous memory and rejects most routes without
 * touching them: the path's first 8 bytes (lower case when matching ignores
 * case) against the request's, under a mask of min(path_len, 8) bytes. */
struct tn_route_key {
    uint64_t head, mask; /* bytes as memcpy'd from the path (a regex's literal prefix) */
    uint32_t path_len;
    uint8_t path_kind; /* enum tn_path_kind */
    bool icase;
    const struct tn_route *route;
};

struct tn_vhost {
    const char *name;
    struct tn_route *routes;
    struct tn_route_key *keys; /* one per route, same order; filled by tn_route_table_compile */
    size_t n_routes;
    struct tn_header_mutations headers_mut;
    struct tn_retry_policy retry;
    struct tn_mirror_policy *mirrors; /* request_mirror_policies of the vhost itself */
    size_t n_mirrors;
    struct tn_route_filter_config *filter_configs; /* typed_per_filter_config */
    size_t n_filter_configs;
};

struct tn_domain {
    enum tn_domain_kind kind;
    const char *text; /* lower case: the whole domain, or the suffix/prefix part */
    size_t len;
    struct tn_vhost *vhost;
};

struct tn_route_table {
    atomic_uint refcnt; /* shared by the main thread and workers */
    struct tn_pool pool;
    const char *name;
    struct tn_vhost *vhosts;
    size_t n_vhosts;
    /* Domains sorted for lookup: exact ones by text, wildcards by length
     * (longest first); `any` is the "*" virtual host or NULL. */
    struct tn_domain *exact, *suffix, *prefix;
    size_t n_exact, n_suffix, n_prefix;
    struct tn_vhost *any;
    const char **internal_only_headers;
    size_t n_internal_only_headers;
    struct tn_header_mutations headers_mut;
    bool validate_clusters;
};

/* Compiles one RouteConfiguration. err's path should point at it on entry.
 * Returns a table with one reference, or NULL with err set. */
struct tn_route_table *tn_route_table_compile(const tn_pb_route_config *pb, struct tn_err *err);

struct tn_route_table *tn_route_table_ref(struct tn_route_table *t);
void tn_route_table_unref(struct tn_route_table *t);

/* The virtual host for a Host/:authority value as the client sent it, port
 * included (as Envoy matches it), compared without regard to case; NULL when
 * no domain matches. */
const struct tn_vhost *tn_route_table_vhost(const struct tn_route_table *t, const char *host, size_t len);

/* The per-route config filter f was given for a request on route r of
 * virtual host vh: the route's, else the virtual host's (the most specific
 * wins, as Envoy), else NULL. r or vh may be NULL. The config is what f's
 * create_route_config returned; it lives as long as the route table. */
const void *tn_route_filter_config(const struct tn_route *r, const struct tn_vhost *vh,
                                   const struct tn_filter_factory *f);

/* Calls fn for every cluster name the table names statically (route
 * clusters, weighted clusters, mirror clusters) with its config path; stops
 * at and returns the first non-zero return. */
int tn_route_table_each_cluster(const struct tn_route_table *t, int (*fn)(void *arg, const char *cluster,
                                                                          const char *where),
                                void *arg);

#endif
