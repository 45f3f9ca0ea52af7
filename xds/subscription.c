#define _GNU_SOURCE /* asprintf */
#include "xds/subscription.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/core/log.h"
#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "xds/ads.h"
#include "xds/filesub.h"

/* Names last asked of a stream for one type. */
struct names {
    char **v;
    size_t n;
};

/* What a file gave last, kept as bytes. */
struct last {
    char *type_url, *version;
    struct tn_ads_resource *res;
    size_t n;
};

/* A stream (the aggregated one, or a type's own service) or a file that
 * resources come from. */
struct tn_sub_src {
    struct tn_sub_src *next;
    struct tn_sub *sub;
    struct tn_source spec; /* strings owned */
    const char *type_url;  /* NULL: the aggregated stream, which carries every type */
    struct tn_ads *ads;
    struct tn_filesub *fs;
    struct names eds, rds;
    struct last *last; /* a file's last accepted content, replayed to resources that come to need it */
    bool cds, lds;     /* the aggregated stream: opened for clusters, for listeners */
};

struct tn_sub {
    uv_loop_t *loop;
    const Envoy__Config__Core__V3__Node *node;
    struct tn_sub_ops ops;
    void *arg;
    struct tn_sub_src *srcs, *ads_src;
};

/* --- decoding and dispatch ------------------------------------------------------- */

static const ProtobufCMessageDescriptor *descriptor_of(const char *type_url)
{
    if (strcmp(type_url, TN_TYPE_LISTENER) == 0)
        return &envoy__config__listener__v3__listener__descriptor;
    if (strcmp(type_url, TN_TYPE_ROUTE) == 0)
        return &envoy__config__route__v3__route_configuration__descriptor;
    if (strcmp(type_url, TN_TYPE_CLUSTER) == 0)
        return &envoy__config__cluster__v3__cluster__descriptor;
    return &envoy__config__endpoint__v3__cluster_load_assignment__descriptor;
}

/* The callback for u's type on s, NULL when s does not carry it: a type's
 * own stream or file of clusters or listeners is CDS's or LDS's, the
 * aggregated stream's only when opened for them. */
static tn_sub_update_cb callback_of(const struct tn_sub_src *s, const char *type_url)
{
    const struct tn_sub_ops *ops = &s->sub->ops;
    if (strcmp(type_url, TN_TYPE_ENDPOINT) == 0)
        return ops->on_endpoints;
    if (strcmp(type_url, TN_TYPE_ROUTE) == 0)
        return ops->on_routes;
    if (strcmp(type_url, TN_TYPE_CLUSTER) == 0 && (s->type_url || s->cds))
        return ops->on_clusters;
    if (strcmp(type_url, TN_TYPE_LISTENER) == 0 && (s->type_url || s->lds))
        return ops->on_listeners;
    return NULL;
}

static void resources_free(struct tn_sub_resource *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++) {
        if (r[i].pb)
            protobuf_c_message_free_unpacked(r[i].pb, NULL);
        free(r[i].error);
    }
    free(r);
}

/* Decodes u's resources (each of u's type) and hands them to cb. */
static int decode_and_call(struct tn_sub *x, tn_sub_update_cb cb, const struct tn_ads_update *u, struct tn_err *err)
{
    const ProtobufCMessageDescriptor *desc = descriptor_of(u->type_url);
    struct tn_sub_resource *res = calloc(u->n_resources + 1, sizeof(*res));
    if (res == NULL)
        return tn_err_fail(err, "out of memory");
    for (size_t i = 0; i < u->n_resources; i++) {
        const struct tn_ads_resource *r = &u->resources[i];
        char *why = NULL;
        res[i] = (struct tn_sub_resource){.name = r->name, .version = r->version, .bytes = r->value, .len = r->len};
        if (strcmp(r->type_url, u->type_url) != 0) {
            if (asprintf(&why, "resources[%zu]: type %s in a %s response", i, r->type_url, u->type_url) < 0)
                why = NULL;
        } else if ((res[i].pb = protobuf_c_message_unpack(desc, NULL, r->len, r->value)) == NULL) {
            if (asprintf(&why, "resources[%zu]: not a valid %s", i, desc->short_name) < 0)
                why = NULL;
        }
        if (res[i].pb == NULL && (res[i].error = why) == NULL) {
            resources_free(res, i + 1);
            return tn_err_fail(err, "out of memory");
        }
    }
    struct tn_sub_update d = {.type_url = u->type_url,
                              .version = u->version,
                              .delta = u->delta,
                              .resources = res,
                              .n_resources = u->n_resources,
                              .removed = u->removed,
                              .n_removed = u->n_removed};
    int rc = cb(x->arg, &d, err);
    resources_free(res, u->n_resources);
    return rc;
}

static int dispatch(struct tn_sub_src *s, const struct tn_ads_update *u, struct tn_err *err)
{
    if (s->type_url && strcmp(u->type_url, s->type_url) != 0)
        return tn_err_fail(err, "type %s from a source configured for %s", u->type_url, s->type_url);
    tn_sub_update_cb cb = callback_of(s, u->type_url);
    if (cb == NULL)
        return tn_err_fail(err, "type %s is not watched by tern on this stream", u->type_url);
    return decode_and_call(s->sub, cb, u, err);
}

/* --- streams and files ---------------------------------------------------------- */

static void last_free(struct last *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->res[i].type_url);
        free((uint8_t *)l->res[i].value);
    }
    free(l->res);
    free(l->type_url);
    free(l->version);
    free(l);
}

/* Keeps a copy of u (a file's accepted content) in s->last. */
static void last_keep(struct tn_sub_src *s, const struct tn_ads_update *u)
{
    struct last *l = calloc(1, sizeof(*l));
    bool ok = l && (l->res = calloc(u->n_resources + 1, sizeof(*l->res))) && (l->type_url = strdup(u->type_url)) &&
              (l->version = strdup(u->version ? u->version : ""));
    for (size_t i = 0; ok && i < u->n_resources; i++, l->n++) {
        uint8_t *v = malloc(u->resources[i].len + 1);
        char *t = strdup(u->resources[i].type_url);
        if (v)
            memcpy(v, u->resources[i].value, u->resources[i].len);
        l->res[i] = (struct tn_ads_resource){.type_url = t, .value = v, .len = u->resources[i].len};
        ok = v && t;
    }
    if (!ok) {
        TN_LOG(TN_LOG_ERROR, xds, "out of memory keeping what a file gave");
        last_free(l);
        l = NULL;
    }
    last_free(s->last);
    s->last = l;
}

static int on_update(void *arg, const struct tn_ads_update *u, struct tn_err *err)
{
    struct tn_sub_src *s = arg;
    struct tn_ads_update typed;
    if (s->type_url && (u->type_url == NULL || *u->type_url == '\0')) {
        /* a file with no resources and no type_url: nothing of its type */
        typed = *u;
        typed.type_url = s->type_url;
        u = &typed;
    }
    int rc = dispatch(s, u, err);
    if (rc == 0 && s->spec.kind == TN_SOURCE_PATH) /* s->fs is not set during the first read */
        last_keep(s, u);
    return rc;
}

void tn_sub_replay(struct tn_sub_src *s)
{
    struct last *l = s->last;
    if (l == NULL)
        return;
    s->last = NULL; /* on_update keeps it again */
    struct tn_ads_update u = {.type_url = l->type_url, .version = l->version, .resources = l->res, .n_resources = l->n};
    struct tn_err err;
    tn_err_init(&err);
    if (on_update(s, &u, &err))
        TN_LOG(TN_LOG_WARN, xds, "%s: version '%s' no longer applies: %s", s->spec.path, l->version, err.msg);
    if (s->last == NULL)
        s->last = l;
    else
        last_free(l);
}

static void on_state(void *arg, bool connected)
{
    struct tn_sub_src *s = arg;
    const char *what = s->type_url ? strrchr(s->type_url, '.') + 1 : "ADS";
    TN_LOG(connected ? TN_LOG_INFO : TN_LOG_WARN, xds, "control plane (%s) %s", what,
           connected ? "connected" : "disconnected");
}

/* The service method of a type's own stream. */
static const char *method_of(const char *type_url, bool delta)
{
    static const struct {
        const char *type, *sotw, *delta;
    } m[] = {
        {TN_TYPE_LISTENER, "/envoy.service.listener.v3.ListenerDiscoveryService/StreamListeners",
         "/envoy.service.listener.v3.ListenerDiscoveryService/DeltaListeners"},
        {TN_TYPE_ROUTE, "/envoy.service.route.v3.RouteDiscoveryService/StreamRoutes",
         "/envoy.service.route.v3.RouteDiscoveryService/DeltaRoutes"},
        {TN_TYPE_CLUSTER, "/envoy.service.cluster.v3.ClusterDiscoveryService/StreamClusters",
         "/envoy.service.cluster.v3.ClusterDiscoveryService/DeltaClusters"},
        {TN_TYPE_ENDPOINT, "/envoy.service.endpoint.v3.EndpointDiscoveryService/StreamEndpoints",
         "/envoy.service.endpoint.v3.EndpointDiscoveryService/DeltaEndpoints"},
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        if (strcmp(m[i].type, type_url) == 0)
            return delta ? m[i].delta : m[i].sotw;
    return NULL;
}

static void names_free(struct names *n)
{
    for (size_t i = 0; i < n->n; i++)
        free(n->v[i]);
    free(n->v);
    n->v = NULL;
    n->n = 0;
}

static void src_free(struct tn_sub_src *s)
{
    if (s->ads)
        tn_ads_close(s->ads);
    if (s->fs)
        tn_filesub_close(s->fs);
    names_free(&s->eds);
    names_free(&s->rds);
    last_free(s->last);
    free((char *)s->spec.cluster);
    free((char *)s->spec.target);
    free((char *)s->spec.path);
    free((char *)s->spec.watched_dir);
    free(s);
}

static char *dup_or_null(const char *p, bool *oom)
{
    char *d = p ? strdup(p) : NULL;
    if (p && d == NULL)
        *oom = true;
    return d;
}

struct tn_sub *tn_sub_new(uv_loop_t *loop, const Envoy__Config__Core__V3__Node *node, const struct tn_sub_ops *ops,
                          void *arg)
{
    struct tn_sub *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->loop = loop;
    x->node = node;
    x->ops = *ops;
    x->arg = arg;
    return x;
}

int tn_sub_ads(struct tn_sub *x, const char *target, bool delta, bool node_first_only, struct tn_err *err)
{
    struct tn_sub_src *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return tn_err_fail(err, "out of memory");
    s->sub = x;
    struct tn_ads_options o = {
        .target = target,
        .delta = delta,
        .node = x->node,
        .node_first_only = node_first_only,
    };
    if ((s->ads = tn_ads_new(x->loop, &o, on_update, on_state, s, err)) == NULL) {
        free(s);
        return -1;
    }
    s->next = x->srcs;
    x->srcs = x->ads_src = s;
    return 0;
}

/* The aggregated stream for type_url: opened for clusters or listeners, it
 * asks for all of them. */
static struct tn_sub_src *ads_open(struct tn_sub *x, const char *type_url, struct tn_err *err)
{
    struct tn_sub_src *s = x->ads_src;
    if (s == NULL) {
        tn_err_fail(err, "ads: the bootstrap has no dynamic_resources.ads_config");
        return NULL;
    }
    bool *wild = NULL;
    if (strcmp(type_url, TN_TYPE_CLUSTER) == 0)
        wild = &s->cds;
    else if (strcmp(type_url, TN_TYPE_LISTENER) == 0)
        wild = &s->lds;
    if (wild && !*wild) {
        if (tn_ads_watch(s->ads, type_url, NULL, 0, true)) {
            tn_err_fail(err, "out of memory");
            return NULL;
        }
        *wild = true;
    }
    return s;
}

struct tn_sub_src *tn_sub_open(struct tn_sub *x, const struct tn_source *spec, const char *type_url,
                               const char *target, struct tn_err *err)
{
    if (spec->kind == TN_SOURCE_ADS)
        return ads_open(x, type_url, err);
    struct tn_sub_src *s = tn_sub_find(x, spec, type_url);
    if (s)
        return s;
    s = calloc(1, sizeof(*s));
    bool oom = s == NULL;
    if (s) {
        s->sub = x;
        s->type_url = type_url;
        s->spec = *spec;
        s->spec.cluster = dup_or_null(spec->cluster, &oom);
        s->spec.target = dup_or_null(spec->target, &oom);
        s->spec.path = dup_or_null(spec->path, &oom);
        s->spec.watched_dir = dup_or_null(spec->watched_dir, &oom);
    }
    if (oom) {
        if (s)
            src_free(s);
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    /* listed first: a file's first read happens inside tn_filesub_new, and
     * what it brings may look for this source */
    s->next = x->srcs;
    x->srcs = s;
    if (spec->kind == TN_SOURCE_PATH) {
        s->fs = tn_filesub_new(x->loop, s->spec.path, s->spec.watched_dir, on_update, s, err);
    } else {
        struct tn_ads_options o = {
            .target = target,
            .delta = spec->kind == TN_SOURCE_DELTA_GRPC,
            .method = method_of(type_url, spec->kind == TN_SOURCE_DELTA_GRPC),
            .node = x->node,
            .node_first_only = spec->node_first_only,
        };
        s->ads = tn_ads_new(x->loop, &o, on_update, on_state, s, err);
        if (s->ads && (strcmp(type_url, TN_TYPE_CLUSTER) == 0 || strcmp(type_url, TN_TYPE_LISTENER) == 0) &&
            tn_ads_watch(s->ads, type_url, NULL, 0, true))
            tn_err_fail(err, "out of memory");
    }
    if (err->failed || (s->ads == NULL && s->fs == NULL)) {
        if (!err->failed)
            tn_err_fail(err, "out of memory");
        x->srcs = s->next;
        src_free(s);
        return NULL;
    }
    TN_LOG(TN_LOG_INFO, xds, "%s from %s%s", strrchr(type_url, '.') + 1,
           spec->kind == TN_SOURCE_PATH ? "file " : "the control plane's own service at ",
           spec->kind == TN_SOURCE_PATH ? s->spec.path : s->spec.cluster ? s->spec.cluster : s->spec.target);
    return s;
}

struct tn_sub_src *tn_sub_find(const struct tn_sub *x, const struct tn_source *spec, const char *type_url)
{
    if (spec->kind == TN_SOURCE_ADS)
        return x->ads_src;
    for (struct tn_sub_src *s = x->srcs; s; s = s->next)
        if (s->type_url && strcmp(s->type_url, type_url) == 0 && tn_source_same(&s->spec, spec))
            return s;
    return NULL;
}

struct tn_sub_src *tn_sub_next(const struct tn_sub *x, const struct tn_sub_src *prev)
{
    return prev ? prev->next : x->srcs;
}

const char *tn_sub_type(const struct tn_sub_src *s)
{
    return s->type_url;
}

int tn_sub_ask(struct tn_sub_src *s, const char *type_url, const char *const *names, size_t n)
{
    struct names *last = strcmp(type_url, TN_TYPE_ROUTE) == 0 ? &s->rds : &s->eds;
    bool same = n == last->n;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(names[i], last->v[i]) == 0;
    if (same)
        return 0;
    struct names keep = {calloc(n + 1, sizeof(char *)), 0};
    if (keep.v == NULL)
        return -1;
    for (; keep.n < n; keep.n++)
        if ((keep.v[keep.n] = strdup(names[keep.n])) == NULL) {
            names_free(&keep);
            return -1;
        }
    names_free(last);
    *last = keep;
    return s->ads ? tn_ads_watch(s->ads, type_url, names, n, false) : 0;
}

uint64_t tn_sub_failures(const struct tn_sub_src *s)
{
    if (s == NULL)
        return 0;
    if (s->fs)
        return tn_filesub_stats(s->fs)->update_failure;
    return s->ads ? tn_ads_stats(s->ads)->streams_closed : 0;
}

bool tn_sub_connected(const struct tn_sub *x)
{
    bool any = false;
    for (const struct tn_sub_src *s = x ? x->srcs : NULL; s; s = s->next)
        if (s->ads) {
            if (!tn_ads_connected(s->ads))
                return false;
            any = true;
        }
    return any;
}

void tn_sub_close(struct tn_sub *x)
{
    if (x == NULL)
        return;
    while (x->srcs) {
        struct tn_sub_src *s = x->srcs;
        x->srcs = s->next;
        src_free(s);
    }
    free(x);
}
