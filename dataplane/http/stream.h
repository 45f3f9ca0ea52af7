/* One HTTP request/response exchange as HTTP filters see it (codec-neutral).
 *
 * The connection manager owns the stream: it fills the request, runs the
 * listener's HTTP filters in order on the request and in reverse on the
 * response, applies the headers Envoy adds, writes the access log and frees
 * the stream when both directions are done. Filters answer through the
 * tn_stream_* calls below; the terminal filter (the router) produces the
 * response. */
#ifndef TN_STREAM_H
#define TN_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/http/http.h"
#include "dataplane/core/slice.h"
#include "dataplane/http/stream_info.h"

struct tn_stream;
struct tn_worker;
struct tn_hcm;
struct tn_route_table;

/* The request as filters see and may change it. Strings are not
 * NUL-terminated unless stated. */
struct tn_request {
    const char *method;
    size_t method_len;
    int method_id; /* llhttp's enum llhttp_method (HTTP_GET, HTTP_HEAD, ...) */
    const char *path; /* origin-form target, query included */
    size_t path_len;
    const char *host; /* :authority */
    size_t host_len;
    const char *scheme;
    struct tn_header *headers; /* without Host and hop-by-hop headers */
    size_t n_headers;
    bool chunked;            /* the body has no known length */
    int64_t content_length;  /* -1 when unknown */
    bool has_body;
    bool end_stream;         /* the whole request has been received */
    bool expect_continue;
    bool external;           /* came from an external client (Envoy's internal/external origin) */
    /* An upgrade asked for (the Upgrade header's first protocol, lower
     * case, "websocket"; NULL when none). Its Upgrade header is among the
     * headers; the terminal filter forwards it when the upgrade is enabled
     * (or removes it and sends a plain request). After a 101 the request
     * body is the client's bytes of the new protocol, until it closes. */
    const char *upgrade;
    size_t upgrade_len;
};

/* Headers of a response a filter passes on. */
struct tn_response {
    int status;
    struct tn_header *headers;
    size_t n_headers;
    int64_t content_length; /* -1 when unknown (chunked or close-delimited) */
    bool end_stream;        /* no body follows */
};

/* --- what filters call ------------------------------------------------------ */

struct tn_request *tn_stream_request(struct tn_stream *s);
struct tn_stream_info *tn_stream_info(struct tn_stream *s);
const struct tn_hcm *tn_stream_hcm(struct tn_stream *s);
struct tn_route_table *tn_stream_routes(struct tn_stream *s);
struct tn_worker *tn_stream_worker(struct tn_stream *s);
/* "[C12][S3]" for log lines */
const char *tn_stream_tag(struct tn_stream *s);

/* n zeroed bytes that live as long as the stream; NULL when out of memory. */
void *tn_stream_alloc(struct tn_stream *s, size_t n);

/* Copies n bytes into memory that lives as long as the stream; NULL when
 * out of memory. */
char *tn_stream_strdup(struct tn_stream *s, const char *p, size_t n);

/* Sends a response made here (Envoy's local reply): status, text body,
 * response flags for the log and a details string. Ends the stream's
 * response; the filters before the caller still see it. */
void tn_stream_local_reply(struct tn_stream *s, int status, const char *body, uint32_t flags, const char *details);

/* Sends the response head (from the terminal filter, passing back through
 * the filters before it). */
void tn_stream_encode_headers(struct tn_stream *s, struct tn_response *r);
/* Sends one body slice (reference taken over); end_stream ends the response.
 * A slice of length 0 with end_stream only ends it. */
void tn_stream_encode_data(struct tn_stream *s, struct tn_slice *data, bool end_stream);
/* Filters that answer or transform responses themselves (the cache): a
 * filter's index in the chain (from its ctx), and the head / body sent from
 * that point, passing only the filters before it. */
unsigned tn_stream_filter_index(struct tn_stream *s, const void *ctx);
void tn_stream_encode_headers_from(struct tn_stream *s, unsigned idx, struct tn_response *r);
void tn_stream_encode_data_from(struct tn_stream *s, unsigned idx, struct tn_slice *data, bool end_stream);
/* A filter that stopped on the request headers lets them go on to the
 * filters after it. */
void tn_stream_continue_decoding(struct tn_stream *s, unsigned idx);

/* The response was cut short (upstream died mid-body): the client's
 * connection is closed without completing the response. */
void tn_stream_reset(struct tn_stream *s, uint32_t flags);

/* Whether the client connection's write side is above its high watermark
 * (a filter producing body should pause until on_downstream_drained). */
bool tn_stream_downstream_above(struct tn_stream *s);
/* Stops or resumes reading the request body from the client (backpressure
 * from upstream). */
void tn_stream_request_pause(struct tn_stream *s, bool pause);
/* Replaces the stream idle timeout for this stream (a route's
 * idle_timeout); 0 disables it. */
void tn_stream_set_idle_timeout(struct tn_stream *s, uint64_t ms);

/* Sends "100 Continue" to a client that asked for it (once). */
void tn_stream_send_continue(struct tn_stream *s);

/* Passes an interim (1xx) response from upstream to the client before the
 * final one (RFC 9110 15.2): 100 only to a client that asked for it (once),
 * 101 never (the final answer to an upgrade), nothing to an HTTP/1.0
 * client. The headers are not kept. */
void tn_stream_encode_interim(struct tn_stream *s, const struct tn_response *r);

#endif
