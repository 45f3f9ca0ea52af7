/* Upstream HTTP/1.1 connections and the per-worker, per-host pools that
 * keep them alive between requests; for a cluster that asks for HTTP/2,
 * HTTP/2 connections whose streams the requests share (h2_pool.c), behind
 * the same interface: there a `struct tn_uconn` is the request's stream.
 *
 * A request asks its host's pool for a connection (tn_hpool_acquire): an
 * idle one is handed over at once; otherwise a new connection is opened
 * (within the cluster's max_connections) or the request waits in the pool's
 * pending queue (within max_pending_requests). The router then writes the
 * request with tn_uconn_write and gets the response through its ops. When
 * the response ends and the request was fully written, the connection goes
 * back to the pool by itself. */
#ifndef TN_UPSTREAM_H
#define TN_UPSTREAM_H

#include <stdbool.h>

#include "dataplane/core/outq.h"
#include "dataplane/core/slice.h"
#include "dataplane/http/stream.h"
#include "dataplane/server/worker.h"

struct tn_uconn;
struct tn__h2conn;
struct tn_ureq;

enum tn_pool_failure {
    TN_POOL_CONNECT_FAILURE = 0,
    TN_POOL_CONNECT_TIMEOUT,
    TN_POOL_OVERFLOW,
};

enum tn_reset_reason {
    TN_RESET_CONNECTION_TERMINATION = 0, /* the upstream closed or failed mid-exchange */
    TN_RESET_PROTOCOL_ERROR,             /* the response did not parse */
    TN_RESET_REMOTE_RESET,               /* HTTP/2: the origin reset the stream */
    TN_RESET_REFUSED_STREAM,             /* HTTP/2: refused, or above a GOAWAY's last stream: never processed */
};

/* What the pool and the connection tell the request's owner. */
struct tn_ureq_ops {
    /* A connection is ready for the request (after tn_hpool_acquire
     * returned 1). */
    void (*on_ready)(struct tn_ureq *r, struct tn_uconn *uc);
    /* No connection could be had; the request is no longer queued. */
    void (*on_failure)(struct tn_ureq *r, enum tn_pool_failure why);
    /* Response head (1xx are not passed on). */
    void (*on_headers)(struct tn_ureq *r, struct tn_response *resp);
    /* A response body slice (reference passed over); end: the response is
     * complete and the connection no longer belongs to the request. */
    void (*on_data)(struct tn_ureq *r, struct tn_slice *data, bool end);
    /* The response's trailers (chunked), just before on_data(end); the
     * headers live until the call returns. May be NULL. */
    void (*on_trailers)(struct tn_ureq *r, const struct tn_header *h, size_t n);
    /* The connection failed before the response completed; it is gone. */
    void (*on_reset)(struct tn_ureq *r, enum tn_reset_reason why);
    /* The connection's write side drained below its low watermark. */
    void (*on_write_low)(struct tn_ureq *r);
    /* An interim (1xx) answer before the final one (101 only for an
     * upgrade, as its final answer, through on_headers); the headers live
     * until the call returns. May be NULL (they are dropped). */
    void (*on_interim)(struct tn_ureq *r, const struct tn_response *resp);
};

struct tn_ureq {
    const struct tn_ureq_ops *ops;
    struct tn_ureq *next; /* pending queue */
    struct tn_hpool *pool;
    struct tn_uconn *uc;
    bool pending;
    bool head;    /* a HEAD request: the response has no body */
    bool upgrade; /* asks for an upgrade: a 101 is its final answer, after which the connection is a tunnel
                     (written with tn_uconn_write, read through on_data until either side closes) */
};

struct tn_hpool {
    struct tn_host *host; /* reference */
    struct tn_wcluster *wc;
    struct tn_uconn *idle; /* idle connections, most recently used first */
    struct tn_ureq *pend_head, *pend_tail;
    unsigned n_conns, n_pending, n_connecting;
    unsigned refcnt; /* the cluster's pool table and each connection */
    bool retired;    /* the host left the set: connections close when done */
    bool h2;         /* the cluster speaks HTTP/2: h2conns, not idle */
    struct tn__h2conn *h2conns;
};

/* A pool for host h of wc, NULL when out of memory. */
struct tn_hpool *tn_hpool_new(struct tn_wcluster *wc, struct tn_host *h);
/* Drops the cluster's reference: idle connections close, busy ones finish
 * their request first. */
void tn_hpool_retire(struct tn_hpool *p);

/* Asks for a connection for r. Returns 0 with r->uc set (no callback),
 * 1 when r waits (on_ready or on_failure follows), or -1 on overflow
 * (circuit breakers; nothing follows). */
int tn_hpool_acquire(struct tn_hpool *p, struct tn_ureq *r);

/* Gives up a request: leaves the pending queue, or closes its connection
 * when an exchange is under way (a response whose head had end_stream set is
 * read to its end first and the connection kept). No callback follows. */
void tn_ureq_cancel(struct tn_ureq *r);

/* Sends the request's head as a header list: the pseudo-headers :method,
 * :scheme, :authority, :path first (in any order among themselves), then
 * the headers, without hop-by-hop ones; end_stream: no body follows. An
 * HTTP/1.1 connection serializes it (the caller adds content-length or
 * transfer-encoding, and frames the body itself); an HTTP/2 stream submits
 * it, and its body then goes by tn_uconn_write (plain slices) ended by
 * tn_uconn_request_done. The list is copied. 0 or a negative uv error. */
int tn_uconn_send_headers(struct tn_uconn *uc, const struct tn_header *h, size_t n, bool end_stream);
/* Sends a request head serialized as HTTP/1.1 (request line, header
 * lines, blank line), given as n pieces that join into it, as
 * tn_uconn_send_headers would the same request: the request line gives
 * :method and :path, the host line :authority, names go lower-case and
 * framing (transfer-encoding) is dropped; the body then goes unframed. For
 * owners that keep only the serialized head (mirror shadows, cache
 * refreshes) on an HTTP/2 stream; an HTTP/1.1 connection is refused
 * (write the bytes). Nothing is kept. 0 or a negative uv error (UV_EINVAL:
 * not HTTP/2, or not a head). */
int tn_uconn_send_h1_head(struct tn_uconn *uc, const uv_buf_t *parts, unsigned n, bool end_stream);
/* Whether the connection takes the request as headers only (HTTP/2):
 * serialized HTTP/1.1 bytes are refused there. */
bool tn_uconn_is_h2(const struct tn_uconn *uc);

/* Writes request bytes (see tn_outq_write); 0 or a negative uv error. On an
 * HTTP/2 stream, after tn_uconn_send_headers: body slices only (pre and
 * post must be empty), sent as DATA as flow control allows. */
int tn_uconn_write(struct tn_uconn *uc, const char *pre, size_t pre_len, struct tn_slice *s, unsigned n,
                   const char *post, size_t post_len);
bool tn_uconn_write_above(struct tn_uconn *uc);
/* Bytes written but not yet taken by the kernel (what the watermarks watch). */
size_t tn_uconn_write_queued(const struct tn_uconn *uc);
/* The whole request has been written (the connection may be reused after
 * the response). */
void tn_uconn_request_done(struct tn_uconn *uc);
/* The connection's local address (family 0 when unknown). */
const struct sockaddr_storage *tn_uconn_local(const struct tn_uconn *uc);
/* Stops or resumes reading the response (downstream backpressure). */
void tn_uconn_read_pause(struct tn_uconn *uc, bool pause);

#endif
