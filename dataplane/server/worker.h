/* A worker thread: one uv loop with its own listener sockets, downstream
 * connections, upstream pools and timers. Nothing here is shared with other
 * threads except through the mailbox (config, host sets, drain) and the
 * atomics of hosts and clusters. Filters keep per-worker state in a slot
 * each (filter_state, by registry index) and run per-worker hooks
 * (filters/filter.h); the worker names no filter. */
#ifndef TN_WORKER_H
#define TN_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "dataplane/server/config.h"
#include "dataplane/upstream/host.h"
#include "dataplane/upstream/lb.h"
#include "dataplane/core/outq.h"
#include "dataplane/stats/stats.h"
#include "dataplane/core/timer.h"
#include "filters/filter.h"

struct tn_hpool;
struct tn_alog_writer;
struct tn_server;

/* A cluster as one worker sees it. It lives while the worker's map, a
 * pool of it or a request in flight on it holds a reference (worker-local
 * counts: no atomics), so a cluster removed by CDS stays for the requests
 * already using it. */
struct tn_wcluster {
    struct tn_cluster *c;      /* reference */
    struct tn_host_set *hosts; /* reference; NULL until the first set arrives, and once removed */
    struct tn_lb_state lb;
    struct tn_hpool **pools; /* pools[i] serves hosts->hosts[i] */
    struct tn_worker *w;
    unsigned refs;
};

static inline void tn_wcluster_ref(struct tn_wcluster *wc)
{
    wc->refs++;
}

/* Drops a reference; the last one frees the cluster's worker state. */
void tn_wcluster_unref(struct tn_wcluster *wc);

struct tn_wlistener {
    uv_tcp_t tcp;
    struct tn_listener *l; /* reference */
    struct tn_worker *w;
    bool open;
};

struct tn_msg;

struct tn_worker {
    unsigned id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t async;
    uv_mutex_t mu;
    struct tn_msg *inbox, *inbox_tail;
    struct tn_timers timers;
    struct tn_outq_flusher flusher;
    int64_t wall_offset_ms; /* wall clock ms minus uv_now, refreshed with the date */
    struct tn_config *cfg; /* reference */
    struct tn_wlistener **listeners; /* static ones first, then those from LDS */
    size_t n_listeners, cap_listeners;
    struct tn_route_table **rds; /* the current table of each route configuration from RDS, NULL until it comes */
    size_t n_rds;
    struct tn_wcluster **clusters; /* the clusters in use, sorted by name */
    size_t n_clusters, cap_clusters;
    struct tn_alog_writer *alog;
    struct tn_server *server;
    uint64_t rng;
    uint64_t next_conn_id;
    char date[40]; /* "Sun, 22 Nov 2026 10:00:00 GMT" */
    uint64_t date_sec;
    unsigned n_conns;
    struct tn_dconn *conns; /* every open downstream connection (drain walks them) */
    struct tn_stream *free_streams; /* streams for reuse (dataplane/http/conn_manager.c) */
    unsigned n_free_streams;
    unsigned n_freed;   /* connections and streams freed since the last malloc_trim */
    uint64_t last_trim; /* uv_now of the last malloc_trim */
    struct tn_timer trim_timer; /* a trim that was due too soon after the last */
    bool draining;
    _Atomic uint64_t *shard; /* this worker's stats values (dataplane/stats/stats.h) */
    uv_check_t quiescent;    /* once per loop iteration: filters' worker_quiescent hooks, free list trims */
    void *filter_state[TN_FILTER_FACTORIES_MAX]; /* by registry index: worker_state_size bytes, or NULL */
};

/* The pool of host h in wc's current host set, NULL when h is not in it. */
struct tn_hpool *tn_wcluster_pool(struct tn_wcluster *wc, struct tn_host *h);

/* The worker's view of a cluster by name, NULL when the config has none. */
struct tn_wcluster *tn_worker_cluster(struct tn_worker *w, const char *name);

/* Factory f's per-worker state on w (its worker_state_size zeroed bytes at
 * the start), NULL when it declares none. Worker thread. */
static inline void *tn_worker_filter_state(struct tn_worker *w, const struct tn_filter_factory *f)
{
    return w->filter_state[tn_filter_factory_index(f)];
}

/* A 64-bit random number from the worker's generator. */
uint64_t tn_worker_random(struct tn_worker *w);

/* The current Date header value (refreshed once a second). */
const char *tn_worker_date(struct tn_worker *w);

/* Wall-clock ms since the epoch, from the loop's cached time. */
static inline uint64_t tn_worker_wall_ms(struct tn_worker *w)
{
    return (uint64_t)((int64_t)uv_now(&w->loop) + w->wall_offset_ms);
}

/* Monotonic ms of the worker's loop. */
static inline uint64_t tn_worker_now(struct tn_worker *w)
{
    return uv_now(&w->loop);
}

/* Switches a worker's cluster to a new host set (taking over the caller's
 * reference); pools of hosts that stay are kept, the others retired. */
void tn__worker_set_hosts(struct tn_wcluster *wc, struct tn_host_set *set);

/* Wakes the worker's loop for one iteration (any thread). */
void tn__worker_wake(struct tn_worker *w);

/* A downstream connection closed (drain bookkeeping). */
void tn_worker_conn_closed(struct tn_worker *w);

#endif
