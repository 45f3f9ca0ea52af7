/* Compiled clusters (envoy.config.cluster.v3.Cluster) and their endpoint sets.
 *
 * The cluster's settings are immutable; its endpoints live in a separate
 * reference-counted tn_endpoint_set so EDS (or a DNS refresh) can swap the set
 * while requests already routed keep the hosts they picked. */
#ifndef TN_CLUSTER_H
#define TN_CLUSTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dataplane/core/address.h"
#include "dataplane/stats/dp_stats.h"
#include "dataplane/core/err.h"
#include "dataplane/core/pool.h"
#include "dataplane/server/source.h"
#include "envoy/config/cluster/v3/cluster.pb-c.h"

typedef Envoy__Config__Cluster__V3__Cluster tn_pb_cluster;
typedef Envoy__Config__Endpoint__V3__ClusterLoadAssignment tn_pb_cla;

enum tn_cluster_type {
    TN_CLUSTER_STATIC = 0,
    TN_CLUSTER_STRICT_DNS,
    TN_CLUSTER_LOGICAL_DNS,
    TN_CLUSTER_EDS,
};

enum tn_lb_policy {
    TN_LB_ROUND_ROBIN = 0,
    TN_LB_LEAST_REQUEST,
    TN_LB_RANDOM,
    TN_LB_RING_HASH,
    TN_LB_MAGLEV,
};

struct tn_endpoint {
    struct tn_address addr;
    uint32_t weight;   /* load_balancing_weight, 1 by default */
    uint32_t priority; /* of its LocalityLbEndpoints */
    uint32_t locality_weight;
    int health_status; /* envoy.config.core.v3.HealthStatus as configured (EDS) */
};

struct tn_endpoint_set {
    atomic_uint refcnt; /* shared by the main thread and workers */
    struct tn_pool pool;
    struct tn_endpoint *endpoints;
    size_t n_endpoints;
};

struct tn_thresholds {
    uint32_t max_connections, max_pending_requests, max_requests, max_retries;
};

struct tn_health_check {
    uint64_t timeout_ms, interval_ms;
    uint32_t unhealthy_threshold, healthy_threshold;
    const char *path, *host; /* HTTP check; path NULL for a TCP check */
    bool h2;                 /* over HTTP/2 (codec_client_type HTTP2, or gRPC) */
    bool grpc;               /* grpc.health.v1.Health/Check: SERVING is healthy */
    const char *service_name; /* gRPC: the HealthCheckRequest's service, "" for the server */
    const char *authority;    /* gRPC: :authority, NULL for the cluster's name */
    int64_t (*expected)[2]; /* [start, end) ranges; default 200-299 */
    size_t n_expected;
};

struct tn_outlier {
    bool enabled;
    uint32_t consecutive_5xx, consecutive_gateway_failure;
    uint32_t enforcing_consecutive_5xx, enforcing_consecutive_gateway_failure; /* percent */
    uint64_t interval_ms, base_ejection_time_ms, max_ejection_time_ms;
    uint32_t max_ejection_percent;
};

struct tn_cluster {
    atomic_uint refcnt; /* shared by the main thread and workers */
    struct tn_pool pool;
    const char *name;
    const char *stat_name; /* alt_stat_name or name */
    enum tn_cluster_type type;
    enum tn_lb_policy lb;
    uint64_t connect_timeout_ms;
    uint32_t per_connection_buffer_limit;
    uint32_t max_requests_per_connection; /* 0: unlimited */
    uint64_t idle_timeout_ms;             /* upstream connection idle timeout, Envoy's 1 h default */
    uint32_t max_headers_count;           /* per response (and its trailers), Envoy's 100 */
    uint32_t max_response_headers_kb;     /* the response head, status line to the empty line, Envoy's 60 */
    bool http2;                           /* upstream speaks HTTP/2, h2c with prior knowledge */
    struct {
        uint32_t max_concurrent_streams;         /* per connection, Envoy's 2^31-1 */
        uint32_t initial_stream_window_size;     /* Envoy's 256 MiB */
        uint32_t initial_connection_window_size; /* Envoy's 256 MiB */
        uint32_t hpack_table_size;               /* Envoy's 4096 */
    } h2;
    uint32_t least_request_choices;
    uint64_t ring_min, ring_max;
    uint64_t maglev_table_size;
    uint64_t dns_refresh_ms;
    bool respect_dns_ttl;
    int dns_family; /* Cluster.DnsLookupFamily */
    const char *eds_service_name; /* EDS: the name to subscribe to (NULL: the cluster's name) */
    struct tn_source eds_source;   /* eds_cluster_config.eds_config */
    struct tn_thresholds thresholds[2]; /* DEFAULT and HIGH priority */
    struct tn_health_check *health_checks;
    size_t n_health_checks;
    struct tn_outlier outlier;
    struct tn_endpoint_set *endpoints; /* from load_assignment; EDS replaces it */
    /* Circuit breaker resources in use, across all workers (run-time state
     * kept beside the settings: a replaced cluster starts from zero, as in
     * Envoy). */
    atomic_uint rc_cx, rc_pending, rc_rq, rc_retries;
    struct tn_cluster_stats stats; /* slots, set before workers share the cluster */
};

/* Compiles one cluster. err's path should point at it. A cluster with one
 * reference, or NULL with err set. */
struct tn_cluster *tn_cluster_compile(const tn_pb_cluster *pb, struct tn_err *err);
struct tn_cluster *tn_cluster_ref(struct tn_cluster *c);
void tn_cluster_unref(struct tn_cluster *c);

/* Compiles a ClusterLoadAssignment (a cluster's load_assignment, or an EDS
 * resource). `need_ip` refuses DNS names (STATIC and EDS clusters). */
struct tn_endpoint_set *tn_endpoint_set_compile(const tn_pb_cla *pb, bool need_ip, struct tn_err *err);
struct tn_endpoint_set *tn_endpoint_set_ref(struct tn_endpoint_set *s);
void tn_endpoint_set_unref(struct tn_endpoint_set *s);

#endif
