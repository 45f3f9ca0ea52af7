/* libFuzzer target for a whole downstream connection: the input is what a
 * client sends (then it half-closes), fed through a socketpair into the real
 * connection manager and router on a real loop. The routes answer directly,
 * redirect, or go to a cluster whose only host refuses connections (retried,
 * then 503), so every path ends without an upstream. Crashes, sanitizer
 * reports and a connection that never finishes fail. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcntl.h>
#include <sys/socket.h>

#include "dataplane/server/config.h"
#include "dataplane/stats/dp_stats.h"
#include "dataplane/stats/stats.h"
#include "dataplane/http/conn.h"
#include "dataplane/upstream/host.h"
#include "dataplane/server/worker.h"
#include "xds/bootstrap.h"

static const char CONFIG[] =
    "static_resources:\n"
    "  listeners:\n"
    "  - name: fuzz\n"
    "    address: {socket_address: {address: 127.0.0.1, port_value: 1}}\n"
    "    filter_chains:\n"
    "    - filters:\n"
    "      - name: envoy.filters.network.http_connection_manager\n"
    "        typed_config:\n"
    "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager\n"
    "          stat_prefix: fuzz\n"
    "          use_remote_address: true\n"
    "          via: fuzz\n"
    "          max_request_headers_kb: 4\n"
    "          http_protocol_options: {accept_http_10: true, default_host_for_http_10: h10}\n"
    "          route_config:\n"
    "            internal_only_headers: [x-int]\n"
    "            response_headers_to_add: [{header: {key: x-rc, value: c}}]\n"
    "            virtual_hosts:\n"
    "            - name: all\n"
    "              domains: [\"*\"]\n"
    "              request_headers_to_remove: [x-drop]\n"
    "              routes:\n"
    "              - match: {prefix: /d}\n"
    "                direct_response: {status: 200, body: {inline_string: direct}}\n"
    "              - match: {prefix: /r, headers: [{name: x-a, present_match: true}]}\n"
    "                redirect: {prefix_rewrite: /s, response_code: FOUND}\n"
    "              - match: {safe_regex: {regex: \"/x/[0-9]+\"}}\n"
    "                route: {cluster: dead, regex_rewrite: {pattern: {regex: \"[0-9]\"}, substitution: n}}\n"
    "              - match: {prefix: /c}\n"
    "                route: {cluster_header: x-cluster}\n"
    "              - match: {prefix: /}\n"
    "                route:\n"
    "                  cluster: dead\n"
    "                  prefix_rewrite: /up\n"
    "                  retry_policy: {retry_on: connect-failure, num_retries: 1, retry_back_off: {base_interval: 0.001s}}\n"
    "          http_filters:\n"
    "          - name: envoy.filters.http.router\n"
    "            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}\n"
    "  clusters:\n"
    "  - name: dead\n"
    "    connect_timeout: 1s\n"
    "    load_assignment:\n"
    "      cluster_name: dead\n"
    "      endpoints:\n"
    "      - lb_endpoints:\n"
    "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}\n";

static struct tn_worker w;
static struct tn_wlistener wl;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct tn_err err;
    (void)argc;
    (void)argv;
    tn_err_init(&err);
    tn_pb_bootstrap *b = tn_bootstrap_load(NULL, CONFIG, &err);
    struct tn_config *cfg = b ? tn_config_compile(b, &err) : NULL;
    if (cfg == NULL) {
        fprintf(stderr, "fuzz_conn: %s\n", err.msg);
        abort();
    }
    static struct tn_stats st;
    static struct tn_server_stats ss;
    tn_stats_init(&st);
    if (tn_dp_stats_register(&st, cfg, &ss) || (w.shard = tn_stats_shard(&st)) == NULL)
        abort();
    uv_loop_init(&w.loop);
    tn_timers_init(&w.timers, &w.loop);
    tn_outq_flusher_init(&w.flusher, &w.loop);
    w.cfg = cfg;
    w.rng = 42;
    static struct tn_wcluster wc; /* the map's reference is never dropped */
    w.n_clusters = w.cap_clusters = 1;
    w.clusters = calloc(1, sizeof(*w.clusters));
    wc.c = cfg->clusters[0];
    wc.w = &w;
    wc.refs = 1;
    tn_lb_state_init(&wc.lb, 1);
    w.clusters[0] = &wc;
    const struct tn_endpoint *ep = &cfg->clusters[0]->endpoints->endpoints[0];
    struct tn_host *h = tn_host_new((const struct sockaddr *)&ep->addr.sa, sizeof(struct sockaddr_in), NULL, 1, 0);
    struct tn_host_set *set = tn_host_set_new(&h, 1, cfg->clusters[0]);
    tn_host_unref(h);
    tn__worker_set_hosts(&wc, set);
    wl.l = cfg->listeners[0];
    wl.w = &w;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds))
        abort();
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    if (tn_conn_adopt(&wl, fds[0]))
        abort();
    size_t off = 0;
    char sink[65536];
    for (int i = 0; i < 100000 && w.n_conns > 0; i++) {
        if (off < size) {
            ssize_t n = write(fds[1], data + off, size - off);
            if (n > 0)
                off += (size_t)n;
            if (off == size)
                shutdown(fds[1], SHUT_WR);
        } else if (size == 0 && i == 0) {
            shutdown(fds[1], SHUT_WR);
        }
        while (read(fds[1], sink, sizeof(sink)) > 0)
            ;
        uv_run(&w.loop, off < size ? UV_RUN_NOWAIT : UV_RUN_ONCE);
    }
    if (w.n_conns > 0) /* the connection never finished */
        abort();
    close(fds[1]);
    return 0;
}
