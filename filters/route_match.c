#include "filters/route_match.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Joined header values and decoded query values land here; only a value
 * larger than this costs a malloc. */
#define SCRATCH_SIZE 8192
static _Thread_local char scratch_buf[SCRATCH_SIZE];

/* n bytes of scratch: the thread's buffer, else a malloc left in *heap for
 * the caller to free. NULL only if that malloc fails. */
static char *scratch(size_t n, char **heap)
{
    *heap = NULL;
    if (n <= SCRATCH_SIZE)
        return scratch_buf;
    return *heap = malloc(n);
}

/* Length of the path part of a request target: up to '?' or '#'. */
static size_t path_part(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] == '?' || p[i] == '#')
            return i;
    return len;
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

static bool bytes_eq(const char *a, const char *b, size_t n, bool icase)
{
    if (!icase)
        return memcmp(a, b, n) == 0;
    for (size_t i = 0; i < n; i++)
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    return true;
}

/* ---- path, headers, query ----------------------------------------------- */

static bool path_matches(const struct tn_route *r, const char *p, size_t len)
{
    bool icase = !r->case_sensitive;
    switch (r->path_kind) {
    case TN_PATH_PREFIX:
        return len >= r->path_len && bytes_eq(p, r->path, r->path_len, icase);
    case TN_PATH_EXACT:
        return len == r->path_len && bytes_eq(p, r->path, len, icase);
    case TN_PATH_SEPARATED_PREFIX:
        return len >= r->path_len && (len == r->path_len || p[r->path_len] == '/') &&
               bytes_eq(p, r->path, r->path_len, icase);
    case TN_PATH_REGEX: /* case_sensitive does not apply, as in Envoy */
        return tn_regex_match(r->path_re, p, len);
    }
    return false;
}

/* The pseudo header `name` as the view holds it; false if name is not one. */
static bool pseudo_header(const struct tn_request_view *rq, const char *name, const char **v, size_t *len)
{
    if (strcmp(name, ":path") == 0)
        *v = rq->path, *len = rq->path_len;
    else if (strcmp(name, ":method") == 0)
        *v = rq->method, *len = rq->method_len;
    else if (strcmp(name, ":authority") == 0)
        *v = rq->host, *len = rq->host_len;
    else if (strcmp(name, ":scheme") == 0)
        *v = rq->scheme, *len = rq->scheme ? strlen(rq->scheme) : 0;
    else
        return false;
    return true;
}

/* All values of header `name` joined with ",", as Envoy's
 * getAllOfHeaderAsString. False when the header is absent. A joined value
 * may sit in *heap, which the caller frees. */
static bool header_value(const struct tn_request_view *rq, const char *name, const char **v, size_t *len, char **heap)
{
    *heap = NULL;
    if (name[0] == ':') {
        if (!pseudo_header(rq, name, v, len))
            return false;
        return *v != NULL;
    }
    size_t nlen = strlen(name), count = 0, total = 0;
    const struct tn_header *first = NULL;
    for (size_t i = 0; i < rq->n_headers; i++) {
        const struct tn_header *h = &rq->headers[i];
        if (h->name_len != nlen || memcmp(h->name, name, nlen) != 0)
            continue;
        first = first ? first : h;
        total += h->value_len + (count++ ? 1 : 0);
    }
    if (count <= 1) {
        *v = first ? first->value : NULL, *len = first ? first->value_len : 0;
        return first != NULL;
    }
    char *buf = scratch(total, heap);
    if (buf == NULL)
        return false;
    size_t at = 0;
    for (const struct tn_header *h = first; h < rq->headers + rq->n_headers; h++) {
        if (h->name_len != nlen || memcmp(h->name, name, nlen) != 0)
            continue;
        if (at > 0)
            buf[at++] = ',';
        memcpy(buf + at, h->value, h->value_len);
        at += h->value_len;
    }
    *v = buf, *len = at;
    return true;
}

/* Envoy's range_match: the whole value is a base-10 int64 with an optional
 * sign, start <= value < end. */
static bool in_range(const struct tn_header_matcher *h, const char *s, size_t len)
{
    size_t i = 0;
    bool neg = false;
    if (len > 0 && (s[0] == '+' || s[0] == '-'))
        neg = s[0] == '-', i = 1;
    if (i == len)
        return false;
    uint64_t mag = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (mag > (limit - d) / 10)
            return false;
        mag = mag * 10 + d;
    }
    int64_t v = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    return v >= h->range_start && v < h->range_end;
}

bool tn_header_matcher_match(const struct tn_header_matcher *h, const struct tn_request_view *rq)
{
    const char *v;
    size_t len;
    char *heap;
    bool found = header_value(rq, h->name, &v, &len, &heap);

    if (h->m.kind == TN_MATCH_PRESENT) {
        free(heap);
        return (found == h->present) != h->invert;
    }
    if (!found) {
        if (!h->treat_missing_as_empty) /* absent: no match, inverted or not */
            return false;
        v = "", len = 0;
    }
    bool ok = h->m.kind == TN_MATCH_RANGE ? in_range(h, v, len) : tn_string_matcher_match(&h->m, v, len);
    free(heap);
    return ok != h->invert;
}

/* The first value of key `name` in query string q (after '?'): '&' splits
 * pairs, the first '=' splits key from value, a bare key has "" for value. */
static bool query_value(const char *q, size_t qlen, const char *name, const char **v, size_t *vlen)
{
    size_t nlen = strlen(name);
    while (qlen > 0) {
        const char *amp = memchr(q, '&', qlen);
        size_t seg = amp ? (size_t)(amp - q) : qlen;
        const char *eq = memchr(q, '=', seg);
        size_t klen = eq ? (size_t)(eq - q) : seg;
        if (klen == nlen && memcmp(q, name, nlen) == 0) {
            *v = eq ? eq + 1 : q + seg;
            *vlen = eq ? seg - klen - 1 : 0;
            return true;
        }
        q += seg + (amp ? 1 : 0);
        qlen -= seg + (amp ? 1 : 0);
    }
    return false;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = ascii_lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s into out (at least len bytes); a '%' not followed by two
 * hex digits stays as it is. Returns the decoded length. */
static size_t percent_decode(const char *s, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < len && (hi = hex_digit(s[i + 1])) >= 0 && (lo = hex_digit(s[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    return o;
}

static bool query_matches(const struct tn_query_matcher *m, const char *q, size_t qlen)
{
    const char *v;
    size_t vlen;
    if (!query_value(q, qlen, m->name, &v, &vlen))
        return false;
    if (m->m.kind == TN_MATCH_PRESENT)
        return true;
    if (memchr(v, '%', vlen) == NULL)
        return tn_string_matcher_match(&m->m, v, vlen);
    char *heap, *buf = scratch(vlen, &heap);
    if (buf == NULL)
        return false;
    bool ok = tn_string_matcher_match(&m->m, buf, percent_decode(v, vlen, buf));
    free(heap);
    return ok;
}

static bool route_matches(const struct tn_route *r, const struct tn_request_view *rq, size_t plen)
{
    if (!path_matches(r, rq->path, plen)) /* checked first: no side effects, and it is the likely reject */
        return false;
    if (r->fraction_den != 0 && rq->random % r->fraction_den >= r->fraction_num)
        return false;
    for (size_t i = 0; i < r->n_headers; i++)
        if (!tn_header_matcher_match(&r->headers[i], rq))
            return false;
    if (r->n_queries == 0)
        return true;
    const char *q = rq->path + plen;
    size_t qlen = 0;
    if (plen < rq->path_len && *q == '?') {
        q++;
        qlen = rq->path_len - plen - 1;
        const char *hash = memchr(q, '#', qlen);
        qlen = hash ? (size_t)(hash - q) : qlen;
    }
    for (size_t i = 0; i < r->n_queries; i++)
        if (!query_matches(&r->queries[i], q, qlen))
            return false;
    return true;
}

/* The first 8 bytes of the path, zero padded, as-is and ASCII lower-cased. */
static void request_heads(const char *p, size_t plen, uint64_t *raw, uint64_t *lower)
{
    char b[8] = {0}, l[8];
    memcpy(b, p, plen < 8 ? plen : 8);
    for (size_t i = 0; i < 8; i++)
        l[i] = ascii_lower(b[i]);
    memcpy(raw, b, 8);
    memcpy(lower, l, 8);
}

/* Whether key k can possibly match: cheap checks on packed data only. */
static bool key_may_match(const struct tn_route_key *k, size_t plen, uint64_t raw, uint64_t lower)
{
    if (k->path_kind == TN_PATH_EXACT ? plen != k->path_len : plen < k->path_len)
        return false;
    return ((k->icase ? lower : raw) & k->mask) == k->head;
}

const struct tn_route *tn_route_match(const struct tn_vhost *vh, const struct tn_request_view *rq)
{
    if (vh == NULL || rq->path == NULL)
        return NULL;
    size_t plen = path_part(rq->path, rq->path_len);
    uint64_t raw, lower;
    request_heads(rq->path, plen, &raw, &lower);
    for (size_t i = 0; i < vh->n_routes; i++) {
        const struct tn_route_key *k = &vh->keys[i];
        if (key_may_match(k, plen, raw, lower) && route_matches(k->route, rq, plen))
            return k->route;
    }
    return NULL;
}

const char *tn_route_weighted_pick(const struct tn_route *r, uint64_t random)
{
    if (r->n_weighted == 0 || r->total_weight == 0)
        return NULL;
    uint64_t pick = random % r->total_weight, end = 0;
    for (size_t i = 0; i < r->n_weighted; i++) {
        end += r->weighted[i].weight;
        if (pick < end)
            return r->weighted[i].name;
    }
    return r->weighted[r->n_weighted - 1].name; /* unreachable: weights sum to total */
}

/* ---- building targets ---------------------------------------------------- */

/* Output that keeps counting past cap, so the caller learns of the overflow
 * once, at the end. */
struct out {
    char *p;
    size_t len, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len + n < o->cap)
        memcpy(o->p + o->len, s, n);
    o->len += n;
}

static size_t finish(struct out *o)
{
    if (o->len >= o->cap)
        return TN_ROUTE_NOSPACE;
    o->p[o->len] = '\0';
    return o->len;
}

/* Appends subst with \0..\9 replaced by the groups of the last match. */
static void substitute(struct out *o, const char *subst, const char *s, const PCRE2_SIZE *ov, int pairs)
{
    for (const char *c = subst; *c; c++) {
        if (c[0] != '\\' || c[1] == '\0') {
            put(o, c, 1);
        } else if (c[1] >= '0' && c[1] <= '9') {
            int g = c[1] - '0';
            if (g < pairs && ov[2 * g] != PCRE2_UNSET)
                put(o, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
            c++;
        } else { /* "\\" is a backslash; RE2 rejects other escapes, keep them */
            put(o, c + 1, 1);
            c++;
        }
    }
}

static size_t utf8_char_len(const char *s, size_t left)
{
    size_t n = 1;
    while (n < left && ((unsigned char)s[n] & 0xC0) == 0x80)
        n++;
    return n;
}

/* RE2::GlobalReplace over s: every non-overlapping match, and an empty match
 * right where the previous one ended does not count. */
static void replace_all(struct out *o, const pcre2_code *re, const char *subst, const char *s, size_t len)
{
    pcre2_match_data *md = tn__regex_match_data();
    size_t pos = 0, last_end = (size_t)-1;
    while (md != NULL && pos <= len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, 0, md, NULL);
        if (rc < 0)
            break;
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        put(o, s + pos, ov[0] - pos);
        if (ov[0] == ov[1] && ov[0] == last_end) {
            if (ov[0] >= len)
                break;
            size_t n = utf8_char_len(s + ov[0], len - ov[0]);
            put(o, s + ov[0], n);
            pos = ov[0] + n;
            continue;
        }
        substitute(o, subst, s, ov, rc == 0 ? TN_REGEX_MAX_PAIRS : rc);
        pos = last_end = ov[1];
    }
    if (pos < len)
        put(o, s + pos, len - pos);
}

/* The part of the path without query that the route matched, for
 * prefix_rewrite: the configured prefix, or the whole path. */
static size_t matched_len(const struct tn_route *r, size_t plen)
{
    if (r->path_kind == TN_PATH_PREFIX || r->path_kind == TN_PATH_SEPARATED_PREFIX)
        return r->path_len < plen ? r->path_len : plen;
    return plen;
}

/* Writes the rewritten path (no query) for prefix or r->regex_rewrite. */
static void rewrite_path_part(struct out *o, const struct tn_route *r, const char *prefix, const char *path,
                              size_t plen)
{
    if (prefix != NULL) {
        size_t m = matched_len(r, plen);
        put(o, prefix, strlen(prefix));
        put(o, path + m, plen - m);
    } else {
        replace_all(o, r->regex_rewrite, r->regex_substitution, path, plen);
    }
}

size_t tn_route_rewrite_path(const struct tn_route *r, const struct tn_request_view *rq, char *out, size_t cap)
{
    if (r->kind == TN_ROUTE_REDIRECT || r->kind == TN_ROUTE_DIRECT)
        return 0;
    if (r->prefix_rewrite == NULL && r->regex_rewrite == NULL)
        return 0;
    struct out o = {.p = out, .cap = cap};
    size_t plen = path_part(rq->path, rq->path_len);
    rewrite_path_part(&o, r, r->prefix_rewrite, rq->path, plen);
    put(&o, rq->path + plen, rq->path_len - plen);
    return finish(&o);
}

/* Envoy's processRequestHost: the request's host, its port dropped when a
 * port_redirect replaces it, or when the scheme changes and the port was the
 * old scheme's default. */
static void put_request_host(struct out *o, const struct tn_request_view *rq, const char *scheme, bool new_port)
{
    const char *h = rq->host;
    size_t len = rq->host_len, colon = len;
    for (size_t i = len; i > 0; i--)
        if (h[i - 1] == ':' || h[i - 1] == ']') {
            colon = h[i - 1] == ':' ? i - 1 : len;
            break;
        }
    if (colon < len) {
        const char *old = rq->scheme ? rq->scheme : "";
        const char *port = h + colon;
        size_t plen = len - colon;
        bool drop = new_port;
        if (strcmp(scheme, old) != 0)
            drop |= (strcmp(old, "https") == 0 && plen == 4 && memcmp(port, ":443", 4) == 0) ||
                    (strcmp(old, "http") == 0 && plen == 3 && memcmp(port, ":80", 3) == 0);
        if (drop)
            len = colon;
    }
    put(o, h, len);
}

/* The path and query of a redirect's Location. */
static void put_redirect_path(struct out *o, const struct tn_route *r, const struct tn_request_view *rq)
{
    size_t plen = path_part(rq->path, rq->path_len), start = o->len;
    const char *query = rq->path + plen;
    size_t qlen = rq->path_len - plen;
    bool own_query = false;

    if (r->redirect_path != NULL && *r->redirect_path) {
        own_query = strchr(r->redirect_path, '?') != NULL;
        put(o, r->redirect_path, strlen(r->redirect_path));
    } else if (r->redirect_prefix != NULL || r->regex_rewrite != NULL) {
        rewrite_path_part(o, r, r->redirect_prefix, rq->path, plen);
    } else {
        put(o, rq->path, plen);
    }
    if (o->len < o->cap && (o->len == start || o->p[start] != '/')) { /* Envoy adds a missing leading '/' */
        if (o->len + 1 < o->cap) {
            memmove(o->p + start + 1, o->p + start, o->len - start);
            o->p[start] = '/';
        }
        o->len++;
    }
    if (!own_query && !r->strip_query)
        put(o, query, qlen);
}

size_t tn_route_redirect_location(const struct tn_route *r, const struct tn_request_view *rq, char *out, size_t cap)
{
    if (r->kind != TN_ROUTE_REDIRECT)
        return 0;
    struct out o = {.p = out, .cap = cap};
    const char *scheme = r->redirect_scheme ? r->redirect_scheme : rq->scheme ? rq->scheme : "http";
    char port[8] = "";
    if (r->redirect_port != 0)
        snprintf(port, sizeof(port), ":%u", (unsigned)r->redirect_port);

    put(&o, scheme, strlen(scheme));
    put(&o, "://", 3);
    if (r->redirect_host != NULL)
        put(&o, r->redirect_host, strlen(r->redirect_host));
    else if (rq->host != NULL)
        put_request_host(&o, rq, scheme, port[0] != '\0');
    put(&o, port, strlen(port));
    put_redirect_path(&o, r, rq);
    return finish(&o);
}
