/* The cluster manager (host sets, DNS, active health checks) on a real loop,
 * and outlier detection. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/core/buf.h"
#include "dataplane/upstream/cm.h"
#include "dataplane/server/config.h"
#include "dataplane/upstream/outlier.h"
#include "suites.h"
#include "xds/bootstrap.h"

static struct tn_err err;
static uv_loop_t loop;
static uv_timer_t tick; /* keeps uv_run(ONCE) from blocking while a test polls */

/* A bootstrap of `yaml` plus an admin listener (a config needs something to
 * serve). */
static struct tn_config *config(const char *yaml)
{
    struct tn_buf y;
    tn_buf_init(&y);
    tn_buf_printf(&y, "%sadmin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}\n", yaml);
    tn_err_init(&err);
    tn_pb_bootstrap *b = tn_bootstrap_load(NULL, y.data, &err);
    tn_buf_dispose(&y);
    ck_assert_msg(b != NULL, "%s", err.msg);
    struct tn_config *c = tn_config_compile(b, &err);
    ck_assert_msg(c != NULL, "%s", err.msg);
    return c;
}

static void on_tick(uv_timer_t *t)
{
}

static void loop_start(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
}

static void loop_finish(void)
{
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

/* Runs the loop until `cond` holds or `ms` pass, asserting `inv` after
 * every iteration. */
#define RUN_UNTIL_INV(cond, inv, ms)                                                                                   \
    do {                                                                                                               \
        uint64_t deadline_ = uv_now(&loop) + (ms);                                                                     \
        while (!(cond) && uv_now(&loop) < deadline_) {                                                                 \
            uv_run(&loop, UV_RUN_ONCE);                                                                                \
            ck_assert_msg((inv), "invariant failed: %s", #inv);                                                        \
        }                                                                                                              \
        ck_assert_msg((cond), "timed out waiting for %s", #cond);                                                      \
    } while (0)
#define RUN_UNTIL(cond, ms) RUN_UNTIL_INV(cond, 1, ms)

/* ---- what the manager hands out ------------------------------------------------ */

struct watch {
    int n_hosts_cb, n_ready;
    struct tn_host_set *last;
    char last_cluster[64];
};

static void on_hosts(void *arg, const struct tn_cluster *c, struct tn_host_set *set)
{
    struct watch *w = arg;
    w->n_hosts_cb++;
    w->last = set;
    snprintf(w->last_cluster, sizeof(w->last_cluster), "%s", c->name);
}

static void on_ready(void *arg)
{
    ((struct watch *)arg)->n_ready++;
}

static struct tn_cm *cm_start(struct tn_config *cfg, struct watch *w)
{
    struct tn_cm *cm = tn_cm_new(&loop, cfg, on_hosts, on_ready, w);
    ck_assert_ptr_nonnull(cm);
    tn_config_unref(cfg); /* cm holds its own reference */
    return cm;
}

static unsigned health(struct tn_cm *cm, const char *cluster, size_t i)
{
    struct tn_host_set *s = tn_cm_hosts(cm, cluster);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_gt(s->n_hosts, i);
    return atomic_load(&s->hosts[i]->health);
}

#define CLUSTER(name, type, extra, endpoints)                                                                          \
    "  - name: " name "\n    type: " type "\n" extra "    load_assignment: {cluster_name: " name                       \
    ", endpoints: [{lb_endpoints: [" endpoints "]}]}\n"
#define EP(host, port) "{endpoint: {address: {socket_address: {address: " #host ", port_value: " #port "}}}}"

START_TEST(static_hosts_at_once)
{
    loop_start();
    struct watch w = {0};
    struct tn_cm *cm =
        cm_start(config("static_resources:\n  clusters:\n" CLUSTER(
                     "s", "STATIC", "",
                     EP(127.0.0.1, 8081) ", {endpoint: {address: {socket_address: {address: '::1', "
                                         "port_value: 8082}}}, health_status: DRAINING, "
                                         "load_balancing_weight: 3}") "  - name: e\n    type: EDS\n    "
                                                                      "eds_cluster_config: {eds_config: {ads: {}}}\n"
                                                                      "dynamic_resources: {ads_config: {api_type: "
                                                                      "GRPC, transport_api_version: V3, grpc_services: "
                                                                      "[{envoy_grpc: {cluster_name: s}}]}}\n"),
                 &w);
    /* Both sets are out before tn_cm_new returns; readiness comes later. */
    ck_assert_int_eq(w.n_hosts_cb, 2);
    ck_assert_int_eq(w.n_ready, 0);
    struct tn_host_set *s = tn_cm_hosts(cm, "s");
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(s->n_hosts, 2);
    ck_assert_str_eq(s->hosts[0]->addr_text, "127.0.0.1:8081");
    ck_assert_str_eq(s->hosts[1]->addr_text, "[::1]:8082");
    ck_assert_uint_eq(s->hosts[1]->weight, 3);
    ck_assert_ptr_null(s->hosts[0]->hostname);
    ck_assert_uint_eq(health(cm, "s", 0), 0);
    ck_assert_uint_eq(health(cm, "s", 1), TN_HOST_FAILED_EDS);
    ck_assert_uint_eq(tn_cm_hosts(cm, "e")->n_hosts, 0);
    ck_assert_ptr_null(tn_cm_hosts(cm, "nope"));
    /* the EDS cluster warms until its assignment or initial_fetch_timeout */
    uint64_t until = uv_now(&loop) + 50;
    RUN_UNTIL(uv_now(&loop) >= until, 1000);
    ck_assert_int_eq(w.n_ready, 0);
    tn_cm_eds_timeout(cm, "e");
    RUN_UNTIL(w.n_ready == 1, 1000);
    tn_cm_close(cm);
    loop_finish();
    ck_assert_int_eq(w.n_ready, 1);
}
END_TEST

/* EDS assignments: the first ends warming; a host whose address, weight and
 * priority stay is the same object (its pools and health survive), its EDS
 * health follows the assignment; a NACK and an unknown cluster change
 * nothing. */
START_TEST(eds_updates_keep_hosts)
{
    loop_start();
    struct watch w = {0};
    struct tn_config *eps = config("static_resources:\n  clusters:\n" CLUSTER(
        "a", "STATIC", "", EP(127.0.0.1, 8081)) CLUSTER("b", "STATIC", "",
                                                       EP(127.0.0.1, 8081) ", {endpoint: {address: {socket_address: "
                                                                           "{address: 127.0.0.1, port_value: 8082}}}, "
                                                                           "health_status: UNHEALTHY}"));
    struct tn_cm *cm = cm_start(config("static_resources:\n  clusters:\n  - name: e\n    type: EDS\n    "
                                       "eds_cluster_config: {eds_config: {ads: {}}}\n" CLUSTER("s", "STATIC", "",
                                                                                               EP(127.0.0.1, 9))
                                       "dynamic_resources: {ads_config: {api_type: GRPC, transport_api_version: "
                                       "V3, grpc_services: [{envoy_grpc: {cluster_name: s}}]}}\n"),
                                &w);
    ck_assert_int_eq(tn_cm_eds_update(cm, "s", tn_config_cluster(eps, "a")->endpoints), -1); /* not EDS */
    ck_assert_int_eq(tn_cm_eds_update(cm, "nope", tn_config_cluster(eps, "a")->endpoints), -1);
    ck_assert_int_eq(tn_cm_eds_update(cm, "e", tn_config_cluster(eps, "a")->endpoints), 0);
    struct tn_host *h1 = tn_cm_hosts(cm, "e")->hosts[0];
    ck_assert_str_eq(h1->addr_text, "127.0.0.1:8081");
    RUN_UNTIL(w.n_ready == 1, 1000);
    ck_assert_int_eq(tn_cm_eds_update(cm, "e", tn_config_cluster(eps, "b")->endpoints), 0);
    struct tn_host_set *s = tn_cm_hosts(cm, "e");
    ck_assert_uint_eq(s->n_hosts, 2);
    ck_assert_ptr_eq(s->hosts[0], h1);
    ck_assert_uint_eq(atomic_load(&s->hosts[1]->health), TN_HOST_FAILED_EDS);
    ck_assert_str_eq(w.last_cluster, "e");
    ck_assert_ptr_eq(w.last, s);
    tn_cm_eds_rejected(cm, "e");
    const struct tn_cm_stats *st = tn_cm_stats(cm, "e");
    ck_assert_uint_eq(st->update_success, 2);
    ck_assert_uint_eq(st->update_rejected, 1);
    ck_assert_uint_eq(st->update_attempt, 3);
    ck_assert_ptr_eq(tn_cm_hosts(cm, "e"), s);
    tn_cm_close(cm);
    loop_finish();
    tn_config_unref(eps);
}
END_TEST

START_TEST(strict_dns_localhost)
{
    loop_start();
    struct watch w = {0};
    struct tn_cm *cm =
        cm_start(config("static_resources:\n  clusters:\n" CLUSTER(
                     "v4", "STRICT_DNS", "    dns_lookup_family: V4_ONLY\n", EP(localhost, 1234))
                            CLUSTER("auto", "STRICT_DNS", "", EP(localhost, 1235))
                                CLUSTER("logical", "LOGICAL_DNS", "    dns_lookup_family: ALL\n", EP(localhost, 1236))),
                 &w);
    ck_assert_int_eq(w.n_hosts_cb, 0); /* DNS runs on the thread pool */
    RUN_UNTIL(w.n_ready == 1, 3000);
    ck_assert_int_eq(w.n_hosts_cb, 3);
    struct tn_host_set *s = tn_cm_hosts(cm, "v4");
    ck_assert_uint_eq(s->n_hosts, 1);
    ck_assert_str_eq(s->hosts[0]->addr_text, "127.0.0.1:1234");
    ck_assert_str_eq(s->hosts[0]->hostname, "localhost");
    s = tn_cm_hosts(cm, "auto");
    ck_assert_uint_ge(s->n_hosts, 1);
    for (size_t i = 0; i < s->n_hosts; i++)
        ck_assert_msg(strcmp(s->hosts[i]->addr_text, "127.0.0.1:1235") == 0 ||
                          strcmp(s->hosts[i]->addr_text, "[::1]:1235") == 0,
                      "%s", s->hosts[i]->addr_text);
    /* AUTO keeps one family only */
    ck_assert_int_eq(s->hosts[0]->sa.ss_family, s->hosts[s->n_hosts - 1]->sa.ss_family);
    ck_assert_uint_eq(tn_cm_hosts(cm, "logical")->n_hosts, 1);
    ck_assert_uint_eq(tn_cm_stats(cm, "v4")->update_success, 1);
    tn_cm_close(cm);
    loop_finish();
}
END_TEST

START_TEST(dns_failure_still_ready)
{
    loop_start();
    struct watch w = {0};
    struct tn_cm *cm =
        cm_start(config("static_resources:\n  clusters:\n" CLUSTER("bad", "STRICT_DNS", "", EP(nonexistent.invalid, 80))
                            CLUSTER("half", "STRICT_DNS", "    dns_lookup_family: V4_ONLY\n",
                                    EP(nonexistent.invalid, 80) ", " EP(localhost, 81))),
                 &w);
    RUN_UNTIL(w.n_ready == 1, 5000);
    ck_assert_int_eq(w.n_hosts_cb, 2); /* an empty set is still a set */
    ck_assert_uint_eq(tn_cm_hosts(cm, "bad")->n_hosts, 0);
    ck_assert_uint_eq(tn_cm_stats(cm, "bad")->update_failure, 1);
    /* one endpoint failing does not take the other's hosts away */
    ck_assert_uint_eq(tn_cm_hosts(cm, "half")->n_hosts, 1);
    ck_assert_str_eq(tn_cm_hosts(cm, "half")->hosts[0]->addr_text, "127.0.0.1:81");
    tn_cm_close(cm);
    loop_finish();
}
END_TEST

START_TEST(dns_refresh_keeps_hosts)
{
    loop_start();
    struct watch w = {0};
    struct tn_cm *cm = cm_start(
        config("static_resources:\n  clusters:\n" CLUSTER(
            "d", "STRICT_DNS", "    dns_refresh_rate: 0.03s\n    dns_lookup_family: V4_ONLY\n", EP(localhost, 1234))),
        &w);
    RUN_UNTIL(w.n_ready == 1, 3000);
    struct tn_host_set *first = tn_cm_hosts(cm, "d");
    struct tn_host *h = first->hosts[0];
    const struct tn_cm_stats *st = tn_cm_stats(cm, "d");
    RUN_UNTIL(st->update_attempt >= 5, 3000);
    ck_assert_uint_ge(st->update_no_rebuild, 3);
    ck_assert_int_eq(w.n_hosts_cb, 1); /* nothing changed: no new set */
    ck_assert_ptr_eq(tn_cm_hosts(cm, "d"), first);
    ck_assert_ptr_eq(tn_cm_hosts(cm, "d")->hosts[0], h);
    tn_cm_close(cm);
    loop_finish();
}
END_TEST

/* ---- a tiny origin for health checks ------------------------------------------- */

enum {
    MODE_HANGUP = 1, /* close at once: a network failure */
    MODE_SILENT,     /* never answer: a timeout */
};

struct origin {
    uv_tcp_t listener;
    int port;
    int mode; /* an HTTP status, or MODE_* */
    int n_conns, n_hangup, n_200, n_503;
    char last_request[512];
};

struct origin_conn {
    uv_tcp_t tcp;
    uv_write_t write;
    struct origin *o;
    char buf[1024];
    size_t len;
    char reply[128];
};

static void on_conn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void conn_close(struct origin_conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_replied(uv_write_t *w, int status)
{
    conn_close(w->data);
}

static void on_conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct origin_conn *c = h->data;
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void reply(struct origin_conn *c)
{
    struct origin *o = c->o;
    snprintf(o->last_request, sizeof(o->last_request), "%s", c->buf);
    o->n_200 += o->mode == 200;
    o->n_503 += o->mode == 503;
    int n = snprintf(c->reply, sizeof(c->reply), "HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                     o->mode);
    uv_buf_t b = uv_buf_init(c->reply, (unsigned)n);
    c->write.data = c;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_replied))
        conn_close(c);
}

static void on_conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct origin_conn *c = s->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)nread;
    c->buf[c->len] = '\0';
    if (strstr(c->buf, "\r\n\r\n") && c->o->mode != MODE_SILENT)
        reply(c);
}

static void on_origin_connection(uv_stream_t *l, int status)
{
    struct origin *o = l->data;
    struct origin_conn *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    c->o = o;
    uv_tcp_init(&loop, &c->tcp);
    c->tcp.data = c;
    ck_assert_int_eq(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    o->n_conns++;
    if (o->mode == MODE_HANGUP) {
        o->n_hangup++;
        conn_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_conn_alloc, on_conn_read);
}

static void origin_start(struct origin *o, int mode)
{
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    memset(o, 0, sizeof(*o));
    o->mode = mode;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&loop, &o->listener);
    o->listener.data = o;
    ck_assert_int_eq(uv_tcp_bind(&o->listener, (struct sockaddr *)&sa, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&o->listener, 16, on_origin_connection), 0);
    uv_tcp_getsockname(&o->listener, (struct sockaddr *)&bound, &len);
    o->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void origin_stop(struct origin *o)
{
    uv_close((uv_handle_t *)&o->listener, NULL);
}

/* A loopback port nothing listens on. */
static int closed_port(void)
{
    struct origin o;
    origin_start(&o, 200);
    origin_stop(&o);
    uv_run(&loop, UV_RUN_NOWAIT);
    return o.port;
}

static struct tn_config *hc_config(const char *name, int port, const char *hc)
{
    static char y[2048];
    snprintf(y, sizeof(y),
             "static_resources:\n  clusters:\n  - name: %s\n    health_checks: [%s]\n"
             "    load_assignment: {endpoints: [{lb_endpoints: [" EP(127.0.0.1, % d) "]}]}\n",
             name, hc, port);
    return config(y);
}

static void cm_close(struct tn_cm *cm, struct origin *o)
{
    tn_cm_close(cm);
    if (o)
        origin_stop(o);
    loop_finish();
}

START_TEST(hc_startup_gates_ready)
{
    loop_start();
    struct origin up;
    struct watch w = {0};
    origin_start(&up, 200);
    struct tn_cm *cm =
        cm_start(hc_config("web", up.port,
                           "{timeout: 1s, interval: 0.02s, unhealthy_threshold: 2, "
                           "healthy_threshold: 3, http_health_check: {path: /healthz, host: hc.example}}"),
                 &w);
    /* Until its first check, a host of a checked cluster takes no traffic. */
    ck_assert_int_eq(w.n_hosts_cb, 1);
    ck_assert_uint_eq(health(cm, "web", 0), TN_HOST_FAILED_ACTIVE_HC | TN_HOST_PENDING_HC);
    ck_assert(!tn_host_healthy(tn_cm_hosts(cm, "web")->hosts[0], 0));
    RUN_UNTIL(w.n_ready == 1, 2000);
    /* One success is enough at startup, whatever healthy_threshold says. */
    ck_assert_int_ge(up.n_200, 1);
    ck_assert_uint_eq(health(cm, "web", 0), 0);
    ck_assert_ptr_nonnull(strstr(up.last_request, "GET /healthz HTTP/1.1\r\n"));
    ck_assert_ptr_nonnull(strstr(up.last_request, "\r\nHost: hc.example\r\n"));
    ck_assert_ptr_nonnull(strstr(up.last_request, "\r\nUser-Agent: Envoy/HC\r\n"));
    ck_assert_ptr_nonnull(strstr(up.last_request, "\r\nConnection: close\r\n"));
    ck_assert_uint_ge(tn_cm_stats(cm, "web")->hc_success, 1);
    cm_close(cm, &up);
}
END_TEST

static struct tn_cluster *warmed;
static int n_warm;

static void on_warm(void *arg, struct tn_cluster *c)
{
    (void)arg;
    warmed = c;
    n_warm++;
}

/* CDS's side of the manager: a cluster added after readiness warms (its
 * first health check) before warm_cb names it; one replaced or removed stops
 * its checks, is freed once they are closed, and a loop closes cleanly. */
START_TEST(clusters_come_and_go)
{
    loop_start();
    struct origin up;
    struct watch w = {0};
    origin_start(&up, 200);
    struct tn_config *more = hc_config("late", up.port,
                                       "{timeout: 1s, interval: 0.02s, unhealthy_threshold: 1, healthy_threshold: 1, "
                                       "http_health_check: {path: /h}}");
    struct tn_cm *cm = cm_start(config("static_resources:\n  clusters:\n" CLUSTER("s", "STATIC", "",
                                                                                 EP(127.0.0.1, 9))),
                                &w);
    tn_cm_set_warm_cb(cm, on_warm);
    warmed = NULL;
    n_warm = 0;
    RUN_UNTIL(w.n_ready == 1, 1000);
    ck_assert_uint_eq(tn_cm_count(cm), 1);
    ck_assert_int_eq(tn_cm_add(cm, tn_config_cluster(more, "late")), 0);
    ck_assert_uint_eq(tn_cm_count(cm), 2);
    ck_assert_uint_eq(tn_cm_warming(cm), 1);
    ck_assert(!tn_cm_ready(cm, tn_config_cluster(more, "late")));
    RUN_UNTIL(n_warm == 1, 2000); /* after its first check */
    ck_assert_ptr_eq(warmed, tn_config_cluster(more, "late"));
    ck_assert(tn_cm_ready(cm, warmed));
    ck_assert_uint_eq(tn_cm_warming(cm), 0);
    ck_assert_int_ge(up.n_200, 1);
    ck_assert_int_eq(w.n_ready, 1); /* the first readiness fires once */
    /* the same name again replaces it; then it goes */
    ck_assert_int_eq(tn_cm_add(cm, tn_config_cluster(more, "late")), 0);
    ck_assert_uint_eq(tn_cm_count(cm), 2);
    ck_assert_int_eq(tn_cm_remove(cm, "late"), 0);
    ck_assert_int_eq(tn_cm_remove(cm, "late"), -1);
    ck_assert_uint_eq(tn_cm_count(cm), 1);
    ck_assert_ptr_null(tn_cm_hosts(cm, "late"));
    ck_assert_uint_eq(tn_cm_warming(cm), 0);
    uint64_t until = uv_now(&loop) + 100;
    int checks = up.n_200;
    RUN_UNTIL(uv_now(&loop) >= until, 1000);
    ck_assert_int_le(up.n_200, checks + 1); /* no more checks (one may have been on its way) */
    tn_config_unref(more);
    cm_close(cm, &up);
}
END_TEST

START_TEST(hc_first_failure_and_default_host)
{
    loop_start();
    struct origin down;
    struct watch w = {0};
    origin_start(&down, 503);
    struct tn_cm *cm = cm_start(hc_config("api", down.port,
                                          "{timeout: 1s, interval: 10s, unhealthy_threshold: 2, "
                                          "healthy_threshold: 1, http_health_check: {path: /h}}"),
                                &w);
    RUN_UNTIL(w.n_ready == 1, 2000);
    ck_assert_int_eq(down.n_503, 1);
    ck_assert_uint_eq(health(cm, "api", 0), TN_HOST_FAILED_ACTIVE_HC);     /* no longer pending */
    ck_assert_ptr_nonnull(strstr(down.last_request, "\r\nHost: api\r\n")); /* the cluster's name */
    ck_assert_uint_eq(tn_cm_stats(cm, "api")->hc_failure, 1);
    ck_assert_uint_eq(tn_cm_stats(cm, "api")->hc_network_failure, 0);
    cm_close(cm, &down);
}
END_TEST

#define FAILED(cm) ((health((cm), "web", 0) & TN_HOST_FAILED_ACTIVE_HC) != 0)

START_TEST(hc_thresholds)
{
    loop_start();
    struct origin o;
    struct watch w = {0};
    origin_start(&o, 200);
    struct tn_cm *cm = cm_start(hc_config("web", o.port,
                                          "{timeout: 1s, interval: 0.02s, unhealthy_threshold: 3, "
                                          "healthy_threshold: 2, http_health_check: {path: /}}"),
                                &w);
    RUN_UNTIL(w.n_ready == 1, 2000);
    ck_assert(!FAILED(cm));

    /* Network failures: unhealthy only after three in a row. */
    o.mode = MODE_HANGUP;
    RUN_UNTIL_INV(FAILED(cm), !FAILED(cm) || o.n_hangup >= 3, 3000);
    ck_assert_uint_ge(tn_cm_stats(cm, "web")->hc_network_failure, 3);

    /* Healthy again after two successes, not one. */
    o.n_200 = 0;
    o.mode = 200;
    RUN_UNTIL_INV(!FAILED(cm), FAILED(cm) || o.n_200 >= 2, 3000);

    /* A bad status is unhealthy at once (Envoy ignores the threshold). */
    o.mode = 503;
    RUN_UNTIL(FAILED(cm), 3000);
    ck_assert_int_eq(o.n_503, 1);

    /* Successes interrupted by a failure start counting again. */
    o.n_200 = 0;
    o.mode = 200;
    RUN_UNTIL(o.n_200 == 1, 3000);
    o.mode = MODE_HANGUP;
    RUN_UNTIL(o.n_hangup >= 4, 3000);
    o.mode = 200;
    RUN_UNTIL_INV(!FAILED(cm), FAILED(cm) || o.n_200 >= 3, 3000);
    cm_close(cm, &o);
}
END_TEST

START_TEST(hc_tcp_and_timeout)
{
    loop_start();
    struct origin up, silent;
    struct watch w = {0};
    int dead = closed_port();
    origin_start(&up, 200);
    origin_start(&silent, MODE_SILENT);
    char y[2048];
    snprintf(
        y, sizeof(y),
        "static_resources:\n  clusters:\n"
        "  - name: tcp_up\n    health_checks: [{timeout: 1s, interval: 10s, unhealthy_threshold: 1, "
        "healthy_threshold: 1, tcp_health_check: {}}]\n"
        "    load_assignment: {endpoints: [{lb_endpoints: [" EP(
            127.0.0.1,
            % d) "]}]}\n"
                 "  - name: tcp_down\n    health_checks: [{timeout: 1s, interval: 10s, unhealthy_threshold: 1, "
                 "healthy_threshold: 1, tcp_health_check: {}}]\n"
                 "    load_assignment: {endpoints: [{lb_endpoints: [" EP(
                     127.0.0.1,
                     % d) "]}]}\n"
                          "  - name: slow\n    health_checks: [{timeout: 0.05s, interval: 10s, unhealthy_threshold: 1, "
                          "healthy_threshold: 1, http_health_check: {path: /}}]\n"
                          "    load_assignment: {endpoints: [{lb_endpoints: [" EP(127.0.0.1, % d) "]}]}\n",
        up.port, dead, silent.port);
    uint64_t t0 = uv_now(&loop);
    struct tn_cm *cm = cm_start(config(y), &w);
    RUN_UNTIL(w.n_ready == 1, 3000);
    ck_assert_uint_ge(uv_now(&loop) - t0, 45); /* ready waited for the timeout */
    ck_assert_uint_eq(health(cm, "tcp_up", 0), 0);
    ck_assert_int_eq(up.n_200, 0); /* a TCP check sends nothing */
    ck_assert_uint_eq(health(cm, "tcp_down", 0), TN_HOST_FAILED_ACTIVE_HC);
    ck_assert_uint_eq(health(cm, "slow", 0), TN_HOST_FAILED_ACTIVE_HC);
    ck_assert_uint_eq(tn_cm_stats(cm, "slow")->hc_network_failure, 1);
    origin_stop(&up);
    cm_close(cm, &silent);
}
END_TEST

/* ---- outlier detection ----------------------------------------------------------- */

static struct tn_config *od_cfg;
static struct tn_cluster *od;
static struct tn_host *hosts[10];
static struct tn_host_set *od_set;

static void od_setup(const char *outlier, size_t n)
{
    char y[1024];
    snprintf(y, sizeof(y),
             "static_resources:\n  clusters:\n  - name: od\n%s"
             "    load_assignment: {endpoints: [{lb_endpoints: [" EP(10.0.0.1, 80) "]}]}\n",
             outlier);
    od_cfg = config(y);
    od = od_cfg->clusters[0];
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_in sa;
        char ip[16];
        snprintf(ip, sizeof(ip), "10.0.0.%zu", i + 1);
        uv_ip4_addr(ip, 80, &sa);
        hosts[i] = tn_host_new((struct sockaddr *)&sa, sizeof(sa), NULL, 1, 0);
    }
    od_set = tn_host_set_new(hosts, n, od);
    for (size_t i = 0; i < n; i++)
        tn_host_unref(hosts[i]);
}

static void od_teardown(void)
{
    tn_host_set_unref(od_set);
    tn_config_unref(od_cfg);
}

/* Reports `status` n times; returns how many reports ejected. */
static int report(size_t host, int status, int n, uint64_t now)
{
    int ejected = 0;
    for (int i = 0; i < n; i++)
        ejected += tn_outlier_report(od, od_set, hosts[host], status, now);
    return ejected;
}

#define DEFAULTS "    outlier_detection: {}\n"

START_TEST(outlier_consecutive_5xx)
{
    od_setup(DEFAULTS, 10);
    ck_assert_int_eq(report(0, 500, 4, 1000), 0);
    ck_assert(tn_host_healthy(hosts[0], 1000));
    ck_assert_int_eq(report(0, 500, 1, 1000), 1);
    ck_assert_uint_eq(atomic_load(&hosts[0]->eject_until_ms), 1000 + 30000);
    ck_assert_uint_eq(atomic_load(&hosts[0]->n_ejections), 1);
    ck_assert(!tn_host_healthy(hosts[0], 30999));
    ck_assert(tn_host_healthy(hosts[0], 31000));
    ck_assert_int_eq(report(0, 500, 10, 2000), 0); /* already ejected */
    ck_assert_uint_eq(atomic_load(&hosts[0]->eject_until_ms), 31000);

    /* a success in between starts the count again */
    ck_assert_int_eq(report(1, 503, 4, 1000) + report(1, 200, 1, 1000) + report(1, 503, 4, 1000), 0);
    od_teardown();
}
END_TEST

START_TEST(outlier_5xx_not_enforced)
{
    od_setup("    outlier_detection: {enforcing_consecutive_5xx: 0}\n", 10);
    ck_assert_int_eq(report(0, 500, 50, 1000), 0);
    ck_assert(tn_host_healthy(hosts[0], 1000));
    od_teardown();
}
END_TEST

START_TEST(outlier_disabled)
{
    od_setup("", 10);
    ck_assert_int_eq(report(0, 0, 50, 1000), 0);
    ck_assert_uint_eq(atomic_load(&hosts[0]->consecutive_5xx), 0);
    od_teardown();
}
END_TEST

START_TEST(outlier_gateway_failures)
{
    /* Gateway failures are not enforced by default, but five 503s (or
     * connect failures) are five 5xx. */
    od_setup("    outlier_detection: {consecutive_5xx: 1000}\n", 10);
    ck_assert_int_eq(report(0, 503, 50, 1000), 0);
    od_teardown();

    od_setup(DEFAULTS, 10);
    ck_assert_int_eq(report(0, 0, 5, 1000), 1);
    od_teardown();

    od_setup("    outlier_detection: {consecutive_5xx: 1000, consecutive_gateway_failure: 3, "
             "enforcing_consecutive_gateway_failure: 100}\n",
             10);
    /* a 500 is a 5xx but not a gateway failure: it breaks the run */
    ck_assert_int_eq(report(0, 502, 2, 1000) + report(0, 500, 1, 1000) + report(0, 504, 2, 1000), 0);
    ck_assert_int_eq(report(0, 0, 1, 1000), 1);   /* a connect failure is the third */
    ck_assert_int_eq(report(1, 503, 3, 1000), 0); /* 10%: one host of ten at most */
    od_teardown();
}
END_TEST

START_TEST(outlier_max_ejection_percent)
{
    od_setup(DEFAULTS, 3); /* 10% of 3 rounds down to 0, yet one host may go */
    ck_assert_int_eq(report(0, 500, 5, 1000), 1);
    ck_assert_int_eq(report(1, 500, 5, 1000), 0);
    ck_assert(tn_host_healthy(hosts[1], 1000));
    /* once the first is back, another may go */
    ck_assert_int_eq(report(1, 500, 5, 31000), 1);
    od_teardown();

    od_setup("    outlier_detection: {max_ejection_percent: 50}\n", 4);
    ck_assert_int_eq(report(0, 500, 5, 1000), 1);
    ck_assert_int_eq(report(1, 500, 5, 1000), 1);
    ck_assert_int_eq(report(2, 500, 5, 1000), 0);
    od_teardown();
}
END_TEST

START_TEST(outlier_ejection_time_grows)
{
    od_setup("    outlier_detection: {base_ejection_time: 10s, max_ejection_time: 25s}\n", 10);
    ck_assert_int_eq(report(0, 500, 5, 1000), 1);
    ck_assert_uint_eq(atomic_load(&hosts[0]->eject_until_ms), 11000);
    ck_assert_int_eq(report(0, 500, 5, 11000), 1);
    ck_assert_uint_eq(atomic_load(&hosts[0]->eject_until_ms), 11000 + 20000);
    ck_assert_int_eq(report(0, 500, 5, 31000), 1);
    ck_assert_uint_eq(atomic_load(&hosts[0]->eject_until_ms), 31000 + 25000); /* capped */
    ck_assert_uint_eq(atomic_load(&hosts[0]->n_ejections), 3);
    /* long in service (interval 10 s each step back): back to the base time */
    ck_assert_int_eq(report(0, 500, 5, 56000 + 100000), 1);
    ck_assert_uint_eq(atomic_load(&hosts[0]->eject_until_ms), 156000 + 10000);
    od_teardown();
}
END_TEST

Suite *cm_suite(void)
{
    Suite *s = suite_create("cm");
    TCase *tc = tcase_create("cm");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, static_hosts_at_once);
    tcase_add_test(tc, eds_updates_keep_hosts);
    tcase_add_test(tc, clusters_come_and_go);
    tcase_add_test(tc, strict_dns_localhost);
    tcase_add_test(tc, dns_failure_still_ready);
    tcase_add_test(tc, dns_refresh_keeps_hosts);
    tcase_add_test(tc, hc_startup_gates_ready);
    tcase_add_test(tc, hc_first_failure_and_default_host);
    tcase_add_test(tc, hc_thresholds);
    tcase_add_test(tc, hc_tcp_and_timeout);
    suite_add_tcase(s, tc);
    tc = tcase_create("outlier");
    tcase_add_test(tc, outlier_consecutive_5xx);
    tcase_add_test(tc, outlier_5xx_not_enforced);
    tcase_add_test(tc, outlier_disabled);
    tcase_add_test(tc, outlier_gateway_failures);
    tcase_add_test(tc, outlier_max_ejection_percent);
    tcase_add_test(tc, outlier_ejection_time_grows);
    suite_add_tcase(s, tc);
    return s;
}
