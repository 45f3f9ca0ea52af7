/* The downstream HTTP/1.1 codec: bytes from the client become a stream's
 * request for the connection manager (conn_manager.c), the manager's
 * response becomes bytes on the connection's write queue (codec.h).
 *
 * One connection serves one request at a time: llhttp reads ahead, and a
 * pipelined request waits (parser paused, reading stopped, its bytes held
 * here) until the response before it is complete, so responses leave in
 * request order.
 *
 * llhttp runs in strict mode, and tern adds the rules the parser leaves to
 * its user: no obs-fold, one Host with a valid authority, only "chunked" as
 * a transfer coding, the whole head within max_request_headers_kb and
 * max_headers_count, no CONNECT. An upgrade request waits, reading stopped,
 * for its answer; after a 101 the connection is a tunnel whose bytes are
 * the request body.
 *
 * The codec decides keep-alive by the protocol's rules (the request's
 * version and Connection header, max_requests_per_connection, a body that
 * ends with the connection) and writes the head with what the connection
 * manager owns (server, date, via, framing, connection).
 *
 * Its state: the parser and the held-back bytes in the connection's
 * codec_state (no allocation per connection); the request head buffer and
 * the head's accounting in the stream's codec_mem, so that it comes and
 * goes with the stream (an idle connection holds no head buffer). */
#include "dataplane/http/codec.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <llhttp.h>

#include "dataplane/core/log.h"
#include "dataplane/http/h1.h"

struct h1_conn {
    llhttp_t parser;
    struct tn_block *cur_blk;  /* the block the parser is reading from */
    struct tn_block *pend_blk; /* unparsed bytes of a pipelined request */
    const char *pend_p;
    size_t pend_len;
    const char *read_start; /* the bytes the parser is reading */
    char prev_last;         /* the last byte of the read before */
    bool in_parse, read_paused_by_filter;
    bool tunnel; /* upgraded: what the client sends is the request body, unparsed */
};

struct h1_stream {
    struct tn_h1_head head; /* the request head as it arrives (kept across reuse) */
    /* cleared when a stream begins, from here */
    size_t head_raw;         /* head bytes before the current read's origin */
    const char *head_origin; /* where this read's share of the head starts */
    const char *val_end;     /* end of the last header value bytes seen (obs-fold check) */
    bool val_at_end;         /* ... and they ran to the end of the previous read */
    bool headers_done;
    bool upgrade; /* an upgrade request waiting for its answer, or upgraded */
    bool resp_chunked;
};

_Static_assert(sizeof(struct h1_conn) <= TN_CODEC_CONN_MEM, "h1_conn fits codec_state");
_Static_assert(sizeof(struct h1_stream) <= TN_CODEC_STREAM_MEM, "h1_stream fits codec_mem");

static llhttp_settings_t settings;

static inline struct h1_conn *h1(struct tn_dconn *c)
{
    return (struct h1_conn *)c->codec_state;
}

static inline struct h1_stream *h1s(struct tn_stream *s)
{
    return (struct h1_stream *)s->codec_mem;
}

/* The request in flight (HTTP/1.1 has one at most), NULL between requests. */
static inline struct tn_stream *cur(struct tn_dconn *c)
{
    return c->streams;
}

static void parse(struct tn_dconn *c, struct tn_block *blk, const char *p, size_t n);

/* Keeps n bytes at p of blk for later (a pipelined request, or what came
 * behind an upgrade request). */
static void hold(struct h1_conn *h, struct tn_block *blk, const char *p, size_t n)
{
    if (h->pend_blk)
        tn_block_unref(h->pend_blk);
    h->pend_blk = tn_block_ref(blk);
    h->pend_p = p;
    h->pend_len = n;
}

/* --- the manager's calls ---------------------------------------------------------- */

static void h1_init(struct tn_dconn *c)
{
    struct h1_conn *h = h1(c);
    llhttp_init(&h->parser, HTTP_REQUEST, &settings);
    if (c->l->hcm.allow_chunked_length)
        llhttp_set_lenient_chunked_length(&h->parser, 1);
    h->parser.data = c;
}

static void h1_dispose(struct tn_dconn *c)
{
    struct h1_conn *h = h1(c);
    if (h->pend_blk)
        tn_block_unref(h->pend_blk);
    h->pend_blk = NULL;
}

static void h1_dispatch(struct tn_dconn *c, struct tn_block *blk, const char *p, size_t n)
{
    struct h1_conn *h = h1(c);
    struct tn_stream *s = cur(c);
    if (h->tunnel) {
        if (s) {
            struct tn_slice sl = tn_slice_of(blk, p, n);
            tn__cm_data(s, &sl, false);
        }
        return;
    }
    if (s && s->req_done && !h->pend_blk) {
        /* a pipelined request while the previous one is answered: keep it */
        hold(h, blk, p, n);
        tn__cm_read_stop(c);
        return;
    }
    parse(c, blk, p, n);
}

static void h1_resume(struct tn_dconn *c)
{
    struct h1_conn *h = h1(c);
    if (h->in_parse)
        return; /* parse() continues with the bytes it holds */
    if (h->pend_blk) {
        struct tn_block *b = h->pend_blk;
        const char *p = h->pend_p;
        size_t n = h->pend_len;
        h->pend_blk = NULL;
        parse(c, b, p, n);
        tn_block_unref(b);
    }
    if (cur(c) == NULL || !cur(c)->req_done)
        tn__cm_read_start(c);
}

static void h1_stream_free(struct tn_stream *s)
{
    tn_h1_head_dispose(&h1s(s)->head);
}

/* --- reading -------------------------------------------------------------------- */

/* A stream for a request beginning on c, its head collector reset; NULL
 * when out of memory. */
static struct tn_stream *stream_begin(struct tn_dconn *c)
{
    struct tn_stream *s = tn__cm_stream_new(c);
    if (s == NULL)
        return NULL;
    struct h1_stream *hs = h1s(s);
    const struct tn_hcm *hcm = &c->l->hcm;
    memset((char *)hs + offsetof(struct h1_stream, head_raw), 0, sizeof(*hs) - offsetof(struct h1_stream, head_raw));
    tn_h1_head_reset(&hs->head);
    hs->head.limit = (size_t)hcm->max_request_headers_kb * 1024;
    hs->head.max_headers = hcm->max_headers_count;
    return s;
}

static int too_large(struct tn_dconn *c)
{
    tn_stat_inc(TN_HS(c, downstream_rq_too_large));
    tn__cm_protocol_error(cur(c), 431, "Request Header Fields Too Large", TN_RF_DOWNSTREAM_PROTOCOL_ERROR,
                          "http1.headers_too_large");
    return -1;
}

static int bad_request(struct tn_dconn *c, const char *details)
{
    tn_stat_inc(TN_HS(c, downstream_cx_protocol_error));
    tn__cm_protocol_error(cur(c), 400, "Bad Request", TN_RF_DOWNSTREAM_PROTOCOL_ERROR, details);
    return -1;
}

/* Two Transfer-Encoding lines in the head collected so far. */
static bool two_te(struct tn_stream *s)
{
    struct tn_h1_head *hd = &h1s(s)->head;
    unsigned n = 0;
    for (size_t i = 0; i < hd->n; i++)
        if (hd->e[i].nl == 17 && memcmp(hd->buf + hd->e[i].no, "transfer-encoding", 17) == 0)
            n++;
    return n > 1;
}

static void parse_error(struct tn_dconn *c)
{
    struct h1_conn *h = h1(c);
    llhttp_errno_t e = llhttp_get_errno(&h->parser);
    TN_LOG(TN_LOG_DEBUG, http, "[C%" PRIu64 "] malformed request: %s (%s)", c->id, llhttp_errno_name(e),
           llhttp_get_error_reason(&h->parser));
    if (cur(c) == NULL && !c->keepalive)
        return; /* a callback already answered and the connection closes after it */
    tn_stat_inc(TN_HS(c, downstream_cx_protocol_error));
    if (cur(c) && cur(c)->resp_started) {
        tn__cm_close(c);
        return;
    }
    if (cur(c) == NULL)
        stream_begin(c); /* the error came before a message began: answer on a fresh stream */
    struct tn_stream *s = cur(c);
    if (s == NULL) {
        tn__cm_close(c);
        return;
    }
    /* only "chunked" is forwarded (RFC 9112 6.1): another coding is 501 as
     * nginx answers, a second Transfer-Encoding line a plain 400 */
    if (e == HPE_INVALID_TRANSFER_ENCODING && !two_te(s))
        tn__cm_protocol_error(s, 501, "Not Implemented", TN_RF_DOWNSTREAM_PROTOCOL_ERROR,
                              "http1.invalid_transfer_encoding");
    else
        tn__cm_protocol_error(s, 400, "Bad Request", TN_RF_DOWNSTREAM_PROTOCOL_ERROR, "http1.codec_error");
}

/* Feeds bytes to the parser until they run out or a pipelined request has
 * to wait; what is left is kept with a block reference. */
static void parse(struct tn_dconn *c, struct tn_block *blk, const char *p, size_t n)
{
    struct h1_conn *h = h1(c);
    while (n > 0 && !c->closing) {
        h->in_parse = true;
        h->cur_blk = blk; /* on_body slices reference it */
        h->read_start = p;
        if (cur(c) && !h1s(cur(c))->headers_done)
            h1s(cur(c))->head_origin = p; /* a head that began in an earlier read goes on here */
        llhttp_errno_t e = llhttp_execute(&h->parser, p, n);
        size_t used = e == HPE_OK ? n : (size_t)(llhttp_get_error_pos(&h->parser) - p);
        h->cur_blk = NULL;
        h->in_parse = false;
        if (used)
            h->prev_last = p[used - 1];
        if (c->closing)
            return;
        struct tn_stream *s = cur(c);
        if (e == HPE_PAUSED_UPGRADE && s && h1s(s)->upgrade) {
            /* what follows is the new protocol's, if the answer is a 101:
             * kept, and nothing more read, until the answer comes */
            tn__cm_read_stop(c);
            if (used < n)
                hold(h, blk, p + used, n - used);
            return;
        }
        if (e != HPE_OK && e != HPE_PAUSED) {
            parse_error(c);
            return;
        }
        if (s && !h1s(s)->headers_done && h1s(s)->head_origin) {
            /* the head goes on in the next read: count what this one held */
            struct h1_stream *hs = h1s(s);
            hs->head_raw += (size_t)(p + used - hs->head_origin);
            hs->head_origin = NULL;
            hs->val_at_end = hs->val_end == p + used;
            if (hs->head_raw > hs->head.limit) {
                too_large(c);
                return;
            }
        }
        if (e == HPE_PAUSED)
            llhttp_resume(&h->parser);
        p += used;
        n -= used;
        if (e == HPE_PAUSED && s != NULL) {
            /* a complete request is in flight: keep the rest for later */
            if (n > 0) {
                tn__cm_read_stop(c);
                hold(h, blk, p, n);
            }
            return;
        }
    }
}

static int on_message_begin(llhttp_t *p)
{
    struct tn_dconn *c = p->data;
    return stream_begin(c) ? 0 : -1;
}

/* The head's bytes so far, up to `end` in the current read, against
 * max_request_headers_kb (the whole head, as Envoy counts it). */
static int head_bytes(struct tn_dconn *c, const char *end)
{
    struct h1_stream *hs = h1s(cur(c));
    if (hs->head_origin && hs->head_raw + (size_t)(end - hs->head_origin) > hs->head.limit)
        return too_large(c);
    return 0;
}

static int head_error(struct tn_dconn *c, int rc)
{
    if (rc == TN_H1_TOO_MANY) {
        TN_LOG(TN_LOG_DEBUG, http, "[C%" PRIu64 "] more than %u headers", c->id, h1s(cur(c))->head.max_headers);
        tn_stat_inc(TN_HS(c, downstream_rq_too_large));
        tn__cm_protocol_error(cur(c), 431, "Request Header Fields Too Large", TN_RF_DOWNSTREAM_PROTOCOL_ERROR,
                              "http1.too_many_headers");
        return -1;
    }
    return rc ? too_large(c) : 0;
}

static int on_method(llhttp_t *p, const char *at, size_t n)
{
    struct tn_dconn *c = p->data;
    if (cur(c) == NULL)
        return -1;
    struct h1_stream *hs = h1s(cur(c));
    if (hs->head_origin == NULL || hs->head.len == 0) {
        hs->head_origin = at; /* the head starts here (pipelined requests start mid-read) */
        hs->head_raw = 0;
    }
    return head_bytes(c, at + n);
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct tn_dconn *c = p->data;
    if (cur(c) == NULL)
        return -1;
    int rc = head_bytes(c, at + n);
    return rc ? rc : head_error(c, tn_h1_head_url(&h1s(cur(c))->head, at, n));
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct tn_dconn *c = p->data;
    if (cur(c) == NULL)
        return -1;
    int rc = head_bytes(c, at + n);
    return rc ? rc : head_error(c, tn_h1_head_field(&h1s(cur(c))->head, at, n));
}

/* Whether a header value's bytes at `at` continue an obs-fold line (RFC
 * 9112 5.2: tern rejects the message rather than replacing the fold). llhttp
 * joins a folded line to the value, so a value's bytes come in two pieces
 * within one read only after a fold; across reads, the piece before must
 * have run to the end of the previous read. A value starting a line (after
 * CRLF and blanks, not after the colon) is a fold of an empty value. */
static bool obs_fold(struct tn_dconn *c, const char *at)
{
    struct h1_conn *h = h1(c);
    struct h1_stream *hs = h1s(cur(c));
    if (hs->head.state == 2)
        return !(at == h->read_start && hs->val_at_end);
    const char *q = at;
    while (q > h->read_start && (q[-1] == ' ' || q[-1] == '\t'))
        q--;
    return q > h->read_start ? q[-1] == '\n' : h->prev_last == '\n';
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct tn_dconn *c = p->data;
    struct tn_stream *s = cur(c);
    if (s == NULL)
        return -1;
    int rc = head_bytes(c, at + n);
    if (rc)
        return rc;
    if (obs_fold(c, at)) {
        TN_LOG(TN_LOG_DEBUG, http, "[C%" PRIu64 "] obs-fold in a header value", c->id);
        return bad_request(c, "http1.obs_fold");
    }
    h1s(s)->val_end = at + n;
    return head_error(c, tn_h1_head_value(&h1s(s)->head, at, n));
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
        char *v = tn__stream_scratch(s, pl + 1);
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

/* The request from the head: method, target, Host, the headers to forward
 * (hop-by-hop ones out), framing. 0, -1 (a bad request) or -2 (a transfer
 * coding tern cannot undo). */
static int request_from_head(struct tn_dconn *c, struct tn_stream *s)
{
    const struct tn_hcm *hcm = &c->l->hcm;
    llhttp_t *p = &h1(c)->parser;
    struct h1_stream *hs = h1s(s);
    struct tn_h1_head *hd = &hs->head;
    const struct tn_header *conn_hdr = NULL;
    const struct tn_header *host = NULL;

    s->rq.method_id = p->method;
    s->rq.method = llhttp_method_name(p->method);
    s->rq.method_len = strlen(s->rq.method);
    s->rq.scheme = "http";
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
        if (hs->upgrade && h->name_len == 7 && memcmp(h->name, "upgrade", 7) == 0 && s->rq.upgrade == NULL) {
            size_t n = 0;
            while (n < h->value_len && h->value[n] != ',' && h->value[n] != ' ' && h->value[n] != '\t')
                n++;
            s->rq.upgrade = h->value;
            s->rq.upgrade_len = n;
            if (tn__stream_add_header(s, h->name, h->name_len, h->value, h->value_len))
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
        if (tn__stream_add_header(s, h->name, h->name_len, h->value, h->value_len))
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
    bool http10 = p->http_major == 1 && p->http_minor == 0;
    if (http10 && s->rq.host_len == 0 && hcm->default_host_for_http_10) {
        s->rq.host = hcm->default_host_for_http_10;
        s->rq.host_len = strlen(s->rq.host);
    }
    if (s->rq.host_len == 0 && !http10)
        return -1; /* HTTP/1.1 requires Host */
    s->rq.chunked = (p->flags & F_CHUNKED) != 0;
    s->rq.content_length = (p->flags & F_CONTENT_LENGTH) && !s->rq.chunked ? (int64_t)p->content_length : -1;
    s->rq.has_body = s->rq.chunked || s->rq.content_length > 0;
    s->head_request = s->rq.method_id == HTTP_HEAD;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct tn_dconn *c = p->data;
    struct tn_stream *s = cur(c);
    const struct tn_hcm *hcm = &c->l->hcm;
    if (s == NULL)
        return -1;
    struct h1_stream *hs = h1s(s);

    hs->headers_done = true;
    if (p->http_major == 1 && p->http_minor == 0 && !hcm->accept_http_10) {
        tn__cm_protocol_error(s, 426, "Upgrade Required", TN_RF_DOWNSTREAM_PROTOCOL_ERROR, "low_version");
        return -1;
    }
    if (p->upgrade && p->method != HTTP_CONNECT) {
        /* the router decides (upgrade_configs); with a body it is a plain
         * request whose Upgrade goes as a hop-by-hop header */
        if ((p->flags & F_CHUNKED) || p->content_length > 0)
            p->upgrade = 0;
        else
            hs->upgrade = true;
    }
    if (p->upgrade && !hs->upgrade) {
        /* CONNECT needs upgrade_configs with CONNECT support, which tern
         * does not take yet: refused as Envoy refuses an unconfigured one */
        TN_LOG(TN_LOG_DEBUG, http, "[C%" PRIu64 "] CONNECT refused", c->id);
        tn__cm_protocol_error(s, 403, NULL, 0, "upgrade_failed");
        return -1;
    }
    int rc = tn_h1_head_finish(&hs->head) ? -1 : request_from_head(c, s);
    if (rc == -2) {
        tn_stat_inc(TN_HS(c, downstream_cx_protocol_error));
        tn__cm_protocol_error(s, 501, "Not Implemented", TN_RF_DOWNSTREAM_PROTOCOL_ERROR,
                              "http1.invalid_transfer_encoding");
        return -1;
    }
    if (rc) {
        tn_stat_inc(TN_HS(c, downstream_cx_protocol_error));
        tn__cm_protocol_error(s, 400, "Bad Request", TN_RF_DOWNSTREAM_PROTOCOL_ERROR, "http1.invalid_request");
        return -1;
    }
    c->keepalive = llhttp_should_keep_alive(p) && !c->drain &&
                   !(hcm->max_requests_per_connection && c->n_streams >= hcm->max_requests_per_connection);
    s->rq.end_stream = !s->rq.has_body && !hs->upgrade; /* an upgrade's body may follow its 101 */
    return tn__cm_headers(s);
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct tn_dconn *c = p->data;
    if (cur(c) == NULL)
        return 0; /* the rest of a request already answered */
    struct tn_slice sl = tn_slice_of(h1(c)->cur_blk, at, n);
    tn__cm_data(cur(c), &sl, false);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct tn_dconn *c = p->data;
    struct tn_stream *s = cur(c);
    if (s == NULL)
        return c->closing || !c->keepalive ? HPE_PAUSED : 0; /* answered and gone before the request ended */
    tn__cm_request_end(s);
    return s->active || c->closing ? HPE_PAUSED : 0;
}

/* --- responses ------------------------------------------------------------------ */

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

static int put(struct tn_stream *s, struct tn_block *b, size_t *pos, const char *n, size_t nl, const char *v, size_t vl)
{
    size_t before = *pos;
    if (tn_h1_put_header(b->data, b->cap, pos, n, nl, v, vl))
        return -1;
    tn__stream_record_resp_header(s, b->data, before, nl, vl);
    return 0;
}
#define PUT(s, b, pos, lit, v, vl) put((s), (b), (pos), lit, sizeof(lit) - 1, (v), (vl))

/* Writes the response head: the filters' headers, then what the connection
 * manager owns (server, date, framing, connection). */
static int write_head(struct tn_stream *s, struct tn_response *r)
{
    struct tn_dconn *c = s->conn;
    struct h1_conn *h = h1(c);
    struct h1_stream *hs = h1s(s);
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
        const struct tn_header *hh = &r->headers[i];
        if (hh->name_len == 6 && memcmp(hh->name, "server", 6) == 0) {
            if (hcm->server_header_transformation == 0)
                continue; /* OVERWRITE */
            has_server = true;
        }
        if (hh->name_len == 4 && memcmp(hh->name, "date", 4) == 0)
            has_date = true;
        if (hcm->via && hh->name_len == 3 && memcmp(hh->name, "via", 3) == 0 && !has_via) {
            /* Envoy appends its via value to the upstream's */
            size_t vl = strlen(hcm->via), before = pos;
            if (pos + hh->value_len + vl + 9 > b->cap)
                goto fail;
            memcpy(b->data + pos, "via: ", 5);
            memcpy(b->data + pos + 5, hh->value, hh->value_len);
            memcpy(b->data + pos + 5 + hh->value_len, ", ", 2);
            memcpy(b->data + pos + 7 + hh->value_len, hcm->via, vl);
            memcpy(b->data + pos + 7 + hh->value_len + vl, "\r\n", 2);
            pos += 9 + hh->value_len + vl;
            tn__stream_record_resp_header(s, b->data, before, 3, hh->value_len + 2 + vl);
            has_via = true;
            continue;
        }
        if (put(s, b, &pos, hh->name, hh->name_len, hh->value, hh->value_len))
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
    hs->resp_chunked = false;
    if (r->content_length >= 0 && !no_body) {
        char num[24];
        size_t nl = tn_h1_u64(num, (uint64_t)r->content_length);
        if (PUT(s, b, &pos, "content-length", num, (size_t)nl))
            goto fail;
    } else if (!no_body && !s->head_request) {
        if (r->end_stream) {
            if (PUT(s, b, &pos, "content-length", "0", 1))
                goto fail;
        } else if (h->parser.http_minor >= 1 || h->parser.http_major > 1) {
            hs->resp_chunked = true;
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
    if (r->status == 101 && hs->upgrade) {
        /* upgraded: the connection is the new protocol's from here */
        h->tunnel = true;
        c->keepalive = false;
        if (PUT(s, b, &pos, "connection", "upgrade", 7))
            goto fail;
    } else if (!c->keepalive || c->drain) {
        c->keepalive = false;
        if (PUT(s, b, &pos, "connection", "close", 5))
            goto fail;
    } else if (h->parser.http_major == 1 && h->parser.http_minor == 0) {
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
static void tunnel_start(struct tn_dconn *c, struct tn_stream *s)
{
    struct h1_conn *h = h1(c);
    tn__cm_upgraded(s);
    if (h->pend_blk) {
        struct tn_block *b = h->pend_blk;
        struct tn_slice sl = tn_slice_of(b, h->pend_p, h->pend_len);
        h->pend_blk = NULL;
        tn_block_unref(b);
        tn__cm_data(s, &sl, false);
    }
    if (!c->closing && cur(c) && !h->read_paused_by_filter)
        tn__cm_read_start(c);
}

static int h1_encode_headers(struct tn_stream *s, struct tn_response *r)
{
    if (write_head(s, r))
        return -1;
    if (h1(s->conn)->tunnel)
        tunnel_start(s->conn, s);
    return 0;
}

static int h1_encode_data(struct tn_stream *s, struct tn_slice *data, bool end_stream)
{
    struct tn_dconn *c = s->conn;
    if (data) {
        int rc;
        if (h1s(s)->resp_chunked) {
            char pre[24];
            size_t pl = tn_h1_chunk_size(pre, data->len);
            rc = tn_outq_write(&c->out, pre, (size_t)pl, data, 1, "\r\n", 2);
        } else {
            rc = tn_outq_write(&c->out, NULL, 0, data, 1, NULL, 0);
        }
        if (rc)
            return -1;
    }
    if (end_stream && h1s(s)->resp_chunked && tn_outq_write(&c->out, "0\r\n\r\n", 5, NULL, 0, NULL, 0))
        c->keepalive = false;
    return 0;
}

static void h1_send_continue(struct tn_stream *s)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    tn_outq_write(&s->conn->out, cont, sizeof(cont) - 1, NULL, 0, NULL, 0);
}

static void h1_encode_interim(struct tn_stream *s, const struct tn_response *r)
{
    struct tn_dconn *c = s->conn;
    const llhttp_t *p = &h1(c)->parser;
    if (p->http_major == 1 && p->http_minor == 0)
        return; /* nothing interim to an HTTP/1.0 client */
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
            tn__cm_close(c);
    }
    tn_block_unref(b);
}

/* HTTP/1.1 cannot end one exchange alone: the connection goes. */
static void h1_reset_stream(struct tn_stream *s)
{
    tn__cm_close(s->conn);
}

static void h1_read_pause(struct tn_stream *s, bool pause)
{
    struct tn_dconn *c = s->conn;
    struct h1_conn *h = h1(c);
    h->read_paused_by_filter = pause;
    if (pause)
        tn__cm_read_stop(c);
    else if (!s->req_done && !h->in_parse)
        tn__cm_read_start(c);
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

const struct tn_codec_ops tn_codec_h1 = {
    .protocol = "HTTP/1.1",
    .init = h1_init,
    .dispose = h1_dispose,
    .dispatch = h1_dispatch,
    .resume = h1_resume,
    .encode_headers = h1_encode_headers,
    .encode_data = h1_encode_data,
    .encode_interim = h1_encode_interim,
    .send_continue = h1_send_continue,
    .reset_stream = h1_reset_stream,
    .read_pause = h1_read_pause,
    .stream_free = h1_stream_free,
};
