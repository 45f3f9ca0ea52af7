#include "dataplane/upstream.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "dataplane/cluster.h"
#include "dataplane/h1.h"
#include "dataplane/log.h"

enum uc_state {
    UC_CONNECTING = 0,
    UC_IDLE,
    UC_BUSY,
    UC_CLOSED,
};

struct tn_uconn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    struct tn_hpool *pool;
    struct tn_uconn *next_idle;
    enum uc_state state;
    struct tn_ureq *req;
    http_parser parser;
    struct tn_h1_head head;
    struct tn_outq out;
    struct tn_timer timer; /* connect timeout, then idle timeout */
    struct tn_block *rblk, *cur_blk;
    unsigned n_requests;
    uint64_t opened; /* uv_now when the connect started */
    struct sockaddr_storage local; /* the connection's own address (%UPSTREAM_LOCAL_ADDRESS%) */
    bool remote_closed, parser_reset, reading, read_paused, req_written, resp_done, resp_started, in_1xx, counted,
        in_trailers;
};

static http_parser_settings settings;

/* Cluster stats on the worker's shard. */
#define US(p, f) (p)->wc->w->shard, (p)->wc->c->stats.f

static struct tn_worker *worker_of(struct tn_hpool *p)
{
    return p->wc->w;
}

static void pool_unref(struct tn_hpool *p)
{
    if (--p->refcnt)
        return;
    tn_host_unref(p->host);
    tn_wcluster_unref(p->wc);
    free(p);
}

struct tn_hpool *tn_hpool_new(struct tn_wcluster *wc, struct tn_host *h)
{
    struct tn_hpool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->host = tn_host_ref(h);
    p->wc = wc;
    tn_wcluster_ref(wc);
    p->refcnt = 1;
    return p;
}

/* --- connection lifecycle ----------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
    struct tn_uconn *uc = h->data;
    struct tn_hpool *p = uc->pool;
    tn_h1_head_dispose(&uc->head);
    free(uc);
    pool_unref(p);
}

static void remove_idle(struct tn_uconn *uc)
{
    struct tn_uconn **pp = &uc->pool->idle;
    while (*pp && *pp != uc)
        pp = &(*pp)->next_idle;
    if (*pp)
        *pp = uc->next_idle;
    uc->next_idle = NULL;
}

static void uc_close(struct tn_uconn *uc)
{
    struct tn_hpool *p = uc->pool;
    if (uc->state == UC_CLOSED)
        return;
    if (uc->state == UC_IDLE)
        remove_idle(uc);
    if (uc->state == UC_CONNECTING)
        p->n_connecting--;
    uc->state = UC_CLOSED;
    p->n_conns--;
    atomic_fetch_sub(&p->wc->c->rc_cx, 1);
    tn_stat_dec(US(p, upstream_cx_active));
    tn_stat_inc(US(p, upstream_cx_destroy));
    tn_stat_inc(p->wc->w->shard, uc->remote_closed ? p->wc->c->stats.upstream_cx_destroy_remote
                                                   : p->wc->c->stats.upstream_cx_destroy_local);
    tn_timer_stop(&worker_of(p)->timers, &uc->timer);
    tn_outq_dispose(&uc->out);
    if (uc->rblk)
        tn_block_unref(uc->rblk);
    uc->rblk = NULL;
    uc->req = NULL;
    uv_close((uv_handle_t *)&uc->tcp, on_closed);
}

/* The exchange failed: the request hears of it, the connection is gone. */
static void uc_fail(struct tn_uconn *uc, enum tn_reset_reason why)
{
    struct tn_ureq *r = uc->req;
    uc->req = NULL;
    uc_close(uc);
    if (r) {
        r->uc = NULL;
        r->ops->on_reset(r, why);
    }
}

/* The first waiting request, taken off the queue; NULL if none. */
static struct tn_ureq *pend_pop(struct tn_hpool *p)
{
    struct tn_ureq *r = p->pend_head;
    if (r == NULL)
        return NULL;
    p->pend_head = r->next;
    if (p->pend_head == NULL)
        p->pend_tail = NULL;
    p->n_pending--;
    atomic_fetch_sub(&p->wc->c->rc_pending, 1);
    tn_stat_dec(US(p, upstream_rq_pending_active));
    r->pending = false;
    return r;
}

/* A connection attempt failed: requests waiting for it fail, as many as
 * no other connection attempt will serve. */
static void fail_waiting(struct tn_hpool *p, enum tn_pool_failure why)
{
    while (p->pend_head && p->n_connecting < p->n_pending) {
        struct tn_ureq *r = pend_pop(p);
        r->ops->on_failure(r, why);
    }
}

static void on_idle_timeout(struct tn_timer *t)
{
    struct tn_uconn *uc = (struct tn_uconn *)((char *)t - offsetof(struct tn_uconn, timer));
    if (uc->state == UC_CONNECTING) {
        struct tn_hpool *p = uc->pool;
        TN_LOG(TN_LOG_DEBUG, pool, "connect timeout to %s", p->host->addr_text);
        tn_stat_inc(US(p, upstream_cx_connect_timeout));
        uc_close(uc);
        fail_waiting(p, TN_POOL_CONNECT_TIMEOUT);
        return;
    }
    tn_stat_inc(US(uc->pool, upstream_cx_idle_timeout));
    uc_close(uc);
}

static void read_start(struct tn_uconn *uc);

/* Hands a ready connection to the next waiting request, or parks it. */
static void uc_release(struct tn_uconn *uc)
{
    struct tn_hpool *p = uc->pool;
    struct tn_cluster *c = p->wc->c;
    uc->req = NULL;
    /* a pause was the finished request's backpressure, not the connection's:
     * left set, the next request here would never read its answer */
    uc->read_paused = false;
    if (p->retired) {
        uc_close(uc);
        return;
    }
    if (c->max_requests_per_connection && uc->n_requests >= c->max_requests_per_connection) {
        uc_close(uc);
        return;
    }
    if (p->pend_head) {
        struct tn_ureq *r = pend_pop(p);
        uc->state = UC_BUSY;
        uc->req = r;
        r->uc = uc;
        uc->n_requests++;
        uc->req_written = uc->resp_done = uc->resp_started = false;
        uc->in_1xx = uc->in_trailers = false;
        tn_timer_stop(&worker_of(p)->timers, &uc->timer);
        read_start(uc);
        r->ops->on_ready(r, uc);
        return;
    }
    uc->state = UC_IDLE;
    uc->next_idle = p->idle;
    p->idle = uc;
    read_start(uc); /* notice a close while idle */
    if (c->idle_timeout_ms)
        tn_timer_start(&worker_of(p)->timers, &uc->timer, c->idle_timeout_ms);
}

/* --- reading the response ------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct tn_uconn *uc = h->data;
    (void)hint;
    if (uc->rblk == NULL)
        uc->rblk = tn_block_new(TN_BLOCK_SIZE);
    *buf = uc->rblk ? uv_buf_init(uc->rblk->data, uc->rblk->cap) : uv_buf_init(NULL, 0);
}

static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
    struct tn_uconn *uc = h->data;
    (void)buf;
    if (n == 0)
        return;
    if (n < 0) {
        uc->remote_closed = true;
        if (uc->state == UC_BUSY && uc->resp_started && n == UV_EOF) {
            /* a close-delimited body ends here, anything else is cut short */
            http_parser_execute(&uc->parser, &settings, NULL, 0);
            if (uc->state == UC_BUSY && uc->req)
                uc_fail(uc, TN_RESET_CONNECTION_TERMINATION);
            return;
        }
        if (uc->state == UC_BUSY)
            uc_fail(uc, TN_RESET_CONNECTION_TERMINATION);
        else
            uc_close(uc);
        return;
    }
    if (uc->state != UC_BUSY) {
        /* bytes nobody asked for: the connection is not reusable */
        uc_close(uc);
        return;
    }
    struct tn_block *blk = uc->rblk;
    uc->rblk = NULL;
    uc->cur_blk = blk;
    if (uc->parser_reset) {
        /* a new response: reset here, never inside the previous one's
         * callbacks (a request may take the connection from within them) */
        uc->parser_reset = false;
        http_parser_init(&uc->parser, HTTP_RESPONSE);
        uc->parser.data = uc;
    }
    size_t used = http_parser_execute(&uc->parser, &settings, blk->data, (size_t)n);
    uc->cur_blk = NULL;
    enum http_errno e = HTTP_PARSER_ERRNO(&uc->parser);
    if (uc->state == UC_BUSY && e != HPE_OK && e != HPE_PAUSED) {
        TN_LOG(TN_LOG_DEBUG, pool, "bad response from %s: %s", uc->pool->host->addr_text, http_errno_description(e));
        uc_fail(uc, TN_RESET_PROTOCOL_ERROR);
    } else if (e == HPE_PAUSED) {
        http_parser_pause(&uc->parser, 0);
        if (used < (size_t)n && uc->state == UC_BUSY)
            uc_fail(uc, TN_RESET_PROTOCOL_ERROR); /* data after the response */
        else if (used < (size_t)n && uc->state == UC_IDLE)
            uc_close(uc);
    }
    tn_block_unref(blk);
}

static void read_start(struct tn_uconn *uc)
{
    if (!uc->reading && !uc->read_paused && uc->state != UC_CLOSED &&
        uv_read_start((uv_stream_t *)&uc->tcp, on_alloc, on_read) == 0)
        uc->reading = true;
}

static int on_message_begin(http_parser *p)
{
    struct tn_uconn *uc = p->data;
    tn_h1_head_reset(&uc->head);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct tn_uconn *uc = p->data;
    if (uc->resp_started && !uc->in_trailers) {
        /* a chunked body's trailers: the head was handed over long ago */
        uc->in_trailers = true;
        tn_h1_head_reset(&uc->head);
    }
    return tn_h1_head_field(&uc->head, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct tn_uconn *uc = p->data;
    return tn_h1_head_value(&uc->head, at, n);
}

static int on_headers_complete(http_parser *p)
{
    struct tn_uconn *uc = p->data;
    struct tn_h1_head *hd = &uc->head;
    struct tn_ureq *r = uc->req;
    if (p->status_code < 200) {
        uc->in_1xx = true; /* 100 Continue and other interim answers are dropped */
        return 0;
    }
    if (r == NULL || tn_h1_head_finish(hd))
        return -1;
    const struct tn_header *conn = tn_headers_find(hd->h, hd->n, "connection", 10);
    size_t j = 0;
    for (size_t i = 0; i < hd->n; i++) {
        const struct tn_header *h = &hd->h[i];
        if (tn_h1_hop_by_hop(h, conn) || (h->name_len == 14 && memcmp(h->name, "content-length", 14) == 0))
            continue;
        hd->h[j++] = *h;
    }
    uc->resp_started = true;
    bool no_body = r->head || p->status_code == 204 || p->status_code == 304;
    struct tn_response resp = {
        .status = p->status_code,
        .headers = hd->h,
        .n_headers = j,
        .content_length = (p->flags & F_CONTENTLENGTH) ? (int64_t)p->content_length : -1,
        .end_stream = no_body || ((p->flags & F_CONTENTLENGTH) && p->content_length == 0),
    };
    if (r->head && (p->flags & F_CONTENTLENGTH))
        resp.content_length = (int64_t)p->content_length;
    r->ops->on_headers(r, &resp);
    return no_body ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct tn_uconn *uc = p->data;
    struct tn_ureq *r = uc->req;
    if (r == NULL)
        return -1;
    struct tn_slice sl = tn_slice_of(uc->cur_blk, at, n);
    r->ops->on_data(r, &sl, false);
    return uc->state == UC_BUSY && uc->req == r ? 0 : -1;
}

static int on_message_complete(http_parser *p)
{
    struct tn_uconn *uc = p->data;
    if (uc->in_1xx) {
        uc->in_1xx = uc->in_trailers = false;
        return 0;
    }
    struct tn_ureq *r = uc->req;
    bool keep = http_should_keep_alive(p);
    if (uc->in_trailers) {
        uc->in_trailers = false;
        if (tn_h1_head_finish(&uc->head))
            return -1;
        if (r && r->ops->on_trailers)
            r->ops->on_trailers(r, uc->head.h, uc->head.n);
        if (uc->req != r || uc->state != UC_BUSY)
            return -1; /* the owner gave the request up */
    }
    uc->resp_done = true;
    uc->parser_reset = true;
    http_parser_pause(p, 1);
    if (r) {
        r->uc = NULL;
        uc->req = NULL;
        struct tn_slice none = {0};
        if (keep && uc->req_written)
            uc_release(uc);
        else
            uc_close(uc);
        r->ops->on_data(r, &none, true);
    }
    return 0;
}

const struct sockaddr_storage *tn_uconn_local(const struct tn_uconn *uc)
{
    return &uc->local;
}

/* --- connecting ----------------------------------------------------------- */

static void on_out_error(struct tn_outq *q, int status)
{
    struct tn_uconn *uc = q->data;
    (void)status;
    if (uc->state == UC_BUSY)
        uc_fail(uc, TN_RESET_CONNECTION_TERMINATION);
    else
        uc_close(uc);
}

static void on_out_low(struct tn_outq *q)
{
    struct tn_uconn *uc = q->data;
    if (uc->req && uc->req->ops->on_write_low)
        uc->req->ops->on_write_low(uc->req);
}

static void on_connected(uv_connect_t *creq, int status)
{
    struct tn_uconn *uc = creq->data;
    struct tn_hpool *p = uc->pool;
    if (uc->state == UC_CLOSED)
        return;
    p->n_connecting--;
    if (status < 0) {
        TN_LOG(TN_LOG_DEBUG, pool, "connect to %s failed: %s", p->host->addr_text, uv_strerror(status));
        tn_stat_inc(US(p, upstream_cx_connect_fail));
        p->n_connecting++; /* uc_close counts it out */
        uc_close(uc);
        fail_waiting(p, TN_POOL_CONNECT_FAILURE);
        return;
    }
    uv_tcp_nodelay(&uc->tcp, 1);
    int alen = sizeof(uc->local);
    if (uv_tcp_getsockname(&uc->tcp, (struct sockaddr *)&uc->local, &alen))
        uc->local.ss_family = 0;
    tn_stat_record(US(p, upstream_cx_connect_ms), uv_now(&worker_of(p)->loop) - uc->opened);
    uc_release(uc);
}

static struct tn_uconn *uc_open(struct tn_hpool *p)
{
    struct tn_worker *w = worker_of(p);
    struct tn_cluster *c = p->wc->c;
    struct tn_uconn *uc = calloc(1, sizeof(*uc));
    if (uc == NULL)
        return NULL;
    uv_tcp_init(&w->loop, &uc->tcp);
    uc->tcp.data = uc;
    uc->connect.data = uc;
    uc->pool = p;
    p->refcnt++;
    p->n_conns++;
    p->n_connecting++;
    atomic_fetch_add(&c->rc_cx, 1);
    tn_stat_inc(US(p, upstream_cx_total));
    tn_stat_inc(US(p, upstream_cx_active));
    tn_stat_inc(US(p, upstream_cx_http1_total));
    uc->opened = uv_now(&w->loop);
    uc->state = UC_CONNECTING;
    http_parser_init(&uc->parser, HTTP_RESPONSE);
    uc->parser.data = uc;
    tn_h1_head_init(&uc->head, 1024 * 1024);
    tn_outq_init(&uc->out, (uv_stream_t *)&uc->tcp, c->per_connection_buffer_limit, uc);
    uc->out.on_error = on_out_error;
    uc->out.on_low = on_out_low;
    tn_outq_gather(&uc->out, &w->flusher);
    tn_timer_init(&uc->timer, on_idle_timeout);
    int rc = uv_tcp_connect(&uc->connect, &uc->tcp, (const struct sockaddr *)&p->host->sa, on_connected);
    if (rc < 0) {
        TN_LOG(TN_LOG_DEBUG, pool, "connect to %s: %s", p->host->addr_text, uv_strerror(rc));
        uc_close(uc);
        return NULL;
    }
    if (c->connect_timeout_ms)
        tn_timer_start(&w->timers, &uc->timer, c->connect_timeout_ms);
    return uc;
}

/* --- the pool ----------------------------------------------------------------- */

int tn_hpool_acquire(struct tn_hpool *p, struct tn_ureq *r)
{
    struct tn_cluster *c = p->wc->c;
    r->pool = p;
    r->uc = NULL;
    r->pending = false;
    if (p->idle) {
        struct tn_uconn *uc = p->idle;
        p->idle = uc->next_idle;
        uc->next_idle = NULL;
        uc->state = UC_BUSY;
        uc->req = r;
        r->uc = uc;
        uc->n_requests++;
        uc->req_written = uc->resp_done = uc->resp_started = uc->in_1xx = uc->in_trailers = false;
        tn_timer_stop(&worker_of(p)->timers, &uc->timer);
        return 0;
    }
    if (atomic_load(&c->rc_pending) >= c->thresholds[0].max_pending_requests)
        return -1;
    if (p->n_connecting <= p->n_pending) {
        if (atomic_load(&c->rc_cx) >= c->thresholds[0].max_connections) {
            tn_stat_inc(US(p, upstream_cx_overflow));
            if (p->n_connecting == 0 && p->n_conns == 0)
                return -1; /* nothing here will ever free up */
        } else if (uc_open(p) == NULL) {
            return -1;
        }
    }
    atomic_fetch_add(&c->rc_pending, 1);
    tn_stat_inc(US(p, upstream_rq_pending_total));
    tn_stat_inc(US(p, upstream_rq_pending_active));
    r->pending = true;
    r->next = NULL;
    if (p->pend_tail)
        p->pend_tail->next = r;
    else
        p->pend_head = r;
    p->pend_tail = r;
    p->n_pending++;
    return 1;
}

void tn_ureq_cancel(struct tn_ureq *r)
{
    struct tn_hpool *p = r->pool;
    if (r->pending) {
        struct tn_ureq **pp = &p->pend_head, *prev = NULL;
        while (*pp && *pp != r) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = r->next;
            if (p->pend_tail == r)
                p->pend_tail = prev;
            p->n_pending--;
            atomic_fetch_sub(&p->wc->c->rc_pending, 1);
            tn_stat_dec(US(p, upstream_rq_pending_active));
        }
        r->pending = false;
    }
    if (r->uc) {
        struct tn_uconn *uc = r->uc;
        uc->req = NULL;
        r->uc = NULL;
        uc_close(uc);
    }
}

void tn_hpool_retire(struct tn_hpool *p)
{
    p->retired = true;
    while (p->idle)
        uc_close(p->idle);
    pool_unref(p);
}

int tn_uconn_write(struct tn_uconn *uc, const char *pre, size_t pre_len, struct tn_slice *s, unsigned n,
                   const char *post, size_t post_len)
{
    return tn_outq_write(&uc->out, pre, pre_len, s, n, post, post_len);
}

bool tn_uconn_write_above(struct tn_uconn *uc)
{
    return tn_outq_above(&uc->out);
}

size_t tn_uconn_write_queued(const struct tn_uconn *uc)
{
    return uc->out.inflight;
}

void tn_uconn_request_done(struct tn_uconn *uc)
{
    uc->req_written = true;
}

void tn_uconn_read_pause(struct tn_uconn *uc, bool pause)
{
    uc->read_paused = pause;
    if (pause) {
        if (uc->reading)
            uv_read_stop((uv_stream_t *)&uc->tcp);
        uc->reading = false;
    } else {
        read_start(uc);
    }
}

static http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};
