/* Load balancing: Envoy's lb_policy values over a tn_host_set.
 *
 * Runs on a worker with no lock: per-worker state (round-robin cursors, the
 * random generator) lives in tn_lb_state; shared tables (ring hash, maglev)
 * are built once per host set by tn_lb_prepare and only read. Priorities are
 * Envoy's: the lowest priority level with healthy hosts takes the traffic
 * (with the 1.4 overprovisioning factor spilling load to the next level), and
 * below the 50 % panic threshold a level balances across all its hosts. */
#ifndef TN_LB_H
#define TN_LB_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/upstream/host.h"

struct tn_lb_state {
    uint64_t rng;                     /* xorshift state; seed with tn_lb_state_init */
    uint64_t rr;                      /* round-robin cursor (equal weights) */
    const struct tn_host_set *rr_set; /* set the weighted schedule below was built for */
    /* Smooth weighted round-robin state for rr_set (ROUND_ROBIN and LEAST_REQUEST
     * with unequal weights), owned; rebuilt when the set changes. */
    void *rr_sched;
};

/* What the request offers for choosing. */
struct tn_lb_context {
    bool has_hash; /* the route's hash_policy produced a hash */
    uint64_t hash;
    const struct tn_host *exclude; /* a host to avoid if another healthy one exists (retries), or NULL */
};

/* One state per worker (never shared between threads); a zero seed picks a
 * fixed one. */
void tn_lb_state_init(struct tn_lb_state *st, uint64_t seed);
/* Frees the weighted schedule; st may be initialised again. */
void tn_lb_state_dispose(struct tn_lb_state *st);

/* Builds set->lb_data for the cluster's policy: hosts ordered by priority,
 * and per priority level the RING_HASH ring or MAGLEV table. Zero
 * ring_min / ring_max / maglev_table_size in `c` mean Envoy's defaults (1024,
 * 8M, 65537); a NULL `c` means ROUND_ROBIN. 0, or -1 when out of memory with
 * set->lb_data left NULL. Called by tn_host_set_new. */
int tn_lb_prepare(struct tn_host_set *set, const struct tn_cluster *c);
/* Frees set->lb_data and sets it NULL. Called when the set's last reference goes. */
void tn_lb_release(struct tn_host_set *set);

/* A host for one request, or NULL when the set has no host (empty set: the
 * router answers 503 UH). Hosts unhealthy at now_ms are skipped unless the
 * panic threshold says to use all. No reference is taken. `c` must be the
 * cluster (policy) the set was prepared for; zero least_request_choices means
 * 2; ctx may be NULL. LEAST_REQUEST reads host->active_rq: the caller
 * increments it when a request is sent to the host and decrements it when
 * the request ends, whatever the policy. Lock-free; allocates only when a
 * worker first uses a weighted schedule for a new set. */
struct tn_host *tn_lb_choose(const struct tn_cluster *c, const struct tn_host_set *set, struct tn_lb_state *st,
                             const struct tn_lb_context *ctx, uint64_t now_ms);

/* 64-bit hash used by hash policies (xxHash XXH3). */
uint64_t tn_lb_hash(const void *p, size_t n);

#endif
