/* The cache's HTTP rules (cache/policy.c), table by table: what an origin or
 * a client writes and what the cache then does with it, hostile input
 * included. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cache/policy.h"
#include "suites.h"

#define N(a)  (sizeof(a) / sizeof((a)[0]))
#define A     TN_CC_ABSENT
#define CLAMP 2147483648LL
#define T0    784111777 /* Sun, 06 Nov 1994 08:49:37 GMT */

/* "name: value\nname: value" into h (names as written: lower case). */
static size_t headers(const char *spec, struct tn_header *h, size_t cap)
{
    size_t n = 0;
    const char *p = spec;
    while (p != NULL && *p != '\0' && n < cap) {
        const char *nl = strchr(p, '\n');
        const char *end = nl ? nl : p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(end - p));
        ck_assert_ptr_nonnull(colon);
        const char *v = colon + 1;
        while (v < end && *v == ' ')
            v++;
        h[n++] = (struct tn_header){p, v, (uint32_t)(colon - p), (uint32_t)(end - v)};
        p = nl ? nl + 1 : NULL;
    }
    return n;
}

static void cc_of(const char *spec, bool pragma, struct tn_cc *cc)
{
    struct tn_header h[16];
    tn_cc_parse(h, headers(spec, h, N(h)), pragma, cc);
}

/* --- Cache-Control ---------------------------------------------------------- */

enum { NS = 1, NC = 2, PRIV = 4, PUB = 8, MR = 16, PR = 32, IMM = 64, OIC = 128 };

static const struct cc_case {
    const char *v;
    int64_t max_age, s_maxage, max_stale, min_fresh, swr, sie;
    int flags;
} cc_cases[] = {
    {"", A, A, A, A, A, A, 0},
    {"max-age=60", 60, A, A, A, A, A, 0},
    {"MAX-AGE=60", 60, A, A, A, A, A, 0},
    {"Max-Age=60, S-MaxAge=10", 60, 10, A, A, A, A, 0},
    {"max-age=5, max-age=3", 3, A, A, A, A, A, 0},
    {"max-age=3, max-age=5", 3, A, A, A, A, A, 0},
    {"max-age=\"7\"", 7, A, A, A, A, A, 0},
    {"max-age = 8", 8, A, A, A, A, A, 0},
    {"max-age=0", 0, A, A, A, A, A, 0},
    {"max-age=000000000000000000000000005", 5, A, A, A, A, A, 0},
    {"max-age=2147483647", 2147483647, A, A, A, A, A, 0},
    {"max-age=2147483648", CLAMP, A, A, A, A, A, 0},
    {"max-age=2147483649", CLAMP, A, A, A, A, A, 0},
    {"max-age=99999999999999999999999999999", CLAMP, A, A, A, A, A, 0},
    {"max-age=-1", 0, A, A, A, A, A, 0},
    {"max-age=", 0, A, A, A, A, A, 0},
    {"max-age", 0, A, A, A, A, A, 0},
    {"max-age=abc", 0, A, A, A, A, A, 0},
    {"max-age=5 junk", 0, A, A, A, A, A, 0},
    {"max-age=5;", 0, A, A, A, A, A, 0},
    {"max-age=1e3", 0, A, A, A, A, A, 0},
    {"max-age=\"5", 0, A, A, A, A, A, 0},
    {"max-age=\"\"", 0, A, A, A, A, A, 0},
    {"max-age=60, max-age=junk", 0, A, A, A, A, A, 0},
    {"s-maxage=-5, max-age=9", 9, 0, A, A, A, A, 0},
    {"  no-store ,, , no-cache  ", A, A, A, A, A, A, NS | NC},
    {"no-cache=\"set-cookie, x-a\", max-age=5", 5, A, A, A, A, A, NC},
    {"private=\"a,b\", public", A, A, A, A, A, A, PRIV | PUB},
    {"foo=\"a\\\"b, max-age=1\", max-age=9", 9, A, A, A, A, A, 0},
    {"public", A, A, A, A, A, A, PUB},
    {"public=1, immutable=yes", A, A, A, A, A, A, 0},
    {"public junk", A, A, A, A, A, A, 0},
    {"no-store=1, no-cache junk", A, A, A, A, A, A, NS | NC},
    {"immutable, must-revalidate, proxy-revalidate", A, A, A, A, A, A, IMM | MR | PR},
    {"only-if-cached", A, A, A, A, A, A, OIC},
    {"max-stale", A, A, INT64_MAX, A, A, A, 0},
    {"max-stale=10", A, A, 10, A, A, A, 0},
    {"MaX-StAlE=7", A, A, 7, A, A, A, 0},
    {"max-stale=x", A, A, A, A, A, A, 0},
    {"max-stale, max-stale=5", A, A, 5, A, A, A, 0},
    {"max-stale=99999999999", A, A, CLAMP, A, A, A, 0},
    {"min-fresh=5, min-fresh=10", A, A, A, 10, A, A, 0},
    {"min-fresh", A, A, A, A, A, A, 0},
    {"min-fresh=-3", A, A, A, A, A, A, 0},
    {"stale-while-revalidate=30, stale-if-error=60", A, A, A, A, 30, 60, 0},
    {"stale-if-error=60, stale-if-error=30, stale-while-revalidate", A, A, A, A, A, 30, 0},
    {"unknown=\"unterminated, max-age=1", A, A, A, A, A, A, 0},
    {"\"\"\"", A, A, A, A, A, A, 0},
    {",,,=,=5,==", A, A, A, A, A, A, 0},
    {"\t", A, A, A, A, A, A, 0},
    {"no-cache\tno-store", A, A, A, A, A, A, NC},
};

START_TEST(cc_parse_table)
{
    const struct cc_case *c = &cc_cases[_i];
    struct tn_header h = {"cache-control", c->v, 13, (uint32_t)strlen(c->v)};
    struct tn_cc cc;
    tn_cc_parse(&h, 1, false, &cc);
    ck_assert_msg(cc.present, "%s", c->v);
    ck_assert_msg(cc.max_age == c->max_age, "%s: max-age %lld", c->v, (long long)cc.max_age);
    ck_assert_msg(cc.s_maxage == c->s_maxage, "%s: s-maxage %lld", c->v, (long long)cc.s_maxage);
    ck_assert_msg(cc.max_stale == c->max_stale, "%s: max-stale %lld", c->v, (long long)cc.max_stale);
    ck_assert_msg(cc.min_fresh == c->min_fresh, "%s: min-fresh %lld", c->v, (long long)cc.min_fresh);
    ck_assert_msg(cc.stale_while_revalidate == c->swr, "%s: swr", c->v);
    ck_assert_msg(cc.stale_if_error == c->sie, "%s: sie", c->v);
    int flags = (cc.no_store ? NS : 0) | (cc.no_cache ? NC : 0) | (cc.is_private ? PRIV : 0) |
                (cc.is_public ? PUB : 0) | (cc.must_revalidate ? MR : 0) | (cc.proxy_revalidate ? PR : 0) |
                (cc.immutable ? IMM : 0) | (cc.only_if_cached ? OIC : 0);
    ck_assert_msg(flags == c->flags, "%s: flags %d, want %d", c->v, flags, c->flags);
}
END_TEST

START_TEST(cc_several_headers_and_pragma)
{
    struct tn_cc cc;
    cc_of("cache-control: max-age=10\nx-other: no-store\ncache-control: no-store, max-age=4", false, &cc);
    ck_assert(cc.present && cc.no_store);
    ck_assert_int_eq(cc.max_age, 4);

    cc_of("x-a: b", true, &cc);
    ck_assert(!cc.present && !cc.no_cache && cc.max_age == A);
    cc_of("pragma: no-cache", true, &cc);
    ck_assert(!cc.present && cc.no_cache); /* HTTP/1.0 clients' reload */
    cc_of("pragma: foo=1, NO-CACHE", true, &cc);
    ck_assert(cc.no_cache);
    cc_of("pragma: no-cache", false, &cc); /* responses: Pragma means nothing */
    ck_assert(!cc.no_cache);
    cc_of("pragma: no-cache\ncache-control: max-age=5", true, &cc);
    ck_assert(cc.present && !cc.no_cache); /* Cache-Control wins over Pragma */
    cc_of("pragma: no-cachex, x-no-cache", true, &cc);
    ck_assert(!cc.no_cache);
    tn_cc_parse(NULL, 0, true, &cc);
    ck_assert(!cc.present && cc.max_age == A && cc.stale_if_error == A);
}
END_TEST

/* --- dates ------------------------------------------------------------------ */

static const struct date_case {
    const char *s;
    int64_t t;
} date_cases[] = {
    {"Sun, 06 Nov 1994 08:49:37 GMT", T0},
    {"Sunday, 06-Nov-94 08:49:37 GMT", T0},
    {"Sun Nov  6 08:49:37 1994", T0},
    {"Sun Nov 06 08:49:37 1994", T0},
    {"sun, 06 nov 1994 08:49:37 gmt", T0},
    {"  Sun, 06 Nov 1994 08:49:37 GMT\t", T0},
    {"Thursday, 01-Jan-30 00:00:00 GMT", 1893456000}, /* 2030: not 50 years ahead */
    {"Monday, 01-Jan-80 00:00:00 GMT", 315532800},    /* 1980, never 2080 */
    {"Thu, 01 Jan 1970 00:00:00 GMT", 0},
    {"Wed, 31 Dec 1969 23:59:59 GMT", 0},
    {"Mon, 01 Jan 0001 00:00:00 GMT", 0},
    {"Fri, 31 Dec 9999 23:59:59 GMT", 253402300799LL},
    {"Tue, 29 Feb 2000 00:00:00 GMT", 951782400},
    {"Sat, 31 Dec 2016 23:59:60 GMT", 1483228800},
    {"Thu, 29 Feb 1900 00:00:00 GMT", -1},
    {"Sun, 31 Feb 1994 08:49:37 GMT", -1},
    {"Sun, 00 Nov 1994 08:49:37 GMT", -1},
    {"Sun, 06 Nov 1994 24:00:00 GMT", -1},
    {"Sun, 06 Nov 1994 08:60:00 GMT", -1},
    {"Sun, 06 Nov 1994 08:49:61 GMT", -1},
    {"Sun, 06 Nov 1994 08:49:37 UTC", -1},
    {"Sun, 06 Nov 1994 08:49:37 GMT x", -1},
    {"Sun, 06 Nov 1994 08:49:37", -1},
    {"Sun, 6 Nov 1994 08:49:37 GMT", -1},
    {"Sun, 06 Nov 94 08:49:37 GMT", -1},
    {"Sun, 06-Nov-1994 08:49:37 GMT", -1},
    {"Sun Nov 6 08:49:37 1994", -1},
    {"Sun, 06 Xyz 1994 08:49:37 GMT", -1},
    {"Foo, 06 Nov 1994 08:49:37 GMT", -1},
    {"Sundae, 06-Nov-94 08:49:37 GMT", -1},
    {", 06 Nov 1994 08:49:37 GMT", -1},
    {"Sun, -6 Nov 1994 08:49:37 GMT", -1},
    {"Sun, 06 Nov 1994 8:49:37 GMT", -1},
    {"0", -1},
    {"-1", -1},
    {"", -1},
    {"Sun", -1},
};

START_TEST(date_parse_table)
{
    const struct date_case *c = &date_cases[_i];
    int64_t t = tn_http_date_parse(c->s, strlen(c->s));
    ck_assert_msg(t == c->t, "%s: %lld, want %lld", c->s, (long long)t, (long long)c->t);
}
END_TEST

START_TEST(date_format_and_round_trip)
{
    char out[30];
    ck_assert_int_eq(tn_http_date_format(T0, out), 29);
    ck_assert_str_eq(out, "Sun, 06 Nov 1994 08:49:37 GMT");
    tn_http_date_format(0, out);
    ck_assert_str_eq(out, "Thu, 01 Jan 1970 00:00:00 GMT");
    tn_http_date_format(-5, out);
    ck_assert_str_eq(out, "Thu, 01 Jan 1970 00:00:00 GMT");
    tn_http_date_format(INT64_MAX, out);
    ck_assert_str_eq(out, "Fri, 31 Dec 9999 23:59:59 GMT");
    tn_http_date_format(951782400, out);
    ck_assert_str_eq(out, "Tue, 29 Feb 2000 00:00:00 GMT");
    for (int64_t t = 0; t < 253402300799LL; t += 7919 * 86400 + 3607) {
        ck_assert_int_eq(tn_http_date_format(t, out), 29);
        ck_assert_int_eq(strlen(out), 29);
        ck_assert_int_eq(tn_http_date_parse(out, 29), t);
    }
    /* a read that stops at len, not at a NUL */
    ck_assert_int_eq(tn_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMTXX", 29), T0);
    ck_assert_int_eq(tn_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", 28), -1);
}
END_TEST

/* --- storing ---------------------------------------------------------------- */

#define NOW      1000000000
#define DATE_NOW "Sun, 09 Sep 2001 01:46:40 GMT" /* NOW */

static struct tn_string_matcher accept_encoding = {.kind = TN_MATCH_EXACT, .value = "accept-encoding", .len = 15};
static const char *vary_tern[] = {"accept-encoding", "x-tenant"};
static const char *types[] = {"text/html", "Application/JSON; charset=utf-8"};
static const char *methods_post[] = {"GET", "POST"};
static const char *methods_head[] = {"HEAD"};
static uint32_t codes_302[] = {302};

enum {
    C_DEFAULT_TTL = 1 << 0, /* default_ttl 5 s */
    C_HALF_SECOND = 1 << 1, /* default_ttl 500 ms */
    C_ONLY_ORIGIN = 1 << 2,
    C_OVERRIDE = 1 << 3, /* ttl_override 3 s */
    C_IGNORE_CC = 1 << 4,
    C_IGNORE_REQ_CC = 1 << 5,
    C_TYPES = 1 << 6,
    C_VARY_TERN = 1 << 7,
    C_VARY_ENVOY = 1 << 8,
    C_POST = 1 << 9,
    C_HEAD_ONLY = 1 << 10,
    C_302 = 1 << 11,
    P_OVERRIDE = 1 << 12, /* per-route ttl_override 7 s */
    P_DEFAULT = 1 << 13,  /* per-route default_ttl 9 s */
    P_UNSET = 1 << 14,    /* a per-route config that overrides nothing */
    C_CDN = 1 << 15,      /* targeted field cdn-cache-control (RFC 9213) */
};

static const char *cdn_only[] = {"cdn-cache-control"};

static void config(int f, struct tn_cache_config *cfg, struct tn_cache_per_route *pr)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->default_ttl_ms = cfg->ttl_override_ms = TN_CACHE_UNSET;
    *pr = (struct tn_cache_per_route){false, TN_CACHE_UNSET, TN_CACHE_UNSET, TN_CACHE_UNSET};
    if (f & C_DEFAULT_TTL)
        cfg->default_ttl_ms = 5000;
    if (f & C_HALF_SECOND)
        cfg->default_ttl_ms = 500;
    cfg->only_if_origin_cacheable = f & C_ONLY_ORIGIN;
    if (f & C_OVERRIDE)
        cfg->ttl_override_ms = 3000;
    cfg->ignore_cache_control = f & C_IGNORE_CC;
    cfg->ignore_request_cache_control = f & C_IGNORE_REQ_CC;
    if (f & C_TYPES)
        cfg->content_types = types, cfg->n_content_types = N(types);
    if (f & C_VARY_TERN)
        cfg->vary_headers = vary_tern, cfg->n_vary_headers = N(vary_tern);
    if (f & C_VARY_ENVOY)
        cfg->allowed_vary = &accept_encoding, cfg->n_allowed_vary = 1;
    if (f & C_POST)
        cfg->request_methods = methods_post, cfg->n_request_methods = N(methods_post);
    if (f & C_HEAD_ONLY)
        cfg->request_methods = methods_head, cfg->n_request_methods = N(methods_head);
    if (f & C_302)
        cfg->response_codes = codes_302, cfg->n_response_codes = 1;
    if (f & P_OVERRIDE)
        pr->ttl_override_ms = 7000;
    if (f & P_DEFAULT)
        pr->default_ttl_ms = 9000;
    if (f & C_CDN)
        cfg->targeted_cc = cdn_only, cfg->n_targeted_cc = 1;
}

static const struct store_case {
    int cfg;
    const char *method, *req;
    int status;
    const char *resp;
    enum tn_storable want;
    int64_t lifetime;
} store_cases[] = {
    {0, "GET", "", 200, "cache-control: max-age=60", TN_STORE_OK, 60},
    {0, "HEAD", "", 200, "cache-control: max-age=60", TN_STORE_OK, 60},
    {0, "POST", "", 200, "cache-control: max-age=60", TN_STORE_NO_METHOD, 0},
    {0, "get", "", 200, "cache-control: max-age=60", TN_STORE_NO_METHOD, 0},
    {0, "GETX", "", 200, "cache-control: max-age=60", TN_STORE_NO_METHOD, 0},
    {0, "", "", 200, "cache-control: max-age=60", TN_STORE_NO_METHOD, 0},
    {C_POST, "POST", "", 200, "cache-control: max-age=60", TN_STORE_NO_METHOD, 0}, /* never unsafe */
    {C_HEAD_ONLY, "GET", "", 200, "cache-control: max-age=60", TN_STORE_NO_METHOD, 0},
    {0, "GET", "", 206, "cache-control: max-age=60", TN_STORE_NO_STATUS, 0},
    {0, "GET", "", 500, "cache-control: max-age=60", TN_STORE_NO_STATUS, 0},
    {0, "GET", "", 302, "cache-control: max-age=60", TN_STORE_NO_STATUS, 0},
    {0, "GET", "", -1, "cache-control: max-age=60", TN_STORE_NO_STATUS, 0},
    {0, "GET", "", 404, "cache-control: max-age=60", TN_STORE_OK, 60},
    {0, "GET", "", 501, "cache-control: max-age=60", TN_STORE_OK, 60},
    {C_302, "GET", "", 302, "cache-control: max-age=60", TN_STORE_OK, 60},
    {C_302, "GET", "", 200, "cache-control: max-age=60", TN_STORE_NO_STATUS, 0},
    {0, "GET", "cache-control: no-store", 200, "cache-control: max-age=60", TN_STORE_NO_STORE, 0},
    {C_IGNORE_REQ_CC, "GET", "cache-control: no-store", 200, "cache-control: max-age=60", TN_STORE_OK, 60},
    {0, "GET", "", 200, "cache-control: max-age=60, no-store", TN_STORE_NO_STORE, 0},
    {0, "GET", "", 200, "cache-control: max-age=60\ncache-control: NO-STORE", TN_STORE_NO_STORE, 0},
    {0, "GET", "", 200, "cache-control: private, max-age=60", TN_STORE_PRIVATE, 0},
    {0, "GET", "", 200, "cache-control: private=\"set-cookie\", max-age=60", TN_STORE_PRIVATE, 0},
    {0, "GET", "authorization: Basic x", 200, "cache-control: max-age=60", TN_STORE_AUTHORIZATION, 0},
    {0, "GET", "authorization: Basic x", 200, "cache-control: max-age=60, public", TN_STORE_OK, 60},
    {0, "GET", "authorization: Basic x", 200, "cache-control: s-maxage=6", TN_STORE_OK, 6},
    {0, "GET", "authorization: Basic x", 200, "cache-control: max-age=6, must-revalidate", TN_STORE_OK, 6},
    {C_IGNORE_CC | C_DEFAULT_TTL, "GET", "authorization: x", 200, "cache-control: public", TN_STORE_AUTHORIZATION, 0},
    {0, "GET", "", 200, "cache-control: max-age=60\nset-cookie: sid=1", TN_STORE_SET_COOKIE, 0},
    {0, "GET", "", 200, "cache-control: max-age=60, public\nset-cookie: a=b", TN_STORE_OK, 60},
    /* freshness */
    {0, "GET", "", 200, "", TN_STORE_NO_FRESHNESS, 0},
    {0, "GET", "", 200, "cache-control: public", TN_STORE_NO_FRESHNESS, 0},
    {C_DEFAULT_TTL, "GET", "", 200, "", TN_STORE_OK, 5},
    {C_HALF_SECOND, "GET", "", 200, "", TN_STORE_OK, 0},
    {C_DEFAULT_TTL | C_ONLY_ORIGIN, "GET", "", 200, "", TN_STORE_NO_FRESHNESS, 0},
    {C_DEFAULT_TTL | C_ONLY_ORIGIN, "GET", "", 200, "cache-control: max-age=60", TN_STORE_OK, 60},
    {C_DEFAULT_TTL | P_DEFAULT, "GET", "", 200, "", TN_STORE_OK, 9},
    {P_DEFAULT, "GET", "", 200, "", TN_STORE_OK, 9},
    {C_DEFAULT_TTL | P_UNSET, "GET", "", 200, "", TN_STORE_OK, 5},
    {0, "GET", "", 200, "cache-control: s-maxage=10, max-age=60", TN_STORE_OK, 10},
    {0, "GET", "", 200, "cache-control: max-age=60\ndate: " DATE_NOW "\nexpires: Sun, 09 Sep 2001 01:48:20 GMT",
     TN_STORE_OK, 60},
    {0, "GET", "", 200, "date: " DATE_NOW "\nexpires: Sun, 09 Sep 2001 01:48:20 GMT", TN_STORE_OK, 100},
    {0, "GET", "", 200, "expires: Sun, 09 Sep 2001 01:48:20 GMT", TN_STORE_OK, 100}, /* Date: response_time */
    {0, "GET", "", 200, "date: Sun, 09 Sep 2001 01:45:00 GMT\nexpires: Sun, 09 Sep 2001 01:48:20 GMT", TN_STORE_OK,
     200},
    {0, "GET", "", 200, "date: " DATE_NOW "\nexpires: Sun, 09 Sep 2001 01:40:00 GMT", TN_STORE_OK, 0},
    {0, "GET", "", 200, "expires: 0", TN_STORE_OK, 0},
    {0, "GET", "", 200, "expires: -1", TN_STORE_OK, 0},
    {0, "GET", "", 200, "expires: ", TN_STORE_OK, 0},
    {0, "GET", "", 200, "expires: Sun, 09 Sep 2001 01:48:20 GMT\nexpires: Sun, 09 Sep 2001 01:48:20 GMT", TN_STORE_OK,
     0},
    {C_DEFAULT_TTL | C_ONLY_ORIGIN, "GET", "", 200, "expires: garbage", TN_STORE_OK, 0},
    {0, "GET", "", 200, "date: garbage\nexpires: Sun, 09 Sep 2001 01:48:20 GMT", TN_STORE_OK, 100},
    {0, "GET", "", 200, "cache-control: max-age=99999999999", TN_STORE_OK, CLAMP},
    {0, "GET", "", 200, "cache-control: max-age=junk", TN_STORE_OK, 0},
    {0, "GET", "", 200, "cache-control: no-cache, max-age=60", TN_STORE_OK, 60},
    /* no-cache without freshness: stored to be validated on every use (Envoy's) */
    {0, "GET", "", 200, "cache-control: no-cache", TN_STORE_OK, 0},
    {0, "GET", "", 200, "cache-control: no-cache=\"set-cookie\"", TN_STORE_OK, 0},
    {C_DEFAULT_TTL, "GET", "", 200, "cache-control: no-cache", TN_STORE_OK, 5},
    {C_DEFAULT_TTL | C_ONLY_ORIGIN, "GET", "", 200, "cache-control: no-cache", TN_STORE_NO_FRESHNESS, 0},
    {0, "GET", "", 200, "cache-control: no-cache, no-store", TN_STORE_NO_STORE, 0},
    /* targeted fields (RFC 9213) */
    {C_CDN, "GET", "", 200, "cdn-cache-control: max-age=30\ncache-control: no-store", TN_STORE_OK, 30},
    {C_CDN, "GET", "", 200, "cdn-cache-control: no-store\ncache-control: max-age=30", TN_STORE_NO_STORE, 0},
    {C_CDN, "GET", "", 200, "cdn-cache-control: private\ncache-control: public, max-age=30", TN_STORE_PRIVATE, 0},
    {0, "GET", "", 200, "cdn-cache-control: max-age=30\ncache-control: no-store", TN_STORE_NO_STORE, 0},
    {C_CDN, "GET", "", 200, "cdn-cache-control: Max-Age=30\ncache-control: max-age=7", TN_STORE_OK, 7},
    {C_CDN, "GET", "", 200, "cdn-cache-control: \ncache-control: max-age=7", TN_STORE_OK, 7},
    {C_CDN, "GET", "", 200, "cdn-cache-control: max-age=30\ndate: " DATE_NOW "\nexpires: Sun, 09 Sep 2001 01:40:00 GMT",
     TN_STORE_OK, 30},
    {C_CDN, "GET", "", 200, "cdn-cache-control: public\ndate: " DATE_NOW "\nexpires: Sun, 09 Sep 2001 01:48:20 GMT",
     TN_STORE_NO_FRESHNESS, 0}, /* Expires counts for nothing beside a targeted field */
    {C_CDN, "GET", "", 200, "cdn-cache-control: no-cache\ncache-control: max-age=60", TN_STORE_OK, 0},
    {C_CDN, "GET", "", 200, "cdn-cache-control: max-age=\"30\"\ncache-control: max-age=60", TN_STORE_OK, 0},
    {C_CDN | C_IGNORE_CC | C_DEFAULT_TTL, "GET", "", 200, "cdn-cache-control: no-store", TN_STORE_OK, 5},
    {C_CDN, "GET", "authorization: x", 200, "cdn-cache-control: s-maxage=9\ncache-control: max-age=60",
     TN_STORE_OK, 9},
    {C_OVERRIDE, "GET", "", 200, "cache-control: max-age=60", TN_STORE_OK, 3},
    {C_OVERRIDE, "GET", "", 200, "", TN_STORE_OK, 3},
    {C_OVERRIDE | P_OVERRIDE, "GET", "", 200, "cache-control: max-age=60", TN_STORE_OK, 7},
    {C_OVERRIDE | P_UNSET, "GET", "", 200, "cache-control: max-age=60", TN_STORE_OK, 3},
    {C_OVERRIDE, "GET", "", 200, "cache-control: max-age=60, no-store", TN_STORE_NO_STORE, 0},
    /* Kong's cache_control: false */
    {C_IGNORE_CC | C_DEFAULT_TTL, "GET", "", 200, "cache-control: no-store, private, max-age=60", TN_STORE_OK, 5},
    {C_IGNORE_CC | C_DEFAULT_TTL, "GET", "", 200, "expires: Sun, 09 Sep 2001 01:48:20 GMT", TN_STORE_OK, 5},
    {C_IGNORE_CC, "GET", "", 200, "cache-control: max-age=60", TN_STORE_NO_FRESHNESS, 0},
    {C_IGNORE_CC | C_DEFAULT_TTL, "GET", "cache-control: no-store", 200, "", TN_STORE_NO_STORE, 0},
    /* content types */
    {C_TYPES, "GET", "", 200, "cache-control: max-age=1\ncontent-type: Text/HTML; charset=utf-8", TN_STORE_OK, 1},
    {C_TYPES, "GET", "", 200, "cache-control: max-age=1\ncontent-type: application/json", TN_STORE_OK, 1},
    {C_TYPES, "GET", "", 200, "cache-control: max-age=1\ncontent-type: image/png", TN_STORE_CONTENT_TYPE, 0},
    {C_TYPES, "GET", "", 200, "cache-control: max-age=1\ncontent-type: text/htmlx", TN_STORE_CONTENT_TYPE, 0},
    {C_TYPES, "GET", "", 200, "cache-control: max-age=1", TN_STORE_CONTENT_TYPE, 0},
    {C_TYPES, "GET", "", 200, "cache-control: max-age=1\ncontent-type: ;text/html", TN_STORE_CONTENT_TYPE, 0},
    {0, "GET", "", 200, "cache-control: max-age=1\ncontent-type: image/png", TN_STORE_OK, 1},
    /* Vary */
    {0, "GET", "", 200, "cache-control: max-age=1\nvary: accept-encoding", TN_STORE_VARY, 0},
    {0, "GET", "", 200, "cache-control: max-age=1\nvary: , ,", TN_STORE_OK, 1},
    {C_VARY_TERN, "GET", "", 200, "cache-control: max-age=1\nvary: *", TN_STORE_VARY, 0},
    {C_VARY_TERN, "GET", "", 200, "cache-control: max-age=1\nvary: Accept-Encoding", TN_STORE_OK, 1},
    {C_VARY_TERN, "GET", "", 200, "cache-control: max-age=1\nvary: accept-encoding, X-Tenant", TN_STORE_OK, 1},
    {C_VARY_TERN, "GET", "", 200, "cache-control: max-age=1\nvary: accept-encoding\nvary: user-agent", TN_STORE_VARY,
     0},
    {C_VARY_TERN, "GET", "", 200, "cache-control: max-age=1\nvary: accept-encoding, *", TN_STORE_VARY, 0},
    {C_VARY_TERN | C_VARY_ENVOY, "GET", "", 200, "cache-control: max-age=1\nvary: x-tenant", TN_STORE_OK, 1},
    {C_VARY_ENVOY, "GET", "", 200, "cache-control: max-age=1\nvary: ACCEPT-ENCODING", TN_STORE_OK, 1},
    {C_VARY_ENVOY, "GET", "", 200, "cache-control: max-age=1\nvary: accept-encodingx", TN_STORE_VARY, 0},
    {C_VARY_ENVOY, "GET", "", 200, "cache-control: max-age=1\nvary: *", TN_STORE_VARY, 0},
    {C_VARY_ENVOY, "GET", "", 200,
     "cache-control: max-age=1\nvary: "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     TN_STORE_VARY, 0},
};

START_TEST(storable_table)
{
    const struct store_case *c = &store_cases[_i];
    struct tn_cache_config cfg;
    struct tn_cache_per_route pr;
    struct tn_header req[8], resp[8];
    struct tn_cache_meta m;
    config(c->cfg, &cfg, &pr);
    size_t nq = headers(c->req, req, N(req)), nr = headers(c->resp, resp, N(resp));
    memset(&m, 0xa5, sizeof(m));
    enum tn_storable r = tn_cache_storable(&cfg, c->cfg & (P_OVERRIDE | P_DEFAULT | P_UNSET) ? &pr : NULL, c->method,
                                           strlen(c->method), req, nq, c->status, resp, nr, NOW - 1, NOW, &m);
    ck_assert_msg(r == c->want, "case %d (%s): %d, want %d", _i, c->resp, r, c->want);
    if (r == TN_STORE_OK) {
        ck_assert_msg(m.lifetime == c->lifetime, "case %d: lifetime %lld, want %lld", _i, (long long)m.lifetime,
                      (long long)c->lifetime);
        ck_assert_int_eq(m.status, c->status);
    } else {
        unsigned char *p = (unsigned char *)&m; /* left untouched */
        for (size_t i = 0; i < sizeof(m); i++)
            ck_assert_int_eq(p[i], 0xa5);
    }
}
END_TEST

static enum tn_storable store(int f, const char *req_spec, const char *resp_spec, struct tn_cache_meta *m)
{
    struct tn_cache_config cfg;
    struct tn_cache_per_route pr;
    struct tn_header req[8], resp[8];
    config(f, &cfg, &pr);
    size_t nq = headers(req_spec, req, N(req)), nr = headers(resp_spec, resp, N(resp));
    return tn_cache_storable(&cfg, NULL, "GET", 3, req, nq, 200, resp, nr, NOW - 2, NOW, m);
}

START_TEST(storable_fills_meta)
{
    struct tn_cache_meta m;
    ck_assert_int_eq(store(0, "",
                           "date: Sun, 09 Sep 2001 01:46:30 GMT\nexpires: Sun, 09 Sep 2001 01:47:30 GMT\n"
                           "last-modified: "
                           "Sun, 06 Nov 1994 08:49:37 GMT\nage: 7\netag: W/\"v1\"\n"
                           "cache-control: public, no-cache, immutable, stale-while-revalidate=30, "
                           "stale-if-error=600",
                           &m),
                     TN_STORE_OK);
    ck_assert_int_eq(m.status, 200);
    ck_assert_int_eq(m.date, NOW - 10);
    ck_assert_int_eq(m.expires, NOW + 50);
    ck_assert_int_eq(m.lifetime, 60);
    ck_assert_int_eq(m.last_modified, T0);
    ck_assert_int_eq(m.age_value, 7);
    ck_assert_int_eq(m.request_time, NOW - 2);
    ck_assert_int_eq(m.response_time, NOW);
    ck_assert_int_eq(m.stale_while_revalidate, 30);
    ck_assert_int_eq(m.stale_if_error, 600);
    ck_assert(!m.must_revalidate && m.no_cache && m.immutable && m.authorization_ok);
    ck_assert_str_eq(m.etag, "W/\"v1\"");

    ck_assert_int_eq(store(0, "", "cache-control: max-age=5", &m), TN_STORE_OK);
    ck_assert_int_eq(m.date, NOW); /* no Date: when it came */
    ck_assert_int_eq(m.expires, -1);
    ck_assert_int_eq(m.last_modified, -1);
    ck_assert_int_eq(m.age_value, 0);
    ck_assert(m.stale_while_revalidate == A && m.stale_if_error == A);
    ck_assert(!m.must_revalidate && !m.no_cache && !m.immutable && !m.authorization_ok);
    ck_assert_str_eq(m.etag, "");

    ck_assert_int_eq(store(0, "", "cache-control: max-age=5, proxy-revalidate\nage: -3\nlast-modified: x", &m),
                     TN_STORE_OK);
    ck_assert(m.must_revalidate && !m.authorization_ok);
    ck_assert_int_eq(m.age_value, 0);
    ck_assert_int_eq(m.last_modified, -1);
    ck_assert_int_eq(store(0, "", "cache-control: max-age=5\nage: 7200, 0", &m), TN_STORE_OK);
    ck_assert_int_eq(m.age_value, 7200); /* the first member (RFC 9111 5.1) */
    ck_assert_int_eq(store(0, "", "cache-control: s-maxage=5\nage: 99999999999999", &m), TN_STORE_OK);
    ck_assert(m.must_revalidate && m.authorization_ok); /* s-maxage implies proxy-revalidate */
    ck_assert_int_eq(m.age_value, CLAMP);
    ck_assert_int_eq(store(0, "", "cache-control: max-age=5, must-revalidate\nexpires: nope", &m), TN_STORE_OK);
    ck_assert(m.must_revalidate && m.authorization_ok);
    ck_assert_int_eq(m.expires, 0);
    ck_assert_int_eq(m.lifetime, 5);

    char big[200];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct tn_header resp[2] = {{"cache-control", "max-age=5", 13, 9}, {"etag", big, 4, 127}};
    struct tn_cache_config cfg;
    struct tn_cache_per_route pr;
    config(0, &cfg, &pr);
    ck_assert_int_eq(tn_cache_storable(&cfg, NULL, "GET", 3, NULL, 0, 200, resp, 2, NOW, NOW, &m), TN_STORE_OK);
    ck_assert_int_eq(strlen(m.etag), 127);
    resp[1].value_len = 128; /* too long to keep: no validator rather than a wrong one */
    ck_assert_int_eq(tn_cache_storable(&cfg, NULL, "GET", 3, NULL, 0, 200, resp, 2, NOW, NOW, &m), TN_STORE_OK);
    ck_assert_str_eq(m.etag, "");

    /* with ignore_cache_control the origin's directives leave no trace */
    ck_assert_int_eq(store(C_IGNORE_CC | C_DEFAULT_TTL, "",
                           "cache-control: no-cache, must-revalidate, immutable, stale-if-error=5", &m),
                     TN_STORE_OK);
    ck_assert(!m.no_cache && !m.must_revalidate && !m.immutable && m.stale_if_error == A);
}
END_TEST

/* --- age -------------------------------------------------------------------- */

static const struct age_case {
    int64_t date, request_time, response_time, age_value, now, want;
} age_cases[] = {
    {100, 100, 100, 0, 100, 0},
    {100, 100, 100, 0, 150, 50},
    {80, 98, 100, 5, 100, 20},                                 /* apparent 20 beats corrected 5 + 2 */
    {80, 98, 100, 30, 100, 32},                                /* corrected: Age plus the response delay */
    {80, 98, 100, 30, 110, 42},                                /* plus the time resident */
    {200, 100, 100, 0, 100, 0},                                /* a Date in the future: apparent age 0 */
    {100, 100, 100, 0, 50, 0},                                 /* a clock that went back: no negative resident time */
    {100, 120, 100, 3, 100, 3},                                /* request_time after response_time: delay 0 */
    {0, 0, 2000000000, CLAMP, 2000000000, CLAMP + 2000000000}, /* corrected: clamped Age plus delay */
};

START_TEST(age_table)
{
    const struct age_case *c = &age_cases[_i];
    struct tn_cache_meta m = {
        .date = c->date, .request_time = c->request_time, .response_time = c->response_time, .age_value = c->age_value};
    ck_assert_int_eq(tn_cache_age(&m, c->now), c->want);
}
END_TEST

/* --- using ------------------------------------------------------------------ */

enum {
    U_STALE_60 = 1 << 0,    /* stale_ttl 60 s */
    U_STALE_5 = 1 << 1,     /* stale_ttl 5 s */
    U_PR_STALE_10 = 1 << 2, /* per-route stale_ttl 10 s */
    U_IGNORE_REFRESH = 1 << 3,
    U_IGNORE_REFRESH_IMM = 1 << 4,
    U_IGNORE_REQ_CC = 1 << 5,
    M_IMMUTABLE = 1 << 6,
    M_MUST_REVALIDATE = 1 << 7,
    M_NO_CACHE = 1 << 8,
    M_SWR_30 = 1 << 9,
    M_SIE_20 = 1 << 10,
    M_SIE_5 = 1 << 11,
    U_STALE_HALF = 1 << 12, /* stale_ttl 500 ms */
    U_KEEP = 1 << 13,       /* keep_stale (Envoy's config) */
};

static const struct use_case {
    int f;
    int64_t lifetime, age;
    const char *req; /* request headers */
    enum tn_cache_use want;
    bool sie; /* tn_cache_stale_if_error */
} use_cases[] = {
    {0, 60, 10, "", TN_USE_FRESH, true},
    {0, 60, 59, "", TN_USE_FRESH, true},
    {0, 60, 60, "", TN_USE_REVALIDATE, false}, /* stale_ttl 0: kept no longer than its lifetime */
    {0, 60, 61, "", TN_USE_UNUSABLE, false},
    {0, 0, 0, "", TN_USE_REVALIDATE, false},
    {U_STALE_HALF, 0, 1, "", TN_USE_UNUSABLE, false},
    {U_STALE_60, 60, 80, "", TN_USE_REVALIDATE, true},
    {U_STALE_60, 60, 120, "", TN_USE_REVALIDATE, true},
    {U_STALE_60, 60, 121, "", TN_USE_UNUSABLE, false},
    {U_STALE_60 | U_PR_STALE_10, 60, 70, "", TN_USE_REVALIDATE, true},
    {U_STALE_60 | U_PR_STALE_10, 60, 71, "", TN_USE_UNUSABLE, false},
    {U_PR_STALE_10, 60, 65, "", TN_USE_REVALIDATE, true},
    /* client refreshes */
    {0, 60, 10, "cache-control: no-cache", TN_USE_REVALIDATE, true},
    {0, 60, 10, "cache-control: max-age=0", TN_USE_REVALIDATE, true},
    {0, 60, 10, "pragma: no-cache", TN_USE_REVALIDATE, true},
    {0, 60, 10, "cache-control: max-age=junk", TN_USE_REVALIDATE, true},
    {U_IGNORE_REFRESH, 60, 10, "cache-control: no-cache", TN_USE_FRESH, true},
    {U_IGNORE_REFRESH, 60, 10, "cache-control: max-age=0", TN_USE_FRESH, true},
    {U_IGNORE_REFRESH_IMM | M_IMMUTABLE, 60, 10, "cache-control: no-cache", TN_USE_FRESH, true},
    {U_IGNORE_REFRESH_IMM, 60, 10, "cache-control: no-cache", TN_USE_REVALIDATE, true},
    {U_IGNORE_REFRESH_IMM | M_IMMUTABLE | U_STALE_60, 60, 70, "cache-control: no-cache", TN_USE_REVALIDATE, true},
    {U_IGNORE_REQ_CC, 60, 10, "cache-control: no-cache", TN_USE_FRESH, true},
    {U_IGNORE_REQ_CC, 60, 10, "pragma: no-cache", TN_USE_FRESH, true},
    {0, 60, 10, "cache-control: max-age=5", TN_USE_REVALIDATE, true},
    {0, 60, 10, "cache-control: max-age=10", TN_USE_FRESH, true},
    {0, 60, 10, "cache-control: max-age=20", TN_USE_FRESH, true},
    {0, 60, 10, "cache-control: max-age=20, max-age=5", TN_USE_REVALIDATE, true},
    {0, 60, 10, "cache-control: min-fresh=55", TN_USE_REVALIDATE, true},
    {0, 60, 10, "cache-control: min-fresh=50", TN_USE_FRESH, true},
    {0, 60, 10, "cache-control: min-fresh=99999999999", TN_USE_REVALIDATE, true},
    {0, 60, 10, "cache-control: only-if-cached", TN_USE_FRESH, true},
    /* the response's own rules */
    {M_NO_CACHE, 60, 10, "", TN_USE_REVALIDATE, false},
    {M_NO_CACHE | U_IGNORE_REFRESH, 60, 10, "", TN_USE_REVALIDATE, false},
    {M_NO_CACHE | M_SIE_20, 60, 10, "", TN_USE_REVALIDATE, true},
    {M_MUST_REVALIDATE, 60, 10, "", TN_USE_FRESH, true},
    {M_MUST_REVALIDATE | U_STALE_60, 60, 70, "cache-control: max-stale", TN_USE_REVALIDATE, false},
    {M_MUST_REVALIDATE | M_SWR_30 | U_STALE_60, 60, 70, "", TN_USE_REVALIDATE, false},
    /* stale use */
    {U_STALE_60, 60, 70, "cache-control: max-stale=10", TN_USE_STALE_OK, true},
    {U_STALE_60, 60, 70, "cache-control: max-stale=9", TN_USE_REVALIDATE, true},
    {U_STALE_60, 60, 70, "cache-control: max-stale", TN_USE_STALE_OK, true},
    {U_STALE_60, 60, 70, "cache-control: max-stale=x", TN_USE_REVALIDATE, true},
    {U_STALE_60 | U_IGNORE_REQ_CC, 60, 70, "cache-control: max-stale", TN_USE_REVALIDATE, true},
    {U_STALE_5, 60, 70, "cache-control: max-stale", TN_USE_UNUSABLE, false},
    {U_STALE_60, 60, 70, "cache-control: max-stale, max-age=5", TN_USE_REVALIDATE, true},
    {U_STALE_60 | M_SWR_30, 60, 70, "", TN_USE_STALE_WHILE_REVALIDATE, true},
    {U_STALE_60 | M_SWR_30, 60, 90, "", TN_USE_STALE_WHILE_REVALIDATE, true},
    {U_STALE_60 | M_SWR_30, 60, 91, "", TN_USE_REVALIDATE, true},
    {U_STALE_60 | M_SWR_30, 60, 70, "cache-control: max-stale=20", TN_USE_STALE_OK, true},
    {U_STALE_60 | M_SWR_30, 60, 70, "cache-control: no-cache", TN_USE_REVALIDATE, true},
    {U_STALE_5 | M_SWR_30, 60, 70, "", TN_USE_UNUSABLE, false},
    /* stale-if-error */
    {U_STALE_60 | M_SIE_5, 60, 70, "", TN_USE_REVALIDATE, false},
    {U_STALE_60 | M_SIE_20, 60, 70, "", TN_USE_REVALIDATE, true},
    {U_STALE_60 | M_SIE_5, 60, 70, "cache-control: stale-if-error=20", TN_USE_REVALIDATE, true},
    {U_STALE_60 | M_SIE_5 | U_IGNORE_REQ_CC, 60, 70, "cache-control: stale-if-error=20", TN_USE_REVALIDATE, false},
    {U_STALE_60, 60, 70, "cache-control: stale-if-error=5", TN_USE_REVALIDATE, false},
    {U_STALE_60, 60, 70, "cache-control: stale-if-error=10", TN_USE_REVALIDATE, true},
    {U_STALE_5 | M_SIE_20, 60, 70, "", TN_USE_UNUSABLE, false},
    /* keep_stale: kept to be revalidated, never served stale unless the response says so */
    {U_KEEP, 60, 10, "", TN_USE_FRESH, true},
    {U_KEEP, 60, 61, "", TN_USE_REVALIDATE, false},
    {U_KEEP, 60, 100000000, "", TN_USE_REVALIDATE, false},
    {U_KEEP, 0, 0, "", TN_USE_REVALIDATE, false},
    {U_KEEP | M_NO_CACHE, 0, 500, "", TN_USE_REVALIDATE, false},
    {U_KEEP | M_SWR_30, 60, 70, "", TN_USE_STALE_WHILE_REVALIDATE, false},
    {U_KEEP | M_SIE_20, 60, 70, "", TN_USE_REVALIDATE, true},
    {U_KEEP | M_SIE_20, 60, 90, "", TN_USE_REVALIDATE, false},
    {U_KEEP, 60, 1000, "cache-control: max-stale", TN_USE_STALE_OK, false},
    {U_KEEP | U_PR_STALE_10, 60, 70, "", TN_USE_REVALIDATE, true}, /* the route's stale_ttl wins */
    {U_KEEP | U_PR_STALE_10, 60, 71, "", TN_USE_UNUSABLE, false},
};

static void use_setup(const struct use_case *c, struct tn_cache_config *cfg, struct tn_cache_per_route *pr,
                      struct tn_cache_meta *m)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->default_ttl_ms = cfg->ttl_override_ms = TN_CACHE_UNSET;
    *pr = (struct tn_cache_per_route){false, TN_CACHE_UNSET, TN_CACHE_UNSET, TN_CACHE_UNSET};
    cfg->stale_ttl_ms = c->f & U_STALE_60 ? 60000 : c->f & U_STALE_5 ? 5000 : c->f & U_STALE_HALF ? 500 : 0;
    if (c->f & U_PR_STALE_10)
        pr->stale_ttl_ms = 10000;
    cfg->ignore_client_refresh = c->f & U_IGNORE_REFRESH;
    cfg->ignore_client_refresh_immutable = c->f & U_IGNORE_REFRESH_IMM;
    cfg->ignore_request_cache_control = c->f & U_IGNORE_REQ_CC;
    cfg->keep_stale = c->f & U_KEEP;
    *m = (struct tn_cache_meta){.status = 200,
                                .date = NOW,
                                .request_time = NOW,
                                .response_time = NOW,
                                .expires = -1,
                                .last_modified = -1,
                                .lifetime = c->lifetime};
    m->immutable = c->f & M_IMMUTABLE;
    m->must_revalidate = c->f & M_MUST_REVALIDATE;
    m->no_cache = c->f & M_NO_CACHE;
    m->stale_while_revalidate = c->f & M_SWR_30 ? 30 : A;
    m->stale_if_error = c->f & M_SIE_20 ? 20 : c->f & M_SIE_5 ? 5 : A;
}

START_TEST(usable_table)
{
    const struct use_case *c = &use_cases[_i];
    struct tn_cache_config cfg;
    struct tn_cache_per_route pr;
    struct tn_cache_meta m;
    struct tn_cc cc;
    use_setup(c, &cfg, &pr, &m);
    cc_of(c->req, true, &cc);
    enum tn_cache_use u = tn_cache_usable(&cfg, &pr, &m, &cc, NOW + c->age);
    ck_assert_msg(u == c->want, "case %d (%s, age %lld): %d, want %d", _i, c->req, (long long)c->age, u, c->want);
    bool sie = tn_cache_stale_if_error(&cfg, &pr, &m, &cc, NOW + c->age);
    ck_assert_msg(sie == c->sie, "case %d (%s, age %lld): stale-if-error %d", _i, c->req, (long long)c->age, sie);
    if (!(c->f & U_PR_STALE_10)) { /* a per-route config that overrides nothing changes nothing */
        ck_assert_int_eq(tn_cache_usable(&cfg, NULL, &m, &cc, NOW + c->age), u);
        ck_assert_int_eq(tn_cache_stale_if_error(&cfg, NULL, &m, &cc, NOW + c->age), sie);
    }
}
END_TEST

START_TEST(usable_without_request_directives)
{
    struct tn_cache_config cfg;
    struct tn_cache_per_route pr;
    struct tn_cache_meta m;
    struct use_case c = {U_STALE_60, 60, 0, "", TN_USE_FRESH, true};
    use_setup(&c, &cfg, &pr, &m);
    ck_assert_int_eq(tn_cache_usable(&cfg, NULL, &m, NULL, NOW + 10), TN_USE_FRESH);
    ck_assert_int_eq(tn_cache_usable(&cfg, NULL, &m, NULL, NOW + 70), TN_USE_REVALIDATE);
    ck_assert(tn_cache_stale_if_error(&cfg, NULL, &m, NULL, NOW + 70));
    ck_assert_int_eq(tn_cache_usable(&cfg, NULL, &m, NULL, NOW + 121), TN_USE_UNUSABLE);
}
END_TEST

/* --- conditional requests --------------------------------------------------- */

static const struct cond_case {
    const char *etag;
    int64_t last_modified;
    const char *req;
    bool want;
} cond_cases[] = {
    {"\"a\"", -1, "", false},
    {"\"a\"", -1, "if-none-match: \"a\"", true},
    {"\"a\"", -1, "if-none-match: W/\"a\"", true},
    {"W/\"a\"", -1, "if-none-match: \"a\"", true},
    {"W/\"a\"", -1, "if-none-match: W/\"a\"", true},
    {"\"a\"", -1, "if-none-match: \"A\"", false},
    {"\"a\"", -1, "if-none-match: \"b\"", false},
    {"\"a\"", -1, "if-none-match: \"b\", \"a\"", true},
    {"\"a\"", -1, "if-none-match: \"b\",\"a\"", true},
    {"\"a\"", -1, "if-none-match: \"x,y\", W/\"a\"", true},
    {"\"a\"", -1, "if-none-match: \"b\"\nif-none-match: \"a\"", true},
    {"\"a\"", -1, "if-none-match: *", true},
    {"", -1, "if-none-match: *", true},
    {"\"a\"", -1, "if-none-match:  * ", true},
    {"\"a\"", -1, "if-none-match: *, \"b\"", false},
    {"\"a\"", -1, "if-none-match: a", false},
    {"\"a\"", -1, "if-none-match: \"a", false},
    {"\"a\"", -1, "if-none-match: w/\"a\"", false},
    {"\"a\"", -1, "if-none-match: junk, \"a\"", true},
    {"\"a\"", -1, "if-none-match: ", false},
    {"", -1, "if-none-match: \"\"", false},
    {"\"\"", -1, "if-none-match: \"\"", true},
    {"", -1, "if-none-match: \"a\"", false},
    /* If-None-Match decides alone when present */
    {"\"a\"", T0, "if-none-match: \"b\"\nif-modified-since: Sun, 06 Nov 1994 08:49:37 GMT", false},
    {"\"a\"", T0, "if-modified-since: Sun, 06 Nov 1994 08:49:37 GMT", true},
    {"\"a\"", T0, "if-modified-since: Sun, 06 Nov 1994 08:49:36 GMT", false},
    {"\"a\"", T0, "if-modified-since: Sun, 06 Nov 1994 08:49:38 GMT", true},
    {"\"a\"", T0, "if-modified-since: Sun Nov  6 08:49:37 1994", true},
    {"\"a\"", T0, "if-modified-since: yesterday", false},
    {"\"a\"", T0, "if-modified-since: ", false},
    /* no Last-Modified: Date (NOW) */
    {"", -1, "if-modified-since: " DATE_NOW, true},
    {"", -1, "if-modified-since: Sun, 09 Sep 2001 01:46:39 GMT", false},
};

START_TEST(not_modified_table)
{
    const struct cond_case *c = &cond_cases[_i];
    struct tn_cache_meta m = {.date = NOW, .last_modified = c->last_modified, .response_time = NOW};
    struct tn_header req[4];
    strcpy(m.etag, c->etag);
    size_t n = headers(c->req, req, N(req));
    ck_assert_msg(tn_cache_not_modified(&m, req, n) == c->want, "case %d: %s", _i, c->req);
}
END_TEST

/* --- ranges and media types ------------------------------------------------- */

static const struct range_case {
    const char *v;
    uint64_t total;
    int want;
    uint64_t first, last;
} range_cases[] = {
    {"bytes=0-9", 100, 0, 0, 9},
    {"bytes=90-", 100, 0, 90, 99},
    {"bytes=-10", 100, 0, 90, 99},
    {"bytes=-1000", 100, 0, 0, 99},
    {"bytes=-100", 100, 0, 0, 99},
    {"bytes=0-1000", 100, 0, 0, 99},
    {"bytes=99-99", 100, 0, 99, 99},
    {"bytes=0-0", 1, 0, 0, 0},
    {"Bytes=1-2", 100, 0, 1, 2},
    {"  bytes = 1-2 ", 100, 0, 1, 2},
    {"bytes=1-2,", 100, 0, 1, 2},
    {"bytes=, 1-2", 100, 0, 1, 2},
    {"bytes=0-99999999999999999999999", 100, 0, 0, 99},
    {"bytes=-99999999999999999999999", 100, 0, 0, 99},
    {"bytes=0-18446744073709551615", UINT64_MAX, 0, 0, UINT64_MAX - 1},
    {"bytes=100-", 100, 1, 0, 0},
    {"bytes=100-200", 100, 1, 0, 0},
    {"bytes=-0", 100, 1, 0, 0},
    {"bytes=99999999999999999999999-", 100, 1, 0, 0},
    {"bytes=0-", 0, 1, 0, 0},
    {"bytes=-5", 0, 1, 0, 0},
    {"bytes=5-4", 100, -1, 0, 0},
    {"bytes=0-1,5-6", 100, -1, 0, 0},
    {"bytes=0-1, 0-1", 100, -1, 0, 0},
    {"items=0-1", 100, -1, 0, 0},
    {"bytes", 100, -1, 0, 0},
    {"bytes=", 100, -1, 0, 0},
    {"bytes=,", 100, -1, 0, 0},
    {"bytes=-", 100, -1, 0, 0},
    {"bytes=--1", 100, -1, 0, 0},
    {"bytes=a-b", 100, -1, 0, 0},
    {"bytes=1-2-3", 100, -1, 0, 0},
    {"bytes=+1-2", 100, -1, 0, 0},
    {"bytes=0x1-2", 100, -1, 0, 0},
    {"bytes=1 -2", 100, -1, 0, 0},
    {"bytes=1", 100, -1, 0, 0},
    {"bytesx=1-2", 100, -1, 0, 0},
    {"", 100, -1, 0, 0},
};

START_TEST(range_table)
{
    const struct range_case *c = &range_cases[_i];
    uint64_t first = 12345, last = 67890;
    int r = tn_cache_range(c->v, strlen(c->v), c->total, &first, &last);
    ck_assert_msg(r == c->want, "%s: %d, want %d", c->v, r, c->want);
    if (r == 0) {
        ck_assert_msg(first == c->first && last == c->last, "%s: [%llu, %llu]", c->v, (unsigned long long)first,
                      (unsigned long long)last);
    } else {
        ck_assert(first == 12345 && last == 67890); /* left untouched */
    }
}
END_TEST

/* --- Age, targeted fields, 304 merges, invalidation ------------------------- */

static const struct agev_case {
    const char *h;
    int64_t want;
} agev_cases[] = {
    {"age: 7200, 0", 7200},
    {"age: 7200,0", 7200},
    {"age: 0, 7200", 0},
    {"age: , 5", 5},
    {"age:  12 ", 12},
    {"age: 7\nage: 9", 7},
    {"x-age: 9", 0},
    {"age: ", 0},
    {"age: abc", 0},
    {"age: 10abc", 0},
    {"age: 10 20", 0},
    {"age: -5", 0},
    {"age: 1.5", 0},
    {"age: \"5\"", 0},
    {"age: abc, 5", 0}, /* the first member is invalid: the field is ignored, not the next member used */
    {"age: 2147483648", CLAMP},
    {"age: 99999999999999999999", CLAMP},
};

START_TEST(age_value_table)
{
    struct tn_header h[4];
    size_t n = headers(agev_cases[_i].h, h, N(h));
    ck_assert_msg(tn_cache_age_value(h, n) == agev_cases[_i].want, "%s: %lld", agev_cases[_i].h,
                  (long long)tn_cache_age_value(h, n));
}
END_TEST

static const struct tgt_case {
    const char *v;
    bool valid;
    int64_t max_age, s_maxage;
    int flags;
} tgt_cases[] = {
    {"max-age=60", true, 60, A, 0},
    {"  max-age=60  ", true, 60, A, 0},
    {"max-age=60, no-store", true, 60, A, NS},
    {"max-age=60,\tno-store", true, 60, A, NS},
    {"max-age=60;foo=bar, private", true, 60, A, PRIV},
    {"private;a;b=?0, max-age=1", true, 1, A, PRIV},
    {"no-store=?0, max-age=5", true, 5, A, 0},
    {"no-store=?1", true, A, A, NS},
    {"public=?1, immutable", true, A, A, PUB | IMM},
    {"private=\"set-cookie\"", true, A, A, PRIV},
    {"public=\"x\"", true, A, A, 0}, /* the wrong type: not public */
    {"max-age=\"60\"", true, 0, A, 0},
    {"max-age=-1", true, 0, A, 0},
    {"max-age=1.5", true, 0, A, 0},
    {"max-age=tok", true, 0, A, 0},
    {"max-age=?1", true, 0, A, 0}, /* a Boolean max-age: a bare "max-age", stale */
    {"max-age=(1 2), public", true, 0, A, PUB},
    {"s-maxage=30, must-revalidate", true, A, 30, MR},
    {"max-age=60,max-age=30", true, 30, A, 0},
    {"a=:aGVsbG8=:, max-age=3", true, 3, A, 0},
    {"a=tok/en:x, b=*x, c=-12.345, max-age=3", true, 3, A, 0},
    {"a=(\"x\" y;p=1);q, max-age=3", true, 3, A, 0},
    {"max-age=999999999999999", true, CLAMP, A, 0},
    {"max-age=9999999999999999", false, A, A, 0}, /* 16 digits: not an Integer */
    {"Max-Age=60", false, A, A, 0},
    {"", false, A, A, 0},
    {"   ", false, A, A, 0},
    {"max-age=60,", false, A, A, 0},
    {",max-age=60", false, A, A, 0},
    {"max-age=60 no-store", false, A, A, 0},
    {"max-age=60;", false, A, A, 0},
    {"max-age=", false, A, A, 0},
    {"max-age=1e3", false, A, A, 0},
    {"max-age=1.2345", false, A, A, 0},
    {"a=\"bad\\x\"", false, A, A, 0},
    {"a=\"open", false, A, A, 0},
    {"a=(1 2", false, A, A, 0},
    {"a=:abc", false, A, A, 0},
    {"a=?2", false, A, A, 0},
    {"a=@", false, A, A, 0},
};

START_TEST(targeted_table)
{
    const struct tgt_case *c = &tgt_cases[_i];
    struct tn_header h = {"cdn-cache-control", c->v, 17, (uint32_t)strlen(c->v)};
    struct tn_cc cc;
    memset(&cc, 0xa5, sizeof(cc));
    bool ok = tn_cc_parse_targeted(&h, 1, cdn_only, 1, &cc);
    ck_assert_msg(ok == c->valid, "%s: %d", c->v, ok);
    if (!ok) {
        unsigned char *p = (unsigned char *)&cc; /* left untouched */
        for (size_t i = 0; i < sizeof(cc); i++)
            ck_assert_int_eq(p[i], 0xa5);
        return;
    }
    ck_assert(cc.present);
    ck_assert_msg(cc.max_age == c->max_age, "%s: max-age %lld", c->v, (long long)cc.max_age);
    ck_assert_msg(cc.s_maxage == c->s_maxage, "%s: s-maxage %lld", c->v, (long long)cc.s_maxage);
    int flags = (cc.no_store ? NS : 0) | (cc.no_cache ? NC : 0) | (cc.is_private ? PRIV : 0) |
                (cc.is_public ? PUB : 0) | (cc.must_revalidate ? MR : 0) | (cc.immutable ? IMM : 0);
    ck_assert_msg(flags == c->flags, "%s: flags %d, want %d", c->v, flags, c->flags);
}
END_TEST

START_TEST(targeted_lists)
{
    static const char *both[] = {"edge-cache-control", "cdn-cache-control"};
    struct tn_header h[8];
    struct tn_cc cc;
    /* several lines of one field combine; one bad line spoils the field */
    size_t n = headers("cdn-cache-control: max-age=60\ncache-control: no-store\ncdn-cache-control: private", h, N(h));
    ck_assert(tn_cc_parse_targeted(h, n, cdn_only, 1, &cc));
    ck_assert(cc.max_age == 60 && cc.is_private && !cc.no_store);
    n = headers("cdn-cache-control: max-age=60\ncdn-cache-control: Bad", h, N(h));
    ck_assert(!tn_cc_parse_targeted(h, n, cdn_only, 1, &cc));
    /* the first listed field with a valid value wins; an invalid one is skipped */
    n = headers("cdn-cache-control: max-age=60\nedge-cache-control: max-age=5", h, N(h));
    ck_assert(tn_cc_parse_targeted(h, n, both, 2, &cc) && cc.max_age == 5);
    n = headers("cdn-cache-control: max-age=60\nedge-cache-control: MAX-AGE=5", h, N(h));
    ck_assert(tn_cc_parse_targeted(h, n, both, 2, &cc) && cc.max_age == 60);
    n = headers("cache-control: max-age=60", h, N(h));
    ck_assert(!tn_cc_parse_targeted(h, n, both, 2, &cc));
    ck_assert(!tn_cc_parse_targeted(h, n, NULL, 0, &cc));
}
END_TEST

static bool hdr_is(const struct tn_header *h, const char *name, const char *value)
{
    return h->name_len == strlen(name) && memcmp(h->name, name, h->name_len) == 0 &&
           h->value_len == strlen(value) && memcmp(h->value, value, h->value_len) == 0;
}

START_TEST(merge_304)
{
    struct tn_header st[8], rs[8], out[16];
    size_t n_meta;
    size_t ns = headers("cache-control: max-age=5\ncontent-type: text/a\netag: \"1\"\nx-a: 1\nx-a: 2\n"
                        "date: Sun, 09 Sep 2001 01:46:30 GMT",
                        st, N(st));
    size_t nr = headers("content-type: text/b\netag: \"2\"\nx-a: 3\nage: 4\ncontent-length: 0\nx-cache-status: Hit\n"
                        "x-envoy-upstream-service-time: 3",
                        rs, N(rs));
    size_t n = tn_cache_merge_304(st, ns, rs, nr, out, &n_meta);
    ck_assert_uint_eq(n, 4);
    ck_assert(hdr_is(&out[0], "cache-control", "max-age=5"));
    ck_assert(hdr_is(&out[1], "content-type", "text/b")); /* the 304's Content-Type replaces the stored one */
    ck_assert(hdr_is(&out[2], "etag", "\"2\""));
    ck_assert(hdr_is(&out[3], "x-a", "3")); /* every stored x-a replaced */
    ck_assert_uint_eq(n_meta, 5);          /* the 304's Age counts for the age, is not stored */
    ck_assert(hdr_is(&out[4], "age", "4"));
    /* the stored Date went with the 304 that had none: it is as new as the 304 */

    nr = headers("date: Sun, 09 Sep 2001 01:46:40 GMT", rs, N(rs));
    n = tn_cache_merge_304(st, ns, rs, nr, out, &n_meta);
    ck_assert_uint_eq(n, 6);
    ck_assert_uint_eq(n_meta, 6);
    ck_assert(hdr_is(&out[1], "content-type", "text/a")); /* kept when the 304 has none */
    ck_assert(hdr_is(&out[5], "date", "Sun, 09 Sep 2001 01:46:40 GMT"));
    n = tn_cache_merge_304(st, ns, NULL, 0, out, &n_meta);
    ck_assert_uint_eq(n, 5);

    /* the refreshed entry's age counts the 304's Age */
    struct tn_cache_config cfg;
    struct tn_cache_per_route pr;
    struct tn_cache_meta m;
    config(0, &cfg, &pr);
    nr = headers("age: 3000, 0\ndate: " DATE_NOW, rs, N(rs));
    n = tn_cache_merge_304(st, ns, rs, nr, out, &n_meta);
    ck_assert_int_eq(tn_cache_storable(&cfg, NULL, "GET", 3, NULL, 0, 200, out, n_meta, NOW, NOW, &m), TN_STORE_OK);
    ck_assert_int_eq(m.age_value, 3000);
    ck_assert_int_eq(m.lifetime, 5);
}
END_TEST

START_TEST(expire_and_methods)
{
    struct tn_cache_config cfg;
    struct tn_cache_per_route pr;
    struct tn_cache_meta m = {.date = NOW, .request_time = NOW, .response_time = NOW, .lifetime = 60};
    config(0, &cfg, &pr);
    ck_assert_uint_eq(tn_cache_expire_ms(&cfg, NULL, &m, NOW * 1000ull), NOW * 1000ull + 60000 + 1);
    cfg.stale_ttl_ms = 5000;
    ck_assert_uint_eq(tn_cache_expire_ms(&cfg, NULL, &m, NOW * 1000ull + 10000), NOW * 1000ull + 65000 + 1);
    ck_assert_uint_eq(tn_cache_expire_ms(&cfg, NULL, &m, NOW * 1000ull + 90000), NOW * 1000ull + 95000 + 1);
    cfg.keep_stale = true;
    ck_assert_uint_eq(tn_cache_expire_ms(&cfg, NULL, &m, NOW * 1000ull), UINT64_MAX);
    ck_assert_uint_eq(tn_cache_expire_ms(&cfg, &pr, &m, NOW * 1000ull), UINT64_MAX);
    pr.stale_ttl_ms = 1000; /* the route's stale_ttl wins over keeping */
    ck_assert_uint_eq(tn_cache_expire_ms(&cfg, &pr, &m, NOW * 1000ull), NOW * 1000ull + 61000 + 1);

    static const char *const safe[] = {"GET", "HEAD", "OPTIONS", "TRACE"};
    static const char *const unsafe[] = {"POST", "PUT", "DELETE", "PATCH", "PURGE", "MKCOL", "get", "", "GETX"};
    for (size_t i = 0; i < N(safe); i++)
        ck_assert(tn_cache_method_safe(safe[i], strlen(safe[i])));
    for (size_t i = 0; i < N(unsafe); i++)
        ck_assert_msg(!tn_cache_method_safe(unsafe[i], strlen(unsafe[i])), "%s", unsafe[i]);
}
END_TEST

static const struct origin_case {
    const char *scheme, *host, *base, *ref, *want; /* want "": not same-origin */
} origin_cases[] = {
    {"http", "example.com:8080", "/a/b/c?x=1", "/p?q", "/p?q"},
    {"http", "example.com:8080", "/a/b/c?x=1", "  /p  ", "/p"},
    {"http", "example.com:8080", "/a/b/c?x=1", "/p#frag", "/p"},
    {"http", "example.com:8080", "/a/b/c?x=1", "http://example.com:8080/p", "/p"},
    {"http", "example.com:8080", "/a/b/c?x=1", "HTTP://EXAMPLE.com:8080/p?z#f", "/p?z"},
    {"http", "Example.COM:8080", "/a/b/c?x=1", "http://example.com:8080/p", "/p"},
    {"http", "example.com:8080", "/a/b/c?x=1", "//example.com:8080/p", "/p"},
    {"http", "example.com:8080", "/a/b/c?x=1", "http://example.com:8080", "/"},
    {"http", "example.com:8080", "/a/b/c?x=1", "http://example.com:8080?x", "/?x"},
    {"http", "example.com:8080", "/a/b/c?x=1", "d", "/a/b/d"},
    {"http", "example.com:8080", "/a/b/c?x=1", "d/e?f", "/a/b/d/e?f"},
    {"http", "example.com:8080", "/a/b/c?x=1", "?y", "/a/b/c?y"},
    {"http", "example.com:8080", "/a/b/c?x=1", "", "/a/b/c?x=1"},
    {"http", "example.com:8080", "c", "d", "/d"},
    {"http", "example.com:8080", "/a/b/c?x=1", "http://example.com/p", ""},
    {"http", "example.com:8080", "/a/b/c?x=1", "https://example.com:8080/p", ""},
    {"http", "example.com:8080", "/a/b/c?x=1", "http://other.com:8080/p", ""},
    {"http", "example.com:8080", "/a/b/c?x=1", "//other.com:8080/p", ""},
    {"http", "example.com:8080", "/a/b/c?x=1", "http://example.com.evil:8080/p", ""},
    {"http", "example.com:8080", "/a/b/c?x=1", "mailto:x@example.com", ""},
    {"http", "example.com:8080", "/a/b/c?x=1", "http://u@example.com:8080/p", ""},
    {"http", "example.com:8080", "/a/b/c?x=1", "http:/p", ""},
    {"http", "example.com:8080", "/a/b/c?x=1", "/p q", ""},
    {"http", "example.com:8080", "/a/b/c?x=1", "http://example.com:99999/p", ""},
    {"http", "example.com:8080", "/a/b/c?x=1", "http://example.com:8o8o/p", ""},
    {"http", "example.com:8080", "/a/b/c?x=1", "http://:8080/p", ""},
    {"http", "example.com", "/", "http://example.com:80/x", "/x"},
    {"http", "example.com", "/", "http://example.com:/x", "/x"},
    {"http", "example.com:80", "/", "http://example.com/x", "/x"},
    {NULL, "example.com", "/", "http://example.com/x", "/x"},
    {"https", "example.com", "/", "https://example.com:443/x", "/x"},
    {"https", "example.com", "/", "http://example.com/x", ""},
    {"https", "example.com", "/", "//example.com/x", "/x"},
    {"http", "[::1]:8080", "/", "http://[::1]:8080/v", "/v"},
    {"http", "[::1]:8080", "/", "http://[::1]/v", ""},
    {"http", "[::1]", "/", "http://[::1]/v", "/v"},
};

START_TEST(same_origin_table)
{
    const struct origin_case *c = &origin_cases[_i];
    char out[64];
    size_t n = tn_cache_same_origin_path(c->ref, strlen(c->ref), c->scheme, c->host, strlen(c->host), c->base,
                                         strlen(c->base), out, sizeof(out));
    ck_assert_msg(n == strlen(c->want) && memcmp(out, c->want, n) == 0, "%s against %s%s: '%.*s', want '%s'", c->ref,
                  c->host, c->base, (int)n, out, c->want);
}
END_TEST

START_TEST(same_origin_room)
{
    char out[4];
    ck_assert_uint_eq(tn_cache_same_origin_path("/abcd", 5, "http", "h", 1, "/", 1, out, 4), 0);
    ck_assert_uint_eq(tn_cache_same_origin_path("/abc", 4, "http", "h", 1, "/", 1, out, 4), 4);
    ck_assert_uint_eq(tn_cache_same_origin_path("abcd", 4, "http", "h", 1, "/", 1, out, 4), 0);
}
END_TEST

static const struct mt_case {
    const char *v;
    size_t cap;
    const char *want;
} mt_cases[] = {
    {"Text/HTML; charset=utf-8", 64, "text/html"},
    {"  text/plain  ", 64, "text/plain"},
    {"text / html", 64, "text/html"},
    {"application/JSON;;", 64, "application/json"},
    {"image/png", 64, "image/png"},
    {"", 64, ""},
    {";x=y", 64, ""},
    {"   ", 64, ""},
    {"a/b", 4, "a/b"},
    {"a/b", 3, ""},
    {"a/b", 0, ""},
};

START_TEST(media_type_table)
{
    const struct mt_case *c = &mt_cases[_i];
    char out[64];
    memset(out, 'z', sizeof(out));
    size_t n = tn_cache_media_type(c->v, strlen(c->v), out, c->cap);
    ck_assert_msg(n == strlen(c->want), "%s: %zu", c->v, n);
    if (n > 0)
        ck_assert_str_eq(out, c->want);
    if (c->cap == 0)
        ck_assert_int_eq(out[0], 'z'); /* nothing written where there is no room */
}
END_TEST

Suite *cache_policy_suite(void)
{
    Suite *s = suite_create("cache_policy");
    TCase *tc = tcase_create("cache_policy");
    tcase_add_loop_test(tc, cc_parse_table, 0, N(cc_cases));
    tcase_add_test(tc, cc_several_headers_and_pragma);
    tcase_add_loop_test(tc, date_parse_table, 0, N(date_cases));
    tcase_add_test(tc, date_format_and_round_trip);
    tcase_add_loop_test(tc, storable_table, 0, N(store_cases));
    tcase_add_test(tc, storable_fills_meta);
    tcase_add_loop_test(tc, age_table, 0, N(age_cases));
    tcase_add_loop_test(tc, usable_table, 0, N(use_cases));
    tcase_add_test(tc, usable_without_request_directives);
    tcase_add_loop_test(tc, not_modified_table, 0, N(cond_cases));
    tcase_add_loop_test(tc, range_table, 0, N(range_cases));
    tcase_add_loop_test(tc, media_type_table, 0, N(mt_cases));
    tcase_add_loop_test(tc, age_value_table, 0, N(agev_cases));
    tcase_add_loop_test(tc, targeted_table, 0, N(tgt_cases));
    tcase_add_test(tc, targeted_lists);
    tcase_add_test(tc, merge_304);
    tcase_add_test(tc, expire_and_methods);
    tcase_add_loop_test(tc, same_origin_table, 0, N(origin_cases));
    tcase_add_test(tc, same_origin_room);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);
    return s;
}
