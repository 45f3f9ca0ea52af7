#include "dataplane/server/config.h"

#include <stdlib.h>
#include <string.h>

#include "dataplane/core/log.h"
#include "api/pb/unsupported.h"

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

/* Writes a generated listener name into the bootstrap, so that
 * /config_dump shows the name /listeners and the logs use. */
static int name_in_bootstrap(Envoy__Config__Listener__V3__Listener *pb, const char *name)
{
    char *copy = strdup(name);
    if (copy == NULL)
        return -1;
    if (pb->name != protobuf_c_empty_string)
        free(pb->name);
    pb->name = copy;
    return 0;
}

static int compile_listeners(struct tn_config *c, const Envoy__Config__Bootstrap__V3__Bootstrap__StaticResources *sr,
                             struct tn_err *err)
{
    c->listeners = tn_pool_alloc(&c->pool, sr->n_listeners * sizeof(*c->listeners) + 1);
    for (size_t i = 0; i < sr->n_listeners; i++) {
        size_t mark = tn_err_push(err, ".listeners[%zu]", i);
        struct tn_listener *l = tn_listener_compile_static(sr->listeners[i], err);
        if (l == NULL)
            return -1;
        c->listeners[i] = l;
        c->n_listeners = i + 1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->listeners[j]->name, l->name) == 0) {
                bool gen = l->name_generated || c->listeners[j]->name_generated;
                tn_err_push(err, ".name");
                return tn_err_fail(err, "duplicate listener name '%s' (also listeners[%zu])%s", l->name, j,
                                   gen ? "; tern names a listener without a name after its address" : "");
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
    for (size_t i = 0; i < c->n_listeners; i++)
        if (c->listeners[i]->name_generated && name_in_bootstrap(sr->listeners[i], c->listeners[i]->name))
            return tn_err_fail(err, "out of memory");
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

bool tn_config_uses_grpc(const struct tn_config *c)
{
    if (c->ads_api != TN_XDS_NONE || (c->lds_dynamic && c->lds_source.kind != TN_SOURCE_PATH) ||
        (c->cds_dynamic && c->cds_source.kind != TN_SOURCE_PATH))
        return true;
    for (size_t i = 0; i < c->n_rds; i++)
        if (c->rds_sources[i]->kind != TN_SOURCE_PATH)
            return true;
    for (size_t i = 0; i < c->n_clusters; i++)
        if (c->clusters[i]->type == TN_CLUSTER_EDS && c->clusters[i]->eds_source.kind != TN_SOURCE_PATH)
            return true;
    return false;
}

struct tn_cluster *tn_config_cluster(const struct tn_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_clusters; i++)
        if (strcmp(c->clusters[i]->name, name) == 0)
            return c->clusters[i];
    return NULL;
}

int tn_config_check_source(const struct tn_config *c, const struct tn_source *s, struct tn_err *err)
{
    size_t mark = err->path_len;
    if (s->kind == TN_SOURCE_ADS && c->ads_api == TN_XDS_NONE) {
        tn_err_push(err, ".ads");
        return tn_err_fail(err, "the bootstrap has no dynamic_resources.ads_config");
    }
    if (s->cluster && tn_config_cluster(c, s->cluster) == NULL) {
        tn_err_push(err, ".api_config_source.grpc_services[0].envoy_grpc.cluster_name");
        return tn_err_fail(err, "unknown cluster '%s': the control plane's cluster must be in static_resources.clusters",
                           s->cluster);
    }
    tn_err_pop(err, mark);
    return 0;
}

/* lds_config or cds_config into *out; 0 or -1. */
static int compile_source(struct tn_config *c, const pb_config_source *pb, const char *field, struct tn_source *out,
                          struct tn_err *err)
{
    size_t mark = tn_err_push(err, ".%s", field);
    if (tn_source_compile(&c->pool, pb, out, err) || tn_config_check_source(c, out, err))
        return -1;
    tn_err_pop(err, mark);
    return 0;
}

static int compile_ads(struct tn_config *c, const Envoy__Config__Bootstrap__V3__Bootstrap__DynamicResources *dr,
                       struct tn_err *err)
{
    size_t mark = tn_err_push(err, ".dynamic_resources");
    if (dr->ads_config != NULL) {
        struct tn_source ads = {0};
        tn_err_push(err, ".ads_config");
        if (tn_api_source_compile(&c->pool, dr->ads_config, true, &ads, err))
            return -1;
        c->ads_api = ads.kind == TN_SOURCE_DELTA_GRPC ? TN_XDS_DELTA_GRPC : TN_XDS_GRPC;
        c->ads_cluster = ads.cluster;
        c->ads_target = ads.target;
        if (ads.cluster && tn_config_cluster(c, ads.cluster) == NULL) {
            tn_err_push(err, ".grpc_services[0].envoy_grpc.cluster_name");
            return tn_err_fail(err, "unknown cluster '%s': the control plane's cluster must be in static_resources.clusters",
                               ads.cluster);
        }
        tn_err_pop(err, mark + strlen(".dynamic_resources"));
    }
    if ((dr->lds_config && compile_source(c, dr->lds_config, "lds_config", &c->lds_source, err)) ||
        (dr->cds_config && compile_source(c, dr->cds_config, "cds_config", &c->cds_source, err)))
        return -1;
    c->lds_dynamic = dr->lds_config != NULL;
    c->cds_dynamic = dr->cds_config != NULL;
    tn_err_pop(err, mark);
    return 0;
}

/* Gives each route configuration named by an HCM's rds its index, once, and
 * checks every static source names what it needs. */
static int index_rds(struct tn_config *c, struct tn_err *err)
{
    c->rds_names = tn_pool_alloc(&c->pool, c->n_listeners * sizeof(*c->rds_names) + 1);
    c->rds_sources = tn_pool_alloc(&c->pool, c->n_listeners * sizeof(*c->rds_sources) + 1);
    for (size_t i = 0; i < c->n_listeners; i++) {
        struct tn_hcm *h = &c->listeners[i]->hcm;
        if (h->rds_name == NULL)
            continue;
        size_t mark = tn_err_push(err, "static_resources.listeners[%zu]%s", i, c->listeners[i]->rds_source_path);
        if (tn_config_check_source(c, &h->rds_source, err))
            return -1;
        tn_err_pop(err, mark);
        size_t k = 0;
        while (k < c->n_rds && strcmp(c->rds_names[k], h->rds_name) != 0)
            k++;
        if (k == c->n_rds) {
            c->rds_names[k] = h->rds_name;
            c->rds_sources[k] = &h->rds_source;
            c->n_rds++;
        }
        h->rds_index = k;
    }
    for (size_t i = 0; i < c->n_clusters; i++) {
        if (c->clusters[i]->type != TN_CLUSTER_EDS)
            continue;
        size_t mark = tn_err_push(err, "static_resources.clusters[%zu].eds_cluster_config.eds_config", i);
        if (tn_config_check_source(c, &c->clusters[i]->eds_source, err))
            return -1;
        tn_err_pop(err, mark);
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
    if (tn_unsupported_check(&b->base, err))
        return -1;
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
