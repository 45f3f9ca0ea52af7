/* Compiled listeners (envoy.config.listener.v3.Listener) with their HTTP
 * connection managers and HTTP filter chains. Immutable, reference-counted. */
#ifndef TN_LISTENER_H
#define TN_LISTENER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dataplane/accesslog/accesslog.h"
#include "dataplane/core/address.h"
#include "dataplane/stats/dp_stats.h"
#include "dataplane/core/err.h"
#include "dataplane/core/pool.h"
#include "dataplane/server/source.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "filters/filter.h"
#include "filters/route.h"

typedef Envoy__Config__Listener__V3__Listener tn_pb_listener;

struct tn_http_filter {
    const char *name; /* as configured */
    const struct tn_filter_factory *factory;
    void *config; /* the factory's, freed with its destroy_config */
};

enum tn_codec {
    TN_CODEC_AUTO = 0,
    TN_CODEC_HTTP1,
    TN_CODEC_HTTP2,
};

/* One HttpConnectionManager. */
struct tn_hcm {
    const char *stat_prefix;
    enum tn_codec codec;
    struct tn_route_table *routes; /* inline route_config, or NULL with rds_name set */
    const char *rds_name;
    size_t rds_index;             /* rds_name's place in the config's rds_names (workers' current tables) */
    struct tn_source rds_source;  /* rds.config_source */
    struct { /* http.<stat_prefix>.rds.<rds_name>.* slots (main thread) */
        uint32_t update_attempt, update_success, update_rejected, update_empty, config_reload;
    } rds_stats;
    struct tn_http_filter *filters;
    size_t n_filters;
    struct tn_access_log *access_logs;
    size_t n_access_logs;
    const char *server_name;
    int server_header_transformation; /* OVERWRITE = 0, APPEND_IF_ABSENT, PASS_THROUGH */
    uint32_t max_request_headers_kb;
    uint64_t stream_idle_timeout_ms, request_timeout_ms, request_headers_timeout_ms, idle_timeout_ms;
    uint64_t drain_timeout_ms, delayed_close_timeout_ms;
    bool use_remote_address, skip_xff_append, generate_request_id, preserve_external_request_id;
    bool always_set_request_id_in_response, normalize_path, merge_slashes;
    uint32_t xff_num_trusted_hops;
    struct tn_upgrade *upgrades; /* upgrade_configs */
    size_t n_upgrades;
    uint32_t max_headers_count;           /* common_http_protocol_options (100): more is 431 */
    uint32_t max_requests_per_connection; /* common_http_protocol_options (0: no limit) */
    int headers_with_underscores_action;  /* ALLOW = 0, REJECT_REQUEST, DROP_HEADER */
    bool accept_http_10; /* http_protocol_options: else HTTP/1.0 gets 426 */
    bool allow_absolute_url; /* http_protocol_options (true): else an absolute-form target is 400 */
    bool allow_chunked_length; /* http_protocol_options: Content-Length beside chunked is dropped, not 400 */
    const char *default_host_for_http_10;
    const char *via;
    struct { /* http2_protocol_options: the SETTINGS the HTTP/2 codec sends */
        uint32_t max_concurrent_streams, initial_stream_window_size, initial_connection_window_size;
        uint32_t hpack_table_size;
    } h2;
    struct tn_http_stats stats; /* slots, set before workers share the listener */
};

struct tn_listener {
    atomic_uint refcnt; /* shared by the main thread and workers */
    struct tn_pool pool;
    const char *name;        /* as configured; a static listener without one: "127.0.0.1_10000" */
    bool name_generated;     /* the name is tern's: the listener has none */
    const char *stat_prefix; /* stat_prefix, or the address as Envoy names listener stats */
    struct tn_address addr;
    uint32_t per_connection_buffer_limit;
    bool reuse_port;
    struct tn_hcm hcm; /* tern serves one HTTP filter chain per listener */
    struct tn_listener_stats stats; /* slots, set before workers share the listener */
    const char *route_config_path; /* ".filter_chains[0]...route_config", for errors found later */
    const char *rds_source_path;   /* ".filter_chains[0]...rds.config_source" */
};

/* Compiles one listener; err's path should point at it. A listener with one
 * reference, or NULL with err set. Its name is required (LDS: resources
 * from a control plane are known by their names). */
struct tn_listener *tn_listener_compile(const tn_pb_listener *pb, struct tn_err *err);

/* Same for a bootstrap's static listener, which Envoy lets go unnamed (it
 * names it with a UUID). tern names it after its address as Envoy names
 * listener stats, "127.0.0.1_10000": stable across restarts, and unique
 * since two listeners may not share an address; name_generated is set. */
struct tn_listener *tn_listener_compile_static(const tn_pb_listener *pb, struct tn_err *err);
struct tn_listener *tn_listener_ref(struct tn_listener *l);
void tn_listener_unref(struct tn_listener *l);

#endif
