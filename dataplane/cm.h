/* The cluster manager's master copy, on the main thread.
 *
 * For each cluster of a config it keeps the current tn_host_set: built at
 * once for STATIC clusters, from DNS for STRICT_DNS (every address of every
 * endpoint) and LOGICAL_DNS (the first address only), re-resolved every
 * dns_refresh_rate with getaddrinfo on libuv's thread pool, never on a loop.
 * It runs the active health checks, which set and clear
 * TN_HOST_FAILED_ACTIVE_HC on the shared hosts. Every new host set is handed
 * to `hosts_cb` (which forwards it to the workers by message). */
#ifndef TN_CM_H
#define TN_CM_H

#include <uv.h>

#include "dataplane/cluster.h"
#include "dataplane/config.h"
#include "dataplane/host.h"

struct tn_cm;

/* A new host set for cluster c; the callee takes its own reference if it
 * keeps the set. */
typedef void (*tn_cm_hosts_cb)(void *arg, const struct tn_cluster *c, struct tn_host_set *set);
/* Every cluster has its first host set (resolved, possibly empty when DNS
 * failed); called once. */
typedef void (*tn_cm_ready_cb)(void *arg);

/* Starts managing cfg's clusters on `loop` (the main loop). The callbacks run
 * on that loop; hosts_cb runs for every STATIC cluster before this returns.
 * NULL when out of memory. */
struct tn_cm *tn_cm_new(uv_loop_t *loop, struct tn_config *cfg, tn_cm_hosts_cb hosts_cb, tn_cm_ready_cb ready_cb,
                        void *arg);

/* The current host set of a cluster (no reference taken), NULL if unknown. */
struct tn_host_set *tn_cm_hosts(struct tn_cm *cm, const char *cluster);

/* Stops resolution and health checks, closes every handle and frees cm once
 * they are closed (the loop must keep running until then). */
void tn_cm_close(struct tn_cm *cm);

#endif
