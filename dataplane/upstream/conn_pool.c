#include "dataplane/upstream/conn_pool.h"
#include "dataplane/upstream/conn_pool_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "dataplane/upstream/cluster.h"
#include "dataplane/http/h1.h"
#include "dataplane/core/log.h"

enum uc_state {
    UC_CONNECTING = 0,
    UC_IDLE,
    UC_BUSY,
    UC_CLOSED,
};

struct tn_uconn {
    struct tn__uhandle base; /* h2 false: first */
    uv_tcp_t tcp;
    uv_connect_t connect;
    struct tn_hpool *pool;
    struct tn_uconn *next_idle;
    enum uc_state state;
    struct tn_ureq *req;
    llhttp_t parser;
    struct tn_h1_head head; /* the response head, then its trailers */
    size_t head_bytes; /* of the head being read: status line, header lines, CRLFs */
    struct tn_outq out;
    struct tn_timer timer; /* connect timeout, then idle timeout */
    struct tn_block *rblk, *cur_blk;
    unsigned n_requests;
    uint64_t opened; /* uv_now when the connect started */
    struct sockaddr_storage local; /* the connection's own address (%UPSTREAM_LOCAL_ADDRESS%) */
    bool remote_closed, reading, read_paused, req_written, resp_done, resp_started, in_1xx, counted, in_trailers,
        head_done, no_body, keep_alive, end_at_head;
    bool tunnel; /* after a 101: the origin's bytes go to the request as they come */
};

static const llhttp_settings_t settings;

/* Cluster stats on the worker's shard. */
#define US(p, f) (p)->wc->w->shard, (p)->wc->c->stats.f

static struct tn_worker *worker_of(struct tn_hpool *p)
{
    return p->wc->w;
}

void tn__hpool_unref(struct tn_hpool *p)
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
    p->h2 = wc->c->http2;
    return p;
}

/* --- connection lifecycle ----------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
    struct tn_uconn *uc = h->data;
    struct tn_hpool *p = uc->pool;
    tn_h1_head_dispose(&uc->head);
    free(uc);
    tn__hpool_unref(p);
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

static struct tn_uconn *uc_open(struct tn_hpool *p);

/* A connection went away: requests still waiting that no connection being
 * opened will serve get a new one, within max_connections (else they wait
 * for a connection to come free). A failed connect is not retried here: its
 * waiters fail (fail_waiting). */
static void refill(struct tn_hpool *p)
{
    struct tn_cluster *c = p->wc->c;
    while (p->pend_head && p->n_connecting < p->n_pending &&
           atomic_load(&c->rc_cx) < c->thresholds[0].max_connections)
        if (uc_open(p) == NULL)
            return;
}

static void uc_close(struct tn_uconn *uc)
{
    struct tn_hpool *p = uc->pool;
    bool was_connecting = uc->state == UC_CONNECTING;
    if (uc->state == UC_CLOSED)
        return;
    if (uc->state == UC_IDLE)
        remove_idle(uc);
    if (was_connecting)
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
    if (!was_connecting)
        refill(p);
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

struct tn_ureq *tn__hpool_pend_pop(struct tn_hpool *p)
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
        struct tn_ureq *r = tn__hpool_pend_pop(p);
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

/* The connection takes request r: a new exchange, a fresh parser. */
static void uc_begin(struct tn_uconn *uc, struct tn_ureq *r)
{
    uc->state = UC_BUSY;
    uc->req = r;
    r->uc = uc;
    uc->n_requests++;
    uc->req_written = uc->resp_done = uc->resp_started = uc->in_1xx = uc->in_trailers = false;
    uc->head_done = uc->no_body = uc->keep_alive = uc->end_at_head = uc->tunnel = false;
    uc->head_bytes = 0;
    llhttp_reset(&uc->parser);
    tn_timer_stop(&worker_of(uc->pool)->timers, &uc->timer);
}

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
        struct tn_ureq *r = tn__hpool_pend_pop(p);
        uc_begin(uc, r);
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

/* The origin broke HTTP/1.1 (a bad status line, a head over the limits,
 * bytes after the response): the connection is counted and closed, its
 * request (if any) hears of a protocol error. */
static void uc_protocol_error(struct tn_uconn *uc, const char *why)
{
    struct tn_hpool *p = uc->pool;
    TN_LOG(TN_LOG_DEBUG, pool, "bad response from %s: %s", p->host->addr_text, why);
    tn_stat_inc(US(p, upstream_cx_protocol_error));
    if (uc->state == UC_BUSY && uc->req)
        uc_fail(uc, TN_RESET_PROTOCOL_ERROR);
    else
        uc_close(uc);
}

/* The response ended (the parser paused after it): trailers and the end go
 * to the request, the connection back to the pool, unless the origin may
 * not keep it or sent more than the response (`extra`: never handed to
 * the next request, which gets another connection). */
static void finish_response(struct tn_uconn *uc, bool extra)
{
    struct tn_ureq *r = uc->req; /* NULL: given up after a head that ended the response */
    if (uc->in_trailers && r) {
        uc->in_trailers = false;
        if (tn_h1_head_finish(&uc->head)) {
            uc_fail(uc, TN_RESET_CONNECTION_TERMINATION);
            return;
        }
        if (r->ops->on_trailers)
            r->ops->on_trailers(r, uc->head.h, uc->head.n);
        if (uc->req != r || uc->state != UC_BUSY)
            return; /* the owner gave the request up */
    }
    uc->resp_done = true;
    if (r)
        r->uc = NULL;
    uc->req = NULL;
    if (extra) {
        TN_LOG(TN_LOG_DEBUG, pool, "bytes after the response from %s", uc->pool->host->addr_text);
        tn_stat_inc(US(uc->pool, upstream_cx_protocol_error));
        uc_close(uc);
    } else if (uc->keep_alive && uc->req_written) {
        uc_release(uc);
    } else {
        uc_close(uc);
    }
    struct tn_slice none = {0};
    if (r)
        r->ops->on_data(r, &none, true);
}

/* The head is complete (the parser paused right after it): checks what
 * llhttp leaves to its user, then hands the head over. Returns false when
 * the exchange is over (failed, or given up by its owner). */
static bool deliver_head(struct tn_uconn *uc)
{
    struct tn_h1_head *hd = &uc->head;
    struct tn_ureq *r = uc->req;
    llhttp_t *p = &uc->parser;
    const struct tn_cluster *c = uc->pool->wc->c;
    if (uc->head_bytes > (size_t)c->max_response_headers_kb * 1024) {
        uc_protocol_error(uc, "response head over max_response_headers_kb");
        return false;
    }
    if (tn_h1_head_finish(hd)) {
        uc_fail(uc, TN_RESET_CONNECTION_TERMINATION);
        return false;
    }
    bool switching = p->status_code == 101; /* only ever accepted for an upgrade */
    const struct tn_header *conn = tn_headers_find(hd->h, hd->n, "connection", 10);
    size_t j = 0;
    for (size_t i = 0; i < hd->n; i++) {
        const struct tn_header *h = &hd->h[i];
        bool upgrade = h->name_len == 7 && memcmp(h->name, "upgrade", 7) == 0;
        if ((tn_h1_hop_by_hop(h, conn) && !(switching && upgrade)) ||
            (h->name_len == 14 && memcmp(h->name, "content-length", 14) == 0))
            continue;
        hd->h[j++] = *h;
    }
    if (uc->in_1xx) {
        /* 100 Continue, 103 Early Hints: to the owner if it takes them */
        struct tn_response interim = {.status = p->status_code, .headers = hd->h, .n_headers = j};
        if (r->ops->on_interim)
            r->ops->on_interim(r, &interim);
        return uc->state == UC_BUSY && uc->req == r;
    }
    uc->resp_started = true;
    bool has_cl = (p->flags & F_CONTENT_LENGTH) != 0;
    struct tn_response resp = {
        .status = p->status_code,
        .headers = hd->h,
        .n_headers = j,
        .content_length = has_cl ? (int64_t)p->content_length : -1,
        .end_stream = uc->no_body || (has_cl && p->content_length == 0 && !(p->flags & F_CHUNKED)),
    };
    /* the owner may give the request up from on_headers: after a head that
     * ends the response, the connection still reads the response's end
     * (tn_ureq_cancel) */
    if (switching) {
        resp.end_stream = false;
        resp.content_length = -1;
        uc->tunnel = true;
    }
    uc->end_at_head = resp.end_stream;
    r->ops->on_headers(r, &resp);
    return uc->state == UC_BUSY && (uc->req == r || uc->end_at_head);
}

/* Runs the parser over one read. It pauses after every head and after the
 * response, so that the owner hears of them outside llhttp's callbacks. */
static void parse(struct tn_uconn *uc, const char *at, const char *end)
{
    const struct tn_cluster *c = uc->pool->wc->c;
    while (uc->state == UC_BUSY) {
        llhttp_errno_t e = llhttp_execute(&uc->parser, at, (size_t)(end - at));
        const char *pos = e == HPE_OK ? end : llhttp_get_error_pos(&uc->parser);
        if (uc->state != UC_BUSY)
            return; /* the owner closed the connection from a callback */
        if (e != HPE_OK && e != HPE_PAUSED) {
            uc_protocol_error(uc, e == HPE_USER ? "response head over limits" : llhttp_get_error_reason(&uc->parser));
            return;
        }
        if (!uc->head_done)
            uc->head_bytes += (size_t)(pos - at);
        if (e == HPE_OK) {
            if (!uc->head_done && uc->head_bytes > (size_t)c->max_response_headers_kb * 1024)
                uc_protocol_error(uc, "response head over max_response_headers_kb");
            return;
        }
        llhttp_resume(&uc->parser);
        at = pos;
        if (uc->resp_done) {
            finish_response(uc, at < end);
            return;
        }
        /* paused after a head */
        if (!deliver_head(uc))
            return;
        if (uc->tunnel) {
            /* what follows the 101 is the new protocol's */
            if (at < end && uc->req) {
                struct tn_slice sl = tn_slice_of(uc->cur_blk, at, (size_t)(end - at));
                uc->req->ops->on_data(uc->req, &sl, false);
            }
            return;
        }
        uc->head_done = !uc->in_1xx;
        uc->head_bytes = 0;
    }
}

static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
    struct tn_uconn *uc = h->data;
    (void)buf;
    if (n == 0)
        return;
    if (n < 0) {
        uc->remote_closed = true;
        if (uc->state == UC_BUSY && uc->tunnel && uc->req) {
            /* the origin closed its side of the tunnel: the end of the
             * response; the connection is not reusable */
            struct tn_ureq *r = uc->req;
            struct tn_slice none = {0};
            r->uc = NULL;
            uc->req = NULL;
            uc_close(uc);
            r->ops->on_data(r, &none, true);
            return;
        }
        if (uc->state == UC_BUSY && uc->resp_started && n == UV_EOF) {
            /* a close-delimited body ends here, anything else is cut short */
            llhttp_finish(&uc->parser); /* HPE_PAUSED when the body ended */
            if (uc->resp_done && uc->state == UC_BUSY) {
                uc->keep_alive = false;
                finish_response(uc, false);
                return;
            }
        }
        if (uc->state == UC_BUSY)
            uc_fail(uc, TN_RESET_CONNECTION_TERMINATION);
        else
            uc_close(uc);
        return;
    }
    if (uc->state != UC_BUSY) {
        /* bytes nobody asked for (an idle connection): not reusable */
        TN_LOG(TN_LOG_DEBUG, pool, "bytes on an idle connection from %s", uc->pool->host->addr_text);
        tn_stat_inc(US(uc->pool, upstream_cx_protocol_error));
        uc_close(uc);
        return;
    }
    struct tn_block *blk = uc->rblk;
    uc->rblk = NULL;
    uc->cur_blk = blk;
    tn_stat_add(US(uc->pool, upstream_cx_rx_bytes_total), (uint64_t)n);
    if (uc->tunnel) {
        struct tn_slice sl = tn_slice_of(blk, blk->data, (size_t)n);
        if (uc->req)
            uc->req->ops->on_data(uc->req, &sl, false);
        else
            tn_slice_release(&sl);
    } else {
        parse(uc, blk->data, blk->data + n);
    }
    uc->cur_blk = NULL;
    tn_block_unref(blk);
}

static void read_start(struct tn_uconn *uc)
{
    if (!uc->reading && !uc->read_paused && uc->state != UC_CLOSED &&
        uv_read_start((uv_stream_t *)&uc->tcp, on_alloc, on_read) == 0)
        uc->reading = true;
}

static struct tn_uconn *uc_of(llhttp_t *p)
{
    return p->data;
}

static int on_message_begin(llhttp_t *p)
{
    struct tn_uconn *uc = uc_of(p);
    tn_h1_head_reset(&uc->head);
    uc->in_1xx = uc->in_trailers = uc->no_body = false;
    return 0;
}

/* Names and values go to the head collector, which enforces the cluster's
 * max_headers_count and (as a memory bound; parse() counts the raw head)
 * max_response_headers_kb: over them the response is a protocol error. */
static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct tn_uconn *uc = uc_of(p);
    if (uc->resp_started && !uc->in_trailers) {
        /* a chunked body's trailers: the head was handed over long ago */
        uc->in_trailers = true;
        tn_h1_head_reset(&uc->head);
    }
    return tn_h1_head_field(&uc->head, at, n) ? HPE_USER : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    return tn_h1_head_value(&uc_of(p)->head, at, n) ? HPE_USER : 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct tn_uconn *uc = uc_of(p);
    if (uc->req == NULL || p->http_major != 1 || p->status_code < 100 || p->status_code > 599)
        return -1; /* HTTP/1.x with a status in 100..599 only */
    if (p->status_code == 101 && !uc->req->upgrade)
        return -1; /* a switch nobody asked for */
    if (p->status_code == 101) {
        uc->no_body = true;
        return HPE_PAUSED; /* the final answer to an upgrade: a tunnel from here */
    }
    uc->in_1xx = p->status_code < 200 && p->status_code != 101;
    uc->no_body = uc->req->head || p->status_code == 204 || p->status_code == 304;
    if (uc->no_body)
        p->flags |= F_SKIPBODY; /* what returning 1 would do; we return HPE_PAUSED */
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct tn_uconn *uc = uc_of(p);
    struct tn_ureq *r = uc->req;
    if (r == NULL)
        return -1;
    struct tn_slice sl = tn_slice_of(uc->cur_blk, at, n);
    r->ops->on_data(r, &sl, false);
    return uc->state == UC_BUSY && uc->req == r ? 0 : -1;
}

static int on_message_complete(llhttp_t *p)
{
    struct tn_uconn *uc = uc_of(p);
    if (uc->in_1xx) {
        uc->in_1xx = false;
        return 0;
    }
    uc->keep_alive = llhttp_should_keep_alive(p);
    uc->resp_done = true;
    return HPE_PAUSED;
}

const struct sockaddr_storage *tn_uconn_local(const struct tn_uconn *uc)
{
    if (tn__is_h2(uc))
        return tn__h2_local((const struct tn__h2s *)uc);
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
    llhttp_init(&uc->parser, HTTP_RESPONSE, &settings);
    uc->parser.data = uc;
    tn_h1_head_init(&uc->head, (size_t)c->max_response_headers_kb * 1024);
    uc->head.max_headers = c->max_headers_count;
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
    if (p->h2)
        return tn__h2_acquire(p, r);
    if (p->idle) {
        struct tn_uconn *uc = p->idle;
        p->idle = uc->next_idle;
        uc->next_idle = NULL;
        uc_begin(uc, r);
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
    tn__hpool_pend_push(p, r);
    return 1;
}

void tn__hpool_pend_push(struct tn_hpool *p, struct tn_ureq *r)
{
    atomic_fetch_add(&p->wc->c->rc_pending, 1);
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
    if (r->uc && tn__is_h2(r->uc)) {
        tn__h2_cancel(r);
    } else if (r->uc) {
        struct tn_uconn *uc = r->uc;
        uc->req = NULL;
        r->uc = NULL;
        /* a response whose head ended it needs no more from its owner: the
         * connection finishes reading it and may go back to the pool */
        if (!(uc->end_at_head && uc->state == UC_BUSY))
            uc_close(uc);
    }
}

void tn_hpool_retire(struct tn_hpool *p)
{
    p->retired = true;
    if (p->h2)
        tn__h2_retire(p);
    while (p->idle)
        uc_close(p->idle);
    tn__hpool_unref(p);
}

int tn_uconn_write(struct tn_uconn *uc, const char *pre, size_t pre_len, struct tn_slice *s, unsigned n,
                   const char *post, size_t post_len)
{
    if (tn__is_h2(uc)) {
        if (pre_len || post_len) {
            for (unsigned i = 0; i < n; i++)
                tn_slice_release(&s[i]);
            return UV_EINVAL; /* HTTP/1.1 framing has no place on a stream */
        }
        return tn__h2_write((struct tn__h2s *)uc, s, n);
    }
    uint64_t bytes = pre_len + post_len;
    for (unsigned i = 0; i < n; i++)
        bytes += s[i].len;
    int rc = tn_outq_write(&uc->out, pre, pre_len, s, n, post, post_len);
    if (rc == 0)
        tn_stat_add(US(uc->pool, upstream_cx_tx_bytes_total), bytes);
    return rc;
}

bool tn_uconn_write_above(struct tn_uconn *uc)
{
    if (tn__is_h2(uc))
        return tn__h2_write_above((struct tn__h2s *)uc);
    return tn_outq_above(&uc->out);
}

size_t tn_uconn_write_queued(const struct tn_uconn *uc)
{
    if (tn__is_h2(uc))
        return tn__h2_write_queued((const struct tn__h2s *)uc);
    return uc->out.inflight;
}

void tn_uconn_request_done(struct tn_uconn *uc)
{
    if (tn__is_h2(uc)) {
        tn__h2_request_done((struct tn__h2s *)uc);
        return;
    }
    uc->req_written = true;
}

void tn_uconn_read_pause(struct tn_uconn *uc, bool pause)
{
    if (tn__is_h2(uc)) {
        tn__h2_read_pause((struct tn__h2s *)uc, pause);
        return;
    }
    uc->read_paused = pause;
    if (pause) {
        if (uc->reading)
            uv_read_stop((uv_stream_t *)&uc->tcp);
        uc->reading = false;
    } else {
        read_start(uc);
    }
}

bool tn_uconn_is_h2(const struct tn_uconn *uc)
{
    return tn__is_h2(uc);
}

static bool is_name(const struct tn_header *h, const char *name)
{
    return h->name_len == strlen(name) && memcmp(h->name, name, h->name_len) == 0;
}

/* The pieces joined, then taken apart line by line: the header list
 * points into the joined copy, which lives until nghttp2 has copied it. */
int tn_uconn_send_h1_head(struct tn_uconn *uc, const uv_buf_t *parts, unsigned n, bool end_stream)
{
    if (!tn__is_h2(uc))
        return UV_EINVAL;
    size_t len = 0, lines = 0;
    for (unsigned i = 0; i < n; i++)
        len += parts[i].len;
    char *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return UV_ENOMEM;
    for (unsigned i = 0, at = 0; i < n; at += parts[i].len, i++)
        memcpy(buf + at, parts[i].base, parts[i].len);
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    struct tn_header *h = malloc((lines + 4) * sizeof(*h));
    int rc = UV_EINVAL;
    if (h == NULL) {
        rc = UV_ENOMEM;
        goto out;
    }
    char *p = buf, *end = buf + len;
    char *eol = memchr(p, '\n', len), *sp1 = memchr(p, ' ', len), *sp2;
    if (eol == NULL || sp1 == NULL || sp1 > eol || (sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1))) == NULL)
        goto out;
    size_t k = 0;
    h[k++] = (struct tn_header){.name = ":method", .name_len = 7, .value = p, .value_len = (uint32_t)(sp1 - p)};
    h[k++] = (struct tn_header){.name = ":scheme", .name_len = 7, .value = "http", .value_len = 4};
    h[k++] = (struct tn_header){.name = ":path", .name_len = 5, .value = sp1 + 1, .value_len = (uint32_t)(sp2 - sp1 - 1)};
    for (p = eol + 1; p < end && (eol = memchr(p, '\n', (size_t)(end - p))) != NULL; p = eol + 1) {
        char *le = eol > p && eol[-1] == '\r' ? eol - 1 : eol, *colon = memchr(p, ':', (size_t)(le - p));
        if (le == p)
            break; /* the blank line */
        if (colon == NULL || colon == p)
            goto out;
        char *v = colon + 1;
        while (v < le && (*v == ' ' || *v == '\t'))
            v++;
        for (char *c = p; c < colon; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        struct tn_header f = {.name = p, .name_len = (uint32_t)(colon - p), .value = v, .value_len = (uint32_t)(le - v)};
        if (is_name(&f, "host"))
            f.name = ":authority", f.name_len = 10;
        h[k++] = f;
    }
    rc = tn__h2_send_headers((struct tn__h2s *)uc, h, k, end_stream);
out:
    free(h);
    free(buf);
    return rc;
}

/* HTTP/1.1: the request line from :method and :path, Host from
 * :authority, then the headers, in one block. */
int tn_uconn_send_headers(struct tn_uconn *uc, const struct tn_header *h, size_t n, bool end_stream)
{
    if (tn__is_h2(uc))
        return tn__h2_send_headers((struct tn__h2s *)uc, h, n, end_stream);
    const struct tn_header *method = NULL, *path = NULL, *auth = NULL;
    size_t cap = 32;
    for (size_t i = 0; i < n; i++) {
        cap += h[i].name_len + h[i].value_len + 4;
        if (is_name(&h[i], ":method"))
            method = &h[i];
        else if (is_name(&h[i], ":path"))
            path = &h[i];
        else if (is_name(&h[i], ":authority"))
            auth = &h[i];
    }
    if (method == NULL || path == NULL)
        return UV_EINVAL;
    struct tn_block *b = tn_block_new(cap);
    if (b == NULL)
        return UV_ENOMEM;
    size_t pos = 0;
    memcpy(b->data, method->value, method->value_len);
    pos += method->value_len;
    b->data[pos++] = ' ';
    memcpy(b->data + pos, path->value, path->value_len);
    pos += path->value_len;
    memcpy(b->data + pos, " HTTP/1.1\r\n", 11);
    pos += 11;
    int rc = auth ? tn_h1_put_header(b->data, b->cap, &pos, "host", 4, auth->value, auth->value_len) : 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (h[i].name_len && h[i].name[0] != ':')
            rc = tn_h1_put_header(b->data, b->cap, &pos, h[i].name, h[i].name_len, h[i].value, h[i].value_len);
    if (rc == 0 && pos + 2 <= b->cap) {
        memcpy(b->data + pos, "\r\n", 2);
        pos += 2;
        struct tn_slice sl = tn_slice_of(b, b->data, pos);
        rc = tn_uconn_write(uc, NULL, 0, &sl, 1, NULL, 0);
        if (rc == 0 && end_stream)
            tn_uconn_request_done(uc);
    } else {
        rc = UV_E2BIG;
    }
    tn_block_unref(b);
    return rc;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};
