/* Background refreshes (stale-while-revalidate): the client got the stale
 * entry at once; one request per key goes upstream on its own, with the
 * entry's validators, and its answer refreshes the store (a 304 renews the
 * entry, a storable 200 replaces it). It owns itself: the stream that
 * started it may be long gone. At most one refresh per key runs (the fill
 * claim), and a worker's refreshes are bounded. An HTTP/2 cluster gets
 * the same request as a header list (tn_uconn_send_h1_head). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_int.h"
#include "cache/policy.h"
#include "cache/store.h"
#include "dataplane/upstream/cluster.h"
#include "dataplane/http/h1.h"
#include "dataplane/core/log.h"
#include "dataplane/core/pool.h"
#include "dataplane/upstream/conn_pool.h"
#include "dataplane/server/worker.h"

#define REFRESH_TIMEOUT_MS 15000
#define MAX_REFRESHES      64 /* in flight per worker */

struct refresh {
    struct tn_ureq ureq; /* first: the pool's callbacks get it */
    struct tn_worker *w;
    const struct tn_cache_config *cfg;
    struct tn_cache_per_route pr;
    bool has_pr;
    struct tn_cache_entry *old; /* reference */
    struct tn_cluster *cluster; /* reference */
    struct tn_host *host;       /* reference */
    struct tn_pool pool;        /* head, copied response headers */
    struct tn_block *head;
    size_t head_len;
    int status;
    bool storing, done;
    struct tn_cache_meta meta;
    struct tn_header *hdrs;
    size_t n_hdrs;
    struct tn_slices body;
    struct tn_timer timer;
    int64_t request_time;
    uint64_t purge_gen;
};

static _Thread_local unsigned in_flight;

static void finish(struct refresh *f)
{
    if (f->done)
        return;
    f->done = true;
    tn_timer_stop(&f->w->timers, &f->timer);
    if (f->ureq.uc || f->ureq.pending)
        tn_ureq_cancel(&f->ureq);
    tn_cache_fill_release(f->cfg->store, f->old->hash_lo);
    atomic_fetch_sub(&f->cluster->rc_rq, 1);
    atomic_fetch_sub(&f->host->active_rq, 1);
    tn_stat_dec(f->w->shard, f->cluster->stats.upstream_rq_active);
    tn_slices_dispose(&f->body);
    if (f->head)
        tn_block_unref(f->head);
    tn_cache_entry_unref(f->old);
    tn_host_unref(f->host);
    tn_cluster_unref(f->cluster);
    tn_pool_dispose(&f->pool);
    in_flight--;
    free(f);
}

static struct refresh *of(struct tn_ureq *q)
{
    return (struct refresh *)q;
}

static void on_ready(struct tn_ureq *q, struct tn_uconn *uc)
{
    struct refresh *f = of(q);
    if (tn_uconn_is_h2(uc)) {
        /* the same GET as a header list, no body */
        uv_buf_t part = uv_buf_init(f->head->data, f->head_len);
        if (tn_uconn_send_h1_head(uc, &part, 1, true))
            finish(f);
        return;
    }
    struct tn_slice h = tn_slice_of(f->head, f->head->data, f->head_len);
    if (tn_uconn_write(uc, NULL, 0, &h, 1, NULL, 0) == 0 && f->ureq.uc)
        tn_uconn_request_done(uc);
}

static void on_failure(struct tn_ureq *q, enum tn_pool_failure why)
{
    (void)why;
    of(q)->ureq.pending = false;
    finish(of(q));
}

static void on_reset(struct tn_ureq *q, enum tn_reset_reason why)
{
    (void)why;
    finish(of(q));
}

static void store(struct refresh *f, const struct tn_header *hdrs, size_t n, const char *body, size_t body_len,
                  const struct tn_slices *slices)
{
    struct tn_cache_entry *old = f->old;
    uint64_t now_ms = tn_worker_wall_ms(f->w);
    struct tn_cache_entry_spec sp = {
        .key = old->key, .key_len = old->key_len, .host = old->host, .host_len = old->host_len, .path = old->path,
        .path_len = old->path_len, .vary = old->vary, .n_vary = old->n_vary, .meta = &f->meta, .headers = hdrs,
        .n_headers = n, .body_len = body_len, .now_ms = now_ms,
        .expire_ms = tn_cache_expire_ms(f->cfg, f->has_pr ? &f->pr : NULL, &f->meta, now_ms)};
    struct tn_cache_entry *e = tn_cache_entry_new(f->cfg->store, &sp);
    if (e == NULL)
        return;
    if (body)
        memcpy((char *)e->body, body, body_len);
    for (size_t i = 0, at = 0; slices && i < slices->n; i++) {
        const struct tn_slice *sl = tn_slices_at((struct tn_slices *)slices, i);
        memcpy((char *)e->body + at, sl->p, sl->len);
        at += sl->len;
    }
    if (tn_cache_insert(e, f->purge_gen))
        TN_LOG(TN_LOG_DEBUG, cache, "refreshed %.*s in the background", (int)old->path_len, old->path);
}

static void on_headers(struct tn_ureq *q, struct tn_response *resp)
{
    struct refresh *f = of(q);
    struct tn_cache_entry *old = f->old;
    f->status = resp->status;
    tn_stat_inc(f->w->shard, f->cluster->stats.upstream_rq_total);
    const struct tn_header *req = NULL; /* the request had no Authorization: it was stored */
    if (resp->status == 304) {
        /* the stored headers, updated by the 304's */
        size_t n = 0, n_meta = 0;
        struct tn_header *hv = tn_pool_alloc(&f->pool, (old->n_headers + resp->n_headers + 1) * sizeof(*hv));
        if (hv)
            n = tn_cache_merge_304(old->headers, old->n_headers, resp->headers, resp->n_headers, hv, &n_meta);
        if (hv && tn_cache_storable(f->cfg, f->has_pr ? &f->pr : NULL, "GET", 3, req, 0, old->meta.status, hv,
                                    n_meta, f->request_time, (int64_t)(tn_worker_wall_ms(f->w) / 1000),
                                    &f->meta) == TN_STORE_OK)
            store(f, hv, n, old->body, old->body_len, NULL);
        return;
    }
    if (resp->status == 404 || resp->status == 410)
        tn_cache_kill(old); /* gone at the origin */
    if (resp->content_length > 0 && (uint64_t)resp->content_length > f->cfg->max_entry_bytes)
        return;
    if (tn_headers_find(resp->headers, resp->n_headers, "set-cookie", 10))
        return;
    if (tn_cache_storable(f->cfg, f->has_pr ? &f->pr : NULL, "GET", 3, req, 0, resp->status, resp->headers,
                          resp->n_headers, f->request_time, (int64_t)(tn_worker_wall_ms(f->w) / 1000),
                          &f->meta) != TN_STORE_OK)
        return;
    f->hdrs = tn_pool_alloc(&f->pool, (resp->n_headers + 1) * sizeof(*f->hdrs));
    for (size_t i = 0; f->hdrs && i < resp->n_headers; i++) {
        const struct tn_header *h = &resp->headers[i];
        if (!tn_cache_header_stored(h))
            continue;
        f->hdrs[f->n_hdrs++] = (struct tn_header){.name = tn_pool_strndup(&f->pool, h->name, h->name_len),
                                                  .name_len = h->name_len,
                                                  .value = tn_pool_strndup(&f->pool, h->value, h->value_len),
                                                  .value_len = h->value_len};
    }
    f->storing = f->hdrs != NULL;
    if (f->storing && resp->end_stream) {
        store(f, f->hdrs, f->n_hdrs, NULL, 0, NULL);
        f->storing = false;
    }
}

static void on_data(struct tn_ureq *q, struct tn_slice *data, bool end)
{
    struct refresh *f = of(q);
    if (f->storing && data->len) {
        if (f->body.bytes + data->len > f->cfg->max_entry_bytes ||
            tn_slices_push(&f->body, tn_slice_of(data->blk, data->p, data->len))) {
            f->storing = false;
            tn_slices_clear(&f->body);
        }
    }
    tn_slice_release(data);
    if (!end)
        return;
    if (f->storing)
        store(f, f->hdrs, f->n_hdrs, NULL, f->body.bytes, &f->body);
    f->ureq.uc = NULL; /* the connection went back to its pool */
    finish(f);
}

static void on_timeout(struct tn_timer *t)
{
    struct refresh *f = (struct refresh *)((char *)t - offsetof(struct refresh, timer));
    tn_stat_inc(f->w->shard, f->cluster->stats.upstream_rq_timeout);
    finish(f);
}

static const struct tn_ureq_ops refresh_ops = {
    .on_ready = on_ready,
    .on_failure = on_failure,
    .on_headers = on_headers,
    .on_data = on_data,
    .on_reset = on_reset,
};

/* "GET path HTTP/1.1", the Host, the client's headers but its conditions,
 * range and framing, then the entry's validators. */
static int build_head(struct refresh *f, const struct tn_header *req, size_t n_req)
{
    const struct tn_cache_entry *e = f->old;
    size_t cap = 256 + e->path_len + e->host_len + sizeof(e->meta.etag);
    for (size_t i = 0; i < n_req; i++)
        cap += req[i].name_len + req[i].value_len + 4;
    f->head = tn_block_new(cap);
    if (f->head == NULL)
        return -1;
    char *p = f->head->data;
    size_t at = 0;
    at += (size_t)snprintf(p, cap, "GET %.*s HTTP/1.1\r\n", (int)e->path_len, e->path);
    if (tn_h1_put_header(p, cap, &at, "host", 4, e->host, e->host_len))
        return -1;
    static const char *const drop[] = {"if-none-match", "if-modified-since", "if-match", "if-unmodified-since",
                                       "if-range", "range", "content-length", "transfer-encoding", "expect"};
    for (size_t i = 0; i < n_req; i++) {
        bool skip = false;
        for (size_t j = 0; j < sizeof(drop) / sizeof(drop[0]) && !skip; j++)
            skip = req[i].name_len == strlen(drop[j]) && memcmp(req[i].name, drop[j], req[i].name_len) == 0;
        if (!skip && tn_h1_put_header(p, cap, &at, req[i].name, req[i].name_len, req[i].value, req[i].value_len))
            return -1;
    }
    if (e->meta.etag[0] && tn_h1_put_header(p, cap, &at, "if-none-match", 13, e->meta.etag, strlen(e->meta.etag)))
        return -1;
    if (e->meta.last_modified >= 0) {
        char d[30];
        tn_http_date_format(e->meta.last_modified, d);
        if (tn_h1_put_header(p, cap, &at, "if-modified-since", 17, d, 29))
            return -1;
    }
    if (at + 2 > cap)
        return -1;
    p[at++] = '\r';
    p[at++] = '\n';
    f->head_len = at;
    return 0;
}

bool tn_cache_refresh_start(struct tn_worker *w, const struct tn_cache_config *cfg, const struct tn_cache_per_route *pr,
                            const char *cluster, struct tn_cache_entry *old, const struct tn_header *req, size_t n_req)
{
    bool busy;
    if (cluster == NULL || in_flight >= MAX_REFRESHES)
        return false;
    struct tn_wcluster *wc = tn_worker_cluster(w, cluster);
    if (wc == NULL || wc->hosts == NULL)
        return false;
    struct tn_cluster *c = wc->c;
    if (atomic_load(&c->rc_rq) >= c->thresholds[0].max_requests)
        return false;
    struct tn_lb_context ctx = {0};
    struct tn_host *host = tn_lb_choose(c, wc->hosts, &wc->lb, &ctx, tn_worker_now(w));
    struct tn_hpool *pool = host ? tn_wcluster_pool(wc, host) : NULL;
    if (pool == NULL)
        return false;
    if (!tn_cache_fill_claim(cfg->store, old->hash_lo, &busy))
        return false; /* a refresh or fill of the key is under way */
    struct refresh *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        tn_cache_fill_release(cfg->store, old->hash_lo);
        return false;
    }
    f->w = w;
    f->cfg = cfg;
    if (pr)
        f->pr = *pr, f->has_pr = true;
    tn_cache_entry_ref(old);
    f->old = old;
    f->cluster = tn_cluster_ref(c);
    f->host = tn_host_ref(host);
    tn_pool_init(&f->pool);
    tn_slices_init(&f->body);
    tn_timer_init(&f->timer, on_timeout);
    f->request_time = (int64_t)(tn_worker_wall_ms(w) / 1000);
    f->purge_gen = tn_cache_purge_gen(cfg->store);
    atomic_fetch_add(&c->rc_rq, 1);
    atomic_fetch_add(&host->active_rq, 1);
    tn_stat_inc(w->shard, c->stats.upstream_rq_active);
    in_flight++;
    if (build_head(f, req, n_req)) {
        finish(f);
        return false;
    }
    tn_timer_start(&w->timers, &f->timer, REFRESH_TIMEOUT_MS);
    f->ureq.ops = &refresh_ops;
    switch (tn_hpool_acquire(pool, &f->ureq)) {
    case 0:
        on_ready(&f->ureq, f->ureq.uc);
        break;
    case 1:
        break;
    default:
        tn_stat_inc(w->shard, c->stats.upstream_rq_pending_overflow);
        finish(f);
        return false;
    }
    return true;
}
