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

static bool isalnum_ascii(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* RFC 9110 tchar */
static bool is_tchar(char c)
{
    return isalnum_ascii(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
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

static void cc_init(struct tn_cc *cc);

void tn_cc_parse(const struct tn_header *h, size_t n, bool pragma, struct tn_cc *out)
{
    cc_init(out);
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

/* --- targeted cache-control (RFC 9213) ------------------------------------- */

/* RFC 8941 3.1.2 key: lcalpha or "*", then lcalpha, DIGIT, "_-.*". */
static bool sf_key(struct directive *d, const char *s, size_t n, size_t *i)
{
    size_t start = *i;
    if (*i >= n || !((s[*i] >= 'a' && s[*i] <= 'z') || s[*i] == '*'))
        return false;
    while (*i < n && ((s[*i] >= 'a' && s[*i] <= 'z') || is_digit(s[*i]) || strchr("_-.*", s[*i]) != NULL))
        (*i)++;
    if (d != NULL)
        d->name = s + start, d->name_len = *i - start;
    return true;
}

/* A bare item (RFC 8941 3.3); *kind: 'i' Integer (d->arg its digits, sign
 * left out, *neg set), 'b' Boolean (*bval), 'o' any other type. */
static bool sf_bare_item(const char *s, size_t n, size_t *i, struct directive *d, char *kind, bool *bval, bool *neg)
{
    size_t at = *i;
    if (at >= n)
        return false;
    char c = s[at];
    *kind = 'o';
    if (c == '-' || is_digit(c)) {
        *neg = c == '-';
        at += *neg;
        size_t digits = at, dot = 0;
        while (at < n && (is_digit(s[at]) || (s[at] == '.' && !dot)))
            dot = s[at] == '.' ? at : dot, at++;
        size_t int_len = (dot ? dot : at) - digits;
        if (int_len == 0 || (!dot && int_len > 15) || (dot && (int_len > 12 || at - dot - 1 < 1 || at - dot - 1 > 3)))
            return false;
        if (!dot) {
            *kind = 'i';
            d->arg = s + digits, d->arg_len = int_len;
        }
    } else if (c == '"') {
        for (at++; at < n && s[at] != '"'; at++) {
            if (s[at] == '\\' && (at + 1 >= n || (s[at + 1] != '"' && s[at + 1] != '\\')))
                return false;
            at += s[at] == '\\';
            if ((unsigned char)s[at] < 0x20 || (unsigned char)s[at] > 0x7e)
                return false;
        }
        if (at++ >= n)
            return false;
    } else if (c == '?') {
        if (at + 1 >= n || (s[at + 1] != '0' && s[at + 1] != '1'))
            return false;
        *kind = 'b', *bval = s[at + 1] == '1';
        at += 2;
    } else if (c == ':') {
        for (at++; at < n && s[at] != ':'; at++)
            if (!(isalnum_ascii(s[at]) || s[at] == '+' || s[at] == '/' || s[at] == '='))
                return false;
        if (at++ >= n)
            return false;
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '*') {
        for (at++; at < n && (is_tchar(s[at]) || s[at] == ':' || s[at] == '/');)
            at++;
    } else {
        return false;
    }
    *i = at;
    return true;
}

/* Parameters (RFC 8941 3.1.2), read and dropped. */
static bool sf_params(const char *s, size_t n, size_t *i)
{
    while (*i < n && s[*i] == ';') {
        (*i)++;
        while (*i < n && s[*i] == ' ')
            (*i)++;
        if (!sf_key(NULL, s, n, i))
            return false;
        if (*i < n && s[*i] == '=') {
            struct directive d;
            char kind;
            bool b, neg;
            (*i)++;
            if (!sf_bare_item(s, n, i, &d, &kind, &b, &neg))
                return false;
        }
    }
    return true;
}

/* An inner list (RFC 8941 3.1.1), read and dropped. */
static bool sf_inner_list(const char *s, size_t n, size_t *i)
{
    (*i)++;
    for (;;) {
        while (*i < n && s[*i] == ' ')
            (*i)++;
        if (*i >= n)
            return false;
        if (s[*i] == ')') {
            (*i)++;
            return sf_params(s, n, i);
        }
        struct directive d;
        char kind;
        bool b, neg;
        if (!sf_bare_item(s, n, i, &d, &kind, &b, &neg) || !sf_params(s, n, i))
            return false;
        if (*i < n && s[*i] != ' ' && s[*i] != ')')
            return false;
    }
}

/* One field line as a Dictionary (RFC 8941 4.2.2), its members applied to
 * *cc; false when it does not parse (cc may then hold part of it). */
static bool sf_dict_apply(const char *s, size_t n, struct tn_cc *cc)
{
    size_t i = 0;
    while (i < n && s[i] == ' ')
        i++;
    while (n > i && s[n - 1] == ' ')
        n--;
    if (i >= n)
        return false; /* empty: the field is ignored (RFC 9213 2.1) */
    for (;;) {
        struct directive d;
        memset(&d, 0, sizeof(d));
        bool apply = true;
        if (!sf_key(&d, s, n, &i))
            return false;
        if (i < n && s[i] == '=') {
            char kind;
            bool b = false, neg = false;
            i++;
            if (i < n && s[i] == '(') {
                if (!sf_inner_list(s, n, &i))
                    return false;
                kind = 'o';
            } else if (!sf_bare_item(s, n, &i, &d, &kind, &b, &neg) || !sf_params(s, n, &i)) {
                return false;
            }
            if (kind == 'b')
                apply = b; /* ?0: absent; ?1: as bare */
            else
                d.has_arg = true, d.bad = kind != 'i' || neg;
        } else if (!sf_params(s, n, &i)) {
            return false;
        }
        if (apply)
            apply_directive(cc, &d);
        while (i < n && is_ows(s[i]))
            i++;
        if (i >= n)
            return true;
        if (s[i++] != ',')
            return false;
        while (i < n && is_ows(s[i]))
            i++;
        if (i >= n)
            return false; /* a trailing comma */
    }
}

static void cc_init(struct tn_cc *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = cc->s_maxage = cc->max_stale = cc->min_fresh = TN_CC_ABSENT;
    cc->stale_while_revalidate = cc->stale_if_error = TN_CC_ABSENT;
}

bool tn_cc_parse_targeted(const struct tn_header *h, size_t n, const char *const *names, size_t n_names,
                          struct tn_cc *out)
{
    for (size_t k = 0; k < n_names; k++) {
        size_t nl = strlen(names[k]), lines = 0;
        struct tn_cc cc;
        bool ok = true;
        cc_init(&cc);
        for (size_t i = 0; i < n && ok; i++)
            if (h[i].name_len == nl && memcmp(h[i].name, names[k], nl) == 0) {
                lines++;
                ok = sf_dict_apply(h[i].value, h[i].value_len, &cc);
            }
        if (lines > 0 && ok) {
            cc.present = true;
            *out = cc;
            return true;
        }
    }
    return false;
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

bool tn_cache_method_safe(const char *m, size_t n)
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
    if (!tn_cache_method_safe(m, n))
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
        /* no-cache without freshness: stored, validated on every use (as
         * Envoy stores it) */
        if (cc->no_cache && dflt == TN_CACHE_UNSET)
            return 0;
    }
    return dflt != TN_CACHE_UNSET ? ms_to_s(dflt) : -1;
}

int64_t tn_cache_age_value(const struct tn_header *h, size_t n)
{
    const struct tn_header *age = find(h, n, "age");
    const char *v;
    size_t vn, pos = 0;
    int64_t t;
    if (age == NULL || !tn_list_next(age->value, age->value_len, &pos, &v, &vn))
        return 0;
    return parse_delta(v, vn, &t) == 0 ? t : 0;
}

/* The response's own fields of *m: dates, Age, validators. A targeted
 * cache-control field (RFC 9213) makes Expires count for nothing. */
static void meta_headers(const struct tn_header *resp, size_t n_resp, bool targeted, int64_t now_s,
                         struct tn_cache_meta *m)
{
    const struct tn_header *h;
    int64_t t;

    m->date = now_s;
    if ((h = find(resp, n_resp, "date")) != NULL && (t = tn_http_date_parse(h->value, h->value_len)) >= 0)
        m->date = t;
    m->expires = -1;
    if (!targeted && (h = find(resp, n_resp, "expires")) != NULL) {
        /* Two Expires disagree by definition: read as already expired (4.2.1). */
        t = count(resp, n_resp, "expires") == 1 ? tn_http_date_parse(h->value, h->value_len) : -1;
        m->expires = t > 0 ? t : 0;
    }
    m->last_modified = -1;
    if ((h = find(resp, n_resp, "last-modified")) != NULL)
        m->last_modified = tn_http_date_parse(h->value, h->value_len);
    m->age_value = tn_cache_age_value(resp, n_resp);
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
    bool targeted = false;
    if (cfg->ignore_cache_control)
        tn_cc_parse(NULL, 0, false, &cc);
    else if (!(targeted = tn_cc_parse_targeted(resp, n_resp, cfg->targeted_cc, cfg->n_targeted_cc, &cc)))
        tn_cc_parse(resp, n_resp, false, &cc);
    r = cc_storable(&req_cc, &cc, find(req, n_req, "authorization") != NULL, find(resp, n_resp, "set-cookie") != NULL);
    if (r != TN_STORE_OK)
        return r;

    memset(&m, 0, sizeof(m));
    meta_headers(resp, n_resp, targeted, now_s, &m);
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

/* Whether expired entries are kept until evicted (Envoy's config, unless
 * the route sets its own stale_ttl). */
static bool keeps_stale(const struct tn_cache_config *cfg, const struct tn_cache_per_route *pr)
{
    return cfg->keep_stale && !(pr && pr->stale_ttl_ms != TN_CACHE_UNSET);
}

uint64_t tn_cache_expire_ms(const struct tn_cache_config *cfg, const struct tn_cache_per_route *pr,
                            const struct tn_cache_meta *m, uint64_t now_ms)
{
    if (keeps_stale(cfg, pr))
        return UINT64_MAX;
    uint64_t stale = pick(pr, pr ? pr->stale_ttl_ms : 0, cfg->stale_ttl_ms);
    int64_t left = m->lifetime - tn_cache_age(m, (int64_t)(now_ms / 1000));
    uint64_t ms = left > 0 ? (uint64_t)left * 1000 : 0;
    return now_ms + ms + stale + 1;
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

    if (!keeps_stale(cfg, pr) && expired_for_good(age, m->lifetime, stale_ttl_s(cfg, pr)))
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

    if (!keeps_stale(cfg, pr) && expired_for_good(age, m->lifetime, stale_ttl))
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

/* --- refreshing and invalidating ------------------------------------------- */

static bool name_eq(const struct tn_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && memcmp(h->name, name, n) == 0;
}

bool tn_cache_header_stored(const struct tn_header *h)
{
    static const char *const skip[] = {"age",         "content-length", "x-cache-status",
                                       "x-cache-key", "x-cache-hits",   "x-served-by",
                                       "x-envoy-upstream-service-time"};
    for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
        if (name_eq(h, skip[i]))
            return false;
    return true;
}

size_t tn_cache_merge_304(const struct tn_header *stored, size_t n_stored, const struct tn_header *resp, size_t n_resp,
                          struct tn_header *out, size_t *n_meta)
{
    size_t n = 0;
    /* A 304 without Date gets the time it came as its Date (RFC 9110
     * 6.6.1): the stored Date goes too, or the refreshed entry would be as
     * old as the first response. */
    bool resp_date = find(resp, n_resp, "date") != NULL;
    for (size_t i = 0; i < n_stored; i++) {
        const struct tn_header *h = &stored[i];
        if (!tn_cache_header_stored(h) || (!resp_date && name_eq(h, "date")))
            continue;
        bool replaced = false;
        for (size_t j = 0; j < n_resp && !replaced; j++)
            replaced = resp[j].name_len == h->name_len && memcmp(resp[j].name, h->name, h->name_len) == 0 &&
                       tn_cache_header_stored(&resp[j]);
        if (!replaced)
            out[n++] = *h;
    }
    for (size_t j = 0; j < n_resp; j++)
        if (tn_cache_header_stored(&resp[j]))
            out[n++] = resp[j];
    const struct tn_header *age = find(resp, n_resp, "age");
    *n_meta = n;
    if (age != NULL)
        out[(*n_meta)++] = *age;
    return n;
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* An authority's host (lower case, into h) and port (the scheme's default
 * when left out); false when it has userinfo or a bad port. */
static bool split_authority(const char *a, size_t n, bool https, char *h, size_t hcap, size_t *hn, unsigned *port)
{
    size_t end = n;
    if (memchr(a, '@', n) != NULL || n == 0)
        return false;
    const char *colon = NULL;
    for (size_t i = n; i > 0; i--) {
        if (a[i - 1] == ']')
            break;
        if (a[i - 1] == ':') {
            colon = a + i - 1;
            break;
        }
    }
    *port = https ? 443 : 80;
    if (colon != NULL) {
        end = (size_t)(colon - a);
        if (colon + 1 < a + n) {
            unsigned v = 0;
            for (const char *p = colon + 1; p < a + n; p++) {
                if (!is_digit(*p) || v > 65535)
                    return false;
                v = v * 10 + (unsigned)(*p - '0');
            }
            if (v > 65535)
                return false;
            *port = v;
        }
    }
    if (end == 0 || end >= hcap)
        return false;
    for (size_t i = 0; i < end; i++)
        h[i] = lower(a[i]);
    *hn = end;
    return true;
}

static bool same_authority(const char *a, size_t an, const char *b, size_t bn, bool https)
{
    char ha[256], hb[256];
    size_t han, hbn;
    unsigned pa, pb;
    return split_authority(a, an, https, ha, sizeof(ha), &han, &pa) &&
           split_authority(b, bn, https, hb, sizeof(hb), &hbn, &pb) && han == hbn && memcmp(ha, hb, han) == 0 &&
           pa == pb;
}

/* Appends s[0..n) to out at *at; false when it does not fit. */
static bool put_out(char *out, size_t cap, size_t *at, const char *s, size_t n)
{
    if (*at + n > cap)
        return false;
    memcpy(out + *at, s, n);
    *at += n;
    return true;
}

size_t tn_cache_same_origin_path(const char *ref, size_t len, const char *scheme, const char *host, size_t host_len,
                                 const char *base, size_t base_len, char *out, size_t cap)
{
    bool https = scheme != NULL && ci_eq(scheme, strlen(scheme), "https");
    size_t at = 0, i = 0;
    trim(&ref, &len);
    const char *hash = memchr(ref, '#', len);
    if (hash != NULL)
        len = (size_t)(hash - ref);
    for (size_t k = 0; k < len; k++)
        if ((unsigned char)ref[k] <= 0x20 || ref[k] == 0x7f)
            return 0; /* not a URI reference */
    /* scheme ":" */
    if (len > 0 && is_alpha(ref[0])) {
        while (i < len && (isalnum_ascii(ref[i]) || ref[i] == '+' || ref[i] == '-' || ref[i] == '.'))
            i++;
        if (i < len && ref[i] == ':') {
            if (!ci_eq(ref, i, https ? "https" : "http"))
                return 0;
            i++;
            if (len - i < 2 || ref[i] != '/' || ref[i + 1] != '/')
                return 0;
        } else {
            i = 0;
        }
    }
    if (len - i >= 2 && ref[i] == '/' && ref[i + 1] == '/') {
        size_t a = i + 2, e = a;
        while (e < len && ref[e] != '/' && ref[e] != '?')
            e++;
        if (!same_authority(ref + a, e - a, host, host_len, https))
            return 0;
        if (e == len || ref[e] == '?')
            if (!put_out(out, cap, &at, "/", 1))
                return 0;
        return put_out(out, cap, &at, ref + e, len - e) ? at : 0;
    }
    if (i != 0)
        return 0;
    const char *bq = memchr(base, '?', base_len);
    size_t bpath = bq ? (size_t)(bq - base) : base_len;
    if (len == 0) /* the base itself */
        return put_out(out, cap, &at, base, base_len) ? at : 0;
    if (ref[0] == '/')
        return put_out(out, cap, &at, ref, len) ? at : 0;
    if (ref[0] == '?')
        return put_out(out, cap, &at, base, bpath) && put_out(out, cap, &at, ref, len) ? at : 0;
    /* a relative path: the base's directory, then ref */
    size_t dir = bpath;
    while (dir > 0 && base[dir - 1] != '/')
        dir--;
    if (dir == 0 && !put_out(out, cap, &at, "/", 1))
        return 0;
    return put_out(out, cap, &at, base, dir) && put_out(out, cap, &at, ref, len) ? at : 0;
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
