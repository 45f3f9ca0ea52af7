#define _GNU_SOURCE /* tdestroy */
#include "dataplane/stats/stats.h"

#include <search.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double tn_hist_bounds[TN_HIST_BUCKETS] = {0.5,  1,    5,     10,    25,    50,     100,    250,     500,    1000,
                                                2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000};

void tn_stats_init(struct tn_stats *st)
{
    memset(st, 0, sizeof(*st));
}

/* Stat names carry their stat's index in front, so the name index (a glibc
 * tsearch tree of name pointers: the names do not move when st->v grows)
 * leads back to the stat. */
struct named {
    uint32_t index;
    char name[];
};

static char *name_new(const char *s, uint32_t index)
{
    size_t n = strlen(s);
    struct named *x = malloc(sizeof(*x) + n + 1);
    if (x == NULL)
        return NULL;
    x->index = index;
    memcpy(x->name, s, n + 1);
    return x->name;
}

static struct named *named_of(const char *name)
{
    return (struct named *)(name - offsetof(struct named, name));
}

static void name_free(char *name)
{
    if (name)
        free(named_of(name));
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void no_free(void *p)
{
    (void)p;
}

/* One copy of each Prometheus name and label set: the stats of a cluster
 * share their labels, and every cluster's stats the same Prometheus names
 * (10,000 clusters from CDS register half a million stats). */
static char *intern(struct tn_stats *st, const char *s)
{
    char **have = tfind(s, &st->strings, cmp_names);
    if (have)
        return *have;
    char *copy = strdup(s);
    if (copy == NULL)
        return NULL;
    if (tsearch(copy, &st->strings, cmp_names) == NULL) {
        free(copy);
        return NULL;
    }
    return copy;
}

/* The stat named `name`, or NULL. */
static const struct tn_stat *find(struct tn_stats *st, const char *name)
{
    void *const *p = tfind(name, &st->index, cmp_names);
    return p ? &st->v[named_of(*p)->index] : NULL;
}

void tn_stats_reserve(struct tn_stats *st, uint32_t slots)
{
    st->reserve = slots;
}

void tn_stats_dispose(struct tn_stats *st)
{
    tdestroy(st->index, no_free);
    st->index = NULL;
    tdestroy(st->strings, free);
    st->strings = NULL;
    for (size_t i = 0; i < st->n; i++) {
        name_free(st->v[i].name);
    }
    for (size_t i = 0; i < st->n_shards; i++)
        free((void *)st->shards[i]);
    free(st->v);
    free(st->shards);
    free(st->reset_base);
    memset(st, 0, sizeof(*st));
}

static const char *scope_word(enum tn_stat_scope scope)
{
    switch (scope) {
    case TN_SCOPE_CLUSTER:
        return "cluster";
    case TN_SCOPE_HTTP:
        return "http";
    case TN_SCOPE_LISTENER:
        return "listener";
    default:
        return NULL;
    }
}

static const char *scope_tag(enum tn_stat_scope scope)
{
    switch (scope) {
    case TN_SCOPE_CLUSTER:
        return "envoy_cluster_name";
    case TN_SCOPE_HTTP:
        return "envoy_http_conn_manager_prefix";
    case TN_SCOPE_LISTENER:
        return "envoy_listener_address";
    default:
        return NULL;
    }
}

/* Prometheus metric names allow [a-zA-Z0-9_:]; Envoy turns the rest into _. */
static void sanitize(char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == ':'))
            *s = '_';
}

/* Label values are quoted: escape backslash, quote and newline. */
static void label(char *out, size_t cap, const char *tag, const char *value)
{
    size_t n = (size_t)snprintf(out, cap, "%s=\"", tag);
    for (const char *p = value; *p && n + 3 < cap; p++) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            out[n++] = '\\';
            out[n++] = *p == '\n' ? 'n' : *p;
        } else {
            out[n++] = *p;
        }
    }
    if (n + 2 < cap) {
        out[n++] = '"';
        out[n] = '\0';
    }
}

/* Envoy's response code extractors: "upstream_rq_2xx" -> ("upstream_rq_xx",
 * envoy_response_code_class="2"); "upstream_rq_200" -> ("upstream_rq",
 * envoy_response_code="200"). */
static void code_tag(const char *name, char *base, size_t cap, char *lab, size_t labcap)
{
    size_t n = strlen(name);
    lab[0] = '\0';
    snprintf(base, cap, "%s", name);
    if (n > 4 && name[n - 4] == '_' && name[n - 3] >= '1' && name[n - 3] <= '5' && name[n - 2] == 'x' &&
        name[n - 1] == 'x') {
        snprintf(base, cap, "%.*s_xx", (int)(n - 4), name);
        snprintf(lab, labcap, "envoy_response_code_class=\"%c\"", name[n - 3]);
    } else if (n > 4 && name[n - 4] == '_' && name[n - 3] >= '1' && name[n - 3] <= '5' && name[n - 2] >= '0' &&
               name[n - 2] <= '9' && name[n - 1] >= '0' && name[n - 1] <= '9') {
        snprintf(base, cap, "%.*s", (int)(n - 4), name);
        snprintf(lab, labcap, "envoy_response_code=\"%.3s\"", name + n - 3);
    }
}

static uint32_t add_named(struct tn_stats *st, const char *full, const char *prom, const char *labels,
                          enum tn_stat_kind kind, bool lazy, uint16_t n_codes);

static uint32_t add(struct tn_stats *st, enum tn_stat_scope scope, const char *scope_value, const char *name,
                    enum tn_stat_kind kind, bool lazy, bool dedupe)
{
    char full[512], prom[512], base[256], codelab[64], scopelab[320], labels[400];
    const char *word = scope_word(scope);
    if (word)
        snprintf(full, sizeof(full), "%s.%s.%s", word, scope_value, name);
    else
        snprintf(full, sizeof(full), "%s", name);
    const struct tn_stat *have = dedupe ? find(st, full) : NULL;
    if (have)
        return have->slot;

    code_tag(name, base, sizeof(base), codelab, sizeof(codelab));
    if (word)
        snprintf(prom, sizeof(prom), "envoy_%s_%s", word, base);
    else
        snprintf(prom, sizeof(prom), "envoy_%s", base);
    sanitize(prom);
    scopelab[0] = '\0';
    if (word)
        label(scopelab, sizeof(scopelab), scope_tag(scope), scope_value);
    snprintf(labels, sizeof(labels), "%s%s%s", codelab, codelab[0] && scopelab[0] ? "," : "", scopelab);
    return add_named(st, full, prom, labels, kind, lazy, 0);
}

static uint32_t add_named(struct tn_stats *st, const char *full, const char *prom, const char *labels,
                          enum tn_stat_kind kind, bool lazy, uint16_t n_codes)
{
    uint32_t need = n_codes ? n_codes : kind == TN_STAT_HISTOGRAM ? TN_HIST_SLOTS : 1;
    if (st->n_shards && st->n_slots + need > st->cap_slots)
        return UINT32_MAX; /* the shards are full */
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        struct tn_stat *v = realloc(st->v, cap * sizeof(*v));
        if (v == NULL)
            return UINT32_MAX;
        st->v = v;
        st->cap = cap;
    }
    struct tn_stat *s = &st->v[st->n];
    s->name = name_new(full, (uint32_t)st->n);
    s->prom_name = intern(st, prom);
    s->labels = intern(st, labels);
    if (s->name == NULL || s->prom_name == NULL || s->labels == NULL ||
        tsearch(s->name, &st->index, cmp_names) == NULL) {
        name_free(s->name);
        return UINT32_MAX; /* interned strings stay with the store */
    }
    s->kind = kind;
    s->lazy = lazy;
    s->n_codes = n_codes;
    s->slot = st->n_slots;
    st->n_slots += need;
    st->n++;
    return s->slot;
}

uint32_t tn_stats_add(struct tn_stats *st, enum tn_stat_scope scope, const char *scope_value, const char *name,
                      enum tn_stat_kind kind)
{
    return add(st, scope, scope_value, name, kind, false, true);
}

uint32_t tn_stats_slot(struct tn_stats *st, const char *name)
{
    const struct tn_stat *s = find(st, name);
    return s ? s->slot : UINT32_MAX;
}

uint32_t tn_stats_add_tagged(struct tn_stats *st, const char *name, const char *prom_name, const char *const *tags,
                             size_t n_tags, enum tn_stat_kind kind)
{
    char prom[512], labels[512], one[320];
    const struct tn_stat *have = find(st, name);
    if (have)
        return have->slot;
    snprintf(prom, sizeof(prom), "%s", prom_name);
    sanitize(prom);
    labels[0] = '\0';
    for (size_t i = 0; i + 1 < 2 * n_tags; i += 2) {
        size_t n = strlen(labels);
        label(one, sizeof(one), tags[i], tags[i + 1]);
        snprintf(labels + n, sizeof(labels) - n, "%s%s", n ? "," : "", one);
    }
    return add_named(st, name, prom, labels, kind, false, 0);
}

uint32_t tn_stats_add_codes(struct tn_stats *st, enum tn_stat_scope scope, const char *scope_value, const char *prefix)
{
    /* one entry for the 500 counters: readers name each one they list */
    char full[512], prom[512], labels[320];
    const char *word = scope_word(scope);
    snprintf(full, sizeof(full), "%s.%s.%s", word, scope_value, prefix);
    const struct tn_stat *have = find(st, full);
    if (have)
        return have->n_codes ? have->slot : UINT32_MAX;
    snprintf(prom, sizeof(prom), "envoy_%s_%s", word, prefix);
    sanitize(prom);
    label(labels, sizeof(labels), scope_tag(scope), scope_value);
    return add_named(st, full, prom, labels, TN_STAT_COUNTER, true, TN_STAT_CODES);
}

void tn_stats_code_stat(const struct tn_stat *block, unsigned code, struct tn_stat *out, char *name, size_t name_cap,
                        char *labels, size_t labels_cap)
{
    snprintf(name, name_cap, "%s_%u", block->name, code);
    snprintf(labels, labels_cap, "envoy_response_code=\"%u\"%s%s", code, block->labels[0] ? "," : "", block->labels);
    *out = (struct tn_stat){.name = name,
                            .prom_name = block->prom_name,
                            .labels = labels,
                            .kind = TN_STAT_COUNTER,
                            .slot = block->slot + (code - 100),
                            .lazy = true};
}

_Atomic uint64_t *tn_stats_shard(struct tn_stats *st)
{
    if (st->n_shards == 0) {
        uint64_t cap = (uint64_t)st->n_slots + st->reserve;
        st->cap_slots = cap > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)cap;
    }
    if (st->reset_base == NULL &&
        (st->reset_base = calloc(st->cap_slots ? st->cap_slots : 1, sizeof(uint64_t))) == NULL)
        return NULL;
    if (st->n_shards == st->shards_cap) {
        size_t cap = st->shards_cap ? st->shards_cap * 2 : 8;
        _Atomic uint64_t **v = realloc(st->shards, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        st->shards = v;
        st->shards_cap = cap;
    }
    _Atomic uint64_t *shard = calloc(st->cap_slots ? st->cap_slots : 1, sizeof(*shard));
    if (shard)
        st->shards[st->n_shards++] = shard;
    return shard;
}

void tn_stat_record(_Atomic uint64_t *shard, uint32_t slot, uint64_t ms)
{
    size_t b = 0;
    while (b < TN_HIST_BUCKETS && (double)ms > tn_hist_bounds[b])
        b++;
    tn_stat_inc(shard, slot + (uint32_t)b);
    tn_stat_inc(shard, slot + TN_HIST_BUCKETS + 1);
    tn_stat_add(shard, slot + TN_HIST_BUCKETS + 2, ms);
}

static uint64_t sum_slot(const struct tn_stats *st, uint32_t slot)
{
    uint64_t v = 0;
    for (size_t i = 0; i < st->n_shards; i++)
        v += atomic_load_explicit(&st->shards[i][slot], memory_order_relaxed);
    return v;
}

uint64_t tn_stats_value(const struct tn_stats *st, const struct tn_stat *s)
{
    uint64_t v = sum_slot(st, s->slot);
    if (s->kind == TN_STAT_COUNTER && st->reset_base)
        v -= st->reset_base[s->slot];
    return v;
}

void tn_stats_histogram(const struct tn_stats *st, const struct tn_stat *s, uint64_t buckets[TN_HIST_BUCKETS + 1],
                        uint64_t *count, uint64_t *sum)
{
    uint64_t acc = 0;
    for (uint32_t b = 0; b <= TN_HIST_BUCKETS; b++) {
        acc += sum_slot(st, s->slot + b);
        buckets[b] = acc;
    }
    *count = sum_slot(st, s->slot + TN_HIST_BUCKETS + 1);
    *sum = sum_slot(st, s->slot + TN_HIST_BUCKETS + 2);
}

bool tn_stats_used(const struct tn_stats *st, const struct tn_stat *s)
{
    uint32_t n = s->n_codes ? s->n_codes : s->kind == TN_STAT_HISTOGRAM ? TN_HIST_SLOTS : 1;
    for (uint32_t i = 0; i < n; i++)
        for (size_t k = 0; k < st->n_shards; k++)
            if (atomic_load_explicit(&st->shards[k][s->slot + i], memory_order_relaxed))
                return true;
    return false;
}

void tn_stats_reset_counters(struct tn_stats *st)
{
    if (st->reset_base == NULL)
        return;
    for (size_t i = 0; i < st->n; i++)
        if (st->v[i].kind == TN_STAT_COUNTER)
            for (uint32_t k = 0; k < (st->v[i].n_codes ? st->v[i].n_codes : 1u); k++)
                st->reset_base[st->v[i].slot + k] = sum_slot(st, st->v[i].slot + k);
}
