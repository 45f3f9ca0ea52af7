/* The health check filter (health_check.h): matches the configured
 * requests and answers them itself, or passes them on; whether the admin
 * failed the health check is server-wide state it reads through the
 * server's interface (tn_server_health_failing), never a flag the server
 * pushes into it. */
#include "filters/health_check.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/upstream/host.h"
#include "dataplane/core/pool.h"
#include "dataplane/server/server.h"
#include "dataplane/http/stream.h"
#include "dataplane/server/worker.h"
#include "envoy/extensions/filters/http/health_check/v3/health_check.pb-c.h"
#include "filters/route.h"
#include "filters/route_match.h"

typedef Envoy__Extensions__Filters__Http__HealthCheck__V3__HealthCheck pb_hc;

struct min_healthy {
    const char *cluster;
    double percent;
};

struct hc_config {
    struct tn_pool pool;
    bool pass_through;
    struct tn_header_matcher *headers;
    size_t n_headers;
    struct min_healthy *min;
    size_t n_min;
};

static bool is_health_check(const struct hc_config *c, const struct tn_request *rq)
{
    struct tn_request_view v = {.method = rq->method, .method_len = rq->method_len, .path = rq->path,
                                .path_len = rq->path_len, .host = rq->host, .host_len = rq->host_len,
                                .scheme = rq->scheme, .headers = rq->headers, .n_headers = rq->n_headers};
    for (size_t i = 0; i < c->n_headers; i++)
        if (!tn_header_matcher_match(&c->headers[i], &v))
            return false;
    return true;
}

/* Envoy's cluster_min_healthy_percentages: every named cluster has at least
 * that share of its hosts healthy (a cluster that does not exist fails). */
static bool clusters_healthy(const struct hc_config *c, struct tn_worker *w)
{
    uint64_t now = tn_worker_now(w);
    for (size_t i = 0; i < c->n_min; i++) {
        struct tn_wcluster *wc = tn_worker_cluster(w, c->min[i].cluster);
        if (wc == NULL)
            return false;
        size_t total = wc->hosts ? wc->hosts->n_hosts : 0, healthy = 0;
        if (total == 0) {
            if (c->min[i].percent > 0)
                return false;
            continue;
        }
        for (size_t j = 0; j < total; j++)
            healthy += tn_host_healthy(wc->hosts->hosts[j], now);
        if ((double)healthy * 100.0 < c->min[i].percent * (double)total)
            return false;
    }
    return true;
}

static enum tn_filter_status on_request_headers(struct tn_stream *s, void *config, void *ctx, bool end_stream)
{
    const struct hc_config *c = config;
    (void)ctx, (void)end_stream;
    if (!is_health_check(c, tn_stream_request(s)))
        return TN_FILTER_CONTINUE;
    tn_stream_info(s)->health_check = true;
    if (tn_server_health_failing()) {
        tn_stream_local_reply(s, 503, NULL, TN_RF_FAILED_LOCAL_HEALTHCHECK, "health_check_failed");
        return TN_FILTER_STOP;
    }
    if (c->pass_through)
        return TN_FILTER_CONTINUE;
    if (!clusters_healthy(c, tn_stream_worker(s))) {
        tn_stream_local_reply(s, 503, NULL, 0, "health_check_failed_cluster_unhealthy");
        return TN_FILTER_STOP;
    }
    tn_stream_local_reply(s, 200, NULL, 0, "health_check_ok");
    return TN_FILTER_STOP;
}

static const struct tn_filter_ops hc_ops = {
    .on_request_headers = on_request_headers,
};

static void destroy_config(void *config)
{
    struct hc_config *c = config;
    if (c == NULL)
        return;
    tn_pool_dispose(&c->pool);
    free(c);
}

static void *create_config(const ProtobufCMessage *msg, struct tn_err *err)
{
    const pb_hc *pb = (const void *)msg;
    struct hc_config *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    tn_pool_init(&c->pool);
    if (pb->pass_through_mode == NULL) {
        tn_err_push(err, ".pass_through_mode");
        tn_err_fail(err, "required");
        goto fail;
    }
    c->pass_through = pb->pass_through_mode->value;
    if (pb->n_headers == 0) {
        tn_err_push(err, ".headers");
        tn_err_fail(err, "at least one header matcher (usually :path) is required");
        goto fail;
    }
    c->headers = tn_pool_alloc(&c->pool, pb->n_headers * sizeof(*c->headers));
    c->n_headers = pb->n_headers;
    for (size_t i = 0; i < pb->n_headers; i++) {
        size_t mark = tn_err_push(err, ".headers[%zu]", i);
        if (tn_header_matcher_compile(&c->pool, pb->headers[i], &c->headers[i], err))
            goto fail;
        tn_err_pop(err, mark);
    }
    c->min = tn_pool_alloc(&c->pool, pb->n_cluster_min_healthy_percentages * sizeof(*c->min) + 1);
    for (size_t i = 0; i < pb->n_cluster_min_healthy_percentages; i++) {
        const Envoy__Extensions__Filters__Http__HealthCheck__V3__HealthCheck__ClusterMinHealthyPercentagesEntry *e =
            pb->cluster_min_healthy_percentages[i];
        double v = e->value ? e->value->value : 0;
        if (!(v >= 0 && v <= 100)) {
            tn_err_push(err, ".cluster_min_healthy_percentages.%s", e->key);
            tn_err_fail(err, "must be between 0 and 100");
            goto fail;
        }
        c->min[c->n_min].cluster = tn_pool_strdup(&c->pool, e->key);
        c->min[c->n_min++].percent = (double)(long)v; /* Envoy truncates 12.5 to 12 */
    }
    return c;
fail:
    destroy_config(c);
    return NULL;
}

const struct tn_filter_factory tn_health_check_factory = {
    .name = "envoy.filters.http.health_check",
    .config_type = &envoy__extensions__filters__http__health_check__v3__health_check__descriptor,
    .create_config = create_config,
    .destroy_config = destroy_config,
    .ops = &hc_ops,
};
