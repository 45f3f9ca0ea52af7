/* Route matching, weighted picks, path rewrites and redirect Locations, on
 * tables compiled from YAML the way a user writes them. */
#include <stdio.h>
#include <string.h>

#include "filters/route_match.h"
#include "suites.h"
#include "api/pb/pbconv.h"

static struct tn_err err;

static struct tn_route_table *routes(const char *yaml)
{
    tn_err_init(&err);
    tn_pb_route_config *pb = (void *)tn_pbconv_yaml_msg(
        yaml, strlen(yaml), &envoy__config__route__v3__route_configuration__descriptor, &err);
    ck_assert_msg(pb != NULL, "%s", err.msg);
    struct tn_route_table *t = tn_route_table_compile(pb, &err);
    protobuf_c_message_free_unpacked(&pb->base, NULL);
    ck_assert_msg(t != NULL, "%s", err.msg);
    return t;
}

/* One vhost for every host, holding the given routes. */
static struct tn_route_table *one_vhost(const char *routes_yaml)
{
    char yaml[8192];
    snprintf(yaml, sizeof(yaml), "virtual_hosts:\n- name: v\n  domains: ['*']\n  routes:\n%s", routes_yaml);
    return routes(yaml);
}

static struct tn_request_view req(const char *method, const char *path)
{
    return (struct tn_request_view){.method = method,
                                    .method_len = strlen(method),
                                    .path = path,
                                    .path_len = strlen(path),
                                    .host = "example.com",
                                    .host_len = strlen("example.com"),
                                    .scheme = "http"};
}

static struct tn_header hdr(const char *name, const char *value)
{
    return (struct tn_header){name, value, (uint32_t)strlen(name), (uint32_t)strlen(value)};
}

/* The name of the route rq matches, "(none)" when none does. */
static const char *matched(struct tn_route_table *t, const struct tn_request_view *rq)
{
    const struct tn_route *r = tn_route_match(&t->vhosts[0], rq);
    return r ? r->name : "(none)";
}

static const char *get(struct tn_route_table *t, const char *path)
{
    struct tn_request_view rq = req("GET", path);
    return matched(t, &rq);
}

START_TEST(path_kinds)
{
    struct tn_route_table *t =
        one_vhost("  - {name: exact, match: {path: /exact}, route: {cluster: c}}\n"
                  "  - {name: re, match: {safe_regex: {regex: '/re/[0-9]+'}}, route: {cluster: c}}\n"
                  "  - {name: sep, match: {path_separated_prefix: /sep}, route: {cluster: c}}\n"
                  "  - {name: api, match: {prefix: /api}, route: {cluster: c}}\n"
                  "  - {name: all, match: {prefix: ''}, route: {cluster: c}}\n");
    ck_assert_str_eq(get(t, "/exact"), "exact");
    ck_assert_str_eq(get(t, "/exact?x=1"), "exact"); /* the query is not part of the path */
    ck_assert_str_eq(get(t, "/exact/"), "all");
    ck_assert_str_eq(get(t, "/Exact"), "all"); /* case sensitive by default */
    ck_assert_str_eq(get(t, "/re/123"), "re");
    ck_assert_str_eq(get(t, "/re/123?q=/re/x"), "re");
    ck_assert_str_eq(get(t, "/re/123x"), "all"); /* the regex must match the whole path */
    ck_assert_str_eq(get(t, "/x/re/123"), "all");
    ck_assert_str_eq(get(t, "/sep"), "sep");
    ck_assert_str_eq(get(t, "/sep/a"), "sep");
    ck_assert_str_eq(get(t, "/sep?a=b"), "sep");
    ck_assert_str_eq(get(t, "/separate"), "all");
    ck_assert_str_eq(get(t, "/api"), "api");
    ck_assert_str_eq(get(t, "/apix/y"), "api");
    ck_assert_str_eq(get(t, "/"), "all");
    ck_assert_str_eq(get(t, "*"), "all");
    ck_assert_ptr_null(tn_route_match(NULL, &(struct tn_request_view){.path = "/", .path_len = 1}));
    tn_route_table_unref(t);

    t = one_vhost("  - {name: a, match: {prefix: /a}, route: {cluster: c}}\n");
    ck_assert_str_eq(get(t, "/b"), "(none)");
    ck_assert_str_eq(get(t, "?/a"), "(none)");
    tn_route_table_unref(t);
}
END_TEST

/* Regex routes are pre-filtered on their literal prefix; the filter must
 * never reject a path the regex accepts. */
START_TEST(regex_prefix_filter)
{
    struct tn_route_table *t =
        one_vhost("  - {name: opt, match: {safe_regex: {regex: '/ab?c'}}, route: {cluster: c}}\n"
                  "  - {name: star, match: {safe_regex: {regex: '/xy*'}}, route: {cluster: c}}\n"
                  "  - {name: alt, match: {safe_regex: {regex: '/one|/two'}}, route: {cluster: c}}\n"
                  "  - {name: flag, match: {safe_regex: {regex: '(?i)/caps'}}, route: {cluster: c}}\n"
                  "  - {name: long, match: {safe_regex: {regex: '/a-long-literal/[0-9]+'}}, route: {cluster: c}}\n"
                  "  - {name: utf, match: {safe_regex: {regex: '/\u00e9?z'}}, route: {cluster: c}}\n"
                  "  - {name: braces, match: {safe_regex: {regex: '/bq{0,1}r'}}, route: {cluster: c}}\n"
                  "  - {name: esc, match: {safe_regex: {regex: '/d\\.e'}}, route: {cluster: c}}\n");
    ck_assert_str_eq(get(t, "/ac"), "opt");
    ck_assert_str_eq(get(t, "/abc"), "opt");
    ck_assert_str_eq(get(t, "/x"), "star");
    ck_assert_str_eq(get(t, "/xyyy"), "star");
    ck_assert_str_eq(get(t, "/two"), "alt");
    ck_assert_str_eq(get(t, "/CAPS"), "flag");
    ck_assert_str_eq(get(t, "/a-long-literal/42"), "long");
    ck_assert_str_eq(get(t, "/a-long-literaX/42"), "(none)");
    ck_assert_str_eq(get(t, "/z"), "utf");
    ck_assert_str_eq(get(t, "/\xc3\xa9z"), "utf");
    ck_assert_str_eq(get(t, "/br"), "braces");
    ck_assert_str_eq(get(t, "/d.e"), "esc");
    ck_assert_str_eq(get(t, "/dxe"), "(none)");
    tn_route_table_unref(t);
}
END_TEST

START_TEST(case_insensitive)
{
    struct tn_route_table *t =
        one_vhost("  - {name: exact, match: {path: /Exact/Path, case_sensitive: false}, route: {cluster: c}}\n"
                  "  - {name: sep, match: {path_separated_prefix: /SEP, case_sensitive: false}, route: {cluster: c}}\n"
                  "  - {name: pre, match: {prefix: /Pre, case_sensitive: false}, route: {cluster: c}}\n"
                  "  - {name: re, match: {safe_regex: {regex: '/re'}, case_sensitive: false}, route: {cluster: c}}\n"
                  "  - {name: cs, match: {prefix: /CS}, route: {cluster: c}}\n");
    ck_assert_str_eq(get(t, "/exact/path"), "exact");
    ck_assert_str_eq(get(t, "/EXACT/PATH?Q"), "exact");
    ck_assert_str_eq(get(t, "/sep/x"), "sep");
    ck_assert_str_eq(get(t, "/Sep"), "sep");
    ck_assert_str_eq(get(t, "/PREfix"), "pre");
    ck_assert_str_eq(get(t, "/re"), "re");
    ck_assert_str_eq(get(t, "/RE"), "(none)"); /* case_sensitive does not apply to regexes */
    ck_assert_str_eq(get(t, "/CS"), "cs");
    ck_assert_str_eq(get(t, "/cs"), "(none)");
    tn_route_table_unref(t);
}
END_TEST

static const char *with_headers(struct tn_route_table *t, const char *method, const struct tn_header *h, size_t n)
{
    struct tn_request_view rq = req(method, "/p?x=1");
    rq.headers = h;
    rq.n_headers = n;
    return matched(t, &rq);
}

START_TEST(header_matchers)
{
    struct tn_route_table *t = one_vhost(
        "  - {name: exact, match: {prefix: /, headers: [{name: X-Exact, exact_match: yes}]}, route: {cluster: c}}\n"
        "  - {name: sm, match: {prefix: /, headers: [{name: x-sm, string_match: {prefix: AB, ignore_case: true}}]}, "
        "route: {cluster: c}}\n"
        "  - {name: suffix, match: {prefix: /, headers: [{name: x-s, suffix_match: end}]}, route: {cluster: c}}\n"
        "  - {name: contains, match: {prefix: /, headers: [{name: x-c, contains_match: mid}]}, route: {cluster: c}}\n"
        "  - {name: regex, match: {prefix: /, headers: [{name: x-r, safe_regex_match: {regex: '[0-9]{3}'}}]}, "
        "route: {cluster: c}}\n"
        "  - {name: range, match: {prefix: /, headers: [{name: x-n, range_match: {start: -10, end: 0}}]}, "
        "route: {cluster: c}}\n"
        "  - {name: joined, match: {prefix: /, headers: [{name: x-multi, exact_match: 'a,b'}]}, route: {cluster: c}}\n"
        "  - {name: method, match: {prefix: /, headers: [{name: ':method', exact_match: POST}]}, route: {cluster: c}}\n"
        "  - {name: both, match: {prefix: /, headers: [{name: x-1, present_match: true}, {name: x-2}]}, "
        "route: {cluster: c}}\n"
        "  - {name: absent, match: {prefix: /, headers: [{name: x-gone, present_match: false}]}, route: {cluster: c}}\n"
        "  - {name: other, match: {prefix: /}, route: {cluster: c}}\n");
    struct tn_header gone = hdr("x-gone", "");
    ck_assert_str_eq(with_headers(t, "GET", NULL, 0), "absent");
    struct tn_header h[] = {hdr("x-exact", "yes"), gone};
    ck_assert_str_eq(with_headers(t, "GET", h, 2), "exact");
    h[0] = hdr("x-exact", "Yes"); /* exact_match is case sensitive */
    ck_assert_str_eq(with_headers(t, "GET", h, 2), "other");
    h[0] = hdr("x-sm", "abc");
    ck_assert_str_eq(with_headers(t, "GET", h, 2), "sm");
    h[0] = hdr("x-s", "the end");
    ck_assert_str_eq(with_headers(t, "GET", h, 2), "suffix");
    h[0] = hdr("x-c", "amidst");
    ck_assert_str_eq(with_headers(t, "GET", h, 2), "contains");
    h[0] = hdr("x-r", "123");
    ck_assert_str_eq(with_headers(t, "GET", h, 2), "regex");
    h[0] = hdr("x-r", "1234"); /* whole-value match */
    ck_assert_str_eq(with_headers(t, "GET", h, 2), "other");
    h[0] = hdr("x-n", "-1");
    ck_assert_str_eq(with_headers(t, "GET", h, 2), "range");
    h[0] = hdr("x-n", "-10");
    ck_assert_str_eq(with_headers(t, "GET", h, 2), "range");
    const char *outside[] = {"0", "-11", "+5", "", "-1x", "1.5", "99999999999999999999", "-"};
    for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
        h[0] = hdr("x-n", outside[i]);
        ck_assert_msg(strcmp(with_headers(t, "GET", h, 2), "other") == 0, "range matched '%s'", outside[i]);
    }
    struct tn_header multi[] = {hdr("x-multi", "a"), gone, hdr("x-multi", "b")};
    ck_assert_str_eq(with_headers(t, "GET", multi, 3), "joined");
    ck_assert_str_eq(with_headers(t, "GET", multi, 2), "other");
    ck_assert_str_eq(with_headers(t, "POST", &gone, 1), "method");
    struct tn_header both[] = {hdr("x-2", ""), hdr("x-1", "v"), gone};
    ck_assert_str_eq(with_headers(t, "GET", both, 3), "both");
    ck_assert_str_eq(with_headers(t, "GET", both, 1), "absent"); /* x-1 missing, x-gone absent */
    tn_route_table_unref(t);
}
END_TEST

START_TEST(header_invert_and_missing)
{
    struct tn_route_table *t = one_vhost(
        "  - {name: inv, match: {prefix: /, headers: [{name: x-r, safe_regex_match: {regex: '[0-9]{3}'}, "
        "invert_match: true}]}, route: {cluster: c}}\n"
        "  - {name: empty, match: {prefix: /, headers: [{name: x-e, range_match: {start: 0, end: 10}, "
        "invert_match: true, treat_missing_header_as_empty: true}]}, route: {cluster: c}}\n"
        "  - {name: notpresent, match: {prefix: /, headers: [{name: x-p, present_match: true, invert_match: true}]}, "
        "route: {cluster: c}}\n"
        "  - {name: other, match: {prefix: /}, route: {cluster: c}}\n");
    struct tn_header h[] = {hdr("x-r", "1234"), hdr("x-e", "5"), hdr("x-p", "")};
    ck_assert_str_eq(with_headers(t, "GET", h, 3), "inv");
    h[0] = hdr("x-r", "123");
    ck_assert_str_eq(with_headers(t, "GET", h, 3), "other");
    /* x-r missing: an inverted matcher still does not match an absent header;
     * x-e missing is treated as "", not in range, inverted: match. */
    ck_assert_str_eq(with_headers(t, "GET", h + 2, 1), "empty");
    ck_assert_str_eq(with_headers(t, "GET", h + 1, 1), "notpresent");
    ck_assert_str_eq(with_headers(t, "GET", h + 1, 2), "other");
    struct tn_header in_range[] = {hdr("x-e", "1")};
    ck_assert_str_eq(with_headers(t, "GET", in_range, 1), "notpresent");
    tn_route_table_unref(t);

    t = one_vhost("  - {name: path, match: {prefix: /, headers: [{name: ':path', exact_match: '/p?x=1'}, "
                  "{name: ':authority', exact_match: example.com}, {name: ':scheme', exact_match: http}]}, "
                  "route: {cluster: c}}\n");
    ck_assert_str_eq(with_headers(t, "GET", NULL, 0), "path");
    struct tn_request_view rq = req("GET", "/p");
    ck_assert_str_eq(matched(t, &rq), "(none)");
    tn_route_table_unref(t);
}
END_TEST

START_TEST(query_parameters)
{
    struct tn_route_table *t =
        one_vhost("  - {name: both, match: {prefix: /, query_parameters: [{name: a, string_match: {exact: '1 2'}}, "
                  "{name: flag, present_match: true}]}, route: {cluster: c}}\n"
                  "  - {name: re, match: {prefix: /, query_parameters: [{name: id, string_match: {safe_regex: {regex: "
                  "'[a-z]+'}}}]}, route: {cluster: c}}\n"
                  "  - {name: empty, match: {prefix: /, query_parameters: [{name: e, string_match: {exact: ''}}]}, "
                  "route: {cluster: c}}\n"
                  "  - {name: other, match: {prefix: /}, route: {cluster: c}}\n");
    ck_assert_str_eq(get(t, "/?a=1%202&flag"), "both");
    ck_assert_str_eq(get(t, "/x?flag=&a=1%202"), "both");
    ck_assert_str_eq(get(t, "/?a=1 2&flag=yes"), "both");
    ck_assert_str_eq(get(t, "/?a=1%202"), "other");
    ck_assert_str_eq(get(t, "/?a=12&flag"), "other");
    ck_assert_str_eq(get(t, "/?a=1%202&a=3&flag"), "both"); /* the first value counts */
    ck_assert_str_eq(get(t, "/?a=3&a=1%202&flag"), "other");
    ck_assert_str_eq(get(t, "/?flagx&a=1%202"), "other");
    ck_assert_str_eq(get(t, "/?id=abc"), "re");
    ck_assert_str_eq(get(t, "/?id=abc1"), "other");
    ck_assert_str_eq(get(t, "/?x=1&id=a=b"), "other"); /* the value is "a=b" */
    ck_assert_str_eq(get(t, "/?e"), "empty");
    ck_assert_str_eq(get(t, "/?e="), "empty");
    ck_assert_str_eq(get(t, "/?e=1"), "other");
    ck_assert_str_eq(get(t, "/e"), "other");
    ck_assert_str_eq(get(t, "/#?e"), "other");
    tn_route_table_unref(t);
}
END_TEST

START_TEST(runtime_fraction)
{
    struct tn_route_table *t =
        one_vhost("  - {name: tiny, match: {prefix: /, runtime_fraction: {default_value: {numerator: 1, denominator: "
                  "MILLION}}}, route: {cluster: c}}\n"
                  "  - {name: quarter, match: {prefix: /, runtime_fraction: {default_value: {numerator: 25}}}, "
                  "route: {cluster: c}}\n"
                  "  - {name: rest, match: {prefix: /}, route: {cluster: c}}\n");
    struct tn_request_view rq = req("GET", "/");
    /* random % denominator < numerator */
    uint64_t cases[][2] = {{0, 0},   {1, 1},       {24, 1},      {25, 2},      {99, 2},
                           {100, 1}, {1000000, 0}, {1000025, 2}, {2000001, 1}, {UINT64_MAX, 1}};
    const char *names[] = {"tiny", "quarter", "rest"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rq.random = cases[i][0];
        ck_assert_msg(strcmp(matched(t, &rq), names[cases[i][1]]) == 0, "random %llu matched %s",
                      (unsigned long long)cases[i][0], matched(t, &rq));
    }
    tn_route_table_unref(t);
}
END_TEST

START_TEST(weighted_pick)
{
    struct tn_route_table *t =
        one_vhost("  - match: {prefix: /}\n"
                  "    route: {weighted_clusters: {clusters: [{name: a, weight: 30}, {name: zero, weight: 0}, "
                  "{name: b, weight: 70}]}}\n"
                  "  - {match: {prefix: /x}, route: {cluster: c}}\n");
    const struct tn_route *r = &t->vhosts[0].routes[0];
    ck_assert_str_eq(tn_route_weighted_pick(r, 0), "a");
    ck_assert_str_eq(tn_route_weighted_pick(r, 29), "a");
    ck_assert_str_eq(tn_route_weighted_pick(r, 30), "b");
    ck_assert_str_eq(tn_route_weighted_pick(r, 99), "b");
    ck_assert_str_eq(tn_route_weighted_pick(r, 100), "a");
    ck_assert_str_eq(tn_route_weighted_pick(r, 130), "b");
    ck_assert_str_eq(tn_route_weighted_pick(r, UINT64_MAX), "a");      /* 2^64-1 % 100 = 15 */
    ck_assert_str_eq(tn_route_weighted_pick(r, UINT64_MAX - 16), "b"); /* % 100 = 99 */
    unsigned counts[2] = {0, 0};
    for (uint64_t i = 0; i < 1000; i++)
        counts[strcmp(tn_route_weighted_pick(r, i * 7919), "a") == 0 ? 0 : 1]++;
    ck_assert_uint_eq(counts[0], 300);
    ck_assert_uint_eq(counts[1], 700);
    ck_assert_ptr_null(tn_route_weighted_pick(&t->vhosts[0].routes[1], 5));
    tn_route_table_unref(t);
}
END_TEST

/* The rewritten target of route i for path, "(0)" when there is none. */
static const char *rewrite(struct tn_route_table *t, size_t i, const char *path)
{
    static char out[256];
    struct tn_request_view rq = req("GET", path);
    const struct tn_route *r = &t->vhosts[0].routes[i];
    ck_assert_ptr_eq(tn_route_match(&t->vhosts[0], &rq), r);
    size_t n = tn_route_rewrite_path(r, &rq, out, sizeof(out));
    if (n == 0)
        return "(0)";
    ck_assert_uint_ne(n, TN_ROUTE_NOSPACE);
    ck_assert_uint_eq(n, strlen(out));
    return out;
}

START_TEST(path_rewrites)
{
    struct tn_route_table *t = one_vhost(
        "  - {match: {prefix: /api/}, route: {cluster: c, prefix_rewrite: /}}\n"
        "  - {match: {path_separated_prefix: /old}, route: {cluster: c, prefix_rewrite: /new}}\n"
        "  - {match: {prefix: /CI, case_sensitive: false}, route: {cluster: c, prefix_rewrite: /ci}}\n"
        "  - {match: {path: /exact}, route: {cluster: c, prefix_rewrite: /other}}\n"
        "  - match: {prefix: /service/}\n"
        "    route: {cluster: c, regex_rewrite: {pattern: {regex: '^/service/([^/]+)(/.*)$'}, "
        "substitution: '\\2/instance/\\1'}}\n"
        "  - {match: {prefix: /xxx/}, route: {cluster: c, regex_rewrite: {pattern: {regex: one}, substitution: two}}}\n"
        "  - {match: {prefix: /empty/}, route: {cluster: c, regex_rewrite: {pattern: {regex: 'x*'}, "
        "substitution: '-'}}}\n"
        "  - {match: {prefix: /lit/}, route: {cluster: c, regex_rewrite: {pattern: {regex: '(lit)'}, "
        "substitution: '\\\\\\0\\9'}}}\n"
        "  - {match: {prefix: /}, route: {cluster: c}}\n");
    ck_assert_str_eq(rewrite(t, 0, "/api/v1/users?id=1"), "/v1/users?id=1");
    ck_assert_str_eq(rewrite(t, 1, "/old"), "/new");
    ck_assert_str_eq(rewrite(t, 1, "/old/x?q"), "/new/x?q");
    ck_assert_str_eq(rewrite(t, 2, "/cI/Thing"), "/ci/Thing");
    ck_assert_str_eq(rewrite(t, 3, "/exact?a=b"), "/other?a=b");
    ck_assert_str_eq(rewrite(t, 4, "/service/foo/v1/api?k=v"), "/v1/api/instance/foo?k=v");
    ck_assert_str_eq(rewrite(t, 5, "/xxx/one/yyy/one/zzz?one=1"), "/xxx/two/yyy/two/zzz?one=1");
    ck_assert_str_eq(rewrite(t, 6, "/empty/axxb"), "-/-e-m-p-t-y-/-a-b-"); /* RE2 GlobalReplace on empty matches */
    ck_assert_str_eq(rewrite(t, 7, "/lit/"), "/\\lit/");                   /* \\ is a backslash, \9 an absent group */
    ck_assert_str_eq(rewrite(t, 8, "/anything?x"), "(0)");

    char small[8];
    struct tn_request_view rq = req("GET", "/api/v1/users");
    ck_assert_uint_eq(tn_route_rewrite_path(&t->vhosts[0].routes[0], &rq, small, sizeof(small)), TN_ROUTE_NOSPACE);
    ck_assert_uint_eq(tn_route_rewrite_path(&t->vhosts[0].routes[0], &rq, small, 0), TN_ROUTE_NOSPACE);
    rq = req("GET", "/api/v1");
    ck_assert_uint_eq(tn_route_rewrite_path(&t->vhosts[0].routes[0], &rq, small, sizeof(small)), 3);
    ck_assert_str_eq(small, "/v1");
    tn_route_table_unref(t);
}
END_TEST

/* The Location route i of the first vhost sends for a request. */
static const char *location(struct tn_route_table *t, size_t i, const char *scheme, const char *host, const char *path)
{
    static char out[256];
    struct tn_request_view rq = req("GET", path);
    rq.scheme = scheme;
    rq.host = host;
    rq.host_len = strlen(host);
    const struct tn_route *r = &t->vhosts[0].routes[i];
    ck_assert_ptr_eq(tn_route_match(&t->vhosts[0], &rq), r);
    ck_assert_int_eq(r->kind, TN_ROUTE_REDIRECT);
    size_t n = tn_route_redirect_location(r, &rq, out, sizeof(out));
    ck_assert_uint_ne(n, TN_ROUTE_NOSPACE);
    ck_assert_uint_eq(n, strlen(out));
    return out;
}

START_TEST(redirects)
{
    struct tn_route_table *t = one_vhost(
        "  - {match: {prefix: /https}, redirect: {https_redirect: true}}\n"
        "  - {match: {prefix: /scheme}, redirect: {scheme_redirect: HTTP, response_code: FOUND}}\n"
        "  - {match: {prefix: /host}, redirect: {host_redirect: new.example.org, response_code: SEE_OTHER}}\n"
        "  - {match: {prefix: /port}, redirect: {port_redirect: 8443, response_code: TEMPORARY_REDIRECT}}\n"
        "  - {match: {prefix: /path}, redirect: {path_redirect: /new/path, response_code: PERMANENT_REDIRECT}}\n"
        "  - {match: {prefix: /pq}, redirect: {path_redirect: '/new?own=1', strip_query: true}}\n"
        "  - {match: {prefix: /strip}, redirect: {path_redirect: /s, strip_query: true}}\n"
        "  - {match: {prefix: /pre/}, redirect: {prefix_rewrite: /post/}}\n"
        "  - {match: {prefix: /re/}, redirect: {regex_rewrite: {pattern: {regex: '^/re/(.*)$'}, "
        "substitution: '/rx/\\1'}}}\n"
        "  - {match: {prefix: /all}, redirect: {https_redirect: true, host_redirect: h.io, port_redirect: 9000, "
        "path_redirect: /x, strip_query: true}}\n"
        "  - {match: {prefix: /rel}, redirect: {path_redirect: rel}}\n");
    const struct tn_route *rs = t->vhosts[0].routes;
    uint32_t codes[] = {301, 302, 303, 307, 308};
    for (size_t i = 0; i < 5; i++)
        ck_assert_uint_eq(rs[i].redirect_code, codes[i]);

    ck_assert_str_eq(location(t, 0, "http", "example.com", "/https/a?q=1"), "https://example.com/https/a?q=1");
    /* The old scheme's default port goes with it; any other port stays. */
    ck_assert_str_eq(location(t, 0, "http", "example.com:80", "/https"), "https://example.com/https");
    ck_assert_str_eq(location(t, 0, "http", "example.com:8080", "/https"), "https://example.com:8080/https");
    ck_assert_str_eq(location(t, 0, "https", "example.com:443", "/https"), "https://example.com:443/https");
    ck_assert_str_eq(location(t, 0, "http", "[::1]:80", "/https"), "https://[::1]/https");
    ck_assert_str_eq(location(t, 0, "http", "[::1]", "/https"), "https://[::1]/https");
    ck_assert_str_eq(location(t, 1, "https", "example.com:443", "/scheme"), "http://example.com/scheme");
    ck_assert_str_eq(location(t, 2, "http", "example.com:8080", "/host?a"), "http://new.example.org/host?a");
    ck_assert_str_eq(location(t, 3, "http", "example.com:8080", "/port"), "http://example.com:8443/port");
    ck_assert_str_eq(location(t, 3, "https", "[::1]:1", "/port"), "https://[::1]:8443/port");
    ck_assert_str_eq(location(t, 4, "http", "example.com", "/path/old?a=b"), "http://example.com/new/path?a=b");
    ck_assert_str_eq(location(t, 5, "http", "example.com", "/pq?a=b"), "http://example.com/new?own=1");
    ck_assert_str_eq(location(t, 6, "http", "example.com", "/strip?a=b"), "http://example.com/s");
    ck_assert_str_eq(location(t, 7, "http", "example.com", "/pre/x/y?a=b"), "http://example.com/post/x/y?a=b");
    ck_assert_str_eq(location(t, 8, "http", "example.com", "/re/z?k"), "http://example.com/rx/z?k");
    ck_assert_str_eq(location(t, 9, "http", "example.com:80", "/all?k"), "https://h.io:9000/x");
    ck_assert_str_eq(location(t, 10, "http", "example.com", "/rel?k"), "http://example.com/rel?k");

    char small[16];
    struct tn_request_view rq = req("GET", "/https/long/path");
    ck_assert_uint_eq(tn_route_redirect_location(&rs[0], &rq, small, sizeof(small)), TN_ROUTE_NOSPACE);
    ck_assert_uint_eq(tn_route_redirect_location(&rs[10], &rq, small, sizeof(small)), TN_ROUTE_NOSPACE);
    char fit[23]; /* "http://example.com/rel" and its NUL, the '/' inserted at the very end of room */
    ck_assert_uint_eq(tn_route_redirect_location(&rs[10], &rq, fit, sizeof(fit)), 22);
    ck_assert_str_eq(fit, "http://example.com/rel");
    ck_assert_uint_eq(tn_route_redirect_location(&rs[10], &rq, fit, sizeof(fit) - 1), TN_ROUTE_NOSPACE);
    tn_route_table_unref(t);

    t = one_vhost("  - {match: {prefix: /}, route: {cluster: c}}\n");
    ck_assert_uint_eq(tn_route_redirect_location(&t->vhosts[0].routes[0], &rq, small, sizeof(small)), 0);
    tn_route_table_unref(t);
}
END_TEST

START_TEST(vhost_then_route)
{
    struct tn_route_table *t = routes("virtual_hosts:\n"
                                      "- name: exact\n"
                                      "  domains: [www.example.com, 'www.example.com:8080']\n"
                                      "  routes: [{name: e, match: {prefix: /}, route: {cluster: c}}]\n"
                                      "- name: wild\n"
                                      "  domains: ['*.example.com', 'api.*']\n"
                                      "  routes: [{name: w, match: {prefix: /w}, route: {cluster: c}}]\n"
                                      "- name: any\n"
                                      "  domains: ['*']\n"
                                      "  routes: [{name: a, match: {prefix: /}, route: {cluster: c}}]\n");
    const char *cases[][3] = {
        {"www.example.com", "/x", "e"},      {"WWW.EXAMPLE.COM", "/x", "e"}, {"www.example.com:8080", "/x", "e"},
        {"www.example.com:9090", "/x", "a"}, {"a.example.com", "/w", "w"},   {"a.example.com", "/x", "(none)"},
        {"api.other.net", "/w1", "w"},       {"example.com", "/w", "a"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tn_request_view rq = req("GET", cases[i][1]);
        const struct tn_vhost *vh = tn_route_table_vhost(t, cases[i][0], strlen(cases[i][0]));
        const struct tn_route *r = tn_route_match(vh, &rq);
        ck_assert_msg(strcmp(r ? r->name : "(none)", cases[i][2]) == 0, "%s%s: got %s", cases[i][0], cases[i][1],
                      r ? r->name : "(none)");
    }
    tn_route_table_unref(t);
}
END_TEST

START_TEST(separated_prefix_slash_rejected)
{
    tn_err_init(&err);
    const char *yaml = "virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {path_separated_prefix: /}, "
                       "route: {cluster: c}}]}]\n";
    tn_pb_route_config *pb = (void *)tn_pbconv_yaml_msg(
        yaml, strlen(yaml), &envoy__config__route__v3__route_configuration__descriptor, &err);
    ck_assert_ptr_nonnull(pb);
    ck_assert_ptr_null(tn_route_table_compile(pb, &err));
    protobuf_c_message_free_unpacked(&pb->base, NULL);
    ck_assert_msg(strstr(err.msg, "virtual_hosts[0].routes[0].match.path_separated_prefix") != NULL, "%s", err.msg);
}
END_TEST

Suite *route_match_suite(void)
{
    Suite *s = suite_create("route_match");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, path_kinds);
    tcase_add_test(tc, regex_prefix_filter);
    tcase_add_test(tc, case_insensitive);
    tcase_add_test(tc, header_matchers);
    tcase_add_test(tc, header_invert_and_missing);
    tcase_add_test(tc, query_parameters);
    tcase_add_test(tc, runtime_fraction);
    tcase_add_test(tc, weighted_pick);
    tcase_add_test(tc, path_rewrites);
    tcase_add_test(tc, redirects);
    tcase_add_test(tc, vhost_then_route);
    tcase_add_test(tc, separated_prefix_slash_rejected);
    suite_add_tcase(s, tc);
    return s;
}
