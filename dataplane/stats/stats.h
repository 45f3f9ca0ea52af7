/* Stats with Envoy's names and tags: counters, gauges, histograms.
 *
 * Stats are registered on the main thread into a store (each gets an
 * index); every worker then owns a shard of values indexed the same way and
 * is the only writer of it, so the request path adds with a plain load and
 * store (relaxed atomics, no lock, no locked instruction). Readers (the admin
 * API on the main thread) sum the shards. Gauges are kept as per-shard
 * deltas, so a gauge raised on one worker and lowered on another still sums
 * right.
 *
 * A stat's Envoy name ("cluster.service1.upstream_rq_total") and its
 * Prometheus form (envoy_cluster_upstream_rq_total with
 * envoy_cluster_name="service1") are fixed at registration: the scope kind
 * says which tag the scope's value becomes, as Envoy's default tag
 * extractors do. */
#ifndef TN_STATS_H
#define TN_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tn_stat_kind {
    TN_STAT_COUNTER = 0,
    TN_STAT_GAUGE,
    TN_STAT_HISTOGRAM,
};

/* Which Envoy tag a scope's value becomes. */
enum tn_stat_scope {
    TN_SCOPE_NONE = 0, /* "server.live": no tag */
    TN_SCOPE_CLUSTER,  /* "cluster.<name>." -> envoy_cluster_name */
    TN_SCOPE_HTTP,     /* "http.<stat_prefix>." -> envoy_http_conn_manager_prefix */
    TN_SCOPE_LISTENER, /* "listener.<address>." -> envoy_listener_address */
};

/* Envoy's default histogram buckets (ms). */
#define TN_HIST_BUCKETS 19
extern const double tn_hist_bounds[TN_HIST_BUCKETS];

struct tn_stat {
    char *name;      /* Envoy's name */
    char *prom_name; /* "envoy_cluster_upstream_rq_xx" (interned: shared, the store's) */
    char *labels;    /* "envoy_response_code_class=\"2\",envoy_cluster_name=\"s1\"" or "" (interned) */
    enum tn_stat_kind kind;
    uint32_t slot; /* first value slot: 1 for counters/gauges, TN_HIST_SLOTS for histograms */
    bool lazy;     /* listed only once written, as Envoy creates such stats on first use */
    uint16_t n_codes; /* TN_STAT_CODES for a block of per-status-code counters (tn_stats_add_codes), else 0 */
};

/* Codes 100..599: one slot each. */
#define TN_STAT_CODES 500

/* A histogram takes one slot per bucket, one for +Inf, the count and the sum. */
#define TN_HIST_SLOTS (TN_HIST_BUCKETS + 3)

struct tn_stats {
    struct tn_stat *v;
    size_t n, cap;
    uint32_t n_slots;
    uint32_t cap_slots; /* what each shard holds: stats may be added until it is reached */
    uint32_t reserve;   /* slots to reserve beyond the first shard's registrations (tn_stats_reserve) */
    void *index;        /* name -> stat (a glibc tsearch tree) */
    void *strings;      /* the Prometheus names and labels, each once (tsearch) */
    /* Shards registered for reading (the main thread's own and the workers'). */
    _Atomic uint64_t **shards;
    size_t n_shards, shards_cap;
    uint64_t *reset_base; /* counters' values at the last /reset_counters */
};

void tn_stats_init(struct tn_stats *st);
void tn_stats_dispose(struct tn_stats *st);

/* Registers (or finds, when the same name exists) a stat: the Envoy name is
 * "<scope word>.<scope_value>.<name>" ("cluster.s1.upstream_rq_total"), or
 * "<name>" for TN_SCOPE_NONE (name then carries its own prefix, e.g.
 * "server.live"). Returns its slot, or UINT32_MAX when out of memory. A
 * name ending in _1xx.._5xx becomes Envoy's _xx with envoy_response_code_class;
 * a name ending in _<3 digits> becomes envoy_response_code. */
uint32_t tn_stats_add(struct tn_stats *st, enum tn_stat_scope scope, const char *scope_value, const char *name,
                      enum tn_stat_kind kind);

/* Code `code` of a block as a stat of its own (for readers): out points into
 * name and labels. */
void tn_stats_code_stat(const struct tn_stat *block, unsigned code, struct tn_stat *out, char *name, size_t name_cap,
                        char *labels, size_t labels_cap);

/* The slot of the stat named `name`, or UINT32_MAX. */
uint32_t tn_stats_slot(struct tn_stats *st, const char *name);

/* Registers (or finds) a stat whose tags are not one scope's: `name` is
 * Envoy's full name ("http.front.rds.rc1.update_success"), `prom_name` the
 * Prometheus one ("envoy_http_rds_update_success"), tags n_tags pairs of
 * tag and value. Its slot, or UINT32_MAX. */
uint32_t tn_stats_add_tagged(struct tn_stats *st, const char *name, const char *prom_name, const char *const *tags,
                             size_t n_tags, enum tn_stat_kind kind);

/* Envoy's per-status-code counters "<prefix>_100" .. "<prefix>_599"
 * (cluster.<name>.upstream_rq_503; Prometheus envoy_response_code="503"),
 * registered at once as one block entry (named "<scope>.<value>.<prefix>")
 * and listed only once written. Returns the slot of code 100; code c is that
 * + (c - 100). UINT32_MAX when out of memory. A block registered before is
 * found. */
uint32_t tn_stats_add_codes(struct tn_stats *st, enum tn_stat_scope scope, const char *scope_value,
                            const char *prefix);

/* Room for stats registered after the shards exist (clusters from CDS):
 * every shard is made `slots` values larger (zero pages the kernel maps
 * only once written). Call before the first tn_stats_shard. */
void tn_stats_reserve(struct tn_stats *st, uint32_t slots);

/* A shard for a writer thread: zeroed values for every stat registered and
 * the reserve, registered for reading. Once shards exist, stats may be added
 * only within the reserve (tn_stats_add returns UINT32_MAX past it); a
 * writer learns a new stat's slot only through a message from the main
 * thread, which orders the registration before its first write. */
_Atomic uint64_t *tn_stats_shard(struct tn_stats *st);

/* Single-writer updates on the owning thread (no locked instructions). */
static inline void tn_stat_add(_Atomic uint64_t *shard, uint32_t slot, uint64_t n)
{
    atomic_store_explicit(&shard[slot], atomic_load_explicit(&shard[slot], memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void tn_stat_inc(_Atomic uint64_t *shard, uint32_t slot)
{
    tn_stat_add(shard, slot, 1);
}

static inline void tn_stat_dec(_Atomic uint64_t *shard, uint32_t slot)
{
    tn_stat_add(shard, slot, (uint64_t)-1);
}

/* Sets a gauge owned by one thread only (server.uptime, membership). */
static inline void tn_stat_set(_Atomic uint64_t *shard, uint32_t slot, uint64_t v)
{
    atomic_store_explicit(&shard[slot], v, memory_order_relaxed);
}

/* Records a histogram sample (ms). */
void tn_stat_record(_Atomic uint64_t *shard, uint32_t slot, uint64_t ms);

/* --- reading (main thread) -------------------------------------------------- */

/* The merged value of a counter or gauge (counters minus their value at the
 * last reset). */
uint64_t tn_stats_value(const struct tn_stats *st, const struct tn_stat *s);

/* The merged histogram: cumulative bucket counts (buckets[TN_HIST_BUCKETS]
 * is +Inf), total count and sum (ms). */
void tn_stats_histogram(const struct tn_stats *st, const struct tn_stat *s, uint64_t buckets[TN_HIST_BUCKETS + 1],
                        uint64_t *count, uint64_t *sum);

/* Whether a stat was ever written (Envoy's usedonly): non-zero in any shard. */
bool tn_stats_used(const struct tn_stats *st, const struct tn_stat *s);

/* POST /reset_counters: counters read as zero from now on. */
void tn_stats_reset_counters(struct tn_stats *st);

#endif
