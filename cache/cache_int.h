/* Shared by the cache's files: the filter ops, the store attachment, the
 * stats, server and admin hooks its factory lists, and the per-route
 * lookup. */
#ifndef TN_CACHE_INT_H
#define TN_CACHE_INT_H

#include "cache/cache.h"
#include "cache/store.h"
#include "dataplane/admin/admin_handler.h"
#include "dataplane/stats/stats.h"

extern const struct tn_filter_ops tn_cache_ops;

/* Attaches a compiled config to its store (by name; the default store when
 * unnamed). Main thread. 0, or -1 with err set. */
int tn_cache_attach_store(struct tn_cache_config *cfg, struct tn_err *err);

/* The factory's stats hooks (filters/filter.h). */
int tn_cache_register_stats(void *config, struct tn_stats *st, const char *stat_prefix);
void tn_cache_refresh_stats(void *config, _Atomic uint64_t *main_shard);

/* The factory's server hooks (cache_server.c); filters/filter.h says when
 * each runs. Worker state: the worker's reader slot (an int). */
struct tn_worker;
void tn_cache_worker_start(struct tn_worker *w, void *state);
void tn_cache_worker_quiescent(struct tn_worker *w, void *state);
void tn_cache_worker_stop(struct tn_worker *w, void *state);
void tn_cache_main_start(const struct tn_filter_server *srv);
unsigned tn_cache_main_tick(void);
void tn_cache_main_stop(void);
void tn_cache_main_exit(void);

/* GET /cache, POST /purge, /proxy-cache[/<key>] (cache_admin.c), ended by
 * a NULL path. */
extern const struct tn_admin_endpoint tn_cache_admin_endpoints[];

/* The per-route override for the stream's route, NULL when none; *cluster
 * gets the route's cluster (NULL when it has none, or picks one per request). */
struct tn_stream;
const struct tn_cache_per_route *tn_cache_route_config(struct tn_stream *s, const struct tn_cache_config *f,
                                                       const char **cluster);

/* Starts a background refresh of `old` (stale-while-revalidate) to
 * `cluster` with the client's request headers; false when it cannot
 * (another refresh of the key runs, no host, too many in flight). */
bool tn_cache_refresh_start(struct tn_worker *w, const struct tn_cache_config *cfg, const struct tn_cache_per_route *pr,
                            const char *cluster, struct tn_cache_entry *old, const struct tn_header *req, size_t n_req);

#endif
