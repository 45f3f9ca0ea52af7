/* /stats (text, JSON) and /stats/prometheus. */
#include <stdlib.h>
#include <string.h>

#include "dataplane/admin/admin_int.h"
#include "dataplane/core/matcher.h"
#include "dataplane/core/pool.h"
#include "api/pb/pbjson.h"
#include "dataplane/server/xds.h"

/* Envoy's text readouts: the versions the control plane gave. */
struct text {
    const char *name, *value;
};

/* The stats a request selects (?filter, ?usedonly), in the page's order. */
struct selection {
    const struct tn_stat **v;
    size_t n, cap;
    struct tn_pool pool; /* the per-status-code stats named for this page */
    struct text text[2];
    size_t n_text;
};

/* cluster_manager.cds.version_text and listener_manager.lds.version_text,
 * when clusters or listeners come from xDS, as the filter selects them. */
static void select_text(struct tn__admin_req *r, struct selection *sel, struct pcre2_real_code_8 *re)
{
    const struct tn_xds *x = r->ctx->ops && r->ctx->ops->xds ? r->ctx->ops->xds(r->ctx->arg) : NULL;
    const struct tn_xds_cds *cds = r->ctx->cfg->cds_dynamic ? tn_xds_cds(x) : NULL;
    const struct tn_xds_lds *lds = r->ctx->cfg->lds_dynamic ? tn_xds_lds(x) : NULL;
    struct text t[2] = {{"cluster_manager.cds.version_text", cds ? cds->version : NULL},
                        {"listener_manager.lds.version_text", lds ? lds->version : NULL}};
    for (size_t i = 0; i < 2; i++)
        if ((i == 0 ? cds != NULL : lds != NULL) && (re == NULL || tn_regex_match(re, t[i].name, strlen(t[i].name))))
            sel->text[sel->n_text++] = (struct text){t[i].name, t[i].value ? t[i].value : ""};
}

static int sel_add(struct selection *sel, const struct tn_stat *s)
{
    if (sel->n == sel->cap) {
        size_t cap = sel->cap ? sel->cap * 2 : 64;
        const struct tn_stat **v = realloc(sel->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        sel->v = v;
        sel->cap = cap;
    }
    sel->v[sel->n++] = s;
    return 0;
}

/* The written codes of a block, each as a stat of its own. */
static int sel_add_codes(struct selection *sel, const struct tn_stats *st, const struct tn_stat *block,
                         struct pcre2_real_code_8 *re)
{
    for (unsigned code = 100; code < 100u + block->n_codes; code++) {
        struct tn_stat probe = {.slot = block->slot + (code - 100), .kind = TN_STAT_COUNTER};
        if (!tn_stats_used(st, &probe))
            continue;
        struct tn_stat *s = tn_pool_alloc(&sel->pool, sizeof(*s));
        size_t nl = strlen(block->name) + 8, ll = strlen(block->labels) + 32;
        char *name = tn_pool_alloc(&sel->pool, nl), *labels = tn_pool_alloc(&sel->pool, ll);
        if (s == NULL || name == NULL || labels == NULL)
            return -1;
        tn_stats_code_stat(block, code, s, name, nl, labels, ll);
        if ((re == NULL || tn_regex_match(re, s->name, strlen(s->name))) && sel_add(sel, s))
            return -1;
    }
    return 0;
}

static void sel_dispose(struct selection *sel)
{
    free(sel->v);
    sel->v = NULL;
    tn_pool_dispose(&sel->pool);
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const struct tn_stat *const *)a)->name, (*(const struct tn_stat *const *)b)->name);
}

/* Prometheus groups one metric's samples under one TYPE line: counters,
 * gauges, then histograms, each by metric name then Envoy name. */
static int by_prom(const void *a, const void *b)
{
    const struct tn_stat *x = *(const struct tn_stat *const *)a, *y = *(const struct tn_stat *const *)b;
    int c;
    if (x->kind != y->kind)
        return (int)x->kind - (int)y->kind;
    if ((c = strcmp(x->prom_name, y->prom_name)) != 0)
        return c;
    return strcmp(x->name, y->name);
}

/* Fills sel; 0, or 400 with the reason in the body for a bad filter. */
static int select_stats(struct tn__admin_req *r, struct selection *sel, int (*order)(const void *, const void *))
{
    const struct tn_stats *st = r->ctx->stats;
    const char *filter = tn__admin_param(r, "filter");
    bool used_only = tn__admin_param(r, "usedonly") != NULL;
    struct tn_pool pool;
    struct tn_err err;
    struct pcre2_real_code_8 *re = NULL;
    int rc = 0;

    tn_pool_init(&pool);
    tn_pool_init(&sel->pool);
    tn_err_init(&err);
    sel->n = 0;
    if (filter && *filter && (re = tn_regex_compile(&pool, filter, false, &err)) == NULL) {
        tn_buf_printf(r->body, "Invalid re2 regex: %s\n", err.msg);
        rc = 400;
    }
    for (size_t i = 0; rc == 0 && i < st->n; i++) {
        const struct tn_stat *s = &st->v[i];
        if (s->n_codes) {
            if (sel_add_codes(sel, st, s, re))
                rc = 500;
        } else if ((re == NULL || tn_regex_match(re, s->name, strlen(s->name))) &&
                   (!(used_only || s->lazy) || tn_stats_used(st, s)) && sel_add(sel, s)) {
            rc = 500;
        }
    }
    if (rc == 0) {
        qsort(sel->v, sel->n, sizeof(*sel->v), order);
        select_text(r, sel, re);
    }
    tn_pool_dispose(&pool);
    return rc;
}

/* --- /stats ---------------------------------------------------------------------- */

/* Gauges are summed per-shard deltas: a transiently negative sum prints signed. */
static void add_value(struct tn_buf *b, const struct tn_stats *st, const struct tn_stat *s)
{
    uint64_t v = tn_stats_value(st, s);
    if (s->kind == TN_STAT_GAUGE)
        tn_buf_printf(b, "%lld", (long long)v);
    else
        tn_buf_printf(b, "%llu", (unsigned long long)v);
}

/* Envoy's supported_quantiles. */
static const double quantiles[] = {0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100};
#define N_QUANTILES (sizeof(quantiles) / sizeof(quantiles[0]))

/* The q-quantile (0..1) of a bucketed histogram, interpolated linearly
 * inside the bucket it falls in (as Prometheus's histogram_quantile); the
 * +Inf bucket answers its lower bound. count > 0. */
static double quantile(const uint64_t buckets[TN_HIST_BUCKETS + 1], uint64_t count, double q)
{
    double rank = q * (double)count;
    size_t b = 0;
    while (b < TN_HIST_BUCKETS && (double)buckets[b] < rank)
        b++;
    if (q == 0) /* the lower bound of the first bucket that holds anything */
        while (b < TN_HIST_BUCKETS && buckets[b] == 0)
            b++;
    if (b == TN_HIST_BUCKETS)
        return tn_hist_bounds[TN_HIST_BUCKETS - 1];
    double lo = b ? tn_hist_bounds[b - 1] : 0, hi = tn_hist_bounds[b];
    uint64_t below = b ? buckets[b - 1] : 0, in = buckets[b] - below;
    if (in == 0)
        return lo;
    return lo + (hi - lo) * (rank - (double)below) / (double)in;
}

static void stats_text(struct tn__admin_req *r, const struct selection *sel)
{
    const struct tn_stats *st = r->ctx->stats;
    for (size_t i = 0; i < sel->n_text; i++) {
        tn_buf_printf(r->body, "%s: ", sel->text[i].name);
        tn_pbjson_string(r->body, sel->text[i].value, strlen(sel->text[i].value));
        tn_buf_addc(r->body, '\n');
    }
    for (size_t i = 0; i < sel->n; i++)
        if (sel->v[i]->kind != TN_STAT_HISTOGRAM) {
            tn_buf_printf(r->body, "%s: ", sel->v[i]->name);
            add_value(r->body, st, sel->v[i]);
            tn_buf_addc(r->body, '\n');
        }
    for (size_t i = 0; i < sel->n; i++) {
        uint64_t buckets[TN_HIST_BUCKETS + 1], count, sum;
        if (sel->v[i]->kind != TN_STAT_HISTOGRAM)
            continue;
        tn_stats_histogram(st, sel->v[i], buckets, &count, &sum);
        tn_buf_printf(r->body, "%s:", sel->v[i]->name);
        if (count == 0) {
            tn_buf_adds(r->body, " No recorded values\n");
            continue;
        }
        /* Envoy prints (interval,cumulative); tern keeps cumulative
         * histograms only, so the interval is nan, as Envoy prints an empty
         * interval. */
        for (size_t q = 0; q < N_QUANTILES; q++) {
            tn_buf_adds(r->body, " P");
            tn_buf_printf(r->body, "%g(nan,", quantiles[q]);
            tn_buf_printf(r->body, "%g)", quantile(buckets, count, quantiles[q] / 100));
        }
        tn_buf_addc(r->body, '\n');
    }
}

static void stats_json(struct tn__admin_req *r, const struct selection *sel)
{
    const struct tn_stats *st = r->ctx->stats;
    bool first = true, any_hist = false;
    tn_buf_adds(r->body, "{\"stats\":[");
    for (size_t i = 0; i < sel->n_text; i++) {
        tn_buf_adds(r->body, first ? "{\"name\":" : ",{\"name\":");
        first = false;
        tn_pbjson_string(r->body, sel->text[i].name, strlen(sel->text[i].name));
        tn_buf_adds(r->body, ",\"value\":");
        tn_pbjson_string(r->body, sel->text[i].value, strlen(sel->text[i].value));
        tn_buf_addc(r->body, '}');
    }
    for (size_t i = 0; i < sel->n; i++) {
        if (sel->v[i]->kind == TN_STAT_HISTOGRAM) {
            any_hist = true;
            continue;
        }
        tn_buf_adds(r->body, first ? "{\"name\":" : ",{\"name\":");
        first = false;
        tn_pbjson_string(r->body, sel->v[i]->name, strlen(sel->v[i]->name));
        tn_buf_adds(r->body, ",\"value\":");
        add_value(r->body, st, sel->v[i]);
        tn_buf_addc(r->body, '}');
    }
    if (any_hist) {
        /* Envoy's shape: {"histograms": {"supported_quantiles": [...],
         * "computed_quantiles": [{"name", "values": [{"interval",
         * "cumulative"}, ...]}]}}, null where there is no value */
        tn_buf_adds(r->body, first ? "{\"histograms\":{\"supported_quantiles\":["
                                   : ",{\"histograms\":{\"supported_quantiles\":[");
        for (size_t q = 0; q < N_QUANTILES; q++)
            tn_buf_printf(r->body, q ? ",%g" : "%g", quantiles[q]);
        tn_buf_adds(r->body, "],\"computed_quantiles\":[");
        bool hfirst = true;
        for (size_t i = 0; i < sel->n; i++) {
            uint64_t buckets[TN_HIST_BUCKETS + 1], count, sum;
            if (sel->v[i]->kind != TN_STAT_HISTOGRAM)
                continue;
            tn_stats_histogram(st, sel->v[i], buckets, &count, &sum);
            tn_buf_adds(r->body, hfirst ? "{\"name\":" : ",{\"name\":");
            hfirst = false;
            tn_pbjson_string(r->body, sel->v[i]->name, strlen(sel->v[i]->name));
            tn_buf_adds(r->body, ",\"values\":[");
            for (size_t q = 0; q < N_QUANTILES; q++) {
                tn_buf_adds(r->body, q ? ",{\"interval\":null,\"cumulative\":" : "{\"interval\":null,\"cumulative\":");
                if (count)
                    tn_buf_printf(r->body, "%g}", quantile(buckets, count, quantiles[q] / 100));
                else
                    tn_buf_adds(r->body, "null}");
            }
            tn_buf_adds(r->body, "]}");
        }
        tn_buf_adds(r->body, "]}}");
    }
    tn_buf_adds(r->body, "]}\n");
}

static void refresh(struct tn__admin_req *r)
{
    if (r->ctx->ops && r->ctx->ops->refresh_stats)
        r->ctx->ops->refresh_stats(r->ctx->arg);
}

int tn__admin_stats(struct tn__admin_req *r)
{
    refresh(r);
    struct selection sel = {0};
    const char *fmt = tn__admin_param(r, "format");
    int rc;
    if (fmt && strcmp(fmt, "json") != 0 && strcmp(fmt, "text") != 0 && strcmp(fmt, "prometheus") != 0) {
        tn_buf_printf(r->body, "usage: /stats?format=(json|prometheus|text), not '%s'\n", fmt);
        return 400;
    }
    if (fmt && strcmp(fmt, "prometheus") == 0)
        return tn__admin_prometheus(r);
    if ((rc = select_stats(r, &sel, by_name)) == 0) {
        rc = 200;
        if (fmt && strcmp(fmt, "json") == 0) {
            r->ctype = TN_ADMIN_JSON;
            stats_json(r, &sel);
        } else {
            stats_text(r, &sel);
        }
    }
    sel_dispose(&sel);
    return rc;
}

/* --- /stats/prometheus ------------------------------------------------------------- */

static const char *const prom_type[] = {
    [TN_STAT_COUNTER] = "counter",
    [TN_STAT_GAUGE] = "gauge",
    [TN_STAT_HISTOGRAM] = "histogram",
};

/* "{labels}" or "{labels,extra}" or "" when both are empty. */
static void prom_labels(struct tn_buf *b, const char *labels, const char *extra)
{
    if (*labels == '\0' && extra == NULL)
        return;
    tn_buf_printf(b, "{%s%s%s}", labels, *labels && extra ? "," : "", extra ? extra : "");
}

static void prom_histogram(struct tn__admin_req *r, const struct tn_stat *s)
{
    uint64_t buckets[TN_HIST_BUCKETS + 1], count, sum;
    char le[48];
    tn_stats_histogram(r->ctx->stats, s, buckets, &count, &sum);
    for (size_t b = 0; b <= TN_HIST_BUCKETS; b++) {
        if (b < TN_HIST_BUCKETS)
            snprintf(le, sizeof(le), "le=\"%.17g\"", tn_hist_bounds[b]);
        else
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        tn_buf_printf(r->body, "%s_bucket", s->prom_name);
        prom_labels(r->body, s->labels, le);
        tn_buf_printf(r->body, " %llu\n", (unsigned long long)buckets[b]);
    }
    tn_buf_printf(r->body, "%s_sum", s->prom_name);
    prom_labels(r->body, s->labels, NULL);
    tn_buf_printf(r->body, " %llu\n%s_count", (unsigned long long)sum, s->prom_name);
    prom_labels(r->body, s->labels, NULL);
    tn_buf_printf(r->body, " %llu\n", (unsigned long long)count);
}

static void prom_sample(struct tn__admin_req *r, const struct tn_stat *s)
{
    tn_buf_adds(r->body, s->prom_name);
    prom_labels(r->body, s->labels, NULL);
    tn_buf_addc(r->body, ' ');
    add_value(r->body, r->ctx->stats, s);
    tn_buf_addc(r->body, '\n');
}

int tn__admin_prometheus(struct tn__admin_req *r)
{
    refresh(r);
    struct selection sel = {0};
    int rc = select_stats(r, &sel, by_prom);
    if (rc == 0) {
        rc = 200;
        for (size_t i = 0; i < sel.n; i++) {
            const struct tn_stat *s = sel.v[i];
            if (i == 0 || strcmp(sel.v[i - 1]->prom_name, s->prom_name) != 0 || sel.v[i - 1]->kind != s->kind)
                tn_buf_printf(r->body, "# TYPE %s %s\n", s->prom_name, prom_type[s->kind]);
            if (s->kind == TN_STAT_HISTOGRAM)
                prom_histogram(r, s);
            else
                prom_sample(r, s);
        }
    }
    sel_dispose(&sel);
    return rc;
}
