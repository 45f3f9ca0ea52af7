/* The admin API on a real loop: a libuv client on the same loop sends one
 * request per connection and reads the whole response. */
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "dataplane/admin/admin.h"
#include "dataplane/core/buf.h"
#include "dataplane/core/log.h"
#include "suites.h"
#include "xds/bootstrap.h"

static uv_loop_t loop;
static struct tn_config *cfg;
static struct tn_stats st;
static struct tn_cm *cm;
static struct tn_admin *adm;
static int port;
static const char *cur_state;
static int n_quit, n_drain, n_graceful, n_hc_fail, n_hc_ok, n_reopen;

static const char *op_state(void *arg)
{
    (void)arg;
    return cur_state;
}
static void op_quit(void *arg)
{
    (void)arg;
    n_quit++;
}
static void op_drain(void *arg, bool graceful)
{
    (void)arg;
    n_drain++;
    n_graceful += graceful;
}
static void op_hc(void *arg, bool fail)
{
    (void)arg;
    if (fail)
        n_hc_fail++;
    else
        n_hc_ok++;
}
static void op_reopen(void *arg)
{
    (void)arg;
    n_reopen++;
}

static const struct tn_admin_ops ops = {
    .state = op_state, .quit = op_quit, .drain_listeners = op_drain, .healthcheck = op_hc, .reopen_logs = op_reopen};

/* A port free right now (bound and released). */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

static void load_config(void)
{
    char yaml[2048];
    struct tn_err err;
    snprintf(
        yaml, sizeof(yaml),
        "node: {id: node-1, cluster: front}\n"
        "admin: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}\n"
        "static_resources:\n"
        "  listeners:\n"
        "  - name: listener_0\n"
        "    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}\n"
        "    filter_chains:\n"
        "    - filters:\n"
        "      - name: envoy.filters.network.http_connection_manager\n"
        "        typed_config:\n"
        "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager\n"
        "          stat_prefix: ingress_http\n"
        "          route_config:\n"
        "            name: local_route\n"
        "            virtual_hosts:\n"
        "            - name: all\n"
        "              domains: ['*']\n"
        "              routes: [{match: {prefix: /}, route: {cluster: service1}}]\n"
        "          http_filters:\n"
        "          - name: envoy.filters.http.router\n"
        "            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}\n"
        "  clusters:\n"
        "  - name: service1\n"
        "    connect_timeout: 1s\n"
        "    load_assignment:\n"
        "      cluster_name: service1\n"
        "      endpoints:\n"
        "      - lb_endpoints:\n"
        "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8081}}}\n",
        port);
    tn_err_init(&err);
    tn_pb_bootstrap *b = tn_bootstrap_load(NULL, yaml, &err);
    ck_assert_msg(b != NULL, "%s", err.msg);
    cfg = tn_config_compile(b, &err);
    ck_assert_msg(cfg != NULL, "%s", err.msg);
}

static void fill_stats(void)
{
    tn_stats_init(&st);
    uint32_t ok = tn_stats_add(&st, TN_SCOPE_CLUSTER, "service1", "upstream_rq_2xx", TN_STAT_COUNTER);
    tn_stats_add(&st, TN_SCOPE_CLUSTER, "service1", "upstream_rq_5xx", TN_STAT_COUNTER);
    uint32_t live = tn_stats_add(&st, TN_SCOPE_NONE, NULL, "server.live", TN_STAT_GAUGE);
    uint32_t t = tn_stats_add(&st, TN_SCOPE_CLUSTER, "service1", "upstream_rq_time", TN_STAT_HISTOGRAM);
    _Atomic uint64_t *shard = tn_stats_shard(&st);
    ck_assert_ptr_nonnull(shard);
    tn_stat_add(shard, ok, 3);
    tn_stat_set(shard, live, 1);
    tn_stat_record(shard, t, 3);
    tn_stat_record(shard, t, 700);
}

static void setup(void)
{
    static const char *const argv[] = {"tern", "-c", "/etc/tern.yaml", "--concurrency", "2"};
    struct tn_admin_info info = {
        .version = "1.2.3-test", .start_ms = 1700000000000ull, .concurrency = 2, .argv = argv, .argc = 5};
    cur_state = "LIVE";
    n_quit = n_drain = n_graceful = n_hc_fail = n_hc_ok = n_reopen = 0;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    port = free_port();
    load_config();
    fill_stats();
    cm = tn_cm_new(&loop, cfg, NULL, NULL, NULL);
    ck_assert_ptr_nonnull(cm);
    adm = tn_admin_start(&loop, cfg, &st, cm, &ops, NULL, &info);
    ck_assert_ptr_nonnull(adm);
}

static void teardown(void)
{
    tn_admin_close(adm);
    tn_cm_close(cm);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    tn_config_unref(cfg);
    tn_stats_dispose(&st);
}

/* --- the client ------------------------------------------------------------------- */

struct client {
    uv_tcp_t tcp;
    uv_connect_t cr;
    uv_write_t wr;
    char req[1024];
    char rb[4096];
    struct tn_buf resp;
    bool done;
};

static int status;
static struct tn_buf resp;
static const char *body; /* into resp */

static void c_closed(uv_handle_t *h)
{
    ((struct client *)h->data)->done = true;
}

static void c_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct client *c = h->data;
    (void)hint;
    *b = uv_buf_init(c->rb, sizeof(c->rb));
}

static void c_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct client *c = s->data;
    if (n > 0)
        tn_buf_add(&c->resp, b->base, (size_t)n);
    else if (n < 0)
        uv_close((uv_handle_t *)s, c_closed);
}

static void c_written(uv_write_t *w, int st)
{
    (void)w;
    ck_assert_int_eq(st, 0);
}

static void c_connected(uv_connect_t *cr, int st)
{
    struct client *c = cr->data;
    ck_assert_int_eq(st, 0);
    uv_buf_t b = uv_buf_init(c->req, (unsigned)strlen(c->req));
    uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, c_written);
    uv_read_start((uv_stream_t *)&c->tcp, c_alloc, c_read);
}

/* Sends one request and waits for the whole response (the server closes). */
static void fetch(const char *method, const char *path)
{
    struct client c;
    struct sockaddr_in sa;
    memset(&c, 0, sizeof(c));
    tn_buf_init(&c.resp);
    snprintf(c.req, sizeof(c.req), "%s %s HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n", method, path);
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(&loop, &c.tcp);
    c.tcp.data = c.cr.data = &c;
    ck_assert_int_eq(uv_tcp_connect(&c.cr, &c.tcp, (struct sockaddr *)&sa, c_connected), 0);
    while (!c.done)
        uv_run(&loop, UV_RUN_ONCE);
    tn_buf_dispose(&resp);
    resp = c.resp;
    ck_assert_ptr_nonnull(resp.data);
    ck_assert_int_eq(sscanf(resp.data, "HTTP/1.1 %d", &status), 1);
    body = strstr(resp.data, "\r\n\r\n");
    ck_assert_ptr_nonnull(body);
    body += 4;
}

static bool has_header(const char *line)
{
    const char *end = strstr(resp.data, "\r\n\r\n");
    const char *p = strstr(resp.data, line);
    return p && p < end;
}

/* --- tests ------------------------------------------------------------------------- */

START_TEST(ready_follows_state)
{
    fetch("GET", "/ready");
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(body, "LIVE\n");
    ck_assert(has_header("Content-Type: text/plain; charset=UTF-8\r\n"));
    ck_assert(has_header("Content-Length: 5\r\n"));
    cur_state = "DRAINING";
    fetch("GET", "/ready");
    ck_assert_int_eq(status, 503);
    ck_assert_str_eq(body, "DRAINING\n");
    tn_buf_dispose(&resp);
}
END_TEST

START_TEST(methods_and_paths)
{
    fetch("GET", "/quitquitquit");
    ck_assert_int_eq(status, 405);
    ck_assert_int_eq(n_quit, 0);
    fetch("POST", "/quitquitquit");
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(body, "OK\n");
    ck_assert_int_eq(n_quit, 1);
    fetch("GET", "/nope");
    ck_assert_int_eq(status, 404);
    ck_assert_ptr_nonnull(strstr(body, "/stats/prometheus"));
    fetch("GET", "/help");
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(body, "  /ready: "));
    fetch("POST", "/healthcheck/fail");
    fetch("POST", "/healthcheck/ok");
    fetch("POST", "/drain_listeners?graceful&inboundonly");
    fetch("POST", "/drain_listeners");
    fetch("POST", "/reopen_logs");
    ck_assert_int_eq(status, 200);
    ck_assert_int_eq(n_hc_fail, 1);
    ck_assert_int_eq(n_hc_ok, 1);
    ck_assert_int_eq(n_drain, 2);
    ck_assert_int_eq(n_graceful, 1);
    ck_assert_int_eq(n_reopen, 1);
    fetch("GET", "/healthcheck/fail");
    ck_assert_int_eq(status, 405);
    ck_assert_int_eq(n_hc_fail, 1);
    tn_buf_dispose(&resp);
}
END_TEST

START_TEST(stats_text_filter_usedonly)
{
    fetch("GET", "/stats");
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(body, "cluster.service1.upstream_rq_2xx: 3\n"
                           "cluster.service1.upstream_rq_5xx: 0\n"
                           "server.live: 1\n"
                           "cluster.service1.upstream_rq_time: P0(nan,1) P25(nan,3) P50(nan,5) P75(nan,750) P90(nan,900) "
                           "P95(nan,950) P99(nan,990) P99.5(nan,995) P99.9(nan,999) P100(nan,1000)\n");
    fetch("GET", "/stats?usedonly");
    ck_assert_str_eq(body, "cluster.service1.upstream_rq_2xx: 3\n"
                           "server.live: 1\n"
                           "cluster.service1.upstream_rq_time: P0(nan,1) P25(nan,3) P50(nan,5) P75(nan,750) P90(nan,900) "
                           "P95(nan,950) P99(nan,990) P99.5(nan,995) P99.9(nan,999) P100(nan,1000)\n");
    fetch("GET", "/stats?filter=rq_%5B0-9%5Dxx");
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(body, "cluster.service1.upstream_rq_2xx: 3\n"
                           "cluster.service1.upstream_rq_5xx: 0\n");
    fetch("GET", "/stats?filter=(");
    ck_assert_int_eq(status, 400);
    fetch("GET", "/stats?format=json&filter=2xx");
    ck_assert_int_eq(status, 200);
    ck_assert(has_header("Content-Type: application/json\r\n"));
    ck_assert_str_eq(body, "{\"stats\":[{\"name\":\"cluster.service1.upstream_rq_2xx\",\"value\":3}]}\n");
    fetch("GET", "/stats?format=json&filter=rq_time");
    ck_assert_str_eq(body, "{\"stats\":[{\"histograms\":{\"supported_quantiles\":[0,25,50,75,90,95,99,99.5,99.9,100],"
                           "\"computed_quantiles\":[{\"name\":\"cluster.service1.upstream_rq_time\",\"values\":["
                           "{\"interval\":null,\"cumulative\":1},{\"interval\":null,\"cumulative\":3},"
                           "{\"interval\":null,\"cumulative\":5},{\"interval\":null,\"cumulative\":750},"
                           "{\"interval\":null,\"cumulative\":900},{\"interval\":null,\"cumulative\":950},"
                           "{\"interval\":null,\"cumulative\":990},{\"interval\":null,\"cumulative\":995},"
                           "{\"interval\":null,\"cumulative\":999},{\"interval\":null,\"cumulative\":1000}]}]}}]}\n");
    fetch("GET", "/stats?format=xml");
    ck_assert_int_eq(status, 400);
    fetch("GET", "/reset_counters");
    ck_assert_int_eq(status, 405);
    fetch("POST", "/reset_counters");
    fetch("GET", "/stats?filter=%5E(cluster.service1.upstream_rq_2xx%7Cserver.live)%24");
    ck_assert_str_eq(body, "cluster.service1.upstream_rq_2xx: 0\nserver.live: 1\n");
    tn_buf_dispose(&resp);
}
END_TEST

START_TEST(prometheus_exposition)
{
    fetch("GET", "/stats/prometheus");
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(body,
                     "# TYPE envoy_cluster_upstream_rq_xx counter\n"
                     "envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"2\",envoy_cluster_name=\"service1\"} 3\n"
                     "envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"5\",envoy_cluster_name=\"service1\"} 0\n"
                     "# TYPE envoy_server_live gauge\n"
                     "envoy_server_live 1\n"
                     "# TYPE envoy_cluster_upstream_rq_time histogram\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"0.5\"} 0\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"1\"} 0\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"5\"} 1\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"10\"} 1\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"25\"} 1\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"50\"} 1\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"100\"} 1\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"250\"} 1\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"500\"} 1\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"1000\"} 2\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"2500\"} 2\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"5000\"} 2\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"10000\"} 2\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"30000\"} 2\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"60000\"} 2\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"300000\"} 2\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"600000\"} 2\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"1800000\"} 2\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"3600000\"} 2\n"
                     "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"+Inf\"} 2\n"
                     "envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"service1\"} 703\n"
                     "envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"service1\"} 2\n");
    fetch("GET", "/stats?format=prometheus&usedonly&filter=server");
    ck_assert_str_eq(body, "# TYPE envoy_server_live gauge\nenvoy_server_live 1\n");
    tn_buf_dispose(&resp);
}
END_TEST

START_TEST(logging_levels)
{
    tn_log_set_all(TN_LOG_INFO);
    fetch("GET", "/logging?upstream=debug");
    ck_assert_int_eq(status, 405);
    ck_assert_int_eq(tn_log_levels[TN_LOGC_upstream], TN_LOG_INFO);
    fetch("POST", "/logging?upstream=debug");
    ck_assert_int_eq(status, 200);
    ck_assert_int_eq(tn_log_levels[TN_LOGC_upstream], TN_LOG_DEBUG);
    ck_assert_int_eq(tn_log_levels[TN_LOGC_router], TN_LOG_INFO);
    ck_assert_ptr_nonnull(strstr(body, "  upstream: debug\n"));
    fetch("POST", "/logging?upstream=loud");
    ck_assert_int_eq(status, 400);
    fetch("POST", "/logging?nosuch=debug");
    ck_assert_int_eq(status, 400);
    fetch("POST", "/logging?level=loud");
    ck_assert_int_eq(status, 400);
    ck_assert_int_eq(tn_log_levels[TN_LOGC_upstream], TN_LOG_DEBUG);
    fetch("POST", "/logging?level=warning");
    ck_assert_int_eq(status, 200);
    ck_assert_int_eq(tn_log_levels[TN_LOGC_router], TN_LOG_WARN);
    ck_assert_int_eq(tn_log_levels[TN_LOGC_upstream], TN_LOG_WARN);
    fetch("POST", "/logging?paths=router:trace,http:error");
    ck_assert_int_eq(tn_log_levels[TN_LOGC_router], TN_LOG_TRACE);
    ck_assert_int_eq(tn_log_levels[TN_LOGC_http], TN_LOG_ERROR);
    fetch("POST", "/logging");
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(body, "active loggers:\n"));
    tn_log_set_all(TN_LOG_INFO);
    tn_buf_dispose(&resp);
}
END_TEST

START_TEST(config_dump)
{
    fetch("GET", "/config_dump");
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(body, "\"@type\":\"type.googleapis.com/envoy.admin.v3.BootstrapConfigDump\""));
    ck_assert_ptr_nonnull(strstr(body, "\"static_clusters\":[{\"cluster\":{\"@type\":\"type.googleapis.com/"
                                       "envoy.config.cluster.v3.Cluster\",\"name\":\"service1\""));
    ck_assert_ptr_nonnull(strstr(body, "\"static_listeners\":[{\"listener\":{\"@type\":"));
    ck_assert_ptr_nonnull(strstr(body, "\"static_route_configs\":[{\"route_config\":{\"@type\":\"type.googleapis"
                                       ".com/envoy.config.route.v3.RouteConfiguration\",\"name\":\"local_route\""));
    ck_assert_ptr_nonnull(strstr(body, "\"last_updated\":\"2023-11-14T22:13:20.000Z\""));
    fetch("GET", "/config_dump?resource=static_clusters&mask=cluster.name");
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(body, "{\"configs\":[{\"@type\":\"type.googleapis.com/envoy.admin.v3.ClustersConfigDump."
                           "StaticCluster\",\"cluster\":{\"name\":\"service1\"}}]}\n");
    fetch("GET", "/config_dump?mask=static_listeners");
    ck_assert_ptr_nonnull(strstr(body, "{\"@type\":\"type.googleapis.com/envoy.admin.v3.ClustersConfigDump\"},"));
    ck_assert_ptr_nonnull(strstr(body, "\"static_listeners\":[{\"listener\""));
    ck_assert_ptr_null(strstr(body, "\"bootstrap\""));
    fetch("GET", "/config_dump?resource=nothing");
    ck_assert_int_eq(status, 404);
    tn_buf_dispose(&resp);
}
END_TEST

START_TEST(clusters_listeners_server_info)
{
    fetch("GET", "/clusters");
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(body, "\nservice1::127.0.0.1:8081::health_flags::healthy\n"
                                       "service1::127.0.0.1:8081::weight::1\n"));
    ck_assert_ptr_nonnull(strstr(body, "\nservice1::127.0.0.1:8081::priority::0\n"));
    ck_assert_ptr_nonnull(strstr(body, "service1::default_priority::max_connections::1024\n"));
    fetch("GET", "/clusters?format=json");
    ck_assert_ptr_nonnull(strstr(body, "{\"cluster_statuses\":[{\"name\":\"service1\","));
    ck_assert_ptr_nonnull(strstr(body, "\"host_statuses\":[{\"address\":{\"socket_address\":{\"address\":"
                                       "\"127.0.0.1\",\"port_value\":8081}},\"health_status\":{"
                                       "\"eds_health_status\":\"HEALTHY\"},\"weight\":1,\"priority\":0}]"));
    fetch("GET", "/listeners");
    ck_assert_str_eq(body, "listener_0::127.0.0.1:10000\n");
    fetch("GET", "/listeners?format=json");
    ck_assert_str_eq(body, "{\"listener_statuses\":[{\"name\":\"listener_0\",\"local_address\":{\"socket_address\":"
                           "{\"address\":\"127.0.0.1\",\"port_value\":10000}}}]}\n");
    fetch("GET", "/server_info");
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(body, "{\"version\":\"1.2.3-test\",\"state\":\"LIVE\""));
    ck_assert_ptr_nonnull(strstr(body, "\"command_line_options\":{\"concurrency\":2,\"config_path\":"
                                       "\"/etc/tern.yaml\""));
    ck_assert_ptr_nonnull(strstr(body, "\"node\":{\"id\":\"node-1\",\"cluster\":\"front\"}"));
    tn_buf_dispose(&resp);
}
END_TEST

/* Prometheus' own parser accepts the exposition (skipped without promtool).
 * promtool exits 1 on a parse error and 3 on lint findings; the only
 * findings allowed are the ones Envoy's own output gets (it has no HELP
 * lines, and its counter names do not end in _total). */
START_TEST(promtool_accepts)
{
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        fprintf(stderr, "admin: promtool not installed, skipping the promtool check\n");
        return;
    }
    fetch("GET", "/stats/prometheus");
    char in[] = "/tmp/tern-admin-promXXXXXX", cmd[256], line[512];
    int fd = mkstemp(in);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, body, strlen(body)), (ssize_t)strlen(body));
    close(fd);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", in);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    while (fgets(line, sizeof(line), p))
        ck_assert_msg(strstr(line, "no help text") || strstr(line, "should have \"_total\" suffix"), "promtool: %s",
                      line);
    int rc = pclose(p);
    unlink(in);
    ck_assert_msg(WIFEXITED(rc) && (WEXITSTATUS(rc) == 0 || WEXITSTATUS(rc) == 3), "promtool exit %d", rc);
    tn_buf_dispose(&resp);
}
END_TEST

/* A second admin on a taken port fails without leaking its handle; with no
 * cluster manager /clusters still lists the cluster, without hosts. */
START_TEST(busy_port_and_no_cm)
{
    struct tn_admin *again = tn_admin_start(&loop, cfg, &st, NULL, &ops, NULL, NULL);
    ck_assert_ptr_null(again);
    struct tn_admin *bare;
    tn_admin_close(adm);
    uv_run(&loop, UV_RUN_NOWAIT);
    bare = tn_admin_start(&loop, cfg, &st, NULL, NULL, NULL, NULL);
    ck_assert_ptr_nonnull(bare);
    adm = bare;
    fetch("GET", "/clusters");
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(body, "service1::added_via_api::false\n"));
    ck_assert_ptr_null(strstr(body, "127.0.0.1:8081"));
    fetch("GET", "/ready"); /* no ops: LIVE */
    ck_assert_int_eq(status, 200);
    fetch("POST", "/quitquitquit");
    ck_assert_int_eq(status, 200);
    tn_buf_dispose(&resp);
}
END_TEST

static void idle_connected(uv_connect_t *cr, int st)
{
    ck_assert_int_eq(st, 0);
    *(int *)cr->data = 1;
}

/* Closing the admin with a connection that never sent a request. */
START_TEST(close_with_idle_connection)
{
    uv_tcp_t tcp;
    uv_connect_t cr;
    struct sockaddr_in sa;
    int connected = 0;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(&loop, &tcp);
    cr.data = &connected;
    ck_assert_int_eq(uv_tcp_connect(&cr, &tcp, (struct sockaddr *)&sa, idle_connected), 0);
    while (!connected)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_NOWAIT); /* the admin accepts */
    uv_close((uv_handle_t *)&tcp, NULL);
    uv_run(&loop, UV_RUN_NOWAIT); /* the stack handle's close completes here */
}
END_TEST

Suite *admin_suite(void)
{
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("endpoints");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, ready_follows_state);
    tcase_add_test(tc, methods_and_paths);
    tcase_add_test(tc, stats_text_filter_usedonly);
    tcase_add_test(tc, prometheus_exposition);
    tcase_add_test(tc, logging_levels);
    tcase_add_test(tc, config_dump);
    tcase_add_test(tc, clusters_listeners_server_info);
    tcase_add_test(tc, promtool_accepts);
    tcase_add_test(tc, busy_port_and_no_cm);
    tcase_add_test(tc, close_with_idle_connection);
    suite_add_tcase(s, tc);
    return s;
}
