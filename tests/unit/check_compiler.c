/* The compiler: route tables, clusters, listeners, whole bootstraps. */
#include <string.h>

#include "dataplane/core/buf.h"
#include "dataplane/server/config.h"
#include "filters/filter.h"
#include "filters/router.h"
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
    return t;
}

static struct tn_config *config(const char *yaml)
{
    tn_err_init(&err);
    tn_pb_bootstrap *b = tn_bootstrap_load(NULL, yaml, &err);
    ck_assert_msg(b != NULL, "%s", err.msg);
    return tn_config_compile(b, &err);
}

static void config_error(const char *yaml, const char *msg)
{
    struct tn_config *c = config(yaml);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err.msg, msg) != NULL, "expected '%s' in '%s'", msg, err.msg);
}

static const char *vhost_of(struct tn_route_table *t, const char *host)
{
    const struct tn_vhost *vh = tn_route_table_vhost(t, host, strlen(host));
    return vh ? vh->name : "(none)";
}

START_TEST(vhost_domain_search_order)
{
    struct tn_route_table *t = routes("virtual_hosts:\n"
                                      "- {name: exact, domains: [www.example.com, 'api.example.com:8080'], routes: []}\n"
                                      "- {name: suffix, domains: ['*.example.com'], routes: []}\n"
                                      "- {name: longsuffix, domains: ['*.eu.example.com'], routes: []}\n"
                                      "- {name: dashsuffix, domains: ['*-bar.org'], routes: []}\n"
                                      "- {name: prefix, domains: ['www.*'], routes: []}\n"
                                      "- {name: any, domains: ['*'], routes: []}\n");
    ck_assert_msg(t != NULL, "%s", err.msg);
    ck_assert_str_eq(vhost_of(t, "www.example.com"), "exact");
    ck_assert_str_eq(vhost_of(t, "WWW.Example.COM"), "exact");
    ck_assert_str_eq(vhost_of(t, "api.example.com:8080"), "exact");
    ck_assert_str_eq(vhost_of(t, "api.example.com"), "suffix");
    ck_assert_str_eq(vhost_of(t, "x.eu.example.com"), "longsuffix");
    ck_assert_str_eq(vhost_of(t, "foo-bar.org"), "dashsuffix");
    ck_assert_str_eq(vhost_of(t, "www.other.net"), "prefix");
    ck_assert_str_eq(vhost_of(t, ".example.com"), "any"); /* '*' matches at least one character */
    ck_assert_str_eq(vhost_of(t, "elsewhere"), "any");
    tn_route_table_unref(t);
}
END_TEST

START_TEST(vhost_lookup_scales)
{
    /* 5000 exact and 5000 wildcard domains: lookups are binary searches. */
    struct tn_buf y;
    tn_buf_init(&y);
    tn_buf_adds(&y, "virtual_hosts:\n");
    for (int i = 0; i < 5000; i++)
        tn_buf_printf(&y, "- {name: v%d, domains: [h%d.example.com, '*.w%d.example.com'], routes: []}\n", i, i, i);
    struct tn_route_table *t = routes(y.data);
    tn_buf_dispose(&y);
    ck_assert_msg(t != NULL, "%s", err.msg);
    ck_assert_str_eq(vhost_of(t, "h4321.example.com"), "v4321");
    ck_assert_str_eq(vhost_of(t, "a.b.w17.example.com"), "v17");
    ck_assert_str_eq(vhost_of(t, "nothing.example.com"), "(none)");
    tn_route_table_unref(t);
}
END_TEST

START_TEST(route_actions_compile)
{
    struct tn_route_table *t = routes(
        "name: r\n"
        "virtual_hosts:\n"
        "- name: v\n"
        "  domains: ['*']\n"
        "  request_mirror_policies: [{cluster: vmirror}]\n"
        "  retry_policy: {retry_on: 5xx, num_retries: 3}\n"
        "  routes:\n"
        "  - match: {prefix: /a}\n"
        "    route: {cluster: a, timeout: 2s, request_mirror_policies: [{cluster_header: X-Mirror, runtime_fraction: "
        "{default_value: {numerator: 25}}}]}\n"
        "  - match: {safe_regex: {regex: '/b/[0-9]+'}, headers: [{name: X-Env, exact_match: prod}]}\n"
        "    route: {weighted_clusters: {clusters: [{name: b1, weight: 30}, {name: b2, weight: 70}]}}\n"
        "  - match: {path: /c}\n"
        "    redirect: {https_redirect: true, response_code: PERMANENT_REDIRECT}\n"
        "  - match: {prefix: /}\n"
        "    direct_response: {status: 200, body: {inline_string: hello}}\n");
    ck_assert_msg(t != NULL, "%s", err.msg);
    const struct tn_vhost *vh = &t->vhosts[0];
    ck_assert_uint_eq(vh->n_routes, 4);
    const struct tn_route *r = &vh->routes[0];
    ck_assert_int_eq(r->kind, TN_ROUTE_CLUSTER);
    ck_assert_uint_eq(r->timeout_ms, 2000);
    ck_assert_uint_eq(r->n_mirrors, 1); /* the route's list wins over the vhost's */
    ck_assert_str_eq(r->mirrors[0].cluster_header, "x-mirror");
    ck_assert_uint_eq(r->mirrors[0].numerator, 25);
    ck_assert_uint_eq(r->mirrors[0].denominator, 100);
    ck_assert_uint_eq(r->retry.num_retries, 3); /* inherited from the vhost */
    ck_assert_uint_eq(r->retry.retry_on, TN_RETRY_ON_5XX);
    r = &vh->routes[1];
    ck_assert_int_eq(r->kind, TN_ROUTE_WEIGHTED);
    ck_assert_uint_eq(r->total_weight, 100);
    ck_assert_str_eq(r->headers[0].name, "x-env");
    ck_assert_uint_eq(r->n_mirrors, 1); /* no list of its own: the vhost's */
    ck_assert_str_eq(r->mirrors[0].cluster, "vmirror");
    ck_assert_uint_eq(r->timeout_ms, 15000); /* Envoy's default */
    r = &vh->routes[2];
    ck_assert_int_eq(r->kind, TN_ROUTE_REDIRECT);
    ck_assert_uint_eq(r->redirect_code, 308);
    ck_assert_str_eq(r->redirect_scheme, "https");
    r = &vh->routes[3];
    ck_assert_int_eq(r->kind, TN_ROUTE_DIRECT);
    ck_assert_str_eq(r->direct_body, "hello");
    tn_route_table_unref(t);
}
END_TEST

static void route_error(const char *yaml, const char *msg)
{
    struct tn_route_table *t = routes(yaml);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err.msg, msg) != NULL, "expected '%s' in '%s'", msg, err.msg);
}

START_TEST(route_errors)
{
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}}]}]",
                "virtual_hosts[0].routes[0]: one of route, redirect, direct_response is required");
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, route: {timeout: 1s}}]}]",
                "virtual_hosts[0].routes[0].route: one of cluster, cluster_header, weighted_clusters is required");
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {safe_regex: {regex: '(['}}, route: "
                "{cluster: a}}]}]",
                "virtual_hosts[0].routes[0].match.safe_regex.regex: invalid regex '(['");
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, route: {weighted_clusters: "
                "{clusters: [{name: a, weight: 0}]}}}]}]",
                "weighted_clusters: the sum of the cluster weights must be greater than 0");
    route_error("virtual_hosts: [{name: v, domains: [a.com], routes: []}, {name: w, domains: [A.com], routes: []}]",
                "only unique values for domains are permitted: 'a.com'");
    route_error("virtual_hosts: [{name: v, domains: ['a*b'], routes: []}]",
                "virtual_hosts[0].domains[0]: invalid domain 'a*b'");
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: []}, {name: v, domains: [x], routes: []}]",
                "virtual_hosts[1]: duplicate virtual host name 'v'");
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: a, "
                "retry_policy: {retry_on: '5xx,sometimes'}}}]}]",
                "route.retry_policy.retry_on: unknown retry condition 'sometimes'");
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: a, "
                "request_mirror_policies: [{cluster: m, cluster_header: x}]}}]}]",
                "route.request_mirror_policies[0]: only one of cluster 'm' or cluster_header 'x' may be set");
    route_error("virtual_hosts: [{name: v, domains: ['*'], request_headers_to_remove: [':path'], routes: []}]",
                "virtual_hosts[0].request_headers_to_remove[0]: ':'-prefixed or host headers may not be removed");
    route_error("virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /}, direct_response: {status: "
                "99}}]}]",
                "direct_response.status: 99 is not in [200, 599]");
}
END_TEST

START_TEST(unnamed_listeners)
{
    /* A static listener without a name is named after its address (stable,
     * unique as addresses are), and the bootstrap /config_dump shows says so too. */
    const char *l = "{address: {socket_address: {address: 127.0.0.1, port_value: %d}}, filter_chains: [{filters: "
                    "[{name: hcm, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network."
                    "http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, route_config: {virtual_hosts: "
                    "[{name: v, domains: ['*'], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}]}, "
                    "http_filters: [{name: r, typed_config: {'@type': "
                    "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]}}]}]}";
    struct tn_buf y;
    tn_buf_init(&y);
    tn_buf_adds(&y, "static_resources: {listeners: [");
    tn_buf_printf(&y, l, 10000);
    tn_buf_adds(&y, ", ");
    tn_buf_printf(&y, l, 10001);
    tn_buf_adds(&y, "]}\n");
    struct tn_config *c = config(y.data);
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert_str_eq(c->listeners[0]->name, "127.0.0.1_10000");
    ck_assert_str_eq(c->listeners[1]->name, "127.0.0.1_10001");
    ck_assert(c->listeners[0]->name_generated);
    ck_assert_str_eq(c->listeners[0]->stat_prefix, "127.0.0.1_10000");
    ck_assert_str_eq(c->bootstrap->static_resources->listeners[1]->name, "127.0.0.1_10001");
    /* the named bootstrap compiles as LDS would take it */
    tn_err_init(&err);
    struct tn_listener *named = tn_listener_compile(c->bootstrap->static_resources->listeners[0], &err);
    ck_assert_msg(named != NULL, "%s", err.msg);
    ck_assert(!named->name_generated);
    tn_listener_unref(named);
    tn_config_unref(c);
    tn_buf_dispose(&y);

    tn_buf_init(&y);
    tn_buf_printf(&y, l, 10002);
    tn_err_init(&err);
    tn_pb_listener *pb = (tn_pb_listener *)tn_pbconv_yaml_msg(y.data, y.len,
                                                              &envoy__config__listener__v3__listener__descriptor, &err);
    ck_assert_msg(pb != NULL, "%s", err.msg);
    ck_assert_ptr_null(tn_listener_compile(pb, &err));
    ck_assert_str_eq(err.msg, "name: must not be empty (a listener from LDS is known by its name)");
    protobuf_c_message_free_unpacked(&pb->base, NULL);
    tn_buf_dispose(&y);
}
END_TEST

static const char *listener_yaml = "static_resources:\n"
                                   "  listeners:\n"
                                   "  - name: l0\n"
                                   "    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}\n"
                                   "    filter_chains:\n"
                                   "    - filters:\n"
                                   "      - name: hcm\n"
                                   "        typed_config:\n"
                                   "          '@type': type.googleapis.com/envoy.extensions.filters.network."
                                   "http_connection_manager.v3.HttpConnectionManager\n"
                                   "          stat_prefix: ingress_http\n"
                                   "          route_config: {virtual_hosts: [{name: v, domains: ['*'], routes: "
                                   "[{match: {prefix: /}, route: {cluster: c1}}]}]}\n"
                                   "          http_filters:\n"
                                   "          - name: envoy.filters.http.router\n"
                                   "            typed_config: {'@type': "
                                   "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}\n"
                                   "  clusters:\n"
                                   "  - name: c1\n"
                                   "    load_assignment: {endpoints: [{lb_endpoints: [{endpoint: {address: "
                                   "{socket_address: {address: 127.0.0.1, port_value: 8080}}}}]}]}\n";

START_TEST(bootstrap_compiles)
{
    struct tn_config *c = config(listener_yaml);
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert_uint_eq(c->n_listeners, 1);
    struct tn_listener *l = c->listeners[0];
    ck_assert_str_eq(l->addr.text, "127.0.0.1:10000");
    ck_assert_str_eq(l->hcm.stat_prefix, "ingress_http");
    ck_assert_str_eq(l->hcm.server_name, "tern");
    ck_assert_uint_eq(l->hcm.max_request_headers_kb, 60);
    ck_assert_uint_eq(l->hcm.n_filters, 1);
    ck_assert_ptr_eq(l->hcm.filters[0].factory, &tn_router_factory);
    ck_assert_uint_eq(c->n_clusters, 1);
    ck_assert_uint_eq(c->clusters[0]->connect_timeout_ms, 5000);
    ck_assert_uint_eq(c->clusters[0]->endpoints->n_endpoints, 1);
    ck_assert_uint_eq(c->clusters[0]->thresholds[0].max_connections, 1024);
    /* The snapshot and what it holds are reference-counted. */
    struct tn_listener *kept = tn_listener_ref(l);
    tn_config_unref(c);
    ck_assert_str_eq(kept->name, "l0");
    tn_listener_unref(kept);
}
END_TEST

START_TEST(bootstrap_errors)
{
    struct tn_buf y;
    tn_buf_init(&y);
    tn_buf_printf(&y, "%s  - name: c1\n", listener_yaml);
    config_error(y.data, "static_resources.clusters[1].name: duplicate cluster name 'c1'");
    tn_buf_dispose(&y);
    config_error("static_resources: {clusters: [{name: s, type: STATIC, load_assignment: {endpoints: [{lb_endpoints: "
                 "[{endpoint: {address: {socket_address: {address: localhost, port_value: 1}}}}]}]}}]}\n"
                 "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}\n",
                 "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address."
                 "socket_address.address: 'localhost' is not an IP address");
    config_error("static_resources: {clusters: [{name: s, type: ORIGINAL_DST}]}\n",
                 "static_resources.clusters[0].type: type ORIGINAL_DST is not supported by tern");
    config_error("dynamic_resources: {ads_config: {api_type: GRPC, transport_api_version: V3, grpc_services: "
                 "[{envoy_grpc: {cluster_name: xds}}]}}\n",
                 "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name: unknown cluster 'xds'");
    config_error("dynamic_resources: {lds_config: {ads: {}}}\n",
                 "dynamic_resources.lds_config.ads: the bootstrap has no dynamic_resources.ads_config");
    config_error("{}", "no listeners");
}
END_TEST

START_TEST(filter_registry)
{
    ck_assert_ptr_eq(tn_filter_factory_by_type("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"),
                     &tn_router_factory);
    ck_assert_ptr_eq(tn_filter_factory_by_name("envoy.filters.http.router"), &tn_router_factory);
    ck_assert_ptr_nonnull(tn_filter_factory_by_type("envoy.extensions.filters.http.cache.v3.CacheConfig"));
    ck_assert_ptr_null(tn_filter_factory_by_type("type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"));
}
END_TEST

Suite *compiler_suite(void)
{
    Suite *s = suite_create("compiler");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, vhost_domain_search_order);
    tcase_add_test(tc, vhost_lookup_scales);
    tcase_add_test(tc, route_actions_compile);
    tcase_add_test(tc, route_errors);
    tcase_add_test(tc, bootstrap_compiles);
    tcase_add_test(tc, bootstrap_errors);
    tcase_add_test(tc, unnamed_listeners);
    tcase_add_test(tc, filter_registry);
    suite_add_tcase(s, tc);
    return s;
}
