/* The serving process: the main loop (cluster manager, signals) and the
 * workers, from start to drained exit; and the server-wide state filters
 * may read (tn_server_health_failing). */
#ifndef TN_SERVER_H
#define TN_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dataplane/server/config.h"

struct tn_server_options {
    unsigned concurrency;
    unsigned drain_time_s;
    const char *const *argv; /* for /server_info */
    int argc;
};

/* Serves cfg until SIGTERM/SIGINT and a drain (or a second signal). Takes a
 * reference on cfg for its own use. Returns the process exit code: 0 after a
 * drain, 1 when it could not start (a port in use, ...) with the reason
 * logged. */
int tn_server_run(struct tn_config *cfg, const struct tn_server_options *opts);

/* Whether the admin's POST /healthcheck/fail is in force (until
 * /healthcheck/ok): health check answers fail. Any thread, no lock. */
bool tn_server_health_failing(void);

/* --- worker side (worker.c) ------------------------------------------------ */

struct tn_worker;
struct tn_host_set;
struct tn_server;

/* Starts a worker thread serving cfg with listener sockets fds[i] (one per
 * cfg->listeners[i], already bound) and initial host sets sets[j] (one per
 * cfg->clusters[j], may be NULL). NULL on failure. */
/* A cluster and its current host set (either may be shared: references). */
struct tn__cluster_hosts {
    struct tn_cluster *c;
    struct tn_host_set *set; /* NULL: none yet */
};

struct tn_worker *tn__worker_start(struct tn_server *srv, unsigned id, struct tn_config *cfg, const int *fds,
                                   const struct tn__cluster_hosts *clusters, size_t n_clusters,
                                   struct tn_route_table *const *rds, size_t n_rds, _Atomic uint64_t *shard);
/* Messages to a worker (any thread). */
void tn__worker_post_hosts(struct tn_worker *w, struct tn_cluster *c, struct tn_host_set *set);
/* Clusters to start using (a cluster of the same name is replaced) and to
 * stop using (new requests to them get 503 NC); the message takes its own
 * references. */
void tn__worker_post_clusters(struct tn_worker *w, const struct tn__cluster_hosts *add, size_t n_add,
                              struct tn_cluster *const *remove, size_t n_remove);
/* A new table for cfg->rds_names[rds_index] (the message takes its own
 * reference; NULL: the configuration was removed). */
void tn__worker_post_routes(struct tn_worker *w, size_t rds_index, struct tn_route_table *t);
/* LDS: start accepting on l with socket fd (the message's to close), and/or
 * stop accepting on old and drain its connections; either may be NULL. */
void tn__worker_post_listener(struct tn_worker *w, struct tn_listener *l, int fd, struct tn_listener *old);
/* The drain time of l is over: close its remaining connections. */
void tn__worker_post_listener_close(struct tn_worker *w, struct tn_listener *l);
void tn__worker_post_drain(struct tn_worker *w);
void tn__worker_post_exit(struct tn_worker *w);
/* Waits for the thread and frees the worker. */
void tn__worker_join(struct tn_worker *w);
/* Called on a worker when it has drained (no connections left). */
void tn__server_worker_drained(struct tn_server *srv, unsigned id);

#endif
