#include "api/pb/unsupported.h"

#include <stdlib.h>
#include <string.h>

#include "api/pb/types.h"

/* ---- Envoy's fields that api/ leaves out -------------------------------------
 *
 * Written by hand from Envoy's v3 API reference (envoyproxy.io/docs, api-v3),
 * for the messages a tern configuration is made of, minus the fields api/
 * has. Only names: a field listed here is refused as "not supported by tern"
 * instead of "unknown field". A name missing here still fails, as an unknown
 * field; nothing is ever accepted because of this list. */
static const struct {
    const char *message;
    const char *fields; /* space-separated */
} envoy_only[] = {
    {"envoy.config.bootstrap.v3.Bootstrap",
     "node_context_params hds_config flags_path stats_sinks deferred_stat_options stats_config stats_flush_on_admin "
     "watchdog watchdogs tracing overload_manager enable_dispatcher_stats header_prefix stats_server_version_override "
     "use_tcp_for_dns_lookups dns_resolution_config typed_dns_resolver_config bootstrap_extensions fatal_actions "
     "config_sources default_config_source default_socket_interface certificate_provider_instances inline_headers "
     "perf_tracing_file_path default_regex_engine xds_delegate_extension xds_config_tracker_extension "
     "listener_manager application_log_config grpc_async_client_manager_config memory_allocator_manager"},
    {"envoy.config.bootstrap.v3.Bootstrap.StaticResources", "secrets"},
    {"envoy.config.bootstrap.v3.Bootstrap.DynamicResources", "lds_resources_locator cds_resources_locator"},
    {"envoy.config.bootstrap.v3.Admin", "socket_options"},
    {"envoy.config.bootstrap.v3.ClusterManager", "outlier_detection load_stats_config enable_deferred_cluster_creation"},
    {"envoy.config.listener.v3.Listener",
     "additional_addresses filter_chain_matcher deprecated_v1 socket_options udp_listener_config api_listener "
     "connection_balance_config reuse_port tcp_backlog_size max_connections_to_accept_per_socket_event bind_to_port "
     "internal_listener enable_mptcp bypass_overload_manager"},
    {"envoy.config.listener.v3.FilterChain", "use_proxy_proto on_demand_configuration"},
    {"envoy.config.listener.v3.Filter", "config_discovery"},
    {"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
     "scoped_routes tracing http1_safe_max_connection_duration http3_protocol_options scheme_header_transformation "
     "access_log_flush_interval flush_access_log_on_new_request access_log_options original_ip_detection_extensions "
     "early_header_mutation_extensions internal_address_config forward_client_cert_details "
     "set_current_client_cert_details proxy_100_continue represent_ipv4_remote_address_as_ipv4_mapped_ipv6 "
     "request_id_extension local_reply_config stream_error_on_invalid_http_message path_normalization_options "
     "strip_trailing_host_dot proxy_status_config typed_header_validation_config append_x_forwarded_port "
     "append_local_overload add_proxy_protocol_connection_state"},
    {"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter", "config_discovery"},
    {"envoy.config.route.v3.RouteConfiguration",
     "vhds cluster_specifier_plugins request_mirror_policies ignore_port_in_host_matching "
     "ignore_path_parameters_in_path_matching metadata"},
    {"envoy.config.route.v3.VirtualHost",
     "matcher virtual_clusters rate_limits cors include_attempt_count_in_response retry_policy_typed_config "
     "hedge_policy include_is_timeout_retry_header per_request_buffer_limit_bytes metadata"},
    {"envoy.config.route.v3.Route",
     "filter_action non_forwarding_action decorator tracing per_request_buffer_limit_bytes stat_prefix"},
    {"envoy.config.route.v3.RouteMatch", "connect_matcher path_match_policy grpc tls_context dynamic_metadata filter_state"},
    {"envoy.config.route.v3.RouteAction",
     "cluster_specifier_plugin inline_cluster_specifier_plugin metadata_match path_rewrite_policy early_data_policy "
     "retry_policy_typed_config rate_limits include_vh_rate_limits cors max_grpc_timeout grpc_timeout_offset "
     "upgrade_configs internal_redirect_policy internal_redirect_action max_internal_redirects hedge_policy "
     "max_stream_duration"},
    {"envoy.config.route.v3.RetryPolicy",
     "retry_priority retry_host_predicate retry_options_predicates rate_limited_retry_back_off"},
    {"envoy.config.route.v3.WeightedCluster.ClusterWeight", "metadata_match"},
    {"envoy.config.cluster.v3.Cluster",
     "transport_socket_matches cluster_type dns_jitter dns_failure_refresh_rate dns_resolvers use_tcp_for_dns_lookups "
     "dns_resolution_config typed_dns_resolver_config wait_for_warm_on_init lb_subset_config original_dst_lb_config "
     "round_robin_lb_config protocol_selection filters load_balancing_policy lrs_server track_timeout_budgets "
     "upstream_config track_cluster_stats preconnect_policy connection_pool_per_downstream_connection"},
    {"envoy.config.cluster.v3.OutlierDetection",
     "enforcing_local_origin_success_rate failure_percentage_threshold enforcing_failure_percentage "
     "enforcing_failure_percentage_local_origin failure_percentage_minimum_hosts failure_percentage_request_volume "
     "max_ejection_time_jitter successful_active_health_check_uneject_host monitors always_eject_one_host"},
    {"envoy.config.core.v3.HealthCheck",
     "custom_health_check event_logger tls_options transport_socket_match_criteria"},
    {"envoy.config.core.v3.Address", "envoy_internal_address"},
    {"envoy.config.core.v3.ConfigSource", "authorities"},
    {"envoy.config.core.v3.ApiConfigSource", "config_validators"},
    {"envoy.extensions.filters.http.router.v3.Router", "upstream_log_options upstream_http_filters"},
};

static bool word_in(const char *list, const char *w)
{
    size_t n = strlen(w);
    if (n == 0)
        return false; /* strstr finds "" everywhere: the loop would not advance */
    for (const char *p = list; (p = strstr(p, w)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

static const char *envoy_only_of(const ProtobufCMessageDescriptor *d)
{
    for (size_t i = 0; i < sizeof(envoy_only) / sizeof(envoy_only[0]); i++)
        if (strcmp(envoy_only[i].message, d->name) == 0)
            return envoy_only[i].fields;
    return NULL;
}

bool tn_unsupported_envoy_field(const ProtobufCMessageDescriptor *d, const char *field)
{
    const char *list = envoy_only_of(d);
    return list != NULL && word_in(list, field);
}

size_t tn_edit_distance(const char *a, const char *b, size_t cap)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[128];
    if (lb >= sizeof(row) / sizeof(row[0]) || (la > lb ? la - lb : lb - la) >= cap)
        return cap;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0], best = row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t v = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < v)
                v = up + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            row[j] = v;
            diag = up;
            if (v < best)
                best = v;
        }
        if (best >= cap)
            return cap;
    }
    return row[lb] < cap ? row[lb] : cap;
}

/* A typo: at most 2 edits, and fewer than a third of the word. */
static size_t typo_cap(const char *key)
{
    size_t n = strlen(key) / 3;
    return (n < 2 ? n : 2) + 1;
}

const char *tn_unsupported_closest_field(const ProtobufCMessageDescriptor *d, const char *key)
{
    static char best_word[128]; /* an Envoy-only name, cut out of its list */
    size_t best = typo_cap(key);
    const char *found = NULL;

    for (unsigned i = 0; i < d->n_fields; i++) {
        size_t e = tn_edit_distance(key, d->fields[i].name, best);
        if (e < best) {
            best = e;
            found = d->fields[i].name;
        }
    }
    const char *list = envoy_only_of(d);
    for (const char *p = list; p && *p; p += strspn(p, " ")) {
        char word[sizeof(best_word)];
        size_t n = strcspn(p, " ");
        if (n < sizeof(word)) {
            memcpy(word, p, n);
            word[n] = '\0';
            size_t e = tn_edit_distance(key, word, best);
            if (e < best) {
                best = e;
                memcpy(best_word, word, n + 1);
                found = best_word;
            }
        }
        p += n;
    }
    return found;
}

/* ---- fields api/ has that tern does not act on ---------------------------------
 *
 * Each is refused when set (a non-zero scalar, a non-empty string or list, a
 * present message; a wrapper only when its value is not zero), since
 * accepting it would silently behave unlike Envoy. `ok` names one more value
 * that means what tern does anyway. */
static const struct unacted {
    const char *message;
    const char *field;
    const char *ok; /* a string or enum number that is accepted, or NULL */
    const char *why;
} unacted[] = {
    {"envoy.config.bootstrap.v3.Admin", "access_log_path", "/dev/null", "use admin.access_log"},
    {"envoy.config.bootstrap.v3.ClusterManager", "upstream_bind_config", NULL, NULL},
    {"envoy.config.listener.v3.Listener", "use_original_dst", NULL, NULL},
    {"envoy.config.listener.v3.Listener", "drain_type", NULL, NULL},
    {"envoy.config.listener.v3.Listener", "transparent", NULL, NULL},
    {"envoy.config.listener.v3.Listener", "freebind", NULL, NULL},
    {"envoy.config.listener.v3.Listener", "tcp_fast_open_queue_length", NULL, NULL},
    {"envoy.config.listener.v3.Listener", "access_log", NULL, "connection access logs; the HTTP connection manager's access_log is supported"},
    {"envoy.config.listener.v3.FilterChainMatch", "destination_port", NULL, "tern serves one filter chain, unmatched"},
    {"envoy.config.listener.v3.FilterChainMatch", "transport_protocol", NULL, "tern serves one filter chain, unmatched"},
    {"envoy.config.listener.v3.FilterChainMatch", "application_protocols", NULL, "tern serves one filter chain, unmatched"},
    {"envoy.config.listener.v3.FilterChainMatch", "server_names", NULL, "tern serves one filter chain, unmatched"},
    {"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", "add_user_agent", NULL, NULL},
    {"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", "strip_matching_host_port", NULL, NULL},
    {"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", "strip_any_host_port", NULL, NULL},
    {"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", "path_with_escaped_slashes_action", "1", "only KEEP_UNCHANGED is"},
    {"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter", "disabled", NULL, NULL},
    {"envoy.config.core.v3.Http2ProtocolOptions", "allow_connect", NULL, NULL},
    {"envoy.config.route.v3.RouteConfiguration", "most_specific_header_mutations_wins", NULL, NULL},
    {"envoy.config.route.v3.VirtualHost", "require_tls", NULL, NULL},
    {"envoy.config.route.v3.VirtualHost", "include_request_attempt_count", NULL, NULL},
    {"envoy.config.route.v3.RetryPolicy", "host_selection_retry_max_attempts", NULL, NULL},
    {"envoy.config.route.v3.RetryPolicy", "retriable_headers", NULL, NULL},
    {"envoy.config.route.v3.RetryPolicy", "retriable_request_headers", NULL, NULL},
    {"envoy.config.route.v3.RetryPolicy", "per_try_idle_timeout", NULL, NULL},
    {"envoy.config.route.v3.RouteAction.HashPolicy.Cookie", "ttl", NULL, "tern hashes an existing cookie, it does not set one"},
    {"envoy.config.cluster.v3.Cluster", "upstream_bind_config", NULL, NULL},
    {"envoy.config.cluster.v3.Cluster", "close_connections_on_host_health_failure", NULL, NULL},
    {"envoy.config.cluster.v3.Cluster", "ignore_health_on_host_removal", NULL, NULL},
    {"envoy.config.cluster.v3.Cluster.CommonLbConfig", "healthy_panic_threshold", NULL, NULL},
    {"envoy.config.cluster.v3.Cluster.RingHashLbConfig", "hash_function", NULL, "only XX_HASH is"},
    {"envoy.config.cluster.v3.UpstreamConnectionOptions", "tcp_keepalive", NULL, NULL},
    {"envoy.config.cluster.v3.CircuitBreakers", "per_host_thresholds", NULL, NULL},
    {"envoy.config.cluster.v3.CircuitBreakers.Thresholds", "retry_budget", NULL, NULL},
    {"envoy.config.cluster.v3.CircuitBreakers.Thresholds", "max_connection_pools", NULL, NULL},
    {"envoy.config.cluster.v3.OutlierDetection", "enforcing_success_rate", NULL, "success-rate ejection is not implemented"},
    {"envoy.config.cluster.v3.OutlierDetection", "success_rate_minimum_hosts", NULL, "success-rate ejection is not implemented"},
    {"envoy.config.cluster.v3.OutlierDetection", "success_rate_request_volume", NULL, "success-rate ejection is not implemented"},
    {"envoy.config.cluster.v3.OutlierDetection", "success_rate_stdev_factor", NULL, "success-rate ejection is not implemented"},
    {"envoy.config.cluster.v3.OutlierDetection", "split_external_local_origin_errors", NULL, NULL},
    {"envoy.config.cluster.v3.OutlierDetection", "consecutive_local_origin_failure", NULL, NULL},
    {"envoy.config.cluster.v3.OutlierDetection", "enforcing_consecutive_local_origin_failure", NULL, NULL},
    {"envoy.config.core.v3.HealthCheck", "alt_port", NULL, NULL},
    {"envoy.config.core.v3.HealthCheck", "unhealthy_interval", NULL, NULL},
    {"envoy.config.core.v3.HealthCheck", "unhealthy_edge_interval", NULL, NULL},
    {"envoy.config.core.v3.HealthCheck", "healthy_edge_interval", NULL, NULL},
    {"envoy.config.core.v3.HealthCheck", "event_log_path", NULL, NULL},
    {"envoy.config.core.v3.HealthCheck.HttpHealthCheck", "receive", NULL, NULL},
    {"envoy.config.core.v3.HealthCheck.HttpHealthCheck", "retriable_statuses", NULL, NULL},
    {"envoy.config.core.v3.HealthCheck.GrpcHealthCheck", "initial_metadata", NULL, NULL},
    {"envoy.config.core.v3.HealthCheck.TcpHealthCheck", "receive", NULL, NULL},
    {"envoy.config.core.v3.HealthCheck.Payload", "binary", NULL, "use text (hex)"},
    {"envoy.config.endpoint.v3.ClusterLoadAssignment.Policy", "drop_overloads", NULL, NULL},
    {"envoy.config.endpoint.v3.ClusterLoadAssignment.Policy", "overprovisioning_factor", NULL, NULL},
    {"envoy.config.endpoint.v3.ClusterLoadAssignment.Policy", "endpoint_stale_after", NULL, NULL},
    {"envoy.config.endpoint.v3.Endpoint.HealthCheckConfig", "port_value", NULL, NULL},
    {"envoy.config.endpoint.v3.Endpoint.HealthCheckConfig", "hostname", NULL, NULL},
    {"envoy.config.endpoint.v3.Endpoint.HealthCheckConfig", "address", NULL, NULL},
    {"envoy.config.endpoint.v3.Endpoint.HealthCheckConfig", "disable_active_health_check", NULL, NULL},
    {"envoy.config.core.v3.HeaderValue", "raw_value", NULL, "use value"},
    {"envoy.config.core.v3.SocketAddress", "ipv4_compat", NULL, NULL},
    {"envoy.config.core.v3.SubstitutionFormatString", "omit_empty_values", NULL, NULL},
    {"envoy.config.core.v3.ApiConfigSource", "rate_limit_settings", NULL, NULL},
    {"envoy.extensions.filters.http.router.v3.Router", "upstream_log", NULL, NULL},
    {"envoy.extensions.filters.http.router.v3.Router", "strict_check_headers", NULL, NULL},
    {"envoy.extensions.filters.http.health_check.v3.HealthCheck", "cache_time", NULL, NULL},
    {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "use_downstream_protocol_config", NULL, "use explicit_http_config"},
    {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "auto_config", NULL, "use explicit_http_config"},
};

static const void *at(const ProtobufCMessage *m, unsigned offset)
{
    return (const char *)m + offset;
}

static bool is_wrapper(const ProtobufCMessageDescriptor *d)
{
    size_t n = strlen(d->name);
    return strncmp(d->name, "google.protobuf.", 16) == 0 && n > 5 && strcmp(d->name + n - 5, "Value") == 0 &&
           d->n_fields == 1;
}

static bool scalar_set(const ProtobufCFieldDescriptor *f, const void *v, const char *ok)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)v;
        return s && *s && !(ok && strcmp(s, ok) == 0);
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)v)->len > 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)v != 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)v != 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)v != 0;
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)v != 0;
    case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: {
        int32_t x = *(const int32_t *)v;
        return x != 0 && !(ok && x == (int32_t)strtol(ok, NULL, 10));
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)v;
        if (sub == NULL)
            return false;
        if (is_wrapper(sub->descriptor))
            return scalar_set(&sub->descriptor->fields[0], at(sub, sub->descriptor->fields[0].offset), ok);
        return true;
    }
    }
    return false;
}

/* Whether field f of m holds a value (a oneof member only when chosen). */
static bool field_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const char *ok)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)at(m, f->quantifier_offset) > 0;
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(const uint32_t *)at(m, f->quantifier_offset) != f->id)
        return false;
    return scalar_set(f, at(m, f->offset), ok);
}

static const struct unacted *unacted_of(const char *message, const char *field)
{
    for (size_t i = 0; i < sizeof(unacted) / sizeof(unacted[0]); i++)
        if (strcmp(unacted[i].message, message) == 0 && strcmp(unacted[i].field, field) == 0)
            return &unacted[i];
    return NULL;
}

static bool has_unacted(const ProtobufCMessageDescriptor *d)
{
    for (size_t i = 0; i < sizeof(unacted) / sizeof(unacted[0]); i++)
        if (strcmp(unacted[i].message, d->name) == 0)
            return true;
    return false;
}

static int check(const ProtobufCMessage *m, struct tn_err *err, unsigned depth);

static int check_value(const ProtobufCFieldDescriptor *f, const ProtobufCMessage *sub, struct tn_err *err,
                       unsigned depth)
{
    if (sub == NULL)
        return 0;
    if (strcmp(sub->descriptor->name, "google.protobuf.Any") != 0)
        return check(sub, err, depth + 1);
    struct tn_err ignore;
    tn_err_init(&ignore);
    ProtobufCMessage *inner = tn_any_unpack(sub, NULL, &ignore);
    if (inner == NULL)
        return 0; /* an unknown type is the compiler's to refuse, with its own words */
    int rc = check(inner, err, depth + 1);
    protobuf_c_message_free_unpacked(inner, NULL);
    return rc;
}

static int check_field(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, struct tn_err *err,
                       unsigned depth)
{
    size_t mark = tn_err_push(err, ".%s", f->name);
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
        if (check_value(f, *(const ProtobufCMessage *const *)at(m, f->offset), err, depth))
            return -1;
        tn_err_pop(err, mark);
        return 0;
    }
    size_t n = *(const size_t *)at(m, f->quantifier_offset);
    const ProtobufCMessage *const *v = *(const ProtobufCMessage *const *const *)at(m, f->offset);
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    bool map = strlen(ed->name) > 5 && strcmp(ed->name + strlen(ed->name) - 5, "Entry") == 0 && ed->n_fields == 2;
    for (size_t i = 0; i < n; i++) {
        size_t m2 = map && ed->fields[0].type == PROTOBUF_C_TYPE_STRING
                        ? tn_err_push(err, "[\"%s\"]", *(const char *const *)at(v[i], ed->fields[0].offset))
                        : tn_err_push(err, "[%zu]", i);
        if (check_value(f, v[i], err, depth))
            return -1;
        tn_err_pop(err, m2);
    }
    tn_err_pop(err, mark);
    return 0;
}

static int check(const ProtobufCMessage *m, struct tn_err *err, unsigned depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (depth > 64 || strncmp(d->name, "google.protobuf.", 16) == 0)
        return 0;
    bool listed = has_unacted(d);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const struct unacted *u = listed ? unacted_of(d->name, f->name) : NULL;
        if (u != NULL && field_set(m, f, u->ok)) {
            tn_err_push(err, ".%s", f->name);
            return tn_err_fail(err, "%s.%s is not supported by tern%s%s%s", d->name, f->name, u->why ? " (" : "",
                               u->why ? u->why : "", u->why ? ")" : "");
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && field_set(m, f, NULL) && check_field(m, f, err, depth))
            return -1;
    }
    return 0;
}

int tn_unsupported_check(const ProtobufCMessage *m, struct tn_err *err)
{
    return m == NULL ? 0 : check(m, err, 0);
}
