/* The YAML -> proto converter, the JSON printer and the type registry. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/core/buf.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb-c.h"
#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/extensions/filters/http/router/v3/router.pb-c.h"
#include "suites.h"
#include "xds/bootstrap.h"
#include "api/pb/pbconv.h"
#include "api/pb/pbjson.h"
#include "api/pb/types.h"
#include "api/pb/unsupported.h"

typedef Envoy__Config__Cluster__V3__Cluster pb_cluster;

static struct tn_err err;

static ProtobufCMessage *conv(const char *yaml, const ProtobufCMessageDescriptor *d)
{
    tn_err_init(&err);
    return tn_pbconv_yaml_msg(yaml, strlen(yaml), d, &err);
}

static pb_cluster *cluster(const char *yaml)
{
    return (pb_cluster *)conv(yaml, &envoy__config__cluster__v3__cluster__descriptor);
}

static void expect_error(const char *yaml, const ProtobufCMessageDescriptor *d, const char *msg)
{
    ProtobufCMessage *m = conv(yaml, d);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.msg, msg) != NULL, "expected '%s' in '%s'", msg, err.msg);
}

START_TEST(scalars_enums_wrappers_durations)
{
    pb_cluster *c = cluster("name: web\n"
                            "type: STRICT_DNS\n"
                            "lb_policy: 1\n" /* enums by number too */
                            "connect_timeout: 0.25s\n"
                            "per_connection_buffer_limit_bytes: 32768\n"
                            "respect_dns_ttl: true\n"
                            "dns_refresh_rate: {seconds: 3, nanos: 5}\n");
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->name, "web");
    ck_assert_int_eq(c->type, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STRICT_DNS);
    ck_assert_int_eq(c->cluster_discovery_type_case, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__CLUSTER_DISCOVERY_TYPE_TYPE);
    ck_assert_int_eq(c->lb_policy, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__LEAST_REQUEST);
    ck_assert_int_eq(c->connect_timeout->seconds, 0);
    ck_assert_int_eq(c->connect_timeout->nanos, 250000000);
    ck_assert_uint_eq(c->per_connection_buffer_limit_bytes->value, 32768);
    ck_assert(c->respect_dns_ttl);
    ck_assert_int_eq(c->dns_refresh_rate->seconds, 3);
    ck_assert_int_eq(c->dns_refresh_rate->nanos, 5);
    protobuf_c_message_free_unpacked(&c->base, NULL);
}
END_TEST

START_TEST(enums_in_any_case_and_single_mappings)
{
    /* Envoy matches enum names in any case and takes one mapping where a
     * list of messages is expected as a list of one. */
    pb_cluster *c = cluster("name: web\n"
                            "type: strict_dns\n"
                            "lb_policy: Least_Request\n"
                            "load_assignment: {cluster_name: web, endpoints: {lb_endpoints: {endpoint: {address: "
                            "{socket_address: {address: a.example, port_value: 80}}}}}}\n");
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert_int_eq(c->type, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STRICT_DNS);
    ck_assert_int_eq(c->lb_policy, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__LEAST_REQUEST);
    ck_assert_uint_eq(c->load_assignment->n_endpoints, 1);
    ck_assert_uint_eq(c->load_assignment->endpoints[0]->n_lb_endpoints, 1);
    ck_assert_str_eq(c->load_assignment->endpoints[0]->lb_endpoints[0]->endpoint->address->socket_address->address,
                     "a.example");
    protobuf_c_message_free_unpacked(&c->base, NULL);
    const ProtobufCMessageDescriptor *cd = &envoy__config__cluster__v3__cluster__descriptor;
    /* a typo inside a single mapping is reported at its [0] */
    expect_error("name: a\nload_assignment: {endpoints: {lb_endpoints: {endpont: {}}}}\n", cd,
                 "load_assignment.endpoints[0].lb_endpoints[0].endpont: unknown field (did you mean 'endpoint'?)");
    expect_error("name: a\nlb_policy: round_robbin\n", cd,
                 "lb_policy: unknown enum value 'round_robbin' (did you mean 'ROUND_ROBIN'?)");
}
END_TEST

START_TEST(envoy_fields_tern_lacks)
{
    const ProtobufCMessageDescriptor *cd = &envoy__config__cluster__v3__cluster__descriptor;
    /* a field of Envoy's that api/ leaves out, by its snake or JSON name */
    expect_error("name: a\nlb_subset_config: {}\n", cd,
                 "lb_subset_config: envoy.config.cluster.v3.Cluster.lb_subset_config is not supported by tern");
    expect_error("name: a\nlbSubsetConfig: {}\n", cd,
                 "lbSubsetConfig: envoy.config.cluster.v3.Cluster.lb_subset_config is not supported by tern");
    /* close to one of Envoy's names tern lacks: suggested all the same */
    expect_error("name: a\nlb_subset_confg: {}\n", cd, "lb_subset_confg: unknown field (did you mean 'lb_subset_config'?)");
    /* far from every name: no suggestion */
    expect_error("name: a\nzzzzzzzz: 1\n", cd, "zzzzzzzz: unknown field");
    ProtobufCMessage *m = conv("name: a\nzzzzzzzz: 1\n", cd);
    ck_assert_ptr_null(m);
    ck_assert_ptr_null(strstr(err.msg, "did you mean"));
    /* an empty key: an unknown field, and no endless search (fuzz_config found it) */
    expect_error("name: a\n\"\": 1\n", cd, "unknown field");
    ck_assert(!tn_unsupported_envoy_field(cd, ""));
    ck_assert_uint_eq(tn_edit_distance("clustr", "cluster", 5), 1);
    ck_assert_uint_eq(tn_edit_distance("abc", "xyz", 2), 2);
}
END_TEST

START_TEST(camel_case_repeated_and_maps)
{
    pb_cluster *c = cluster("name: web\n"
                            "connectTimeout: 1s\n"
                            "loadAssignment:\n"
                            "  clusterName: web\n"
                            "  endpoints:\n"
                            "  - lbEndpoints:\n"
                            "    - endpoint: {address: {socketAddress: {address: 10.0.0.1, portValue: 80}}}\n"
                            "    - endpoint: {address: {socket_address: {address: 10.0.0.2, port_value: \"81\"}}}\n"
                            "typed_extension_protocol_options:\n"
                            "  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n"
                            "    \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n"
                            "    explicit_http_config: {http2_protocol_options: {}}\n");
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->connect_timeout->seconds, 1);
    ck_assert_uint_eq(c->load_assignment->n_endpoints, 1);
    ck_assert_uint_eq(c->load_assignment->endpoints[0]->n_lb_endpoints, 2);
    ck_assert_uint_eq(c->load_assignment->endpoints[0]->lb_endpoints[1]->endpoint->address->socket_address->port_value,
                      81);
    ck_assert_uint_eq(c->n_typed_extension_protocol_options, 1);
    ck_assert_str_eq(c->typed_extension_protocol_options[0]->value->type_url,
                     "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
    ck_assert_uint_gt(c->typed_extension_protocol_options[0]->value->value.len, 0);
    protobuf_c_message_free_unpacked(&c->base, NULL);
}
END_TEST

START_TEST(struct_values_and_ignore_tag)
{
    const char *yaml = "node:\n"
                       "  id: n1\n"
                       "  metadata: {a: 1.5, b: [x, true, null], c: {d: \"7\"}}\n"
                       "!ignore defs: {x: &anchor 1}\n"
                       "other: !ignore [1]\n";
    Envoy__Config__Bootstrap__V3__Bootstrap *b =
        (void *)conv(yaml, &envoy__config__bootstrap__v3__bootstrap__descriptor);
    ck_assert_msg(b != NULL, "%s", err.msg);
    ck_assert_str_eq(b->node->id, "n1");
    ck_assert_uint_eq(b->node->metadata->n_fields, 3);
    struct tn_buf out;
    tn_buf_init(&out);
    tn_pbjson_print(&b->node->metadata->base, &out, 0);
    ck_assert_str_eq(out.data, "{\"a\":1.5,\"b\":[\"x\",true,null],\"c\":{\"d\":\"7\"}}");
    tn_buf_dispose(&out);
    protobuf_c_message_free_unpacked(&b->base, NULL);
}
END_TEST

START_TEST(errors_name_the_path)
{
    const ProtobufCMessageDescriptor *cd = &envoy__config__cluster__v3__cluster__descriptor;
    expect_error("name: a\nconect_timeout: 1s\n", cd, "conect_timeout: unknown field");
    expect_error("name: a\nconnect_timeout: 5 seconds\n", cd, "connect_timeout: invalid duration '5 seconds'");
    expect_error("name: a\nlb_policy: ROUND_ROBBIN\n", cd, "lb_policy: unknown enum value 'ROUND_ROBBIN'");
    expect_error("name: [a]\n", cd, "name: expected a string, got a list");
    expect_error("name: a\nload_assignment: x\n", cd, "load_assignment: expected a mapping, got a scalar");
    expect_error("load_assignment: {endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {port_value: "
                 "-1}}}}]}]}\n",
                 cd, "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: "
                     "expected an unsigned 32-bit integer, got '-1'");
    expect_error("per_connection_buffer_limit_bytes: 4294967296\n", cd, "expected an unsigned 32-bit integer");
    expect_error("name: a\nname: b\n", cd, "name: field given more than once");
    expect_error("name: a\nconnectTimeout: 1s\nconnect_timeout: 2s\n", cd, "connect_timeout: field given more than once");
    expect_error("respect_dns_ttl: yes\n", cd, "respect_dns_ttl: expected true or false, got 'yes'");
    expect_error("typed_extension_protocol_options: {k: {\"@type\": type.googleapis.com/no.Such}}\n", cd,
                 "typed_extension_protocol_options[\"k\"]: unsupported extension k (type.googleapis.com/no.Such)");
    expect_error("typed_extension_protocol_options: {k: {explicit_http_config: {}}}\n", cd, "missing \"@type\"");
    expect_error("", cd, "empty configuration");
    expect_error("a: 1\n---\nb: 2\n", cd, "more than one YAML document");
    expect_error("name: [unclosed\n", cd, "YAML syntax error");
    expect_error("- a\n", cd, "expected a mapping, got a list");
    /* oneof: two members */
    expect_error("virtual_hosts: [{name: v, domains: ['*'], routes: [{match: {prefix: /, path: /a}}]}]\n",
                 &envoy__config__route__v3__route_configuration__descriptor,
                 "virtual_hosts[0].routes[0].match.path: only one of a oneof may be set, and 'prefix' is already set");
}
END_TEST

START_TEST(alias_bombs_and_deep_nesting_are_refused)
{
    struct tn_buf y;
    tn_buf_init(&y);
    tn_buf_adds(&y, "node:\n  metadata:\n    a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 12; i++)
        tn_buf_printf(&y, "    a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i - 1, i - 1, i - 1,
                      i - 1, i - 1, i - 1, i - 1, i - 1);
    expect_error(y.data, &envoy__config__bootstrap__v3__bootstrap__descriptor, "too many alias expansions");
    tn_buf_dispose(&y);

    tn_buf_init(&y);
    tn_buf_adds(&y, "node: {metadata: {a: ");
    for (int i = 0; i < 300; i++)
        tn_buf_adds(&y, "[");
    for (int i = 0; i < 300; i++)
        tn_buf_adds(&y, "]");
    tn_buf_adds(&y, "}}\n");
    expect_error(y.data, &envoy__config__bootstrap__v3__bootstrap__descriptor, "nesting too deep");
    tn_buf_dispose(&y);
}
END_TEST

START_TEST(json_round_trip)
{
    const char *yaml = "name: web\n"
                       "type: EDS\n"
                       "connect_timeout: 1.5s\n"
                       "eds_cluster_config: {service_name: web, eds_config: {ads: {}, initial_fetch_timeout: 0s}}\n"
                       "metadata: {filter_metadata: {x: {y: [1, \"two\"]}}}\n"
                       "typed_extension_protocol_options:\n"
                       "  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n"
                       "    \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n"
                       "    common_http_protocol_options: {idle_timeout: 3600s, max_requests_per_connection: 7}\n"
                       "    explicit_http_config: {http_protocol_options: {}}\n";
    struct tn_bytes a, b;
    struct tn_buf json;
    const ProtobufCMessageDescriptor *d = &envoy__config__cluster__v3__cluster__descriptor;

    tn_err_init(&err);
    ck_assert_int_eq(tn_pbconv_yaml(yaml, strlen(yaml), d, &a, &err), 0);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, a.len, a.data);
    tn_buf_init(&json);
    tn_pbjson_print(m, &json, 2);
    ck_assert_msg(strstr(json.data, "\"connect_timeout\": \"1.5s\"") != NULL, "%s", json.data);
    ck_assert_msg(strstr(json.data, "\"@type\": \"type.googleapis.com/envoy.extensions.upstreams.http.v3."
                                    "HttpProtocolOptions\"") != NULL,
                  "%s", json.data);
    ck_assert_msg(strstr(json.data, "\"type\": \"EDS\"") != NULL, "%s", json.data);
    /* The printed JSON loads back to the same bytes. */
    ck_assert_int_eq(tn_pbconv_yaml(json.data, json.len, d, &b, &err), 0);
    ck_assert_uint_eq(a.len, b.len);
    ck_assert_mem_eq(a.data, b.data, a.len);
    protobuf_c_message_free_unpacked(m, NULL);
    tn_buf_dispose(&json);
    free(a.data);
    free(b.data);
}
END_TEST

START_TEST(json_strings_are_always_valid)
{
    struct tn_buf out;
    tn_buf_init(&out);
    tn_pbjson_string(&out, "a\"b\\\n\x01\xff\xc3\xa9", 9);
    ck_assert_str_eq(out.data, "\"a\\\"b\\\\\\n\\u0001\\ufffd\xc3\xa9\"");
    tn_buf_dispose(&out);
}
END_TEST

START_TEST(durations)
{
    int64_t s;
    int32_t n;
    ck_assert_int_eq(tn_pbconv_parse_duration("5s", &s, &n), 0);
    ck_assert(s == 5 && n == 0);
    ck_assert_int_eq(tn_pbconv_parse_duration("-1.5s", &s, &n), 0);
    ck_assert(s == -1 && n == -500000000);
    ck_assert_int_eq(tn_pbconv_parse_duration("0.000000001s", &s, &n), 0);
    ck_assert(s == 0 && n == 1);
    const char *bad[] = {"5", "s", "1.s", "1.0000000001s", "5ms", " 5s", "99999999999999s", "+5s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(tn_pbconv_parse_duration(bad[i], &s, &n) == -1, "accepted '%s'", bad[i]);
}
END_TEST

START_TEST(type_registry)
{
    ck_assert_ptr_eq(tn_type_find("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"),
                     &envoy__extensions__filters__http__router__v3__router__descriptor);
    ck_assert_ptr_eq(tn_type_find("envoy.config.cluster.v3.Cluster"), &envoy__config__cluster__v3__cluster__descriptor);
    ck_assert_ptr_null(tn_type_find("type.googleapis.com/envoy.extensions.filters.http.nope.v3.Nope"));
    ck_assert_str_eq(tn_type_name("a/b/c.D"), "c.D");
}
END_TEST

START_TEST(config_yaml_merges_like_proto_merge)
{
    char path[] = "/tmp/tern-merge-XXXXXX.yaml";
    int fd = mkstemps(path, 5);
    const char *file = "node: {id: a, cluster: c1}\n"
                       "static_resources: {clusters: [{name: one}]}\n";
    ck_assert_int_eq(write(fd, file, strlen(file)), (ssize_t)strlen(file));
    close(fd);
    tn_err_init(&err);
    tn_pb_bootstrap *b =
        tn_bootstrap_load(path, "node: {id: b}\nstatic_resources: {clusters: [{name: two}]}\n", &err);
    unlink(path);
    ck_assert_msg(b != NULL, "%s", err.msg);
    ck_assert_str_eq(b->node->id, "b");        /* scalars replaced */
    ck_assert_str_eq(b->node->cluster, "c1");  /* messages merged */
    ck_assert_uint_eq(b->static_resources->n_clusters, 2); /* lists appended */
    ck_assert_str_eq(b->static_resources->clusters[1]->name, "two");
    tn_bootstrap_free(b);
}
END_TEST

Suite *pbconv_suite(void)
{
    Suite *s = suite_create("pbconv");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, scalars_enums_wrappers_durations);
    tcase_add_test(tc, camel_case_repeated_and_maps);
    tcase_add_test(tc, enums_in_any_case_and_single_mappings);
    tcase_add_test(tc, envoy_fields_tern_lacks);
    tcase_add_test(tc, struct_values_and_ignore_tag);
    tcase_add_test(tc, errors_name_the_path);
    tcase_add_test(tc, alias_bombs_and_deep_nesting_are_refused);
    tcase_add_test(tc, json_round_trip);
    tcase_add_test(tc, json_strings_are_always_valid);
    tcase_add_test(tc, durations);
    tcase_add_test(tc, type_registry);
    tcase_add_test(tc, config_yaml_merges_like_proto_merge);
    suite_add_tcase(s, tc);
    return s;
}
