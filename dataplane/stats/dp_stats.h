/* The data plane's stats, by Envoy's names: the slots each listener, HTTP
 * connection manager and cluster writes to. Registered on the main thread
 * before the workers start (tn_dp_stats_register), then only read. */
#ifndef TN_DP_STATS_H
#define TN_DP_STATS_H

#include <stdint.h>

#include "dataplane/stats/stats.h"

struct tn_config;
struct tn_cluster;

#define TN_HTTP_STATS(X)                                                                                               \
    X(downstream_cx_total, COUNTER)                                                                                    \
    X(downstream_cx_active, GAUGE)                                                                                     \
    X(downstream_cx_destroy, COUNTER)                                                                                  \
    X(downstream_cx_destroy_remote, COUNTER)                                                                           \
    X(downstream_cx_destroy_local, COUNTER)                                                                            \
    X(downstream_cx_http1_total, COUNTER)                                                                              \
    X(downstream_cx_http1_active, GAUGE)                                                                               \
    X(downstream_cx_http2_total, COUNTER)                                                                              \
    X(downstream_cx_http2_active, GAUGE)                                                                               \
    X(downstream_cx_protocol_error, COUNTER)                                                                           \
    X(downstream_cx_idle_timeout, COUNTER)                                                                             \
    X(downstream_cx_upgrades_total, COUNTER)                                                                           \
    X(downstream_cx_upgrades_active, GAUGE)                                                                            \
    X(downstream_cx_rx_bytes_total, COUNTER)                                                                           \
    X(downstream_cx_tx_bytes_total, COUNTER)                                                                           \
    X(downstream_rq_total, COUNTER)                                                                                    \
    X(downstream_rq_http1_total, COUNTER)                                                                              \
    X(downstream_rq_http2_total, COUNTER)                                                                              \
    X(downstream_rq_active, GAUGE)                                                                                     \
    X(downstream_rq_1xx, COUNTER)                                                                                      \
    X(downstream_rq_2xx, COUNTER)                                                                                      \
    X(downstream_rq_3xx, COUNTER)                                                                                      \
    X(downstream_rq_4xx, COUNTER)                                                                                      \
    X(downstream_rq_5xx, COUNTER)                                                                                      \
    X(downstream_rq_completed, COUNTER)                                                                                \
    X(downstream_rq_time, HISTOGRAM)                                                                                   \
    X(downstream_rq_timeout, COUNTER)                                                                                  \
    X(downstream_rq_idle_timeout, COUNTER)                                                                             \
    X(downstream_rq_header_timeout, COUNTER)                                                                           \
    X(downstream_rq_too_large, COUNTER)                                                                                \
    X(downstream_rq_rx_reset, COUNTER)                                                                                 \
    X(downstream_rq_tx_reset, COUNTER)                                                                                 \
    X(no_route, COUNTER)                                                                                               \
    X(no_cluster, COUNTER)                                                                                             \
    X(rq_redirect, COUNTER)                                                                                            \
    X(rq_direct_response, COUNTER)                                                                                     \
    X(rq_total, COUNTER)

/* The request mirror's counters (mirror/), "http.<stat_prefix>.mirror.<name>":
 * shadows started, dropped (shed: circuit breakers, a slow mirror, a body
 * that could not be kept), no_cluster (cluster_header absent or naming no
 * cluster), failed (connect failure, reset, timeout, no healthy host). */
#define TN_HTTP_MIRROR_STATS(X) X(requests) X(dropped) X(no_cluster) X(failed)

/* The downstream HTTP/2 codec's, rooted at "http2." as Envoy roots them
 * (one set shared by every listener): streams reset by the client and by
 * tern (RST_STREAM frames sent), requests refused for the size or count of
 * their headers (header_overflow counts both, as Envoy's; too_many_headers
 * the count alone), streams open. */
#define TN_HTTP2_STATS(X)                                                                                              \
    X(rx_reset, COUNTER) X(tx_reset, COUNTER) X(header_overflow, COUNTER) X(too_many_headers, COUNTER)                 \
        X(streams_active, GAUGE)

#define TN_LISTENER_STATS(X)                                                                                           \
    X(downstream_cx_total, COUNTER)                                                                                    \
    X(downstream_cx_active, GAUGE)                                                                                     \
    X(downstream_cx_destroy, COUNTER)

#define TN_CLUSTER_STATS(X)                                                                                            \
    X(upstream_cx_total, COUNTER)                                                                                      \
    X(upstream_cx_active, GAUGE)                                                                                       \
    X(upstream_cx_http1_total, COUNTER)                                                                                \
    X(upstream_cx_http2_total, COUNTER)                                                                                \
    X(upstream_cx_connect_fail, COUNTER)                                                                               \
    X(upstream_cx_connect_timeout, COUNTER)                                                                            \
    X(upstream_cx_destroy, COUNTER)                                                                                    \
    X(upstream_cx_destroy_remote, COUNTER)                                                                             \
    X(upstream_cx_destroy_local, COUNTER)                                                                              \
    X(upstream_cx_overflow, COUNTER)                                                                                   \
    X(upstream_cx_idle_timeout, COUNTER)                                                                               \
    X(upstream_cx_protocol_error, COUNTER)                                                                             \
    X(upstream_cx_rx_bytes_total, COUNTER)                                                                             \
    X(upstream_cx_tx_bytes_total, COUNTER)                                                                             \
    X(upstream_rq_total, COUNTER)                                                                                      \
    X(upstream_rq_active, GAUGE)                                                                                       \
    X(upstream_rq_completed, COUNTER)                                                                                  \
    X(upstream_rq_pending_total, COUNTER)                                                                              \
    X(upstream_rq_pending_active, GAUGE)                                                                               \
    X(upstream_rq_pending_overflow, COUNTER)                                                                           \
    X(upstream_rq_pending_failure_eject, COUNTER)                                                                      \
    X(upstream_rq_timeout, COUNTER)                                                                                    \
    X(upstream_rq_per_try_timeout, COUNTER)                                                                            \
    X(upstream_rq_retry, COUNTER)                                                                                      \
    X(upstream_rq_retry_success, COUNTER)                                                                              \
    X(upstream_rq_retry_overflow, COUNTER)                                                                             \
    X(upstream_rq_retry_limit_exceeded, COUNTER)                                                                       \
    X(upstream_rq_rx_reset, COUNTER)                                                                                   \
    X(upstream_rq_tx_reset, COUNTER)                                                                                   \
    X(upstream_rq_1xx, COUNTER)                                                                                        \
    X(upstream_rq_2xx, COUNTER)                                                                                        \
    X(upstream_rq_3xx, COUNTER)                                                                                        \
    X(upstream_rq_4xx, COUNTER)                                                                                        \
    X(upstream_rq_5xx, COUNTER)                                                                                        \
    X(upstream_rq_time, HISTOGRAM)                                                                                     \
    X(upstream_cx_connect_ms, HISTOGRAM)                                                                               \
    X(membership_total, GAUGE)                                                                                         \
    X(membership_healthy, GAUGE)                                                                                       \
    X(membership_degraded, GAUGE)                                                                                      \
    X(health_check.attempt, COUNTER)                                                                                   \
    X(health_check.success, COUNTER)                                                                                   \
    X(health_check.failure, COUNTER)                                                                                   \
    X(health_check.network_failure, COUNTER)                                                                           \
    X(health_check.healthy, GAUGE)                                                                                     \
    X(outlier_detection.ejections_active, GAUGE)                                                                       \
    X(outlier_detection.ejections_enforced_total, COUNTER)                                                             \
    X(update_attempt, COUNTER)                                                                                         \
    X(update_success, COUNTER)                                                                                         \
    X(update_failure, COUNTER)                                                                                         \
    X(update_rejected, COUNTER)                                                                                        \
    X(update_empty, COUNTER)

/* Slots by stat; the X-macro names with '.' become '_' in the field. */
#define TN_STAT_FIELD(name, kind) uint32_t name;
#define TN_MIRROR_FIELD(name) uint32_t mirror_##name;
#define TN_HTTP2_FIELD(name, kind) uint32_t http2_##name;
struct tn_http_stats {
    TN_HTTP_STATS(TN_STAT_FIELD)
    TN_HTTP_MIRROR_STATS(TN_MIRROR_FIELD)
    TN_HTTP2_STATS(TN_HTTP2_FIELD)
};
#undef TN_HTTP2_FIELD
#undef TN_MIRROR_FIELD
struct tn_listener_stats {
    TN_LISTENER_STATS(TN_STAT_FIELD)
};
#undef TN_STAT_FIELD

struct tn_cluster_stats {
    uint32_t upstream_cx_total, upstream_cx_active, upstream_cx_http1_total, upstream_cx_http2_total, upstream_cx_connect_fail,
        upstream_cx_connect_timeout, upstream_cx_destroy, upstream_cx_destroy_remote, upstream_cx_destroy_local,
        upstream_cx_overflow, upstream_cx_idle_timeout, upstream_cx_protocol_error, upstream_cx_rx_bytes_total, upstream_cx_tx_bytes_total,
        upstream_rq_total, upstream_rq_active, upstream_rq_completed, upstream_rq_pending_total,
        upstream_rq_pending_active, upstream_rq_pending_overflow, upstream_rq_pending_failure_eject,
        upstream_rq_timeout, upstream_rq_per_try_timeout, upstream_rq_retry, upstream_rq_retry_success,
        upstream_rq_retry_overflow, upstream_rq_retry_limit_exceeded, upstream_rq_rx_reset, upstream_rq_tx_reset, upstream_rq_1xx,
        upstream_rq_2xx, upstream_rq_3xx, upstream_rq_4xx, upstream_rq_5xx, upstream_rq_time, upstream_cx_connect_ms,
        membership_total, membership_healthy, membership_degraded, health_check_attempt, health_check_success,
        health_check_failure, health_check_network_failure, health_check_healthy, outlier_detection_ejections_active,
        outlier_detection_ejections_enforced_total, update_attempt, update_success, update_failure,
        update_rejected, update_empty;
    uint32_t upstream_rq_code; /* upstream_rq_100 .. _599: code c is this + (c - 100) */
};

/* Server-wide stats (main thread shard). */
struct tn_server_stats {
    uint32_t live, uptime, concurrency, total_connections, memory_allocated, version, days_until_first_cert_expiring;
    uint32_t cm_active_clusters, cm_warming_clusters, cm_cluster_added, cm_cluster_modified, cm_cluster_removed;
    uint32_t lm_total_listeners_active, lm_listener_added, lm_listener_removed, lm_listener_modified;
    uint32_t lm_total_listeners_warming, lm_total_listeners_draining, lm_listener_create_success;
    uint32_t lds_update_attempt, lds_update_success, lds_update_rejected, lds_update_empty, lds_update_failure;
    uint32_t cds_update_attempt, cds_update_success, cds_update_rejected, cds_update_empty, cds_update_failure;
    bool has_control_plane; /* the control_plane.* slots below are registered */
    uint32_t cp_connected_state, cp_rate_limit_enforced, cp_pending_requests;
};

/* Registers every stat of cfg's listeners and clusters and the server's,
 * filling the slot structs on the listeners' HCMs, the listeners and the
 * clusters (cfg is the server's, before workers share it). 0 or -1 (out of
 * memory). */
int tn_dp_stats_register(struct tn_stats *st, struct tn_config *cfg, struct tn_server_stats *srv);

/* Registers (or finds, for a name seen before) one cluster's stats and fills
 * its slots: for clusters from CDS, within the store's reserve. 0 or -1. */
int tn_dp_stats_register_cluster(struct tn_stats *st, struct tn_cluster *c);

/* The same for one listener (listener.*, http.<prefix>.*, its RDS and
 * filters' stats): for listeners from LDS, within the reserve. 0 or -1. */
struct tn_listener;
int tn_dp_stats_register_listener(struct tn_stats *st, struct tn_listener *l);

#endif
