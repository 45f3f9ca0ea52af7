/* Downstream HTTP/1.1 connections and the connection manager.
 *
 * One connection serves one request at a time: llhttp reads ahead, and a
 * pipelined request waits (parser paused, reading stopped) until the
 * response before it is complete, so responses leave in request order.
 *
 * llhttp runs in strict mode, and tern adds the rules the parser leaves to
 * its user: no obs-fold, one Host with a valid authority, only "chunked" as
 * a transfer coding, the whole head within max_request_headers_kb and
 * max_headers_count, no CONNECT or upgrade (not configurable yet).
 *
 * A connection without a request in flight holds no stream, no head buffer
 * and no read block: the stream (with the head it collects and its filters'
 * contexts) comes from the worker's free list when a request begins and
 * goes back when it ends, so an idle keep-alive connection costs its socket
 * handle, parser and queues, about 1 KB. */
#include "dataplane/http/conn.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>
#include <llhttp.h>
#include <netinet/in.h>

#include "dataplane/accesslog/accesslog.h"
#include "dataplane/stats/dp_stats.h"
#include "dataplane/http/h1.h"
#include "dataplane/server/listener.h"
#include "dataplane/core/log.h"
#include "dataplane/core/outq.h"
#include "dataplane/http/stream.h"
#include "filters/filter.h"

#define MAX_FILTERS 16
#define CTX_MEM 2048
#define SCRATCH 512
/* Streams a worker keeps for reuse beyond those in use; more are freed. */
#define FREE_STREAMS_MAX 256
/* What the free lists keep when memory is given back after many closes. */
#define FREE_STREAMS_AFTER_BURST 16
#define FREE_BLOCKS_AFTER_BURST 8
#define FREE_WRITES_AFTER_BURST 16

struct tn_stream {
    struct tn_route_table *routes; /* the route table this stream matches against */
    bool routes_ref;               /* routes is a reference of ours (RDS) */
    struct tn_dconn *conn;
    struct tn_stream *next_free; /* the worker's free list */
    struct tn_request rq;
    struct tn_stream_info si;
    uint64_t id;
    char tag[48];
    struct tn_header *hdrs; /* request headers to forward (owned, grows) */
    size_t hdrs_cap;
    char scratch[SCRATCH]; /* generated header values (request id, xff) */
    size_t scratch_len;
    struct tn_pool pool; /* anything else a filter keeps for the stream */
    void *fctx[MAX_FILTERS];
    unsigned n_filters;
    unsigned hdr_stop;   /* filters [0, hdr_stop) have seen the request headers */
    unsigned cur_filter; /* the filter whose request callback runs (local replies pass the ones before it) */
    bool active, req_done, resp_started, resp_done, resp_chunked, head_request, destroyed;
    bool sent_continue, counted, headers_done;
    bool upgrade; /* an upgrade request waiting for its answer, or upgraded (tunnel) */
    uint64_t idle_timeout_ms; /* the HCM's stream_idle_timeout, or the route's idle_timeout */
    uint32_t resp_flags;
    struct tn_header *resp_hdrs; /* as sent, for the access log (pointing into resp_blk) */
    size_t n_resp_hdrs, resp_hdrs_cap;
    struct tn_block *resp_blk;
    struct tn_h1_head head; /* the request head as it arrives (kept across reuse) */
    size_t head_raw;        /* head bytes before the current read's origin */
    const char *head_origin; /* where this read's share of the head starts */
    const char *val_end;    /* end of the last header value bytes seen (obs-fold check) */
    bool val_at_end;        /* ... and they ran to the end of the previous read */
    _Alignas(16) char ctxmem[CTX_MEM]; /* filter contexts; last: not cleared per request */
};

struct tn_dconn {
    uv_tcp_t tcp;
    struct tn_worker *w;
    struct tn_listener *l; /* reference */
    struct tn_dconn *next, *prev;
    uint64_t id;
    llhttp_t parser;
    struct tn_outq out;
    struct tn_timer timer; /* idle, request headers and stream idle timeouts */
    struct tn_block *rblk; /* the block the next read lands in */
    struct tn_block *cur_blk; /* the block the parser is reading from */
    struct tn_block *pend_blk; /* unparsed bytes of a pipelined request */
    const char *pend_p;
    size_t pend_len;
    const char *read_start; /* the bytes the parser is reading */
    char prev_last;         /* the last byte of the read before */
    struct sockaddr_storage peer, local;
    struct tn_stream *s; /* the request in flight, NULL between requests */
    uint64_t n_streams;
    uint64_t last_activity; /* uv_now of the stream's last progress */
    bool remote_closed, closing, reading, keepalive, in_parse, stream_ended_in_parse, drain, read_paused_by_filter;
    bool tunnel; /* upgraded: what the client sends is the request body, unparsed */
};

static llhttp_settings_t settings;

/* The connection manager's stats: HS(c, name) is the worker shard and slot. */
#define HS(c, f) (c)->w->shard, (c)->l->hcm.stats.f
#define LS(c, f) (c)->w->shard, (c)->l->stats.f

/* --- connection lifecycle ----------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
    struct tn_dconn *c = h->data;
    struct tn_worker *w = c->w;
    tn_stat_dec(LS(c, downstream_cx_active));
    tn_stat_inc(LS(c, downstream_cx_destroy));
    tn_stat_dec(HS(c, downstream_cx_active));
    tn_stat_dec(HS(c, downstream_cx_http1_active));
    tn_stat_inc(HS(c, downstream_cx_destroy));
    tn_stat_inc(c->w->shard, c->remote_closed ? c->l->hcm.stats.downstream_cx_destroy_remote
                                              : c->l->hcm.stats.downstream_cx_destroy_local);
    if (c->tunnel)
        tn_stat_dec(HS(c, downstream_cx_upgrades_active));
    tn_listener_unref(c->l);
    free(c);
    w->n_freed++;
    tn_worker_conn_closed(w);
}

static void stream_destroy(struct tn_stream *s);

static void conn_close(struct tn_dconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->s != NULL)
        stream_destroy(c->s);
    tn_timer_stop(&c->w->timers, &c->timer);
    tn_outq_dispose(&c->out);
    if (c->rblk)
        tn_block_unref(c->rblk);
    if (c->pend_blk)
        tn_block_unref(c->pend_blk);
    c->rblk = c->pend_blk = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
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
    if (!c->keepalive && (c->s == NULL || c->s->resp_done))
        conn_close(c);
}

static void on_out_error(struct tn_outq *q, int status)
{
    struct tn_dconn *c = q->data;
    TN_LOG(TN_LOG_DEBUG, connection, "[C%" PRIu64 "] write error: %s", c->id, uv_strerror(status));
    if (c->s && !c->s->resp_done)
        c->s->si.response_flags |= TN_RF_DOWNSTREAM_CONNECTION_TERMINATION;
    conn_close(c);
}

static void on_out_low(struct tn_outq *q)
{
    struct tn_dconn *c = q->data;
    struct tn_stream *s = c->s;
    if (s == NULL)
        return;
    const struct tn_hcm *hcm = &c->l->hcm;
    for (unsigned i = s->n_filters; i-- > 0;) {
        const struct tn_filter_ops *ops = hcm->filters[i].factory->ops;
        if (ops && ops->on_downstream_drained)
            ops->on_downstream_drained(s, hcm->filters[i].config, s->fctx[i]);
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

/* --- reading -------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct tn_dconn *c = h->data;
    (void)hint;
    if (c->rblk == NULL)
        c->rblk = tn_block_new(TN_BLOCK_SIZE);
    *buf = c->rblk ? uv_buf_init(c->rblk->data, c->rblk->cap) : uv_buf_init(NULL, 0);
}

static void read_start(struct tn_dconn *c);
static void read_stop(struct tn_dconn *c);
static void parse(struct tn_dconn *c, struct tn_block *blk, const char *p, size_t n);
static void request_body(struct tn_stream *s, struct tn_slice *data, bool end);
static void decode_headers_from(struct tn_stream *s, unsigned from);
static bool encode_headers_from(struct tn_stream *s, unsigned from, struct tn_response *r);
static void encode_data_from(struct tn_stream *s, unsigned from, struct tn_slice *data, bool end_stream);
static void local_reply(struct tn_stream *s, int status, const char *body, uint32_t flags, const char *details,
                        bool close);

static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
    struct tn_dconn *c = h->data;
    (void)buf;
    if (n == 0)
        return;
    if (n < 0) {
        c->remote_closed = true;
        if (c->tunnel) { /* either side closing an upgraded stream closes both */
            conn_close(c);
            return;
        }
        /* a client that leaves (or half-closes: HTTP/1.1 cannot tell) while
         * its request is in flight ends it, as Envoy and nginx do: the
         * router lets the upstream connection go at once */
        if (c->s && !c->s->resp_done) {
            c->s->si.response_flags |= TN_RF_DOWNSTREAM_CONNECTION_TERMINATION;
            tn_stat_inc(HS(c, downstream_rq_rx_reset));
        }
        conn_close(c);
        return;
    }
    /* the block may be kept by slices; the next read takes a fresh one */
    struct tn_block *blk = c->rblk;
    c->rblk = NULL;
    if (c->tunnel) {
        if (c->s) {
            struct tn_slice sl = tn_slice_of(blk, blk->data, (size_t)n);
            request_body(c->s, &sl, false);
        }
        tn_block_unref(blk);
        return;
    }
    if (c->s && c->s->req_done && !c->pend_blk) {
        /* a pipelined request while the previous one is answered: keep it */
        c->pend_blk = blk;
        c->pend_p = blk->data;
        c->pend_len = (size_t)n;
        read_stop(c);
        return;
    }
    parse(c, blk, blk->data, (size_t)n);
    tn_block_unref(blk);
}

static void read_start(struct tn_dconn *c)
{
    if (!c->reading && !c->closing && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

static void read_stop(struct tn_dconn *c)
{
    if (c->reading)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static void stream_begin(struct tn_dconn *c);
static int too_large(struct tn_dconn *c);

/* Two Transfer-Encoding lines in the head collected so far. */
static bool two_te(struct tn_stream *s)
{
    struct tn_h1_head *hd = &s->head;
    unsigned n = 0;
    for (size_t i = 0; i < hd->n; i++)
        if (hd->e[i].nl == 17 && memcmp(hd->buf + hd->e[i].no, "transfer-encoding", 17) == 0)
            n++;
    return n > 1;
}

static void parse_error(struct tn_dconn *c)
{
    llhttp_errno_t e = llhttp_get_errno(&c->parser);
    TN_LOG(TN_LOG_DEBUG, http, "[C%" PRIu64 "] malformed request: %s (%s)", c->id, llhttp_errno_name(e),
           llhttp_get_error_reason(&c->parser));
    if (c->s == NULL && !c->keepalive)
        return; /* a callback already answered and the connection closes after it */
    tn_stat_inc(HS(c, downstream_cx_protocol_error));
    if (c->s && c->s->resp_started) {
        conn_close(c);
        return;
    }
    if (c->s == NULL)
        stream_begin(c); /* the error came before a message began: answer on a fresh stream */
    if (c->s == NULL) {
        conn_close(c);
        return;
    }
    c->s->req_done = true;
    /* only "chunked" is forwarded (RFC 9112 6.1): another coding is 501 as
     * nginx answers, a second Transfer-Encoding line a plain 400 */
    if (e == HPE_INVALID_TRANSFER_ENCODING && !two_te(c->s))
        local_reply(c->s, 501, "Not Implemented", TN_RF_DOWNSTREAM_PROTOCOL_ERROR, "http1.invalid_transfer_encoding",
                    true);
    else
        local_reply(c->s, 400, "Bad Request", TN_RF_DOWNSTREAM_PROTOCOL_ERROR, "http1.codec_error", true);
}

/* Feeds bytes to the parser until they run out or a pipelined request has
 * to wait; what is left is kept with a block reference. */
static void parse(struct tn_dconn *c, struct tn_block *blk, const char *p, size_t n)
{
    while (n > 0 && !c->closing) {
        c->in_parse = true;
        c->stream_ended_in_parse = false;
        c->cur_blk = blk; /* on_body slices reference it */
        c->read_start = p;
        if (c->s && !c->s->headers_done)
            c->s->head_origin = p; /* a head that began in an earlier read goes on here */
        llhttp_errno_t e = llhttp_execute(&c->parser, p, n);
        size_t used = e == HPE_OK ? n : (size_t)(llhttp_get_error_pos(&c->parser) - p);
        c->cur_blk = NULL;
        c->in_parse = false;
        if (used)
            c->prev_last = p[used - 1];
        if (c->closing)
            return;
        if (e == HPE_PAUSED_UPGRADE && c->s && c->s->upgrade) {
            /* what follows is the new protocol's, if the answer is a 101:
             * kept, and nothing more read, until the answer comes */
            read_stop(c);
            if (used < n) {
                if (c->pend_blk)
                    tn_block_unref(c->pend_blk);
                c->pend_blk = tn_block_ref(blk);
                c->pend_p = p + used;
                c->pend_len = n - used;
            }
            return;
        }
        if (e != HPE_OK && e != HPE_PAUSED) {
            parse_error(c);
            return;
        }
        if (c->s && !c->s->headers_done && c->s->head_origin) {
            /* the head goes on in the next read: count what this one held */
            struct tn_stream *s = c->s;
            s->head_raw += (size_t)(p + used - s->head_origin);
            s->head_origin = NULL;
            s->val_at_end = s->val_end == p + used;
            if (s->head_raw > s->head.limit) {
                too_large(c);
                return;
            }
        }
        if (e == HPE_PAUSED)
            llhttp_resume(&c->parser);
        p += used;
        n -= used;
        if (e == HPE_PAUSED && c->s != NULL) {
            /* a complete request is in flight: keep the rest for later */
            if (n > 0) {
                read_stop(c);
                if (c->pend_blk)
                    tn_block_unref(c->pend_blk);
                c->pend_blk = tn_block_ref(blk);
                c->pend_p = p;
                c->pend_len = n;
            }
            return;
        }
    }
}

/* A response finished and the request too: next request, or close. */
static void resume_after_stream(struct tn_dconn *c)
{
    TN_LOG(TN_LOG_TRACE, http, "[C%" PRIu64 "] stream done: keepalive %d, %zu bytes waiting", c->id, c->keepalive,
           c->pend_blk ? c->pend_len : 0);
    if (c->closing)
        return;
    if (!c->keepalive || c->drain) {
        close_after_flush(c);
        return;
    }
    arm_idle(c);
    if (c->in_parse)
        return; /* parse() continues with the bytes it holds */
    if (c->pend_blk) {
        struct tn_block *b = c->pend_blk;
        const char *p = c->pend_p;
        size_t n = c->pend_len;
        c->pend_blk = NULL;
        parse(c, b, p, n);
        tn_block_unref(b);
    }
    if (c->s == NULL || !c->s->req_done)
        read_start(c);
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
    tn_timer_stop(&c->w->timers, &c->timer);
    /* the memory stays valid (callers up the stack look at s->active and
     * s->id); tn_conn_quiescent frees what the free list holds too many of */
    c->s = NULL;
    s->next_free = c->w->free_streams;
    c->w->free_streams = s;
    c->w->n_free_streams++;
}

static void stream_free(struct tn_stream *s)
{
    tn_h1_head_dispose(&s->head);
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

static void stream_maybe_done(struct tn_stream *s)
{
    struct tn_dconn *c = s->conn;
    if (!s->active || !s->resp_done)
        return;
    if (!s->req_done) {
        /* answered before the request ended: the rest cannot be trusted */
        c->keepalive = false;
        stream_destroy(s);
        close_after_flush(c);
        return;
    }
    stream_destroy(s);
    resume_after_stream(c);
}

static void on_stream_timer(struct tn_timer *t)
{
    struct tn_dconn *c = (struct tn_dconn *)((char *)t - offsetof(struct tn_dconn, timer));
    struct tn_stream *s = c->s;
    if (s == NULL) {
        TN_LOG(TN_LOG_DEBUG, connection, "[C%" PRIu64 "] idle timeout", c->id);
        tn_stat_inc(HS(c, downstream_cx_idle_timeout));
        conn_close(c);
        return;
    }
    if (!s->req_done && s->rq.method == NULL) {
        TN_LOG(TN_LOG_DEBUG, http, "[C%" PRIu64 "] request headers timeout", c->id);
        tn_stat_inc(HS(c, downstream_rq_header_timeout));
        s->req_done = true;
        local_reply(s, 408, "request headers timeout", TN_RF_STREAM_IDLE_TIMEOUT, "request_header_timeout", true);
        return;
    }
    uint64_t idle = s->idle_timeout_ms, now = uv_now(&c->w->loop);
    if (idle && c->last_activity + idle > now) {
        tn_timer_start(&c->w->timers, &c->timer, c->last_activity + idle - now);
        return;
    }
    TN_LOG(TN_LOG_DEBUG, http, "%s stream idle timeout", tn_stream_tag(s));
    tn_stat_inc(HS(c, downstream_rq_idle_timeout));
    if (s->resp_started) {
        s->si.response_flags |= TN_RF_STREAM_IDLE_TIMEOUT;
        conn_close(c);
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
    c->last_activity = uv_now(&c->w->loop);
    if (ms && !tn_timer_armed(&c->timer))
        tn_timer_start(&c->w->timers, &c->timer, ms);
}

static int on_message_begin(llhttp_t *p)
{
    struct tn_dconn *c = p->data;
    stream_begin(c);
    return c->s ? 0 : -1;
}

/* A stream from the worker's free list (or new) for a request beginning on
 * c; c->s stays NULL when out of memory. */
static void stream_begin(struct tn_dconn *c)
{
    struct tn_worker *w = c->w;
    struct tn_stream *s = w->free_streams;
    if (s) {
        w->free_streams = s->next_free;
        w->n_free_streams--;
    } else if ((s = calloc(1, sizeof(*s))) == NULL) {
        TN_LOG(TN_LOG_ERROR, http, "[C%" PRIu64 "] out of memory for a request", c->id);
        return;
    }
    struct tn_header *hdrs = s->hdrs, *rh = s->resp_hdrs;
    size_t hc = s->hdrs_cap, rc = s->resp_hdrs_cap;
    struct tn_h1_head head = s->head;
    memset(s, 0, offsetof(struct tn_stream, ctxmem));
    s->hdrs = hdrs;
    s->hdrs_cap = hc;
    s->resp_hdrs = rh;
    s->resp_hdrs_cap = rc;
    s->head = head;
    s->conn = c;
    s->active = true;
    c->s = s;
    const struct tn_hcm *hcm = &c->l->hcm;
    tn_h1_head_reset(&s->head);
    s->head.limit = (size_t)hcm->max_request_headers_kb * 1024;
    s->head.max_headers = hcm->max_headers_count;
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
    s->si.protocol = "HTTP/1.1";
    s->idle_timeout_ms = hcm->stream_idle_timeout_ms;
    memcpy(&s->si.downstream_remote, &c->peer, sizeof(c->peer));
    memcpy(&s->si.downstream_local, &c->local, sizeof(c->local));
    uint64_t ms = hcm->request_headers_timeout_ms ? hcm->request_headers_timeout_ms : hcm->stream_idle_timeout_ms;
    if (ms)
        tn_timer_start(&w->timers, &c->timer, ms);
    else
        tn_timer_stop(&w->timers, &c->timer);
}

static int too_large(struct tn_dconn *c)
{
    tn_stat_inc(HS(c, downstream_rq_too_large));
    c->s->req_done = true;
    local_reply(c->s, 431, "Request Header Fields Too Large", TN_RF_DOWNSTREAM_PROTOCOL_ERROR,
                "http1.headers_too_large", true);
    return -1;
}

static int bad_request(struct tn_dconn *c, const char *details)
{
    tn_stat_inc(HS(c, downstream_cx_protocol_error));
    c->s->req_done = true;
    local_reply(c->s, 400, "Bad Request", TN_RF_DOWNSTREAM_PROTOCOL_ERROR, details, true);
    return -1;
}

/* The head's bytes so far, up to `end` in the current read, against
 * max_request_headers_kb (the whole head, as Envoy counts it). */
static int head_bytes(struct tn_dconn *c, const char *end)
{
    struct tn_stream *s = c->s;
    if (s->head_origin && s->head_raw + (size_t)(end - s->head_origin) > s->head.limit)
        return too_large(c);
    return 0;
}

static int head_error(struct tn_dconn *c, int rc)
{
    if (rc == TN_H1_TOO_MANY) {
        TN_LOG(TN_LOG_DEBUG, http, "[C%" PRIu64 "] more than %u headers", c->id, c->s->head.max_headers);
        tn_stat_inc(HS(c, downstream_rq_too_large));
        c->s->req_done = true;
        local_reply(c->s, 431, "Request Header Fields Too Large", TN_RF_DOWNSTREAM_PROTOCOL_ERROR,
                    "http1.too_many_headers", true);
        return -1;
    }
    return rc ? too_large(c) : 0;
}

static int on_method(llhttp_t *p, const char *at, size_t n)
{
    struct tn_dconn *c = p->data;
    if (c->s == NULL)
        return -1;
    struct tn_stream *s = c->s;
    if (s->head_origin == NULL || s->head.len == 0) {
        s->head_origin = at; /* the head starts here (pipelined requests start mid-read) */
        s->head_raw = 0;
    }
    return head_bytes(c, at + n);
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct tn_dconn *c = p->data;
    if (c->s == NULL)
        return -1;
    int rc = head_bytes(c, at + n);
    return rc ? rc : head_error(c, tn_h1_head_url(&c->s->head, at, n));
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct tn_dconn *c = p->data;
    if (c->s == NULL)
        return -1;
    int rc = head_bytes(c, at + n);
    return rc ? rc : head_error(c, tn_h1_head_field(&c->s->head, at, n));
}

/* Whether a header value's bytes at `at` continue an obs-fold line (RFC
 * 9112 5.2: tern rejects the message rather than replacing the fold). llhttp
 * joins a folded line to the value, so a value's bytes come in two pieces
 * within one read only after a fold; across reads, the piece before must
 * have run to the end of the previous read. A value starting a line (after
 * CRLF and blanks, not after the colon) is a fold of an empty value. */
static bool obs_fold(struct tn_dconn *c, const char *at)
{
    struct tn_stream *s = c->s;
    if (s->head.state == 2)
        return !(at == c->read_start && s->val_at_end);
    const char *q = at;
    while (q > c->read_start && (q[-1] == ' ' || q[-1] == '\t'))
        q--;
    return q > c->read_start ? q[-1] == '\n' : c->prev_last == '\n';
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct tn_dconn *c = p->data;
    struct tn_stream *s = c->s;
    if (s == NULL)
        return -1;
    int rc = head_bytes(c, at + n);
    if (rc)
        return rc;
    if (obs_fold(c, at)) {
        TN_LOG(TN_LOG_DEBUG, http, "[C%" PRIu64 "] obs-fold in a header value", c->id);
        return bad_request(c, "http1.obs_fold");
    }
    s->val_end = at + n;
    return head_error(c, tn_h1_head_value(&s->head, at, n));
}

static char *scratch(struct tn_stream *s, size_t n)
{
    if (s->scratch_len + n <= SCRATCH) {
        char *p = s->scratch + s->scratch_len;
        s->scratch_len += n;
        return p;
    }
    return tn_pool_alloc(&s->pool, n);
}

static int add_header(struct tn_stream *s, const char *name, size_t nl, const char *v, size_t vl)
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
        return add_header(s, name, strlen(name), value, vl);
    char *v = scratch(s, h->value_len + 2 + vl);
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

/* Splits the target: origin form, or absolute form whose authority
 * replaces Host (RFC 9112 3.2.2); its query stays ("http://a?q" is "/?q"). */
static int split_target(struct tn_dconn *c, struct tn_stream *s, const char *u, size_t n)
{
    if (n > 0 && (u[0] == '/' || (n == 1 && u[0] == '*' && s->rq.method_id == HTTP_OPTIONS))) {
        s->rq.path = u;
        s->rq.path_len = n;
        return 0;
    }
    const char *auth, *path;
    size_t al, pl;
    if (!c->l->hcm.allow_absolute_url || tn_h1_split_absolute(u, n, &auth, &al, &path, &pl))
        return -1;
    s->rq.host = auth;
    s->rq.host_len = al;
    if (pl == 0 || path[0] == '#') {
        s->rq.path = "/";
        s->rq.path_len = 1;
    } else if (path[0] == '?') {
        char *v = scratch(s, pl + 1);
        if (v == NULL)
            return -1;
        v[0] = '/';
        memcpy(v + 1, path, pl);
        s->rq.path = v;
        s->rq.path_len = pl + 1;
    } else {
        s->rq.path = path;
        s->rq.path_len = pl;
    }
    return 0;
}

/* Envoy's request header handling (ConnectionManagerUtility): hop-by-hop
 * headers out, x-forwarded-for/-proto, x-request-id, internal-only. */
static int prepare_request(struct tn_dconn *c, struct tn_stream *s)
{
    const struct tn_hcm *hcm = &c->l->hcm;
    struct tn_h1_head *hd = &s->head;
    const struct tn_header *conn_hdr = NULL;
    const struct tn_header *host = NULL;

    s->rq.method_id = c->parser.method;
    s->rq.method = llhttp_method_name(c->parser.method);
    s->rq.method_len = strlen(s->rq.method);
    s->rq.scheme = "http";
    s->rq.headers = s->hdrs;
    for (size_t i = 0; i < hd->n; i++) {
        const struct tn_header *h = &hd->h[i];
        if (h->name_len == 10 && memcmp(h->name, "connection", 10) == 0)
            conn_hdr = h;
        else if (h->name_len == 4 && memcmp(h->name, "host", 4) == 0) {
            if (host)
                return -1; /* one Host only (RFC 9112 3.2), even twice the same */
            host = h;
        } else if (h->name_len == 17 && memcmp(h->name, "transfer-encoding", 17) == 0 &&
                   !tn_h1_te_is_chunked(h->value, h->value_len))
            return -2; /* a coding tern cannot undo: 501 */
        if (hcm->headers_with_underscores_action == 1 && memchr(h->name, '_', h->name_len))
            return -1;
    }
    for (size_t i = 0; i < hd->n; i++) {
        const struct tn_header *h = &hd->h[i];
        if (s->upgrade && h->name_len == 7 && memcmp(h->name, "upgrade", 7) == 0 && s->rq.upgrade == NULL) {
            size_t n = 0;
            while (n < h->value_len && h->value[n] != ',' && h->value[n] != ' ' && h->value[n] != '\t')
                n++;
            s->rq.upgrade = h->value;
            s->rq.upgrade_len = n;
            if (add_header(s, h->name, h->name_len, h->value, h->value_len))
                return -1;
            continue;
        }
        if (h == host || tn_h1_hop_by_hop(h, conn_hdr) ||
            (h->name_len == 14 && memcmp(h->name, "content-length", 14) == 0))
            continue;
        if (hcm->headers_with_underscores_action == 2 && memchr(h->name, '_', h->name_len))
            continue;
        if (h->name_len == 6 && memcmp(h->name, "expect", 6) == 0 &&
            tn_h1_has_token(h->value, h->value_len, "100-continue")) {
            s->rq.expect_continue = true;
            continue;
        }
        if (add_header(s, h->name, h->name_len, h->value, h->value_len))
            return -1;
    }
    if (host) {
        if (!tn_h1_authority_ok(host->value, host->value_len))
            return -1;
        s->rq.host = host->value;
        s->rq.host_len = host->value_len;
    }
    if (split_target(c, s, tn_h1_head_urlp(hd), hd->url_len))
        return -1;
    bool http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
    if (http10 && s->rq.host_len == 0 && hcm->default_host_for_http_10) {
        s->rq.host = hcm->default_host_for_http_10;
        s->rq.host_len = strlen(s->rq.host);
    }
    if (s->rq.host_len == 0 && !http10)
        return -1; /* HTTP/1.1 requires Host */
    s->rq.chunked = (c->parser.flags & F_CHUNKED) != 0;
    s->rq.content_length =
        (c->parser.flags & F_CONTENT_LENGTH) && !s->rq.chunked ? (int64_t)c->parser.content_length : -1;
    s->rq.has_body = s->rq.chunked || s->rq.content_length > 0;
    s->head_request = s->rq.method_id == HTTP_HEAD;

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
        add_header(s, "x-envoy-internal", 16, "true", 4);
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
                char *v = scratch(s, xff->value_len + 2 + il);
                if (v == NULL)
                    return -1;
                memcpy(v, xff->value, xff->value_len);
                memcpy(v + xff->value_len, ", ", 2);
                memcpy(v + xff->value_len + 2, ip, il);
                xff->value = v;
                xff->value_len += 2 + il;
            } else {
                char *v = scratch(s, il);
                if (v == NULL)
                    return -1;
                memcpy(v, ip, il);
                add_header(s, "x-forwarded-for", 15, v, il);
            }
        }
        remove_header(s, "x-forwarded-proto");
        add_header(s, "x-forwarded-proto", 17, s->rq.scheme, strlen(s->rq.scheme));
    } else if (find_header(s, "x-forwarded-proto") == NULL) {
        add_header(s, "x-forwarded-proto", 17, s->rq.scheme, strlen(s->rq.scheme));
    }

    if (hcm->via && append_value(s, "via", hcm->via))
        return -1;

    struct tn_header *rid = find_header(s, "x-request-id");
    if (rid && s->rq.external && hcm->use_remote_address && !hcm->preserve_external_request_id) {
        remove_header(s, "x-request-id");
        rid = NULL;
    }
    if (rid == NULL && hcm->generate_request_id) {
        char *v = scratch(s, 36);
        if (v == NULL)
            return -1;
        make_request_id(c->w, v);
        add_header(s, "x-request-id", 12, v, 36);
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

static int on_headers_complete(llhttp_t *p)
{
    struct tn_dconn *c = p->data;
    struct tn_stream *s = c->s;
    const struct tn_hcm *hcm = &c->l->hcm;
    if (s == NULL)
        return -1;

    s->headers_done = true;
    if (p->http_major == 1 && p->http_minor == 0 && !hcm->accept_http_10) {
        s->req_done = true;
        local_reply(s, 426, "Upgrade Required", TN_RF_DOWNSTREAM_PROTOCOL_ERROR, "low_version", true);
        return -1;
    }
    if (p->upgrade && p->method != HTTP_CONNECT) {
        /* the router decides (upgrade_configs); with a body it is a plain
         * request whose Upgrade goes as a hop-by-hop header */
        if ((p->flags & F_CHUNKED) || p->content_length > 0)
            p->upgrade = 0;
        else
            s->upgrade = true;
    }
    if (p->upgrade && !s->upgrade) {
        /* CONNECT needs upgrade_configs with CONNECT support, which tern
         * does not take yet: refused as Envoy refuses an unconfigured one */
        TN_LOG(TN_LOG_DEBUG, http, "[C%" PRIu64 "] CONNECT refused", c->id);
        s->req_done = true;
        local_reply(s, 403, NULL, 0, "upgrade_failed", true);
        return -1;
    }
    int rc = tn_h1_head_finish(&s->head) ? -1 : prepare_request(c, s);
    if (rc == -2) {
        tn_stat_inc(HS(c, downstream_cx_protocol_error));
        s->req_done = true;
        local_reply(s, 501, "Not Implemented", TN_RF_DOWNSTREAM_PROTOCOL_ERROR, "http1.invalid_transfer_encoding", true);
        return -1;
    }
    if (rc) {
        tn_stat_inc(HS(c, downstream_cx_protocol_error));
        s->req_done = true;
        local_reply(s, 400, "Bad Request", TN_RF_DOWNSTREAM_PROTOCOL_ERROR, "http1.invalid_request", true);
        return -1;
    }
    c->keepalive = llhttp_should_keep_alive(p) && !c->drain &&
                   !(hcm->max_requests_per_connection && c->n_streams >= hcm->max_requests_per_connection);
    tn_stat_inc(HS(c, downstream_rq_total));
    tn_stat_inc(HS(c, downstream_rq_http1_total));
    tn_stat_inc(HS(c, downstream_rq_active));
    s->counted = true;
    s->si.req_headers = s->rq.headers;
    s->si.n_req_headers = s->rq.n_headers;
    stream_touch(s);
    s->rq.end_stream = !s->rq.has_body && !s->upgrade; /* an upgrade's body may follow its 101 */
    if (s->rq.end_stream) {
        s->req_done = true;
        s->si.last_downstream_rx_ns = uv_now(&c->w->loop) * 1000000;
    }
    s->n_filters = hcm->n_filters;
    size_t off = 0;
    for (unsigned i = 0; i < s->n_filters; i++) {
        const struct tn_filter_ops *ops = hcm->filters[i].factory->ops;
        size_t sz = ops ? (ops->ctx_size + 15) & ~(size_t)15 : 0;
        if (off + sz <= CTX_MEM) {
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

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct tn_dconn *c = p->data;
    if (c->s == NULL)
        return 0; /* the rest of a request already answered */
    struct tn_slice sl = tn_slice_of(c->cur_blk, at, n);
    request_body(c->s, &sl, false);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct tn_dconn *c = p->data;
    struct tn_stream *s = c->s;
    if (s == NULL)
        return c->closing || !c->keepalive ? HPE_PAUSED : 0; /* answered and gone before the request ended */
    if (s->active && !s->req_done) {
        struct tn_slice sl = {0};
        request_body(s, &sl, true);
    }
    s->req_done = true;
    if (s->active && s->resp_done)
        stream_maybe_done(s);
    return s->active || c->closing ? HPE_PAUSED : 0;
}

/* --- responses ------------------------------------------------------------ */

static int put_status(char *b, size_t cap, size_t *pos, int status)
{
    const char *reason = tn_h1_reason(status);
    size_t rl = strlen(reason);
    if (*pos + 16 + rl > cap || status < 100 || status > 999)
        return -1;
    char *d = b + *pos;
    memcpy(d, "HTTP/1.1 ", 9);
    d[9] = (char)('0' + status / 100);
    d[10] = (char)('0' + status / 10 % 10);
    d[11] = (char)('0' + status % 10);
    d[12] = ' ';
    memcpy(d + 13, reason, rl);
    memcpy(d + 13 + rl, "\r\n", 2);
    *pos += 15 + rl;
    return 0;
}

static void record_resp_header(struct tn_stream *s, const char *base, size_t before, size_t nl, size_t vl)
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

static int put(struct tn_stream *s, struct tn_block *b, size_t *pos, const char *n, size_t nl, const char *v,
               size_t vl)
{
    size_t before = *pos;
    if (tn_h1_put_header(b->data, b->cap, pos, n, nl, v, vl))
        return -1;
    record_resp_header(s, b->data, before, nl, vl);
    return 0;
}
#define PUT(s, b, pos, lit, v, vl) put((s), (b), (pos), lit, sizeof(lit) - 1, (v), (vl))

/* Writes the response head: the filters' headers, then what the connection
 * manager owns (server, date, framing, connection). */
static int write_head(struct tn_stream *s, struct tn_response *r)
{
    struct tn_dconn *c = s->conn;
    const struct tn_hcm *hcm = &c->l->hcm;
    size_t need = 512 + (hcm->via ? strlen(hcm->via) : 0);
    for (size_t i = 0; i < r->n_headers; i++)
        need += r->headers[i].name_len + r->headers[i].value_len + 4;
    struct tn_block *b = tn_block_new(need);
    size_t pos = 0;
    bool has_server = false, has_date = false, has_via = false;
    if (b == NULL || put_status(b->data, b->cap, &pos, r->status))
        goto fail;
    s->n_resp_hdrs = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct tn_header *h = &r->headers[i];
        if (h->name_len == 6 && memcmp(h->name, "server", 6) == 0) {
            if (hcm->server_header_transformation == 0)
                continue; /* OVERWRITE */
            has_server = true;
        }
        if (h->name_len == 4 && memcmp(h->name, "date", 4) == 0)
            has_date = true;
        if (hcm->via && h->name_len == 3 && memcmp(h->name, "via", 3) == 0 && !has_via) {
            /* Envoy appends its via value to the upstream's */
            size_t vl = strlen(hcm->via), before = pos;
            if (pos + h->value_len + vl + 9 > b->cap)
                goto fail;
            memcpy(b->data + pos, "via: ", 5);
            memcpy(b->data + pos + 5, h->value, h->value_len);
            memcpy(b->data + pos + 5 + h->value_len, ", ", 2);
            memcpy(b->data + pos + 7 + h->value_len, hcm->via, vl);
            memcpy(b->data + pos + 7 + h->value_len + vl, "\r\n", 2);
            pos += 9 + h->value_len + vl;
            record_resp_header(s, b->data, before, 3, h->value_len + 2 + vl);
            has_via = true;
            continue;
        }
        if (put(s, b, &pos, h->name, h->name_len, h->value, h->value_len))
            goto fail;
    }
    if (!has_server && hcm->server_header_transformation != 2 &&
        PUT(s, b, &pos, "server", hcm->server_name, strlen(hcm->server_name)))
        goto fail;
    if (!has_date) {
        const char *d = tn_worker_date(c->w);
        if (PUT(s, b, &pos, "date", d, strlen(d)))
            goto fail;
    }
    if (hcm->via && !has_via && PUT(s, b, &pos, "via", hcm->via, strlen(hcm->via)))
        goto fail;
    bool no_body = r->status < 200 || r->status == 204 || r->status == 304;
    s->resp_chunked = false;
    if (r->content_length >= 0 && !no_body) {
        char num[24];
        size_t nl = tn_h1_u64(num, (uint64_t)r->content_length);
        if (PUT(s, b, &pos, "content-length", num, (size_t)nl))
            goto fail;
    } else if (!no_body && !s->head_request) {
        if (r->end_stream) {
            if (PUT(s, b, &pos, "content-length", "0", 1))
                goto fail;
        } else if (c->parser.http_minor >= 1 || c->parser.http_major > 1) {
            s->resp_chunked = true;
            if (PUT(s, b, &pos, "transfer-encoding", "chunked", 7))
                goto fail;
        } else {
            c->keepalive = false; /* HTTP/1.0: the body ends with the connection */
        }
    }
    if (hcm->always_set_request_id_in_response && s->si.request_id &&
        tn_headers_find(r->headers, r->n_headers, "x-request-id", 12) == NULL &&
        PUT(s, b, &pos, "x-request-id", s->si.request_id, s->si.request_id_len))
        goto fail;
    if (r->status == 101 && s->upgrade) {
        /* upgraded: the connection is the new protocol's from here */
        c->tunnel = true;
        c->keepalive = false;
        if (PUT(s, b, &pos, "connection", "upgrade", 7))
            goto fail;
    } else if (!c->keepalive || c->drain) {
        c->keepalive = false;
        if (PUT(s, b, &pos, "connection", "close", 5))
            goto fail;
    } else if (c->parser.http_major == 1 && c->parser.http_minor == 0) {
        if (PUT(s, b, &pos, "connection", "keep-alive", 10))
            goto fail;
    }
    if (pos + 2 > b->cap)
        goto fail;
    memcpy(b->data + pos, "\r\n", 2);
    pos += 2;
    s->resp_started = true;
    s->si.response_code = r->status;
    if (s->resp_blk)
        tn_block_unref(s->resp_blk);
    s->resp_blk = tn_block_ref(b);
    struct tn_slice sl = tn_slice_of(b, b->data, pos);
    tn_block_unref(b);
    if (tn_outq_write(&c->out, NULL, 0, &sl, 1, NULL, 0))
        return -1;
    return 0;
fail:
    if (b)
        tn_block_unref(b);
    return -1;
}

/* After a 101: the bytes that came behind the upgrade request, and all
 * that follow, go to the filters as the request's body. */
static void tunnel_start(struct tn_dconn *c)
{
    tn_stat_inc(HS(c, downstream_cx_upgrades_total));
    tn_stat_inc(HS(c, downstream_cx_upgrades_active));
    if (c->pend_blk) {
        struct tn_block *b = c->pend_blk;
        struct tn_slice sl = tn_slice_of(b, c->pend_p, c->pend_len);
        c->pend_blk = NULL;
        tn_block_unref(b);
        request_body(c->s, &sl, false);
    }
    if (!c->closing && c->s && !c->read_paused_by_filter)
        read_start(c);
}

static void finish_response(struct tn_stream *s)
{
    struct tn_dconn *c = s->conn;
    if (s->resp_chunked && tn_outq_write(&c->out, "0\r\n\r\n", 5, NULL, 0, NULL, 0))
        c->keepalive = false;
    s->resp_done = true;
    if (c->in_parse)
        c->stream_ended_in_parse = true;
    stream_maybe_done(s);
}

/* Sends the response head through the filters before `from` (reverse
 * order), then to the client. */
/* Passes a response head through filters from-1 .. 0, then writes it.
 * False when a filter stopped it or it could not be written. */
static void tunnel_start(struct tn_dconn *c);

static bool encode_headers_from(struct tn_stream *s, unsigned from, struct tn_response *r)
{
    const struct tn_hcm *hcm = &s->conn->l->hcm;
    for (unsigned i = from; i-- > 0;) {
        const struct tn_filter_ops *ops = hcm->filters[i].factory->ops;
        if (ops && ops->on_response_headers &&
            ops->on_response_headers(s, hcm->filters[i].config, s->fctx[i], r) == TN_FILTER_STOP)
            return false;
    }
    if (write_head(s, r)) {
        conn_close(s->conn);
        return false;
    }
    if (s->conn->tunnel)
        tunnel_start(s->conn);
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
        int rc;
        if (s->resp_chunked) {
            char pre[24];
            size_t pl = tn_h1_chunk_size(pre, data->len);
            rc = tn_outq_write(&c->out, pre, (size_t)pl, data, 1, "\r\n", 2);
        } else {
            rc = tn_outq_write(&c->out, NULL, 0, data, 1, NULL, 0);
        }
        if (rc) {
            conn_close(c);
            return;
        }
    } else {
        tn_slice_release(data);
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
    if (close)
        c->keepalive = false;
    if (s->resp_started) {
        conn_close(c); /* too late for a clean answer */
        return;
    }
    if (close || !s->req_done)
        c->keepalive = false;
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
    conn_close(s->conn);
}

bool tn_stream_downstream_above(struct tn_stream *s)
{
    return tn_outq_above(&s->conn->out);
}

void tn_stream_request_pause(struct tn_stream *s, bool pause)
{
    struct tn_dconn *c = s->conn;
    c->read_paused_by_filter = pause;
    if (pause)
        read_stop(c);
    else if (!s->req_done && !c->in_parse)
        read_start(c);
}

void tn_stream_set_idle_timeout(struct tn_stream *s, uint64_t ms)
{
    struct tn_dconn *c = s->conn;
    s->idle_timeout_ms = ms;
    if (ms)
        tn_timer_start(&c->w->timers, &c->timer, ms);
    else
        tn_timer_stop(&c->w->timers, &c->timer);
}

void tn_stream_send_continue(struct tn_stream *s)
{
    if (s->sent_continue || !s->rq.expect_continue || s->resp_started)
        return;
    s->sent_continue = true;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    tn_outq_write(&s->conn->out, cont, sizeof(cont) - 1, NULL, 0, NULL, 0);
}

void tn_stream_encode_interim(struct tn_stream *s, const struct tn_response *r)
{
    struct tn_dconn *c = s->conn;
    if (!s->active || s->resp_started || c->closing || r->status < 100 || r->status > 199 || r->status == 101 ||
        (c->parser.http_major == 1 && c->parser.http_minor == 0))
        return;
    if (r->status == 100) {
        tn_stream_send_continue(s);
        return;
    }
    size_t need = 64;
    for (size_t i = 0; i < r->n_headers; i++)
        need += r->headers[i].name_len + r->headers[i].value_len + 4;
    struct tn_block *b = tn_block_new(need);
    size_t pos = 0;
    if (b == NULL)
        return;
    int rc = put_status(b->data, b->cap, &pos, r->status);
    for (size_t i = 0; i < r->n_headers && rc == 0; i++)
        rc = tn_h1_put_header(b->data, b->cap, &pos, r->headers[i].name, r->headers[i].name_len, r->headers[i].value,
                              r->headers[i].value_len);
    if (rc == 0 && pos + 2 <= b->cap) {
        memcpy(b->data + pos, "\r\n", 2);
        struct tn_slice sl = tn_slice_of(b, b->data, pos + 2);
        if (tn_outq_write(&c->out, NULL, 0, &sl, 1, NULL, 0))
            conn_close(c);
    }
    tn_block_unref(b);
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
    tn_stat_inc(HS(c, downstream_cx_http1_total));
    tn_stat_inc(HS(c, downstream_cx_http1_active));
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    int len = sizeof(c->peer);
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len);
    len = sizeof(c->local);
    uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&c->local, &len);
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    if (c->l->hcm.allow_chunked_length)
        llhttp_set_lenient_chunked_length(&c->parser, 1);
    c->parser.data = c;
    tn_outq_init(&c->out, (uv_stream_t *)&c->tcp, c->l->per_connection_buffer_limit, c);
    c->out.on_low = on_out_low;
    c->out.on_error = on_out_error;
    c->out.on_empty = on_out_empty;
    tn_outq_gather(&c->out, &w->flusher);
    tn_timer_init(&c->timer, on_stream_timer);
    c->keepalive = true;
    c->drain = w->draining;
    arm_idle(c);
    read_start(c);
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
        if (c->s == NULL)
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
        if (now || c->s == NULL)
            conn_close(c);
    }
}

void tn_conn_close_all(struct tn_worker *w)
{
    while (w->conns)
        conn_close(w->conns);
}

static llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};
