/* The HTTP connection manager (Envoy's HCM), codec-independent: it owns the
 * downstream connection (socket, reads, write queue, idle timeout, listener
 * reference, drain) and the streams a codec finds on it (codec.h), runs the
 * listener's HTTP filters on each (decode order on the request, reverse on
 * the response), adds the headers Envoy adds, answers locally, keeps the
 * request headers and stream idle timeouts, counts Envoy's downstream
 * stats, writes the access log, and serves the tn_stream_* calls filters
 * make (stream.h).
 *
 * The connection stays here rather than in the codec because nothing of it
 * depends on the protocol: HTTP/1.1 and HTTP/2 read the same socket into
 * the same blocks and write the same queue. The codec (codec_h1.c,
 * codec_h2.c; codec_type AUTO picks by the client preface) turns bytes into
 * streams and responses into bytes, and decides what the wire format
 * decides (framing, keep-alive, pipelining, the upgrade tunnel; with
 * HTTP/2, streams that end or reset alone and GOAWAY on drain).
 *
 * A connection without a request in flight holds no stream, no head buffer
 * and no read block: a stream (with its codec's per-stream state and its
 * filters' contexts) comes from the worker's free list when a request
 * begins and goes back when it ends, so an idle keep-alive connection costs
 * its socket handle, codec state and queues, about 1 KB. */
#include "dataplane/http/conn.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "dataplane/accesslog/accesslog.h"
#include "dataplane/core/log.h"
#include "dataplane/core/outq.h"
#include "dataplane/http/codec.h"
#include "dataplane/http/stream.h"
#include "dataplane/server/listener.h"
#include "dataplane/stats/dp_stats.h"
#include "filters/filter.h"

/* Streams a worker keeps for reuse beyond those in use; more are freed. */
#define FREE_STREAMS_MAX 256
/* What the free lists keep when memory is given back after many closes. */
#define FREE_STREAMS_AFTER_BURST 4
#define FREE_BLOCKS_AFTER_BURST  2
#define FREE_WRITES_AFTER_BURST  4

#define HS(c, f) TN_HS(c, f)
#define LS(c, f) (c)->w->shard, (c)->l->stats.f

static void stream_destroy(struct tn_stream *s);
static void conn_close(struct tn_dconn *c);
static void request_body(struct tn_stream *s, struct tn_slice *data, bool end);
static void decode_headers_from(struct tn_stream *s, unsigned from);
static bool encode_headers_from(struct tn_stream *s, unsigned from, struct tn_response *r);
static void encode_data_from(struct tn_stream *s, unsigned from, struct tn_slice *data, bool end_stream);
static void local_reply(struct tn_stream *s, int status, const char *body, uint32_t flags, const char *details,
                        bool close);

/* --- connection lifecycle ----------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
    struct tn_dconn *c = h->data;
    struct tn_worker *w = c->w;
    tn_stat_dec(LS(c, downstream_cx_active));
    tn_stat_inc(LS(c, downstream_cx_destroy));
    tn_stat_dec(HS(c, downstream_cx_active));
    if (c->codec_counted)
        tn_stat_dec(c->w->shard, c->codec->multiplexed ? c->l->hcm.stats.downstream_cx_http2_active
                                                       : c->l->hcm.stats.downstream_cx_http1_active);
    tn_stat_inc(HS(c, downstream_cx_destroy));
    tn_stat_inc(c->w->shard, c->remote_closed ? c->l->hcm.stats.downstream_cx_destroy_remote
                                              : c->l->hcm.stats.downstream_cx_destroy_local);
    if (c->upgraded)
        tn_stat_dec(HS(c, downstream_cx_upgrades_active));
    tn_listener_unref(c->l);
    free(c);
    w->n_freed++;
    tn_worker_conn_closed(w);
}

static void conn_close(struct tn_dconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    while (c->streams != NULL)
        stream_destroy(c->streams);
    tn_timer_stop(&c->w->timers, &c->timer);
    tn_outq_dispose(&c->out);
    c->codec->dispose(c);
    if (c->rblk)
        tn_block_unref(c->rblk);
    c->rblk = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

void tn__cm_close(struct tn_dconn *c)
{
    conn_close(c);
}

static void close_after_flush(struct tn_dconn *c);

void tn__cm_close_after_flush(struct tn_dconn *c)
{
    close_after_flush(c);
}

/* Closes once everything written so far has left. */
static void close_after_flush(struct tn_dconn *c)
{
    c->keepalive = false;
    if (c->out.inflight == 0)
        conn_close(c);
}

static void on_out_empty(struct tn_outq *q)
{
    struct tn_dconn *c = q->data;
    if (c->keepalive)
        return;
    for (struct tn_stream *s = c->streams; s; s = s->next)
        if (!s->resp_done)
            return;
    conn_close(c);
}

static void on_out_error(struct tn_outq *q, int status)
{
    struct tn_dconn *c = q->data;
    TN_LOG(TN_LOG_DEBUG, connection, "[C%" PRIu64 "] write error: %s", c->id, uv_strerror(status));
    for (struct tn_stream *s = c->streams; s; s = s->next)
        if (!s->resp_done)
            s->si.response_flags |= TN_RF_DOWNSTREAM_CONNECTION_TERMINATION;
    conn_close(c);
}

static void on_out_low(struct tn_outq *q)
{
    struct tn_dconn *c = q->data;
    const struct tn_hcm *hcm = &c->l->hcm;
    if (c->codec->write_low) {
        c->codec->write_low(c); /* frames that waited for room go first */
        if (c->closing)
            return;
    }
    struct tn_stream *s = c->streams, *next;
    for (; s; s = next) {
        next = s->next;
        for (unsigned i = s->n_filters; i-- > 0;) {
            const struct tn_filter_ops *ops = hcm->filters[i].factory->ops;
            if (ops && ops->on_downstream_drained)
                ops->on_downstream_drained(s, hcm->filters[i].config, s->fctx[i]);
        }
    }
}

static void arm_idle(struct tn_dconn *c)
{
    const struct tn_hcm *hcm = &c->l->hcm;
    if (hcm->idle_timeout_ms)
        tn_timer_start(&c->w->timers, &c->timer, hcm->idle_timeout_ms);
    else
        tn_timer_stop(&c->w->timers, &c->timer);
}

static void on_idle_timer(struct tn_timer *t)
{
    struct tn_dconn *c = (struct tn_dconn *)((char *)t - offsetof(struct tn_dconn, timer));
    TN_LOG(TN_LOG_DEBUG, connection, "[C%" PRIu64 "] idle timeout", c->id);
    tn_stat_inc(HS(c, downstream_cx_idle_timeout));
    if (c->codec->drain) {
        /* HTTP/2 says GOAWAY first, as Envoy does */
        c->drain = true;
        c->codec->drain(c);
        if (!c->closing)
            close_after_flush(c);
        return;
    }
    conn_close(c);
}

/* --- reading -------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct tn_dconn *c = h->data;
    (void)hint;
    if (c->rblk == NULL)
        c->rblk = tn_block_new(TN_BLOCK_SIZE);
    *buf = c->rblk ? uv_buf_init(c->rblk->data, c->rblk->cap) : uv_buf_init(NULL, 0);
}

/* Counts the connection under its codec (Envoy counts on the first bytes
 * when the codec is AUTO). */
static void count_codec(struct tn_dconn *c)
{
    c->codec_counted = true;
    if (c->codec->multiplexed) {
        tn_stat_inc(HS(c, downstream_cx_http2_total));
        tn_stat_inc(HS(c, downstream_cx_http2_active));
    } else {
        tn_stat_inc(HS(c, downstream_cx_http1_total));
        tn_stat_inc(HS(c, downstream_cx_http1_active));
    }
}

/* codec_type AUTO: HTTP/2 when the connection starts with the client
 * preface (prior knowledge; as Envoy, no h2c Upgrade), else HTTP/1.1. A
 * first read shorter than "PRI * HTTP/2" that matches it so far is HTTP/2:
 * HTTP/1.1 has no method PRI, and nghttp2 checks the rest of the preface. */
static void choose_codec(struct tn_dconn *c, const char *p, size_t n)
{
    static const char preface[] = "PRI * HTTP/2";
    size_t k = n < sizeof(preface) - 1 ? n : sizeof(preface) - 1;
    c->sniff = false;
    if (memcmp(p, preface, k) == 0) {
        c->codec->dispose(c);
        memset(c->codec_state, 0, sizeof(c->codec_state));
        c->codec = &tn_codec_h2;
        c->codec->init(c);
    }
    count_codec(c);
}

static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
    struct tn_dconn *c = h->data;
    (void)buf;
    if (n == 0)
        return;
    if (n < 0) {
        c->remote_closed = true;
        /* a client that leaves (or half-closes: HTTP/1.1 cannot tell) while
         * its request is in flight ends it, as Envoy and nginx do: the
         * router lets the upstream connection go at once; either side
         * closing a tunnel closes both, and is no reset */
        for (struct tn_stream *s = c->streams; s; s = s->next)
            if (!s->tunnel && !s->resp_done) {
                s->si.response_flags |= TN_RF_DOWNSTREAM_CONNECTION_TERMINATION;
                tn_stat_inc(HS(c, downstream_rq_rx_reset));
            }
        conn_close(c);
        return;
    }
    /* the block may be kept by slices; the next read takes a fresh one */
    struct tn_block *blk = c->rblk;
    c->rblk = NULL;
    if (c->sniff)
        choose_codec(c, blk->data, (size_t)n);
    c->codec->dispatch(c, blk, blk->data, (size_t)n);
    tn_block_unref(blk);
}

void tn__cm_read_start(struct tn_dconn *c)
{
    if (!c->reading && !c->closing && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

void tn__cm_read_stop(struct tn_dconn *c)
{
    if (c->reading)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

/* --- streams ---------------------------------------------------------------- */

static void stream_log(struct tn_stream *s)
{
    struct tn_dconn *c = s->conn;
    const struct tn_hcm *hcm = &c->l->hcm;
    s->si.end_ns = uv_now(&c->w->loop) * 1000000;
    s->si.resp_headers = s->resp_hdrs;
    s->si.n_resp_headers = s->n_resp_hdrs;
    for (size_t i = 0; i < hcm->n_access_logs; i++)
        tn_alog_write(c->w->alog, &hcm->access_logs[i], &s->si);
}

/* A request the connection manager counted ends: Envoy's downstream_rq_*. */
static void stream_count_end(struct tn_stream *s)
{
    struct tn_dconn *c = s->conn;
    const struct tn_http_stats *hs = &c->l->hcm.stats;
    int code = s->si.response_code;
    tn_stat_dec(HS(c, downstream_rq_active));
    if (s->resp_done)
        tn_stat_inc(HS(c, downstream_rq_completed));
    if (code >= 100 && code < 600) {
        const uint32_t slots[5] = {hs->downstream_rq_1xx, hs->downstream_rq_2xx, hs->downstream_rq_3xx,
                                   hs->downstream_rq_4xx, hs->downstream_rq_5xx};
        tn_stat_inc(c->w->shard, slots[code / 100 - 1]);
    }
    tn_stat_record(HS(c, downstream_rq_time), uv_now(&c->w->loop) - s->si.start_ns / 1000000);
    tn_stat_add(HS(c, downstream_cx_rx_bytes_total), s->si.bytes_received);
    tn_stat_add(HS(c, downstream_cx_tx_bytes_total), s->si.bytes_sent);
}

static void stream_destroy(struct tn_stream *s)
{
    struct tn_dconn *c = s->conn;
    const struct tn_hcm *hcm = &c->l->hcm;
    if (!s->active)
        return;
    s->destroyed = true;
    for (unsigned i = s->n_filters; i-- > 0;) {
        const struct tn_filter_ops *ops = hcm->filters[i].factory->ops;
        if (ops && ops->on_destroy)
            ops->on_destroy(s, hcm->filters[i].config, s->fctx[i]);
    }
    if (s->counted)
        stream_count_end(s);
    if (s->si.response_code || s->si.response_flags)
        stream_log(s);
    if (s->resp_blk)
        tn_block_unref(s->resp_blk);
    s->resp_blk = NULL;
    tn_pool_dispose(&s->pool);
    if (s->routes_ref)
        tn_route_table_unref(s->routes);
    s->routes = NULL;
    s->routes_ref = false;
    s->active = false;
    tn_timer_stop(&c->w->timers, &s->timer);
    /* the memory stays valid (callers up the stack look at s->active and
     * s->id); tn_conn_quiescent frees what the free list holds too many of */
    if (s->prev)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
    if (c->codec->stream_hold && c->codec->stream_hold(s))
        return; /* the codec hands it back (tn__cm_stream_release) */
    tn__cm_stream_release(s);
}

void tn__cm_stream_release(struct tn_stream *s)
{
    struct tn_dconn *c = s->conn;
    s->next_free = c->w->free_streams;
    c->w->free_streams = s;
    c->w->n_free_streams++;
}

static void stream_free(struct tn_stream *s)
{
    if (s->codec_owner)
        s->codec_owner->stream_free(s);
    free(s->hdrs);
    free(s->resp_hdrs);
    free(s);
}

static void on_trim_timer(struct tn_timer *t)
{
    tn_conn_quiescent((struct tn_worker *)((char *)t - offsetof(struct tn_worker, trim_timer)));
}

void tn_conn_quiescent(struct tn_worker *w)
{
    while (w->n_free_streams > FREE_STREAMS_MAX) {
        struct tn_stream *s = w->free_streams;
        w->free_streams = s->next_free;
        w->n_free_streams--;
        stream_free(s);
        w->n_freed++;
    }
    if (w->n_freed < 1024)
        return;
    /* many connections or streams gone since the last time: give the pages
     * back to the system (glibc keeps freed chunks in its arenas), at most
     * once a second; one due sooner waits on a timer (an idle loop may not
     * come round again) */
    if (w->n_freed < 1024)
        return;
    uint64_t now = uv_now(&w->loop);
    if (now - w->last_trim < 1000) {
        if (w->trim_timer.cb == NULL)
            tn_timer_init(&w->trim_timer, on_trim_timer);
        if (!tn_timer_armed(&w->trim_timer))
            tn_timer_start(&w->timers, &w->trim_timer, w->last_trim + 1000 - now);
        return;
    }
    w->n_freed = 0;
    w->last_trim = now;
    /* the free lists refill under load; after a burst they only pin pages */
    while (w->n_free_streams > FREE_STREAMS_AFTER_BURST) {
        struct tn_stream *s = w->free_streams;
        w->free_streams = s->next_free;
        w->n_free_streams--;
        stream_free(s);
    }
    tn_block_cache_trim(FREE_BLOCKS_AFTER_BURST);
    tn_outq_cache_trim(FREE_WRITES_AFTER_BURST);
    malloc_trim(0);
}

void tn_conn_worker_done(struct tn_worker *w)
{
    while (w->free_streams) {
        struct tn_stream *s = w->free_streams;
        w->free_streams = s->next_free;
        stream_free(s);
    }
    w->n_free_streams = 0;
}

/* Both directions are over: the connection goes on with its next request,
 * or closes. */
static void stream_maybe_done(struct tn_stream *s)
{
    struct tn_dconn *c = s->conn;
    if (!s->active || !s->resp_done)
        return;
    if (c->codec->multiplexed) {
        /* the stream ends alone; the codec ends what is left of the
         * request on the wire (RST_STREAM) and decides about the connection */
        stream_destroy(s);
        if (c->closing)
            return;
        if (c->streams == NULL)
            arm_idle(c);
        c->codec->resume(c);
        return;
    }
    if (!s->req_done) {
        /* answered before the request ended: the rest cannot be trusted */
        c->keepalive = false;
        stream_destroy(s);
        close_after_flush(c);
        return;
    }
    stream_destroy(s);
    TN_LOG(TN_LOG_TRACE, http, "[C%" PRIu64 "] stream done: keepalive %d", c->id, c->keepalive);
    if (c->closing)
        return;
    if (!c->keepalive || c->drain) {
        close_after_flush(c);
        return;
    }
    if (c->streams == NULL)
        arm_idle(c);
    c->codec->resume(c);
}

/* Ends a stream whose response cannot finish cleanly: HTTP/1.1 closes
 * the connection, a multiplexing codec resets the stream alone. */
static void stream_abort(struct tn_stream *s)
{
    struct tn_dconn *c = s->conn;
    if (c->codec->multiplexed) {
        tn_stat_inc(HS(c, downstream_rq_tx_reset));
        c->codec->reset_stream(s);
    } else {
        conn_close(c);
    }
}

void tn__cm_stream_destroy(struct tn_stream *s, uint32_t flags)
{
    struct tn_dconn *c = s->conn;
    if (!s->active)
        return;
    s->si.response_flags |= flags;
    stream_destroy(s);
    if (c->streams == NULL && !c->closing)
        arm_idle(c);
}

void tn__cm_stream_drained(struct tn_stream *s)
{
    const struct tn_hcm *hcm = &s->conn->l->hcm;
    for (unsigned i = s->n_filters; i-- > 0 && s->active;) {
        const struct tn_filter_ops *ops = hcm->filters[i].factory->ops;
        if (ops && ops->on_downstream_drained)
            ops->on_downstream_drained(s, hcm->filters[i].config, s->fctx[i]);
    }
}

static void on_stream_timer(struct tn_timer *t)
{
    struct tn_stream *s = (struct tn_stream *)((char *)t - offsetof(struct tn_stream, timer));
    struct tn_dconn *c = s->conn;
    if (!s->req_done && s->rq.method == NULL) {
        TN_LOG(TN_LOG_DEBUG, http, "[C%" PRIu64 "] request headers timeout", c->id);
        tn_stat_inc(HS(c, downstream_rq_header_timeout));
        s->req_done = true;
        local_reply(s, 408, "request headers timeout", TN_RF_STREAM_IDLE_TIMEOUT, "request_header_timeout", true);
        return;
    }
    uint64_t idle = s->idle_timeout_ms, now = uv_now(&c->w->loop);
    if (idle && s->last_activity + idle > now) {
        tn_timer_start(&c->w->timers, &s->timer, s->last_activity + idle - now);
        return;
    }
    TN_LOG(TN_LOG_DEBUG, http, "%s stream idle timeout", tn_stream_tag(s));
    tn_stat_inc(HS(c, downstream_rq_idle_timeout));
    if (s->resp_started) {
        s->si.response_flags |= TN_RF_STREAM_IDLE_TIMEOUT;
        stream_abort(s);
        return;
    }
    local_reply(s, 408, "stream timeout", TN_RF_STREAM_IDLE_TIMEOUT, "stream_idle_timeout", true);
}

/* Any progress on the stream pushes its idle timeout back (lazily: the
 * timer, when it fires, looks at the last progress). */
static void stream_touch(struct tn_stream *s)
{
    struct tn_dconn *c = s->conn;
    uint64_t ms = s->idle_timeout_ms;
    s->last_activity = uv_now(&c->w->loop);
    if (ms && !tn_timer_armed(&s->timer))
        tn_timer_start(&c->w->timers, &s->timer, ms);
}

struct tn_stream *tn__cm_stream_new(struct tn_dconn *c)
{
    struct tn_worker *w = c->w;
    struct tn_stream *s = w->free_streams;
    if (s) {
        w->free_streams = s->next_free;
        w->n_free_streams--;
    } else if ((s = calloc(1, sizeof(*s))) == NULL) {
        TN_LOG(TN_LOG_ERROR, http, "[C%" PRIu64 "] out of memory for a request", c->id);
        return NULL;
    }
    memset(s, 0, offsetof(struct tn_stream, hdrs));
    if (s->codec_owner != c->codec) {
        if (s->codec_owner)
            s->codec_owner->stream_free(s);
        memset(s->codec_mem, 0, sizeof(s->codec_mem));
        s->codec_owner = c->codec;
    }
    s->conn = c;
    s->active = true;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    s->rq.headers = s->hdrs;
    const struct tn_hcm *hcm = &c->l->hcm;
    /* an RDS table can be replaced while the stream runs: it keeps the one
     * it started with */
    if (hcm->rds_name) {
        size_t k = hcm->rds_index;
        struct tn_route_table *rt = k < w->n_rds ? w->rds[k] : NULL;
        s->routes = rt ? tn_route_table_ref(rt) : NULL;
        s->routes_ref = rt != NULL;
    } else {
        s->routes = hcm->routes;
    }
    s->id = ++c->n_streams;
    tn_pool_init(&s->pool);
    s->si.start_ns = uv_now(&w->loop) * 1000000;
    s->si.start_ms = tn_worker_wall_ms(w);
    s->si.protocol = c->codec->protocol;
    s->idle_timeout_ms = hcm->stream_idle_timeout_ms;
    memcpy(&s->si.downstream_remote, &c->peer, sizeof(c->peer));
    memcpy(&s->si.downstream_local, &c->local, sizeof(c->local));
    /* the connection is no longer idle; the stream has its own timeouts */
    tn_timer_stop(&w->timers, &c->timer);
    tn_timer_init(&s->timer, on_stream_timer);
    uint64_t ms = hcm->request_headers_timeout_ms ? hcm->request_headers_timeout_ms : hcm->stream_idle_timeout_ms;
    if (ms)
        tn_timer_start(&w->timers, &s->timer, ms);
    return s;
}

char *tn__stream_scratch(struct tn_stream *s, size_t n)
{
    if (s->scratch_len + n <= TN_CM_SCRATCH) {
        char *p = s->scratch + s->scratch_len;
        s->scratch_len += n;
        return p;
    }
    return tn_pool_alloc(&s->pool, n);
}

int tn__stream_add_header(struct tn_stream *s, const char *name, size_t nl, const char *v, size_t vl)
{
    if (s->rq.n_headers == s->hdrs_cap) {
        size_t cap = s->hdrs_cap ? s->hdrs_cap * 2 : 32;
        struct tn_header *h = realloc(s->hdrs, cap * sizeof(*h));
        if (h == NULL)
            return -1;
        s->hdrs = h;
        s->hdrs_cap = cap;
        s->rq.headers = h;
    }
    s->hdrs[s->rq.n_headers++] = (struct tn_header){.name = name, .name_len = nl, .value = v, .value_len = vl};
    return 0;
}

void tn__stream_record_resp_header(struct tn_stream *s, const char *base, size_t before, size_t nl, size_t vl)
{
    if (s->n_resp_hdrs == s->resp_hdrs_cap) {
        size_t cap = s->resp_hdrs_cap ? s->resp_hdrs_cap * 2 : 16;
        struct tn_header *h = realloc(s->resp_hdrs, cap * sizeof(*h));
        if (h == NULL)
            return;
        s->resp_hdrs = h;
        s->resp_hdrs_cap = cap;
    }
    s->resp_hdrs[s->n_resp_hdrs++] =
        (struct tn_header){.name = base + before, .name_len = nl, .value = base + before + nl + 2, .value_len = vl};
}

static struct tn_header *find_header(struct tn_stream *s, const char *name)
{
    return (struct tn_header *)tn_headers_find(s->rq.headers, s->rq.n_headers, name, strlen(name));
}

static void remove_header(struct tn_stream *s, const char *name)
{
    size_t n = strlen(name), j = 0;
    for (size_t i = 0; i < s->rq.n_headers; i++)
        if (!(s->hdrs[i].name_len == n && memcmp(s->hdrs[i].name, name, n) == 0))
            s->hdrs[j++] = s->hdrs[i];
    s->rq.n_headers = j;
}

static bool addr_internal(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
        return (a >> 24) == 10 || (a >> 24) == 127 || (a >> 20) == 0xac1 || (a >> 16) == 0xc0a8;
    }
    if (ss->ss_family == AF_INET6) {
        const unsigned char *b = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
        static const unsigned char lo[16] = {[15] = 1};
        return memcmp(b, lo, 16) == 0 || (b[0] & 0xfe) == 0xfc;
    }
    return false;
}

static size_t peer_ip(const struct sockaddr_storage *ss, char *out, size_t len)
{
    const void *a = ss->ss_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
                                              : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;
    if (inet_ntop(ss->ss_family, a, out, len) == NULL)
        return 0;
    return strlen(out);
}

/* Appends ", value" to a header, or adds it (via). */
static int append_value(struct tn_stream *s, const char *name, const char *value)
{
    struct tn_header *h = find_header(s, name);
    size_t vl = strlen(value);
    if (h == NULL)
        return tn__stream_add_header(s, name, strlen(name), value, vl);
    char *v = tn__stream_scratch(s, h->value_len + 2 + vl);
    if (v == NULL)
        return -1;
    memcpy(v, h->value, h->value_len);
    memcpy(v + h->value_len, ", ", 2);
    memcpy(v + h->value_len + 2, value, vl);
    h->value = v;
    h->value_len += 2 + (uint32_t)vl;
    return 0;
}

/* Envoy's request id: a random UUID v4. */
static void make_request_id(struct tn_worker *w, char out[36])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = tn_worker_random(w), b = tn_worker_random(w);
    unsigned char r[16];
    memcpy(r, &a, 8);
    memcpy(r + 8, &b, 8);
    r[6] = (r[6] & 0x0f) | 0x40;
    r[8] = (r[8] & 0x3f) | 0x80;
    for (int i = 0, j = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[j++] = '-';
        out[j++] = hex[r[i] >> 4];
        out[j++] = hex[r[i] & 15];
    }
}

/* Envoy's request header handling (ConnectionManagerUtility) on a request
 * the codec filled: internal or external origin, x-envoy-* from outside,
 * x-forwarded-for/-proto, via, x-request-id. 0 or -1 (out of memory). */
static int mutate_request(struct tn_dconn *c, struct tn_stream *s)
{
    const struct tn_hcm *hcm = &c->l->hcm;
    /* internal or external origin (Envoy's rule) */
    struct tn_header *xff = find_header(s, "x-forwarded-for");
    if (hcm->use_remote_address)
        /* Envoy: internal only from an internal address that sent no
         * x-forwarded-for of its own (it came through no other proxy) */
        s->rq.external = xff != NULL || !addr_internal(&c->peer);
    else
        s->rq.external = xff == NULL || memchr(xff->value, ',', xff->value_len) != NULL;
    const struct tn_route_table *rt = s->routes;
    if (s->rq.external && rt)
        for (size_t i = 0; i < rt->n_internal_only_headers; i++)
            remove_header(s, rt->internal_only_headers[i]);
    remove_header(s, "x-envoy-internal");
    if (!s->rq.external) {
        tn__stream_add_header(s, "x-envoy-internal", 16, "true", 4);
    } else if (hcm->use_remote_address) {
        /* at the edge an outside client does not steer tern
         * (x-envoy-retry-on, x-envoy-upstream-rq-timeout-ms, ...) */
        size_t j = 0;
        for (size_t i = 0; i < s->rq.n_headers; i++)
            if (!(s->hdrs[i].name_len > 8 && memcmp(s->hdrs[i].name, "x-envoy-", 8) == 0))
                s->hdrs[j++] = s->hdrs[i];
        s->rq.n_headers = j;
    }

    if (hcm->use_remote_address) {
        char ip[INET6_ADDRSTRLEN];
        size_t il = peer_ip(&c->peer, ip, sizeof(ip));
        xff = find_header(s, "x-forwarded-for");
        if (!hcm->skip_xff_append && il) {
            if (xff) {
                char *v = tn__stream_scratch(s, xff->value_len + 2 + il);
                if (v == NULL)
                    return -1;
                memcpy(v, xff->value, xff->value_len);
                memcpy(v + xff->value_len, ", ", 2);
                memcpy(v + xff->value_len + 2, ip, il);
                xff->value = v;
                xff->value_len += 2 + il;
            } else {
                char *v = tn__stream_scratch(s, il);
                if (v == NULL)
                    return -1;
                memcpy(v, ip, il);
                tn__stream_add_header(s, "x-forwarded-for", 15, v, il);
            }
        }
        remove_header(s, "x-forwarded-proto");
        tn__stream_add_header(s, "x-forwarded-proto", 17, s->rq.scheme, strlen(s->rq.scheme));
    } else if (find_header(s, "x-forwarded-proto") == NULL) {
        tn__stream_add_header(s, "x-forwarded-proto", 17, s->rq.scheme, strlen(s->rq.scheme));
    }

    if (hcm->via && append_value(s, "via", hcm->via))
        return -1;

    struct tn_header *rid = find_header(s, "x-request-id");
    if (rid && s->rq.external && hcm->use_remote_address && !hcm->preserve_external_request_id) {
        remove_header(s, "x-request-id");
        rid = NULL;
    }
    if (rid == NULL && hcm->generate_request_id) {
        char *v = tn__stream_scratch(s, 36);
        if (v == NULL)
            return -1;
        make_request_id(c->w, v);
        tn__stream_add_header(s, "x-request-id", 12, v, 36);
        rid = find_header(s, "x-request-id");
    }
    if (rid) {
        s->si.request_id = rid->value;
        s->si.request_id_len = rid->value_len;
    }
    s->si.method = s->rq.method;
    s->si.method_len = s->rq.method_len;
    s->si.path = s->rq.path;
    s->si.path_len = s->rq.path_len;
    s->si.authority = s->rq.host;
    s->si.authority_len = s->rq.host_len;
    return 0;
}

int tn__cm_headers(struct tn_stream *s)
{
    struct tn_dconn *c = s->conn;
    const struct tn_hcm *hcm = &c->l->hcm;
    if (mutate_request(c, s)) {
        tn_stat_inc(HS(c, downstream_cx_protocol_error));
        tn__cm_protocol_error(s, 400, "Bad Request", TN_RF_DOWNSTREAM_PROTOCOL_ERROR, "http1.invalid_request");
        return -1;
    }
    tn_stat_inc(HS(c, downstream_rq_total));
    tn_stat_inc(c->w->shard, c->codec->multiplexed ? hcm->stats.downstream_rq_http2_total
                                                   : hcm->stats.downstream_rq_http1_total);
    tn_stat_inc(HS(c, downstream_rq_active));
    s->counted = true;
    s->si.req_headers = s->rq.headers;
    s->si.n_req_headers = s->rq.n_headers;
    stream_touch(s);
    if (s->rq.end_stream) {
        s->req_done = true;
        s->si.last_downstream_rx_ns = uv_now(&c->w->loop) * 1000000;
    }
    s->n_filters = hcm->n_filters;
    size_t off = 0;
    for (unsigned i = 0; i < s->n_filters; i++) {
        const struct tn_filter_ops *ops = hcm->filters[i].factory->ops;
        size_t sz = ops ? (ops->ctx_size + 15) & ~(size_t)15 : 0;
        if (off + sz <= TN_CM_CTX_MEM) {
            s->fctx[i] = s->ctxmem + off;
            memset(s->fctx[i], 0, sz);
            off += sz;
        } else {
            s->fctx[i] = tn_pool_alloc(&s->pool, sz);
        }
    }
    s->hdr_stop = s->cur_filter = 0;
    decode_headers_from(s, 0);
    return 0;
}

/* Runs on_request_headers from filter `from` on, until one stops. */
static void decode_headers_from(struct tn_stream *s, unsigned from)
{
    const struct tn_hcm *hcm = &s->conn->l->hcm;
    unsigned i;
    for (i = from; i < s->n_filters && s->active && !s->destroyed; i++) {
        const struct tn_filter_ops *ops = hcm->filters[i].factory->ops;
        s->cur_filter = i;
        s->hdr_stop = i + 1;
        if (ops && ops->on_request_headers &&
            ops->on_request_headers(s, hcm->filters[i].config, s->fctx[i], s->rq.end_stream) == TN_FILTER_STOP)
            break;
    }
    if (!s->destroyed)
        s->cur_filter = s->n_filters ? s->n_filters - 1 : 0;
}

static void request_body(struct tn_stream *s, struct tn_slice *data, bool end)
{
    const struct tn_hcm *hcm = &s->conn->l->hcm;
    s->si.bytes_received += data->len;
    if (end) {
        s->req_done = true;
        s->rq.end_stream = true;
        s->si.last_downstream_rx_ns = uv_now(&s->conn->w->loop) * 1000000;
    }
    if (s->resp_done || !s->active) {
        tn_slice_release(data);
        return;
    }
    stream_touch(s);
    /* only the filters that saw the headers see the body */
    for (unsigned i = 0; i < s->hdr_stop; i++) {
        const struct tn_filter_ops *ops = hcm->filters[i].factory->ops;
        s->cur_filter = i;
        if (ops && ops->on_request_body &&
            ops->on_request_body(s, hcm->filters[i].config, s->fctx[i], data, end) == TN_FILTER_STOP) {
            if (!s->destroyed)
                s->cur_filter = s->n_filters ? s->n_filters - 1 : 0;
            return;
        }
    }
    s->cur_filter = s->n_filters ? s->n_filters - 1 : 0;
    tn_slice_release(data);
}

void tn__cm_data(struct tn_stream *s, struct tn_slice *data, bool end_stream)
{
    request_body(s, data, end_stream);
}

void tn__cm_request_end(struct tn_stream *s)
{
    if (s->active && !s->req_done) {
        struct tn_slice sl = {0};
        request_body(s, &sl, true);
    }
    s->req_done = true;
    if (s->active && s->resp_done)
        stream_maybe_done(s);
}

void tn__cm_protocol_error(struct tn_stream *s, int status, const char *body, uint32_t flags, const char *details)
{
    s->req_done = true;
    local_reply(s, status, body, flags, details, true);
}

void tn__cm_upgraded(struct tn_stream *s)
{
    struct tn_dconn *c = s->conn;
    s->tunnel = true;
    c->upgraded = true;
    tn_stat_inc(HS(c, downstream_cx_upgrades_total));
    tn_stat_inc(HS(c, downstream_cx_upgrades_active));
}

/* --- responses ------------------------------------------------------------ */

static void finish_response(struct tn_stream *s)
{
    s->resp_done = true;
    stream_maybe_done(s);
}

/* Passes a response head through filters from-1 .. 0, then has the codec
 * write it. False when a filter stopped it or it could not be written. */
static bool encode_headers_from(struct tn_stream *s, unsigned from, struct tn_response *r)
{
    const struct tn_hcm *hcm = &s->conn->l->hcm;
    for (unsigned i = from; i-- > 0;) {
        const struct tn_filter_ops *ops = hcm->filters[i].factory->ops;
        if (ops && ops->on_response_headers &&
            ops->on_response_headers(s, hcm->filters[i].config, s->fctx[i], r) == TN_FILTER_STOP)
            return false;
    }
    if (s->conn->codec->encode_headers(s, r)) {
        conn_close(s->conn);
        return false;
    }
    if (r->end_stream || s->head_request || r->status == 204 || r->status == 304)
        finish_response(s);
    return true;
}

/* Passes a body slice through filters from-1 .. 0 (one that stops keeps
 * it), then writes it; end_stream ends the response. */
static void encode_data_from(struct tn_stream *s, unsigned from, struct tn_slice *data, bool end_stream)
{
    struct tn_dconn *c = s->conn;
    const struct tn_hcm *hcm = &c->l->hcm;
    if (!s->active || s->resp_done || c->closing) {
        tn_slice_release(data);
        return;
    }
    for (unsigned i = from; i-- > 0;) {
        const struct tn_filter_ops *ops = hcm->filters[i].factory->ops;
        if (ops && ops->on_response_body &&
            ops->on_response_body(s, hcm->filters[i].config, s->fctx[i], data, end_stream) == TN_FILTER_STOP)
            return;
    }
    if (!s->active || s->resp_done || c->closing) {
        tn_slice_release(data);
        return;
    }
    stream_touch(s);
    if (data->len && !s->head_request) {
        s->si.bytes_sent += data->len;
    } else {
        tn_slice_release(data);
        data = NULL;
    }
    if (c->codec->encode_data(s, data, end_stream)) {
        conn_close(c);
        return;
    }
    if (end_stream)
        finish_response(s);
}

static void local_reply(struct tn_stream *s, int status, const char *body, uint32_t flags, const char *details,
                        bool close)
{
    struct tn_dconn *c = s->conn;
    if (!s->active || s->resp_done)
        return;
    s->si.response_flags |= flags;
    s->si.response_code_details = details;
    if (c->codec->multiplexed)
        close = false; /* the stream ends alone */
    else if (close || !s->req_done)
        c->keepalive = false;
    if (s->resp_started) {
        stream_abort(s); /* too late for a clean answer */
        return;
    }
    size_t bl = body ? strlen(body) : 0;
    struct tn_header h[1] = {{.name = "content-type", .name_len = 12, .value = "text/plain", .value_len = 10}};
    struct tn_response r = {
        .status = status, .headers = h, .n_headers = bl ? 1 : 0, .content_length = (int64_t)bl, .end_stream = bl == 0};
    /* the filters before the one answering see the reply (a cache may put
     * a stale response in its place) */
    uint64_t id = s->id;
    unsigned from = s->n_filters ? (s->cur_filter < s->n_filters ? s->cur_filter : s->n_filters - 1) : 0;
    if (!encode_headers_from(s, from, &r) || r.end_stream || s->head_request || !s->active || s->id != id)
        return;
    struct tn_block *b = tn_block_new(bl);
    if (b == NULL) {
        conn_close(c);
        return;
    }
    memcpy(b->data, body, bl);
    struct tn_slice sl = tn_slice_of(b, b->data, bl);
    tn_block_unref(b);
    encode_data_from(s, from, &sl, true);
}

/* --- the stream API ----------------------------------------------------------- */

struct tn_request *tn_stream_request(struct tn_stream *s)
{
    return &s->rq;
}

struct tn_stream_info *tn_stream_info(struct tn_stream *s)
{
    return &s->si;
}

const struct tn_hcm *tn_stream_hcm(struct tn_stream *s)
{
    return &s->conn->l->hcm;
}

struct tn_route_table *tn_stream_routes(struct tn_stream *s)
{
    return s->routes;
}

struct tn_worker *tn_stream_worker(struct tn_stream *s)
{
    return s->conn->w;
}

const char *tn_stream_tag(struct tn_stream *s)
{
    if (s->tag[0] == '\0')
        snprintf(s->tag, sizeof(s->tag), "[C%" PRIu64 "][S%" PRIu64 "]", s->conn->id, s->id);
    return s->tag;
}

void *tn_stream_alloc(struct tn_stream *s, size_t n)
{
    return tn_pool_alloc(&s->pool, n);
}

char *tn_stream_strdup(struct tn_stream *s, const char *p, size_t n)
{
    char *d = tn_pool_alloc(&s->pool, n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

void tn_stream_local_reply(struct tn_stream *s, int status, const char *body, uint32_t flags, const char *details)
{
    local_reply(s, status, body, flags, details, false);
}

void tn_stream_encode_headers(struct tn_stream *s, struct tn_response *r)
{
    if (!s->active || s->resp_started)
        return;
    stream_touch(s);
    s->si.response_code_details = s->si.response_code_details ? s->si.response_code_details : "via_upstream";
    encode_headers_from(s, s->n_filters ? s->n_filters - 1 : 0, r);
}

void tn_stream_encode_data(struct tn_stream *s, struct tn_slice *data, bool end_stream)
{
    encode_data_from(s, s->n_filters ? s->n_filters - 1 : 0, data, end_stream);
}

unsigned tn_stream_filter_index(struct tn_stream *s, const void *ctx)
{
    for (unsigned i = 0; i < s->n_filters; i++)
        if (s->fctx[i] == ctx)
            return i;
    return s->n_filters ? s->n_filters - 1 : 0;
}

void tn_stream_encode_headers_from(struct tn_stream *s, unsigned idx, struct tn_response *r)
{
    if (!s->active || s->resp_started)
        return;
    stream_touch(s);
    encode_headers_from(s, idx, r);
}

void tn_stream_encode_data_from(struct tn_stream *s, unsigned idx, struct tn_slice *data, bool end_stream)
{
    encode_data_from(s, idx, data, end_stream);
}

void tn_stream_continue_decoding(struct tn_stream *s, unsigned idx)
{
    if (s->active && !s->resp_started)
        decode_headers_from(s, idx + 1);
}

void tn_stream_reset(struct tn_stream *s, uint32_t flags)
{
    s->si.response_flags |= flags;
    tn_stat_inc(HS(s->conn, downstream_rq_tx_reset));
    s->conn->codec->reset_stream(s);
}

bool tn_stream_downstream_above(struct tn_stream *s)
{
    const struct tn_codec_ops *codec = s->conn->codec;
    return tn_outq_above(&s->conn->out) || (codec->stream_above && codec->stream_above(s));
}

void tn_stream_request_pause(struct tn_stream *s, bool pause)
{
    s->conn->codec->read_pause(s, pause);
}

void tn_stream_set_idle_timeout(struct tn_stream *s, uint64_t ms)
{
    struct tn_dconn *c = s->conn;
    s->idle_timeout_ms = ms;
    if (ms)
        tn_timer_start(&c->w->timers, &s->timer, ms);
    else
        tn_timer_stop(&c->w->timers, &s->timer);
}

void tn_stream_send_continue(struct tn_stream *s)
{
    if (s->sent_continue || !s->rq.expect_continue || s->resp_started)
        return;
    s->sent_continue = true;
    s->conn->codec->send_continue(s);
}

void tn_stream_encode_interim(struct tn_stream *s, const struct tn_response *r)
{
    struct tn_dconn *c = s->conn;
    if (!s->active || s->resp_started || c->closing || r->status < 100 || r->status > 199 || r->status == 101)
        return;
    c->codec->encode_interim(s, r);
}

/* --- accept and drain --------------------------------------------------------- */

/* Sets up a connection whose tcp handle is open (accepted or adopted). */
static void conn_start(struct tn_dconn *c, struct tn_wlistener *wl)
{
    struct tn_worker *w = wl->w;
    c->l = tn_listener_ref(wl->l);
    c->id = ++w->next_conn_id * 64 + w->id;
    w->n_conns++;
    tn_stat_inc(LS(c, downstream_cx_total));
    tn_stat_inc(LS(c, downstream_cx_active));
    tn_stat_inc(HS(c, downstream_cx_total));
    tn_stat_inc(HS(c, downstream_cx_active));
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    int len = sizeof(c->peer);
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len);
    len = sizeof(c->local);
    uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&c->local, &len);
    uv_tcp_nodelay(&c->tcp, 1);
    enum tn_codec kind = c->l->hcm.codec;
    c->codec = kind == TN_CODEC_HTTP2 ? &tn_codec_h2 : &tn_codec_h1;
    c->sniff = kind == TN_CODEC_AUTO;
    if (!c->sniff)
        count_codec(c);
    tn_outq_init(&c->out, (uv_stream_t *)&c->tcp, c->l->per_connection_buffer_limit, c);
    c->out.on_low = on_out_low;
    c->out.on_error = on_out_error;
    c->out.on_empty = on_out_empty;
    tn_outq_gather(&c->out, &w->flusher);
    tn_timer_init(&c->timer, on_idle_timer);
    c->keepalive = true;
    c->drain = w->draining;
    c->codec->init(c); /* after the queue: HTTP/2 writes its SETTINGS there */
    arm_idle(c);
    tn__cm_read_start(c);
    TN_LOG(TN_LOG_DEBUG, connection, "[C%" PRIu64 "] new connection", c->id);
}

static struct tn_dconn *conn_new(struct tn_worker *w)
{
    struct tn_dconn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        TN_LOG(TN_LOG_ERROR, connection, "out of memory accepting a connection");
        return NULL;
    }
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    c->w = w;
    return c;
}

void tn_conn_accept(struct tn_wlistener *wl)
{
    struct tn_dconn *c = conn_new(wl->w);
    if (c == NULL)
        return;
    if (uv_accept((uv_stream_t *)&wl->tcp, (uv_stream_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    conn_start(c, wl);
}

int tn_conn_adopt(struct tn_wlistener *wl, uv_os_sock_t fd)
{
    struct tn_dconn *c = conn_new(wl->w);
    int rc;
    if (c == NULL)
        return UV_ENOMEM;
    if ((rc = uv_tcp_open(&c->tcp, fd)) < 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return rc;
    }
    conn_start(c, wl);
    return 0;
}

void tn_conn_drain_all(struct tn_worker *w)
{
    struct tn_dconn *c = w->conns, *next;
    for (; c; c = next) {
        next = c->next;
        c->drain = true;
        if (c->codec->drain)
            c->codec->drain(c);
        else if (c->streams == NULL)
            conn_close(c);
    }
}

void tn_conn_drain_listener(struct tn_worker *w, const struct tn_listener *l, bool now)
{
    struct tn_dconn *c = w->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->l != l)
            continue;
        c->drain = true;
        if (now)
            conn_close(c);
        else if (c->codec->drain)
            c->codec->drain(c);
        else if (c->streams == NULL)
            conn_close(c);
    }
}

void tn_conn_close_all(struct tn_worker *w)
{
    while (w->conns)
        conn_close(w->conns);
}
