#include "xds/subscription.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/log.h"
#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "filters/route.h"
#include "xds/ads.h"

/* A resource's warming: an EDS cluster's, a route configuration's or the
 * first CDS response's initial_fetch_timeout. */
enum wait_kind {
    W_EDS = 0,
    W_RDS,
    W_CDS,
};

struct wait {
    uv_timer_t timer;
    struct tn_xds *x;
    enum wait_kind kind;
    const struct tn_cluster *c; /* W_EDS */
    size_t rds_index;           /* W_RDS */
    bool armed;
};

/* A cluster from CDS; freed once its timer is closed. */
struct dyn {
    struct dyn *next;
    struct tn_xds *x;
    struct tn_cluster *c; /* reference */
    uint8_t *bytes;       /* the resource as received: the same bytes again change nothing */
    size_t len;
    char *version;
    uint64_t updated_ms;
    Envoy__Config__Cluster__V3__Cluster *pb; /* for /config_dump */
    uv_timer_t eds_timer;                    /* its endpoints' initial_fetch_timeout */
};

struct tn_xds {
    uv_loop_t *loop;
    struct tn_config *cfg; /* reference */
    struct tn_cm *cm;
    struct tn_xds_hooks hooks;
    void *arg;
    struct tn_ads *ads;
    struct wait *waits; /* EDS clusters and route configurations with a timeout, and CDS */
    size_t n_waits, n_open;
    bool *rds_have;         /* [n_rds]: came or timed out */
    struct tn_xds_rds *rds; /* [n_rds] */
    bool cds_have;          /* the first CDS response came or timed out (or there is no CDS) */
    struct dyn *dyns;       /* clusters from CDS */
    size_t n_dyns;
    char **eds_names; /* what the EDS watch asks for now */
    size_t n_eds_names;
    struct tn_xds_cds cds;
    bool ready_fired, closing;
};

static void xds_free_or_close(struct tn_xds *x);
static void xds_release(struct tn_xds *x);
static int watch_eds(struct tn_xds *x);

static const char *eds_name(const struct tn_cluster *c)
{
    return c->eds_service_name ? c->eds_service_name : c->name;
}

static void wait_done(struct tn_xds *x, enum wait_kind kind, const struct tn_cluster *c, size_t rds_index)
{
    for (size_t i = 0; i < x->n_waits; i++) {
        struct wait *w = &x->waits[i];
        if (w->armed && w->kind == kind && w->c == c && w->rds_index == rds_index) {
            w->armed = false;
            uv_timer_stop(&w->timer);
        }
    }
}

static void check_ready(struct tn_xds *x)
{
    if (x->ready_fired || !x->cds_have)
        return;
    for (size_t i = 0; i < x->cfg->n_rds; i++)
        if (!x->rds_have[i])
            return;
    x->ready_fired = true;
    if (x->hooks.ready)
        x->hooks.ready(x->arg);
}

static void eds_one(struct tn_xds *x, const struct tn_cluster *c, const struct tn_endpoint_set *es)
{
    if (tn_cm_eds_update(x->cm, c->name, es))
        TN_LOG(TN_LOG_ERROR, upstream, "cluster %s: out of memory applying its endpoints", c->name);
    else
        TN_LOG(TN_LOG_INFO, upstream, "cluster %s: %zu endpoint%s from the control plane", c->name, es->n_endpoints,
               es->n_endpoints == 1 ? "" : "s");
}

/* Applies es to every EDS cluster subscribed under `name`. */
static void eds_apply(struct tn_xds *x, const char *name, const struct tn_endpoint_set *es)
{
    for (size_t i = 0; i < x->cfg->n_clusters; i++) {
        const struct tn_cluster *c = x->cfg->clusters[i];
        if (c->type != TN_CLUSTER_EDS || strcmp(eds_name(c), name) != 0)
            continue;
        eds_one(x, c, es);
        wait_done(x, W_EDS, c, 0);
    }
    for (struct dyn *d = x->dyns; d; d = d->next)
        if (d->c->type == TN_CLUSTER_EDS && strcmp(eds_name(d->c), name) == 0) {
            eds_one(x, d->c, es);
            uv_timer_stop(&d->eds_timer);
        }
}

static void eds_rejected(struct tn_xds *x, const char *name)
{
    for (size_t i = 0; i < x->cfg->n_clusters; i++) {
        const struct tn_cluster *c = x->cfg->clusters[i];
        if (c->type == TN_CLUSTER_EDS && strcmp(eds_name(c), name) == 0)
            tn_cm_eds_rejected(x->cm, c->name);
    }
    for (struct dyn *d = x->dyns; d; d = d->next)
        if (d->c->type == TN_CLUSTER_EDS && strcmp(eds_name(d->c), name) == 0)
            tn_cm_eds_rejected(x->cm, d->c->name);
}

/* err's message, as "<what> '<name>': <path>: <reason>" without the path's
 * leading dot. */
static int fail_resource(struct tn_err *err, const char *what, const char *name, const struct tn_err *inner)
{
    const char *m = inner->msg[0] == '.' ? inner->msg + 1 : inner->msg;
    tn_err_init(err);
    return tn_err_fail(err, "%s '%s': %s", what, name, m);
}

static int on_eds(struct tn_xds *x, const struct tn_ads_update *u, struct tn_err *err)
{
    size_t n = u->n_resources;
    Envoy__Config__Endpoint__V3__ClusterLoadAssignment **cla = calloc(n + 1, sizeof(*cla));
    struct tn_endpoint_set **sets = calloc(n + 1, sizeof(*sets));
    int rc = -1;
    if (cla == NULL || sets == NULL) {
        tn_err_fail(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct tn_ads_resource *r = &u->resources[i];
        if (strcmp(r->type_url, TN_TYPE_ENDPOINT) != 0) {
            tn_err_fail(err, "resources[%zu]: type %s in a %s response", i, r->type_url, TN_TYPE_ENDPOINT);
            goto out;
        }
        cla[i] = envoy__config__endpoint__v3__cluster_load_assignment__unpack(NULL, r->len, r->value);
        if (cla[i] == NULL) {
            tn_err_fail(err, "resources[%zu]: not a valid ClusterLoadAssignment", i);
            goto out;
        }
        const char *name = r->name ? r->name : cla[i]->cluster_name;
        if (r->name && strcmp(r->name, cla[i]->cluster_name) != 0) {
            tn_err_fail(err, "ClusterLoadAssignment '%s': cluster_name '%s' differs from the resource's name", r->name,
                        cla[i]->cluster_name);
            goto out;
        }
        struct tn_err inner;
        tn_err_init(&inner);
        sets[i] = tn_endpoint_set_compile(cla[i], true, &inner);
        if (sets[i] == NULL) {
            eds_rejected(x, name);
            fail_resource(err, "ClusterLoadAssignment", name, &inner);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++)
        eds_apply(x, cla[i]->cluster_name, sets[i]);
    if (u->delta) {
        struct tn_endpoint_set empty = {.n_endpoints = 0};
        for (size_t i = 0; i < u->n_removed; i++) {
            TN_LOG(TN_LOG_INFO, upstream, "ClusterLoadAssignment '%s' removed by the control plane", u->removed[i]);
            eds_apply(x, u->removed[i], &empty);
        }
    }
    rc = 0;
out:
    for (size_t i = 0; cla && i < n; i++) {
        if (cla[i])
            envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(cla[i], NULL);
        if (sets && sets[i])
            tn_endpoint_set_unref(sets[i]);
    }
    free(cla);
    free(sets);
    return rc;
}

static size_t rds_index_of(const struct tn_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_rds; i++)
        if (strcmp(cfg->rds_names[i], name) == 0)
            return i;
    return (size_t)-1;
}

/* The version /config_dump shows for resource i: the response's version_info
 * (state of the world) or system_version_info, else the resource's own. */
static const char *r_version(const struct tn_ads_update *u, size_t i)
{
    if (u->version && *u->version)
        return u->version;
    return u->resources[i].version ? u->resources[i].version : "";
}

static void rds_apply(struct tn_xds *x, size_t k, struct tn_route_table *t)
{
    if (x->hooks.routes)
        x->hooks.routes(x->arg, k, t);
    x->rds_have[k] = true;
    wait_done(x, W_RDS, NULL, k);
    check_ready(x);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Route configuration k's accepted proto and version, for /config_dump. */
static void rds_keep(struct tn_xds *x, size_t k, Envoy__Config__Route__V3__RouteConfiguration *pb, const char *version)
{
    struct tn_xds_rds *st = &x->rds[k];
    if (st->pb)
        protobuf_c_message_free_unpacked(st->pb, NULL);
    st->pb = pb ? &pb->base : NULL;
    free(st->version);
    st->version = strdup(version ? version : "");
    st->updated_ms = wall_ms();
}

static int on_rds(struct tn_xds *x, const struct tn_ads_update *u, struct tn_err *err)
{
    size_t n = u->n_resources;
    struct tn_route_table **tables = calloc(n + 1, sizeof(*tables));
    Envoy__Config__Route__V3__RouteConfiguration **pbs = calloc(n + 1, sizeof(*pbs));
    size_t *idx = calloc(n + 1, sizeof(*idx));
    int rc = -1;
    if (tables == NULL || pbs == NULL || idx == NULL) {
        tn_err_fail(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct tn_ads_resource *r = &u->resources[i];
        if (strcmp(r->type_url, TN_TYPE_ROUTE) != 0) {
            tn_err_fail(err, "resources[%zu]: type %s in a %s response", i, r->type_url, TN_TYPE_ROUTE);
            goto out;
        }
        Envoy__Config__Route__V3__RouteConfiguration *pb = pbs[i] =
            envoy__config__route__v3__route_configuration__unpack(NULL, r->len, r->value);
        if (pb == NULL) {
            tn_err_fail(err, "resources[%zu]: not a valid RouteConfiguration", i);
            goto out;
        }
        const char *name = r->name ? r->name : pb->name;
        struct tn_err inner;
        tn_err_init(&inner);
        idx[i] = rds_index_of(x->cfg, pb->name);
        if (idx[i] != (size_t)-1)
            x->rds[idx[i]].update_attempt++;
        if (r->name && strcmp(r->name, pb->name) != 0)
            tn_err_fail(&inner, ".name: '%s' differs from the resource's name", pb->name);
        else if ((tables[i] = tn_route_table_compile(pb, &inner)) != NULL) {
            /* from RDS, validate_clusters defaults to false (Envoy): a route
             * to a cluster that is not there answers 503 NC */
            if (pb->validate_clusters == NULL)
                tables[i]->validate_clusters = false;
            tn_config_check_routes(x->cfg, tables[i], &inner);
        }
        if (inner.failed) {
            if (idx[i] != (size_t)-1)
                x->rds[idx[i]].update_rejected++;
            fail_resource(err, "RouteConfiguration", name, &inner);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        size_t k = idx[i];
        if (k == (size_t)-1)
            continue; /* not asked for: a control plane may send more */
        TN_LOG(TN_LOG_INFO, xds, "route configuration '%s' version %s applied", x->cfg->rds_names[k], u->version);
        x->rds[k].update_success++;
        x->rds[k].config_reload++;
        if (pbs[i]->n_virtual_hosts == 0)
            x->rds[k].update_empty++;
        rds_keep(x, k, pbs[i], r_version(u, i));
        pbs[i] = NULL;
        rds_apply(x, k, tables[i]);
    }
    for (size_t i = 0; u->delta && i < u->n_removed; i++) {
        size_t k = rds_index_of(x->cfg, u->removed[i]);
        if (k == (size_t)-1)
            continue;
        TN_LOG(TN_LOG_WARN, xds, "route configuration '%s' removed by the control plane: its listeners answer 404",
               u->removed[i]);
        rds_keep(x, k, NULL, u->version);
        rds_apply(x, k, NULL);
    }
    rc = 0;
out:
    for (size_t i = 0; tables && i < n; i++) {
        tn_route_table_unref(tables[i]);
        if (pbs && pbs[i])
            envoy__config__route__v3__route_configuration__free_unpacked(pbs[i], NULL);
    }
    free(tables);
    free(pbs);
    free(idx);
    return rc;
}

/* --- CDS -------------------------------------------------------------------- */

static struct dyn *dyn_find(struct tn_xds *x, const char *name)
{
    for (struct dyn *d = x->dyns; d; d = d->next)
        if (strcmp(d->c->name, name) == 0)
            return d;
    return NULL;
}

static void on_dyn_closed(uv_handle_t *h)
{
    struct dyn *d = h->data;
    struct tn_xds *x = d->x;
    tn_cluster_unref(d->c);
    free(d->bytes);
    free(d->version);
    if (d->pb)
        envoy__config__cluster__v3__cluster__free_unpacked(d->pb, NULL);
    free(d);
    xds_release(x);
}

/* Unlinks d and frees it once its timer is closed. */
static void dyn_drop(struct tn_xds *x, struct dyn *d)
{
    for (struct dyn **pp = &x->dyns; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    x->n_dyns--;
    uv_close((uv_handle_t *)&d->eds_timer, on_dyn_closed);
}

static void on_dyn_eds_timeout(uv_timer_t *t)
{
    struct dyn *d = t->data;
    tn_cm_eds_timeout(d->x->cm, d->c->name);
}

static void cds_remove(struct tn_xds *x, struct dyn *d)
{
    TN_LOG(TN_LOG_INFO, xds, "cluster '%s' removed by the control plane", d->c->name);
    tn_cm_remove(x->cm, d->c->name);
    if (x->hooks.cluster_removed)
        x->hooks.cluster_removed(x->arg, d->c);
    x->cds.cluster_removed++;
    dyn_drop(x, d);
}

/* Makes c the cluster of its name: added, or replacing the one there (which
 * keeps serving until the new one has warmed). Takes over c, bytes and pb. */
static void cds_put(struct tn_xds *x, struct tn_cluster *c, uint8_t *bytes, size_t len,
                    Envoy__Config__Cluster__V3__Cluster *pb, const char *version)
{
    struct dyn *old = dyn_find(x, c->name), *d = calloc(1, sizeof(*d));
    if (d == NULL || tn_cm_add(x->cm, c)) {
        TN_LOG(TN_LOG_ERROR, xds, "cluster '%s': out of memory adding it", c->name);
        free(d);
        tn_cluster_unref(c);
        free(bytes);
        envoy__config__cluster__v3__cluster__free_unpacked(pb, NULL);
        return;
    }
    TN_LOG(TN_LOG_INFO, xds, "cluster '%s' %s by the control plane (version %s)", c->name, old ? "changed" : "added",
           version);
    if (old) {
        x->cds.cluster_modified++;
        dyn_drop(x, old);
    } else {
        x->cds.cluster_added++;
    }
    *d = (struct dyn){.next = x->dyns,
                      .x = x,
                      .c = c,
                      .bytes = bytes,
                      .len = len,
                      .pb = pb,
                      .version = strdup(version ? version : ""),
                      .updated_ms = wall_ms()};
    uv_timer_init(x->loop, &d->eds_timer);
    d->eds_timer.data = d;
    x->n_open++;
    if (c->type == TN_CLUSTER_EDS && c->eds_fetch_timeout_ms)
        uv_timer_start(&d->eds_timer, on_dyn_eds_timeout, c->eds_fetch_timeout_ms, 0);
    x->dyns = d;
    x->n_dyns++;
}

struct cds_new {
    const char *name;
    struct tn_cluster *c; /* NULL: unchanged */
    Envoy__Config__Cluster__V3__Cluster *pb;
    const struct tn_ads_resource *r;
};

/* Checks and compiles resource r into *out; 0, or -1 with err set. */
static int cds_one(struct tn_xds *x, const struct tn_ads_resource *r, size_t i, struct cds_new *out,
                   const struct cds_new *seen, struct tn_err *err)
{
    if (strcmp(r->type_url, TN_TYPE_CLUSTER) != 0)
        return tn_err_fail(err, "resources[%zu]: type %s in a %s response", i, r->type_url, TN_TYPE_CLUSTER);
    out->r = r;
    out->pb = envoy__config__cluster__v3__cluster__unpack(NULL, r->len, r->value);
    if (out->pb == NULL)
        return tn_err_fail(err, "resources[%zu]: not a valid Cluster", i);
    out->name = out->pb->name;
    struct tn_err inner;
    tn_err_init(&inner);
    if (r->name && strcmp(r->name, out->pb->name) != 0)
        tn_err_fail(&inner, ".name: '%s' differs from the resource's name", out->pb->name);
    else if (tn_config_cluster(x->cfg, out->name))
        tn_err_fail(&inner, ".name: a static cluster has that name");
    for (size_t k = 0; k < i && !inner.failed; k++)
        if (strcmp(seen[k].name, out->name) == 0)
            tn_err_fail(&inner, ".name: twice in the response (also resources[%zu])", k);
    if (inner.failed)
        return fail_resource(err, "Cluster", r->name ? r->name : out->name, &inner);
    struct dyn *d = dyn_find(x, out->name);
    if (d && d->len == r->len && memcmp(d->bytes, r->value, r->len) == 0)
        return 0; /* unchanged: the cluster, its pools and health stay */
    out->c = tn_cluster_compile(out->pb, &inner);
    if (out->c == NULL)
        return fail_resource(err, "Cluster", out->name, &inner);
    if (x->hooks.cluster_added && x->hooks.cluster_added(x->arg, out->c)) {
        tn_err_init(&inner);
        tn_err_fail(&inner, "no room left for its stats (tern reserves stats for about 12,000 clusters)");
        return fail_resource(err, "Cluster", out->name, &inner);
    }
    return 0;
}

static int on_cds(struct tn_xds *x, const struct tn_ads_update *u, struct tn_err *err)
{
    size_t n = u->n_resources;
    struct cds_new *nv = calloc(n + 1, sizeof(*nv));
    int rc = -1;
    x->cds.update_attempt++;
    if (nv == NULL) {
        tn_err_fail(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (cds_one(x, &u->resources[i], i, &nv[i], nv, err))
            goto out;
    /* removals first: state of the world names every cluster there is */
    if (!u->delta) {
        for (struct dyn *d = x->dyns, *next; d; d = next) {
            next = d->next;
            bool kept = false;
            for (size_t i = 0; i < n && !kept; i++)
                kept = strcmp(nv[i].name, d->c->name) == 0;
            if (!kept)
                cds_remove(x, d);
        }
    } else {
        for (size_t i = 0; i < u->n_removed; i++) {
            struct dyn *d = dyn_find(x, u->removed[i]);
            if (d)
                cds_remove(x, d);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (nv[i].c == NULL)
            continue;
        uint8_t *bytes = malloc(nv[i].r->len + 1);
        if (bytes)
            memcpy(bytes, nv[i].r->value, nv[i].r->len);
        cds_put(x, nv[i].c, bytes, bytes ? nv[i].r->len : 0, nv[i].pb, r_version(u, i));
        nv[i].c = NULL;
        nv[i].pb = NULL;
    }
    if (watch_eds(x))
        TN_LOG(TN_LOG_ERROR, xds, "out of memory asking for the new clusters' endpoints");
    x->cds.update_success++;
    if (n == 0 && !u->delta)
        x->cds.update_empty++;
    free(x->cds.version);
    x->cds.version = strdup(u->version ? u->version : "");
    if (!x->cds_have) {
        x->cds_have = true;
        wait_done(x, W_CDS, NULL, 0);
        check_ready(x);
    }
    rc = 0;
out:
    if (rc)
        x->cds.update_rejected++;
    for (size_t i = 0; nv && i < n; i++) {
        if (nv[i].c)
            tn_cluster_unref(nv[i].c);
        if (nv[i].pb)
            envoy__config__cluster__v3__cluster__free_unpacked(nv[i].pb, NULL);
    }
    free(nv);
    return rc;
}

static int on_update(void *arg, const struct tn_ads_update *u, struct tn_err *err)
{
    struct tn_xds *x = arg;
    if (strcmp(u->type_url, TN_TYPE_ENDPOINT) == 0)
        return on_eds(x, u, err);
    if (strcmp(u->type_url, TN_TYPE_ROUTE) == 0)
        return on_rds(x, u, err);
    if (strcmp(u->type_url, TN_TYPE_CLUSTER) == 0)
        return on_cds(x, u, err);
    return tn_err_fail(err, "type %s is not watched by tern", u->type_url);
}

static void on_state(void *arg, bool connected)
{
    (void)arg;
    TN_LOG(connected ? TN_LOG_INFO : TN_LOG_WARN, xds, "control plane %s", connected ? "connected" : "disconnected");
}

static void on_wait_timeout(uv_timer_t *t)
{
    struct wait *w = t->data;
    struct tn_xds *x = w->x;
    w->armed = false;
    switch (w->kind) {
    case W_EDS:
        tn_cm_eds_timeout(x->cm, w->c->name);
        return;
    case W_RDS:
        TN_LOG(TN_LOG_WARN, xds,
               "route configuration '%s' did not come within initial_fetch_timeout: its listeners answer 404 until it "
               "does",
               x->cfg->rds_names[w->rds_index]);
        x->rds_have[w->rds_index] = true;
        break;
    case W_CDS:
        TN_LOG(TN_LOG_WARN, xds,
               "no clusters from the control plane within initial_fetch_timeout: serving without them");
        x->cds_have = true;
        break;
    }
    check_ready(x);
}

/* The gRPC target: google_grpc's URI, or envoy_grpc's cluster's first
 * endpoint. */
static int target_of(const struct tn_config *cfg, char *out, size_t cap, struct tn_err *err)
{
    if (cfg->ads_target) {
        snprintf(out, cap, "%s", cfg->ads_target);
        return 0;
    }
    const struct tn_cluster *c = tn_config_cluster(cfg, cfg->ads_cluster);
    if (c == NULL || c->endpoints == NULL || c->endpoints->n_endpoints == 0)
        return tn_err_fail(err,
                           "dynamic_resources.ads_config: cluster '%s' has no endpoint to reach the control "
                           "plane at",
                           cfg->ads_cluster ? cfg->ads_cluster : "");
    const struct tn_address *a = &c->endpoints->endpoints[0].addr;
    tn_ads_target_for(a->host, a->port, out, cap);
    return 0;
}

/* Asks for the assignments of every EDS cluster, static and from CDS, when
 * that set of names changed. */
static int watch_eds(struct tn_xds *x)
{
    const struct tn_config *cfg = x->cfg;
    const char **names = calloc(cfg->n_clusters + x->n_dyns + 1, sizeof(*names));
    size_t n = 0;
    if (names == NULL)
        return -1;
    struct dyn *d = x->dyns;
    for (size_t i = 0; i < cfg->n_clusters || d; i++) {
        const struct tn_cluster *c = i < cfg->n_clusters ? cfg->clusters[i] : d->c;
        if (i >= cfg->n_clusters)
            d = d->next;
        if (c->type != TN_CLUSTER_EDS)
            continue;
        bool dup = false;
        for (size_t k = 0; k < n && !dup; k++)
            dup = strcmp(names[k], eds_name(c)) == 0;
        if (!dup)
            names[n++] = eds_name(c);
    }
    bool same = n == x->n_eds_names;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(names[i], x->eds_names[i]) == 0;
    int rc = 0;
    if (!same) {
        char **keep = calloc(n + 1, sizeof(*keep));
        for (size_t i = 0; keep && i < n; i++)
            if ((keep[i] = strdup(names[i])) == NULL)
                rc = -1;
        if (keep == NULL)
            rc = -1;
        if (rc == 0 && (n || x->n_eds_names))
            rc = tn_ads_watch(x->ads, TN_TYPE_ENDPOINT, names, n, false);
        for (size_t i = 0; i < x->n_eds_names; i++)
            free(x->eds_names[i]);
        free(x->eds_names);
        x->eds_names = keep;
        x->n_eds_names = keep ? n : 0;
    }
    free(names);
    return rc;
}

static void wait_start(struct tn_xds *x, enum wait_kind kind, const struct tn_cluster *c, size_t rds_index, uint64_t ms)
{
    struct wait *w = &x->waits[x->n_waits++];
    w->x = x;
    w->kind = kind;
    w->c = c;
    w->rds_index = rds_index;
    w->armed = true;
    uv_timer_init(x->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_wait_timeout, ms, 0);
    x->n_open++;
}

static uint64_t duration_ms(const Google__Protobuf__Duration *d, uint64_t dflt)
{
    if (d == NULL)
        return dflt;
    return (uint64_t)(d->seconds > 0 ? d->seconds : 0) * 1000 + (uint64_t)(d->nanos > 0 ? d->nanos : 0) / 1000000;
}

static int start_waits(struct tn_xds *x)
{
    const struct tn_config *cfg = x->cfg;
    x->waits = calloc(cfg->n_clusters + cfg->n_rds + 2, sizeof(*x->waits));
    x->rds_have = calloc(cfg->n_rds + 1, sizeof(*x->rds_have));
    x->rds = calloc(cfg->n_rds + 1, sizeof(*x->rds));
    if (x->waits == NULL || x->rds_have == NULL || x->rds == NULL)
        return -1;
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        const struct tn_cluster *c = cfg->clusters[i];
        if (c->type == TN_CLUSTER_EDS && c->eds_fetch_timeout_ms)
            wait_start(x, W_EDS, c, 0, c->eds_fetch_timeout_ms);
    }
    for (size_t i = 0; i < cfg->n_rds; i++)
        if (cfg->rds_fetch_timeout_ms[i])
            wait_start(x, W_RDS, NULL, i, cfg->rds_fetch_timeout_ms[i]);
    x->cds_have = !cfg->cds_dynamic;
    if (cfg->cds_dynamic) {
        const Envoy__Config__Core__V3__ConfigSource *cs = cfg->bootstrap->dynamic_resources->cds_config;
        uint64_t ms = duration_ms(cs->initial_fetch_timeout, 15000);
        if (ms)
            wait_start(x, W_CDS, NULL, 0, ms);
    }
    return 0;
}

static int watch_rds(struct tn_xds *x)
{
    const struct tn_config *cfg = x->cfg;
    return cfg->n_rds ? tn_ads_watch(x->ads, TN_TYPE_ROUTE, cfg->rds_names, cfg->n_rds, false) : 0;
}

struct tn_xds *tn_xds_start(uv_loop_t *loop, struct tn_config *cfg, struct tn_cm *cm, const struct tn_xds_hooks *hooks,
                            void *arg, struct tn_err *err)
{
    if (cfg->ads_api == TN_XDS_NONE)
        return NULL;
    if (cfg->lds_dynamic || cfg->cds_dynamic)
        TN_LOG(TN_LOG_WARN, xds,
               "lds_config and cds_config are not applied yet: listeners and clusters come from "
               "static_resources; the control plane gives EDS clusters their endpoints");
    char target[512];
    if (target_of(cfg, target, sizeof(target), err))
        return NULL;
    struct tn_xds *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    x->loop = loop;
    x->cfg = tn_config_ref(cfg);
    x->cm = cm;
    x->hooks = *hooks;
    x->arg = arg;
    const tn_pb_bootstrap *b = cfg->bootstrap;
    struct tn_ads_options o = {
        .target = target,
        .delta = cfg->ads_api == TN_XDS_DELTA_GRPC,
        .node = b->node,
        .node_first_only = b->dynamic_resources && b->dynamic_resources->ads_config &&
                           b->dynamic_resources->ads_config->set_node_on_first_message_only,
    };
    x->ads = tn_ads_new(loop, &o, on_update, on_state, x, err);
    /* CDS first, then EDS and RDS: the order Envoy asks in */
    if (x->ads == NULL || (cfg->cds_dynamic && tn_ads_watch(x->ads, TN_TYPE_CLUSTER, NULL, 0, true)) || watch_eds(x) ||
        watch_rds(x) || start_waits(x)) {
        if (!err->failed)
            tn_err_fail(err, "out of memory");
        if (x->ads)
            tn_ads_close(x->ads);
        x->ads = NULL;
        xds_free_or_close(x);
        return NULL;
    }
    check_ready(x);
    return x;
}

const struct tn_xds_rds *tn_xds_rds(const struct tn_xds *x, size_t i)
{
    return x && x->rds && i < x->cfg->n_rds ? &x->rds[i] : NULL;
}

const struct tn_xds_cds *tn_xds_cds(const struct tn_xds *x)
{
    return x ? &x->cds : NULL;
}

size_t tn_xds_clusters(const struct tn_xds *x, struct tn_xds_cluster *out, size_t cap)
{
    size_t n = 0;
    for (const struct dyn *d = x ? x->dyns : NULL; d; d = d->next, n++)
        if (n < cap)
            out[n] = (struct tn_xds_cluster){
                .c = d->c, .version = d->version, .updated_ms = d->updated_ms, .pb = d->pb ? &d->pb->base : NULL};
    return n;
}

bool tn_xds_connected(const struct tn_xds *x)
{
    return x && tn_ads_connected(x->ads);
}

static void xds_free(struct tn_xds *x)
{
    for (size_t i = 0; x->rds && i < x->cfg->n_rds; i++) {
        if (x->rds[i].pb)
            protobuf_c_message_free_unpacked(x->rds[i].pb, NULL);
        free(x->rds[i].version);
    }
    for (size_t i = 0; i < x->n_eds_names; i++)
        free(x->eds_names[i]);
    free(x->eds_names);
    free(x->cds.version);
    free(x->rds);
    free(x->waits);
    free(x->rds_have);
    tn_config_unref(x->cfg);
    free(x);
}

/* One of x's handles is closed; the last frees x (once closing). */
static void xds_release(struct tn_xds *x)
{
    if (--x->n_open == 0 && x->closing)
        xds_free(x);
}

static void on_wait_closed(uv_handle_t *h)
{
    struct wait *w = h->data;
    xds_release(w->x);
}

/* Closes every handle of x; the last close frees it. */
static void xds_free_or_close(struct tn_xds *x)
{
    x->closing = true;
    if (x->n_open == 0) {
        xds_free(x);
        return;
    }
    for (size_t i = 0; i < x->n_waits; i++)
        uv_close((uv_handle_t *)&x->waits[i].timer, on_wait_closed);
    while (x->dyns)
        dyn_drop(x, x->dyns);
}

void tn_xds_close(struct tn_xds *x)
{
    tn_ads_close(x->ads);
    x->ads = NULL;
    xds_free_or_close(x);
}
