#define _GNU_SOURCE /* tdestroy */
#include "dataplane/server/xds.h"

#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/core/log.h"
#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "filters/route.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "xds/ads.h"
#include "xds/subscription.h"

/* A resource's warming: an EDS cluster's, a route configuration's or the
 * first CDS or LDS response's initial_fetch_timeout. */
enum wait_kind {
    W_EDS = 0,
    W_RDS,
    W_CDS,
    W_LDS,
};

struct wait {
    uv_timer_t timer;
    struct wait *next;
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

/* One version of a listener from LDS. */
struct lver {
    struct tn_listener *l; /* reference */
    uint8_t *bytes;
    size_t len;
    char *version;
    uint64_t updated_ms;
    Envoy__Config__Listener__V3__Listener *pb;
};

/* A listener name from LDS: the version serving and the one warming (its
 * route configuration not come yet), either may be NULL. */
struct dlis {
    struct dlis *next;
    char *name;
    struct lver *active, *warming;
};

/* A listener the last LDS response failed on (Envoy's error_state),
 * until a response is accepted. */
struct lfail {
    struct lfail *next;
    char *name, *details;
    uint64_t ms;
    Envoy__Config__Listener__V3__Listener *pb; /* what it would have been */
};

/* A route configuration some listener names. */
struct rds_slot {
    char *name;
    struct tn_sub_src *src;
    bool have;  /* came, or timed out */
    bool asked; /* a listener names it: subscribed (else let go, and its table dropped) */
    uint64_t fetch_timeout_ms; /* the first naming listener's initial_fetch_timeout */
    struct tn_xds_rds st;
};

struct tn_xds {
    uv_loop_t *loop;
    struct tn_config *cfg; /* reference */
    struct tn_cm *cm;
    struct tn_xds_hooks hooks;
    void *arg;
    struct tn_sub *sub; /* the sources: they hand responses to on_lds, on_rds, on_cds, on_eds */
    struct tn_sub_src *cds_src, *lds_src;
    struct wait *waits;
    size_t n_open;
    struct rds_slot *rds; /* static listeners' first (cfg->rds_names' order), then LDS's */
    size_t n_rds, cap_rds;
    bool cds_have, lds_have; /* the first CDS/LDS response came or timed out (or there is none) */
    struct dyn *dyns;        /* clusters from CDS */
    size_t n_dyns;
    void *dyn_index;         /* the same by name (tsearch) */
    struct dlis *dlis; /* listeners from LDS */
    struct lfail *lfails;
    struct tn_xds_cds cds;
    struct tn_xds_lds lds;
    uv_timer_t later; /* route configurations asked for again after a listener warmed */
    bool ready_fired, closing;
};

static void xds_free_or_close(struct tn_xds *x);
static void xds_release(struct tn_xds *x);
static int watch_eds(struct tn_xds *x);
static int watch_rds(struct tn_xds *x);
static void lds_rds_came(struct tn_xds *x, size_t k);
static struct tn_sub_src *src_open(struct tn_xds *x, const struct tn_source *spec, const char *type_url,
                                   struct tn_err *err);
static int wait_start(struct tn_xds *x, enum wait_kind kind, const struct tn_cluster *c, size_t rds_index,
                      uint64_t ms);

static const char *eds_name(const struct tn_cluster *c)
{
    return c->eds_service_name ? c->eds_service_name : c->name;
}

static void wait_done(struct tn_xds *x, enum wait_kind kind, const struct tn_cluster *c, size_t rds_index)
{
    for (struct wait *w = x->waits; w; w = w->next) {
        if (w->armed && w->kind == kind && w->c == c && w->rds_index == rds_index) {
            w->armed = false;
            uv_timer_stop(&w->timer);
        }
    }
}

static void check_ready(struct tn_xds *x)
{
    if (x->ready_fired || !x->cds_have || !x->lds_have)
        return;
    for (size_t i = 0; i < x->n_rds; i++)
        if (x->rds[i].asked && !x->rds[i].have)
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

static int on_eds(void *arg, const struct tn_sub_update *u, struct tn_err *err)
{
    struct tn_xds *x = arg;
    size_t n = u->n_resources;
    const Envoy__Config__Endpoint__V3__ClusterLoadAssignment **cla = calloc(n + 1, sizeof(*cla));
    struct tn_endpoint_set **sets = calloc(n + 1, sizeof(*sets));
    int rc = -1;
    if (cla == NULL || sets == NULL) {
        tn_err_fail(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct tn_sub_resource *r = &u->resources[i];
        if (r->pb == NULL) {
            tn_err_fail(err, "%s", r->error);
            goto out;
        }
        cla[i] = (const Envoy__Config__Endpoint__V3__ClusterLoadAssignment *)r->pb;
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
    for (size_t i = 0; sets && i < n; i++)
        if (sets[i])
            tn_endpoint_set_unref(sets[i]);
    free(cla);
    free(sets);
    return rc;
}

static size_t rds_index_of(const struct tn_xds *x, const char *name)
{
    for (size_t i = 0; i < x->n_rds; i++)
        if (strcmp(x->rds[i].name, name) == 0)
            return i;
    return (size_t)-1;
}

/* The version /config_dump shows for resource i: the response's version_info
 * (state of the world) or system_version_info, else the resource's own. */
static const char *r_version(const struct tn_sub_update *u, size_t i)
{
    if (u->version && *u->version)
        return u->version;
    return u->resources[i].version ? u->resources[i].version : "";
}

static void rds_apply(struct tn_xds *x, size_t k, struct tn_route_table *t)
{
    if (x->hooks.routes)
        x->hooks.routes(x->arg, k, t);
    x->rds[k].have = true;
    wait_done(x, W_RDS, NULL, k);
    lds_rds_came(x, k);
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
    struct tn_xds_rds *st = &x->rds[k].st;
    if (st->pb)
        protobuf_c_message_free_unpacked(st->pb, NULL);
    st->pb = pb ? &pb->base : NULL;
    free(st->version);
    st->version = strdup(version ? version : "");
    st->updated_ms = wall_ms();
}

static int on_rds(void *arg, const struct tn_sub_update *u, struct tn_err *err)
{
    struct tn_xds *x = arg;
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
        struct tn_sub_resource *r = &u->resources[i];
        if (r->pb == NULL) {
            tn_err_fail(err, "%s", r->error);
            goto out;
        }
        Envoy__Config__Route__V3__RouteConfiguration *pb = pbs[i] =
            (Envoy__Config__Route__V3__RouteConfiguration *)r->pb;
        r->pb = NULL; /* kept for /config_dump when accepted */
        const char *name = r->name ? r->name : pb->name;
        struct tn_err inner;
        tn_err_init(&inner);
        idx[i] = rds_index_of(x, pb->name);
        if (idx[i] != (size_t)-1)
            x->rds[idx[i]].st.update_attempt++;
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
                x->rds[idx[i]].st.update_rejected++;
            fail_resource(err, "RouteConfiguration", name, &inner);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        size_t k = idx[i];
        if (k == (size_t)-1)
            continue; /* not asked for: a control plane may send more */
        TN_LOG(TN_LOG_INFO, xds, "route configuration '%s' version %s applied", x->rds[k].name, u->version);
        x->rds[k].st.update_success++;
        x->rds[k].st.config_reload++;
        if (pbs[i]->n_virtual_hosts == 0)
            x->rds[k].st.update_empty++;
        rds_keep(x, k, pbs[i], r_version(u, i));
        pbs[i] = NULL;
        rds_apply(x, k, tables[i]);
    }
    /* as Envoy: a listener names its route configuration, so the control
     * plane cannot take it away; the last one stays (a listener waiting for
     * its first warms until initial_fetch_timeout) */
    for (size_t i = 0; u->delta && i < u->n_removed; i++)
        if (rds_index_of(x, u->removed[i]) != (size_t)-1)
            TN_LOG(TN_LOG_WARN, xds,
                   "route configuration '%s': the control plane removes it, which a route configuration a listener "
                   "names cannot be: ignored, the last one stays",
                   u->removed[i]);
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

static void no_free(void *p)
{
    (void)p;
}

static int by_dyn_name(const void *a, const void *b)
{
    return strcmp(((const struct dyn *)a)->c->name, ((const struct dyn *)b)->c->name);
}

static struct dyn *dyn_find(struct tn_xds *x, const char *name)
{
    struct tn_cluster kc = {.name = name};
    struct dyn key = {.c = &kc};
    struct dyn **found = tfind(&key, &x->dyn_index, by_dyn_name);
    return found ? *found : NULL;
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
    if (dyn_find(x, d->c->name) == d)
        tdelete(d, &x->dyn_index, by_dyn_name);
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
    if (c->type == TN_CLUSTER_EDS && c->eds_source.fetch_timeout_ms)
        uv_timer_start(&d->eds_timer, on_dyn_eds_timeout, c->eds_source.fetch_timeout_ms, 0);
    x->dyns = d;
    x->n_dyns++;
    if (tsearch(d, &x->dyn_index, by_dyn_name) == NULL)
        TN_LOG(TN_LOG_ERROR, xds, "cluster '%s': out of memory indexing it", c->name);
}

struct cds_new {
    const char *name;
    struct tn_cluster *c; /* NULL: unchanged */
    Envoy__Config__Cluster__V3__Cluster *pb;
    const struct tn_sub_resource *r;
};

/* Checks and compiles resource r into *out; 0, or -1 with err set. */
static int by_new_name(const void *a, const void *b)
{
    return strcmp(((const struct cds_new *)a)->name, ((const struct cds_new *)b)->name);
}

static int cds_one(struct tn_xds *x, struct tn_sub_resource *r, size_t i, struct cds_new *out,
                   const struct cds_new *nv, void **seen, struct tn_err *err)
{
    if (r->pb == NULL)
        return tn_err_fail(err, "%s", r->error);
    out->r = r;
    out->pb = (Envoy__Config__Cluster__V3__Cluster *)r->pb;
    r->pb = NULL; /* kept for /config_dump when accepted */
    out->name = out->pb->name;
    struct tn_err inner;
    tn_err_init(&inner);
    if (r->name && strcmp(r->name, out->pb->name) != 0)
        tn_err_fail(&inner, ".name: '%s' differs from the resource's name", out->pb->name);
    else if (tn_config_cluster(x->cfg, out->name))
        tn_err_fail(&inner, ".name: a static cluster has that name");
    const struct cds_new **first = inner.failed ? NULL : tsearch(out, seen, by_new_name);
    if (first == NULL && !inner.failed)
        return tn_err_fail(err, "out of memory");
    if (!inner.failed && *first != out)
        tn_err_fail(&inner, ".name: twice in the response (also resources[%zu])", (size_t)(*first - nv));
    if (inner.failed)
        return fail_resource(err, "Cluster", r->name ? r->name : out->name, &inner);
    struct dyn *d = dyn_find(x, out->name);
    if (d && d->len == r->len && memcmp(d->bytes, r->bytes, r->len) == 0)
        return 0; /* unchanged: the cluster, its pools and health stay */
    out->c = tn_cluster_compile(out->pb, &inner);
    if (out->c == NULL)
        return fail_resource(err, "Cluster", out->name, &inner);
    if (out->c->type == TN_CLUSTER_EDS) {
        tn_err_push(&inner, ".eds_cluster_config.eds_config");
        if (tn_config_check_source(x->cfg, &out->c->eds_source, &inner) ||
            src_open(x, &out->c->eds_source, TN_TYPE_ENDPOINT, &inner) == NULL)
            return fail_resource(err, "Cluster", out->name, &inner);
        tn_err_init(&inner);
    }
    if (x->hooks.cluster_added && x->hooks.cluster_added(x->arg, out->c)) {
        tn_err_init(&inner);
        tn_err_fail(&inner, "no room left for its stats (tern reserves stats for about 12,000 clusters)");
        return fail_resource(err, "Cluster", out->name, &inner);
    }
    return 0;
}

static int on_cds(void *arg, const struct tn_sub_update *u, struct tn_err *err)
{
    struct tn_xds *x = arg;
    size_t n = u->n_resources;
    struct cds_new *nv = calloc(n + 1, sizeof(*nv));
    void *seen = NULL; /* the response's names (tsearch): pushes carry thousands */
    int rc = -1;
    x->cds.update_attempt++;
    if (nv == NULL) {
        tn_err_fail(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (cds_one(x, &u->resources[i], i, &nv[i], nv, &seen, err))
            goto out;
    /* removals first: state of the world names every cluster there is */
    if (!u->delta) {
        for (struct dyn *d = x->dyns, *next; d; d = next) {
            next = d->next;
            struct cds_new key = {.name = d->c->name};
            if (tfind(&key, &seen, by_new_name) == NULL)
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
            memcpy(bytes, nv[i].r->bytes, nv[i].r->len);
        cds_put(x, nv[i].c, bytes, bytes ? nv[i].r->len : 0, nv[i].pb, r_version(u, i));
        nv[i].c = NULL;
        nv[i].pb = NULL;
    }
    if (watch_eds(x))
        TN_LOG(TN_LOG_ERROR, xds, "out of memory asking for the new clusters' endpoints");
    for (struct tn_sub_src *s = tn_sub_next(x->sub, NULL); s; s = tn_sub_next(x->sub, s))
        if (tn_sub_type(s) && strcmp(tn_sub_type(s), TN_TYPE_ENDPOINT) == 0)
            tn_sub_replay(s); /* endpoint files: the new clusters take theirs */
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
    tdestroy(seen, no_free);
    free(nv);
    return rc;
}

/* --- LDS -------------------------------------------------------------------- */

static void lver_free(struct lver *v)
{
    if (v == NULL)
        return;
    tn_listener_unref(v->l);
    free(v->bytes);
    free(v->version);
    if (v->pb)
        envoy__config__listener__v3__listener__free_unpacked(v->pb, NULL);
    free(v);
}

static struct dlis *dlis_find(struct tn_xds *x, const char *name)
{
    for (struct dlis *d = x->dlis; d; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

static void on_later(uv_timer_t *t)
{
    struct tn_xds *x = t->data;
    if (watch_rds(x))
        TN_LOG(TN_LOG_ERROR, xds, "out of memory updating the route configurations asked for");
}

/* The warming version serves once its route configuration has come (or
 * timed out); the active one it replaces stops accepting and drains. */
static void dlis_try_activate(struct tn_xds *x, struct dlis *d)
{
    struct lver *v = d->warming;
    if (v == NULL || (v->l->hcm.rds_name && !x->rds[v->l->hcm.rds_index].have))
        return;
    TN_LOG(TN_LOG_INFO, xds, "listener '%s' on %s %s (version %s)", d->name, v->l->addr.text,
           d->active ? "replaced: the old one drains" : "accepting", v->version);
    if (x->hooks.listener_up)
        x->hooks.listener_up(x->arg, v->l, d->active ? d->active->l : NULL);
    lver_free(d->active);
    d->active = v;
    d->warming = NULL;
    /* the route configuration the old version named may be named by none
     * now; not from inside this response's callback (the RDS one, often) */
    uv_timer_start(&x->later, on_later, 0, 0);
}

static void lds_rds_came(struct tn_xds *x, size_t k)
{
    for (struct dlis *d = x->dlis; d; d = d->next)
        if (d->warming && d->warming->l->hcm.rds_name && d->warming->l->hcm.rds_index == k)
            dlis_try_activate(x, d);
}

static void dlis_remove(struct tn_xds *x, struct dlis *d)
{
    TN_LOG(TN_LOG_INFO, xds, "listener '%s' removed by the control plane%s", d->name,
           d->active ? ": it drains" : "");
    if (d->warming && x->hooks.listener_down)
        x->hooks.listener_down(x->arg, d->warming->l, false);
    if (d->active && x->hooks.listener_down)
        x->hooks.listener_down(x->arg, d->active->l, true);
    lver_free(d->warming);
    lver_free(d->active);
    for (struct dlis **pp = &x->dlis; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    free(d->name);
    free(d);
    x->lds.listener_removed++;
}

/* The index of route configuration `name`, registered (and asked for) when
 * new. (size_t)-1 with err set when its source cannot be opened. */
static size_t rds_register(struct tn_xds *x, const char *name, const struct tn_source *spec, struct tn_err *err);

struct lds_new {
    const char *name;
    struct lver *v; /* NULL: unchanged */
    bool bound;
};

/* Checks, compiles and binds resource r; 0, or -1 with err set. */
static int lds_one(struct tn_xds *x, const struct tn_sub_update *u, size_t i, struct lds_new *out,
                   const struct lds_new *seen, struct tn_err *err)
{
    struct tn_sub_resource *r = &u->resources[i];
    if (r->pb == NULL)
        return tn_err_fail(err, "%s", r->error);
    Envoy__Config__Listener__V3__Listener *pb = (Envoy__Config__Listener__V3__Listener *)r->pb;
    r->pb = NULL; /* kept for /config_dump (or error_state) */
    struct lver *v = out->v = calloc(1, sizeof(*v));
    if (v == NULL) {
        envoy__config__listener__v3__listener__free_unpacked(pb, NULL);
        return tn_err_fail(err, "out of memory");
    }
    v->pb = pb;
    out->name = pb->name;
    struct tn_err inner;
    tn_err_init(&inner);
    if (r->name && strcmp(r->name, pb->name) != 0)
        tn_err_fail(&inner, ".name: '%s' differs from the resource's name", pb->name);
    for (size_t k = 0; k < x->cfg->n_listeners && !inner.failed; k++)
        if (strcmp(x->cfg->listeners[k]->name, pb->name) == 0)
            tn_err_fail(&inner, ".name: a static listener has that name");
    for (size_t k = 0; k < i && !inner.failed; k++)
        if (strcmp(seen[k].name, pb->name) == 0)
            tn_err_fail(&inner, ".name: twice in the response (also resources[%zu])", k);
    if (inner.failed)
        return fail_resource(err, "Listener", r->name ? r->name : pb->name, &inner);
    struct dlis *d = dlis_find(x, pb->name);
    struct lver *cur = d ? (d->warming ? d->warming : d->active) : NULL;
    if (cur && cur->len == r->len && memcmp(cur->bytes, r->bytes, r->len) == 0) {
        lver_free(v);
        out->v = NULL;
        out->name = cur->l->name;
        return 0; /* unchanged: it keeps serving as it is */
    }
    v->l = tn_listener_compile(pb, &inner);
    if (v->l == NULL)
        return fail_resource(err, "Listener", pb->name, &inner);
    struct tn_listener *l = v->l;
    for (size_t k = 0; k < x->cfg->n_listeners && !inner.failed; k++)
        if (tn_address_same(&x->cfg->listeners[k]->addr, &l->addr))
            tn_err_fail(&inner, ".address: %s is the address of static listener '%s'", l->addr.text,
                        x->cfg->listeners[k]->name);
    for (struct dlis *o = x->dlis; o && !inner.failed; o = o->next) {
        struct lver *ov = o->warming ? o->warming : o->active;
        if (o != d && ov && tn_address_same(&ov->l->addr, &l->addr))
            tn_err_fail(&inner, ".address: %s is the address of listener '%s'", l->addr.text, o->name);
    }
    for (size_t k = 0; k < i && !inner.failed; k++)
        if (seen[k].v && tn_address_same(&seen[k].v->l->addr, &l->addr))
            tn_err_fail(&inner, ".address: %s is also the address of resources[%zu]", l->addr.text, k);
    if (!inner.failed && l->hcm.routes) {
        size_t mark = tn_err_push(&inner, "%s", l->route_config_path);
        if (tn_config_check_routes(x->cfg, l->hcm.routes, &inner) == 0)
            tn_err_pop(&inner, mark);
    }
    if (!inner.failed && l->hcm.rds_name) {
        size_t mark = tn_err_push(&inner, "%s", l->rds_source_path);
        if (tn_config_check_source(x->cfg, &l->hcm.rds_source, &inner) == 0 &&
            (l->hcm.rds_index = rds_register(x, l->hcm.rds_name, &l->hcm.rds_source, &inner)) != (size_t)-1)
            tn_err_pop(&inner, mark);
    }
    if (!inner.failed && x->hooks.listener_bind &&
        x->hooks.listener_bind(x->arg, l, d && d->active ? d->active->l : NULL, &inner) == 0)
        out->bound = true;
    if (inner.failed)
        return fail_resource(err, "Listener", pb->name, &inner);
    if ((v->bytes = malloc(r->len + 1)) != NULL) {
        memcpy(v->bytes, r->bytes, r->len);
        v->len = r->len;
    }
    return 0;
}

static void lfails_clear(struct tn_xds *x)
{
    while (x->lfails) {
        struct lfail *f = x->lfails;
        x->lfails = f->next;
        free(f->name);
        free(f->details);
        if (f->pb)
            envoy__config__listener__v3__listener__free_unpacked(f->pb, NULL);
        free(f);
    }
}

/* Keeps what the response failed on: the listener (taken from v) and why. */
static void lfail_keep(struct tn_xds *x, struct lver *v, const char *details)
{
    struct lfail *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->name = strdup(v->pb->name)) == NULL || (f->details = strdup(details)) == NULL) {
        if (f)
            free(f->name);
        free(f);
        return;
    }
    f->ms = wall_ms();
    f->pb = v->pb;
    v->pb = NULL;
    f->next = x->lfails;
    x->lfails = f;
}

static int on_lds(void *arg, const struct tn_sub_update *u, struct tn_err *err)
{
    struct tn_xds *x = arg;
    size_t n = u->n_resources;
    struct lds_new *nv = calloc(n + 1, sizeof(*nv));
    int rc = -1;
    x->lds.update_attempt++;
    if (nv == NULL) {
        tn_err_fail(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (lds_one(x, u, i, &nv[i], nv, err)) {
            lfails_clear(x);
            if (nv[i].v && nv[i].v->pb)
                lfail_keep(x, nv[i].v, err->msg);
            goto out;
        }
    lfails_clear(x); /* Envoy: until the next accepted update */
    if (!u->delta) {
        for (struct dlis *d = x->dlis, *next; d; d = next) {
            next = d->next;
            bool kept = false;
            for (size_t i = 0; i < n && !kept; i++)
                kept = strcmp(nv[i].name, d->name) == 0;
            if (!kept)
                dlis_remove(x, d);
        }
    } else {
        for (size_t i = 0; i < u->n_removed; i++) {
            struct dlis *d = dlis_find(x, u->removed[i]);
            if (d)
                dlis_remove(x, d);
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct lver *v = nv[i].v;
        if (v == NULL)
            continue;
        nv[i].v = NULL;
        v->version = strdup(r_version(u, i));
        v->updated_ms = wall_ms();
        struct dlis *d = dlis_find(x, v->l->name);
        if (d == NULL) {
            if ((d = calloc(1, sizeof(*d))) == NULL || (d->name = strdup(v->l->name)) == NULL) {
                TN_LOG(TN_LOG_ERROR, xds, "listener '%s': out of memory adding it", v->l->name);
                if (x->hooks.listener_down)
                    x->hooks.listener_down(x->arg, v->l, false);
                free(d);
                lver_free(v);
                continue;
            }
            d->next = x->dlis;
            x->dlis = d;
            x->lds.listener_added++;
        } else {
            x->lds.listener_modified++;
        }
        if (d->warming) { /* replaced before it ever served */
            if (x->hooks.listener_down)
                x->hooks.listener_down(x->arg, d->warming->l, false);
            lver_free(d->warming);
        }
        d->warming = v;
        TN_LOG(TN_LOG_INFO, xds, "listener '%s' %s by the control plane (version %s)%s", d->name,
               d->active ? "changed" : "added", v->version,
               v->l->hcm.rds_name && !x->rds[v->l->hcm.rds_index].have ? ": warming until its routes come" : "");
        dlis_try_activate(x, d);
    }
    if (watch_rds(x))
        TN_LOG(TN_LOG_ERROR, xds, "out of memory asking for the new listeners' route configurations");
    x->lds.update_success++;
    if (n == 0 && !u->delta)
        x->lds.update_empty++;
    free(x->lds.version);
    x->lds.version = strdup(u->version ? u->version : "");
    if (!x->lds_have) {
        x->lds_have = true;
        wait_done(x, W_LDS, NULL, 0);
        check_ready(x);
    }
    rc = 0;
out:
    if (rc)
        x->lds.update_rejected++;
    for (size_t i = 0; nv && i < n; i++) {
        if (nv[i].bound && nv[i].v && x->hooks.listener_down)
            x->hooks.listener_down(x->arg, nv[i].v->l, false);
        lver_free(nv[i].v);
    }
    free(nv);
    return rc;
}

/* The gRPC target: google_grpc's URI, or the first endpoint of envoy_grpc's
 * (static) cluster. */
static int target_of(const struct tn_config *cfg, const char *cluster, const char *uri, char *out, size_t cap,
                     struct tn_err *err)
{
    if (uri) {
        snprintf(out, cap, "%s", uri);
        return 0;
    }
    const struct tn_cluster *c = tn_config_cluster(cfg, cluster);
    if (c == NULL || c->endpoints == NULL || c->endpoints->n_endpoints == 0)
        return tn_err_fail(err, "cluster '%s' has no endpoint to reach the control plane at", cluster ? cluster : "");
    const struct tn_address *a = &c->endpoints->endpoints[0].addr;
    tn_ads_target_for(a->host, a->port, out, cap);
    return 0;
}

/* The source of `spec` for type_url (a stream reaching its control plane
 * at the gRPC target of its cluster), opened when new. NULL with err set
 * when it cannot be. */
static struct tn_sub_src *src_open(struct tn_xds *x, const struct tn_source *spec, const char *type_url,
                                   struct tn_err *err)
{
    char target[512] = "";
    struct tn_sub_src *s = tn_sub_find(x->sub, spec, type_url);
    if (s == NULL && (spec->kind == TN_SOURCE_GRPC || spec->kind == TN_SOURCE_DELTA_GRPC) &&
        target_of(x->cfg, spec->cluster, spec->target, target, sizeof(target), err))
        return NULL;
    return tn_sub_open(x->sub, spec, type_url, target, err);
}

static int by_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Asks each source for the assignments of the EDS clusters (static and
 * from CDS) it serves, when that set of names changed. */
static int watch_eds(struct tn_xds *x)
{
    const struct tn_config *cfg = x->cfg;
    const char **names = calloc(cfg->n_clusters + x->n_dyns + 1, sizeof(*names));
    int rc = 0;
    if (names == NULL)
        return -1;
    for (struct tn_sub_src *s = tn_sub_next(x->sub, NULL); s; s = tn_sub_next(x->sub, s)) {
        if (tn_sub_type(s) && strcmp(tn_sub_type(s), TN_TYPE_ENDPOINT) != 0)
            continue;
        size_t n = 0;
        void *seen = NULL; /* tsearch: CDS may bring thousands of EDS clusters */
        struct dyn *d = x->dyns;
        for (size_t i = 0; i < cfg->n_clusters || d; i++) {
            const struct tn_cluster *c = i < cfg->n_clusters ? cfg->clusters[i] : d->c;
            if (i >= cfg->n_clusters)
                d = d->next;
            if (c->type != TN_CLUSTER_EDS || tn_sub_find(x->sub, &c->eds_source, TN_TYPE_ENDPOINT) != s)
                continue;
            const char **at = tsearch(eds_name(c), &seen, by_str);
            if (at == NULL)
                rc = -1;
            else if (*at == eds_name(c))
                names[n++] = eds_name(c);
        }
        tdestroy(seen, no_free);
        if (rc == 0 && tn_sub_ask(s, TN_TYPE_ENDPOINT, names, n))
            rc = -1;
    }
    free(names);
    return rc;
}

/* Asks each source for the route configurations it serves. */
static bool rds_named(const struct tn_xds *x, size_t k)
{
    for (size_t i = 0; i < x->cfg->n_listeners; i++) {
        const struct tn_hcm *h = &x->cfg->listeners[i]->hcm;
        if (h->rds_name && h->rds_index == k)
            return true;
    }
    for (const struct dlis *d = x->dlis; d; d = d->next)
        for (const struct lver *v = d->active;; v = d->warming) {
            if (v && v->l->hcm.rds_name && v->l->hcm.rds_index == k)
                return true;
            if (v == d->warming)
                break;
        }
    return false;
}

/* Asks each source for the route configurations the listeners name now. A
 * configuration no listener names any more is let go (unsubscribed, its
 * table dropped: named again, it warms again); one named again is asked
 * for, its initial_fetch_timeout running again. */
static int watch_rds(struct tn_xds *x)
{
    for (size_t k = 0; k < x->n_rds; k++) {
        struct rds_slot *r = &x->rds[k];
        bool named = rds_named(x, k);
        if (r->asked && !named) {
            r->asked = r->have = false;
            wait_done(x, W_RDS, NULL, k);
            rds_keep(x, k, NULL, "");
            if (x->hooks.routes)
                x->hooks.routes(x->arg, k, NULL);
        } else if (!r->asked && named) {
            r->asked = true;
            if (!r->have && r->fetch_timeout_ms && wait_start(x, W_RDS, NULL, k, r->fetch_timeout_ms))
                return -1;
            tn_sub_replay(r->src); /* a file: what it has */
        }
    }
    const char **names = calloc(x->n_rds + 1, sizeof(*names));
    int rc = 0;
    if (names == NULL)
        return -1;
    for (struct tn_sub_src *s = tn_sub_next(x->sub, NULL); s; s = tn_sub_next(x->sub, s)) {
        if (tn_sub_type(s) && strcmp(tn_sub_type(s), TN_TYPE_ROUTE) != 0)
            continue;
        size_t n = 0;
        for (size_t i = 0; i < x->n_rds; i++)
            if (x->rds[i].src == s && x->rds[i].asked)
                names[n++] = x->rds[i].name;
        if (tn_sub_ask(s, TN_TYPE_ROUTE, names, n))
            rc = -1;
    }
    free(names);
    return rc;
}

/* --- initial fetches ---------------------------------------------------------------- */

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
               x->rds[w->rds_index].name);
        x->rds[w->rds_index].have = true;
        lds_rds_came(x, w->rds_index);
        break;
    case W_CDS:
        TN_LOG(TN_LOG_WARN, xds,
               "no clusters from the control plane within initial_fetch_timeout: serving without them");
        x->cds_have = true;
        break;
    case W_LDS:
        TN_LOG(TN_LOG_WARN, xds,
               "no listeners from the control plane within initial_fetch_timeout: serving without them");
        x->lds_have = true;
        break;
    }
    check_ready(x);
}

static int wait_start(struct tn_xds *x, enum wait_kind kind, const struct tn_cluster *c, size_t rds_index,
                      uint64_t ms)
{
    struct wait *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -1;
    w->x = x;
    w->kind = kind;
    w->c = c;
    w->rds_index = rds_index;
    w->armed = true;
    uv_timer_init(x->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_wait_timeout, ms, 0);
    w->next = x->waits;
    x->waits = w;
    x->n_open++;
    return 0;
}

static size_t rds_register(struct tn_xds *x, const char *name, const struct tn_source *spec, struct tn_err *err)
{
    size_t k = rds_index_of(x, name);
    if (k != (size_t)-1)
        return k;
    if (x->n_rds == x->cap_rds) {
        size_t cap = x->cap_rds ? x->cap_rds * 2 : 8;
        struct rds_slot *v = realloc(x->rds, cap * sizeof(*v));
        if (v == NULL) {
            tn_err_fail(err, "out of memory");
            return (size_t)-1;
        }
        x->rds = v;
        x->cap_rds = cap;
    }
    /* the slot first: a file opened now hands its routes over at once */
    k = x->n_rds;
    x->rds[k] = (struct rds_slot){.name = strdup(name)};
    if (x->rds[k].name == NULL) {
        tn_err_fail(err, "out of memory");
        return (size_t)-1;
    }
    x->n_rds++;
    struct tn_sub_src *s = src_open(x, spec, TN_TYPE_ROUTE, err);
    if (s == NULL) {
        /* nothing points at the slot yet: it goes (its stats never counted) */
        if (x->rds[k].st.pb)
            protobuf_c_message_free_unpacked(x->rds[k].st.pb, NULL);
        free(x->rds[k].st.version);
        free(x->rds[k].name);
        x->n_rds--;
        return (size_t)-1;
    }
    x->rds[k].src = s;
    x->rds[k].fetch_timeout_ms = spec->fetch_timeout_ms;
    return k; /* asked for by watch_rds once a listener names it */
}

/* What the bootstrap asks for, in the order Envoy asks: clusters (CDS and
 * the static EDS ones' endpoints), then listeners, then routes. */
static int start_sources(struct tn_xds *x, struct tn_err *err)
{
    const struct tn_config *cfg = x->cfg;
    if (cfg->ads_api != TN_XDS_NONE) {
        char target[512];
        size_t mark = tn_err_push(err, "dynamic_resources.ads_config");
        if (target_of(cfg, cfg->ads_cluster, cfg->ads_target, target, sizeof(target), err))
            return -1;
        tn_err_pop(err, mark);
        if (tn_sub_ads(x->sub, target, cfg->ads_api == TN_XDS_DELTA_GRPC,
                       cfg->bootstrap->dynamic_resources->ads_config->set_node_on_first_message_only, err))
            return -1;
    }
    if (cfg->cds_dynamic) {
        if (cfg->cds_source.fetch_timeout_ms && wait_start(x, W_CDS, NULL, 0, cfg->cds_source.fetch_timeout_ms))
            return tn_err_fail(err, "out of memory");
        if ((x->cds_src = src_open(x, &cfg->cds_source, TN_TYPE_CLUSTER, err)) == NULL)
            return -1;
    }
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        const struct tn_cluster *c = cfg->clusters[i];
        if (c->type != TN_CLUSTER_EDS)
            continue;
        if (c->eds_source.fetch_timeout_ms && wait_start(x, W_EDS, c, 0, c->eds_source.fetch_timeout_ms))
            return tn_err_fail(err, "out of memory");
        if (src_open(x, &c->eds_source, TN_TYPE_ENDPOINT, err) == NULL)
            return -1;
    }
    if (watch_eds(x))
        return tn_err_fail(err, "out of memory");
    if (cfg->lds_dynamic) {
        if (cfg->lds_source.fetch_timeout_ms && wait_start(x, W_LDS, NULL, 0, cfg->lds_source.fetch_timeout_ms))
            return tn_err_fail(err, "out of memory");
        if ((x->lds_src = src_open(x, &cfg->lds_source, TN_TYPE_LISTENER, err)) == NULL)
            return -1;
    }
    for (size_t i = 0; i < cfg->n_rds; i++)
        if (rds_register(x, cfg->rds_names[i], cfg->rds_sources[i], err) != i)
            return -1;
    return watch_rds(x) ? tn_err_fail(err, "out of memory") : 0;
}

static bool wants_xds(const struct tn_config *cfg)
{
    if (cfg->ads_api != TN_XDS_NONE || cfg->lds_dynamic || cfg->cds_dynamic || cfg->n_rds)
        return true;
    for (size_t i = 0; i < cfg->n_clusters; i++)
        if (cfg->clusters[i]->type == TN_CLUSTER_EDS)
            return true;
    return false;
}

struct tn_xds *tn_xds_start(uv_loop_t *loop, struct tn_config *cfg, struct tn_cm *cm, const struct tn_xds_hooks *hooks,
                            void *arg, struct tn_err *err)
{
    if (!wants_xds(cfg))
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
    x->cds_have = !cfg->cds_dynamic;
    x->lds_have = !cfg->lds_dynamic;
    x->ready_fired = true; /* not while starting: a file's first read comes now */
    uv_timer_init(loop, &x->later);
    x->later.data = x;
    x->n_open++;
    const struct tn_sub_ops ops = {
        .on_listeners = on_lds, .on_routes = on_rds, .on_clusters = on_cds, .on_endpoints = on_eds};
    if ((x->sub = tn_sub_new(loop, cfg->bootstrap->node, &ops, x)) == NULL)
        tn_err_fail(err, "out of memory");
    if (err->failed || start_sources(x, err)) {
        tn_xds_close(x);
        return NULL;
    }
    x->ready_fired = false;
    check_ready(x);
    return x;
}

size_t tn_xds_n_rds(const struct tn_xds *x)
{
    return x ? x->n_rds : 0;
}

const struct tn_xds_rds *tn_xds_rds(const struct tn_xds *x, size_t i)
{
    return x && i < x->n_rds ? &x->rds[i].st : NULL;
}

const struct tn_xds_cds *tn_xds_cds(const struct tn_xds *x)
{
    return x ? &x->cds : NULL;
}

const struct tn_xds_lds *tn_xds_lds(const struct tn_xds *x)
{
    return x ? &x->lds : NULL;
}

uint64_t tn_xds_cds_failures(const struct tn_xds *x)
{
    return x ? tn_sub_failures(x->cds_src) : 0;
}

uint64_t tn_xds_lds_failures(const struct tn_xds *x)
{
    return x ? tn_sub_failures(x->lds_src) : 0;
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

static void lver_out(const struct lver *v, struct tn_xds_lver *out)
{
    if (v)
        *out = (struct tn_xds_lver){
            .l = v->l, .version = v->version, .updated_ms = v->updated_ms, .pb = v->pb ? &v->pb->base : NULL};
}

size_t tn_xds_listeners(const struct tn_xds *x, struct tn_xds_listener *out, size_t cap)
{
    size_t n = 0;
    for (const struct lfail *f = x ? x->lfails : NULL; f; f = f->next) /* a name of none below */
        if (dlis_find((struct tn_xds *)x, f->name) == NULL && n++ < cap)
            out[n - 1] = (struct tn_xds_listener){.name = f->name};
    for (const struct dlis *d = x ? x->dlis : NULL; d; d = d->next, n++)
        if (n < cap) {
            out[n] = (struct tn_xds_listener){.name = d->name};
            lver_out(d->active, &out[n].active);
            lver_out(d->warming, &out[n].warming);
        }
    for (size_t i = 0; i < n && i < cap; i++)
        for (const struct lfail *f = x->lfails; f; f = f->next)
            if (strcmp(f->name, out[i].name) == 0)
                out[i].error = (struct tn_xds_lerror){.details = f->details, .ms = f->ms, .pb = &f->pb->base};
    return n;
}

bool tn_xds_connected(const struct tn_xds *x)
{
    return x ? tn_sub_connected(x->sub) : false;
}

static void xds_free(struct tn_xds *x)
{
    lfails_clear(x);
    for (size_t i = 0; i < x->n_rds; i++) {
        if (x->rds[i].st.pb)
            protobuf_c_message_free_unpacked(x->rds[i].st.pb, NULL);
        free(x->rds[i].st.version);
        free(x->rds[i].name);
    }
    free(x->rds);
    tdestroy(x->dyn_index, no_free);
    free(x->cds.version);
    free(x->lds.version);
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
    struct tn_xds *x = w->x;
    free(w);
    xds_release(x);
}

static void on_later_closed(uv_handle_t *h)
{
    xds_release(h->data);
}

/* Closes every handle of x; the last close frees it. */
static void xds_free_or_close(struct tn_xds *x)
{
    x->closing = true;
    while (x->dlis) {
        struct dlis *d = x->dlis;
        x->dlis = d->next;
        lver_free(d->active);
        lver_free(d->warming);
        free(d->name);
        free(d);
    }
    if (x->n_open == 0) {
        xds_free(x);
        return;
    }
    for (struct wait *w = x->waits, *next; w; w = next) {
        next = w->next;
        uv_close((uv_handle_t *)&w->timer, on_wait_closed);
    }
    uv_close((uv_handle_t *)&x->later, on_later_closed);
    x->waits = NULL;
    while (x->dyns)
        dyn_drop(x, x->dyns);
}

void tn_xds_close(struct tn_xds *x)
{
    tn_sub_close(x->sub);
    x->sub = NULL;
    x->cds_src = x->lds_src = NULL;
    xds_free_or_close(x);
}
