/* HTTP caching rules for a shared cache: RFC 9111 (storing, freshness, age,
 * Cache-Control) and RFC 9110 (dates, conditional requests, ranges). Every
 * parser here reads bytes a client or an origin chose, so each one is total:
 * any input gives an answer, never a read past `len`. */
#include <string.h>
#include <time.h>

#include "cache/policy.h"

#define DELTA_MAX 2147483648LL /* 2^31: larger delta-seconds are clamped (RFC 9111 1.2.2) */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Whether s[0..n) equals the lower-case word w, ignoring case. */
static bool ci_eq(const char *s, size_t n, const char *w)
{
    size_t wn = strlen(w);
    if (n != wn)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != w[i])
            return false;
    return true;
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_ows(**s))
        (*s)++, (*n)--;
    while (*n > 0 && is_ows((*s)[*n - 1]))
        (*n)--;
}

bool tn_list_next(const char *v, size_t len, size_t *pos, const char **item, size_t *n)
{
    while (*pos < len) {
        size_t start = *pos;
        while (*pos < len && v[*pos] != ',')
            (*pos)++;
        *item = v + start;
        *n = *pos - start;
        (*pos)++;
        trim(item, n);
        if (*n > 0)
            return true;
    }
    return false;
}

/* delta-seconds (1*DIGIT) into *out, clamped to 2^31; -1 when not one. */
static int parse_delta(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        if (v < DELTA_MAX)
            v = v * 10 + (s[i] - '0');
    }
    *out = v < DELTA_MAX ? v : DELTA_MAX;
    return 0;
}

/* --- Cache-Control ---------------------------------------------------------- */

/* One directive as read from the list: its name, its argument (the inside of
 * a quoted string, escapes left in), and whether anything was malformed. */
struct directive {
    const char *name, *arg;
    size_t name_len, arg_len;
    bool has_arg, bad;
};

/* Skips past the next comma that is not inside a quoted string. */
static size_t skip_element(const char *s, size_t n, size_t i)
{
    bool q = false;
    for (; i < n; i++) {
        if (q && s[i] == '\\')
            i++;
        else if (s[i] == '"')
            q = !q;
        else if (!q && s[i] == ',')
            return i + 1;
    }
    return n;
}

/* Reads the directive starting at s[i] (after separators) into *d; returns
 * where the next one may start. */
static size_t next_directive(const char *s, size_t n, size_t i, struct directive *d)
{
    memset(d, 0, sizeof(*d));
    d->name = s + i;
    while (i < n && s[i] != ',' && s[i] != '=' && !is_ows(s[i]))
        i++;
    d->name_len = (size_t)(s + i - d->name);
    while (i < n && is_ows(s[i]))
        i++;
    if (i < n && s[i] == '=') {
        d->has_arg = true;
        for (i++; i < n && is_ows(s[i]);)
            i++;
        if (i < n && s[i] == '"') {
            d->arg = s + ++i;
            while (i < n && s[i] != '"')
                i += s[i] == '\\' ? 2 : 1;
            if (i >= n) {
                d->bad = true; /* unterminated */
                return n;
            }
            d->arg_len = (size_t)(s + i - d->arg);
            i++;
        } else {
            d->arg = s + i;
            while (i < n && s[i] != ',' && !is_ows(s[i]))
                i++;
            d->arg_len = (size_t)(s + i - d->arg);
        }
        while (i < n && is_ows(s[i]))
            i++;
    }
    if (i < n && s[i] != ',') {
        d->bad = true; /* junk after the directive */
        return skip_element(s, n, i);
    }
    return i < n ? i + 1 : n;
}

/* The argument as delta-seconds, or -1 when absent or malformed. */
static int directive_delta(const struct directive *d, int64_t *v)
{
    if (!d->has_arg || d->bad)
        return -1;
    return parse_delta(d->arg, d->arg_len, v);
}

static void keep_min(int64_t *slot, int64_t v)
{
    if (*slot == TN_CC_ABSENT || v < *slot)
        *slot = v;
}

/* Applies one directive, keeping the most restrictive reading of repeats. */
static void apply_directive(struct tn_cc *cc, const struct directive *d)
{
    const char *nm = d->name;
    size_t nl = d->name_len;
    int64_t v = 0;
    bool ok = directive_delta(d, &v) == 0;
    bool bare = !d->has_arg && !d->bad;

    if (ci_eq(nm, nl, "max-age"))
        keep_min(&cc->max_age, ok ? v : 0);
    else if (ci_eq(nm, nl, "s-maxage"))
        keep_min(&cc->s_maxage, ok ? v : 0);
    else if (ci_eq(nm, nl, "max-stale")) {
        if (ok || bare)
            keep_min(&cc->max_stale, ok ? v : INT64_MAX);
    } else if (ci_eq(nm, nl, "min-fresh")) {
        if (ok && v > cc->min_fresh)
            cc->min_fresh = v;
    } else if (ci_eq(nm, nl, "stale-while-revalidate")) {
        if (ok)
            keep_min(&cc->stale_while_revalidate, v);
    } else if (ci_eq(nm, nl, "stale-if-error")) {
        if (ok)
            keep_min(&cc->stale_if_error, v);
    } else if (ci_eq(nm, nl, "no-store"))
        cc->no_store = true;
    else if (ci_eq(nm, nl, "no-cache"))
        cc->no_cache = true;
    else if (ci_eq(nm, nl, "private"))
        cc->is_private = true;
    else if (ci_eq(nm, nl, "must-revalidate"))
        cc->must_revalidate = true;
    else if (ci_eq(nm, nl, "proxy-revalidate"))
        cc->proxy_revalidate = true;
    else if (ci_eq(nm, nl, "only-if-cached"))
        cc->only_if_cached = true;
    /* The two that loosen the rules count only when well formed. */
    else if (ci_eq(nm, nl, "public"))
        cc->is_public |= bare;
    else if (ci_eq(nm, nl, "immutable"))
        cc->immutable |= bare;
}

static void cc_parse_value(const char *s, size_t n, struct tn_cc *cc)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] == ',' || is_ows(s[i])) {
            i++;
            continue;
        }
        struct directive d;
        i = next_directive(s, n, i, &d);
        apply_directive(cc, &d);
    }
}

/* Whether a Pragma value lists no-cache. */
static bool pragma_no_cache(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] == ',' || is_ows(s[i])) {
            i++;
            continue;
        }
        struct directive d;
        i = next_directive(s, n, i, &d);
        if (ci_eq(d.name, d.name_len, "no-cache"))
            return true;
    }
    return false;
}

void tn_cc_parse(const struct tn_header *h, size_t n, bool pragma, struct tn_cc *out)
{
    memset(out, 0, sizeof(*out));
    out->max_age = out->s_maxage = out->max_stale = out->min_fresh = TN_CC_ABSENT;
    out->stale_while_revalidate = out->stale_if_error = TN_CC_ABSENT;
    for (size_t i = 0; i < n; i++)
        if (h[i].name_len == 13 && memcmp(h[i].name, "cache-control", 13) == 0) {
            out->present = true;
            cc_parse_value(h[i].value, h[i].value_len, out);
        }
    if (pragma && !out->present)
        for (size_t i = 0; i < n; i++)
            if (h[i].name_len == 6 && memcmp(h[i].name, "pragma", 6) == 0 &&
                pragma_no_cache(h[i].value, h[i].value_len))
                out->no_cache = true;
}

/* --- HTTP dates ------------------------------------------------------------- */

static const char MONTHS[12][4] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const DAYS[7] = {"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"};
#define DATE_MAX 253402300799LL /* 9999-12-31T23:59:59Z, the last IMF-fixdate */

struct cursor {
    const char *p, *end;
};

static bool take(struct cursor *c, char ch)
{
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* Exactly n digits. */
static bool take_digits(struct cursor *c, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (c->p >= c->end || !is_digit(*c->p))
            return false;
        *v = *v * 10 + (*c->p++ - '0');
    }
    return true;
}

/* A day name, short ("Sun") or long ("Sunday"), in any case. */
static bool take_day(struct cursor *c)
{
    const char *s = c->p;
    while (c->p < c->end && lower(*c->p) >= 'a' && lower(*c->p) <= 'z')
        c->p++;
    size_t n = (size_t)(c->p - s);
    for (int d = 0; d < 7; d++)
        if (ci_eq(s, n, DAYS[d]) ||
            (n == 3 && lower(s[0]) == DAYS[d][0] && lower(s[1]) == DAYS[d][1] && lower(s[2]) == DAYS[d][2]))
            return true;
    return false;
}

static bool take_month(struct cursor *c, int *mon)
{
    if (c->end - c->p < 3)
        return false;
    for (int m = 0; m < 12; m++)
        if (ci_eq(c->p, 3, MONTHS[m])) {
            *mon = m;
            c->p += 3;
            return true;
        }
    return false;
}

static bool take_time(struct cursor *c, struct tm *tm)
{
    return take_digits(c, 2, &tm->tm_hour) && take(c, ':') && take_digits(c, 2, &tm->tm_min) && take(c, ':') &&
           take_digits(c, 2, &tm->tm_sec) && tm->tm_hour <= 23 && tm->tm_min <= 59 && tm->tm_sec <= 60;
}

static bool take_gmt(struct cursor *c)
{
    if (c->end - c->p < 3 || !ci_eq(c->p, 3, "gmt"))
        return false;
    c->p += 3;
    return true;
}

/* RFC 9110 5.6.7: a two-digit year more than 50 years in the future is the
 * most recent past year with those digits. That needs today's year, the one
 * reading of the clock in this file. */
static int full_year(int yy)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int cur = tm.tm_year + 1900;
    int y = cur - cur % 100 + yy;
    if (y > cur + 50)
        y -= 100;
    else if (y <= cur - 50)
        y += 100;
    return y;
}

static int days_in_month(int year, int mon)
{
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return mon == 1 && leap ? 29 : d[mon];
}

/* After the day name: IMF-fixdate (", 06 Nov 1994 08:49:37 GMT"), RFC 850
 * (", 06-Nov-94 08:49:37 GMT") or asctime (" Nov  6 08:49:37 1994"). */
static bool take_date_body(struct cursor *c, struct tm *tm, int *year)
{
    if (take(c, ',')) {
        if (!take(c, ' ') || !take_digits(c, 2, &tm->tm_mday))
            return false;
        if (take(c, ' ')) {
            if (!take_month(c, &tm->tm_mon) || !take(c, ' ') || !take_digits(c, 4, year))
                return false;
        } else {
            int yy;
            if (!take(c, '-') || !take_month(c, &tm->tm_mon) || !take(c, '-') || !take_digits(c, 2, &yy))
                return false;
            *year = full_year(yy);
        }
        return take(c, ' ') && take_time(c, tm) && take(c, ' ') && take_gmt(c);
    }
    if (!take(c, ' ') || !take_month(c, &tm->tm_mon) || !take(c, ' '))
        return false;
    if (take(c, ' ')) {
        if (!take_digits(c, 1, &tm->tm_mday))
            return false;
    } else if (!take_digits(c, 2, &tm->tm_mday))
        return false;
    return take(c, ' ') && take_time(c, tm) && take(c, ' ') && take_digits(c, 4, year);
}

int64_t tn_http_date_parse(const char *s, size_t len)
{
    struct tm tm = {0};
    int year = 0;
    trim(&s, &len);
    struct cursor c = {s, s + len};
    if (!take_day(&c) || !take_date_body(&c, &tm, &year) || c.p != c.end)
        return -1;
    if (tm.tm_mday < 1 || tm.tm_mday > days_in_month(year, tm.tm_mon))
        return -1;
    tm.tm_year = year - 1900;
    int64_t t = (int64_t)timegm(&tm);
    return t < 0 ? 0 : t; /* before the epoch: as old as a date can say */
}

static void put2(char *o, int v)
{
    o[0] = (char)('0' + v / 10 % 10);
    o[1] = (char)('0' + v % 10);
}

size_t tn_http_date_format(int64_t t, char out[30])
{
    static const char *const days = "SunMonTueWedThuFriSat";
    static const char *const mons = "JanFebMarAprMayJunJulAugSepOctNovDec";
    if (t < 0)
        t = 0;
    if (t > DATE_MAX)
        t = DATE_MAX;
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    int y = tm.tm_year + 1900;
    memcpy(out, days + 3 * tm.tm_wday, 3);
    memcpy(out + 3, ", ", 2);
    put2(out + 5, tm.tm_mday);
    out[7] = ' ';
    memcpy(out + 8, mons + 3 * tm.tm_mon, 3);
    out[11] = ' ';
    put2(out + 12, y / 100);
    put2(out + 14, y % 100);
    out[16] = ' ';
    put2(out + 17, tm.tm_hour);
    out[19] = ':';
    put2(out + 20, tm.tm_min);
    out[22] = ':';
    put2(out + 23, tm.tm_sec);
    memcpy(out + 25, " GMT", 5); /* with the NUL */
    return 29;
}

/* --- storing ---------------------------------------------------------------- */

static const struct tn_header *find(const struct tn_header *h, size_t n, const char *name)
{
    return tn_headers_find(h, n, name, strlen(name));
}

static size_t count(const struct tn_header *h, size_t n, const char *name)
{
    size_t c = 0, nl = strlen(name);
    for (size_t i = 0; i < n; i++)
        c += h[i].name_len == nl && memcmp(h[i].name, name, nl) == 0;
    return c;
}

/* Methods whose responses a cache may reuse at all (RFC 9110 9.2.1). */
static bool method_safe(const char *m, size_t n)
{
    static const char *const safe[] = {"GET", "HEAD", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
        if (n == strlen(safe[i]) && memcmp(m, safe[i], n) == 0)
            return true;
    return false;
}

static bool method_ok(const struct tn_cache_config *cfg, const char *m, size_t n)
{
    static const char *const dflt[] = {"GET", "HEAD"};
    const char *const *list = cfg->n_request_methods ? cfg->request_methods : dflt;
    size_t nl = cfg->n_request_methods ? cfg->n_request_methods : 2;
    if (!method_safe(m, n))
        return false;
    for (size_t i = 0; i < nl; i++)
        if (strlen(list[i]) == n && memcmp(list[i], m, n) == 0)
            return true;
    return false;
}

static bool status_ok(const struct tn_cache_config *cfg, int status)
{
    /* RFC 9110 15.1: heuristically cacheable. 206 is left out: a partial
     * body is not what the next full request wants. */
    static const uint32_t dflt[] = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501};
    const uint32_t *list = cfg->n_response_codes ? cfg->response_codes : dflt;
    size_t n = cfg->n_response_codes ? cfg->n_response_codes : sizeof(dflt) / sizeof(dflt[0]);
    for (size_t i = 0; i < n; i++)
        if (status >= 0 && list[i] == (uint32_t)status)
            return true;
    return false;
}

static bool content_type_ok(const struct tn_cache_config *cfg, const struct tn_header *resp, size_t n_resp)
{
    char mt[128], want[128];
    if (cfg->n_content_types == 0)
        return true;
    const struct tn_header *ct = find(resp, n_resp, "content-type");
    size_t n = ct ? tn_cache_media_type(ct->value, ct->value_len, mt, sizeof(mt)) : 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < cfg->n_content_types; i++) {
        size_t wn = tn_cache_media_type(cfg->content_types[i], strlen(cfg->content_types[i]), want, sizeof(want));
        if (wn == n && memcmp(want, mt, n) == 0)
            return true;
    }
    return false;
}

/* One header name a response varies on, lower case. */
static bool vary_name_ok(const struct tn_cache_config *cfg, const char *name, size_t n)
{
    if (cfg->n_vary_headers > 0) {
        for (size_t i = 0; i < cfg->n_vary_headers; i++)
            if (ci_eq(name, n, cfg->vary_headers[i]))
                return true;
        return false;
    }
    for (size_t i = 0; i < cfg->n_allowed_vary; i++)
        if (tn_string_matcher_match(&cfg->allowed_vary[i], name, n))
            return true;
    return false; /* no allow list: Envoy refuses every Vary */
}

static bool vary_ok(const struct tn_cache_config *cfg, const struct tn_header *resp, size_t n_resp)
{
    char name[128];
    for (size_t h = 0; h < n_resp; h++) {
        if (resp[h].name_len != 4 || memcmp(resp[h].name, "vary", 4) != 0)
            continue;
        const char *s = resp[h].value;
        size_t len = resp[h].value_len, i = 0;
        const char *tok;
        size_t tn;
        while (tn_list_next(s, len, &i, &tok, &tn)) {
            if (tn >= sizeof(name) || (tn == 1 && tok[0] == '*'))
                return false;
            for (size_t k = 0; k < tn; k++)
                name[k] = lower(tok[k]);
            if (!vary_name_ok(cfg, name, tn))
                return false;
        }
    }
    return true;
}

static int64_t ms_to_s(uint64_t ms)
{
    return (int64_t)(ms / 1000);
}

static uint64_t pick(const struct tn_cache_per_route *pr, uint64_t pr_v, uint64_t cfg_v)
{
    return pr && pr_v != TN_CACHE_UNSET ? pr_v : cfg_v;
}

/* The freshness lifetime (RFC 9111 4.2.1 with the config on top), or -1 for
 * none. cc is the response's (all absent with ignore_cache_control). */
static int64_t lifetime_of(const struct tn_cache_config *cfg, const struct tn_cache_per_route *pr,
                           const struct tn_cc *cc, const struct tn_cache_meta *m)
{
    uint64_t override = pick(pr, pr ? pr->ttl_override_ms : 0, cfg->ttl_override_ms);
    uint64_t dflt = pick(pr, pr ? pr->default_ttl_ms : 0, cfg->default_ttl_ms);
    if (override != TN_CACHE_UNSET)
        return ms_to_s(override);
    if (!cfg->ignore_cache_control) {
        if (cc->s_maxage != TN_CC_ABSENT)
            return cc->s_maxage;
        if (cc->max_age != TN_CC_ABSENT)
            return cc->max_age;
        if (m->expires == 0)
            return 0;
        if (m->expires > 0)
            return m->expires > m->date ? m->expires - m->date : 0;
        if (cfg->only_if_origin_cacheable)
            return -1;
    }
    return dflt != TN_CACHE_UNSET ? ms_to_s(dflt) : -1;
}

/* The response's own fields of *m: dates, Age, validators. */
static void meta_headers(const struct tn_header *resp, size_t n_resp, int64_t now_s, struct tn_cache_meta *m)
{
    const struct tn_header *h;
    int64_t t;

    m->date = now_s;
    if ((h = find(resp, n_resp, "date")) != NULL && (t = tn_http_date_parse(h->value, h->value_len)) >= 0)
        m->date = t;
    m->expires = -1;
    if ((h = find(resp, n_resp, "expires")) != NULL) {
        /* Two Expires disagree by definition: read as already expired (4.2.1). */
        t = count(resp, n_resp, "expires") == 1 ? tn_http_date_parse(h->value, h->value_len) : -1;
        m->expires = t > 0 ? t : 0;
    }
    m->last_modified = -1;
    if ((h = find(resp, n_resp, "last-modified")) != NULL)
        m->last_modified = tn_http_date_parse(h->value, h->value_len);
    m->age_value = 0;
    if ((h = find(resp, n_resp, "age")) != NULL) {
        const char *v = h->value;
        size_t vn = h->value_len;
        trim(&v, &vn);
        if (parse_delta(v, vn, &t) == 0)
            m->age_value = t;
    }
    m->etag[0] = '\0';
    if ((h = find(resp, n_resp, "etag")) != NULL && h->value_len < sizeof(m->etag)) {
        memcpy(m->etag, h->value, h->value_len);
        m->etag[h->value_len] = '\0';
    }
}

/* The response-directive checks of RFC 9111 3 and 3.5. */
static enum tn_storable cc_storable(const struct tn_cc *req_cc, const struct tn_cc *cc, bool has_auth, bool has_cookie)
{
    if (req_cc->no_store || cc->no_store)
        return TN_STORE_NO_STORE;
    if (cc->is_private)
        return TN_STORE_PRIVATE;
    if (has_auth && !(cc->is_public || cc->s_maxage != TN_CC_ABSENT || cc->must_revalidate))
        return TN_STORE_AUTHORIZATION;
    if (has_cookie && !cc->is_public)
        return TN_STORE_SET_COOKIE;
    return TN_STORE_OK;
}

enum tn_storable tn_cache_storable(const struct tn_cache_config *cfg, const struct tn_cache_per_route *pr,
                                   const char *method, size_t method_len, const struct tn_header *req, size_t n_req,
                                   int status, const struct tn_header *resp, size_t n_resp, int64_t request_time,
                                   int64_t now_s, struct tn_cache_meta *meta)
{
    struct tn_cc req_cc, cc;
    struct tn_cache_meta m;
    enum tn_storable r;

    if (!method_ok(cfg, method, method_len))
        return TN_STORE_NO_METHOD;
    if (!status_ok(cfg, status))
        return TN_STORE_NO_STATUS;
    tn_cc_parse(cfg->ignore_request_cache_control ? NULL : req, cfg->ignore_request_cache_control ? 0 : n_req, true,
                &req_cc);
    tn_cc_parse(cfg->ignore_cache_control ? NULL : resp, cfg->ignore_cache_control ? 0 : n_resp, false, &cc);
    r = cc_storable(&req_cc, &cc, find(req, n_req, "authorization") != NULL, find(resp, n_resp, "set-cookie") != NULL);
    if (r != TN_STORE_OK)
        return r;

    memset(&m, 0, sizeof(m));
    meta_headers(resp, n_resp, now_s, &m);
    if ((m.lifetime = lifetime_of(cfg, pr, &cc, &m)) < 0)
        return TN_STORE_NO_FRESHNESS;
    if (!content_type_ok(cfg, resp, n_resp))
        return TN_STORE_CONTENT_TYPE;
    if (!vary_ok(cfg, resp, n_resp))
        return TN_STORE_VARY;

    m.status = status;
    m.request_time = request_time;
    m.response_time = now_s;
    m.stale_while_revalidate = cc.stale_while_revalidate;
    m.stale_if_error = cc.stale_if_error;
    /* s-maxage carries proxy-revalidate's meaning for a shared cache (5.2.2.10). */
    m.must_revalidate = cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage != TN_CC_ABSENT;
    m.no_cache = cc.no_cache;
    m.immutable = cc.immutable;
    m.authorization_ok = cc.is_public || cc.s_maxage != TN_CC_ABSENT || cc.must_revalidate;
    *meta = m;
    return TN_STORE_OK;
}

/* --- using ------------------------------------------------------------------ */

int64_t tn_cache_age(const struct tn_cache_meta *m, int64_t now_s)
{
    int64_t apparent = m->response_time > m->date ? m->response_time - m->date : 0;
    int64_t delay = m->response_time > m->request_time ? m->response_time - m->request_time : 0;
    int64_t corrected = m->age_value + delay;
    int64_t initial = apparent > corrected ? apparent : corrected;
    int64_t resident = now_s > m->response_time ? now_s - m->response_time : 0;
    return initial + resident;
}

static int64_t stale_ttl_s(const struct tn_cache_config *cfg, const struct tn_cache_per_route *pr)
{
    return ms_to_s(pick(pr, pr ? pr->stale_ttl_ms : 0, cfg->stale_ttl_ms));
}

/* Whether the entry is past what stale_ttl keeps: age > lifetime + stale_ttl. */
static bool expired_for_good(int64_t age, int64_t lifetime, int64_t stale_ttl)
{
    return age - lifetime > stale_ttl;
}

/* The request's own directives (RFC 9111 5.2.1): true when they send the
 * request upstream whatever the entry's freshness. */
static bool request_forces_revalidate(const struct tn_cache_config *cfg, const struct tn_cache_meta *m,
                                      const struct tn_cc *rc, int64_t age)
{
    bool refresh = rc->no_cache || rc->max_age == 0;
    if (refresh && !cfg->ignore_client_refresh && !(cfg->ignore_client_refresh_immutable && m->immutable))
        return true;
    if (rc->max_age > 0 && age > rc->max_age)
        return true;
    if (rc->min_fresh != TN_CC_ABSENT && m->lifetime - age < rc->min_fresh)
        return true;
    return false;
}

enum tn_cache_use tn_cache_usable(const struct tn_cache_config *cfg, const struct tn_cache_per_route *pr,
                                  const struct tn_cache_meta *m, const struct tn_cc *req_cc, int64_t now_s)
{
    int64_t age = tn_cache_age(m, now_s);
    const struct tn_cc *rc = cfg->ignore_request_cache_control ? NULL : req_cc;

    if (expired_for_good(age, m->lifetime, stale_ttl_s(cfg, pr)))
        return TN_USE_UNUSABLE;
    if (rc != NULL && request_forces_revalidate(cfg, m, rc, age))
        return TN_USE_REVALIDATE;
    if (m->no_cache)
        return TN_USE_REVALIDATE;
    if (age < m->lifetime)
        return TN_USE_FRESH;
    int64_t staleness = age - m->lifetime;
    if (m->must_revalidate)
        return TN_USE_REVALIDATE;
    if (rc != NULL && rc->max_stale != TN_CC_ABSENT && staleness <= rc->max_stale)
        return TN_USE_STALE_OK;
    if (m->stale_while_revalidate != TN_CC_ABSENT && staleness <= m->stale_while_revalidate)
        return TN_USE_STALE_WHILE_REVALIDATE;
    return TN_USE_REVALIDATE;
}

bool tn_cache_stale_if_error(const struct tn_cache_config *cfg, const struct tn_cache_per_route *pr,
                             const struct tn_cache_meta *m, const struct tn_cc *req_cc, int64_t now_s)
{
    int64_t age = tn_cache_age(m, now_s);
    int64_t stale_ttl = stale_ttl_s(cfg, pr);
    const struct tn_cc *rc = cfg->ignore_request_cache_control ? NULL : req_cc;
    int64_t req_sie = rc ? rc->stale_if_error : TN_CC_ABSENT;

    if (expired_for_good(age, m->lifetime, stale_ttl))
        return false;
    /* no-cache forbids any unvalidated use, unless the origin said stale-if-error too. */
    if (m->no_cache && m->stale_if_error == TN_CC_ABSENT)
        return false;
    if (age < m->lifetime)
        return true;
    if (m->must_revalidate)
        return false;
    int64_t staleness = age - m->lifetime;
    if (m->stale_if_error != TN_CC_ABSENT || req_sie != TN_CC_ABSENT)
        return (m->stale_if_error != TN_CC_ABSENT && staleness <= m->stale_if_error) ||
               (req_sie != TN_CC_ABSENT && staleness <= req_sie);
    return stale_ttl > 0;
}

/* --- conditional requests --------------------------------------------------- */

/* The opaque-tag of an entity-tag (W/ dropped, quotes kept), for the weak
 * comparison of RFC 9110 8.8.3.2. */
static void opaque_tag(const char **s, size_t *n)
{
    trim(s, n);
    if (*n >= 2 && (*s)[0] == 'W' && (*s)[1] == '/')
        *s += 2, *n -= 2;
}

/* Whether an If-None-Match value is "*" or lists the stored tag. */
static bool inm_matches(const char *s, size_t n, const char *tag, size_t tag_n)
{
    size_t i = 0;
    trim(&s, &n);
    if (n == 1 && s[0] == '*')
        return true;
    while (i < n) {
        if (s[i] == ',' || is_ows(s[i])) {
            i++;
            continue;
        }
        size_t start = i;
        if (n - i >= 2 && s[i] == 'W' && s[i + 1] == '/')
            i += 2;
        if (i >= n || s[i] != '"') { /* not an entity-tag: skip it */
            while (i < n && s[i] != ',')
                i++;
            continue;
        }
        const char *q = memchr(s + i + 1, '"', n - i - 1);
        if (q == NULL)
            return false;
        const char *t = s + start;
        size_t tn = (size_t)(q + 1 - t);
        opaque_tag(&t, &tn);
        if (tag_n > 0 && tn == tag_n && memcmp(t, tag, tn) == 0)
            return true;
        i = (size_t)(q + 1 - s);
    }
    return false;
}

bool tn_cache_not_modified(const struct tn_cache_meta *m, const struct tn_header *req, size_t n_req)
{
    const char *tag = m->etag;
    size_t tag_n = strlen(m->etag);
    opaque_tag(&tag, &tag_n);
    bool has_inm = false;
    for (size_t i = 0; i < n_req; i++)
        if (req[i].name_len == 13 && memcmp(req[i].name, "if-none-match", 13) == 0) {
            has_inm = true;
            if (inm_matches(req[i].value, req[i].value_len, tag, tag_n))
                return true;
        }
    if (has_inm)
        return false;
    const struct tn_header *ims = find(req, n_req, "if-modified-since");
    if (ims == NULL)
        return false;
    int64_t since = tn_http_date_parse(ims->value, ims->value_len);
    if (since < 0)
        return false;
    int64_t changed = m->last_modified >= 0 ? m->last_modified : m->date;
    return changed <= since;
}

/* --- ranges and media types ------------------------------------------------- */

/* 1*DIGIT into *v, saturating; advances *i. False when there is no digit. */
static bool range_num(const char *s, size_t n, size_t *i, uint64_t *v)
{
    size_t start = *i;
    *v = 0;
    for (; *i < n && is_digit(s[*i]); (*i)++) {
        unsigned d = (unsigned)(s[*i] - '0');
        *v = *v > (UINT64_MAX - d) / 10 ? UINT64_MAX : *v * 10 + d;
    }
    return *i > start;
}

/* One range-spec, trimmed: 0 satisfiable, 1 not, -1 malformed. */
static int range_spec(const char *s, size_t n, uint64_t total, uint64_t *first, uint64_t *last)
{
    size_t i = 0;
    uint64_t a, b;
    if (n > 0 && s[0] == '-') {
        i = 1;
        if (!range_num(s, n, &i, &b) || i != n)
            return -1;
        if (b == 0 || total == 0)
            return 1;
        *first = b >= total ? 0 : total - b;
        *last = total - 1;
        return 0;
    }
    if (!range_num(s, n, &i, &a) || i >= n || s[i++] != '-')
        return -1;
    if (i == n)
        b = UINT64_MAX;
    else if (!range_num(s, n, &i, &b) || i != n || b < a)
        return -1;
    if (a >= total)
        return 1;
    *first = a;
    *last = b < total - 1 ? b : total - 1;
    return 0;
}

int tn_cache_range(const char *v, size_t len, uint64_t total, uint64_t *first, uint64_t *last)
{
    trim(&v, &len);
    if (len < 6 || !ci_eq(v, 5, "bytes"))
        return -1;
    size_t i = 5;
    while (i < len && is_ows(v[i]))
        i++;
    if (i >= len || v[i++] != '=')
        return -1;
    /* A list whose one non-empty element is the range (RFC 9110 5.6.1). */
    const char *spec = NULL;
    size_t spec_n = 0;
    const char *e;
    size_t en;
    while (tn_list_next(v, len, &i, &e, &en)) {
        if (spec != NULL)
            return -1; /* several ranges: tern answers them with the whole body */
        spec = e;
        spec_n = en;
    }
    if (spec == NULL)
        return -1;
    uint64_t f, l;
    int r = range_spec(spec, spec_n, total, &f, &l);
    if (r == 0) {
        *first = f;
        *last = l;
    }
    return r;
}

size_t tn_cache_media_type(const char *v, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && v[i] != ';'; i++) {
        if (is_ows(v[i]))
            continue;
        if (n + 1 >= cap)
            return 0;
        out[n++] = lower(v[i]);
    }
    if (cap > 0)
        out[n] = '\0';
    return n;
}
