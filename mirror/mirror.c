/* Request mirroring: shadow requests that share the primary's bytes, own
 * their lifetime, and are shed rather than ever slowing the primary. A
 * worker's shadows (struct tn_mirror_worker) are the router's per-worker
 * state in the filter registry; the router's worker_close hook ends them. */
#include "mirror/mirror.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "dataplane/upstream/cluster.h"
#include "dataplane/http/h1.h"
#include "dataplane/server/listener.h"
#include "dataplane/core/log.h"
#include "dataplane/http/stream.h"
#include "dataplane/upstream/conn_pool.h"
#include "dataplane/server/worker.h"
#include "filters/route.h"
#include "filters/router.h"

#define SUFFIX     "-shadow"
#define SUFFIX_LEN 7
#define FREE_MAX   1024 /* shadows kept for reuse per worker */

enum shadow_end {
    END_DONE = 0, /* the mirror answered */
    END_DROPPED,  /* shed: it could not keep up */
    END_FAILED,   /* connect failure, reset, timeout */
    END_RESET,    /* the client left before the request was complete */
};

struct tn_shadow {
    struct tn_ureq ureq;               /* first: the pool's callbacks get it */
    struct tn_shadow *next, **pprev;   /* the request's set; pprev NULL once detached */
    struct tn_shadow *wnext, **wpprev; /* the worker's live list, or its free list */
    struct tn_worker *w;
    struct tn_mirror_worker *mw; /* w's shadows (the router's state on w) */
    struct tn_cluster *cluster;  /* reference */
    struct tn_host *host;        /* reference */
    /* The head as the primary's head slices: head[0], then "-shadow" when
     * `suffix`, then head[1] (empty when the head is sent whole). */
    struct tn_slice head[2];
    struct tn_slices body; /* body waiting for a connection (the ring is kept across reuse) */
    struct tn_timer timeout;
    uint64_t start, timeout_ms;
    uint32_t st_dropped, st_failed; /* the connection manager's slots */
    size_t queued;                  /* bytes queued at the last look (the worker's sum has them) */
    char tag[40];                   /* the stream's "[C12][S3]", for logs after it is gone */
    bool suffix, chunked, req_end, sent, counted_rq;
    bool h2; /* the connection is an HTTP/2 stream: the head goes as a header list, the body unframed */
};

/* Cluster stats on the worker's shard. */
#define CS(sh, f) (sh)->w->shard, (sh)->cluster->stats.f

/* --- pure helpers -------------------------------------------------------- */

size_t tn_mirror_suffix_at(const char *host, size_t len)
{
    if (len > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', len);
        return close ? (size_t)(close - host) + 1 : len;
    }
    const char *colon = NULL;
    unsigned colons = 0;
    for (size_t i = 0; i < len; i++)
        if (host[i] == ':') {
            colon = host + i;
            colons++;
        }
    if (colons != 1)
        return len; /* no port, or a bare IPv6 address */
    for (const char *p = colon + 1; p < host + len; p++)
        if (*p < '0' || *p > '9')
            return len;
    return (size_t)(colon - host);
}

size_t tn_mirror_shadow_authority(const char *host, size_t len, char *out, size_t cap)
{
    if (len + SUFFIX_LEN > cap)
        return 0;
    size_t at = tn_mirror_suffix_at(host, len);
    memcpy(out, host, at);
    memcpy(out + at, SUFFIX, SUFFIX_LEN);
    memcpy(out + at + SUFFIX_LEN, host + at, len - at);
    return len + SUFFIX_LEN;
}

bool tn_mirror_sampled(uint32_t numerator, uint32_t denominator, uint64_t random)
{
    if (denominator == 0)
        return false;
    return random % denominator < numerator;
}

/* --- a shadow's life ------------------------------------------------------ */

static void on_timeout(struct tn_timer *t);
static const struct tn_ureq_ops shadow_ops;

static struct tn_shadow *shadow_get(struct tn_worker *w)
{
    struct tn_mirror_worker *mw = tn_worker_filter_state(w, &tn_router_factory);
    struct tn_shadow *sh = mw->free;
    if (sh) {
        mw->free = sh->wnext;
        mw->n_free--;
        struct tn_slices ring = sh->body;
        memset(sh, 0, sizeof(*sh));
        sh->body = ring;
    } else {
        sh = calloc(1, sizeof(*sh));
        if (sh == NULL)
            return NULL;
        tn_slices_init(&sh->body);
    }
    sh->w = w;
    sh->mw = mw;
    tn_timer_init(&sh->timeout, on_timeout);
    sh->wnext = mw->live;
    if (mw->live)
        mw->live->wpprev = &sh->wnext;
    mw->live = sh;
    sh->wpprev = &mw->live;
    mw->n_live++;
    return sh;
}

static void unlink_request(struct tn_shadow *sh)
{
    if (sh->pprev == NULL)
        return;
    *sh->pprev = sh->next;
    if (sh->next)
        sh->next->pprev = sh->pprev;
    sh->next = NULL;
    sh->pprev = NULL;
}

/* Ends a shadow: counts why, lets go of everything it holds and returns its
 * memory to the worker. */
static void shadow_end(struct tn_shadow *sh, enum shadow_end why, const char *reason)
{
    struct tn_worker *w = sh->w;
    struct tn_mirror_worker *mw = sh->mw;
    if (why == END_DROPPED)
        tn_stat_inc(w->shard, sh->st_dropped);
    else if (why == END_FAILED)
        tn_stat_inc(w->shard, sh->st_failed);
    if (why != END_DONE)
        TN_LOG(TN_LOG_DEBUG, mirror, "%s shadow to %s ended: %s", sh->tag, sh->cluster ? sh->cluster->name : "-",
               reason);
    unlink_request(sh);
    mw->queued -= sh->queued;
    if (sh->ureq.uc || sh->ureq.pending)
        tn_ureq_cancel(&sh->ureq);
    tn_timer_stop(&w->timers, &sh->timeout);
    if (sh->host) {
        tn_stat_dec(CS(sh, upstream_rq_active));
        atomic_fetch_sub(&sh->host->active_rq, 1);
        tn_host_unref(sh->host);
        sh->host = NULL;
    }
    if (sh->counted_rq)
        atomic_fetch_sub(&sh->cluster->rc_rq, 1);
    tn_slice_release(&sh->head[0]);
    tn_slice_release(&sh->head[1]);
    tn_slices_clear(&sh->body);
    if (sh->cluster)
        tn_cluster_unref(sh->cluster);
    sh->cluster = NULL;
    /* off the live list */
    *sh->wpprev = sh->wnext;
    if (sh->wnext)
        sh->wnext->wpprev = sh->wpprev;
    mw->n_live--;
    if (mw->n_free >= FREE_MAX || mw->closed) {
        tn_slices_dispose(&sh->body);
        free(sh);
        return;
    }
    sh->wnext = mw->free;
    sh->wpprev = NULL;
    mw->free = sh;
    mw->n_free++;
}

/* --- writing --------------------------------------------------------------- */

/* Shedding: a shadow that cannot keep up is dropped, never waited for.
 *
 * What a connection has queued in user space is not how far behind its peer
 * is: the kernel takes up to tcp_wmem's maximum (4 MiB by default) into the
 * socket and the peer's receive buffer, and how much depends on how far
 * autotuning went on that socket. So a mirror exactly as fast as the
 * primary can hold a few MiB more here than the primary does, while the
 * primary's own watermark paces the client. A shadow's high watermark is
 * therefore SHADOW_BUFFERS times its connection's buffer limit; and all the
 * shadows of a worker together hold at most WORKER_BUDGET, past which any
 * shadow above one buffer is dropped. Returns true when it was dropped. */
#define SHADOW_BUFFERS 4
#define WORKER_BUDGET  ((size_t)64 << 20)

static size_t track_queued(struct tn_shadow *sh)
{
    size_t q = sh->ureq.uc ? tn_uconn_write_queued(sh->ureq.uc) : sh->body.bytes;
    sh->mw->queued += q - sh->queued;
    sh->queued = q;
    return q;
}

static bool shed_if_above(struct tn_shadow *sh)
{
    size_t limit = sh->cluster->per_connection_buffer_limit;
    size_t q = track_queued(sh);
    if (q <= limit || (q <= SHADOW_BUFFERS * limit && sh->mw->queued <= WORKER_BUDGET))
        return false;
    shadow_end(sh, END_DROPPED, "the mirror's write side is above its high watermark");
    return true;
}

/* Writes one body slice (a reference of its own). 0, or -1 when the
 * connection failed (it reports that through on_reset later). */
static int write_body(struct tn_shadow *sh, const struct tn_slice *sl)
{
    struct tn_slice copy = tn_slice_of(sl->blk, sl->p, sl->len);
    if (!sh->chunked || sh->h2)
        return tn_uconn_write(sh->ureq.uc, NULL, 0, &copy, 1, NULL, 0);
    char pre[24];
    size_t pl = tn_h1_chunk_size(pre, sl->len);
    return tn_uconn_write(sh->ureq.uc, pre, pl, &copy, 1, "\r\n", 2);
}

static void end_request(struct tn_shadow *sh)
{
    if (sh->chunked && !sh->h2)
        tn_uconn_write(sh->ureq.uc, "0\r\n\r\n", 5, NULL, 0, NULL, 0);
    tn_uconn_request_done(sh->ureq.uc);
}

/* The connection is ours: the head, what body waited, the end if known. */
static void send_all(struct tn_shadow *sh)
{
    struct tn_slice h[2] = {tn_slice_of(sh->head[0].blk, sh->head[0].p, sh->head[0].len)};
    unsigned n = 1;
    if (sh->head[1].blk)
        h[n++] = tn_slice_of(sh->head[1].blk, sh->head[1].p, sh->head[1].len);
    sh->start = tn_worker_now(sh->w);
    sh->sent = true;
    int rc;
    if (tn_uconn_is_h2(sh->ureq.uc)) {
        /* the same head as a header list: the host line (with its suffix)
         * becomes :authority */
        sh->h2 = true;
        uv_buf_t parts[3] = {uv_buf_init((char *)h[0].p, h[0].len)};
        unsigned k = 1;
        if (sh->suffix)
            parts[k++] = uv_buf_init(SUFFIX, SUFFIX_LEN);
        if (n == 2)
            parts[k++] = uv_buf_init((char *)h[1].p, h[1].len);
        rc = tn_uconn_send_h1_head(sh->ureq.uc, parts, k, sh->req_end && sh->body.n == 0);
        for (unsigned i = 0; i < n; i++)
            tn_slice_release(&h[i]);
        if (rc) {
            shadow_end(sh, END_FAILED, "the head could not be sent as HTTP/2");
            return;
        }
    } else {
        rc = tn_uconn_write(sh->ureq.uc, NULL, 0, &h[0], 1, sh->suffix ? SUFFIX : NULL, sh->suffix ? SUFFIX_LEN : 0);
        if (rc == 0 && n == 2)
            rc = tn_uconn_write(sh->ureq.uc, NULL, 0, &h[1], 1, NULL, 0);
        else if (n == 2)
            tn_slice_release(&h[1]);
    }
    while (rc == 0 && sh->ureq.uc && sh->body.n) {
        struct tn_slice sl = tn_slices_shift(&sh->body);
        rc = write_body(sh, &sl);
        tn_slice_release(&sl);
    }
    tn_slices_clear(&sh->body);
    if (rc == 0 && sh->ureq.uc && sh->req_end)
        end_request(sh);
    track_queued(sh);
}

/* --- upstream events ------------------------------------------------------- */

static void on_ready(struct tn_ureq *q, struct tn_uconn *uc)
{
    (void)uc;
    send_all((struct tn_shadow *)q);
}

static void on_failure(struct tn_ureq *q, enum tn_pool_failure why)
{
    struct tn_shadow *sh = (struct tn_shadow *)q;
    if (why == TN_POOL_OVERFLOW)
        shadow_end(sh, END_DROPPED, "overflow");
    else
        shadow_end(sh, END_FAILED, why == TN_POOL_CONNECT_TIMEOUT ? "connect timeout" : "connection failure");
}

/* The mirror's answer counts in its cluster exactly as a primary's does. */
static void on_headers(struct tn_ureq *q, struct tn_response *resp)
{
    struct tn_shadow *sh = (struct tn_shadow *)q;
    const struct tn_cluster_stats *cs = &sh->cluster->stats;
    if (resp->status >= 100 && resp->status < 600) {
        const uint32_t slots[5] = {cs->upstream_rq_1xx, cs->upstream_rq_2xx, cs->upstream_rq_3xx, cs->upstream_rq_4xx,
                                   cs->upstream_rq_5xx};
        tn_stat_inc(sh->w->shard, slots[resp->status / 100 - 1]);
        tn_stat_inc(sh->w->shard, cs->upstream_rq_code + (uint32_t)(resp->status - 100));
    }
    tn_stat_inc(CS(sh, upstream_rq_completed));
    tn_stat_record(CS(sh, upstream_rq_time), tn_worker_now(sh->w) - sh->start);
}

static void on_data(struct tn_ureq *q, struct tn_slice *data, bool end)
{
    struct tn_shadow *sh = (struct tn_shadow *)q;
    tn_slice_release(data);
    if (end) {
        sh->ureq.uc = NULL; /* the pool has the connection back */
        shadow_end(sh, END_DONE, "done");
    }
}

static void on_reset(struct tn_ureq *q, enum tn_reset_reason why)
{
    struct tn_shadow *sh = (struct tn_shadow *)q;
    tn_stat_inc(CS(sh, upstream_rq_rx_reset));
    shadow_end(sh, END_FAILED, why == TN_RESET_PROTOCOL_ERROR ? "protocol error" : "connection reset");
}

static void on_timeout(struct tn_timer *t)
{
    struct tn_shadow *sh = (struct tn_shadow *)((char *)t - offsetof(struct tn_shadow, timeout));
    tn_stat_inc(CS(sh, upstream_rq_timeout));
    shadow_end(sh, END_FAILED, "timeout");
}

static const struct tn_ureq_ops shadow_ops = {
    .on_ready = on_ready,
    .on_failure = on_failure,
    .on_headers = on_headers,
    .on_data = on_data,
    .on_reset = on_reset,
};

/* --- starting -------------------------------------------------------------- */

/* The head's split for one request: where the host value sits in the
 * primary's head, and the shadow's base authority. */
struct head_info {
    const struct tn_slice *head;
    const char *hv; /* the primary's host value inside head, or NULL */
    size_t hl;
    const char *base; /* the authority the shadow is named after */
    size_t base_len;
};

static void find_host(struct head_info *hi)
{
    const char *p = hi->head->p, *e = p + hi->head->len;
    const char *eol = memchr(p, '\n', (size_t)(e - p));
    hi->hv = NULL;
    if (eol == NULL || (size_t)(e - eol) < 7 || memcmp(eol + 1, "host: ", 6) != 0)
        return;
    const char *v = eol + 7, *end = memchr(v, '\r', (size_t)(e - v));
    if (end == NULL)
        return;
    hi->hv = v;
    hi->hl = (size_t)(end - v);
}

/* Fills the shadow's head. The common case shares the primary's head block:
 * two slices around the point where "-shadow" goes, or the whole head. When
 * the primary's authority differs from the shadow's (auto_host_rewrite), a
 * head of its own is written. 0, or -1 when out of memory. */
static int shadow_head(struct tn_shadow *sh, const struct head_info *hi, bool suffix)
{
    const struct tn_slice *h = hi->head;
    if (hi->hv && hi->hl == hi->base_len && memcmp(hi->hv, hi->base, hi->hl) == 0) {
        if (!suffix) {
            sh->head[0] = tn_slice_of(h->blk, h->p, h->len);
            return 0;
        }
        size_t at = (size_t)(hi->hv - h->p) + tn_mirror_suffix_at(hi->hv, hi->hl);
        sh->head[0] = tn_slice_of(h->blk, h->p, at);
        sh->head[1] = tn_slice_of(h->blk, h->p + at, h->len - at);
        sh->suffix = true;
        return 0;
    }
    if (hi->hv == NULL)
        return -1;
    size_t before = (size_t)(hi->hv - h->p), after = h->len - before - hi->hl;
    struct tn_block *b = tn_block_new(h->len + hi->base_len + SUFFIX_LEN);
    if (b == NULL)
        return -1;
    memcpy(b->data, h->p, before);
    size_t al = suffix ? tn_mirror_shadow_authority(hi->base, hi->base_len, b->data + before, hi->base_len + SUFFIX_LEN)
                       : (memcpy(b->data + before, hi->base, hi->base_len), hi->base_len);
    memcpy(b->data + before + al, hi->hv + hi->hl, after);
    sh->head[0] = tn_slice_of(b, b->data, before + al + after);
    tn_block_unref(b);
    return 0;
}

/* The cluster a policy names for this request, or NULL (counted). */
static struct tn_wcluster *policy_cluster(struct tn_stream *s, const struct tn_mirror_policy *p)
{
    struct tn_worker *w = tn_stream_worker(s);
    const struct tn_http_stats *hs = &tn_stream_hcm(s)->stats;
    if (p->cluster)
        return tn_worker_cluster(w, p->cluster);
    struct tn_request *rq = tn_stream_request(s);
    const struct tn_header *h =
        tn_headers_find(rq->headers, rq->n_headers, p->cluster_header, strlen(p->cluster_header));
    char name[256];
    struct tn_wcluster *wc = NULL;
    if (h && h->value_len > 0 && h->value_len < sizeof(name)) {
        memcpy(name, h->value, h->value_len);
        name[h->value_len] = '\0';
        wc = tn_worker_cluster(w, name);
    }
    if (wc == NULL) {
        tn_stat_inc(w->shard, hs->mirror_no_cluster);
        TN_LOG(TN_LOG_DEBUG, mirror, "%s no mirror: %s %.*s", tn_stream_tag(s), h ? "unknown cluster in" : "no header",
               (int)(h ? h->value_len : strlen(p->cluster_header)), h ? h->value : p->cluster_header);
    }
    return wc;
}

static void start_one(struct tn_mirror *m, struct tn_stream *s, const struct tn_mirror_policy *p,
                      const struct head_info *hi, bool chunked, bool end_stream, uint64_t timeout_ms)
{
    struct tn_worker *w = tn_stream_worker(s);
    const struct tn_http_stats *hs = &tn_stream_hcm(s)->stats;
    struct tn_wcluster *wc = policy_cluster(s, p);
    if (wc == NULL)
        return;
    struct tn_cluster *c = wc->c;
    if (atomic_load(&c->rc_rq) >= c->thresholds[0].max_requests) {
        tn_stat_inc(w->shard, c->stats.upstream_rq_pending_overflow);
        tn_stat_inc(w->shard, hs->mirror_dropped);
        return;
    }
    struct tn_lb_context ctx = {0};
    struct tn_host *host = wc->hosts ? tn_lb_choose(c, wc->hosts, &wc->lb, &ctx, tn_worker_now(w)) : NULL;
    struct tn_hpool *pool = host ? tn_wcluster_pool(wc, host) : NULL;
    if (pool == NULL) {
        tn_stat_inc(w->shard, hs->mirror_failed);
        TN_LOG(TN_LOG_DEBUG, mirror, "%s no mirror: no healthy host in %s", tn_stream_tag(s), c->name);
        return;
    }
    struct tn_shadow *sh = shadow_get(w);
    if (sh == NULL) {
        tn_stat_inc(w->shard, hs->mirror_dropped);
        return;
    }
    sh->cluster = tn_cluster_ref(c);
    sh->st_dropped = hs->mirror_dropped;
    sh->st_failed = hs->mirror_failed;
    snprintf(sh->tag, sizeof(sh->tag), "%s", tn_stream_tag(s));
    sh->chunked = chunked;
    sh->req_end = end_stream;
    sh->timeout_ms = timeout_ms;
    if (shadow_head(sh, hi, !p->disable_shadow_host_suffix_append)) {
        shadow_end(sh, END_DROPPED, "no head");
        return;
    }
    atomic_fetch_add(&c->rc_rq, 1);
    sh->counted_rq = true;
    sh->host = tn_host_ref(host);
    atomic_fetch_add(&host->active_rq, 1);
    tn_stat_inc(w->shard, hs->mirror_requests);
    tn_stat_inc(CS(sh, upstream_rq_total));
    tn_stat_inc(CS(sh, upstream_rq_active));
    /* into the request's set: the router feeds it body until it detaches */
    sh->next = m->head;
    if (m->head)
        m->head->pprev = &sh->next;
    m->head = sh;
    sh->pprev = &m->head;
    if (end_stream && timeout_ms)
        tn_timer_start(&w->timers, &sh->timeout, timeout_ms);
    sh->ureq.ops = &shadow_ops;
    sh->ureq.head = tn_stream_request(s)->method_id == HTTP_HEAD;
    switch (tn_hpool_acquire(pool, &sh->ureq)) {
    case 0:
        send_all(sh);
        break;
    case 1:
        break;
    default:
        tn_stat_inc(CS(sh, upstream_rq_pending_overflow));
        shadow_end(sh, END_DROPPED, "overflow");
    }
}

void tn_mirror_start(struct tn_mirror *m, struct tn_stream *s, const struct tn_route *route,
                     const struct tn_slice *head, bool chunked, bool end_stream, uint64_t timeout_ms)
{
    struct tn_request *rq = tn_stream_request(s);
    if (route->n_mirrors == 0)
        return;
    /* CONNECT and upgrades are tunnels, not requests to replay (the
     * connection manager refuses upgrades today; this keeps it so) */
    if (rq->method_id == HTTP_CONNECT || tn_headers_find(rq->headers, rq->n_headers, "upgrade", 7))
        return;
    struct head_info hi = {.head = head};
    find_host(&hi);
    hi.base = route->host_rewrite_literal ? route->host_rewrite_literal : rq->host;
    hi.base_len = route->host_rewrite_literal ? strlen(route->host_rewrite_literal) : rq->host_len;
    struct tn_worker *w = tn_stream_worker(s);
    for (size_t i = 0; i < route->n_mirrors; i++) {
        const struct tn_mirror_policy *p = &route->mirrors[i];
        if (!tn_mirror_sampled(p->numerator, p->denominator, tn_worker_random(w)))
            continue;
        start_one(m, s, p, &hi, chunked, end_stream, timeout_ms);
    }
}

/* Each slice is checked before it is written, not after: what tells a
 * mirror that cannot keep up is that it is still above its mark when the
 * primary has drained and the client's next bytes arrive. The queue is
 * bounded by the mark plus one slice. */
void tn_mirror_body(struct tn_mirror *m, const struct tn_slice *data, bool end_stream)
{
    for (struct tn_shadow *sh = m->head, *next; sh; sh = next) {
        next = sh->next;
        if (data->len) {
            if (sh->ureq.uc && sh->sent) {
                if (shed_if_above(sh))
                    continue;
                if (write_body(sh, data))
                    continue; /* the connection reports its failure */
            } else if (sh->body.bytes >= sh->cluster->per_connection_buffer_limit ||
                       tn_slices_push(&sh->body, tn_slice_of(data->blk, data->p, data->len))) {
                shadow_end(sh, END_DROPPED, "more body waiting for a connection than the buffer limit");
                continue;
            } else {
                track_queued(sh);
            }
        }
        if (end_stream) {
            sh->req_end = true;
            if (sh->timeout_ms)
                tn_timer_start(&sh->w->timers, &sh->timeout, sh->timeout_ms);
            if (sh->ureq.uc && sh->sent)
                end_request(sh);
        }
    }
}

void tn_mirror_detach(struct tn_mirror *m)
{
    while (m->head) {
        struct tn_shadow *sh = m->head;
        unlink_request(sh);
        if (!sh->req_end)
            shadow_end(sh, END_RESET, "the client left before the request ended");
    }
}

void tn_mirror_worker_close(struct tn_mirror_worker *mw)
{
    mw->closed = true;
    while (mw->live)
        shadow_end(mw->live, END_RESET, "the worker stops");
    while (mw->free) {
        struct tn_shadow *sh = mw->free;
        mw->free = sh->wnext;
        tn_slices_dispose(&sh->body);
        free(sh);
    }
    mw->n_free = 0;
}
