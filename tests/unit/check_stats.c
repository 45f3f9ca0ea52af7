/* The stats store: Envoy names, Prometheus names and tags, shards. */
#include <check.h>
#include <string.h>

#include "dataplane/server/config.h"
#include "dataplane/stats/dp_stats.h"
#include "dataplane/stats/stats.h"
#include "suites.h"
#include "xds/bootstrap.h"

static const struct tn_stat *find(const struct tn_stats *st, const char *name)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->v[i].name, name) == 0)
            return &st->v[i];
    return NULL;
}

START_TEST(names_and_tags)
{
    struct tn_stats st;
    tn_stats_init(&st);
    tn_stats_add(&st, TN_SCOPE_CLUSTER, "service1", "upstream_rq_total", TN_STAT_COUNTER);
    tn_stats_add(&st, TN_SCOPE_HTTP, "ingress_http", "downstream_rq_2xx", TN_STAT_COUNTER);
    tn_stats_add(&st, TN_SCOPE_CLUSTER, "s\"1", "upstream_rq_503", TN_STAT_COUNTER);
    tn_stats_add(&st, TN_SCOPE_LISTENER, "127.0.0.1_10000", "downstream_cx_active", TN_STAT_GAUGE);
    tn_stats_add(&st, TN_SCOPE_CLUSTER, "c", "health_check.attempt", TN_STAT_COUNTER);
    tn_stats_add(&st, TN_SCOPE_NONE, NULL, "server.live", TN_STAT_GAUGE);

    const struct tn_stat *s = find(&st, "cluster.service1.upstream_rq_total");
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s->prom_name, "envoy_cluster_upstream_rq_total");
    ck_assert_str_eq(s->labels, "envoy_cluster_name=\"service1\"");
    s = find(&st, "http.ingress_http.downstream_rq_2xx");
    ck_assert_str_eq(s->prom_name, "envoy_http_downstream_rq_xx");
    ck_assert_str_eq(s->labels, "envoy_response_code_class=\"2\",envoy_http_conn_manager_prefix=\"ingress_http\"");
    s = find(&st, "cluster.s\"1.upstream_rq_503");
    ck_assert_str_eq(s->prom_name, "envoy_cluster_upstream_rq");
    ck_assert_str_eq(s->labels, "envoy_response_code=\"503\",envoy_cluster_name=\"s\\\"1\"");
    s = find(&st, "listener.127.0.0.1_10000.downstream_cx_active");
    ck_assert_str_eq(s->prom_name, "envoy_listener_downstream_cx_active");
    ck_assert_str_eq(s->labels, "envoy_listener_address=\"127.0.0.1_10000\"");
    s = find(&st, "cluster.c.health_check.attempt");
    ck_assert_str_eq(s->prom_name, "envoy_cluster_health_check_attempt");
    s = find(&st, "server.live");
    ck_assert_str_eq(s->prom_name, "envoy_server_live");
    ck_assert_str_eq(s->labels, "");
    /* the same name is the same stat */
    ck_assert_uint_eq(tn_stats_add(&st, TN_SCOPE_CLUSTER, "service1", "upstream_rq_total", TN_STAT_COUNTER), 0);
    ck_assert_uint_eq(st.n, 6);
    tn_stats_dispose(&st);
}
END_TEST

START_TEST(shards_sum_and_reset)
{
    struct tn_stats st;
    tn_stats_init(&st);
    uint32_t c = tn_stats_add(&st, TN_SCOPE_NONE, NULL, "a.counter", TN_STAT_COUNTER);
    uint32_t g = tn_stats_add(&st, TN_SCOPE_NONE, NULL, "a.gauge", TN_STAT_GAUGE);
    uint32_t h = tn_stats_add(&st, TN_SCOPE_NONE, NULL, "a.hist", TN_STAT_HISTOGRAM);
    uint32_t u = tn_stats_add(&st, TN_SCOPE_NONE, NULL, "a.unused", TN_STAT_COUNTER);
    _Atomic uint64_t *s1 = tn_stats_shard(&st), *s2 = tn_stats_shard(&st);
    ck_assert_uint_eq(tn_stats_add(&st, TN_SCOPE_NONE, NULL, "late", TN_STAT_COUNTER), UINT32_MAX);
    tn_stat_add(s1, c, 5);
    tn_stat_inc(s2, c);
    tn_stat_inc(s1, g); /* a connection opened on one worker ... */
    tn_stat_inc(s1, g);
    tn_stat_dec(s2, g); /* ... and one closed on another */
    tn_stat_record(s1, h, 0);
    tn_stat_record(s1, h, 3);
    tn_stat_record(s2, h, 7000);
    tn_stat_record(s2, h, 99999999);
    ck_assert_uint_eq(tn_stats_value(&st, find(&st, "a.counter")), 6);
    ck_assert_uint_eq(tn_stats_value(&st, find(&st, "a.gauge")), 1);
    uint64_t b[TN_HIST_BUCKETS + 1], n, sum;
    tn_stats_histogram(&st, find(&st, "a.hist"), b, &n, &sum);
    ck_assert_uint_eq(n, 4);
    ck_assert_uint_eq(sum, 0 + 3 + 7000 + 99999999);
    ck_assert_uint_eq(b[0], 1);  /* <= 0.5 */
    ck_assert_uint_eq(b[1], 1);  /* <= 1 */
    ck_assert_uint_eq(b[2], 2);  /* <= 5 */
    ck_assert_uint_eq(b[11], 2); /* <= 5000 */
    ck_assert_uint_eq(b[12], 3); /* <= 10000 */
    ck_assert_uint_eq(b[TN_HIST_BUCKETS - 1], 3);
    ck_assert_uint_eq(b[TN_HIST_BUCKETS], 4); /* +Inf */
    ck_assert(tn_stats_used(&st, find(&st, "a.counter")));
    ck_assert(!tn_stats_used(&st, find(&st, "a.unused")));
    (void)u;
    tn_stats_reset_counters(&st);
    ck_assert_uint_eq(tn_stats_value(&st, find(&st, "a.counter")), 0);
    ck_assert_uint_eq(tn_stats_value(&st, find(&st, "a.gauge")), 1); /* gauges are not reset */
    tn_stat_inc(s2, c);
    ck_assert_uint_eq(tn_stats_value(&st, find(&st, "a.counter")), 1);
    tn_stats_dispose(&st);
}
END_TEST

/* Stats added after the shards exist (clusters from CDS) take the reserve;
 * past it they are refused; a name added again is found, not repeated. */
START_TEST(reserve_after_shards)
{
    struct tn_stats st;
    tn_stats_init(&st);
    uint32_t a = tn_stats_add(&st, TN_SCOPE_NONE, NULL, "a", TN_STAT_COUNTER);
    tn_stats_reserve(&st, 1 + TN_HIST_SLOTS + 500);
    _Atomic uint64_t *s1 = tn_stats_shard(&st), *s2 = tn_stats_shard(&st);
    uint32_t late = tn_stats_add(&st, TN_SCOPE_CLUSTER, "new", "upstream_rq_total", TN_STAT_COUNTER);
    uint32_t hist = tn_stats_add(&st, TN_SCOPE_CLUSTER, "new", "upstream_rq_time", TN_STAT_HISTOGRAM);
    uint32_t codes = tn_stats_add_codes(&st, TN_SCOPE_CLUSTER, "new", "upstream_rq");
    ck_assert_uint_ne(late, UINT32_MAX);
    ck_assert_uint_ne(hist, UINT32_MAX);
    ck_assert_uint_ne(codes, UINT32_MAX);
    ck_assert_uint_eq(tn_stats_add(&st, TN_SCOPE_CLUSTER, "new", "upstream_rq_total", TN_STAT_COUNTER), late);
    ck_assert_uint_eq(tn_stats_add(&st, TN_SCOPE_CLUSTER, "other", "x", TN_STAT_COUNTER), UINT32_MAX); /* full */
    tn_stat_inc(s1, late);
    tn_stat_add(s2, late, 2);
    tn_stat_record(s2, hist, 3);
    tn_stat_inc(s1, codes + (503 - 100));
    tn_stat_inc(s1, a);
    ck_assert_uint_eq(tn_stats_value(&st, find(&st, "cluster.new.upstream_rq_total")), 3);
    const struct tn_stat *block = find(&st, "cluster.new.upstream_rq");
    ck_assert_ptr_nonnull(block);
    ck_assert_uint_eq(block->n_codes, TN_STAT_CODES);
    struct tn_stat c503;
    char name[128], labels[128];
    tn_stats_code_stat(block, 503, &c503, name, sizeof(name), labels, sizeof(labels));
    ck_assert_str_eq(c503.name, "cluster.new.upstream_rq_503");
    ck_assert_str_eq(c503.labels, "envoy_response_code=\"503\",envoy_cluster_name=\"new\"");
    ck_assert_uint_eq(tn_stats_value(&st, &c503), 1);
    ck_assert_uint_eq(tn_stats_add_codes(&st, TN_SCOPE_CLUSTER, "new", "upstream_rq"), codes); /* found again */
    ck_assert_uint_eq(tn_stats_value(&st, find(&st, "a")), 1);
    tn_stats_reset_counters(&st);
    ck_assert_uint_eq(tn_stats_value(&st, find(&st, "cluster.new.upstream_rq_total")), 0);
    tn_stats_dispose(&st);
}
END_TEST

START_TEST(data_plane_names)
{
    static const char yaml[] =
        "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}\n"
        "static_resources:\n"
        "  listeners:\n"
        "  - name: l\n"
        "    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}\n"
        "    filter_chains:\n"
        "    - filters:\n"
        "      - name: envoy.filters.network.http_connection_manager\n"
        "        typed_config:\n"
        "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager\n"
        "          stat_prefix: ingress_http\n"
        "          route_config: {virtual_hosts: [{name: a, domains: [\"*\"], routes: [{match: {prefix: /}, route: "
        "{cluster: service1}}]}]}\n"
        "          http_filters: [{name: envoy.filters.http.router, typed_config: {\"@type\": "
        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]\n"
        "  clusters:\n"
        "  - name: service1\n"
        "    load_assignment: {cluster_name: service1, endpoints: [{lb_endpoints: [{endpoint: {address: "
        "{socket_address: {address: 127.0.0.1, port_value: 8081}}}}]}]}\n";
    struct tn_err err;
    tn_err_init(&err);
    tn_pb_bootstrap *b = tn_bootstrap_load(NULL, yaml, &err);
    ck_assert_msg(b != NULL, "%s", err.msg);
    struct tn_config *cfg = tn_config_compile(b, &err);
    ck_assert_msg(cfg != NULL, "%s", err.msg);
    struct tn_stats st;
    struct tn_server_stats ss;
    tn_stats_init(&st);
    ck_assert_int_eq(tn_dp_stats_register(&st, cfg, &ss), 0);
    static const char *const names[] = {
        "http.ingress_http.downstream_rq_total", "http.ingress_http.downstream_cx_active",
        "http.ingress_http.downstream_rq_5xx",   "http.ingress_http.no_route",
        "listener.127.0.0.1_10000.downstream_cx_total", "cluster.service1.upstream_rq_total",
        "cluster.service1.upstream_cx_connect_fail",    "cluster.service1.membership_healthy",
        "cluster.service1.upstream_rq_time",             "server.live",
        "cluster_manager.active_clusters",               "listener_manager.total_listeners_active",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        ck_assert_msg(find(&st, names[i]) != NULL, "missing %s", names[i]);
    ck_assert_uint_eq(cfg->clusters[0]->stats.upstream_rq_total, find(&st, "cluster.service1.upstream_rq_total")->slot);
    ck_assert_uint_eq(find(&st, "cluster.service1.upstream_rq_time")->kind, TN_STAT_HISTOGRAM);
    tn_stats_dispose(&st);
    tn_config_unref(cfg);
}
END_TEST

Suite *stats_suite(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("stats");
    tcase_add_test(tc, names_and_tags);
    tcase_add_test(tc, shards_sum_and_reset);
    tcase_add_test(tc, reserve_after_shards);
    tcase_add_test(tc, data_plane_names);
    suite_add_tcase(s, tc);
    return s;
}
