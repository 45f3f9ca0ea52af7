#include "dataplane/server/source.h"

#include <string.h>

typedef Envoy__Config__Core__V3__ApiConfigSource pb_api_source;

static uint64_t ms(const Google__Protobuf__Duration *d, uint64_t dflt)
{
    if (d == NULL)
        return dflt;
    if (d->seconds < 0 || d->nanos < 0)
        return 0;
    return (uint64_t)d->seconds * 1000 + (uint64_t)d->nanos / 1000000;
}

int tn_api_source_compile(struct tn_pool *pool, const pb_api_source *api, bool aggregated, struct tn_source *out,
                          struct tn_err *err)
{
    size_t mark = err->path_len;
    switch (api->api_type) {
    case ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__AGGREGATED_GRPC:
        if (!aggregated)
            goto bad_type;
        /* fall through */
    case ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__GRPC:
        out->kind = TN_SOURCE_GRPC;
        break;
    case ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__AGGREGATED_DELTA_GRPC:
        if (!aggregated)
            goto bad_type;
        /* fall through */
    case ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__DELTA_GRPC:
        out->kind = TN_SOURCE_DELTA_GRPC;
        break;
    default:
    bad_type:
        tn_err_push(err, ".api_type");
        return tn_err_fail(err, "GRPC or DELTA_GRPC is required%s", aggregated ? " for ADS" : " (REST is not supported)");
    }
    if (api->transport_api_version != ENVOY__CONFIG__CORE__V3__API_VERSION__V3) {
        tn_err_push(err, ".transport_api_version");
        return tn_err_fail(err, "must be V3");
    }
    if (api->n_grpc_services != 1) {
        tn_err_push(err, ".grpc_services");
        return tn_err_fail(err, "exactly one is required, got %zu", api->n_grpc_services);
    }
    out->node_first_only = api->set_node_on_first_message_only;
    const Envoy__Config__Core__V3__GrpcService *g = api->grpc_services[0];
    tn_err_push(err, ".grpc_services[0]");
    if (g->target_specifier_case == ENVOY__CONFIG__CORE__V3__GRPC_SERVICE__TARGET_SPECIFIER_ENVOY_GRPC) {
        if (*g->envoy_grpc->cluster_name == '\0') {
            tn_err_push(err, ".envoy_grpc.cluster_name");
            return tn_err_fail(err, "must not be empty");
        }
        out->cluster = tn_pool_strdup(pool, g->envoy_grpc->cluster_name);
    } else if (g->target_specifier_case == ENVOY__CONFIG__CORE__V3__GRPC_SERVICE__TARGET_SPECIFIER_GOOGLE_GRPC) {
        if (*g->google_grpc->target_uri == '\0') {
            tn_err_push(err, ".google_grpc.target_uri");
            return tn_err_fail(err, "must not be empty");
        }
        out->target = tn_pool_strdup(pool, g->google_grpc->target_uri);
    } else {
        return tn_err_fail(err, "one of envoy_grpc, google_grpc is required");
    }
    tn_err_pop(err, mark);
    return 0;
}

int tn_source_compile(struct tn_pool *pool, const Envoy__Config__Core__V3__ConfigSource *pb, struct tn_source *out,
                      struct tn_err *err)
{
    size_t mark = err->path_len;
    *out = (struct tn_source){.fetch_timeout_ms = ms(pb->initial_fetch_timeout, 15000)};
    switch (pb->config_source_specifier_case) {
    case ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_ADS:
        out->kind = TN_SOURCE_ADS;
        return 0;
    case ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_API_CONFIG_SOURCE:
        tn_err_push(err, ".api_config_source");
        if (tn_api_source_compile(pool, pb->api_config_source, false, out, err))
            return -1;
        break;
    case ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_PATH_CONFIG_SOURCE: {
        const Envoy__Config__Core__V3__PathConfigSource *p = pb->path_config_source;
        tn_err_push(err, ".path_config_source.path");
        if (*p->path == '\0')
            return tn_err_fail(err, "must not be empty");
        out->kind = TN_SOURCE_PATH;
        out->path = tn_pool_strdup(pool, p->path);
        if (p->watched_directory && *p->watched_directory->path)
            out->watched_dir = tn_pool_strdup(pool, p->watched_directory->path);
        break;
    }
    case ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_PATH:
        tn_err_push(err, ".path");
        if (*pb->path == '\0')
            return tn_err_fail(err, "must not be empty");
        out->kind = TN_SOURCE_PATH;
        out->path = tn_pool_strdup(pool, pb->path);
        break;
    default:
        return tn_err_fail(err, "one of ads, api_config_source, path_config_source is required");
    }
    tn_err_pop(err, mark);
    return 0;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

bool tn_source_same(const struct tn_source *a, const struct tn_source *b)
{
    return a->kind == b->kind && same_str(a->cluster, b->cluster) && same_str(a->target, b->target) &&
           same_str(a->path, b->path);
}
