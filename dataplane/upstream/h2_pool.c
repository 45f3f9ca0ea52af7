/* Upstream HTTP/2 (h2c, prior knowledge): per host, connections whose
 * streams the requests share, on nghttp2's client session driven through
 * memory on the worker's loop.
 *
 * A request gets a stream (struct tn__h2s, the `struct tn_uconn *` its owner
 * sees) on a ready connection with room (the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS, the cluster's max_concurrent_streams and
 * max_requests_per_connection), else waits in the pool's queue for one being
 * opened. Frames nghttp2 produces go to the connection's outq: small ones
 * copied into a shared block, DATA by reference to the request's slices.
 * Response DATA is handed on by reference to the read block; the stream's
 * window opens (nghttp2_session_consume) once the owner has taken it and is
 * not paused.
 *
 * Reentrancy: nghttp2 forbids session_send / mem_recv from its callbacks, and
 * owners call back into the pool from theirs; `busy` defers the flush, which
 * runs when the outermost call returns. A stream's memory lives until
 * nghttp2 closes it (or the connection goes), never freed under nghttp2. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>

#include "dataplane/core/log.h"
#include "dataplane/http/h1.h"
#include "dataplane/upstream/cluster.h"
#include "dataplane/upstream/conn_pool_int.h"

enum h2c_state {
    H2C_CONNECTING = 0,
    H2C_READY,
    H2C_CLOSED,
};

struct tn__h2conn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    struct tn_hpool *pool;
    struct tn__h2conn *next; /* the pool's list */
    nghttp2_session *ng;
    struct tn_outq out;
    struct tn_timer timer; /* connect timeout, then idle timeout */
    struct tn_block *rblk, *cur_blk;
    struct tn_block *wblk; /* small frames are copied here */
    size_t wpos;
    struct tn__h2s *streams;
    unsigned n_streams, n_total;
    uint64_t opened;
    struct sockaddr_storage local;
    enum h2c_state state;
    unsigned busy; /* inside nghttp2 (or a delivery from it): flush later */
    bool goaway, remote_closed, reading, want_flush;
    bool stream_gone; /* a stream went while busy: after_stream_gone once idle */
};

struct tn__h2s {
    struct tn__uhandle base; /* h2 true: first */
    struct tn__h2conn *c;
    struct tn_ureq *req; /* NULL once the exchange is over for its owner */
    struct tn__h2s *prev, *next;
    int32_t id; /* 0 until the headers are submitted */
    struct tn_slices body; /* request body not yet framed */
    struct tn_h1_head head; /* the response head, then its trailers */
    int status;
    size_t unconsumed; /* response bytes held back while paused */
    bool local_end, deferred, paused, resp_started, in_trailers, remote_end, want_low, proto_error, closed;
};

#define US(p, f) (p)->wc->w->shard, (p)->wc->c->stats.f

static struct tn_worker *worker_of(struct tn_hpool *p)
{
    return p->wc->w;
}

static void h2c_flush(struct tn__h2conn *c);
static void h2c_close(struct tn__h2conn *c, enum tn_reset_reason why);
static struct tn__h2conn *h2c_open(struct tn_hpool *p);
static void after_stream_gone(struct tn__h2conn *c);

/* --- streams ------------------------------------------------------------------ */

static struct tn__h2s *stream_new(struct tn__h2conn *c, struct tn_ureq *r)
{
    struct tn__h2s *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    const struct tn_cluster *cl = c->pool->wc->c;
    s->base.h2 = true;
    s->c = c;
    s->req = r;
    tn_slices_init(&s->body);
    tn_h1_head_init(&s->head, (size_t)cl->max_response_headers_kb * 1024);
    s->head.max_headers = cl->max_headers_count;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    c->n_streams++;
    c->n_total++;
    r->uc = (struct tn_uconn *)s;
    tn_timer_stop(&worker_of(c->pool)->timers, &c->timer);
    return s;
}

static void stream_free(struct tn__h2s *s)
{
    struct tn__h2conn *c = s->c;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    c->n_streams--;
    tn_slices_dispose(&s->body);
    tn_h1_head_dispose(&s->head);
    free(s);
}

/* The owner is done with the stream, or the stream with the owner. */
static struct tn_ureq *stream_detach(struct tn__h2s *s)
{
    struct tn_ureq *r = s->req;
    s->req = NULL;
    if (r)
        r->uc = NULL;
    if (s->paused && s->unconsumed && s->c->ng && !s->closed)
        nghttp2_session_consume(s->c->ng, s->id, s->unconsumed);
    s->unconsumed = 0;
    s->paused = false;
    return r;
}

static size_t conn_limit(const struct tn__h2conn *c)
{
    const struct tn_cluster *cl = c->pool->wc->c;
    size_t lim = cl->h2.max_concurrent_streams;
    uint32_t peer = nghttp2_session_get_remote_settings(c->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return peer < lim ? peer : lim;
}

/* Whether c takes another stream now. */
static bool has_room(const struct tn__h2conn *c)
{
    const struct tn_cluster *cl = c->pool->wc->c;
    if (c->state != H2C_READY || c->goaway || c->pool->retired)
        return false;
    if (cl->max_requests_per_connection && c->n_total >= cl->max_requests_per_connection)
        return false;
    return c->n_streams < conn_limit(c);
}

/* --- frames out ------------------------------------------------------------------ */

static ssize_t send_cb(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
    struct tn__h2conn *c = ud;
    (void)ng;
    (void)flags;
    if (tn_outq_above(&c->out))
        return NGHTTP2_ERR_WOULDBLOCK;
    ssize_t n = tn_outq_copy(&c->out, &c->wblk, &c->wpos, data, len);
    if (n < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    tn_stat_add(US(c->pool, upstream_cx_tx_bytes_total), (uint64_t)n);
    return n;
}

/* A DATA frame: its 9-byte header copied, the payload by reference. */
static int send_data_cb(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
                        nghttp2_data_source *source, void *ud)
{
    struct tn__h2conn *c = ud;
    struct tn__h2s *s = source->ptr;
    (void)ng;
    (void)frame;
    size_t sent = length + 9;
    if (tn_outq_write_from(&c->out, (const char *)framehd, 9, &s->body, length))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    tn_stat_add(US(c->pool, upstream_cx_tx_bytes_total), sent);
    return 0;
}

static ssize_t data_read_cb(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                            nghttp2_data_source *source, void *ud)
{
    struct tn__h2s *s = source->ptr;
    (void)ng;
    (void)id;
    (void)buf;
    (void)ud;
    size_t n = s->body.bytes < length ? s->body.bytes : length;
    if (n == 0 && !s->local_end) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (s->local_end && n == s->body.bytes)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* Streams whose owners waited for room to write hear of it. */
static void notify_low(struct tn__h2conn *c)
{
    for (;;) {
        struct tn__h2s *s = c->streams;
        while (s && !(s->want_low && s->req && !tn__h2_write_above(s)))
            s = s->next;
        if (s == NULL || c->state == H2C_CLOSED)
            return;
        s->want_low = false;
        if (s->req->ops->on_write_low)
            s->req->ops->on_write_low(s->req);
    }
}

static void h2c_flush(struct tn__h2conn *c)
{
    if (c->state != H2C_READY)
        return;
    if (c->busy) {
        c->want_flush = true;
        return;
    }
    c->busy++;
    c->want_flush = false;
    int rv = nghttp2_session_send(c->ng);
    c->busy--;
    if (rv) {
        TN_LOG(TN_LOG_DEBUG, pool, "HTTP/2 send to %s: %s", c->pool->host->addr_text, nghttp2_strerror(rv));
        h2c_close(c, TN_RESET_CONNECTION_TERMINATION);
        return;
    }
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng) && c->n_streams == 0) {
        h2c_close(c, TN_RESET_CONNECTION_TERMINATION);
        return;
    }
    if (c->stream_gone) {
        c->stream_gone = false;
        after_stream_gone(c);
        if (c->state != H2C_READY)
            return;
    }
    notify_low(c);
}

/* --- frames in ------------------------------------------------------------------- */

static struct tn__h2s *stream_of(nghttp2_session *ng, int32_t id)
{
    return nghttp2_session_get_stream_user_data(ng, id);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    struct tn__h2s *s = stream_of(ng, frame->hd.stream_id);
    (void)ud;
    if (s == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    s->in_trailers = s->resp_started;
    s->status = 0;
    tn_h1_head_reset(&s->head);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct tn__h2s *s = stream_of(ng, frame->hd.stream_id);
    (void)flags;
    (void)ud;
    if (s == NULL || s->req == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        int st = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            st = st * 10 + (value[i] - '0');
        s->status = st;
        return 0;
    }
    if (namelen && name[0] == ':')
        return 0;
    if (tn_h1_head_field(&s->head, (const char *)name, namelen) ||
        tn_h1_head_value(&s->head, (const char *)value, valuelen)) {
        s->proto_error = true;
        tn_stat_inc(US(s->c->pool, upstream_cx_protocol_error));
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

/* The response is over for the owner: its end goes out, the stream stays
 * with nghttp2 until it closes (reset if the request is still being sent). */
static void finish(struct tn__h2s *s)
{
    struct tn__h2conn *c = s->c;
    if (!s->local_end || s->body.n || s->deferred)
        nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    struct tn_ureq *r = stream_detach(s);
    struct tn_slice none = {0};
    if (r)
        r->ops->on_data(r, &none, true);
}

static int64_t parse_cl(const struct tn_header *h)
{
    int64_t v = 0;
    if (h->value_len == 0 || h->value_len > 18)
        return -1;
    for (size_t i = 0; i < h->value_len; i++) {
        if (h->value[i] < '0' || h->value[i] > '9')
            return -1;
        v = v * 10 + (h->value[i] - '0');
    }
    return v;
}

static void deliver_headers(struct tn__h2s *s, bool end)
{
    struct tn_ureq *r = s->req;
    if (tn_h1_head_finish(&s->head)) {
        s->proto_error = true;
        nghttp2_submit_rst_stream(s->c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    if (s->in_trailers) {
        if (r->ops->on_trailers)
            r->ops->on_trailers(r, s->head.h, s->head.n);
        if (end && s->req == r)
            finish(s);
        return;
    }
    int64_t cl = -1;
    size_t j = 0;
    for (size_t i = 0; i < s->head.n; i++) {
        struct tn_header *h = &s->head.h[i];
        if (h->name_len == 14 && memcmp(h->name, "content-length", 14) == 0) {
            cl = parse_cl(h);
            continue;
        }
        s->head.h[j++] = *h;
    }
    if (s->status < 100 || s->status > 599 || s->status == 101) {
        s->proto_error = true;
        nghttp2_submit_rst_stream(s->c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_PROTOCOL_ERROR);
        return;
    }
    if (s->status < 200) {
        struct tn_response interim = {.status = s->status, .headers = s->head.h, .n_headers = j};
        if (r->ops->on_interim)
            r->ops->on_interim(r, &interim);
        return;
    }
    s->resp_started = true;
    bool no_body = r->head || s->status == 204 || s->status == 304;
    struct tn_response resp = {.status = s->status, .headers = s->head.h, .n_headers = j,
                               .content_length = no_body ? 0 : cl, .end_stream = end || no_body};
    r->ops->on_headers(r, &resp);
    if (resp.end_stream && s->req == r)
        finish(s);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    struct tn__h2conn *c = ud;
    struct tn__h2s *s = frame->hd.stream_id ? stream_of(ng, frame->hd.stream_id) : NULL;
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
    case NGHTTP2_GOAWAY:
        /* no new streams here; nghttp2 closes those above last_stream_id
         * as refused */
        c->goaway = true;
        TN_LOG(TN_LOG_DEBUG, pool, "GOAWAY from %s (last stream %d, error %u)", c->pool->host->addr_text,
               frame->goaway.last_stream_id, frame->goaway.error_code);
        break;
    case NGHTTP2_HEADERS:
        if (s && end)
            s->remote_end = true;
        if (s && s->req)
            deliver_headers(s, end);
        break;
    case NGHTTP2_DATA:
        if (s && end) {
            s->remote_end = true;
            if (s->req)
                finish(s);
        }
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    struct tn__h2conn *c = ud;
    struct tn__h2s *s = stream_of(ng, id);
    (void)flags;
    struct tn_ureq *r = s ? s->req : NULL;
    if (r == NULL || !s->resp_started) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    struct tn_slice sl;
    const char *p = (const char *)data;
    if (c->cur_blk && p >= c->cur_blk->data && p + len <= c->cur_blk->data + c->cur_blk->cap) {
        sl = tn_slice_of(c->cur_blk, p, len);
    } else {
        struct tn_block *b = tn_block_new(len);
        if (b == NULL)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        memcpy(b->data, p, len);
        sl = tn_slice_of(b, b->data, len);
        tn_block_unref(b);
    }
    r->ops->on_data(r, &sl, false);
    /* the window opens as the owner takes the bytes, unless it paused */
    if (s->req == r && s->paused)
        s->unconsumed += len;
    else
        nghttp2_session_consume(ng, id, len);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *ud)
{
    struct tn__h2conn *c = ud;
    struct tn__h2s *s = stream_of(ng, id);
    if (s == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    s->closed = true;
    struct tn_ureq *r = stream_detach(s);
    enum tn_reset_reason why = s->proto_error               ? TN_RESET_PROTOCOL_ERROR
                               : error_code == NGHTTP2_REFUSED_STREAM ? TN_RESET_REFUSED_STREAM
                                                                      : TN_RESET_REMOTE_RESET;
    if (r)
        TN_LOG(TN_LOG_DEBUG, pool, "stream %d to %s reset (%s)", id, c->pool->host->addr_text,
               nghttp2_http2_strerror(error_code));
    stream_free(s);
    c->stream_gone = true; /* nghttp2 is running: after_io or the flush sees to it */
    if (r)
        r->ops->on_reset(r, why);
    return 0;
}

/* --- the connection --------------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
    struct tn__h2conn *c = h->data;
    struct tn_hpool *p = c->pool;
    if (c->ng)
        nghttp2_session_del(c->ng);
    free(c);
    tn__hpool_unref(p);
}

static void list_remove(struct tn__h2conn *c)
{
    struct tn__h2conn **pp = &c->pool->h2conns;
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    c->next = NULL;
}

static unsigned n_connecting(struct tn_hpool *p)
{
    unsigned n = 0;
    for (struct tn__h2conn *c = p->h2conns; c; c = c->next)
        n += c->state == H2C_CONNECTING;
    return n;
}

/* Requests waiting with no connection being opened for them get one, within
 * max_connections. */
static void refill(struct tn_hpool *p)
{
    struct tn_cluster *cl = p->wc->c;
    if (p->pend_head && n_connecting(p) == 0 && atomic_load(&cl->rc_cx) < cl->thresholds[0].max_connections)
        h2c_open(p);
}

/* Waiting requests go to c while it has room. */
static void dispatch(struct tn__h2conn *c)
{
    struct tn_hpool *p = c->pool;
    while (p->pend_head && has_room(c)) {
        struct tn_ureq *r = tn__hpool_pend_pop(p);
        if (stream_new(c, r) == NULL) {
            r->ops->on_failure(r, TN_POOL_OVERFLOW);
            continue;
        }
        r->ops->on_ready(r, r->uc);
    }
    refill(p);
}

/* A stream went: waiting requests may take its place; an idle connection
 * starts its idle timer, a drained one (GOAWAY, retired, used up) closes. */
static void after_stream_gone(struct tn__h2conn *c)
{
    struct tn_hpool *p = c->pool;
    const struct tn_cluster *cl = p->wc->c;
    if (c->state != H2C_READY)
        return;
    if (c->busy) {
        c->stream_gone = true; /* nghttp2 is running: once it returns */
        return;
    }
    if (c->n_streams == 0) {
        if (c->goaway || p->retired ||
            (cl->max_requests_per_connection && c->n_total >= cl->max_requests_per_connection)) {
            h2c_close(c, TN_RESET_CONNECTION_TERMINATION);
            return;
        }
        if (cl->idle_timeout_ms && !p->pend_head)
            tn_timer_start(&worker_of(p)->timers, &c->timer, cl->idle_timeout_ms);
    }
    dispatch(c);
}

static void h2c_close(struct tn__h2conn *c, enum tn_reset_reason why)
{
    struct tn_hpool *p = c->pool;
    if (c->state == H2C_CLOSED)
        return;
    bool was_connecting = c->state == H2C_CONNECTING;
    c->state = H2C_CLOSED;
    list_remove(c);
    p->n_conns--;
    atomic_fetch_sub(&p->wc->c->rc_cx, 1);
    tn_stat_dec(US(p, upstream_cx_active));
    tn_stat_inc(US(p, upstream_cx_destroy));
    tn_stat_inc(p->wc->w->shard, c->remote_closed ? p->wc->c->stats.upstream_cx_destroy_remote
                                                  : p->wc->c->stats.upstream_cx_destroy_local);
    tn_timer_stop(&worker_of(p)->timers, &c->timer);
    tn_outq_dispose(&c->out);
    if (c->rblk)
        tn_block_unref(c->rblk);
    c->rblk = NULL;
    if (c->wblk)
        tn_block_unref(c->wblk);
    c->wblk = NULL;
    /* owners hear of it after the streams are gone (they may ask for new ones) */
    struct tn_ureq *gone = NULL;
    while (c->streams) {
        struct tn__h2s *s = c->streams;
        if (s->id && c->ng)
            nghttp2_session_set_stream_user_data(c->ng, s->id, NULL);
        struct tn_ureq *r = stream_detach(s);
        if (r) {
            r->next = gone;
            gone = r;
        }
        stream_free(s);
    }
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    while (gone) {
        struct tn_ureq *r = gone;
        gone = r->next;
        r->next = NULL;
        r->ops->on_reset(r, why);
    }
    if (!was_connecting)
        refill(p);
}

/* A connection attempt failed: the waiting requests fail unless another
 * attempt is under way. */
static void fail_waiting(struct tn_hpool *p, enum tn_pool_failure why)
{
    while (p->pend_head && n_connecting(p) == 0) {
        struct tn_ureq *r = tn__hpool_pend_pop(p);
        r->ops->on_failure(r, why);
    }
}

static void on_timer(struct tn_timer *t)
{
    struct tn__h2conn *c = (struct tn__h2conn *)((char *)t - offsetof(struct tn__h2conn, timer));
    struct tn_hpool *p = c->pool;
    if (c->state == H2C_CONNECTING) {
        TN_LOG(TN_LOG_DEBUG, pool, "connect timeout to %s", p->host->addr_text);
        tn_stat_inc(US(p, upstream_cx_connect_timeout));
        h2c_close(c, TN_RESET_CONNECTION_TERMINATION);
        fail_waiting(p, TN_POOL_CONNECT_TIMEOUT);
        return;
    }
    if (c->n_streams == 0) {
        tn_stat_inc(US(p, upstream_cx_idle_timeout));
        h2c_close(c, TN_RESET_CONNECTION_TERMINATION);
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct tn__h2conn *c = h->data;
    (void)hint;
    if (c->rblk == NULL)
        c->rblk = tn_block_new(TN_BLOCK_SIZE);
    *buf = c->rblk ? uv_buf_init(c->rblk->data, c->rblk->cap) : uv_buf_init(NULL, 0);
}

/* After nghttp2 has run: frames it owes go out, a drained connection
 * closes, waiting requests take freed room. */
static void after_io(struct tn__h2conn *c)
{
    if (c->state != H2C_READY)
        return;
    c->stream_gone = false;
    h2c_flush(c);
    if (c->state == H2C_READY)
        after_stream_gone(c); /* also: a SETTINGS may have made room */
}

static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
    struct tn__h2conn *c = h->data;
    (void)buf;
    if (n == 0)
        return;
    if (n < 0) {
        c->remote_closed = true;
        h2c_close(c, TN_RESET_CONNECTION_TERMINATION);
        return;
    }
    struct tn_block *blk = c->rblk;
    c->rblk = NULL;
    c->cur_blk = blk;
    tn_stat_add(US(c->pool, upstream_cx_rx_bytes_total), (uint64_t)n);
    c->busy++;
    ssize_t rv = nghttp2_session_mem_recv(c->ng, (const uint8_t *)blk->data, (size_t)n);
    c->busy--;
    c->cur_blk = NULL;
    tn_block_unref(blk);
    if (c->state != H2C_READY)
        return;
    if (rv < 0) {
        TN_LOG(TN_LOG_DEBUG, pool, "bad HTTP/2 from %s: %s", c->pool->host->addr_text, nghttp2_strerror((int)rv));
        tn_stat_inc(US(c->pool, upstream_cx_protocol_error));
        h2c_close(c, TN_RESET_PROTOCOL_ERROR);
        return;
    }
    after_io(c);
}

static void on_out_error(struct tn_outq *q, int status)
{
    (void)status;
    h2c_close(q->data, TN_RESET_CONNECTION_TERMINATION);
}

static void on_out_low(struct tn_outq *q)
{
    struct tn__h2conn *c = q->data;
    h2c_flush(c); /* frames that waited for room */
}

static int session_new(struct tn__h2conn *c)
{
    const struct tn_cluster *cl = c->pool->wc->c;
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cbs))
        return -1;
    nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
    nghttp2_session_callbacks_set_send_data_callback(cbs, send_data_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    if (nghttp2_option_new(&opt)) {
        nghttp2_session_callbacks_del(cbs);
        return -1;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, 100); /* until the server's SETTINGS say */
    int rv = nghttp2_session_client_new2(&c->ng, cbs, c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cl->h2.initial_stream_window_size},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, cl->h2.hpack_table_size},
    };
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])))
        return -1;
    int32_t conn_win = (int32_t)cl->h2.initial_connection_window_size;
    if (conn_win > 65535 && nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, conn_win))
        return -1;
    return 0;
}

static void on_connected(uv_connect_t *creq, int status)
{
    struct tn__h2conn *c = creq->data;
    struct tn_hpool *p = c->pool;
    if (c->state == H2C_CLOSED)
        return;
    if (status < 0 || session_new(c)) {
        TN_LOG(TN_LOG_DEBUG, pool, "connect to %s failed: %s", p->host->addr_text,
               status < 0 ? uv_strerror(status) : "out of memory");
        tn_stat_inc(US(p, upstream_cx_connect_fail));
        h2c_close(c, TN_RESET_CONNECTION_TERMINATION);
        fail_waiting(p, TN_POOL_CONNECT_FAILURE);
        return;
    }
    tn_timer_stop(&worker_of(p)->timers, &c->timer);
    uv_tcp_nodelay(&c->tcp, 1);
    int alen = sizeof(c->local);
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&c->local, &alen))
        c->local.ss_family = 0;
    tn_stat_record(US(p, upstream_cx_connect_ms), uv_now(&worker_of(p)->loop) - c->opened);
    c->state = H2C_READY;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
    h2c_flush(c); /* the preface and SETTINGS */
    if (c->state == H2C_READY)
        after_stream_gone(c);
}

static struct tn__h2conn *h2c_open(struct tn_hpool *p)
{
    struct tn_worker *w = worker_of(p);
    struct tn_cluster *cl = p->wc->c;
    struct tn__h2conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    c->connect.data = c;
    c->pool = p;
    c->next = p->h2conns;
    p->h2conns = c;
    p->refcnt++;
    p->n_conns++;
    atomic_fetch_add(&cl->rc_cx, 1);
    tn_stat_inc(US(p, upstream_cx_total));
    tn_stat_inc(US(p, upstream_cx_active));
    tn_stat_inc(US(p, upstream_cx_http2_total));
    c->opened = uv_now(&w->loop);
    c->state = H2C_CONNECTING;
    tn_outq_init(&c->out, (uv_stream_t *)&c->tcp, cl->per_connection_buffer_limit, c);
    c->out.on_error = on_out_error;
    c->out.on_low = on_out_low;
    tn_outq_gather(&c->out, &w->flusher);
    tn_timer_init(&c->timer, on_timer);
    int rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&p->host->sa, on_connected);
    if (rc < 0) {
        TN_LOG(TN_LOG_DEBUG, pool, "connect to %s: %s", p->host->addr_text, uv_strerror(rc));
        h2c_close(c, TN_RESET_CONNECTION_TERMINATION);
        return NULL;
    }
    if (cl->connect_timeout_ms)
        tn_timer_start(&w->timers, &c->timer, cl->connect_timeout_ms);
    return c;
}

/* --- conn_pool.h, the HTTP/2 side ------------------------------------------------- */

int tn__h2_acquire(struct tn_hpool *p, struct tn_ureq *r)
{
    struct tn_cluster *cl = p->wc->c;
    for (struct tn__h2conn *c = p->h2conns; c; c = c->next)
        if (has_room(c))
            return stream_new(c, r) ? 0 : -1;
    if (atomic_load(&cl->rc_pending) >= cl->thresholds[0].max_pending_requests)
        return -1;
    if (n_connecting(p) == 0) {
        if (atomic_load(&cl->rc_cx) >= cl->thresholds[0].max_connections) {
            tn_stat_inc(US(p, upstream_cx_overflow));
            if (p->n_conns == 0)
                return -1; /* nothing here will ever free up */
        } else if (h2c_open(p) == NULL) {
            return -1;
        }
    }
    tn__hpool_pend_push(p, r);
    return 1;
}

void tn__h2_cancel(struct tn_ureq *r)
{
    struct tn__h2s *s = (struct tn__h2s *)r->uc;
    struct tn__h2conn *c = s->c;
    stream_detach(s);
    if (s->id == 0) {
        stream_free(s); /* nghttp2 never heard of it */
        after_stream_gone(c);
        return;
    }
    if (!s->closed && !(s->remote_end && s->local_end && !s->body.n))
        nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    h2c_flush(c);
}

void tn__h2_retire(struct tn_hpool *p)
{
    struct tn__h2conn *c = p->h2conns;
    while (c) {
        struct tn__h2conn *next = c->next;
        if (c->n_streams == 0)
            h2c_close(c, TN_RESET_CONNECTION_TERMINATION);
        c = next;
    }
}

static bool is_hop_by_hop(const struct tn_header *h)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                        "upgrade", "host"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (h->name_len == strlen(names[i]) && strncasecmp(h->name, names[i], h->name_len) == 0)
            return true;
    return h->name_len == 2 && strncasecmp(h->name, "te", 2) == 0 &&
           !(h->value_len == 8 && strncasecmp(h->value, "trailers", 8) == 0);
}

int tn__h2_send_headers(struct tn__h2s *s, const struct tn_header *h, size_t n, bool end_stream)
{
    struct tn__h2conn *c = s->c;
    if (s->id || c->state != H2C_READY)
        return UV_EINVAL;
    nghttp2_nv *nv = malloc((n ? n : 1) * sizeof(*nv));
    if (nv == NULL)
        return UV_ENOMEM;
    size_t k = 0;
    /* pseudo-headers first, as HTTP/2 wants */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++) {
            bool pseudo = h[i].name_len && h[i].name[0] == ':';
            if (pseudo != (pass == 0) || (!pseudo && is_hop_by_hop(&h[i])))
                continue;
            nv[k++] = (nghttp2_nv){.name = (uint8_t *)h[i].name, .namelen = h[i].name_len,
                                   .value = (uint8_t *)h[i].value, .valuelen = h[i].value_len,
                                   .flags = NGHTTP2_NV_FLAG_NONE};
        }
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read_cb};
    s->local_end = end_stream;
    int32_t id = nghttp2_submit_request(c->ng, NULL, nv, k, end_stream ? NULL : &prd, s);
    free(nv);
    if (id < 0)
        return UV_EPROTO;
    s->id = id;
    h2c_flush(c);
    return 0;
}

int tn__h2_write(struct tn__h2s *s, struct tn_slice *sl, unsigned n)
{
    int rc = 0;
    for (unsigned i = 0; i < n; i++) {
        if (rc == 0 && s->id && !s->local_end && !s->closed && sl[i].len) {
            if (tn_slices_push(&s->body, sl[i]))
                rc = UV_ENOMEM;
        } else {
            if (rc == 0 && (s->id == 0 || s->local_end || s->closed))
                rc = UV_EINVAL;
            tn_slice_release(&sl[i]);
        }
    }
    if (s->deferred && s->body.n && !s->closed) {
        s->deferred = false;
        nghttp2_session_resume_data(s->c->ng, s->id);
    }
    h2c_flush(s->c);
    return rc;
}

bool tn__h2_write_above(struct tn__h2s *s)
{
    bool above = tn_outq_above(&s->c->out) || s->body.bytes >= s->c->pool->wc->c->per_connection_buffer_limit;
    if (above)
        s->want_low = true;
    return above;
}

size_t tn__h2_write_queued(const struct tn__h2s *s)
{
    return s->body.bytes;
}

void tn__h2_request_done(struct tn__h2s *s)
{
    if (s->local_end || s->id == 0)
        return;
    s->local_end = true;
    if (s->deferred && !s->closed) {
        s->deferred = false;
        nghttp2_session_resume_data(s->c->ng, s->id);
    }
    h2c_flush(s->c);
}

const struct sockaddr_storage *tn__h2_local(const struct tn__h2s *s)
{
    return &s->c->local;
}

void tn__h2_read_pause(struct tn__h2s *s, bool pause)
{
    s->paused = pause;
    if (!pause && s->unconsumed) {
        if (!s->closed)
            nghttp2_session_consume(s->c->ng, s->id, s->unconsumed);
        s->unconsumed = 0;
        h2c_flush(s->c);
    }
}
