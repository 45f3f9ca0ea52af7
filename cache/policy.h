/* HTTP caching rules for a shared cache (RFC 9111), as pure functions over
 * headers: Cache-Control parsing, HTTP dates, whether a response may be
 * stored, its freshness lifetime and current age, what a request's own
 * directives allow, conditional requests and byte ranges. No I/O, no clock
 * of its own: callers pass times (seconds since the epoch). */
#ifndef TN_CACHE_POLICY_H
#define TN_CACHE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"
#include "dataplane/http/http.h"

#define TN_CC_ABSENT (-1) /* a delta-seconds directive that was not given */

/* Cache-Control (RFC 9111 5.2), request or response. Unknown directives are
 * ignored; a directive given twice keeps the most restrictive reading (the
 * smallest max-age; no-cache/no-store once seen stay set). Delta-seconds
 * are TN_CC_ABSENT when not given, clamped to 2^31 when larger (RFC 9111
 * 1.2.2); an invalid value makes max-age/s-maxage count as 0 (stale), and
 * max-stale without a value is INT64_MAX; the other delta-seconds directives
 * with an invalid value are ignored, and so are public and immutable given
 * an argument (each would loosen the rules). Field names (no-cache="x",
 * private="x") make no-cache/private apply to the whole response, as a
 * shared cache that does not strip fields must. */
struct tn_cc {
    int64_t max_age, s_maxage, max_stale, min_fresh, stale_while_revalidate, stale_if_error;
    bool no_store, no_cache, is_private, is_public, must_revalidate, proxy_revalidate, immutable, only_if_cached;
    bool present; /* any Cache-Control header was seen */
};

/* Parses every Cache-Control header among h[0..n) (several headers and
 * comma-separated lists combine). With pragma true (requests) and no
 * Cache-Control at all, "Pragma: no-cache" counts as no-cache. */
void tn_cc_parse(const struct tn_header *h, size_t n, bool pragma, struct tn_cc *out);

/* The next non-empty element of a comma-separated header list (RFC 9110
 * 5.6.1) from *pos, trimmed of spaces and tabs; false at the end. */
bool tn_list_next(const char *v, size_t len, size_t *pos, const char **item, size_t *n);

/* Targeted cache-control fields (RFC 9213): the response's policy from the
 * first of names[0..n_names) (lower case, in the config's order) that the
 * response carries with a valid value, into *out; false, with *out left
 * untouched, when none does (then Cache-Control and Expires count). A
 * targeted field is a Structured Field Dictionary (RFC 8941): a field that
 * does not parse as one (upper-case keys, junk, an empty value) is ignored
 * whole. Its members are Cache-Control's directives; parameters are
 * ignored, a Boolean false member counts as absent, and a member whose
 * value is not of the directive's type counts as an invalid argument does
 * in Cache-Control (max-age/s-maxage: 0, i.e. stale). */
bool tn_cc_parse_targeted(const struct tn_header *h, size_t n, const char *const *names, size_t n_names,
                          struct tn_cc *out);

/* The Age field (RFC 9111 5.1) as delta-seconds: the first member of the
 * first Age field (a list "7200, 0" counts as 7200), clamped to 2^31; 0
 * when there is none or that member is not a non-negative integer (the
 * field is then ignored, as 5.1 says). */
int64_t tn_cache_age_value(const struct tn_header *h, size_t n);

/* An HTTP-date (IMF-fixdate, RFC 850, asctime; RFC 9110 5.6.7) as seconds
 * since the epoch, or -1 when it does not parse. Dates before the epoch give
 * 0. An RFC 850 two-digit year more than 50 years ahead is read as the past
 * century's, which takes today's year from the clock (the one exception to
 * "no clock of its own"). Names are accepted in any case. */
int64_t tn_http_date_parse(const char *s, size_t len);
/* IMF-fixdate of t into out (29 bytes + NUL); returns 29. t is clamped to
 * [0, 9999-12-31T23:59:59Z], the dates the format can hold. */
size_t tn_http_date_format(int64_t t, char out[30]);

/* What the cache knows about a stored response, computed once when it is
 * stored (tn_cache_meta_init) and kept with the entry. */
struct tn_cache_meta {
    int status;
    int64_t date;          /* Date, or response_time when absent/invalid */
    int64_t expires;       /* Expires; -1 absent, 0 invalid (already expired) */
    int64_t last_modified; /* -1 absent */
    int64_t age_value;     /* Age header, 0 when absent */
    int64_t request_time, response_time; /* when the request went out / the response came */
    int64_t lifetime;      /* freshness lifetime in seconds (after config) */
    int64_t stale_while_revalidate, stale_if_error; /* from the response, TN_CC_ABSENT if not given */
    bool must_revalidate;  /* must-revalidate or proxy-revalidate: never served stale */
    bool no_cache;         /* stored, but every use revalidates */
    bool immutable;
    bool authorization_ok; /* public, s-maxage or must-revalidate: may answer requests with Authorization */
    char etag[128];        /* the ETag value as sent (quotes, W/ kept), "" when none or too long */
};

enum tn_storable {
    TN_STORE_OK = 0,
    TN_STORE_NO_METHOD,      /* the method is not cached (config request_methods; never unsafe ones) */
    TN_STORE_NO_STATUS,      /* the status is not among response_codes */
    TN_STORE_NO_STORE,       /* no-store in the request or the response */
    TN_STORE_PRIVATE,        /* private */
    TN_STORE_AUTHORIZATION,  /* the request had Authorization and the response does not allow it */
    TN_STORE_NO_FRESHNESS,   /* no explicit freshness and no default_ttl (or only_if_origin_cacheable) */
    TN_STORE_CONTENT_TYPE,   /* the media type is not among content_types */
    TN_STORE_VARY,           /* Vary: * or a header not allowed (allowed_vary / vary_headers) */
    TN_STORE_SET_COOKIE,     /* Set-Cookie without public: one client's cookie must not reach the next */
};

/* Whether a response may be stored (RFC 9111 3 with the config's rules), and
 * if so fills *meta (left untouched otherwise). req: the request's headers;
 * resp: the response's. The request's no-store counts unless
 * ignore_request_cache_control; with ignore_cache_control the response's
 * Cache-Control and Expires count for nothing (so Authorization and
 * Set-Cookie responses are not stored).
 * method is the request method (upper case). now_s is response_time;
 * request_time when the request was sent upstream. */
enum tn_storable tn_cache_storable(const struct tn_cache_config *cfg, const struct tn_cache_per_route *pr,
                                   const char *method, size_t method_len, const struct tn_header *req, size_t n_req,
                                   int status, const struct tn_header *resp, size_t n_resp, int64_t request_time,
                                   int64_t now_s, struct tn_cache_meta *meta);

/* The response's current age in seconds at now_s (RFC 9111 4.2.3). */
int64_t tn_cache_age(const struct tn_cache_meta *m, int64_t now_s);

enum tn_cache_use {
    TN_USE_FRESH = 0,      /* serve it */
    TN_USE_STALE_OK,       /* stale but the request's max-stale allows it: serve it */
    TN_USE_REVALIDATE,     /* must be validated upstream before use (stale, no-cache, client refresh) */
    TN_USE_STALE_WHILE_REVALIDATE, /* serve it now and refresh in the background */
    TN_USE_UNUSABLE,       /* do not use: stale beyond stale_ttl (age > lifetime + stale_ttl); drop it */
};

/* How a stored response may answer a request (RFC 9111 4.2, 5.2.1), given
 * the request's directives (ignored with cfg->ignore_request_cache_control;
 * client refreshes ignored per ignore_client_refresh[_immutable]) and
 * stale_ttl_ms from the config (or per-route). A request's max-age or
 * min-fresh that the entry does not meet gives REVALIDATE; req_cc may be
 * NULL. only-if-cached is the caller's (504 when this is not FRESH/STALE_OK). */
enum tn_cache_use tn_cache_usable(const struct tn_cache_config *cfg, const struct tn_cache_per_route *pr,
                                  const struct tn_cache_meta *m, const struct tn_cc *req_cc, int64_t now_s);

/* After an upstream failure (connect failure, 5xx, timeout): whether a
 * stale entry may be served instead (within stale_ttl, honouring the
 * response's and request's stale-if-error and must-revalidate). */
bool tn_cache_stale_if_error(const struct tn_cache_config *cfg, const struct tn_cache_per_route *pr,
                             const struct tn_cache_meta *m, const struct tn_cc *req_cc, int64_t now_s);

/* The client's conditional request against a stored response (RFC 9110
 * 13.1.2, 13.1.3, 13.2.2): true when the answer is 304 Not Modified.
 * If-None-Match (weak comparison, "*") takes precedence over
 * If-Modified-Since, which is ignored when invalid and is compared with
 * Last-Modified, or with Date when there is none (RFC 9111 4.3.2). The
 * caller applies it to GET and HEAD only. */
bool tn_cache_not_modified(const struct tn_cache_meta *m, const struct tn_header *req, size_t n_req);

/* Merges the header fields of a 304 (resp) into a stored response's
 * (RFC 9111 3.2, 4.3.4): each field the 304 carries replaces every stored
 * field of that name (Content-Type included), the others are kept. Fields
 * that are not stored are left out (Content-Length, Age, the cache's own
 * status headers, x-envoy-upstream-service-time). out needs room for
 * n_stored + n_resp fields; it points into stored and resp (nothing is
 * copied). Returns how many fields to store, out[0..ret); when the 304
 * carries an Age, out[ret] is that field and *n_meta is ret + 1, else
 * ret: pass out[0..*n_meta) to tn_cache_storable, so the refreshed entry's
 * age counts the 304's, and store out[0..ret). */
size_t tn_cache_merge_304(const struct tn_header *stored, size_t n_stored, const struct tn_header *resp, size_t n_resp,
                          struct tn_header *out, size_t *n_meta);

/* Whether a response header field is kept with a stored response: not
 * Age, Content-Length, the cache's status headers (X-Cache-Status,
 * X-Cache-Key, X-Cache-Hits, X-Served-By) or x-envoy-upstream-service-time. */
bool tn_cache_header_stored(const struct tn_header *h);

/* When an entry stored at now_ms with meta m stops being of any use (wall
 * ms): after its freshness and the stale window (stale_ttl, the
 * per-route one first); UINT64_MAX when the config keeps expired entries
 * until they are evicted (keep_stale, Envoy's). */
uint64_t tn_cache_expire_ms(const struct tn_cache_config *cfg, const struct tn_cache_per_route *pr,
                            const struct tn_cache_meta *m, uint64_t now_ms);

/* Whether a method is known to be safe (RFC 9110 9.2.1: GET, HEAD,
 * OPTIONS, TRACE); a non-error response to any other invalidates
 * (RFC 9111 4.4). */
bool tn_cache_method_safe(const char *m, size_t n);

/* The path (with query, without fragment) that a Location or
 * Content-Location value ref names, when it is on the same origin as the
 * request (scheme, host, port; a default port may be left out), into out
 * (cap bytes); returns its length, 0 when ref names another origin, does
 * not parse or does not fit. A relative reference is resolved against the
 * request's path (RFC 3986 5.2, without dot-segment removal: such a path
 * never equals a stored one). scheme may be NULL (http). */
size_t tn_cache_same_origin_path(const char *ref, size_t len, const char *scheme, const char *host, size_t host_len,
                                 const char *base, size_t base_len, char *out, size_t cap);

/* A Range request header against a body of `total` bytes (RFC 9110 14.2):
 * 0 with [*first, *last] for one satisfiable range (bytes=a-b, a-, -n;
 * last clamped to total-1), 1 when unsatisfiable (416), -1 when the header
 * should be ignored (not bytes, several ranges, malformed: a 200 with the
 * whole body). */
int tn_cache_range(const char *v, size_t len, uint64_t total, uint64_t *first, uint64_t *last);

/* The media type of a Content-Type value, lower case, without parameters
 * or spaces ("Text/HTML; charset=utf-8" -> "text/html") into out; returns
 * its length (0 when none fits in cap). */
size_t tn_cache_media_type(const char *v, size_t len, char *out, size_t cap);

#endif
