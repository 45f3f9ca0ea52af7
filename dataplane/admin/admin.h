/* The admin listener (bootstrap admin.address), on the main thread: Envoy's
 * admin endpoints, paths, methods and formats. */
#ifndef TN_ADMIN_H
#define TN_ADMIN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "dataplane/upstream/cm.h"
#include "dataplane/server/config.h"
#include "dataplane/stats/stats.h"

/* What the admin asks of the server (main thread callbacks). */
struct tn_admin_ops {
    /* Envoy's server state: "LIVE", "DRAINING", "PRE_INITIALIZING", "INITIALIZING". */
    const char *(*state)(void *arg);
    /* POST /quitquitquit: exit now (after the response is written). */
    void (*quit)(void *arg);
    /* POST /drain_listeners (?graceful): stop accepting, drain connections. */
    void (*drain_listeners)(void *arg, bool graceful);
    /* POST /healthcheck/fail and /healthcheck/ok. */
    void (*healthcheck)(void *arg, bool fail);
    /* POST /reopen_logs and SIGUSR1. */
    void (*reopen_logs)(void *arg);
    /* Before /stats and /stats/prometheus are read: bring the main thread's
     * gauges up to date. May be NULL. */
    void (*refresh_stats)(void *arg);
    /* The control plane's subscriptions, for /config_dump's dynamic_* lists;
     * NULL (or a NULL callback) without ADS. */
    const struct tn_xds *(*xds)(void *arg);
};

/* What /server_info reports besides the config. */
struct tn_admin_info {
    const char *version;      /* TN_VERSION */
    uint64_t start_ms;        /* wall clock at start */
    unsigned concurrency;
    const char *const *argv;  /* the command line */
    int argc;
};

struct tn_admin;
struct tn_xds;

/* Binds cfg->admin_addr and serves on loop. NULL with the reason logged
 * when it cannot listen (the server then exits 1; the half-made listener is
 * freed by its close callback, so run the loop once before uv_loop_close).
 * stats, cm (may be NULL: clusters show no hosts), cfg, ops (may be NULL, as
 * may any callback in it: state then reads "LIVE") and info->argv stay owned
 * by the caller and must outlive the admin; *info is copied. Each connection
 * serves one request and is closed after the response (Connection: close).
 * ops->quit runs from the write callback of the /quitquitquit response, once
 * it is written, and may call tn_admin_close. */
struct tn_admin *tn_admin_start(uv_loop_t *loop, struct tn_config *cfg, struct tn_stats *stats, struct tn_cm *cm,
                                const struct tn_admin_ops *ops, void *arg, const struct tn_admin_info *info);

/* Closes the listener and every admin connection; frees when closed. */
void tn_admin_close(struct tn_admin *a);

#endif
