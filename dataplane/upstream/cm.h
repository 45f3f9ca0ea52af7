/* The cluster manager's master copy, on the main thread.
 *
 * For each cluster of a config it keeps the current tn_host_set: built at
 * once for STATIC clusters, from DNS for STRICT_DNS (every address of every
 * endpoint) and LOGICAL_DNS (the first address only), re-resolved every
 * dns_refresh_rate with getaddrinfo on libuv's thread pool, never on a loop.
 * It runs the active health checks, which set and clear
 * TN_HOST_FAILED_ACTIVE_HC on the shared hosts. Every new host set is handed
 * to `hosts_cb` (which forwards it to the workers by message).
 *
 * When hosts_cb runs: STATIC and EDS clusters (EDS starts empty until xDS
 * fills it) inside tn_cm_new; DNS clusters once after their first round of
 * resolution, even when it failed and the set is empty, then only when a
 * refresh changes the addresses. A host whose address survives a refresh is
 * the same tn_host object, so its health, ejection state and pools survive.
 * A failed lookup logs a warning and keeps that endpoint's previous hosts.
 *
 * DNS: getaddrinfo reports no TTL, so respect_dns_ttl is ignored and
 * dns_refresh_rate always applies. dns_lookup_family: V4_ONLY and V6_ONLY ask
 * for that family only; AUTO keeps the IPv6 addresses if there are any, else
 * the IPv4 ones; V4_PREFERRED the other way round; ALL keeps both.
 *
 * Health checks (the first of a cluster's health_checks; Envoy accepts one):
 * hosts of a checked cluster start with TN_HOST_FAILED_ACTIVE_HC and
 * TN_HOST_PENDING_HC and are checked at once; one success makes a new host
 * healthy (Envoy's startup rule), later healthy_threshold consecutive
 * successes. An HTTP status outside the expected ranges marks the host
 * unhealthy at once, as Envoy does; connect failures, resets and timeouts
 * need unhealthy_threshold in a row. Later checks run every interval plus up
 * to 10% jitter, each on a new connection (Connection: close).
 * no_traffic_interval is not implemented: the main thread does not know
 * about traffic, so `interval` always applies.
 *
 * ready_cb runs (on a later loop iteration) when every cluster has had its
 * first resolution attempt and every host present then has had its first
 * health check, so a start with healthy origins does not answer 503s. */
#ifndef TN_CM_H
#define TN_CM_H

#include <uv.h>

#include "dataplane/upstream/cluster.h"
#include "dataplane/server/config.h"
#include "dataplane/upstream/host.h"

struct tn_cm;
struct tn_cm_stats;

/* A new host set for cluster c; the callee takes its own reference if it
 * keeps the set. */
typedef void (*tn_cm_hosts_cb)(void *arg, const struct tn_cluster *c, struct tn_host_set *set);
/* Every cluster has its first host set (resolved, possibly empty when DNS
 * failed); called once. */
typedef void (*tn_cm_ready_cb)(void *arg);

/* Starts managing cfg's clusters on `loop` (the main loop); cm takes its own
 * reference to cfg. The callbacks run on that loop; hosts_cb runs for every
 * STATIC and EDS cluster before this returns (either callback may be NULL).
 * NULL when out of memory, with nothing started. */
struct tn_cm *tn_cm_new(uv_loop_t *loop, struct tn_config *cfg, tn_cm_hosts_cb hosts_cb, tn_cm_ready_cb ready_cb,
                        void *arg);

/* EDS: an accepted ClusterLoadAssignment for the EDS cluster named
 * `cluster` becomes its host set (hosts whose address, weight and priority
 * stay are kept, with their pools and health); its first one ends the
 * cluster's warming. 0, or -1 when the cluster is unknown or not EDS, or out
 * of memory (nothing changed). */
int tn_cm_eds_update(struct tn_cm *cm, const char *cluster, const struct tn_endpoint_set *es);

/* EDS: an assignment for `cluster` was rejected (counted). */
void tn_cm_eds_rejected(struct tn_cm *cm, const char *cluster);

/* EDS: initial_fetch_timeout passed without an assignment: the cluster stops
 * holding readiness back and serves with what it has (nothing). */
void tn_cm_eds_timeout(struct tn_cm *cm, const char *cluster);

/* A cluster added after the first readiness (tn_cm_add) is ready: resolved
 * and first health-checked, or given up waiting for. */
typedef void (*tn_cm_warm_cb)(void *arg, struct tn_cluster *c);
void tn_cm_set_warm_cb(struct tn_cm *cm, tn_cm_warm_cb cb);

/* CDS: starts managing c (taking a reference), replacing a cluster of the
 * same name; it warms like a configured one (hosts_cb with its sets, then
 * warm_cb, or ready_cb when the first readiness has not fired yet). 0, or -1
 * when out of memory or closing. */
int tn_cm_add(struct tn_cm *cm, struct tn_cluster *c);

/* CDS: stops managing the cluster `name` (DNS, health checks); 0, or -1 when
 * unknown. Host sets handed out stay valid for their holders. */
int tn_cm_remove(struct tn_cm *cm, const char *name);

/* The clusters managed, in no particular order: cluster i, its host set, its
 * readiness and counters (no references taken; valid until the next add,
 * remove or return to the loop). */
size_t tn_cm_count(const struct tn_cm *cm);
struct tn_cluster *tn_cm_at(const struct tn_cm *cm, size_t i, struct tn_host_set **set, bool *ready,
                            const struct tn_cm_stats **stats);

/* Whether c is the cluster manager's cluster of its name and is ready. */
bool tn_cm_ready(const struct tn_cm *cm, const struct tn_cluster *c);

/* Clusters not ready yet. */
size_t tn_cm_warming(const struct tn_cm *cm);

/* The current host set of a cluster (no reference taken), NULL if unknown. */
struct tn_host_set *tn_cm_hosts(struct tn_cm *cm, const char *cluster);

/* Counters of one cluster, named after Envoy's cluster.<name>.update_* and
 * cluster.<name>.health_check.* stats. Main thread only. */
struct tn_cm_stats {
    uint64_t update_attempt;    /* DNS rounds started */
    uint64_t update_success;    /* rounds where every lookup succeeded */
    uint64_t update_failure;    /* rounds where a lookup failed */
    uint64_t update_no_rebuild; /* rounds that left the host set as it was */
    uint64_t update_rejected;   /* EDS assignments NACKed */
    uint64_t update_empty;      /* EDS assignments without endpoints */
    uint64_t hc_attempt;
    uint64_t hc_success;
    uint64_t hc_failure;         /* every failed check, network failures included */
    uint64_t hc_network_failure; /* connect failure, reset, timeout, bad response */
};

/* The counters of a cluster (owned by cm, valid until tn_cm_close), NULL if
 * unknown. */
const struct tn_cm_stats *tn_cm_stats(struct tn_cm *cm, const char *cluster);

/* Stops resolution and health checks, closes every handle and frees cm once
 * they are closed (the loop must keep running until then; a lookup already
 * running on the thread pool is waited for). Call once; no callback runs
 * after it, not even a ready_cb still due. Host sets handed out stay valid
 * for whoever holds a reference. */
void tn_cm_close(struct tn_cm *cm);

#endif
