#include "dataplane/config.h"

#include <stdlib.h>
#include <string.h>

#include "dataplane/log.h"

typedef Envoy__Config__Core__V3__ApiConfigSource pb_api_source;
typedef Envoy__Config__Core__V3__ConfigSource pb_config_source;

static int compile_clusters(struct tn_config *c, const Envoy__Config__Bootstrap__V3__Bootstrap__StaticResources *sr,
                            struct tn_err *err)
{
    c->clusters = tn_pool_alloc(&c->pool, sr->n_clusters * sizeof(*c->clusters) + 1);
    for (size_t i = 0; i < sr->n_clusters; i++) {
        size_t mark = tn_err_push(err, ".clusters[%zu]", i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->clusters[j]->name, sr->clusters[i]->name) == 0) {
                tn_err_push(err, ".name");
                return tn_err_fail(err, "duplicate cluster name '%s' (also clusters[%zu])", sr->clusters[i]->name, j);
            }
        c->clusters[i] = tn_cluster_compile(sr->clusters[i], err);
        if (c->clusters[i] == NULL)
            return -1;
        c->n_clusters = i + 1;
        tn_err_pop(err, mark);
    }
    return 0;
}

static int compile_listeners(struct tn_config *c, const Envoy__Config__Bootstrap__V3__Bootstrap__StaticResources *sr,
                             struct tn_err *err)
{
    c->listeners = tn_pool_alloc(&c->pool, sr->n_listeners * sizeof(*c->listeners) + 1);
    for (size_t i = 0; i < sr->n_listeners; i++) {
        size_t mark = tn_err_push(err, ".listeners[%zu]", i);
        struct tn_listener *l = tn_listener_compile(sr->listeners[i], err);
        if (l == NULL)
            return -1;
        c->listeners[i] = l;
        c->n_listeners = i + 1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->listeners[j]->name, l->name) == 0) {
                tn_err_push(err, ".name");
                return tn_err_fail(err, "duplicate listener name '%s' (also listeners[%zu])", l->name, j);
            }
            if (tn_address_same(&c->listeners[j]->addr, &l->addr)) {
                tn_err_push(err, ".address");
                return tn_err_fail(err, "listener '%s' has the same address %s as listener '%s'", l->name, l->addr.text,
                                   c->listeners[j]->name);
            }
        }
        tn_err_push(err, "%s", l->route_config_path);
        if (l->hcm.routes && tn_config_check_routes(c, l->hcm.routes, err))
            return -1;
        tn_err_pop(err, mark);
    }
    return 0;
}

struct check_ctx {
    const struct tn_config *c;
    struct tn_err *err;
};

static int check_cluster(void *arg, const char *cluster, const char *where)
{
    struct check_ctx *x = arg;
    if (tn_config_cluster(x->c, cluster) != NULL)
        return 0;
    size_t mark = tn_err_push(x->err, ".%s", where);
    tn_err_fail(x->err, "unknown cluster '%s'", cluster);
    tn_err_pop(x->err, mark);
    return -1;
}

int tn_config_check_routes(const struct tn_config *c, const struct tn_route_table *t, struct tn_err *err)
{
    struct check_ctx x = {.c = c, .err = err};
    if (!t->validate_clusters || c->cds_dynamic) /* with CDS the cluster may arrive later */
        return 0;
    return tn_route_table_each_cluster(t, check_cluster, &x);
}

struct tn_cluster *tn_config_cluster(const struct tn_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_clusters; i++)
        if (strcmp(c->clusters[i]->name, name) == 0)
            return c->clusters[i];
    return NULL;
}

static int check_source(const pb_config_source *s, const char *field, bool have_ads, struct tn_err *err)
{
    if (s == NULL)
        return 0;
    size_t mark = tn_err_push(err, ".%s", field);
    switch (s->config_source_specifier_case) {
    case ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_ADS:
        if (!have_ads)
            return tn_err_fail(err, "ads: the bootstrap has no dynamic_resources.ads_config");
        break;
    case ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_API_CONFIG_SOURCE:
    case ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_PATH_CONFIG_SOURCE:
    case ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_PATH:
        break;
    default:
        return tn_err_fail(err, "one of ads, api_config_source, path_config_source is required");
    }
    tn_err_pop(err, mark);
    return 0;
}

static int compile_ads(struct tn_config *c, const Envoy__Config__Bootstrap__V3__Bootstrap__DynamicResources *dr,
                       struct tn_err *err)
{
    const pb_api_source *ads = dr->ads_config;
    size_t mark = tn_err_push(err, ".dynamic_resources");
    if (ads != NULL) {
        tn_err_push(err, ".ads_config");
        if (ads->api_type == ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__GRPC ||
            ads->api_type == ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__AGGREGATED_GRPC)
            c->ads_api = TN_XDS_GRPC;
        else if (ads->api_type == ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__DELTA_GRPC ||
                 ads->api_type == ENVOY__CONFIG__CORE__V3__API_CONFIG_SOURCE__API_TYPE__AGGREGATED_DELTA_GRPC)
            c->ads_api = TN_XDS_DELTA_GRPC;
        else
            return tn_err_fail(err, "api_type: GRPC or DELTA_GRPC is required for ADS");
        if (ads->transport_api_version != ENVOY__CONFIG__CORE__V3__API_VERSION__V3)
            return tn_err_fail(err, "transport_api_version: must be V3");
        if (ads->n_grpc_services != 1)
            return tn_err_fail(err, "grpc_services: exactly one is required, got %zu", ads->n_grpc_services);
        const Envoy__Config__Core__V3__GrpcService *g = ads->grpc_services[0];
        tn_err_push(err, ".grpc_services[0]");
        if (g->target_specifier_case == ENVOY__CONFIG__CORE__V3__GRPC_SERVICE__TARGET_SPECIFIER_ENVOY_GRPC) {
            const char *name = g->envoy_grpc->cluster_name;
            c->ads_cluster = tn_pool_strdup(&c->pool, name);
            if (tn_config_cluster(c, name) == NULL) {
                tn_err_push(err, ".envoy_grpc.cluster_name");
                return tn_err_fail(err, "unknown cluster '%s': the control plane's cluster must be in static_resources.clusters", name);
            }
        } else if (g->target_specifier_case == ENVOY__CONFIG__CORE__V3__GRPC_SERVICE__TARGET_SPECIFIER_GOOGLE_GRPC) {
            if (*g->google_grpc->target_uri == '\0') {
                tn_err_push(err, ".google_grpc.target_uri");
                return tn_err_fail(err, "must not be empty");
            }
            c->ads_target = tn_pool_strdup(&c->pool, g->google_grpc->target_uri);
        } else {
            return tn_err_fail(err, "one of envoy_grpc, google_grpc is required");
        }
        tn_err_pop(err, mark + strlen(".dynamic_resources"));
    }
    if (check_source(dr->lds_config, "lds_config", ads != NULL, err) ||
        check_source(dr->cds_config, "cds_config", ads != NULL, err))
        return -1;
    if (dr->cds_config &&
        dr->cds_config->config_source_specifier_case != ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_ADS) {
        tn_err_push(err, ".cds_config");
        return tn_err_fail(err, "only ads: {} is supported as a CDS source (api_config_source and path_config_source "
                                "come later)");
    }
    c->lds_dynamic = dr->lds_config != NULL;
    c->cds_dynamic = dr->cds_config != NULL;
    tn_err_pop(err, mark);
    return 0;
}

/* Gives each route configuration named by an HCM's rds its index, once;
 * they come from the ADS stream, which the bootstrap must have. */
static int index_rds(struct tn_config *c, struct tn_err *err)
{
    c->rds_names = tn_pool_alloc(&c->pool, c->n_listeners * sizeof(*c->rds_names) + 1);
    c->rds_fetch_timeout_ms = tn_pool_alloc(&c->pool, c->n_listeners * sizeof(*c->rds_fetch_timeout_ms) + 1);
    for (size_t i = 0; i < c->n_listeners; i++) {
        struct tn_hcm *h = &c->listeners[i]->hcm;
        if (h->rds_name == NULL)
            continue;
        if (c->ads_api == TN_XDS_NONE) {
            tn_err_push(err, "static_resources.listeners[%zu].filter_chains[0].filters[0].typed_config.rds."
                             "config_source.ads", i);
            return tn_err_fail(err, "the bootstrap has no dynamic_resources.ads_config");
        }
        size_t k = 0;
        while (k < c->n_rds && strcmp(c->rds_names[k], h->rds_name) != 0)
            k++;
        if (k == c->n_rds) {
            c->rds_names[k] = h->rds_name;
            c->rds_fetch_timeout_ms[k] = h->rds_fetch_timeout_ms;
            c->n_rds++;
        }
        h->rds_index = k;
    }
    return 0;
}

static int compile_admin(struct tn_config *c, const Envoy__Config__Bootstrap__V3__Admin *a, struct tn_err *err)
{
    size_t mark = tn_err_push(err, ".admin");
    if (a->address == NULL) { /* Envoy runs without an admin listener then */
        tn_err_pop(err, mark);
        return 0;
    }
    tn_err_push(err, ".address");
    if (tn_address_from_pb(a->address, true, &c->admin_addr, err))
        return -1;
    c->admin_addr.host = tn_pool_strdup(&c->pool, c->admin_addr.host);
    tn_err_pop(err, mark + strlen(".admin"));
    c->has_admin = true;
    if (tn_access_logs_compile(&c->pool, a->access_log, a->n_access_log, &c->admin_logs, "access_log", err))
        return -1;
    c->n_admin_logs = a->n_access_log;
    for (size_t i = 0; i < c->n_listeners; i++)
        if (tn_address_same(&c->listeners[i]->addr, &c->admin_addr)) {
            tn_err_push(err, ".address");
            return tn_err_fail(err, "the admin address %s is also the address of listener '%s'", c->admin_addr.text,
                               c->listeners[i]->name);
        }
    tn_err_pop(err, mark);
    return 0;
}

static int compile(struct tn_config *c, const tn_pb_bootstrap *b, struct tn_err *err)
{
    if (b->layered_runtime != NULL) {
        for (size_t i = 0; i < b->layered_runtime->n_layers; i++)
            if (b->layered_runtime->layers[i]->layer_specifier_case !=
                ENVOY__CONFIG__BOOTSTRAP__V3__RUNTIME_LAYER__LAYER_SPECIFIER_STATIC_LAYER) {
                tn_err_push(err, "layered_runtime.layers[%zu]", i);
                return tn_err_fail(err, "only static_layer runtime layers are accepted");
            }
        if (b->layered_runtime->n_layers)
            TN_LOG(TN_LOG_WARN, config, "layered_runtime: static runtime values are accepted but not applied");
    }
    if (b->static_resources) {
        size_t mark = tn_err_push(err, "static_resources");
        if (compile_clusters(c, b->static_resources, err))
            return -1;
        if (b->dynamic_resources)
            c->cds_dynamic = b->dynamic_resources->cds_config != NULL;
        if (compile_listeners(c, b->static_resources, err))
            return -1;
        tn_err_pop(err, mark);
    }
    if (b->dynamic_resources && compile_ads(c, b->dynamic_resources, err))
        return -1;
    if (index_rds(c, err))
        return -1;
    for (size_t i = 0; i < c->n_clusters; i++)
        if (c->clusters[i]->type == TN_CLUSTER_EDS && c->ads_api == TN_XDS_NONE) {
            tn_err_push(err, "static_resources.clusters[%zu].eds_cluster_config.eds_config.ads", i);
            return tn_err_fail(err, "the bootstrap has no dynamic_resources.ads_config");
        }
    if (b->admin && compile_admin(c, b->admin, err))
        return -1;
    if (c->n_listeners == 0 && !c->lds_dynamic && !c->has_admin)
        return tn_err_fail(err, "the configuration has no listeners, no admin and no dynamic listeners");
    return 0;
}

struct tn_config *tn_config_compile(tn_pb_bootstrap *b, struct tn_err *err)
{
    struct tn_config *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        tn_bootstrap_free(b);
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    c->refcnt = 1;
    tn_pool_init(&c->pool);
    c->bootstrap = b;
    if (compile(c, b, err)) {
        tn_config_unref(c);
        return NULL;
    }
    return c;
}

struct tn_config *tn_config_ref(struct tn_config *c)
{
    c->refcnt++;
    return c;
}

void tn_config_unref(struct tn_config *c)
{
    if (c == NULL || --c->refcnt > 0)
        return;
    for (size_t i = 0; i < c->n_listeners; i++)
        tn_listener_unref(c->listeners[i]);
    for (size_t i = 0; i < c->n_clusters; i++)
        tn_cluster_unref(c->clusters[i]);
    tn_bootstrap_free(c->bootstrap);
    tn_pool_dispose(&c->pool);
    free(c);
}
