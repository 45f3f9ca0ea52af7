#include "dataplane/upstream/cluster.h"

#include <stdlib.h>
#include <string.h>

#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb-c.h"
#include "api/pb/types.h"
#include "api/pb/unsupported.h"

typedef Envoy__Extensions__Upstreams__Http__V3__HttpProtocolOptions pb_http_options;

#define UPSTREAM_HTTP_OPTIONS "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

static uint64_t ms(const Google__Protobuf__Duration *d, uint64_t dflt)
{
    if (d == NULL)
        return dflt;
    if (d->seconds < 0 || d->nanos < 0)
        return 0;
    return (uint64_t)d->seconds * 1000 + (uint64_t)d->nanos / 1000000;
}

#define U32(w, dflt) ((w) ? (w)->value : (dflt))

/* ---- endpoint sets ------------------------------------------------------ */

struct tn_endpoint_set *tn_endpoint_set_compile(const tn_pb_cla *pb, bool need_ip, struct tn_err *err)
{
    struct tn_endpoint_set *s = calloc(1, sizeof(*s));
    size_t total = 0, k = 0;

    if (s == NULL) {
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    s->refcnt = 1;
    tn_pool_init_small(&s->pool);
    for (size_t i = 0; pb && i < pb->n_endpoints; i++)
        total += pb->endpoints[i]->n_lb_endpoints;
    s->endpoints = tn_pool_alloc(&s->pool, total * sizeof(*s->endpoints) + 1);
    for (size_t i = 0; pb && i < pb->n_endpoints; i++) {
        const Envoy__Config__Endpoint__V3__LocalityLbEndpoints *loc = pb->endpoints[i];
        size_t mark = tn_err_push(err, ".endpoints[%zu]", i);
        if (loc->load_balancing_weight && loc->load_balancing_weight->value == 0) {
            tn_err_push(err, ".load_balancing_weight");
            tn_err_fail(err, "must be at least 1");
            goto err;
        }
        for (size_t j = 0; j < loc->n_lb_endpoints; j++) {
            const Envoy__Config__Endpoint__V3__LbEndpoint *lb = loc->lb_endpoints[j];
            struct tn_endpoint *e = &s->endpoints[k];
            size_t m2 = tn_err_push(err, ".lb_endpoints[%zu]", j);
            if (lb->host_identifier_case != ENVOY__CONFIG__ENDPOINT__V3__LB_ENDPOINT__HOST_IDENTIFIER_ENDPOINT) {
                tn_err_fail(err, "endpoint: required (named endpoints are not supported)");
                goto err;
            }
            tn_err_push(err, ".endpoint.address");
            if (tn_address_from_pb(lb->endpoint->address, need_ip, &e->addr, err))
                goto err;
            e->addr.host = tn_pool_strdup(&s->pool, e->addr.host);
            tn_err_pop(err, m2);
            if (lb->load_balancing_weight && lb->load_balancing_weight->value == 0) {
                tn_err_push(err, ".load_balancing_weight");
                tn_err_fail(err, "must be at least 1");
                goto err;
            }
            e->weight = U32(lb->load_balancing_weight, 1);
            e->priority = loc->priority;
            e->locality_weight = U32(loc->load_balancing_weight, 1);
            e->health_status = lb->health_status;
            k++;
            tn_err_pop(err, m2);
        }
        tn_err_pop(err, mark);
    }
    s->n_endpoints = k;
    return s;
err:
    tn_endpoint_set_unref(s);
    return NULL;
}

struct tn_endpoint_set *tn_endpoint_set_ref(struct tn_endpoint_set *s)
{
    s->refcnt++;
    return s;
}

void tn_endpoint_set_unref(struct tn_endpoint_set *s)
{
    if (s == NULL || --s->refcnt > 0)
        return;
    tn_pool_dispose(&s->pool);
    free(s);
}

/* ---- cluster settings --------------------------------------------------- */

/* An enum value as its name: errors name values, never numbers. */
static const char *enum_name(const ProtobufCEnumDescriptor *d, int v)
{
    const ProtobufCEnumValue *e = protobuf_c_enum_descriptor_get_value(d, v);
    return e ? e->name : "(unknown)";
}

static int compile_type(const tn_pb_cluster *pb, struct tn_cluster *c, struct tn_err *err)
{
    switch (pb->type) {
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STATIC:
        c->type = TN_CLUSTER_STATIC;
        break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STRICT_DNS:
        c->type = TN_CLUSTER_STRICT_DNS;
        break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__LOGICAL_DNS:
        c->type = TN_CLUSTER_LOGICAL_DNS;
        break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__EDS:
        c->type = TN_CLUSTER_EDS;
        break;
    default:
        tn_err_push(err, ".type");
        return tn_err_fail(err, "type %s is not supported by tern (STATIC, STRICT_DNS, LOGICAL_DNS, EDS are)",
                           enum_name(&envoy__config__cluster__v3__cluster__discovery_type__descriptor, pb->type));
    }
    switch (pb->lb_policy) {
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__ROUND_ROBIN:
        c->lb = TN_LB_ROUND_ROBIN;
        break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__LEAST_REQUEST:
        c->lb = TN_LB_LEAST_REQUEST;
        break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__RANDOM:
        c->lb = TN_LB_RANDOM;
        break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__RING_HASH:
        c->lb = TN_LB_RING_HASH;
        break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__MAGLEV:
        c->lb = TN_LB_MAGLEV;
        break;
    default:
        tn_err_push(err, ".lb_policy");
        return tn_err_fail(err, "lb_policy %s is not supported by tern (ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH, MAGLEV are)",
                           enum_name(&envoy__config__cluster__v3__cluster__lb_policy__descriptor, pb->lb_policy));
    }
    c->least_request_choices = 2;
    c->ring_min = 1024;
    c->ring_max = 8 * 1024 * 1024;
    c->maglev_table_size = 65537;
    if (pb->lb_config_case == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_CONFIG_LEAST_REQUEST_LB_CONFIG) {
        c->least_request_choices = U32(pb->least_request_lb_config->choice_count, 2);
        if (c->least_request_choices < 2) {
            tn_err_push(err, ".least_request_lb_config.choice_count");
            return tn_err_fail(err, "must be at least 2");
        }
    } else if (pb->lb_config_case == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_CONFIG_RING_HASH_LB_CONFIG) {
        const Envoy__Config__Cluster__V3__Cluster__RingHashLbConfig *r = pb->ring_hash_lb_config;
        c->ring_min = U32(r->minimum_ring_size, 1024);
        c->ring_max = U32(r->maximum_ring_size, 8 * 1024 * 1024);
        if (c->ring_min > c->ring_max || c->ring_max > 8 * 1024 * 1024) {
            tn_err_push(err, ".ring_hash_lb_config");
            return tn_err_fail(err, "minimum_ring_size must not exceed maximum_ring_size (at most 8M)");
        }
    } else if (pb->lb_config_case == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_CONFIG_MAGLEV_LB_CONFIG) {
        c->maglev_table_size = U32(pb->maglev_lb_config->table_size, 65537);
        uint64_t n = c->maglev_table_size;
        int prime = n >= 2;
        for (uint64_t d = 2; prime && d * d <= n; d++)
            prime = n % d != 0;
        if (!prime || n > 5000011) {
            tn_err_push(err, ".maglev_lb_config.table_size");
            return tn_err_fail(err, "must be a prime number no larger than 5000011");
        }
    }
    return 0;
}

/* common_http_protocol_options (the Cluster's own, deprecated, or the
 * HttpProtocolOptions extension's): what tern enforces upstream, and a
 * refusal for what it would otherwise silently ignore. */
static int compile_common_options(const Envoy__Config__Core__V3__HttpProtocolOptions *o, struct tn_cluster *c,
                                  struct tn_err *err)
{
    size_t mark = tn_err_push(err, ".common_http_protocol_options");
    c->idle_timeout_ms = ms(o->idle_timeout, c->idle_timeout_ms);
    c->max_requests_per_connection = U32(o->max_requests_per_connection, c->max_requests_per_connection);
    c->max_headers_count = U32(o->max_headers_count, c->max_headers_count);
    c->max_response_headers_kb = U32(o->max_response_headers_kb, c->max_response_headers_kb);
    if (o->max_headers_count && o->max_headers_count->value < 1) {
        tn_err_push(err, ".max_headers_count");
        return tn_err_fail(err, "must be at least 1");
    }
    if (o->max_response_headers_kb && (o->max_response_headers_kb->value < 1 || o->max_response_headers_kb->value > 8192)) {
        tn_err_push(err, ".max_response_headers_kb");
        return tn_err_fail(err, "must be in 1..8192");
    }
    /* headers_with_underscores_action is about client requests: Envoy
     * ignores it on clusters too */
    if (o->max_connection_duration || o->max_stream_duration)
        return tn_err_fail(err, "max_connection_duration and max_stream_duration are not supported on clusters");
    tn_err_pop(err, mark);
    return 0;
}

/* http2_protocol_options (the Cluster's, deprecated, or explicit_http_config's):
 * the settings tern sends and the streams it opens per connection. */
static int compile_h2_options(const Envoy__Config__Core__V3__Http2ProtocolOptions *o, struct tn_cluster *c,
                              struct tn_err *err)
{
    c->http2 = true;
    c->h2.max_concurrent_streams = U32(o->max_concurrent_streams, c->h2.max_concurrent_streams);
    c->h2.initial_stream_window_size = U32(o->initial_stream_window_size, c->h2.initial_stream_window_size);
    c->h2.initial_connection_window_size = U32(o->initial_connection_window_size, c->h2.initial_connection_window_size);
    c->h2.hpack_table_size = U32(o->hpack_table_size, c->h2.hpack_table_size);
    size_t mark = tn_err_push(err, ".http2_protocol_options");
    if (c->h2.max_concurrent_streams < 1 || c->h2.max_concurrent_streams > 2147483647u) {
        tn_err_push(err, ".max_concurrent_streams");
        return tn_err_fail(err, "must be in 1..2147483647");
    }
    if (c->h2.initial_stream_window_size < 65535 || c->h2.initial_stream_window_size > 2147483647u) {
        tn_err_push(err, ".initial_stream_window_size");
        return tn_err_fail(err, "must be in 65535..2147483647");
    }
    if (c->h2.initial_connection_window_size < 65535 || c->h2.initial_connection_window_size > 2147483647u) {
        tn_err_push(err, ".initial_connection_window_size");
        return tn_err_fail(err, "must be in 65535..2147483647");
    }
    if (o->allow_connect)
        return tn_err_fail(err, "allow_connect is not supported upstream");
    tn_err_pop(err, mark);
    return 0;
}

static int compile_protocol_options(const tn_pb_cluster *pb, struct tn_cluster *c, struct tn_err *err)
{
    c->h2.max_concurrent_streams = 2147483647u;
    c->h2.initial_stream_window_size = 268435456u;
    c->h2.initial_connection_window_size = 268435456u;
    c->h2.hpack_table_size = 4096;
    c->idle_timeout_ms = 3600 * 1000;
    c->max_headers_count = 100;
    c->max_response_headers_kb = 60;
    if (pb->http2_protocol_options && compile_h2_options(pb->http2_protocol_options, c, err))
        return -1;
    if (pb->common_http_protocol_options && compile_common_options(pb->common_http_protocol_options, c, err))
        return -1;
    for (size_t i = 0; i < pb->n_typed_extension_protocol_options; i++) {
        const char *key = pb->typed_extension_protocol_options[i]->key;
        size_t mark = tn_err_push(err, ".typed_extension_protocol_options[\"%s\"]", key);
        if (strcmp(key, UPSTREAM_HTTP_OPTIONS) != 0)
            return tn_err_fail(err, "unsupported extension %s (tern supports only %s)", key, UPSTREAM_HTTP_OPTIONS);
        const ProtobufCMessage *any = (const ProtobufCMessage *)pb->typed_extension_protocol_options[i]->value;
        if (any == NULL)
            return tn_err_fail(err, "value required");
        pb_http_options *o = (pb_http_options *)tn_any_unpack(
            any, &envoy__extensions__upstreams__http__v3__http_protocol_options__descriptor, err);
        if (o == NULL)
            return -1;
        int rc = o->common_http_protocol_options ? compile_common_options(o->common_http_protocol_options, c, err) : 0;
        if (rc == 0 && o->upstream_protocol_options_case ==
                           ENVOY__EXTENSIONS__UPSTREAMS__HTTP__V3__HTTP_PROTOCOL_OPTIONS__UPSTREAM_PROTOCOL_OPTIONS_EXPLICIT_HTTP_CONFIG) {
            const Envoy__Extensions__Upstreams__Http__V3__HttpProtocolOptions__ExplicitHttpConfig *x =
                o->explicit_http_config;
            c->http2 = false;
            if (x->protocol_config_case ==
                ENVOY__EXTENSIONS__UPSTREAMS__HTTP__V3__HTTP_PROTOCOL_OPTIONS__EXPLICIT_HTTP_CONFIG__PROTOCOL_CONFIG_HTTP2_PROTOCOL_OPTIONS) {
                size_t xm = tn_err_push(err, ".explicit_http_config");
                rc = compile_h2_options(x->http2_protocol_options, c, err);
                if (rc == 0)
                    tn_err_pop(err, xm);
            }
        }
        protobuf_c_message_free_unpacked((ProtobufCMessage *)o, NULL);
        if (rc)
            return -1;
        tn_err_pop(err, mark);
    }
    if (pb->max_requests_per_connection)
        c->max_requests_per_connection = pb->max_requests_per_connection->value;
    return 0;
}

static int compile_thresholds(const tn_pb_cluster *pb, struct tn_cluster *c, struct tn_err *err)
{
    for (int p = 0; p < 2; p++) /* Envoy's defaults */
        c->thresholds[p] = (struct tn_thresholds){1024, 1024, 1024, 3};
    if (pb->circuit_breakers == NULL)
        return 0;
    for (size_t i = 0; i < pb->circuit_breakers->n_thresholds; i++) {
        const Envoy__Config__Cluster__V3__CircuitBreakers__Thresholds *t = pb->circuit_breakers->thresholds[i];
        if ((unsigned)t->priority > 1) {
            tn_err_push(err, ".circuit_breakers.thresholds[%zu].priority", i);
            return tn_err_fail(err, "unknown priority %d", t->priority);
        }
        struct tn_thresholds *o = &c->thresholds[t->priority];
        o->max_connections = U32(t->max_connections, 1024);
        o->max_pending_requests = U32(t->max_pending_requests, 1024);
        o->max_requests = U32(t->max_requests, 1024);
        o->max_retries = U32(t->max_retries, 3);
    }
    return 0;
}

static int compile_health_checks(const tn_pb_cluster *pb, struct tn_cluster *c, struct tn_err *err)
{
    c->health_checks = tn_pool_alloc(&c->pool, pb->n_health_checks * sizeof(*c->health_checks) + 1);
    for (size_t i = 0; i < pb->n_health_checks; i++) {
        const Envoy__Config__Core__V3__HealthCheck *h = pb->health_checks[i];
        struct tn_health_check *o = &c->health_checks[i];
        size_t mark = tn_err_push(err, ".health_checks[%zu]", i);
        if (h->timeout == NULL || ms(h->timeout, 0) == 0)
            return tn_err_fail(err, "timeout: required and greater than 0");
        if (h->interval == NULL || ms(h->interval, 0) == 0)
            return tn_err_fail(err, "interval: required and greater than 0");
        if (h->unhealthy_threshold == NULL || h->healthy_threshold == NULL)
            return tn_err_fail(err, "unhealthy_threshold and healthy_threshold are required");
        o->timeout_ms = ms(h->timeout, 0);
        o->interval_ms = ms(h->interval, 0);
        o->unhealthy_threshold = h->unhealthy_threshold->value;
        o->healthy_threshold = h->healthy_threshold->value;
        if (h->health_checker_case == ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_HTTP_HEALTH_CHECK) {
            const Envoy__Config__Core__V3__HealthCheck__HttpHealthCheck *hh = h->http_health_check;
            if (*hh->path == '\0') {
                tn_err_push(err, ".http_health_check.path");
                return tn_err_fail(err, "must not be empty");
            }
            o->path = tn_pool_strdup(&c->pool, hh->path);
            o->host = *hh->host ? tn_pool_strdup(&c->pool, hh->host) : NULL;
            o->expected = tn_pool_alloc(&c->pool, (hh->n_expected_statuses + 1) * sizeof(*o->expected));
            for (size_t j = 0; j < hh->n_expected_statuses; j++) {
                int64_t s = hh->expected_statuses[j]->start, e = hh->expected_statuses[j]->end;
                if (s < 100 || e > 600 || s >= e) {
                    tn_err_push(err, ".http_health_check.expected_statuses[%zu]", j);
                    return tn_err_fail(err, "must be a range within [100, 600)");
                }
                o->expected[j][0] = s;
                o->expected[j][1] = e;
            }
            o->n_expected = hh->n_expected_statuses;
            if (o->n_expected == 0) {
                o->expected[0][0] = 200;
                o->expected[0][1] = 300;
                o->n_expected = 1;
            }
            if (hh->codec_client_type == ENVOY__TYPE__V3__CODEC_CLIENT_TYPE__HTTP3) {
                tn_err_push(err, ".http_health_check.codec_client_type");
                return tn_err_fail(err, "HTTP3 is not supported by tern (HTTP1 and HTTP2 are)");
            }
            o->h2 = hh->codec_client_type == ENVOY__TYPE__V3__CODEC_CLIENT_TYPE__HTTP2;
        } else if (h->health_checker_case == ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_GRPC_HEALTH_CHECK) {
            const Envoy__Config__Core__V3__HealthCheck__GrpcHealthCheck *g = h->grpc_health_check;
            o->h2 = o->grpc = true;
            o->path = "/grpc.health.v1.Health/Check";
            o->service_name = tn_pool_strdup(&c->pool, g->service_name);
            o->authority = *g->authority ? tn_pool_strdup(&c->pool, g->authority) : NULL;
        } else if (h->health_checker_case != ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_TCP_HEALTH_CHECK) {
            return tn_err_fail(err, "one of http_health_check, tcp_health_check, grpc_health_check is required");
        }
        tn_err_pop(err, mark);
    }
    c->n_health_checks = pb->n_health_checks;
    return 0;
}

static void compile_outlier(const tn_pb_cluster *pb, struct tn_cluster *c)
{
    const Envoy__Config__Cluster__V3__OutlierDetection *o = pb->outlier_detection;
    if (o == NULL)
        return;
    c->outlier.enabled = true;
    c->outlier.consecutive_5xx = U32(o->consecutive_5xx, 5);
    c->outlier.consecutive_gateway_failure = U32(o->consecutive_gateway_failure, 5);
    c->outlier.enforcing_consecutive_5xx = U32(o->enforcing_consecutive_5xx, 100);
    c->outlier.enforcing_consecutive_gateway_failure = U32(o->enforcing_consecutive_gateway_failure, 0);
    c->outlier.interval_ms = ms(o->interval, 10000);
    c->outlier.base_ejection_time_ms = ms(o->base_ejection_time, 30000);
    c->outlier.max_ejection_time_ms = ms(o->max_ejection_time, 300000);
    c->outlier.max_ejection_percent = U32(o->max_ejection_percent, 10);
}

/* An EDS cluster's source of endpoints. */
static int compile_eds(const tn_pb_cluster *pb, struct tn_cluster *c, struct tn_err *err)
{
    const Envoy__Config__Cluster__V3__Cluster__EdsClusterConfig *e = pb->eds_cluster_config;
    size_t mark = tn_err_push(err, ".eds_cluster_config");
    if (e == NULL)
        return tn_err_fail(err, "an EDS cluster needs eds_cluster_config with eds_config: {ads: {}}");
    if (*e->service_name)
        c->eds_service_name = tn_pool_strdup(&c->pool, e->service_name);
    tn_err_push(err, ".eds_config");
    if (e->eds_config == NULL)
        return tn_err_fail(err, "required");
    if (tn_source_compile(&c->pool, e->eds_config, &c->eds_source, err))
        return -1;
    tn_err_pop(err, mark);
    return 0;
}

struct tn_cluster *tn_cluster_compile(const tn_pb_cluster *pb, struct tn_err *err)
{
    struct tn_cluster *c = calloc(1, sizeof(*c));
    size_t mark = err->path_len;

    if (c == NULL) {
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    c->refcnt = 1;
    tn_pool_init_small(&c->pool);
    if (tn_unsupported_check(&pb->base, err)) /* a cluster from CDS is not in the bootstrap's walk */
        goto err;
    if (*pb->name == '\0') {
        tn_err_push(err, ".name");
        tn_err_fail(err, "must not be empty");
        goto err;
    }
    c->name = tn_pool_strdup(&c->pool, pb->name);
    c->stat_name = *pb->alt_stat_name ? tn_pool_strdup(&c->pool, pb->alt_stat_name) : c->name;
    if (compile_type(pb, c, err))
        goto err;
    if (pb->transport_socket != NULL) {
        tn_err_push(err, ".transport_socket");
        tn_err_fail(err, "upstream TLS is not supported by tern yet");
        goto err;
    }
    c->connect_timeout_ms = ms(pb->connect_timeout, 5000);
    if (c->connect_timeout_ms == 0) {
        tn_err_push(err, ".connect_timeout");
        tn_err_fail(err, "must be greater than 0");
        goto err;
    }
    c->per_connection_buffer_limit = U32(pb->per_connection_buffer_limit_bytes, 1024 * 1024);
    c->dns_refresh_ms = ms(pb->dns_refresh_rate, 5000);
    c->respect_dns_ttl = pb->respect_dns_ttl;
    c->dns_family = pb->dns_lookup_family;
    if (c->type == TN_CLUSTER_EDS && compile_eds(pb, c, err))
        goto err;
    if (compile_protocol_options(pb, c, err) || compile_thresholds(pb, c, err) ||
        compile_health_checks(pb, c, err))
        goto err;
    compile_outlier(pb, c);

    if (c->type == TN_CLUSTER_EDS) {
        if (pb->load_assignment != NULL) {
            tn_err_push(err, ".load_assignment");
            tn_err_fail(err, "an EDS cluster takes its endpoints from EDS, not load_assignment");
            goto err;
        }
    } else {
        tn_err_push(err, ".load_assignment");
        c->endpoints = tn_endpoint_set_compile(pb->load_assignment, c->type == TN_CLUSTER_STATIC, err);
        if (c->endpoints == NULL)
            goto err;
        tn_err_pop(err, mark);
        if (c->type == TN_CLUSTER_LOGICAL_DNS && c->endpoints->n_endpoints != 1) {
            tn_err_push(err, ".load_assignment");
            tn_err_fail(err, "a LOGICAL_DNS cluster must have exactly one endpoint, not %zu", c->endpoints->n_endpoints);
            goto err;
        }
    }
    return c;
err:
    tn_cluster_unref(c);
    return NULL;
}

struct tn_cluster *tn_cluster_ref(struct tn_cluster *c)
{
    c->refcnt++;
    return c;
}

void tn_cluster_unref(struct tn_cluster *c)
{
    if (c == NULL || --c->refcnt > 0)
        return;
    tn_endpoint_set_unref(c->endpoints);
    tn_pool_dispose(&c->pool);
    free(c);
}
