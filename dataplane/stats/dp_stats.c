#include "dataplane/stats/dp_stats.h"

#include <stdio.h>

#include <stddef.h>

#include "dataplane/upstream/cluster.h"
#include "dataplane/server/config.h"
#include "dataplane/server/listener.h"
#include "filters/filter.h"

struct stat_row {
    const char *name;
    enum tn_stat_kind kind;
    size_t off;
};

#define ROW(type, name, kind) {#name, TN_STAT_##kind, offsetof(type, name)},
#define HTTP_ROW(name, kind) ROW(struct tn_http_stats, name, kind)
#define LISTENER_ROW(name, kind) ROW(struct tn_listener_stats, name, kind)

#define MIRROR_ROW(name) {"mirror." #name, TN_STAT_COUNTER, offsetof(struct tn_http_stats, mirror_##name)},
static const struct stat_row http_rows[] = {TN_HTTP_STATS(HTTP_ROW) TN_HTTP_MIRROR_STATS(MIRROR_ROW)};
#define HTTP2_ROW(name, kind) {"http2." #name, TN_STAT_##kind, offsetof(struct tn_http_stats, http2_##name)},
static const struct stat_row http2_rows[] = {TN_HTTP2_STATS(HTTP2_ROW)};
static const struct stat_row listener_rows[] = {TN_LISTENER_STATS(LISTENER_ROW)};
static const struct stat_row cluster_rows[] = {
    {"upstream_cx_total", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_cx_total)},
    {"upstream_cx_active", TN_STAT_GAUGE, offsetof(struct tn_cluster_stats, upstream_cx_active)},
    {"upstream_cx_http1_total", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_cx_http1_total)},
    {"upstream_cx_http2_total", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_cx_http2_total)},
    {"upstream_cx_connect_fail", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_cx_connect_fail)},
    {"upstream_cx_connect_timeout", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_cx_connect_timeout)},
    {"upstream_cx_destroy", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_cx_destroy)},
    {"upstream_cx_destroy_remote", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_cx_destroy_remote)},
    {"upstream_cx_destroy_local", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_cx_destroy_local)},
    {"upstream_cx_overflow", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_cx_overflow)},
    {"upstream_cx_idle_timeout", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_cx_idle_timeout)},
    {"upstream_cx_protocol_error", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_cx_protocol_error)},
    {"upstream_cx_rx_bytes_total", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_cx_rx_bytes_total)},
    {"upstream_cx_tx_bytes_total", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_cx_tx_bytes_total)},
    {"upstream_rq_total", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_total)},
    {"upstream_rq_active", TN_STAT_GAUGE, offsetof(struct tn_cluster_stats, upstream_rq_active)},
    {"upstream_rq_completed", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_completed)},
    {"upstream_rq_pending_total", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_pending_total)},
    {"upstream_rq_pending_active", TN_STAT_GAUGE, offsetof(struct tn_cluster_stats, upstream_rq_pending_active)},
    {"upstream_rq_pending_overflow", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_pending_overflow)},
    {"upstream_rq_pending_failure_eject", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_pending_failure_eject)},
    {"upstream_rq_timeout", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_timeout)},
    {"upstream_rq_per_try_timeout", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_per_try_timeout)},
    {"upstream_rq_retry", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_retry)},
    {"upstream_rq_retry_success", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_retry_success)},
    {"upstream_rq_retry_overflow", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_retry_overflow)},
    {"upstream_rq_retry_limit_exceeded", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_retry_limit_exceeded)},
    {"upstream_rq_rx_reset", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_rx_reset)},
    {"upstream_rq_tx_reset", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_tx_reset)},
    {"upstream_rq_1xx", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_1xx)},
    {"upstream_rq_2xx", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_2xx)},
    {"upstream_rq_3xx", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_3xx)},
    {"upstream_rq_4xx", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_4xx)},
    {"upstream_rq_5xx", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, upstream_rq_5xx)},
    {"upstream_rq_time", TN_STAT_HISTOGRAM, offsetof(struct tn_cluster_stats, upstream_rq_time)},
    {"upstream_cx_connect_ms", TN_STAT_HISTOGRAM, offsetof(struct tn_cluster_stats, upstream_cx_connect_ms)},
    {"membership_total", TN_STAT_GAUGE, offsetof(struct tn_cluster_stats, membership_total)},
    {"membership_healthy", TN_STAT_GAUGE, offsetof(struct tn_cluster_stats, membership_healthy)},
    {"membership_degraded", TN_STAT_GAUGE, offsetof(struct tn_cluster_stats, membership_degraded)},
    {"health_check.attempt", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, health_check_attempt)},
    {"health_check.success", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, health_check_success)},
    {"health_check.failure", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, health_check_failure)},
    {"health_check.network_failure", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, health_check_network_failure)},
    {"health_check.healthy", TN_STAT_GAUGE, offsetof(struct tn_cluster_stats, health_check_healthy)},
    {"outlier_detection.ejections_active", TN_STAT_GAUGE, offsetof(struct tn_cluster_stats, outlier_detection_ejections_active)},
    {"outlier_detection.ejections_enforced_total", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, outlier_detection_ejections_enforced_total)},
    {"update_attempt", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, update_attempt)},
    {"update_success", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, update_success)},
    {"update_failure", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, update_failure)},
    {"update_rejected", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, update_rejected)},
    {"update_empty", TN_STAT_COUNTER, offsetof(struct tn_cluster_stats, update_empty)},
};

static int add_rows(struct tn_stats *st, enum tn_stat_scope scope, const char *value, const struct stat_row *rows,
                    size_t n, void *out)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t slot = tn_stats_add(st, scope, value, rows[i].name, rows[i].kind);
        if (slot == UINT32_MAX)
            return -1;
        *(uint32_t *)((char *)out + rows[i].off) = slot;
    }
    return 0;
}

static int add(struct tn_stats *st, const char *name, enum tn_stat_kind kind, uint32_t *out)
{
    *out = tn_stats_add(st, TN_SCOPE_NONE, NULL, name, kind);
    return *out == UINT32_MAX ? -1 : 0;
}

static int server_stats(struct tn_stats *st, struct tn_server_stats *s)
{
    return add(st, "server.live", TN_STAT_GAUGE, &s->live) ||
           add(st, "server.uptime", TN_STAT_GAUGE, &s->uptime) ||
           add(st, "server.concurrency", TN_STAT_GAUGE, &s->concurrency) ||
           add(st, "server.total_connections", TN_STAT_GAUGE, &s->total_connections) ||
           add(st, "server.memory_allocated", TN_STAT_GAUGE, &s->memory_allocated) ||
           add(st, "server.version", TN_STAT_GAUGE, &s->version) ||
           add(st, "server.days_until_first_cert_expiring", TN_STAT_GAUGE, &s->days_until_first_cert_expiring) ||
           add(st, "cluster_manager.active_clusters", TN_STAT_GAUGE, &s->cm_active_clusters) ||
           add(st, "cluster_manager.warming_clusters", TN_STAT_GAUGE, &s->cm_warming_clusters) ||
           add(st, "cluster_manager.cluster_added", TN_STAT_COUNTER, &s->cm_cluster_added) ||
           add(st, "cluster_manager.cluster_modified", TN_STAT_COUNTER, &s->cm_cluster_modified) ||
           add(st, "cluster_manager.cluster_removed", TN_STAT_COUNTER, &s->cm_cluster_removed) ||
           add(st, "listener_manager.total_listeners_active", TN_STAT_GAUGE, &s->lm_total_listeners_active) ||
           add(st, "listener_manager.listener_added", TN_STAT_COUNTER, &s->lm_listener_added) ||
           add(st, "listener_manager.listener_removed", TN_STAT_COUNTER, &s->lm_listener_removed) ||
           add(st, "listener_manager.listener_modified", TN_STAT_COUNTER, &s->lm_listener_modified) ||
           add(st, "listener_manager.total_listeners_warming", TN_STAT_GAUGE, &s->lm_total_listeners_warming) ||
           add(st, "listener_manager.total_listeners_draining", TN_STAT_GAUGE, &s->lm_total_listeners_draining) ||
           add(st, "listener_manager.listener_create_success", TN_STAT_COUNTER, &s->lm_listener_create_success) ||
           add(st, "listener_manager.lds.update_attempt", TN_STAT_COUNTER, &s->lds_update_attempt) ||
           add(st, "listener_manager.lds.update_success", TN_STAT_COUNTER, &s->lds_update_success) ||
           add(st, "listener_manager.lds.update_rejected", TN_STAT_COUNTER, &s->lds_update_rejected) ||
           add(st, "listener_manager.lds.update_empty", TN_STAT_COUNTER, &s->lds_update_empty) ||
           add(st, "listener_manager.lds.update_failure", TN_STAT_COUNTER, &s->lds_update_failure) ||
           add(st, "cluster_manager.cds.update_attempt", TN_STAT_COUNTER, &s->cds_update_attempt) ||
           add(st, "cluster_manager.cds.update_success", TN_STAT_COUNTER, &s->cds_update_success) ||
           add(st, "cluster_manager.cds.update_rejected", TN_STAT_COUNTER, &s->cds_update_rejected) ||
           add(st, "cluster_manager.cds.update_empty", TN_STAT_COUNTER, &s->cds_update_empty) ||
           add(st, "cluster_manager.cds.update_failure", TN_STAT_COUNTER, &s->cds_update_failure)
               ? -1
               : 0;
}

/* Envoy's RDS stats: http.<stat_prefix>.rds.<route_config_name>.<name>,
 * tagged envoy_http_conn_manager_prefix and envoy_rds_route_config. */
static int rds_stats(struct tn_stats *st, struct tn_hcm *h)
{
    static const struct {
        const char *name;
        size_t off;
    } rows[] = {
        {"update_attempt", offsetof(struct tn_hcm, rds_stats.update_attempt)},
        {"update_success", offsetof(struct tn_hcm, rds_stats.update_success)},
        {"update_rejected", offsetof(struct tn_hcm, rds_stats.update_rejected)},
        {"update_empty", offsetof(struct tn_hcm, rds_stats.update_empty)},
        {"config_reload", offsetof(struct tn_hcm, rds_stats.config_reload)},
    };
    const char *tags[] = {"envoy_http_conn_manager_prefix", h->stat_prefix, "envoy_rds_route_config", h->rds_name};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char name[512], prom[128];
        snprintf(name, sizeof(name), "http.%s.rds.%s.%s", h->stat_prefix, h->rds_name, rows[i].name);
        snprintf(prom, sizeof(prom), "envoy_http_rds_%s", rows[i].name);
        uint32_t slot = tn_stats_add_tagged(st, name, prom, tags, 2, TN_STAT_COUNTER);
        if (slot == UINT32_MAX)
            return -1;
        *(uint32_t *)((char *)h + rows[i].off) = slot;
    }
    return 0;
}

int tn_dp_stats_register(struct tn_stats *st, struct tn_config *cfg, struct tn_server_stats *srv)
{
    if (server_stats(st, srv))
        return -1;
    if (tn_config_uses_grpc(cfg)) {
        srv->has_control_plane = true;
        if (add(st, "control_plane.connected_state", TN_STAT_GAUGE, &srv->cp_connected_state) ||
            add(st, "control_plane.rate_limit_enforced", TN_STAT_COUNTER, &srv->cp_rate_limit_enforced) ||
            add(st, "control_plane.pending_requests", TN_STAT_GAUGE, &srv->cp_pending_requests))
            return -1;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++)
        if (tn_dp_stats_register_listener(st, cfg->listeners[i]))
            return -1;
    for (size_t i = 0; i < cfg->n_clusters; i++)
        if (tn_dp_stats_register_cluster(st, cfg->clusters[i]))
            return -1;
    return 0;
}

int tn_dp_stats_register_listener(struct tn_stats *st, struct tn_listener *l)
{
    if (add_rows(st, TN_SCOPE_LISTENER, l->stat_prefix, listener_rows, sizeof(listener_rows) / sizeof(listener_rows[0]),
                 &l->stats) ||
        add_rows(st, TN_SCOPE_HTTP, l->hcm.stat_prefix, http_rows, sizeof(http_rows) / sizeof(http_rows[0]),
                 &l->hcm.stats) ||
        add_rows(st, TN_SCOPE_NONE, NULL, http2_rows, sizeof(http2_rows) / sizeof(http2_rows[0]), &l->hcm.stats))
        return -1;
    if (l->hcm.rds_name && rds_stats(st, &l->hcm))
        return -1;
    for (size_t j = 0; j < l->hcm.n_filters; j++) {
        const struct tn_http_filter *hf = &l->hcm.filters[j];
        if (hf->factory->register_stats && hf->factory->register_stats(hf->config, st, l->hcm.stat_prefix))
            return -1;
    }
    return 0;
}

int tn_dp_stats_register_cluster(struct tn_stats *st, struct tn_cluster *c)
{
    if (add_rows(st, TN_SCOPE_CLUSTER, c->stat_name, cluster_rows, sizeof(cluster_rows) / sizeof(cluster_rows[0]),
                 &c->stats))
        return -1;
    /* a cluster of a name seen before takes the same slots */
    c->stats.upstream_rq_code = tn_stats_add_codes(st, TN_SCOPE_CLUSTER, c->stat_name, "upstream_rq");
    return c->stats.upstream_rq_code == UINT32_MAX ? -1 : 0;
}
