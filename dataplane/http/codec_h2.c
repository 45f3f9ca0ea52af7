/* The downstream HTTP/2 codec (h2c: prior knowledge, or codec_type AUTO
 * finding the client preface), on nghttp2's server session driven through
 * memory on the worker's loop, behind the same ops as HTTP/1.1 (codec.h):
 * filters never know which codec they run on.
 *
 * Requests: HEADERS become a stream (from the worker's free list) whose
 * head is collected, copied, into the stream's head buffer (kept across
 * reuse, as HTTP/1.1's) within max_request_headers_kb and max_headers_count
 * (over them: RST_STREAM, as Envoy); pseudo-headers fill struct tn_request,
 * cookie crumbs are joined. nghttp2's HTTP messaging checks refuse
 * connection-specific headers, TE other than "trailers", upper-case names
 * and bad pseudo-headers with RST_STREAM PROTOCOL_ERROR. DATA payloads go
 * to the filters by reference to the read block (no copy: nghttp2 hands
 * out pointers into the buffer given to mem_recv).
 *
 * Flow control: automatic WINDOW_UPDATE is off. A stream's received bytes
 * are consumed (its window and the connection's reopened) once the filters
 * have taken them and the stream is not paused (the router pauses it while
 * its upstream write is above its watermark), so a client has at most the
 * windows in flight.
 *
 * Responses: HEADERS (nghttp2 copies the header block it encodes), DATA fed
 * by a data provider from the stream's queue of slices, written to the
 * connection's outq by reference (NGHTTP2_DATA_FLAG_NO_COPY), 1xx interim
 * responses, RST_STREAM for a local reset. A stream's queued bytes above the
 * connection buffer limit count as the downstream being above its
 * watermark for the stream's filters.
 *
 * A stream's memory stays with the codec after the manager is done with it
 * (stream_hold) until nghttp2 closes the stream, since its last DATA may not
 * have been framed yet; then it goes back to the free list.
 *
 * Reentrancy: nghttp2 forbids session_send / mem_recv from its callbacks,
 * and the filters it calls call back into the codec; `busy` defers the
 * flush to when the outermost call returns. Drain: GOAWAY with the last
 * stream id; the streams in flight finish, then the connection closes. */
#include "dataplane/http/codec.h"

#include <inttypes.h>
#include <string.h>

#include <llhttp.h>
#include <nghttp2/nghttp2.h>

#include "dataplane/core/log.h"
#include "dataplane/http/h1.h"
#include "dataplane/stats/dp_stats.h"

struct h2_conn {
    nghttp2_session *ng;
    struct tn_block *cur_blk; /* the block mem_recv reads */
    struct tn_block *wblk;    /* small frames are copied here */
    size_t wpos;
    struct tn_stream *held; /* streams the manager is done with that nghttp2 still has */
    unsigned busy;
    bool want_flush, goaway;
};

struct h2_stream {
    struct tn_h1_head head; /* the request head (kept across reuse) */
    struct tn_slices body;  /* response bytes not framed yet (kept across reuse) */
    /* cleared when a stream begins, from here */
    struct tn_stream *held_next;
    struct tn_block *trailers; /* the response's trailers: nghttp2_nv[n_trailers], then their bytes */
    size_t n_trailers;
    size_t unconsumed; /* request bytes the filters took while the stream was paused */
    int32_t id;
    bool in_trailers, remote_end, local_end, end_sent, rst_sent, deferred, paused, ng_closed, held, want_low;
    bool counted;    /* in http2.streams_active */
    bool peer_reset; /* RST_STREAM came from the client */
};

_Static_assert(sizeof(struct h2_conn) <= TN_CODEC_CONN_MEM, "h2_conn fits codec_state");
_Static_assert(sizeof(struct h2_stream) <= TN_CODEC_STREAM_MEM, "h2_stream fits codec_mem");

#define H2S(c, f) (c)->w->shard, (c)->l->hcm.stats.http2_##f

static inline struct h2_conn *h2(struct tn_dconn *c)
{
    return (struct h2_conn *)c->codec_state;
}

static inline struct h2_stream *h2s(struct tn_stream *s)
{
    return (struct h2_stream *)s->codec_mem;
}

static void flush(struct tn_dconn *c);

/* --- streams -------------------------------------------------------------------- */

/* nghttp2 no longer knows the stream, or the connection goes: what the
 * codec holds of it is let go (the free list keeps the memory). */
static void stream_done(struct tn_dconn *c, struct tn_stream *s)
{
    struct h2_stream *hs = h2s(s);
    tn_slices_clear(&hs->body);
    if (hs->trailers)
        tn_block_unref(hs->trailers);
    hs->trailers = NULL;
    if (hs->counted)
        tn_stat_dec(H2S(c, streams_active));
    hs->counted = false;
}

static void held_remove(struct h2_conn *h, struct tn_stream *s)
{
    struct tn_stream **pp = &h->held;
    while (*pp && *pp != s)
        pp = &h2s(*pp)->held_next;
    if (*pp)
        *pp = h2s(s)->held_next;
    h2s(s)->held_next = NULL;
    h2s(s)->held = false;
}

/* Opens the window for n request bytes of s the filters have taken. */
static void consume(struct tn_dconn *c, struct tn_stream *s, size_t n)
{
    struct h2_stream *hs = h2s(s);
    if (n == 0 || h2(c)->ng == NULL)
        return;
    if (hs->ng_closed)
        nghttp2_session_consume_connection(h2(c)->ng, n);
    else
        nghttp2_session_consume(h2(c)->ng, hs->id, n);
}

static void reset(struct tn_dconn *c, struct tn_stream *s, uint32_t code)
{
    struct h2_stream *hs = h2s(s);
    if (hs->rst_sent || hs->ng_closed || h2(c)->ng == NULL)
        return;
    hs->rst_sent = true;
    nghttp2_submit_rst_stream(h2(c)->ng, NGHTTP2_FLAG_NONE, hs->id, code);
}

static bool h2_stream_hold(struct tn_stream *s)
{
    struct tn_dconn *c = s->conn;
    struct h2_conn *h = h2(c);
    struct h2_stream *hs = h2s(s);
    consume(c, s, hs->unconsumed);
    hs->unconsumed = 0;
    hs->paused = false;
    if (c->closing || h->ng == NULL || hs->ng_closed || hs->id == 0) {
        stream_done(c, s);
        return false;
    }
    if (!hs->local_end)
        reset(c, s, NGHTTP2_CANCEL); /* the response cannot end */
    else if (hs->end_sent && !hs->remote_end)
        reset(c, s, NGHTTP2_NO_ERROR); /* answered before the request ended (RFC 9113 8.1) */
    /* else on_frame_send resets it once the response's end has gone, if
     * the request has not ended by then */
    hs->held = true;
    hs->held_next = h->held;
    h->held = s;
    flush(c);
    return true;
}

/* --- frames out ------------------------------------------------------------------- */

static ssize_t send_cb(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
    struct tn_dconn *c = ud;
    struct h2_conn *h = h2(c);
    (void)ng;
    (void)flags;
    if (tn_outq_above(&c->out))
        return NGHTTP2_ERR_WOULDBLOCK;
    ssize_t n = tn_outq_copy(&c->out, &h->wblk, &h->wpos, data, len);
    return n < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : n;
}

/* A DATA frame: its 9-byte header copied, the payload by reference. */
static int send_data_cb(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
                        nghttp2_data_source *source, void *ud)
{
    struct tn_dconn *c = ud;
    struct tn_stream *s = source->ptr;
    struct h2_stream *hs = h2s(s);
    (void)ng;
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        hs->end_sent = true;
    if (tn_outq_write_from(&c->out, (const char *)framehd, 9, &hs->body, length))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

static ssize_t data_read_cb(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                            nghttp2_data_source *source, void *ud)
{
    struct tn_stream *s = source->ptr;
    struct h2_stream *hs = h2s(s);
    (void)buf;
    (void)ud;
    size_t n = hs->body.bytes < length ? hs->body.bytes : length;
    if (n == 0 && !hs->local_end) {
        hs->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (hs->local_end && n == hs->body.bytes) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        /* trailers end the stream after the last DATA (submitted here, so
         * that they cannot overtake it); nghttp2 copies them */
        if (hs->trailers && nghttp2_submit_trailer(ng, id, (nghttp2_nv *)hs->trailers->data, hs->n_trailers) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (hs->trailers)
            tn_block_unref(hs->trailers);
        hs->trailers = NULL;
    }
    return (ssize_t)n;
}

static size_t high_mark(struct tn_dconn *c)
{
    return c->l->per_connection_buffer_limit ? c->l->per_connection_buffer_limit : 1024 * 1024;
}

static bool h2_stream_above(struct tn_stream *s)
{
    struct h2_stream *hs = h2s(s);
    if (hs->body.bytes < high_mark(s->conn))
        return false;
    hs->want_low = true;
    return true;
}

/* Streams whose filters waited for their queued bytes to leave hear of it. */
static void notify_low(struct tn_dconn *c)
{
    size_t low = high_mark(c) / 2;
    while (!c->closing && !tn_outq_above(&c->out)) {
        struct tn_stream *s = c->streams;
        while (s && !(h2s(s)->want_low && h2s(s)->body.bytes <= low))
            s = s->next;
        if (s == NULL)
            return;
        h2s(s)->want_low = false;
        tn__cm_stream_drained(s);
    }
}

/* The session has nothing more to say or hear (GOAWAY both ways, or a
 * connection error it answered): the connection closes once written. */
static void maybe_close(struct tn_dconn *c)
{
    struct h2_conn *h = h2(c);
    if (c->closing || nghttp2_session_want_write(h->ng))
        return;
    bool over = !nghttp2_session_want_read(h->ng);
    if (h->goaway && c->streams == NULL && h->held == NULL)
        over = true;
    if (over)
        tn__cm_close_after_flush(c);
}

static void flush(struct tn_dconn *c)
{
    struct h2_conn *h = h2(c);
    if (c->closing || h->ng == NULL)
        return;
    if (h->busy) {
        h->want_flush = true;
        return;
    }
    do {
        h->want_flush = false;
        h->busy++;
        int rv = nghttp2_session_send(h->ng);
        h->busy--;
        if (c->closing)
            return;
        if (rv) {
            TN_LOG(TN_LOG_DEBUG, http, "[C%" PRIu64 "] HTTP/2 send: %s", c->id, nghttp2_strerror(rv));
            tn__cm_close(c);
            return;
        }
    } while (h->want_flush);
    notify_low(c);
    if (!c->closing)
        maybe_close(c);
}

/* --- frames in -------------------------------------------------------------------- */

static struct tn_stream *stream_of(nghttp2_session *ng, int32_t id)
{
    return nghttp2_session_get_stream_user_data(ng, id);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    struct tn_dconn *c = ud;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        struct tn_stream *s = stream_of(ng, frame->hd.stream_id);
        if (s)
            h2s(s)->in_trailers = true; /* request trailers: not passed on (filters have no trailers) */
        return 0;
    }
    struct tn_stream *s = tn__cm_stream_new(c);
    if (s == NULL) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    const struct tn_hcm *hcm = &c->l->hcm;
    struct h2_stream *hs = h2s(s);
    memset((char *)hs + offsetof(struct h2_stream, held_next), 0,
           sizeof(*hs) - offsetof(struct h2_stream, held_next));
    tn_h1_head_reset(&hs->head);
    hs->head.limit = (size_t)hcm->max_request_headers_kb * 1024;
    hs->head.max_headers = hcm->max_headers_count;
    hs->id = frame->hd.stream_id;
    hs->counted = true;
    tn_stat_inc(H2S(c, streams_active));
    nghttp2_session_set_stream_user_data(ng, hs->id, s);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct tn_dconn *c = ud;
    struct tn_stream *s = stream_of(ng, frame->hd.stream_id);
    (void)flags;
    if (s == NULL || !s->active || frame->hd.type != NGHTTP2_HEADERS || h2s(s)->in_trailers)
        return 0;
    struct h2_stream *hs = h2s(s);
    int rc = tn_h1_head_field(&hs->head, (const char *)name, namelen);
    if (rc == 0)
        rc = tn_h1_head_value(&hs->head, (const char *)value, valuelen);
    if (rc == 0)
        return 0;
    /* Envoy resets the stream (the library answers RST_STREAM) */
    TN_LOG(TN_LOG_DEBUG, http, "%s request headers over the limit (%s)", tn_stream_tag(s),
           rc == TN_H1_TOO_MANY ? "count" : "size");
    /* Envoy counts both as header_overflow; too_many_headers tells the count apart */
    tn_stat_inc(H2S(c, header_overflow));
    if (rc == TN_H1_TOO_MANY) {
        tn_stat_inc(H2S(c, too_many_headers));
        s->si.response_code_details = "http2.too_many_headers";
    } else {
        s->si.response_code_details = "http2.headers_too_large";
    }
    tn_stat_inc(TN_HS(c, downstream_rq_too_large));
    s->si.response_flags |= TN_RF_DOWNSTREAM_PROTOCOL_ERROR;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static int method_id(const char *m, size_t n)
{
    static const struct {
        const char *name;
        int id;
    } known[] = {{"GET", HTTP_GET},         {"HEAD", HTTP_HEAD},   {"POST", HTTP_POST},
                 {"PUT", HTTP_PUT},         {"DELETE", HTTP_DELETE}, {"OPTIONS", HTTP_OPTIONS},
                 {"PATCH", HTTP_PATCH},     {"CONNECT", HTTP_CONNECT}, {"TRACE", HTTP_TRACE}};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i].name) == n && memcmp(known[i].name, m, n) == 0)
            return known[i].id;
    return -1;
}

static bool is(const struct tn_header *h, const char *name, size_t n)
{
    return h->name_len == n && memcmp(h->name, name, n) == 0;
}

/* The request from the decoded header list: pseudo-headers to the request,
 * cookie crumbs joined (RFC 9113 8.2.3), the rest to forward. 0, -1 (a bad
 * request: 400) or -2 (out of memory). */
static int request_from_head(struct tn_dconn *c, struct tn_stream *s, bool end)
{
    const struct tn_hcm *hcm = &c->l->hcm;
    struct tn_h1_head *hd = &h2s(s)->head;
    const struct tn_header *host = NULL, *scheme = NULL;
    size_t cookie_len = 0, n_cookies = 0;
    s->rq.content_length = -1;
    for (size_t i = 0; i < hd->n; i++) {
        const struct tn_header *h = &hd->h[i];
        if (h->name_len && h->name[0] == ':') {
            if (is(h, ":method", 7)) {
                s->rq.method = h->value;
                s->rq.method_len = h->value_len;
            } else if (is(h, ":path", 5)) {
                s->rq.path = h->value;
                s->rq.path_len = h->value_len;
            } else if (is(h, ":authority", 10)) {
                s->rq.host = h->value;
                s->rq.host_len = h->value_len;
            } else if (is(h, ":scheme", 7)) {
                scheme = h;
            }
            continue;
        }
        if (is(h, "host", 4)) {
            host = h;
            continue;
        }
        if (is(h, "cookie", 6)) {
            cookie_len += h->value_len + (n_cookies ? 2 : 0);
            n_cookies++;
            continue;
        }
        if (is(h, "content-length", 14)) {
            int64_t v = 0;
            for (size_t k = 0; k < h->value_len && k < 18; k++)
                v = v * 10 + (h->value[k] - '0'); /* nghttp2 checked the digits */
            s->rq.content_length = v;
            continue;
        }
        if (hcm->headers_with_underscores_action == 1 && memchr(h->name, '_', h->name_len))
            return -1;
        if (hcm->headers_with_underscores_action == 2 && memchr(h->name, '_', h->name_len))
            continue;
        if (tn_h1_hop_by_hop(h, NULL))
            continue; /* "te: trailers" (nghttp2 refused the rest) */
        if (is(h, "expect", 6) && tn_h1_has_token(h->value, h->value_len, "100-continue")) {
            s->rq.expect_continue = true;
            continue;
        }
        if (tn__stream_add_header(s, h->name, h->name_len, h->value, h->value_len))
            return -2;
    }
    if (n_cookies) {
        char *v = n_cookies == 1 ? NULL : tn__stream_scratch(s, cookie_len);
        size_t pos = 0;
        if (n_cookies > 1 && v == NULL)
            return -2;
        const struct tn_header *one = NULL;
        for (size_t i = 0; i < hd->n; i++) {
            const struct tn_header *h = &hd->h[i];
            if (!is(h, "cookie", 6))
                continue;
            one = h;
            if (v == NULL)
                break;
            if (pos) {
                memcpy(v + pos, "; ", 2);
                pos += 2;
            }
            memcpy(v + pos, h->value, h->value_len);
            pos += h->value_len;
        }
        if (tn__stream_add_header(s, "cookie", 6, v ? v : one->value, v ? cookie_len : one->value_len))
            return -2;
    }
    if (s->rq.host_len == 0 && host) {
        s->rq.host = host->value;
        s->rq.host_len = host->value_len;
    }
    if (s->rq.method == NULL || s->rq.host_len == 0 || !tn_h1_authority_ok(s->rq.host, s->rq.host_len))
        return -1;
    s->rq.method_id = method_id(s->rq.method, s->rq.method_len);
    if (s->rq.method_id == HTTP_CONNECT || s->rq.path_len == 0)
        return -1;
    s->rq.scheme = scheme && scheme->value_len == 5 && memcmp(scheme->value, "https", 5) == 0 ? "https" : "http";
    s->rq.end_stream = end;
    s->rq.has_body = !end;
    s->rq.chunked = !end && s->rq.content_length < 0; /* the length is unknown: END_STREAM ends it */
    s->head_request = s->rq.method_id == HTTP_HEAD;
    return 0;
}

static void request_headers(struct tn_dconn *c, struct tn_stream *s, bool end)
{
    struct h2_stream *hs = h2s(s);
    int rc = tn_h1_head_finish(&hs->head) ? -2 : request_from_head(c, s, end);
    if (rc) {
        tn_stat_inc(TN_HS(c, downstream_cx_protocol_error));
        tn__cm_protocol_error(s, 400, "Bad Request", TN_RF_DOWNSTREAM_PROTOCOL_ERROR,
                              rc == -2 ? "http2.out_of_memory" : "http2.invalid_request");
        return;
    }
    const struct tn_hcm *hcm = &c->l->hcm;
    if (hcm->max_requests_per_connection && c->n_streams >= hcm->max_requests_per_connection && !h2(c)->goaway) {
        h2(c)->goaway = true; /* this one is served, no more (Envoy drains the connection) */
        nghttp2_submit_goaway(h2(c)->ng, NGHTTP2_FLAG_NONE, hs->id, NGHTTP2_NO_ERROR, NULL, 0);
    }
    tn__cm_headers(s);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    struct tn_dconn *c = ud;
    struct tn_stream *s = frame->hd.stream_id ? stream_of(ng, frame->hd.stream_id) : NULL;
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (s == NULL)
        return 0;
    struct h2_stream *hs = h2s(s);
    if (end)
        hs->remote_end = true;
    if (frame->hd.type == NGHTTP2_RST_STREAM)
        hs->peer_reset = true;
    if (!s->active)
        return 0;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (!hs->in_trailers) {
            request_headers(c, s, end);
            break;
        }
        if (end)
            tn__cm_request_end(s);
        break;
    case NGHTTP2_DATA:
        if (end)
            tn__cm_request_end(s);
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    struct tn_dconn *c = ud;
    struct h2_conn *h = h2(c);
    struct tn_stream *s = stream_of(ng, id);
    (void)flags;
    if (s == NULL || !s->active || s->rq.method == NULL) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    struct tn_slice sl;
    const char *p = (const char *)data;
    if (h->cur_blk && p >= h->cur_blk->data && p + len <= h->cur_blk->data + h->cur_blk->cap) {
        sl = tn_slice_of(h->cur_blk, p, len);
    } else {
        /* not in the read block (nghttp2 does not buffer DATA today) */
        struct tn_block *b = tn_block_new(len);
        if (b == NULL)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        memcpy(b->data, p, len);
        sl = tn_slice_of(b, b->data, len);
        tn_block_unref(b);
    }
    tn__cm_data(s, &sl, false);
    /* the window opens as the filters take the bytes, unless they paused */
    if (s->active && h2s(s)->paused)
        h2s(s)->unconsumed += len;
    else
        nghttp2_session_consume(ng, id, len);
    return 0;
}

/* Before a frame goes: an interim HEADERS is no end; the last DATA or
 * HEADERS with END_STREAM is. */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    struct tn_dconn *c = ud;
    struct tn_stream *s = frame->hd.stream_id ? stream_of(ng, frame->hd.stream_id) : NULL;
    if (frame->hd.type == NGHTTP2_RST_STREAM)
        tn_stat_inc(H2S(c, tx_reset));
    if (s == NULL || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct h2_stream *hs = h2s(s);
    hs->end_sent = true;
    if (hs->held && !hs->remote_end)
        reset(c, s, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *ud)
{
    struct tn_dconn *c = ud;
    struct h2_conn *h = h2(c);
    struct tn_stream *s = stream_of(ng, id);
    if (s == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    struct h2_stream *hs = h2s(s);
    hs->ng_closed = true;
    if (hs->held) {
        held_remove(h, s);
        stream_done(c, s);
        tn__cm_stream_release(s);
        return 0;
    }
    if (!s->active)
        return 0;
    if (error_code == NGHTTP2_NO_ERROR && hs->end_sent && hs->remote_end)
        return 0; /* both ends sent: the manager finishes the stream now */
    /* the client reset it (or a stream error): the filters go, the router
     * lets its upstream request go */
    TN_LOG(TN_LOG_DEBUG, http, "%s stream reset (%s)", tn_stream_tag(s), nghttp2_http2_strerror(error_code));
    uint32_t flags = TN_RF_DOWNSTREAM_PROTOCOL_ERROR; /* nghttp2 refused what the client sent */
    if (hs->peer_reset) {
        tn_stat_inc(TN_HS(c, downstream_rq_rx_reset));
        tn_stat_inc(H2S(c, rx_reset));
        flags = TN_RF_DOWNSTREAM_CONNECTION_TERMINATION;
    } else if (s->si.response_code_details == NULL) {
        s->si.response_code_details = "http2.stream_error";
    }
    tn__cm_stream_destroy(s, flags);
    return 0;
}

/* --- the manager's calls ---------------------------------------------------------- */

static int session_new(struct tn_dconn *c)
{
    const struct tn_hcm *hcm = &c->l->hcm;
    struct h2_conn *h = h2(c);
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
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    if (nghttp2_option_new(&opt)) {
        nghttp2_session_callbacks_del(cbs);
        return -1;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    int rv = nghttp2_session_server_new2(&h->ng, cbs, c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, hcm->h2.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, hcm->h2.initial_stream_window_size},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, hcm->h2.hpack_table_size},
    };
    if (nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])))
        return -1;
    int32_t conn_win = (int32_t)hcm->h2.initial_connection_window_size;
    if (conn_win > 65535 && nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, conn_win))
        return -1;
    return 0;
}

static void h2_init(struct tn_dconn *c)
{
    if (session_new(c)) {
        TN_LOG(TN_LOG_ERROR, http, "[C%" PRIu64 "] out of memory for an HTTP/2 session", c->id);
        if (h2(c)->ng)
            nghttp2_session_del(h2(c)->ng);
        h2(c)->ng = NULL;
    }
}

static void h2_dispose(struct tn_dconn *c)
{
    struct h2_conn *h = h2(c);
    /* no callback runs from session_del */
    if (h->ng)
        nghttp2_session_del(h->ng);
    h->ng = NULL;
    while (h->held) {
        struct tn_stream *s = h->held;
        held_remove(h, s);
        stream_done(c, s);
        tn__cm_stream_release(s);
    }
    if (h->wblk)
        tn_block_unref(h->wblk);
    h->wblk = NULL;
}

static void h2_dispatch(struct tn_dconn *c, struct tn_block *blk, const char *p, size_t n)
{
    struct h2_conn *h = h2(c);
    if (h->ng == NULL) {
        tn__cm_close(c);
        return;
    }
    h->cur_blk = blk;
    h->busy++;
    ssize_t rv = nghttp2_session_mem_recv(h->ng, (const uint8_t *)p, n);
    h->busy--;
    h->cur_blk = NULL;
    if (c->closing)
        return;
    if (rv < 0) {
        TN_LOG(TN_LOG_DEBUG, http, "[C%" PRIu64 "] bad HTTP/2: %s", c->id, nghttp2_strerror((int)rv));
        tn_stat_inc(TN_HS(c, downstream_cx_protocol_error));
        if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
            tn__cm_close(c);
            return;
        }
        nghttp2_session_terminate_session(h->ng, NGHTTP2_PROTOCOL_ERROR);
    }
    flush(c);
}

/* A stream ended: frames it left go out; a drained connection may close. */
static void h2_resume(struct tn_dconn *c)
{
    flush(c);
}

static void h2_stream_free(struct tn_stream *s)
{
    tn_h1_head_dispose(&h2s(s)->head);
    tn_slices_dispose(&h2s(s)->body);
}

static void h2_drain(struct tn_dconn *c)
{
    struct h2_conn *h = h2(c);
    if (h->ng == NULL) {
        tn__cm_close(c);
        return;
    }
    if (!h->goaway) {
        h->goaway = true;
        nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng),
                              NGHTTP2_NO_ERROR, NULL, 0);
    }
    flush(c);
}

static void h2_write_low(struct tn_dconn *c)
{
    flush(c); /* frames that waited for room */
}

/* --- responses ------------------------------------------------------------------ */

static const char *const conn_specific[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                            "upgrade"};

static bool connection_specific(const struct tn_header *h)
{
    for (size_t i = 0; i < sizeof(conn_specific) / sizeof(conn_specific[0]); i++)
        if (strlen(conn_specific[i]) == h->name_len && memcmp(conn_specific[i], h->name, h->name_len) == 0)
            return true;
    return false;
}

/* A header list being built for nghttp2 (which copies it as it encodes),
 * written as "name: value\r\n" in a block so that the access log can
 * keep the response headers as sent. */
struct hlist {
    struct tn_stream *s;
    struct tn_block *b;
    size_t pos;
    nghttp2_nv *nv;
    size_t n, cap;
    bool record;
};

static int hl_put(struct hlist *l, const char *name, size_t nl, const char *v, size_t vl)
{
    size_t before = l->pos;
    if (l->n == l->cap || tn_h1_put_header(l->b->data, l->b->cap, &l->pos, name, nl, v, vl))
        return -1;
    char *np = l->b->data + before;
    for (size_t i = 0; i < nl; i++)
        if (np[i] >= 'A' && np[i] <= 'Z')
            np[i] = (char)(np[i] - 'A' + 'a');
    l->nv[l->n++] = (nghttp2_nv){.name = (uint8_t *)np, .namelen = nl, .value = (uint8_t *)np + nl + 2,
                                 .valuelen = vl, .flags = NGHTTP2_NV_FLAG_NONE};
    if (l->record)
        tn__stream_record_resp_header(l->s, l->b->data, before, nl, vl);
    return 0;
}
#define HL_PUT(l, lit, v, vl) hl_put((l), lit, sizeof(lit) - 1, (v), (vl))

static int hl_status(struct hlist *l, int status)
{
    char st[3] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10), (char)('0' + status % 10)};
    if (status < 100 || status > 999)
        return -1;
    bool rec = l->record;
    l->record = false;
    int rc = HL_PUT(l, ":status", st, 3);
    l->record = rec;
    return rc;
}

/* Room for the list: on the stack for most responses, else the stream's pool. */
static int hl_init(struct hlist *l, struct tn_stream *s, const struct tn_response *r, nghttp2_nv *stack,
                   size_t stack_n, size_t extra)
{
    const struct tn_hcm *hcm = &s->conn->l->hcm;
    size_t need = 512 + (hcm->via ? strlen(hcm->via) : 0) + extra;
    for (size_t i = 0; i < r->n_headers; i++)
        need += r->headers[i].name_len + r->headers[i].value_len + 4;
    *l = (struct hlist){.s = s, .nv = stack, .cap = stack_n};
    if (r->n_headers + 8 > stack_n) {
        l->cap = r->n_headers + 8;
        l->nv = tn_stream_alloc(s, l->cap * sizeof(nghttp2_nv));
        if (l->nv == NULL)
            return -1;
    }
    l->b = tn_block_new(need);
    return l->b ? 0 : -1;
}

static int put_headers(struct hlist *l, struct tn_response *r)
{
    struct tn_stream *s = l->s;
    struct tn_dconn *c = s->conn;
    const struct tn_hcm *hcm = &c->l->hcm;
    bool has_server = false, has_date = false, has_via = false;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct tn_header *hh = &r->headers[i];
        if (connection_specific(hh) || is(hh, "content-length", 14))
            continue;
        if (is(hh, "server", 6)) {
            if (hcm->server_header_transformation == 0)
                continue; /* OVERWRITE */
            has_server = true;
        }
        if (is(hh, "date", 4))
            has_date = true;
        if (hcm->via && is(hh, "via", 3) && !has_via) {
            /* Envoy appends its via value to the upstream's */
            size_t vl = strlen(hcm->via);
            char *v = tn_stream_alloc(s, hh->value_len + 2 + vl);
            if (v == NULL)
                return -1;
            memcpy(v, hh->value, hh->value_len);
            memcpy(v + hh->value_len, ", ", 2);
            memcpy(v + hh->value_len + 2, hcm->via, vl);
            if (HL_PUT(l, "via", v, hh->value_len + 2 + vl))
                return -1;
            has_via = true;
            continue;
        }
        if (hl_put(l, hh->name, hh->name_len, hh->value, hh->value_len))
            return -1;
    }
    if (!has_server && hcm->server_header_transformation != 2 &&
        HL_PUT(l, "server", hcm->server_name, strlen(hcm->server_name)))
        return -1;
    if (!has_date) {
        const char *d = tn_worker_date(c->w);
        if (HL_PUT(l, "date", d, strlen(d)))
            return -1;
    }
    if (hcm->via && !has_via && HL_PUT(l, "via", hcm->via, strlen(hcm->via)))
        return -1;
    bool no_body = r->status < 200 || r->status == 204 || r->status == 304;
    if (r->content_length >= 0 && !no_body) {
        char num[24];
        size_t nl = tn_h1_u64(num, (uint64_t)r->content_length);
        if (HL_PUT(l, "content-length", num, nl))
            return -1;
    } else if (!no_body && !s->head_request && r->end_stream && HL_PUT(l, "content-length", "0", 1)) {
        return -1;
    }
    if (hcm->always_set_request_id_in_response && s->si.request_id &&
        tn_headers_find(r->headers, r->n_headers, "x-request-id", 12) == NULL &&
        HL_PUT(l, "x-request-id", s->si.request_id, s->si.request_id_len))
        return -1;
    return 0;
}

static int h2_encode_headers(struct tn_stream *s, struct tn_response *r)
{
    struct tn_dconn *c = s->conn;
    struct h2_conn *h = h2(c);
    struct h2_stream *hs = h2s(s);
    nghttp2_nv stack[48];
    struct hlist l;
    if (h->ng == NULL || hs->ng_closed)
        return -1;
    if (hl_init(&l, s, r, stack, 48, 0) || hl_status(&l, r->status))
        goto fail;
    s->n_resp_hdrs = 0;
    l.record = true;
    if (put_headers(&l, r))
        goto fail;
    bool end = r->end_stream || s->head_request || r->status == 204 || r->status == 304;
    nghttp2_data_provider prov = {.source = {.ptr = s}, .read_callback = data_read_cb};
    hs->local_end = end;
    if (nghttp2_submit_response(h->ng, hs->id, l.nv, l.n, end ? NULL : &prov))
        goto fail;
    s->resp_started = true;
    s->si.response_code = r->status;
    if (s->resp_blk)
        tn_block_unref(s->resp_blk);
    s->resp_blk = l.b;
    flush(c);
    return 0;
fail:
    if (l.b)
        tn_block_unref(l.b);
    /* the stream alone fails */
    reset(c, s, NGHTTP2_INTERNAL_ERROR);
    s->resp_started = true;
    tn__cm_stream_destroy(s, 0);
    flush(c);
    return 0;
}

/* The upstream's trailers (the router keeps them in the stream info, for
 * the access log), kept in a block for the last DATA: HTTP/2 carries them
 * to the client as Envoy's HTTP/2 codec does. */
static void keep_trailers(struct tn_stream *s)
{
    struct h2_stream *hs = h2s(s);
    const struct tn_header *t = s->si.resp_trailers;
    size_t n = s->si.n_resp_trailers, bytes = n * sizeof(nghttp2_nv);
    for (size_t i = 0; i < n; i++)
        bytes += t[i].name_len + t[i].value_len;
    if (n == 0 || s->head_request || (hs->trailers = tn_block_new(bytes)) == NULL)
        return;
    nghttp2_nv *nv = (nghttp2_nv *)hs->trailers->data;
    char *p = hs->trailers->data + n * sizeof(nghttp2_nv);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (connection_specific(&t[i]) || t[i].name_len == 0 || t[i].name[0] == ':')
            continue;
        nv[k] = (nghttp2_nv){.name = (uint8_t *)p, .namelen = t[i].name_len, .flags = NGHTTP2_NV_FLAG_NONE};
        for (size_t j = 0; j < t[i].name_len; j++)
            p[j] = (char)(t[i].name[j] >= 'A' && t[i].name[j] <= 'Z' ? t[i].name[j] - 'A' + 'a' : t[i].name[j]);
        p += t[i].name_len;
        memcpy(p, t[i].value, t[i].value_len);
        nv[k].value = (uint8_t *)p;
        nv[k++].valuelen = t[i].value_len;
        p += t[i].value_len;
    }
    hs->n_trailers = k;
    if (k == 0) {
        tn_block_unref(hs->trailers);
        hs->trailers = NULL;
    }
}

static int h2_encode_data(struct tn_stream *s, struct tn_slice *data, bool end_stream)
{
    struct tn_dconn *c = s->conn;
    struct h2_stream *hs = h2s(s);
    if (data && tn_slices_push(&hs->body, *data))
        return -1;
    if (hs->local_end)
        return 0; /* a HEAD answer's body, or after a headers-only end */
    if (end_stream) {
        hs->local_end = true;
        keep_trailers(s);
    }
    if (hs->deferred && !hs->ng_closed) {
        hs->deferred = false;
        nghttp2_session_resume_data(h2(c)->ng, hs->id);
    }
    flush(c);
    return 0;
}

static void submit_interim(struct tn_stream *s, const struct tn_response *r)
{
    struct tn_dconn *c = s->conn;
    struct h2_conn *h = h2(c);
    struct h2_stream *hs = h2s(s);
    nghttp2_nv stack[32];
    struct hlist l;
    if (h->ng == NULL || hs->ng_closed)
        return;
    if (hl_init(&l, s, r, stack, 32, 0) == 0 && hl_status(&l, r->status) == 0) {
        int rc = 0;
        for (size_t i = 0; i < r->n_headers && rc == 0; i++)
            if (!connection_specific(&r->headers[i]))
                rc = hl_put(&l, r->headers[i].name, r->headers[i].name_len, r->headers[i].value,
                            r->headers[i].value_len);
        if (rc == 0)
            nghttp2_submit_headers(h->ng, NGHTTP2_FLAG_NONE, hs->id, NULL, l.nv, l.n, NULL);
    }
    if (l.b)
        tn_block_unref(l.b);
    flush(c);
}

static void h2_encode_interim(struct tn_stream *s, const struct tn_response *r)
{
    if (r->status == 100) {
        tn_stream_send_continue(s);
        return;
    }
    submit_interim(s, r);
}

static void h2_send_continue(struct tn_stream *s)
{
    struct tn_response r = {.status = 100};
    submit_interim(s, &r);
}

/* A local reset: RST_STREAM, the stream alone ends. */
static void h2_reset_stream(struct tn_stream *s)
{
    struct tn_dconn *c = s->conn;
    reset(c, s, NGHTTP2_INTERNAL_ERROR);
    tn__cm_stream_destroy(s, 0);
    flush(c);
}

/* Pausing stops opening the stream's window: the client may send what it
 * still has room for, and no more. */
static void h2_read_pause(struct tn_stream *s, bool pause)
{
    struct tn_dconn *c = s->conn;
    struct h2_stream *hs = h2s(s);
    hs->paused = pause;
    if (pause || hs->unconsumed == 0)
        return;
    consume(c, s, hs->unconsumed);
    hs->unconsumed = 0;
    flush(c);
}

const struct tn_codec_ops tn_codec_h2 = {
    .protocol = "HTTP/2",
    .init = h2_init,
    .dispose = h2_dispose,
    .dispatch = h2_dispatch,
    .resume = h2_resume,
    .encode_headers = h2_encode_headers,
    .encode_data = h2_encode_data,
    .encode_interim = h2_encode_interim,
    .send_continue = h2_send_continue,
    .reset_stream = h2_reset_stream,
    .read_pause = h2_read_pause,
    .stream_free = h2_stream_free,
    .multiplexed = true,
    .stream_hold = h2_stream_hold,
    .drain = h2_drain,
    .write_low = h2_write_low,
    .stream_above = h2_stream_above,
};
