/* The interface between the connection manager (conn_manager.c, Envoy's
 * HCM) and a downstream codec (codec_h1.c; HTTP/2 comes next), and the two
 * objects it speaks of: the downstream connection and the stream.
 *
 * The connection manager owns both objects. It accepts the socket, reads
 * into blocks, owns the write queue, the connection's idle timer, the
 * listener reference, drain and the worker's connection list, because
 * none of that depends on the protocol: every codec reads the same socket
 * and writes the same queue. A codec owns only what the wire format needs
 * (its parser, the bytes it holds back, its framing state), in
 * c->codec_state, and per stream in s->codec_mem.
 *
 * Bytes go in through ops->dispatch; the codec calls back the tn__cm_*
 * functions below as it finds a stream beginning, its request head (struct
 * tn_request filled), body slices and its end. The manager runs the
 * filters and hands the response to the codec through the ops (encode
 * headers, data, interim, 100-continue, reset, pause reading). A
 * connection may carry many streams (c->streams, each with its own id and
 * timer); HTTP/1.1 has at most one. */
#ifndef TN_CODEC_H
#define TN_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>
#include <uv.h>

#include "dataplane/core/outq.h"
#include "dataplane/core/pool.h"
#include "dataplane/core/timer.h"
#include "dataplane/http/stream.h"
#include "dataplane/server/listener.h"
#include "dataplane/server/worker.h"

#define TN_CM_MAX_FILTERS 16
#define TN_CM_CTX_MEM     2048
#define TN_CM_SCRATCH     512
/* What a codec keeps per connection and per stream, inline (no allocation
 * per connection or per request). */
#define TN_CODEC_CONN_MEM   192
#define TN_CODEC_STREAM_MEM 192

struct tn_dconn;
struct tn_stream;

/* --- what the manager asks of a codec ----------------------------------------- */

/* One table per wire protocol. Every call runs on the connection's worker;
 * a call that closes the connection (tn__cm_close) leaves c->closing set
 * and the caller looks at it before going on. */
struct tn_codec_ops {
    const char *protocol; /* the stream info's protocol, "HTTP/1.1" */
    /* Sets up c->codec_state for a connection that starts (zeroed before). */
    void (*init)(struct tn_dconn *c);
    /* Lets go of what the codec holds (held-back bytes), as c closes. */
    void (*dispose)(struct tn_dconn *c);
    /* Bytes read from the client, in blk (the manager drops its reference
     * after the call: the codec takes one for what it keeps). */
    void (*dispatch)(struct tn_dconn *c, struct tn_block *blk, const char *p, size_t n);
    /* A stream's request and response are both over and the connection
     * stays open: go on with the bytes held back, read again. */
    void (*resume)(struct tn_dconn *c);
    /* The response head, after the filters: 0, or -1 when it cannot be
     * written (the manager closes the connection). */
    int (*encode_headers)(struct tn_stream *s, struct tn_response *r);
    /* A body slice (reference taken over; NULL when there is nothing to
     * write) and whether it ends the response: 0, or -1 as above. */
    int (*encode_data)(struct tn_stream *s, struct tn_slice *data, bool end_stream);
    /* An interim 1xx response (not 101), before the head: sent if the
     * protocol version allows it. */
    void (*encode_interim)(struct tn_stream *s, const struct tn_response *r);
    /* "100 Continue" (the manager checked it was asked for, once). */
    void (*send_continue)(struct tn_stream *s);
    /* Ends the stream abruptly (HTTP/1.1: the connection closes). */
    void (*reset_stream)(struct tn_stream *s);
    /* Stops or resumes reading this stream's request body. */
    void (*read_pause)(struct tn_stream *s, bool pause);
    /* Frees what s->codec_mem points to (the stream memory is freed). */
    void (*stream_free)(struct tn_stream *s);

    /* The rest is for codecs that carry many streams on one connection
     * (HTTP/2); NULL / false for HTTP/1.1. */
    bool multiplexed; /* a stream ends or fails alone; keep-alive is the codec's business */
    /* The manager destroyed s (filters gone, s->active false): true when
     * the codec still needs s->codec_mem (frames not sent yet) and hands
     * the stream back later with tn__cm_stream_release. */
    bool (*stream_hold)(struct tn_stream *s);
    /* The connection drains: tell the client (GOAWAY), close when the
     * streams in flight are over. */
    void (*drain)(struct tn_dconn *c);
    /* The write queue fell below its low watermark. */
    void (*write_low)(struct tn_dconn *c);
    /* Whether s's own response bytes wait above the watermark (beside the
     * connection's write queue). */
    bool (*stream_above)(struct tn_stream *s);
};

extern const struct tn_codec_ops tn_codec_h1;
extern const struct tn_codec_ops tn_codec_h2;

/* --- the downstream connection -------------------------------------------------- */

struct tn_dconn {
    uv_tcp_t tcp;
    struct tn_worker *w;
    struct tn_listener *l; /* reference */
    struct tn_dconn *next, *prev;
    uint64_t id;
    const struct tn_codec_ops *codec;
    struct tn_outq out;    /* codecs write here */
    struct tn_timer timer; /* connection idle timeout (no stream) */
    struct tn_block *rblk; /* the block the next read lands in */
    struct sockaddr_storage peer, local;
    struct tn_stream *streams; /* active streams, newest first */
    uint64_t n_streams;        /* streams begun (the last stream's id) */
    bool remote_closed, closing, reading, drain;
    bool upgraded; /* a stream became a tunnel (counted as an active upgrade) */
    bool sniff;    /* codec_type AUTO: the first bytes choose the codec */
    bool codec_counted; /* downstream_cx_http1/2 counted for c->codec */
    /* The connection may serve another request after the current ones:
     * the codec clears it by the protocol's rules, the manager when it
     * answers with a close (protocol error, timeout) or drains. */
    bool keepalive;
    _Alignas(16) char codec_state[TN_CODEC_CONN_MEM];
};

/* --- the stream ----------------------------------------------------------------- */

struct tn_stream {
    struct tn_route_table *routes; /* the route table this stream matches against */
    bool routes_ref;               /* routes is a reference of ours (RDS) */
    struct tn_dconn *conn;
    struct tn_stream *next, *prev; /* the connection's active streams */
    struct tn_stream *next_free;   /* the worker's free list */
    struct tn_request rq;
    struct tn_stream_info si;
    uint64_t id;
    char tag[48];
    char scratch[TN_CM_SCRATCH]; /* generated header values (request id, xff) */
    size_t scratch_len;
    struct tn_pool pool;    /* anything else a filter keeps for the stream */
    struct tn_timer timer;  /* request headers and stream idle timeouts */
    uint64_t last_activity; /* uv_now of the stream's last progress */
    void *fctx[TN_CM_MAX_FILTERS];
    unsigned n_filters;
    unsigned hdr_stop;   /* filters [0, hdr_stop) have seen the request headers */
    unsigned cur_filter; /* the filter whose request callback runs (local replies pass the ones before it) */
    /* set by the manager; the codec reads them, and sets head_request and,
     * as it writes the head, resp_started and si.response_code */
    bool active, req_done, resp_started, resp_done, head_request, destroyed;
    bool sent_continue, counted;
    bool tunnel;               /* upgraded: the request body is the client's bytes until it closes */
    uint64_t idle_timeout_ms;  /* the HCM's stream_idle_timeout, or the route's idle_timeout */
    size_t n_resp_hdrs;        /* the response headers as sent, for the access log (the codec records them) */
    struct tn_block *resp_blk; /* ... and the block they point into */
    /* kept across reuse (not cleared when a stream begins) */
    struct tn_header *hdrs; /* request headers to forward (owned, grows) */
    size_t hdrs_cap;
    struct tn_header *resp_hdrs; /* n_resp_hdrs of them (owned, grows) */
    size_t resp_hdrs_cap;
    const struct tn_codec_ops *codec_owner; /* whose state codec_mem holds */
    _Alignas(16) char codec_mem[TN_CODEC_STREAM_MEM];
    _Alignas(16) char ctxmem[TN_CM_CTX_MEM]; /* filter contexts; last: not cleared per request */
};

/* The connection manager's stats: HS(c, name) is the worker shard and slot. */
#define TN_HS(c, f) (c)->w->shard, (c)->l->hcm.stats.f

/* --- what a codec tells the manager --------------------------------------------- */

/* A stream begins on c (from the worker's free list, its request headers
 * timeout armed); NULL when out of memory (logged). s->codec_mem is zeroed
 * when the stream last served another codec. */
struct tn_stream *tn__cm_stream_new(struct tn_dconn *c);

/* The request head is in s->rq (method, target, host, headers without the
 * hop-by-hop ones, framing): the manager adds its headers (x-forwarded-*,
 * x-request-id, ...) and runs the filters' on_request_headers. 0, or -1
 * when the request was refused (answered, with the connection closing). */
int tn__cm_headers(struct tn_stream *s);

/* A request body slice (reference taken over); end_stream ends the
 * request. */
void tn__cm_data(struct tn_stream *s, struct tn_slice *data, bool end_stream);

/* The request ended (after its last body slice, if any): a stream whose
 * response is done too is destroyed (s->active turns false). */
void tn__cm_request_end(struct tn_stream *s);

/* The codec refused the request: a local reply (status, text body,
 * response flags, details) and the connection closes after it. */
void tn__cm_protocol_error(struct tn_stream *s, int status, const char *body, uint32_t flags, const char *details);

/* The stream became a two-way tunnel (after a 101). */
void tn__cm_upgraded(struct tn_stream *s);

/* Closes the connection now (its streams are destroyed). */
void tn__cm_close(struct tn_dconn *c);
/* Closes it once what is written so far has left. */
void tn__cm_close_after_flush(struct tn_dconn *c);

/* Multiplexing codecs: the stream ends alone, now (reset by the client or
 * by tern: the filters are destroyed, the router lets its upstream request
 * go); flags go to the access log. */
void tn__cm_stream_destroy(struct tn_stream *s, uint32_t flags);
/* A stream the codec held (stream_hold) goes back to the free list. */
void tn__cm_stream_release(struct tn_stream *s);
/* s's response bytes went below the watermark: its filters may produce
 * again (on_downstream_drained). */
void tn__cm_stream_drained(struct tn_stream *s);

/* Starts / stops reading the socket (bytes come to ops->dispatch). */
void tn__cm_read_start(struct tn_dconn *c);
void tn__cm_read_stop(struct tn_dconn *c);

/* Request header list building, shared by the codec (the client's headers)
 * and the manager (the ones it adds): appends one (0 or -1 out of memory);
 * n bytes that live as long as the stream (NULL out of memory). */
int tn__stream_add_header(struct tn_stream *s, const char *name, size_t nl, const char *v, size_t vl);
char *tn__stream_scratch(struct tn_stream *s, size_t n);
/* Remembers a response header as written, for the access log: name at
 * base + off, its value two bytes after. */
void tn__stream_record_resp_header(struct tn_stream *s, const char *base, size_t off, size_t nl, size_t vl);

#endif
