/* Shared by the cache's files: the filter's runtime config (the compiled
 * config, its store and its stats) and the per-route lookup. */
#ifndef TN_CACHE_INT_H
#define TN_CACHE_INT_H

#include "cache/cache.h"
#include "cache/store.h"
#include "dataplane/stats.h"

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

/* What the filter factory returns: one per HTTP connection manager. */
struct tn_cache_filter {
    struct tn_cache_config *cfg; /* owned */
    struct tn_cache_store *store;
    struct tn_cache_stats stats;
    bool stats_registered;
};

extern const struct tn_filter_ops tn_cache_ops;

/* The filter for a compiled config (taking it over): its store is the one
 * named cfg->name (the default store when unnamed). Main thread. NULL with
 * err set when out of memory. */
struct tn_cache_filter *tn_cache_filter_new(struct tn_cache_config *cfg, struct tn_err *err);
void tn_cache_filter_free(struct tn_cache_filter *f);

/* The factory's stats hooks (filters/filter.h). */
int tn_cache_register_stats(void *config, struct tn_stats *st, const char *stat_prefix);
void tn_cache_refresh_stats(void *config, _Atomic uint64_t *main_shard);

/* The per-route override for the stream's route, NULL when none. */
struct tn_stream;
const struct tn_cache_per_route *tn_cache_route_config(struct tn_stream *s, const struct tn_cache_filter *f);

#endif
