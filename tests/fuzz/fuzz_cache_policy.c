/* libFuzzer target for the cache's HTTP rules (cache/policy.c): arbitrary
 * bytes as Cache-Control, Pragma, HTTP dates, Range, Content-Type, Vary,
 * Age, ETag and conditional headers, targeted cache-control fields
 * (RFC 9213), 304 merges and Location / Content-Location references. Beyond "no crash, no sanitizer
 * report", each parser's promise is checked: delta-seconds within their
 * clamp, two Cache-Control headers reading as the most restrictive of each,
 * format -> parse round trips, ranges within the body, media types lower
 * case without spaces or parameters, stored entries with a sane lifetime. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/policy.h"

#define DELTA_MAX 2147483648LL
#define DATE_MAX  253402300799LL

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool delta_ok(int64_t v, bool unlimited)
{
    return v == TN_CC_ABSENT || (v >= 0 && v <= DELTA_MAX) || (unlimited && v == INT64_MAX);
}

static int64_t min_of(int64_t a, int64_t b)
{
    if (a == TN_CC_ABSENT)
        return b;
    if (b == TN_CC_ABSENT)
        return a;
    return a < b ? a : b;
}

static struct tn_header hdr(const char *name, const uint8_t *v, size_t n)
{
    return (struct tn_header){name, (const char *)v, (uint32_t)strlen(name), (uint32_t)n};
}

/* One header is the same as the first part and the rest as two headers,
 * merged by the most restrictive reading. */
static void fuzz_cc(const uint8_t *d, size_t n)
{
    struct tn_cc all, a, b;
    size_t cut = n ? d[0] % (n + 1) : 0;
    struct tn_header h[2] = {hdr("cache-control", d, cut), hdr("cache-control", d + cut, n - cut)};
    tn_cc_parse(h, 2, true, &all);
    tn_cc_parse(&h[0], 1, false, &a);
    tn_cc_parse(&h[1], 1, false, &b);
    check(all.present && a.present && b.present);
    check(delta_ok(all.max_age, false) && delta_ok(all.s_maxage, false) && delta_ok(all.max_stale, true) &&
          delta_ok(all.min_fresh, false) && delta_ok(all.stale_while_revalidate, false) &&
          delta_ok(all.stale_if_error, false));
    check(all.max_age == min_of(a.max_age, b.max_age) && all.s_maxage == min_of(a.s_maxage, b.s_maxage));
    check(all.max_stale == min_of(a.max_stale, b.max_stale));
    check(all.min_fresh == (a.min_fresh > b.min_fresh ? a.min_fresh : b.min_fresh));
    check(all.stale_while_revalidate == min_of(a.stale_while_revalidate, b.stale_while_revalidate));
    check(all.stale_if_error == min_of(a.stale_if_error, b.stale_if_error));
    check(all.no_store == (a.no_store || b.no_store) && all.no_cache == (a.no_cache || b.no_cache));
    check(all.is_private == (a.is_private || b.is_private) && all.is_public == (a.is_public || b.is_public));

    struct tn_header p = hdr("pragma", d, n);
    tn_cc_parse(&p, 1, true, &a);
    check(!a.present && a.max_age == TN_CC_ABSENT);
}

static void fuzz_date(const uint8_t *d, size_t n)
{
    char out[30];
    int64_t t = tn_http_date_parse((const char *)d, n);
    check(t == -1 || (t >= 0 && t <= DATE_MAX));
    if (t >= 0) {
        check(tn_http_date_format(t, out) == 29 && strlen(out) == 29);
        check(tn_http_date_parse(out, 29) == t);
    }
    if (n >= 8) {
        int64_t any;
        memcpy(&any, d, sizeof(any));
        int64_t want = any < 0 ? 0 : any > DATE_MAX ? DATE_MAX : any;
        check(tn_http_date_format(any, out) == 29 && out[29] == '\0');
        check(tn_http_date_parse(out, 29) == want);
    }
}

static void fuzz_range(const uint8_t *d, size_t n)
{
    uint64_t totals[4] = {0, 1, n ? d[0] : 7, UINT64_MAX - (n ? d[n - 1] : 0)};
    for (int i = 0; i < 4; i++) {
        uint64_t first = 7, last = 3;
        int r = tn_cache_range((const char *)d, n, totals[i], &first, &last);
        check(r == -1 || r == 0 || r == 1);
        if (r == 0)
            check(first <= last && last < totals[i]);
        else
            check(first == 7 && last == 3);
    }
}

static void fuzz_media_type(const uint8_t *d, size_t n)
{
    char out[64];
    size_t cap = n ? d[0] % (sizeof(out) + 1) : sizeof(out);
    size_t m = tn_cache_media_type((const char *)d, n, out, cap);
    check(m == 0 || m < cap);
    if (m > 0)
        check(out[m] == '\0');
    for (size_t i = 0; i < m; i++)
        check(out[i] != ' ' && out[i] != '\t' && out[i] != ';' && !(out[i] >= 'A' && out[i] <= 'Z'));
}

/* Targeted fields: a valid one gives directives within the clamp; Age is
 * 0..2^31; a merged 304 never holds more than both; a same-origin path
 * fits, starts with "/" and holds no fragment. */
static void fuzz_rfc(const uint8_t *d, size_t n)
{
    static const char *names[] = {"edge-cache-control", "cdn-cache-control"};
    struct tn_header h[] = {hdr("cdn-cache-control", d, n), hdr("edge-cache-control", d, n / 2), hdr("age", d, n)};
    struct tn_cc cc;
    if (tn_cc_parse_targeted(h, 3, names, 2, &cc))
        check(cc.present && delta_ok(cc.max_age, false) && delta_ok(cc.s_maxage, false));
    int64_t age = tn_cache_age_value(h, 3);
    check(age >= 0 && age <= DELTA_MAX);
    struct tn_header out[6];
    size_t n_meta, m = tn_cache_merge_304(h, 3, h, 3, out, &n_meta);
    check(m <= 6 && n_meta >= m && n_meta <= m + 1);
    char path[128];
    size_t cap = n ? d[0] % sizeof(path) : sizeof(path);
    size_t pl = tn_cache_same_origin_path((const char *)d, n, n && d[0] & 1 ? "https" : "http", "example.com:8080",
                                          16, "/a/b?c", 6, path, cap);
    check(pl <= cap);
    if (pl > 0)
        check(path[0] == '/' && memchr(path, '#', pl) == NULL);
}

/* The same bytes as every header a stored response and a request carry. */
static void fuzz_entry(const uint8_t *d, size_t n)
{
    static const char *vary[] = {"accept-encoding", "x-a"};
    static const char *types[] = {"text/html"};
    struct tn_cache_config cfg = {0};
    struct tn_cache_per_route pr = {false, TN_CACHE_UNSET, TN_CACHE_UNSET, 30000};
    uint8_t f = n ? d[0] : 0;
    cfg.default_ttl_ms = f & 1 ? 1500 : TN_CACHE_UNSET;
    cfg.ttl_override_ms = f & 2 ? 4000 : TN_CACHE_UNSET;
    cfg.stale_ttl_ms = f & 4 ? 60000 : 0;
    cfg.ignore_cache_control = f & 8;
    cfg.ignore_request_cache_control = f & 16;
    cfg.ignore_client_refresh = f & 32;
    cfg.only_if_origin_cacheable = f & 64;
    cfg.keep_stale = f & 4 && f & 16;
    if (f & 128)
        cfg.vary_headers = vary, cfg.n_vary_headers = 2, cfg.content_types = types, cfg.n_content_types = 1;

    struct tn_header resp[] = {hdr("cache-control", d, n), hdr("date", d, n),         hdr("expires", d, n),
                               hdr("last-modified", d, n), hdr("age", d, n),          hdr("etag", d, n),
                               hdr("vary", d, n),          hdr("content-type", d, n), hdr("set-cookie", d, n)};
    struct tn_header req[] = {hdr("cache-control", d, n), hdr("pragma", d, n), hdr("if-none-match", d, n),
                              hdr("if-modified-since", d, n)};
    size_t n_resp = f & 1 ? 8 : 9;
    int64_t now = 1700000000;
    struct tn_cache_meta m;
    enum tn_storable s =
        tn_cache_storable(&cfg, f & 2 ? &pr : NULL, "GET", 3, req, 2, 200, resp, n_resp, now - 1, now, &m);
    check(s >= TN_STORE_OK && s <= TN_STORE_SET_COOKIE);
    if (s != TN_STORE_OK)
        return;
    check(m.lifetime >= 0 && m.age_value >= 0 && m.age_value <= DELTA_MAX);
    check(m.expires >= -1 && m.last_modified >= -1 && m.date >= 0);
    check(strlen(m.etag) < sizeof(m.etag));
    struct tn_cc cc;
    tn_cc_parse(req, 2, true, &cc);
    for (int64_t later = 0; later < 200; later += 37) {
        int64_t age = tn_cache_age(&m, now + later);
        check(age >= 0);
        enum tn_cache_use u = tn_cache_usable(&cfg, &pr, &m, &cc, now + later);
        check(u >= TN_USE_FRESH && u <= TN_USE_UNUSABLE);
        if (u == TN_USE_FRESH)
            check(age < m.lifetime && !m.no_cache);
        (void)tn_cache_stale_if_error(&cfg, &pr, &m, &cc, now + later);
    }
    (void)tn_cache_not_modified(&m, req, 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cc(data, size);
    fuzz_date(data, size);
    fuzz_range(data, size);
    fuzz_media_type(data, size);
    fuzz_entry(data, size);
    fuzz_rfc(data, size);
    return 0;
}
