#include "dataplane/server/listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb-c.h"
#include "api/pb/types.h"
#include "api/pb/unsupported.h"

typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager pb_hcm;
typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpFilter pb_http_filter;

#define HCM_NAME "envoy.filters.network.http_connection_manager"

static uint64_t ms(const Google__Protobuf__Duration *d, uint64_t dflt)
{
    if (d == NULL)
        return dflt;
    if (d->seconds < 0 || d->nanos < 0)
        return 0;
    return (uint64_t)d->seconds * 1000 + (uint64_t)d->nanos / 1000000;
}

static int compile_http_filters(struct tn_listener *l, const pb_hcm *pb, struct tn_err *err)
{
    struct tn_hcm *h = &l->hcm;
    if (pb->n_http_filters == 0)
        return tn_err_fail(err, "http_filters: at least the router filter is required");
    h->filters = tn_pool_alloc(&l->pool, pb->n_http_filters * sizeof(*h->filters));
    for (size_t i = 0; i < pb->n_http_filters; i++) {
        const pb_http_filter *f = pb->http_filters[i];
        struct tn_http_filter *o = &h->filters[h->n_filters]; /* skipped optional filters leave no gap */
        size_t mark = tn_err_push(err, ".http_filters[%zu]", i);
        ProtobufCMessage *cfg = NULL;

        if (f->config_type_case == ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_FILTER__CONFIG_TYPE_TYPED_CONFIG) {
            const char *url = f->typed_config->type_url;
            o->factory = tn_filter_factory_by_type(url);
            if (o->factory == NULL && !f->is_optional) {
                tn_err_push(err, ".typed_config");
                return tn_err_fail(err, "unsupported extension %s (%s)", f->name, url);
            }
            if (o->factory != NULL) {
                tn_err_push(err, ".typed_config");
                const ProtobufCMessageDescriptor *want = tn_filter_factory_config_type(o->factory, url);
                cfg = tn_any_unpack((const ProtobufCMessage *)f->typed_config, want ? want : o->factory->config_type,
                                    err);
                if (cfg == NULL)
                    return -1;
            }
        } else {
            o->factory = tn_filter_factory_by_name(f->name);
            if (o->factory == NULL && !f->is_optional)
                return tn_err_fail(err, "no HTTP filter named '%s' (give a typed_config)", f->name);
            if (o->factory != NULL) {
                cfg = protobuf_c_message_unpack(o->factory->config_type, NULL, 0, (const uint8_t *)"");
                if (cfg == NULL)
                    return tn_err_fail(err, "out of memory");
            }
        }
        if (o->factory == NULL) { /* optional and unknown: skipped, as Envoy */
            tn_err_pop(err, mark);
            continue;
        }
        o->name = tn_pool_strdup(&l->pool, f->name);
        o->config = o->factory->create_config(cfg, err);
        protobuf_c_message_free_unpacked(cfg, NULL);
        if (o->config == NULL)
            return -1;
        h->n_filters++;
        tn_err_pop(err, mark);
        tn_err_push(err, ".http_filters[%zu]", i);
        bool last = i + 1 == pb->n_http_filters;
        if (o->factory->terminal && !last)
            return tn_err_fail(err, "terminal filter '%s' must be the last filter in the http filter chain", f->name);
        if (!o->factory->terminal && last)
            return tn_err_fail(err, "non-terminal filter '%s' is the last filter in the http filter chain", f->name);
        tn_err_pop(err, mark);
    }
    return 0;
}

static int compile_hcm(struct tn_listener *l, const pb_hcm *pb, struct tn_err *err)
{
    struct tn_hcm *h = &l->hcm;
    if (*pb->stat_prefix == '\0')
        return tn_err_fail(err, "stat_prefix: must not be empty");
    h->stat_prefix = tn_pool_strdup(&l->pool, pb->stat_prefix);
    if (pb->codec_type == ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__CODEC_TYPE__HTTP3)
        return tn_err_fail(err, "codec_type: HTTP3 is not supported");
    h->codec = (enum tn_codec)pb->codec_type;

    size_t mark = err->path_len;
    switch (pb->route_specifier_case) {
    case ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__ROUTE_SPECIFIER_ROUTE_CONFIG:
        tn_err_push(err, ".route_config");
        h->routes = tn_route_table_compile(pb->route_config, err);
        if (h->routes == NULL)
            return -1;
        tn_err_pop(err, mark);
        break;
    case ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__ROUTE_SPECIFIER_RDS:
        if (*pb->rds->route_config_name == '\0') {
            tn_err_push(err, ".rds.route_config_name");
            return tn_err_fail(err, "must not be empty");
        }
        if (pb->rds->config_source == NULL) {
            tn_err_push(err, ".rds.config_source");
            return tn_err_fail(err, "required");
        }
        tn_err_push(err, ".rds.config_source");
        if (tn_source_compile(&l->pool, pb->rds->config_source, &h->rds_source, err))
            return -1;
        tn_err_pop(err, mark);
        h->rds_name = tn_pool_strdup(&l->pool, pb->rds->route_config_name);
        break;
    default:
        return tn_err_fail(err, "one of route_config, rds is required");
    }
    if (compile_http_filters(l, pb, err))
        return -1;
    if (tn_access_logs_compile(&l->pool, pb->access_log, pb->n_access_log, &h->access_logs, "access_log", err))
        return -1;
    h->n_access_logs = pb->n_access_log;

    h->server_name = tn_pool_strdup(&l->pool, *pb->server_name ? pb->server_name : "tern");
    h->server_header_transformation = pb->server_header_transformation;
    h->max_request_headers_kb = pb->max_request_headers_kb ? pb->max_request_headers_kb->value : 60;
    if (h->max_request_headers_kb == 0 || h->max_request_headers_kb > 8192) {
        tn_err_push(err, ".max_request_headers_kb");
        return tn_err_fail(err, "must be in [1, 8192]");
    }
    h->stream_idle_timeout_ms = ms(pb->stream_idle_timeout, 300000);
    h->request_timeout_ms = ms(pb->request_timeout, 0);
    h->request_headers_timeout_ms = ms(pb->request_headers_timeout, 0);
    if (pb->n_upgrade_configs) {
        h->upgrades = tn_pool_alloc(&l->pool, pb->n_upgrade_configs * sizeof(*h->upgrades));
        for (size_t i = 0; i < pb->n_upgrade_configs; i++) {
            const Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager__UpgradeConfig
                *u = pb->upgrade_configs[i];
            if (u->n_filters) {
                tn_err_push(err, ".upgrade_configs[%zu].filters", i);
                return tn_err_fail(err, "a filter chain of its own for an upgrade is not supported by tern yet");
            }
            if (u->upgrade_type[0] == '\0' || strcasecmp(u->upgrade_type, "connect") == 0) {
                tn_err_push(err, ".upgrade_configs[%zu].upgrade_type", i);
                return tn_err_fail(err, u->upgrade_type[0] ? "CONNECT is not supported by tern yet" : "must not be empty");
            }
            char *t = tn_pool_strdup(&l->pool, u->upgrade_type);
            for (char *q = t; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            h->upgrades[i] = (struct tn_upgrade){.type = t, .enabled = u->enabled == NULL || u->enabled->value};
        }
        h->n_upgrades = pb->n_upgrade_configs;
    }
    /* Envoy's defaults for the downstream HTTP/2 codec's SETTINGS */
    h->h2.max_concurrent_streams = 2147483647u;
    h->h2.initial_stream_window_size = 268435456u;
    h->h2.initial_connection_window_size = 268435456u;
    h->h2.hpack_table_size = 4096;
    if (pb->http2_protocol_options) {
        /* allow_connect is refused with the fields tern lacks (api/pb/unsupported.c) */
        const Envoy__Config__Core__V3__Http2ProtocolOptions *o = pb->http2_protocol_options;
        size_t hmark = tn_err_push(err, ".http2_protocol_options");
        if (o->max_concurrent_streams)
            h->h2.max_concurrent_streams = o->max_concurrent_streams->value;
        if (o->initial_stream_window_size)
            h->h2.initial_stream_window_size = o->initial_stream_window_size->value;
        if (o->initial_connection_window_size)
            h->h2.initial_connection_window_size = o->initial_connection_window_size->value;
        if (o->hpack_table_size)
            h->h2.hpack_table_size = o->hpack_table_size->value;
        if (h->h2.max_concurrent_streams < 1 || h->h2.max_concurrent_streams > 2147483647u) {
            tn_err_push(err, ".max_concurrent_streams");
            return tn_err_fail(err, "must be in 1..2147483647");
        }
        if (h->h2.initial_stream_window_size < 65535 || h->h2.initial_stream_window_size > 2147483647u) {
            tn_err_push(err, ".initial_stream_window_size");
            return tn_err_fail(err, "must be in 65535..2147483647");
        }
        if (h->h2.initial_connection_window_size < 65535 || h->h2.initial_connection_window_size > 2147483647u) {
            tn_err_push(err, ".initial_connection_window_size");
            return tn_err_fail(err, "must be in 65535..2147483647");
        }
        tn_err_pop(err, hmark);
    }
    h->allow_absolute_url = true;
    if (pb->http_protocol_options) {
        const Envoy__Config__Core__V3__Http1ProtocolOptions *o = pb->http_protocol_options;
        h->accept_http_10 = o->accept_http_10;
        if (o->default_host_for_http_10[0])
            h->default_host_for_http_10 = tn_pool_strdup(&l->pool, o->default_host_for_http_10);
        h->allow_absolute_url = o->allow_absolute_url == NULL || o->allow_absolute_url->value;
        h->allow_chunked_length = o->allow_chunked_length;
        if (o->enable_trailers) {
            tn_err_push(err, ".http_protocol_options.enable_trailers");
            return tn_err_fail(err, "not supported by tern yet (HTTP/1.1 trailers are dropped)");
        }
    }
    h->idle_timeout_ms = 3600000;
    h->max_headers_count = 100;
    if (pb->common_http_protocol_options) {
        const Envoy__Config__Core__V3__HttpProtocolOptions *o = pb->common_http_protocol_options;
        h->idle_timeout_ms = ms(o->idle_timeout, 3600000);
        if (o->max_headers_count) {
            h->max_headers_count = o->max_headers_count->value;
            if (h->max_headers_count == 0) {
                tn_err_push(err, ".common_http_protocol_options.max_headers_count");
                return tn_err_fail(err, "must be at least 1");
            }
        }
        h->max_requests_per_connection = o->max_requests_per_connection ? o->max_requests_per_connection->value : 0;
        h->headers_with_underscores_action = o->headers_with_underscores_action;
        if (o->max_connection_duration) {
            tn_err_push(err, ".common_http_protocol_options.max_connection_duration");
            return tn_err_fail(err, "not supported by tern yet");
        }
        if (o->max_stream_duration) {
            tn_err_push(err, ".common_http_protocol_options.max_stream_duration");
            return tn_err_fail(err, "not supported by tern yet");
        }
    }
    h->drain_timeout_ms = ms(pb->drain_timeout, 5000);
    h->delayed_close_timeout_ms = ms(pb->delayed_close_timeout, 1000);
    h->use_remote_address = pb->use_remote_address && pb->use_remote_address->value;
    h->skip_xff_append = pb->skip_xff_append;
    h->xff_num_trusted_hops = pb->xff_num_trusted_hops;
    h->generate_request_id = pb->generate_request_id ? pb->generate_request_id->value : true;
    h->preserve_external_request_id = pb->preserve_external_request_id;
    h->always_set_request_id_in_response = pb->always_set_request_id_in_response;
    h->normalize_path = pb->normalize_path && pb->normalize_path->value;
    h->merge_slashes = pb->merge_slashes;
    h->via = *pb->via ? tn_pool_strdup(&l->pool, pb->via) : NULL;
    return 0;
}

static int compile_chain(struct tn_listener *l, const Envoy__Config__Listener__V3__FilterChain *fc, struct tn_err *err)
{
    if (fc->transport_socket != NULL) {
        tn_err_push(err, ".transport_socket");
        return tn_err_fail(err, "TLS is not supported by tern yet");
    }
    if (fc->n_filters != 1) {
        tn_err_push(err, ".filters");
        return tn_err_fail(err, "exactly one network filter (%s) is supported, got %zu", HCM_NAME, fc->n_filters);
    }
    const Envoy__Config__Listener__V3__Filter *f = fc->filters[0];
    tn_err_push(err, ".filters[0]");
    if (f->config_type_case != ENVOY__CONFIG__LISTENER__V3__FILTER__CONFIG_TYPE_TYPED_CONFIG)
        return tn_err_fail(err, "typed_config: required");
    tn_err_push(err, ".typed_config");
    if (tn_type_find(f->typed_config->type_url) !=
        &envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager__descriptor)
        return tn_err_fail(err, "unsupported extension %s (%s): tern's only network filter is %s", f->name,
                           f->typed_config->type_url, HCM_NAME);
    pb_hcm *hcm = (pb_hcm *)tn_any_unpack((const ProtobufCMessage *)f->typed_config, NULL, err);
    if (hcm == NULL)
        return -1;
    int rc = compile_hcm(l, hcm, err);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)hcm, NULL);
    return rc;
}

/* The address as Envoy names listener stats: "127.0.0.1_10000". */
static const char *address_name(struct tn_listener *l)
{
    char *s = tn_pool_strdup(&l->pool, l->addr.text);
    for (char *p = s; p && *p; p++)
        if (*p == ':')
            *p = '_';
    return s;
}

static int compile_listener(struct tn_listener *l, const tn_pb_listener *pb, bool name_from_address,
                            struct tn_err *err)
{
    size_t mark = err->path_len;
    if (tn_unsupported_check(&pb->base, err)) /* a listener from LDS is not in the bootstrap's walk */
        return -1;
    if (*pb->name == '\0' && !name_from_address) {
        tn_err_push(err, ".name");
        return tn_err_fail(err, "must not be empty (a listener from LDS is known by its name)");
    }
    tn_err_push(err, ".address");
    if (tn_address_from_pb(pb->address, true, &l->addr, err))
        return -1;
    l->addr.host = tn_pool_strdup(&l->pool, l->addr.host);
    tn_err_pop(err, mark);
    l->name_generated = *pb->name == '\0';
    l->name = l->name_generated ? address_name(l) : tn_pool_strdup(&l->pool, pb->name);
    l->stat_prefix = *pb->stat_prefix ? tn_pool_strdup(&l->pool, pb->stat_prefix) : address_name(l);
    l->per_connection_buffer_limit =
        pb->per_connection_buffer_limit_bytes ? pb->per_connection_buffer_limit_bytes->value : 1024 * 1024;
    l->reuse_port = pb->enable_reuse_port ? pb->enable_reuse_port->value : true;
    if (pb->n_listener_filters > 0) {
        tn_err_push(err, ".listener_filters");
        return tn_err_fail(err, "listener filters are not supported by tern yet");
    }
    const Envoy__Config__Listener__V3__FilterChain *fc = pb->default_filter_chain;
    if (pb->n_filter_chains > 1 || (pb->n_filter_chains == 1 && fc != NULL)) {
        tn_err_push(err, ".filter_chains");
        return tn_err_fail(err, "tern serves one filter chain per listener, got %zu",
                           pb->n_filter_chains + (fc != NULL));
    }
    const char *chain = pb->n_filter_chains == 1 ? ".filter_chains[0]" : ".default_filter_chain";
    if (pb->n_filter_chains == 1)
        fc = pb->filter_chains[0];
    if (fc != NULL) {
        char path[128];
        tn_err_push(err, "%s", chain);
        snprintf(path, sizeof(path), "%s.filters[0].typed_config.route_config", chain);
        l->route_config_path = tn_pool_strdup(&l->pool, path);
        snprintf(path, sizeof(path), "%s.filters[0].typed_config.rds.config_source", chain);
        l->rds_source_path = tn_pool_strdup(&l->pool, path);
    } else {
        return tn_err_fail(err, "filter_chains: at least one filter chain is required");
    }
    if (compile_chain(l, fc, err))
        return -1;
    tn_err_pop(err, mark);
    return 0;
}

static struct tn_listener *compile(const tn_pb_listener *pb, bool name_from_address, struct tn_err *err)
{
    struct tn_listener *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    l->refcnt = 1;
    tn_pool_init(&l->pool);
    if (compile_listener(l, pb, name_from_address, err)) {
        tn_listener_unref(l);
        return NULL;
    }
    return l;
}

struct tn_listener *tn_listener_compile(const tn_pb_listener *pb, struct tn_err *err)
{
    return compile(pb, false, err);
}

struct tn_listener *tn_listener_compile_static(const tn_pb_listener *pb, struct tn_err *err)
{
    return compile(pb, true, err);
}

struct tn_listener *tn_listener_ref(struct tn_listener *l)
{
    l->refcnt++;
    return l;
}

void tn_listener_unref(struct tn_listener *l)
{
    if (l == NULL || --l->refcnt > 0)
        return;
    for (size_t i = 0; i < l->hcm.n_filters; i++)
        l->hcm.filters[i].factory->destroy_config(l->hcm.filters[i].config);
    tn_route_table_unref(l->hcm.routes);
    tn_pool_dispose(&l->pool);
    free(l);
}
