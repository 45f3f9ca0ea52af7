/* HTTP/1.1 pieces both directions share: collecting a message head from
 * llhttp callbacks (which may split any token across reads) into one
 * buffer reused for every message, hop-by-hop rules, and the checks tern
 * makes on top of the parser (authority syntax, transfer codings). */
#ifndef TN_H1_H
#define TN_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/http/http.h"

struct tn_h1_head {
    char *buf; /* url/status text and header bytes, names lower-cased */
    size_t len, cap;
    size_t limit; /* bytes allowed; over it tn_h1_head_* return TN_H1_TOO_LARGE */
    uint32_t max_headers; /* header lines allowed (0: any); over it TN_H1_TOO_MANY */
    struct tn_header *h; /* built by tn_h1_head_finish */
    size_t hcap;
    struct {
        uint32_t no, nl, vo, vl;
    } *e;
    size_t n, ecap;
    int state; /* 0: nothing yet, 1: in a name, 2: in a value */
    uint32_t url_off, url_len;
};

/* What the tn_h1_head_* appenders return besides 0. */
enum {
    TN_H1_TOO_LARGE = -1, /* over limit, or out of memory */
    TN_H1_TOO_MANY = -2,  /* over max_headers */
};

void tn_h1_head_init(struct tn_h1_head *hd, size_t limit);
void tn_h1_head_dispose(struct tn_h1_head *hd);
/* Forgets the previous message (keeps the memory). */
void tn_h1_head_reset(struct tn_h1_head *hd);
/* Appends parser data; 0, TN_H1_TOO_LARGE or TN_H1_TOO_MANY. */
int tn_h1_head_url(struct tn_h1_head *hd, const char *p, size_t n);
int tn_h1_head_field(struct tn_h1_head *hd, const char *p, size_t n);
int tn_h1_head_value(struct tn_h1_head *hd, const char *p, size_t n);
/* Fills hd->h (pointers into hd->buf, valid until the next reset); 0 or -1. */
int tn_h1_head_finish(struct tn_h1_head *hd);
static inline const char *tn_h1_head_urlp(const struct tn_h1_head *hd)
{
    return hd->buf + hd->url_off;
}

/* Whether a header (lower-case name) is hop-by-hop and never forwarded:
 * connection, keep-alive, proxy-connection, transfer-encoding, upgrade, te,
 * proxy-authenticate... (RFC 9110 7.6.1), or named in the Connection header
 * value `conn` (may be NULL). content-length and host are handled by the
 * caller. */
bool tn_h1_hop_by_hop(const struct tn_header *h, const struct tn_header *conn);

/* The reason phrase for a status code ("OK"), "Unknown" when none. */
const char *tn_h1_reason(int status);

/* Writes "name: value\r\n" into out (advancing *pos) if it fits; returns 0
 * or -1 when out of room. */
int tn_h1_put_header(char *out, size_t cap, size_t *pos, const char *name, size_t nl, const char *value, size_t vl);

/* Formats v in decimal (tn_h1_u64) or hex followed by CRLF (a chunk size
 * line, tn_h1_chunk_size) into out; returns the length. out must hold 24
 * bytes. Hand-rolled because printf is a visible cost per request. */
size_t tn_h1_u64(char *out, uint64_t v);
size_t tn_h1_chunk_size(char *out, uint64_t v);

/* Case-insensitive token search in a comma-separated header value. */
bool tn_h1_has_token(const char *v, size_t vl, const char *token);

/* Whether v is exactly the transfer coding list "chunked" (any case, OWS
 * around it): the only one tern forwards (RFC 9112 6.1; others are 501). */
bool tn_h1_te_is_chunked(const char *v, size_t vl);

/* Whether v is an authority as RFC 3986 3.2 allows in Host or an
 * absolute-form target, without userinfo: reg-name, IPv4 or [IPv6], then
 * an optional :port of digits. Empty is not. */
bool tn_h1_authority_ok(const char *v, size_t vl);

/* An absolute-form target ("http://authority/path?query") split: the
 * authority, and the path from its first '/' or '?' (empty when neither
 * follows). -1 when the target is not "http://" or "https://" followed by
 * a valid authority (userinfo included: tern refuses it). */
int tn_h1_split_absolute(const char *u, size_t n, const char **auth, size_t *auth_len, const char **path,
                         size_t *path_len);

#endif
