/* The cache filter's configuration: Envoy's and tern's CacheConfig,
 * CachePerRoute, and typed_per_filter_config on route tables. */
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "envoy/extensions/filters/http/cache/v3/cache.pb-c.h"
#include "filters/filter.h"
#include "filters/route.h"
#include "filters/router.h"
#include "suites.h"
#include "tern/extensions/filters/http/cache/v1/cache.pb-c.h"
#include "api/pb/pbconv.h"

#define ENVOY_CFG (&envoy__extensions__filters__http__cache__v3__cache_config__descriptor)
#define TERN_CFG  (&tern__extensions__filters__http__cache__v1__cache_config__descriptor)
#define PER_ROUTE (&tern__extensions__filters__http__cache__v1__cache_per_route__descriptor)

static struct tn_err err;

static ProtobufCMessage *parse(const ProtobufCMessageDescriptor *d, const char *yaml)
{
    tn_err_init(&err);
    ProtobufCMessage *m = tn_pbconv_yaml_msg(yaml, strlen(yaml), d, &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    return m;
}

/* Compiles a filter config (d: Envoy's or tern's) or, for PER_ROUTE, a
 * per-route config; NULL with err set on failure. */
static void *compile(const ProtobufCMessageDescriptor *d, const char *yaml)
{
    ProtobufCMessage *m = parse(d, yaml);
    void *c = d == PER_ROUTE ? tn_cache_factory.create_route_config(m, &err) : tn_cache_factory.create_config(m, &err);
    protobuf_c_message_free_unpacked(m, NULL);
    return c;
}

static void compile_error(const ProtobufCMessageDescriptor *d, const char *yaml, const char *msg)
{
    void *c = compile(d, yaml);
    ck_assert_msg(c == NULL, "'%s' compiled, expected '%s'", yaml, msg);
    ck_assert_str_eq(err.msg, msg);
}

static void assert_common_defaults(const struct tn_cache_config *c)
{
    static const uint32_t codes[] = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501};
    ck_assert_uint_eq(c->max_size_bytes, 256ull * 1024 * 1024);
    ck_assert_uint_eq(c->max_entry_bytes, 1024 * 1024);
    ck_assert_uint_eq(c->default_ttl_ms, TN_CACHE_UNSET);
    ck_assert_uint_eq(c->ttl_override_ms, TN_CACHE_UNSET);
    ck_assert_uint_eq(c->stale_ttl_ms, 0);
    ck_assert(!c->only_if_origin_cacheable && !c->ignore_cache_control && !c->ignore_request_cache_control);
    ck_assert(!c->ignore_client_refresh && !c->ignore_client_refresh_immutable && !c->disabled);
    ck_assert_uint_eq(c->n_response_codes, sizeof(codes) / sizeof(codes[0]));
    ck_assert_mem_eq(c->response_codes, codes, sizeof(codes));
    ck_assert_uint_eq(c->n_request_methods, 2);
    ck_assert_str_eq(c->request_methods[0], "GET");
    ck_assert_str_eq(c->request_methods[1], "HEAD");
    ck_assert_uint_eq(c->n_content_types, 0);
    ck_assert_uint_eq(c->n_allowed_vary, 0);
    ck_assert_uint_eq(c->n_vary_headers, 0);
    ck_assert_uint_eq(c->n_vary_query_params, 0);
    ck_assert_ptr_null(c->name);
    ck_assert(!c->purge && !c->purge_allow_wildcard);
    ck_assert_ptr_null(c->purge_key);
}

START_TEST(envoy_defaults)
{
    struct tn_cache_config *c = compile(ENVOY_CFG, "{}");
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert(!c->tern);
    assert_common_defaults(c);
    ck_assert(!c->status_headers); /* Envoy sends Age only */
    ck_assert(c->keep_stale);         /* expired entries kept to be revalidated */
    ck_assert_uint_eq(c->n_targeted_cc, 1);
    ck_assert_str_eq(c->targeted_cc[0], "cdn-cache-control");
    tn_cache_factory.destroy_config(c);
}
END_TEST

START_TEST(tern_targeted)
{
    struct tn_cache_config *c = compile(TERN_CFG, "{}");
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert(!c->keep_stale); /* tern's stale_ttl says how long */
    ck_assert_uint_eq(c->n_targeted_cc, 1);
    ck_assert_str_eq(c->targeted_cc[0], "cdn-cache-control");
    tn_cache_factory.destroy_config(c);
    c = compile(TERN_CFG, "targeted_cache_control: [Edge-Cache-Control, cdn-cache-control]");
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert_uint_eq(c->n_targeted_cc, 2);
    ck_assert_str_eq(c->targeted_cc[0], "edge-cache-control");
    ck_assert_str_eq(c->targeted_cc[1], "cdn-cache-control");
    tn_cache_factory.destroy_config(c);
    c = compile(TERN_CFG, "ignore_targeted_cache_control: true");
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert_uint_eq(c->n_targeted_cc, 0);
    tn_cache_factory.destroy_config(c);
    compile_error(TERN_CFG, "targeted_cache_control: [a, 'b c']",
                  "targeted_cache_control[1]: 'b c' is not a header name other than Cache-Control");
    compile_error(TERN_CFG, "targeted_cache_control: [Cache-Control]",
                  "targeted_cache_control[0]: 'Cache-Control' is not a header name other than Cache-Control");
    compile_error(TERN_CFG, "targeted_cache_control: [x]\nignore_targeted_cache_control: true",
                  "ignore_targeted_cache_control: targeted_cache_control is set too: ignore the list or drop it");
}
END_TEST

START_TEST(envoy_fields)
{
    struct tn_cache_config *c =
        compile(ENVOY_CFG, "typed_config: {'@type': type.googleapis.com/envoy.extensions.http.cache.simple_http_cache."
                           "v3.SimpleHttpCacheConfig}\n"
                           "allowed_vary_headers: [{exact: accept-encoding}, {prefix: x-v-, ignore_case: true}]\n"
                           "max_body_bytes: 2048\n"
                           "disabled: true\n"
                           "ignore_request_cache_control_header: true\n");
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert(!c->tern && c->disabled && c->ignore_request_cache_control && !c->status_headers);
    ck_assert_uint_eq(c->max_entry_bytes, 2048);
    ck_assert_uint_eq(c->max_size_bytes, 256ull * 1024 * 1024);
    ck_assert_uint_eq(c->n_allowed_vary, 2);
    ck_assert(tn_string_matcher_match(&c->allowed_vary[0], "accept-encoding", 15));
    ck_assert(tn_string_matcher_match(&c->allowed_vary[1], "X-V-Thing", 9));
    ck_assert(!tn_string_matcher_match(&c->allowed_vary[1], "x-w-thing", 9));
    tn_cache_factory.destroy_config(c);
}
END_TEST

START_TEST(envoy_errors)
{
    compile_error(ENVOY_CFG, "key_creator_params: {exclude_host: true}",
                  "key_creator_params: not supported by tern; use tern's CacheConfig vary_query_params");
    compile_error(ENVOY_CFG, "max_body_bytes: 268435457",
                  "max_body_bytes: 268435457 is more than the cache's size (268435456); use tern's CacheConfig "
                  "max_size_bytes");
    compile_error(
        ENVOY_CFG, "typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}",
        "typed_config: expected type 'envoy.extensions.http.cache.simple_http_cache.v3.SimpleHttpCacheConfig', "
        "got 'envoy.extensions.filters.http.router.v3.Router'");
    compile_error(ENVOY_CFG, "allowed_vary_headers: [{exact: a}, {safe_regex: {regex: '(['}}]",
                  "allowed_vary_headers[1].safe_regex.regex: invalid regex '([': missing terminating ] for character "
                  "class at offset 2");
}
END_TEST

START_TEST(tern_defaults)
{
    struct tn_cache_config *c = compile(TERN_CFG, "{}");
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert(c->tern);
    assert_common_defaults(c);
    ck_assert(c->status_headers); /* on by default with tern's config */
    tn_cache_factory.destroy_config(c);
}
END_TEST

START_TEST(tern_fields)
{
    struct tn_cache_config *c =
        compile(TERN_CFG, "name: edge-1\n"
                          "max_size_bytes: 10000000\n"
                          "max_entry_bytes: 10000000\n"
                          "default_ttl: 60s\n"
                          "ttl_override: 0.25s\n"
                          "stale_ttl: 2.5s\n"
                          "ignore_client_refresh: true\n"
                          "ignore_client_refresh_immutable: true\n"
                          "response_codes: [200, 404]\n"
                          "request_methods: [get, Head]\n"
                          "content_types: [Text/HTML, 'application/vnd.api+json']\n"
                          "vary_headers: [Accept-Encoding, X-Device]\n"
                          "vary_query_params: [page, Lang]\n"
                          "purge: {key: s3cret, allow_wildcard: true}\n"
                          "status_headers: false\n"
                          "typed_config: {'@type': type.googleapis.com/envoy.extensions.http.cache.simple_http_cache."
                          "v3.SimpleHttpCacheConfig}\n"
                          "allowed_vary_headers: [{exact: x-device}]\n"
                          "ignore_request_cache_control_header: true\n");
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert(c->tern && !c->disabled);
    ck_assert_str_eq(c->name, "edge-1");
    ck_assert_uint_eq(c->max_size_bytes, 10000000);
    ck_assert_uint_eq(c->max_entry_bytes, 10000000); /* equal to the cache's size is fine */
    ck_assert_uint_eq(c->default_ttl_ms, 60000);
    ck_assert_uint_eq(c->ttl_override_ms, 250);
    ck_assert_uint_eq(c->stale_ttl_ms, 2500);
    ck_assert(c->ignore_client_refresh && c->ignore_client_refresh_immutable && c->ignore_request_cache_control);
    ck_assert(!c->only_if_origin_cacheable && !c->ignore_cache_control);
    ck_assert_uint_eq(c->n_response_codes, 2);
    ck_assert_uint_eq(c->response_codes[0], 200);
    ck_assert_uint_eq(c->response_codes[1], 404);
    ck_assert_uint_eq(c->n_request_methods, 2);
    ck_assert_str_eq(c->request_methods[0], "GET");
    ck_assert_str_eq(c->request_methods[1], "HEAD");
    ck_assert_uint_eq(c->n_content_types, 2);
    ck_assert_str_eq(c->content_types[0], "text/html");
    ck_assert_str_eq(c->content_types[1], "application/vnd.api+json");
    ck_assert_uint_eq(c->n_vary_headers, 2);
    ck_assert_str_eq(c->vary_headers[0], "accept-encoding");
    ck_assert_str_eq(c->vary_headers[1], "x-device");
    ck_assert_uint_eq(c->n_vary_query_params, 2);
    ck_assert_str_eq(c->vary_query_params[0], "page");
    ck_assert_str_eq(c->vary_query_params[1], "Lang"); /* query names keep their case */
    ck_assert(c->purge && c->purge_allow_wildcard);
    ck_assert_str_eq(c->purge_key, "s3cret");
    ck_assert(!c->status_headers);
    ck_assert_uint_eq(c->n_allowed_vary, 1);
    tn_cache_factory.destroy_config(c);

    c = compile(TERN_CFG, "purge: {}\nonly_if_origin_cacheable: true\nstatus_headers: true\n");
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert(c->purge && !c->purge_allow_wildcard);
    ck_assert_str_eq(c->purge_key, ""); /* no X-Purge-Key needed */
    ck_assert(c->only_if_origin_cacheable && c->status_headers);
    tn_cache_factory.destroy_config(c);

    c = compile(TERN_CFG, "ignore_cache_control: true\nttl_override: 0s\ndefault_ttl: 0s\n");
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert(c->ignore_cache_control);
    ck_assert_uint_eq(c->ttl_override_ms, 0);
    ck_assert_uint_eq(c->default_ttl_ms, 0);
    tn_cache_factory.destroy_config(c);
}
END_TEST

START_TEST(tern_errors)
{
    compile_error(TERN_CFG, "max_size_bytes: 1000", "max_entry_bytes: 1048576 is more than max_size_bytes (1000)");
    compile_error(TERN_CFG, "max_entry_bytes: 268435457",
                  "max_entry_bytes: 268435457 is more than max_size_bytes (268435456)");
    compile_error(TERN_CFG, "default_ttl: -1s", "default_ttl: must not be negative");
    compile_error(TERN_CFG, "ttl_override: -0.5s", "ttl_override: must not be negative");
    compile_error(TERN_CFG, "stale_ttl: -2s", "stale_ttl: must not be negative");
    compile_error(TERN_CFG, "ignore_cache_control: true\nonly_if_origin_cacheable: true\ndefault_ttl: 1s",
                  "ignore_cache_control: only_if_origin_cacheable and ignore_cache_control are mutually exclusive");
    compile_error(TERN_CFG, "ignore_cache_control: true",
                  "ignore_cache_control: needs default_ttl or ttl_override: without either nothing would be cached");
    compile_error(TERN_CFG, "response_codes: [200, 99]", "response_codes[1]: 99 is not an HTTP status code");
    compile_error(TERN_CFG, "response_codes: [600]", "response_codes[0]: 600 is not an HTTP status code");
    compile_error(TERN_CFG, "request_methods: ['']", "request_methods[0]: '' is not a method");
    compile_error(TERN_CFG, "request_methods: [GET, 'G T']", "request_methods[1]: 'G T' is not a method");
    compile_error(TERN_CFG, "request_methods: [post]",
                  "request_methods[0]: POST is not cacheable: only the safe methods GET and HEAD are");
    compile_error(TERN_CFG, "request_methods: [HEAD, OPTIONS]",
                  "request_methods[1]: OPTIONS is not cacheable: only the safe methods GET and HEAD are");
    compile_error(TERN_CFG, "content_types: [text]",
                  "content_types[0]: 'text' is not a media type (type/subtype, without parameters)");
    compile_error(TERN_CFG, "content_types: [text/html, 'text/']",
                  "content_types[1]: 'text/' is not a media type (type/subtype, without parameters)");
    compile_error(TERN_CFG, "content_types: [/html]",
                  "content_types[0]: '/html' is not a media type (type/subtype, without parameters)");
    compile_error(TERN_CFG, "content_types: ['text/html;q=1']",
                  "content_types[0]: 'text/html;q=1' is not a media type (type/subtype, without parameters)");
    compile_error(TERN_CFG, "content_types: [a/b/c]",
                  "content_types[0]: 'a/b/c' is not a media type (type/subtype, without parameters)");
    compile_error(TERN_CFG, "vary_headers: ['']", "vary_headers[0]: '' is not a header name");
    compile_error(TERN_CFG, "vary_headers: [accept, 'x y']", "vary_headers[1]: 'x y' is not a header name");
    compile_error(TERN_CFG, "vary_headers: [':path']", "vary_headers[0]: ':path' is not a header name");
    compile_error(TERN_CFG, "vary_query_params: [a, '']", "vary_query_params[1]: must not be empty");
    compile_error(TERN_CFG, "name: \"a\\nb\"", "name: must not hold control characters (it is sent as X-Served-By)");
    compile_error(TERN_CFG, "purge: {key: \"k\\r\"}",
                  "purge.key: must not hold control characters (it is compared with X-Purge-Key)");
    compile_error(
        TERN_CFG, "typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}",
        "typed_config: expected type 'envoy.extensions.http.cache.simple_http_cache.v3.SimpleHttpCacheConfig', "
        "got 'envoy.extensions.filters.http.router.v3.Router'");
    compile_error(TERN_CFG, "allowed_vary_headers: [{safe_regex: {regex: '(['}}]",
                  "allowed_vary_headers[0].safe_regex.regex: invalid regex '([': missing terminating ] for character "
                  "class at offset 2");
}
END_TEST

START_TEST(per_route_compiles)
{
    struct tn_cache_per_route *r = compile(PER_ROUTE, "{}");
    ck_assert_msg(r != NULL, "%s", err.msg);
    ck_assert(!r->disabled);
    ck_assert_uint_eq(r->default_ttl_ms, TN_CACHE_UNSET);
    ck_assert_uint_eq(r->ttl_override_ms, TN_CACHE_UNSET);
    ck_assert_uint_eq(r->stale_ttl_ms, TN_CACHE_UNSET);
    tn_cache_factory.destroy_route_config(r);

    r = compile(PER_ROUTE, "{disabled: true, default_ttl: 5s, ttl_override: 0.001s, stale_ttl: 0s}");
    ck_assert_msg(r != NULL, "%s", err.msg);
    ck_assert(r->disabled);
    ck_assert_uint_eq(r->default_ttl_ms, 5000);
    ck_assert_uint_eq(r->ttl_override_ms, 1);
    ck_assert_uint_eq(r->stale_ttl_ms, 0);
    tn_cache_factory.destroy_route_config(r);

    compile_error(PER_ROUTE, "default_ttl: -1s", "default_ttl: must not be negative");
    compile_error(PER_ROUTE, "ttl_override: -1s", "ttl_override: must not be negative");
    compile_error(PER_ROUTE, "stale_ttl: -1s", "stale_ttl: must not be negative");
}
END_TEST

START_TEST(factory_types)
{
    ck_assert_ptr_eq(tn_filter_factory_by_type("type.googleapis.com/tern.extensions.filters.http.cache.v1.CacheConfig"),
                     &tn_cache_factory);
    ck_assert_ptr_eq(tn_filter_factory_by_type("envoy.extensions.filters.http.cache.v3.CacheConfig"),
                     &tn_cache_factory);
    ck_assert_ptr_eq(tn_filter_factory_by_type("tern.extensions.filters.http.cache.v1.CachePerRoute"),
                     &tn_cache_factory);
    ck_assert_ptr_eq(tn_filter_factory_config_type(
                         &tn_cache_factory, "type.googleapis.com/tern.extensions.filters.http.cache.v1.CacheConfig"),
                     TERN_CFG);
    ck_assert_ptr_eq(
        tn_filter_factory_config_type(&tn_cache_factory, "envoy.extensions.filters.http.cache.v3.CacheConfig"),
        ENVOY_CFG);
    /* The per-route type is not a filter config. */
    ck_assert_ptr_null(
        tn_filter_factory_config_type(&tn_cache_factory, "tern.extensions.filters.http.cache.v1.CachePerRoute"));
    ck_assert_ptr_null(
        tn_filter_factory_config_type(&tn_router_factory, "tern.extensions.filters.http.cache.v1.CacheConfig"));
}
END_TEST

/* ---- typed_per_filter_config on route tables ---------------------------- */

#define PER_ROUTE_ANY(fields)                                                                                          \
    "{'@type': type.googleapis.com/tern.extensions.filters.http.cache.v1.CachePerRoute, " fields "}"

static tn_pb_route_config *route_pb(const char *yaml)
{
    return (tn_pb_route_config *)parse(&envoy__config__route__v3__route_configuration__descriptor, yaml);
}

static struct tn_route_table *routes(const char *yaml)
{
    tn_pb_route_config *pb = route_pb(yaml);
    struct tn_route_table *t = tn_route_table_compile(pb, &err);
    protobuf_c_message_free_unpacked(&pb->base, NULL);
    return t;
}

static void route_error(const char *yaml, const char *msg)
{
    struct tn_route_table *t = routes(yaml);
    ck_assert_msg(t == NULL, "'%s' compiled, expected '%s'", yaml, msg);
    ck_assert_str_eq(err.msg, msg);
}

START_TEST(per_filter_lookup)
{
    struct tn_route_table *t =
        routes("virtual_hosts:\n"
               "- name: v\n"
               "  domains: [a.com]\n"
               "  typed_per_filter_config: {envoy.filters.http.cache: " PER_ROUTE_ANY(
                   "default_ttl: 30s") "}\n"
                                       "  routes:\n"
                                       "  - match: {prefix: /api}\n"
                                       "    route: {cluster: c}\n"
                                       "    typed_per_filter_config: {envoy.filters.http.cache: " PER_ROUTE_ANY(
                                           "disabled: true") "}\n"
                                                             "  - match: {prefix: /static}\n"
                                                             "    route: {cluster: c}\n"
                                                             "    typed_per_filter_config: {my-cache: " PER_ROUTE_ANY(
                                                                 "ttl_override: 1s") "}\n"
                                                                                     "  - match: {prefix: /}\n"
                                                                                     "    route: {cluster: c}\n"
                                                                                     "- name: w\n"
                                                                                     "  domains: [b.com]\n"
                                                                                     "  routes: [{match: {prefix: /}, "
                                                                                     "route: {cluster: c}}]\n");
    ck_assert_msg(t != NULL, "%s", err.msg);
    const struct tn_vhost *v = &t->vhosts[0], *w = &t->vhosts[1];
    const struct tn_cache_per_route *pr;

    pr = tn_route_filter_config(&v->routes[0], v, &tn_cache_factory); /* the route's beats the vhost's */
    ck_assert_ptr_nonnull(pr);
    ck_assert(pr->disabled);
    ck_assert_uint_eq(pr->default_ttl_ms, TN_CACHE_UNSET);
    pr = tn_route_filter_config(&v->routes[1], v, &tn_cache_factory); /* found by its type under another name */
    ck_assert_ptr_nonnull(pr);
    ck_assert(!pr->disabled);
    ck_assert_uint_eq(pr->ttl_override_ms, 1000);
    ck_assert_str_eq(v->routes[1].filter_configs[0].name, "my-cache");
    pr = tn_route_filter_config(&v->routes[2], v, &tn_cache_factory); /* none on the route: the vhost's */
    ck_assert_ptr_nonnull(pr);
    ck_assert_uint_eq(pr->default_ttl_ms, 30000);
    ck_assert_ptr_eq(tn_route_filter_config(NULL, v, &tn_cache_factory), pr);
    ck_assert_ptr_null(tn_route_filter_config(&w->routes[0], w, &tn_cache_factory)); /* none anywhere */
    ck_assert_ptr_null(tn_route_filter_config(NULL, NULL, &tn_cache_factory));
    ck_assert_ptr_null(tn_route_filter_config(&v->routes[0], v, &tn_router_factory)); /* other filters: none */
    tn_route_table_unref(t);
}
END_TEST

START_TEST(per_filter_errors)
{
    route_error(
        "virtual_hosts: [{name: v, domains: ['*'], routes: [], typed_per_filter_config: "
        "{envoy.filters.http.cache: " PER_ROUTE_ANY("stale_ttl: -1s") "}}]",
        "virtual_hosts[0].typed_per_filter_config[\"envoy.filters.http.cache\"].stale_ttl: must not be negative");
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: [], typed_per_filter_config: "
                "{envoy.filters.http.lua: {'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3."
                "Router}}}]",
                "virtual_hosts[0].typed_per_filter_config[\"envoy.filters.http.lua\"]: filter "
                "'envoy.filters.http.router' takes no per-route config");
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: c}, "
                "typed_per_filter_config: {envoy.filters.http.router: " PER_ROUTE_ANY("") "}}]}]",
                "virtual_hosts[0].routes[0].typed_per_filter_config[\"envoy.filters.http.router\"]: filter "
                "'envoy.filters.http.router' takes no per-route config");
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: [], typed_per_filter_config: "
                "{x.unknown: {'@type': type.googleapis.com/envoy.config.route.v3.RouteConfiguration}}}]",
                "virtual_hosts[0].typed_per_filter_config[\"x.unknown\"]: no HTTP filter named 'x.unknown' or for "
                "type 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration'");
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: [], typed_per_filter_config: "
                "{envoy.filters.http.cache: {'@type': type.googleapis.com/envoy.extensions.filters.http.cache.v3."
                "CacheConfig}}}]",
                "virtual_hosts[0].typed_per_filter_config[\"envoy.filters.http.cache\"]: expected type "
                "'tern.extensions.filters.http.cache.v1.CachePerRoute', got "
                "'envoy.extensions.filters.http.cache.v3.CacheConfig'");
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: [], typed_per_filter_config: "
                "{envoy.filters.http.cache: " PER_ROUTE_ANY("") ", my-cache: " PER_ROUTE_ANY("") "}}]",
                "virtual_hosts[0].typed_per_filter_config[\"my-cache\"]: filter 'envoy.filters.http.cache' is also "
                "configured under 'envoy.filters.http.cache'");
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, route: {weighted_clusters: "
                "{clusters: [{name: a, weight: 1, typed_per_filter_config: {envoy.filters.http.cache: " PER_ROUTE_ANY(
                    "") "}}]}}}]}]",
                "virtual_hosts[0].routes[0].route.weighted_clusters.clusters[0].typed_per_filter_config: not "
                "supported by tern on weighted clusters; set it on the route");
    route_error("typed_per_filter_config: {envoy.filters.http.cache: " PER_ROUTE_ANY(
                    "") "}\n"
                        "virtual_hosts: [{name: v, domains: ['*'], routes: []}]",
                "typed_per_filter_config: not supported by tern on the route configuration; set it on virtual hosts "
                "or routes");
}
END_TEST

/* Envoy's FilterConfig wrapper is not in tern's API: from YAML the loader
 * refuses its type; from a control plane's bytes the route compiler does. */
START_TEST(per_filter_filter_config_wrapper)
{
    tn_pb_route_config *pb = route_pb("virtual_hosts: [{name: v, domains: ['*'], routes: [], typed_per_filter_config: "
                                      "{envoy.filters.http.cache: " PER_ROUTE_ANY("") "}}]");
    Google__Protobuf__Any *any = pb->virtual_hosts[0]->typed_per_filter_config[0]->value;
    free(any->type_url);
    any->type_url = strdup("type.googleapis.com/envoy.config.route.v3.FilterConfig");
    struct tn_route_table *t = tn_route_table_compile(pb, &err);
    protobuf_c_message_free_unpacked(&pb->base, NULL);
    ck_assert_ptr_null(t);
    ck_assert_str_eq(err.msg, "virtual_hosts[0].typed_per_filter_config[\"envoy.filters.http.cache\"]: "
                              "envoy.config.route.v3.FilterConfig (is_optional, disabled) is not supported by tern; "
                              "give the filter's per-route config itself");
}
END_TEST

Suite *cache_config_suite(void)
{
    Suite *s = suite_create("cache_config");
    TCase *tc = tcase_create("cache_config");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, envoy_defaults);
    tcase_add_test(tc, tern_targeted);
    tcase_add_test(tc, envoy_fields);
    tcase_add_test(tc, envoy_errors);
    tcase_add_test(tc, tern_defaults);
    tcase_add_test(tc, tern_fields);
    tcase_add_test(tc, tern_errors);
    tcase_add_test(tc, per_route_compiles);
    tcase_add_test(tc, factory_types);
    tcase_add_test(tc, per_filter_lookup);
    tcase_add_test(tc, per_filter_errors);
    tcase_add_test(tc, per_filter_filter_config_wrapper);
    suite_add_tcase(s, tc);
    return s;
}
