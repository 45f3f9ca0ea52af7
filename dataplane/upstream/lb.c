/* Load balancing: Envoy's priorities and lb_policy values over a host set.
 *
 * tn_lb_prepare sorts the set's hosts by priority into lb_data's own index
 * array (set->hosts keeps its order) and, for the hash policies, builds one
 * ring or maglev table per priority level over all the level's hosts. Health
 * is read at pick time, so tables never need rebuilding when it changes: a
 * lookup that lands on an unhealthy host walks forward to the next healthy
 * one. A pick scans the hosts of the levels it considers (health is atomic
 * per host and the set has no health generation to cache against); it takes
 * no lock and allocates nothing, except when a worker first uses a weighted
 * schedule for a new set. */
#include "dataplane/upstream/lb.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "dataplane/upstream/cluster.h"

#define OVERPROVISIONING 140  /* percent: Envoy's default factor 1.4 */
#define PANIC_THRESHOLD  50   /* percent */
#define LR_WEIGHT_SCALE  1024 /* fixed point for weight / (active_rq + 1) */
#define MAGLEV_EMPTY     UINT32_MAX

struct ring_entry {
    uint64_t hash;
    uint32_t host; /* index into set->hosts */
};

/* Hosts of one priority: order[begin..end) in lb_data. */
struct lb_level {
    uint32_t priority;
    size_t begin, end;
    bool weighted; /* weights differ within the level */
    struct ring_entry *ring;
    size_t ring_len;
    uint32_t *maglev; /* maglev_size entries, indexes into set->hosts */
};

struct lb_data {
    uint64_t id; /* unique per prepared set: guards per-worker schedules against address reuse */
    size_t n_levels;
    struct lb_level *levels;
    uint32_t *order; /* set->hosts indexes, by (priority, index) */
    uint64_t maglev_size;
};

/* Per-worker smooth weighted round-robin state for one set (rr_sched). */
struct rr_sched {
    uint64_t set_id;
    size_t n;
    int64_t cur[]; /* current weight per position of lb_data->order */
};

/* One pick within a level: what may be chosen. */
struct pick {
    const struct tn_host_set *set;
    const struct lb_data *ld;
    const struct lb_level *lv;
    uint64_t now;
    bool panic;                    /* level below the panic threshold: every host may be chosen */
    const struct tn_host *exclude; /* NULL unless another eligible host exists */
    uint64_t eligible_w;           /* weight of the hosts eligible() accepts */
};

static atomic_ullong next_set_id = 1;

static const struct tn_cluster default_cluster = {.lb = TN_LB_ROUND_ROBIN};

static uint64_t rng_next(struct tn_lb_state *st)
{
    /* xorshift64* */
    uint64_t x = st->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    st->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

static uint64_t or_default(uint64_t v, uint64_t def)
{
    return v ? v : def;
}

void tn_lb_state_init(struct tn_lb_state *st, uint64_t seed)
{
    *st = (struct tn_lb_state){.rng = seed ? seed : 0x9e3779b97f4a7c15ull};
}

void tn_lb_state_dispose(struct tn_lb_state *st)
{
    free(st->rr_sched);
    st->rr_sched = NULL;
    st->rr_set = NULL;
}

/* ---- prepare ------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_ring(const void *a, const void *b)
{
    const struct ring_entry *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->host < y->host ? -1 : x->host > y->host; /* ties: deterministic */
}

/* order[] sorted by priority, stable by index (key = priority << 32 | index). */
static int sort_by_priority(const struct tn_host_set *set, struct lb_data *ld)
{
    uint64_t *keys = malloc(set->n_hosts * sizeof(*keys));
    if (keys == NULL || (ld->order = malloc(set->n_hosts * sizeof(*ld->order))) == NULL) {
        free(keys);
        return -1;
    }
    for (size_t i = 0; i < set->n_hosts; i++)
        keys[i] = (uint64_t)set->hosts[i]->priority << 32 | i;
    qsort(keys, set->n_hosts, sizeof(*keys), cmp_u64);
    for (size_t i = 0; i < set->n_hosts; i++)
        ld->order[i] = (uint32_t)keys[i];
    free(keys);
    return 0;
}

static struct tn_host *host_at(const struct tn_host_set *set, const struct lb_data *ld, size_t pos)
{
    return set->hosts[ld->order[pos]];
}

static int split_levels(const struct tn_host_set *set, struct lb_data *ld)
{
    size_t n = 1;
    for (size_t i = 1; i < set->n_hosts; i++)
        n += host_at(set, ld, i)->priority != host_at(set, ld, i - 1)->priority;
    if ((ld->levels = calloc(n, sizeof(*ld->levels))) == NULL)
        return -1;
    ld->n_levels = n;
    struct lb_level *lv = ld->levels;
    lv->priority = host_at(set, ld, 0)->priority;
    for (size_t i = 1; i <= set->n_hosts; i++) {
        if (i < set->n_hosts && host_at(set, ld, i)->priority == lv->priority) {
            lv->weighted |= host_at(set, ld, i)->weight != host_at(set, ld, i - 1)->weight;
            continue;
        }
        lv->end = i;
        if (i < set->n_hosts) {
            lv++;
            *lv = (struct lb_level){.priority = host_at(set, ld, i)->priority, .begin = i};
        }
    }
    return 0;
}

/* Envoy's ring: the level's smallest weight gets at least ring_min *
 * min_share entries (ring size capped at ring_max), each host entries in
 * proportion to its weight, keyed by XXH64("<addr>_<i>"). */
static int build_ring(const struct tn_host_set *set, const struct lb_data *ld, struct lb_level *lv, uint64_t ring_min,
                      uint64_t ring_max)
{
    uint64_t sum = 0, min_w = UINT64_MAX;
    for (size_t i = lv->begin; i < lv->end; i++) {
        uint32_t w = host_at(set, ld, i)->weight;
        sum += w;
        min_w = w < min_w ? w : min_w;
    }
    double min_share = (double)min_w / (double)sum;
    double scale = fmin(ceil(min_share * (double)ring_min) / min_share, (double)ring_max);
    size_t cap = (size_t)ceil(scale) + 1;
    if ((lv->ring = malloc(cap * sizeof(*lv->ring))) == NULL)
        return -1;
    double current = 0, target = 0;
    for (size_t i = lv->begin; i < lv->end; i++) {
        struct tn_host *h = host_at(set, ld, i);
        target += scale * h->weight / (double)sum;
        for (uint64_t k = 0; current < target && lv->ring_len < cap; k++, current++) {
            char key[96];
            int len = snprintf(key, sizeof(key), "%s_%llu", h->addr_text, (unsigned long long)k);
            lv->ring[lv->ring_len++] = (struct ring_entry){XXH64(key, (size_t)len, 0), ld->order[i]};
        }
    }
    qsort(lv->ring, lv->ring_len, sizeof(*lv->ring), cmp_ring);
    return 0;
}

struct maglev_build {
    uint64_t offset, skip, next;
    uint64_t credit;
};

/* Fills one slot for host b: the next empty slot of its permutation. */
static void maglev_place(uint32_t *table, uint64_t m, struct maglev_build *b, uint32_t host)
{
    uint64_t slot;
    do
        slot = (b->offset + b->skip * b->next++) % m;
    while (table[slot] != MAGLEV_EMPTY);
    table[slot] = host;
}

/* Google's Maglev population, weighted: each round every host earns its
 * weight in credit, and places one entry per max_w of credit, so the
 * heaviest host places one entry every round and a host of a third its
 * weight one every third round. */
static int build_maglev(const struct tn_host_set *set, const struct lb_data *ld, struct lb_level *lv, uint64_t m)
{
    size_t n = lv->end - lv->begin;
    struct maglev_build *b = calloc(n, sizeof(*b));
    if (b == NULL || (lv->maglev = malloc(m * sizeof(*lv->maglev))) == NULL) {
        free(b);
        return -1;
    }
    uint64_t max_w = 0;
    for (size_t i = 0; i < n; i++) {
        struct tn_host *h = host_at(set, ld, lv->begin + i);
        size_t len = strlen(h->addr_text);
        b[i].offset = XXH64(h->addr_text, len, 0) % m;
        b[i].skip = XXH64(h->addr_text, len, 1) % (m - 1) + 1;
        max_w = h->weight > max_w ? h->weight : max_w;
    }
    for (uint64_t s = 0; s < m; s++)
        lv->maglev[s] = MAGLEV_EMPTY;
    for (uint64_t filled = 0; filled < m;) {
        for (size_t i = 0; i < n && filled < m; i++) {
            b[i].credit += host_at(set, ld, lv->begin + i)->weight;
            if (b[i].credit < max_w)
                continue;
            b[i].credit -= max_w;
            maglev_place(lv->maglev, m, &b[i], ld->order[lv->begin + i]);
            filled++;
        }
    }
    free(b);
    return 0;
}

static void free_lb_data(struct lb_data *ld)
{
    if (ld == NULL)
        return;
    for (size_t i = 0; ld->levels && i < ld->n_levels; i++) {
        free(ld->levels[i].ring);
        free(ld->levels[i].maglev);
    }
    free(ld->levels);
    free(ld->order);
    free(ld);
}

static int build_tables(const struct tn_host_set *set, struct lb_data *ld, const struct tn_cluster *c)
{
    for (size_t i = 0; i < ld->n_levels; i++) {
        struct lb_level *lv = &ld->levels[i];
        if (c->lb == TN_LB_RING_HASH &&
            build_ring(set, ld, lv, or_default(c->ring_min, 1024), or_default(c->ring_max, 8 * 1024 * 1024)))
            return -1;
        if (c->lb == TN_LB_MAGLEV && build_maglev(set, ld, lv, ld->maglev_size))
            return -1;
    }
    return 0;
}

int tn_lb_prepare(struct tn_host_set *set, const struct tn_cluster *c)
{
    set->lb_data = NULL;
    if (set->n_hosts == 0)
        return 0;
    if (c == NULL)
        c = &default_cluster;
    struct lb_data *ld = calloc(1, sizeof(*ld));
    if (ld == NULL)
        return -1;
    ld->id = atomic_fetch_add_explicit(&next_set_id, 1, memory_order_relaxed);
    ld->maglev_size = or_default(c->maglev_table_size, 65537);
    if (sort_by_priority(set, ld) || split_levels(set, ld) || build_tables(set, ld, c)) {
        free_lb_data(ld);
        return -1;
    }
    set->lb_data = ld;
    return 0;
}

void tn_lb_release(struct tn_host_set *set)
{
    free_lb_data(set->lb_data);
    set->lb_data = NULL;
}

/* ---- priority ----------------------------------------------------------- */

static void level_weights(const struct tn_host_set *set, const struct lb_data *ld, const struct lb_level *lv,
                          uint64_t now, uint64_t *healthy_w, uint64_t *total_w)
{
    *healthy_w = *total_w = 0;
    for (size_t i = lv->begin; i < lv->end; i++) {
        struct tn_host *h = host_at(set, ld, i);
        *total_w += h->weight;
        if (tn_host_healthy(h, now))
            *healthy_w += h->weight;
    }
}

/* A level's health: min(100, 1.4 * healthy weight share), in percent. */
static uint32_t level_health(const struct tn_host_set *set, const struct lb_data *ld, size_t lvl, uint64_t now)
{
    uint64_t hw, tw;
    level_weights(set, ld, &ld->levels[lvl], now, &hw, &tw);
    uint64_t health = OVERPROVISIONING * hw / tw;
    return health > 100 ? 100 : (uint32_t)health;
}

/* Envoy's priority load: levels in order take their health (scaled up when
 * the sum of all health is under 100), until 100 % is given out; rounding
 * leftovers go to the first level with health. `r` picks the level. When no
 * level has health, load follows host counts (every level is in panic). */
static size_t choose_level(const struct tn_host_set *set, const struct lb_data *ld, uint64_t now, uint64_t r)
{
    struct {
        size_t level;
        uint32_t health;
    } lv[100]; /* levels with health > 0 until the sum reaches 100: at most 100 */
    size_t n = 0;
    uint32_t sum = 0;
    for (size_t i = 0; i < ld->n_levels && sum < 100; i++) {
        uint32_t health = level_health(set, ld, i, now);
        if (health > 0) {
            lv[n].level = i;
            lv[n++].health = health;
            sum += health;
        }
    }
    if (n == 0) {
        size_t pos = r % set->n_hosts, i = 0;
        while (ld->levels[i].end <= pos)
            i++;
        return i;
    }
    uint32_t norm = sum > 100 ? 100 : sum, remaining = 100;
    for (size_t i = 0; i < n; i++) {
        uint32_t load = lv[i].health * 100 / norm;
        lv[i].health = load < remaining ? load : remaining; /* now the level's load */
        remaining -= lv[i].health;
    }
    lv[0].health += remaining;
    uint32_t target = (uint32_t)(r % 100);
    for (size_t i = 0; i < n; i++) {
        if (target < lv[i].health)
            return lv[i].level;
        target -= lv[i].health;
    }
    return lv[0].level;
}

/* ---- within a level ------------------------------------------------------- */

static bool eligible(const struct pick *p, const struct tn_host *h)
{
    return h != p->exclude && (p->panic || tn_host_healthy((struct tn_host *)h, p->now));
}

static void pick_init(struct pick *p, const struct tn_host_set *set, const struct lb_data *ld, size_t lvl, uint64_t now,
                      const struct tn_host *exclude)
{
    *p = (struct pick){.set = set, .ld = ld, .lv = &ld->levels[lvl], .now = now};
    uint64_t hw, tw;
    level_weights(set, ld, p->lv, now, &hw, &tw);
    p->panic = hw * 100 < (uint64_t)PANIC_THRESHOLD * tw;
    p->eligible_w = p->panic ? tw : hw;
    if (exclude == NULL || !eligible(p, exclude) || exclude->priority != p->lv->priority)
        return;
    for (size_t i = p->lv->begin; i < p->lv->end; i++) {
        if (host_at(set, ld, i) == exclude && p->eligible_w > exclude->weight) {
            p->exclude = exclude;
            p->eligible_w -= exclude->weight;
        }
    }
}

/* Some host of the level when health changed under the pick. */
static struct tn_host *pick_fallback(const struct pick *p)
{
    for (size_t i = p->lv->begin; i < p->lv->end; i++)
        if (eligible(p, host_at(p->set, p->ld, i)))
            return host_at(p->set, p->ld, i);
    return host_at(p->set, p->ld, p->lv->begin);
}

/* The eligible host covering r in the level's eligible weight. */
static struct tn_host *pick_weighted(const struct pick *p, uint64_t r)
{
    if (p->eligible_w == 0)
        return pick_fallback(p);
    uint64_t target = r % p->eligible_w;
    for (size_t i = p->lv->begin; i < p->lv->end; i++) {
        struct tn_host *h = host_at(p->set, p->ld, i);
        if (!eligible(p, h))
            continue;
        if (target < h->weight)
            return h;
        target -= h->weight;
    }
    return pick_fallback(p);
}

static struct tn_host *pick_cursor(const struct pick *p, struct tn_lb_state *st)
{
    size_t len = p->lv->end - p->lv->begin;
    for (size_t k = 0; k < len; k++) {
        struct tn_host *h = host_at(p->set, p->ld, p->lv->begin + st->rr++ % len);
        if (eligible(p, h))
            return h;
    }
    return pick_fallback(p);
}

/* The worker's smooth weighted schedule for this set, rebuilt (the only
 * allocation on the pick path) when the set changed; NULL when out of memory. */
static struct rr_sched *sched_for(const struct pick *p, struct tn_lb_state *st)
{
    struct rr_sched *s = st->rr_sched;
    if (s && st->rr_set == p->set && s->set_id == p->ld->id)
        return s;
    free(s);
    st->rr_set = NULL;
    st->rr_sched = s = calloc(1, sizeof(*s) + p->set->n_hosts * sizeof(s->cur[0]));
    if (s == NULL)
        return NULL;
    s->set_id = p->ld->id;
    s->n = p->set->n_hosts;
    st->rr_set = p->set;
    return s;
}

static int64_t effective_weight(const struct tn_host *h, bool least_request)
{
    if (!least_request)
        return h->weight;
    unsigned active = atomic_load_explicit(&((struct tn_host *)h)->active_rq, memory_order_relaxed);
    int64_t w = (int64_t)h->weight * LR_WEIGHT_SCALE / ((int64_t)active + 1);
    return w > 0 ? w : 1;
}

/* Smooth weighted round robin (every eligible host gains its weight, the
 * richest is chosen and pays the total): exact proportions, interleaved.
 * With least_request the weights are Envoy's weight / (active_rq + 1). */
static struct tn_host *pick_smooth(const struct pick *p, struct tn_lb_state *st, bool least_request)
{
    struct rr_sched *s = sched_for(p, st);
    if (s == NULL)
        return least_request ? pick_weighted(p, rng_next(st)) : pick_cursor(p, st);
    size_t best = SIZE_MAX;
    int64_t total = 0;
    for (size_t i = p->lv->begin; i < p->lv->end; i++) {
        struct tn_host *h = host_at(p->set, p->ld, i);
        if (!eligible(p, h))
            continue;
        int64_t w = effective_weight(h, least_request);
        s->cur[i] += w;
        total += w;
        if (best == SIZE_MAX || s->cur[i] > s->cur[best])
            best = i;
    }
    if (best == SIZE_MAX)
        return pick_fallback(p);
    s->cur[best] -= total;
    return host_at(p->set, p->ld, best);
}

/* Power of N choices: the candidate with the fewest requests in flight. */
static struct tn_host *pick_least(const struct pick *p, struct tn_lb_state *st, uint32_t choices)
{
    struct tn_host *best = NULL;
    unsigned best_rq = 0;
    for (uint32_t k = 0; k < choices; k++) {
        struct tn_host *h = pick_weighted(p, rng_next(st));
        unsigned rq = atomic_load_explicit(&h->active_rq, memory_order_relaxed);
        if (best == NULL || rq < best_rq) {
            best = h;
            best_rq = rq;
        }
    }
    return best;
}

static struct tn_host *pick_ring(const struct pick *p, uint64_t hash)
{
    const struct ring_entry *ring = p->lv->ring;
    size_t n = p->lv->ring_len, lo = 0, hi = n;
    while (lo < hi) { /* first entry with ring hash >= hash */
        size_t mid = lo + (hi - lo) / 2;
        if (ring[mid].hash < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = 0; k < n; k++) {
        struct tn_host *h = p->set->hosts[ring[(lo + k) % n].host];
        if (eligible(p, h))
            return h;
    }
    return pick_fallback(p);
}

static struct tn_host *pick_maglev(const struct pick *p, uint64_t hash)
{
    uint64_t m = p->ld->maglev_size, start = hash % m;
    for (uint64_t k = 0; k < m; k++) {
        struct tn_host *h = p->set->hosts[p->lv->maglev[(start + k) % m]];
        if (eligible(p, h))
            return h;
    }
    return pick_fallback(p);
}

struct tn_host *tn_lb_choose(const struct tn_cluster *c, const struct tn_host_set *set, struct tn_lb_state *st,
                             const struct tn_lb_context *ctx, uint64_t now_ms)
{
    const struct lb_data *ld = set->lb_data;
    if (set->n_hosts == 0 || ld == NULL)
        return NULL;
    if (c == NULL)
        c = &default_cluster;
    bool hashed = (c->lb == TN_LB_RING_HASH && ld->levels[0].ring) || (c->lb == TN_LB_MAGLEV && ld->levels[0].maglev);
    uint64_t hash = hashed && ctx && ctx->has_hash ? ctx->hash : rng_next(st);
    size_t lvl = ld->n_levels == 1 ? 0 : choose_level(set, ld, now_ms, hash);
    struct pick p;
    pick_init(&p, set, ld, lvl, now_ms, ctx ? ctx->exclude : NULL);
    if (hashed)
        return c->lb == TN_LB_RING_HASH ? pick_ring(&p, hash) : pick_maglev(&p, hash);
    switch (c->lb) {
    case TN_LB_LEAST_REQUEST:
        if (p.lv->weighted)
            return pick_smooth(&p, st, true);
        return pick_least(&p, st, (uint32_t)or_default(c->least_request_choices, 2));
    case TN_LB_RANDOM:
        return pick_weighted(&p, rng_next(st));
    default: /* ROUND_ROBIN, or a hash policy whose set was prepared without tables */
        return p.lv->weighted ? pick_smooth(&p, st, false) : pick_cursor(&p, st);
    }
}

uint64_t tn_lb_hash(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}
