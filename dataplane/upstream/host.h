/* Upstream hosts and host sets: what load balancing chooses from.
 *
 * A tn_host is one resolved endpoint of a cluster, shared by the main thread
 * (DNS, active health checks) and every worker (load balancing, outlier
 * detection); what changes at run time is atomic, so no thread takes a lock
 * to read or report health. A tn_host_set is an immutable list of hosts for
 * one cluster, reference-counted across threads (atomics): a DNS refresh or
 * an EDS update builds a new set, and workers switch to it by message while
 * requests already routed keep their host. */
#ifndef TN_HOST_H
#define TN_HOST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct tn_cluster;

enum {
    TN_HOST_FAILED_ACTIVE_HC = 1 << 0, /* active health check says unhealthy */
    TN_HOST_FAILED_EDS = 1 << 1,       /* EDS health_status is UNHEALTHY/DRAINING/TIMEOUT */
    TN_HOST_PENDING_HC = 1 << 2,       /* not yet checked; ignored by tn_host_healthy, but the cluster
                                          manager sets it together with FAILED_ACTIVE_HC on every new
                                          host of a checked cluster (Envoy's default) */
};

struct tn_host {
    atomic_uint refcnt;
    struct sockaddr_storage sa;
    unsigned salen;
    char addr_text[64];   /* "127.0.0.1:8081", "[::1]:80" */
    const char *hostname; /* the configured DNS name for DNS clusters, else NULL; owned */
    uint32_t weight;      /* load_balancing_weight, >= 1 */
    uint32_t priority;
    atomic_uint health;             /* TN_HOST_* flags; 0 is healthy */
    _Atomic uint64_t eject_until_ms;  /* outlier ejection: uv_now-based ms, 0 when not ejected */
    atomic_uint n_ejections;        /* times ejected (ejection time grows with it) */
    atomic_uint consecutive_5xx;    /* outlier detection */
    atomic_uint consecutive_gw;     /* consecutive gateway failures (502/503/504, connect failures) */
    atomic_uint active_rq;          /* requests in flight, all workers (LEAST_REQUEST) */
};

struct tn_host_set {
    atomic_uint refcnt;
    struct tn_host **hosts;
    size_t n_hosts;
    void *lb_data; /* built by tn_lb_prepare (ring, maglev table); freed with the set */
};

/* A host with one reference for `addr` (copied), NULL when out of memory. */
struct tn_host *tn_host_new(const struct sockaddr *addr, unsigned salen, const char *hostname, uint32_t weight,
                            uint32_t priority);
struct tn_host *tn_host_ref(struct tn_host *h);
void tn_host_unref(struct tn_host *h);

/* Whether the host may take traffic now: no health flag other than
 * TN_HOST_PENDING_HC, and not ejected at `now_ms`. */
static inline bool tn_host_healthy(struct tn_host *h, uint64_t now_ms)
{
    unsigned f = atomic_load_explicit(&h->health, memory_order_relaxed) & ~(unsigned)TN_HOST_PENDING_HC;
    return f == 0 && atomic_load_explicit(&h->eject_until_ms, memory_order_relaxed) <= now_ms;
}

/* A set holding a reference to each of hosts[0..n) (the array is copied);
 * lb_data is built for the cluster's policy. NULL when out of memory. */
struct tn_host_set *tn_host_set_new(struct tn_host **hosts, size_t n, const struct tn_cluster *c);
struct tn_host_set *tn_host_set_ref(struct tn_host_set *s);
void tn_host_set_unref(struct tn_host_set *s);

#endif
