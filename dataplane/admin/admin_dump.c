/* /config_dump: the bootstrap and its static clusters, listeners and inline
 * route configurations, as Envoy's admin.v3 *ConfigDump messages.
 *
 * Route configurations from RDS are listed in dynamic_route_configs with
 * their version and the time they were accepted; listeners and clusters
 * come from static_resources only, so their dynamic_* lists are empty. The subset of the API tern loads has no
 * secrets (no SDS, no TLS keys), so nothing needs redacting yet; a secret
 * added later must be masked here. */
#include <stdlib.h>
#include <string.h>

#include "dataplane/admin/admin_int.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb-c.h"
#include "api/pb/pbjson.h"
#include "dataplane/server/xds.h"
#include "api/pb/types.h"

#define ADMIN_TYPE "type.googleapis.com/envoy.admin.v3."
#define MAX_ROUTES 64
#define MAX_MASKS  16

typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager pb_hcm;

struct dump {
    struct tn__admin_req *r;
    pb_hcm *hcms[MAX_ROUTES]; /* unpacked HCMs whose route_config is inline */
    size_t n_routes;
    /* the clusters and listeners from xDS, oldest first, taken once per
     * dump (CDS may hold thousands) */
    bool dyn_taken;
    struct tn_xds_cluster *dyn_clusters[2]; /* [0] active, [1] warming */
    size_t n_dyn_clusters[2];
    struct tn_xds_listener *dyn_listeners;
    size_t n_dyn_listeners;
};

/* Appends message m with "@type" first: {"@type":"<url>",<fields>}. */
static void typed(struct tn_buf *b, const char *url, const ProtobufCMessage *m)
{
    struct tn_buf tmp;
    tn_buf_init(&tmp);
    tn_pbjson_print(m, &tmp, 0);
    tn_buf_printf(b, "{\"@type\":\"%s\"", url);
    if (tmp.len > 2) { /* not "{}" */
        tn_buf_addc(b, ',');
        tn_buf_add(b, tmp.data + 1, tmp.len - 1);
    } else {
        tn_buf_addc(b, '}');
    }
    tn_buf_dispose(&tmp);
}

static void last_updated(struct dump *d, struct tn_buf *b)
{
    tn_buf_adds(b, ",\"last_updated\":\"");
    tn__admin_rfc3339(b, d->r->ctx->info.start_ms);
    tn_buf_addc(b, '"');
}

static const Envoy__Config__Bootstrap__V3__Bootstrap__StaticResources *statics(struct dump *d)
{
    const tn_pb_bootstrap *b = d->r->ctx->cfg->bootstrap;
    return b ? b->static_resources : NULL;
}

/* Every inline route_config of the static listeners' HTTP connection managers. */
static void find_routes(struct dump *d)
{
    const Envoy__Config__Bootstrap__V3__Bootstrap__StaticResources *sr = statics(d);
    const ProtobufCMessageDescriptor *hd =
        &envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager__descriptor;
    for (size_t i = 0; sr && i < sr->n_listeners; i++)
        for (size_t k = 0; k < sr->listeners[i]->n_filter_chains; k++) {
            const Envoy__Config__Listener__V3__FilterChain *fc = sr->listeners[i]->filter_chains[k];
            for (size_t f = 0; f < fc->n_filters && d->n_routes < MAX_ROUTES; f++) {
                const Google__Protobuf__Any *any = fc->filters[f]->typed_config;
                struct tn_err err;
                tn_err_init(&err);
                if (any == NULL || tn_type_find(any->type_url) != hd)
                    continue;
                pb_hcm *h = (pb_hcm *)tn_any_unpack((const ProtobufCMessage *)any, hd, &err);
                /* route_config and rds share a oneof: ask which one is set */
                if (h &&
                    h->route_specifier_case ==
                        ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__ROUTE_SPECIFIER_ROUTE_CONFIG)
                    d->hcms[d->n_routes++] = h;
                else if (h)
                    protobuf_c_message_free_unpacked(&h->base, NULL);
            }
        }
}

/* --- the lists (Envoy's repeated field names) ----------------------------------- */

struct list {
    const char *name;      /* "static_clusters" */
    const char *dump;      /* "ClustersConfigDump" */
    const char *item_type; /* "ClustersConfigDump.StaticCluster" */
    size_t (*count)(struct dump *d);
    void (*item)(struct dump *d, size_t i, struct tn_buf *b);
};

static size_t n_clusters(struct dump *d)
{
    return statics(d) ? statics(d)->n_clusters : 0;
}

static size_t n_listeners(struct dump *d)
{
    return statics(d) ? statics(d)->n_listeners : 0;
}

static size_t n_routes(struct dump *d)
{
    return d->n_routes;
}

static void item_cluster(struct dump *d, size_t i, struct tn_buf *b)
{
    tn_buf_adds(b, "{\"cluster\":");
    typed(b, "type.googleapis.com/envoy.config.cluster.v3.Cluster", &statics(d)->clusters[i]->base);
    last_updated(d, b);
    tn_buf_addc(b, '}');
}

static void item_listener(struct dump *d, size_t i, struct tn_buf *b)
{
    tn_buf_adds(b, "{\"listener\":");
    typed(b, "type.googleapis.com/envoy.config.listener.v3.Listener", &statics(d)->listeners[i]->base);
    last_updated(d, b);
    tn_buf_addc(b, '}');
}

static void item_route(struct dump *d, size_t i, struct tn_buf *b)
{
    tn_buf_adds(b, "{\"route_config\":");
    typed(b, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", &d->hcms[i]->route_config->base);
    last_updated(d, b);
    tn_buf_addc(b, '}');
}

static const struct tn_xds *xds_of(struct dump *d)
{
    const struct tn__admin_ctx *c = d->r->ctx;
    return c->ops && c->ops->xds ? c->ops->xds(c->arg) : NULL;
}

/* The n-th route configuration the control plane has given, or NULL. */
static const struct tn_xds_rds *dyn_route(struct dump *d, size_t n)
{
    const struct tn_xds *x = xds_of(d);
    for (size_t i = 0; x && i < tn_xds_n_rds(x); i++) {
        const struct tn_xds_rds *r = tn_xds_rds(x, i);
        if (r && r->pb && n-- == 0)
            return r;
    }
    return NULL;
}

static size_t n_dyn_routes(struct dump *d)
{
    size_t n = 0;
    while (dyn_route(d, n))
        n++;
    return n;
}

static void item_dyn_route(struct dump *d, size_t i, struct tn_buf *b)
{
    const struct tn_xds_rds *r = dyn_route(d, i);
    tn_buf_adds(b, "{\"version_info\":");
    tn_pbjson_string(b, r->version ? r->version : "", r->version ? strlen(r->version) : 0);
    tn_buf_adds(b, ",\"route_config\":");
    typed(b, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", r->pb);
    tn_buf_adds(b, ",\"last_updated\":\"");
    tn__admin_rfc3339(b, r->updated_ms);
    tn_buf_adds(b, "\"}");
}

/* Takes the clusters from CDS (split active / warming) and the listeners
 * from LDS, oldest first, once. */
static void take_dyn(struct dump *d)
{
    if (d->dyn_taken)
        return;
    d->dyn_taken = true;
    const struct tn_xds *x = xds_of(d);
    size_t n = tn_xds_clusters(x, NULL, 0);
    struct tn_xds_cluster *v = calloc(n + 1, sizeof(*v));
    for (int k = 0; k < 2; k++)
        d->dyn_clusters[k] = calloc(n + 1, sizeof(*v));
    if (v && d->dyn_clusters[0] && d->dyn_clusters[1]) {
        tn_xds_clusters(x, v, n);
        for (size_t i = n; i-- > 0;) {
            bool ready = d->r->ctx->cm && tn_cm_ready(d->r->ctx->cm, v[i].c);
            int k = ready ? 0 : 1;
            d->dyn_clusters[k][d->n_dyn_clusters[k]++] = v[i];
        }
    }
    free(v);
    n = tn_xds_listeners(x, NULL, 0);
    struct tn_xds_listener *l = calloc(n + 1, sizeof(*l));
    if ((d->dyn_listeners = calloc(n + 1, sizeof(*l))) != NULL && l) {
        tn_xds_listeners(x, l, n);
        for (size_t i = n; i-- > 0;)
            d->dyn_listeners[d->n_dyn_listeners++] = l[i];
    }
    free(l);
}

static size_t n_dyn_active(struct dump *d)
{
    take_dyn(d);
    return d->n_dyn_clusters[0];
}

static size_t n_dyn_warming(struct dump *d)
{
    take_dyn(d);
    return d->n_dyn_clusters[1];
}

static void item_dyn_cluster(struct dump *d, bool warming, size_t i, struct tn_buf *b)
{
    struct tn_xds_cluster c = d->dyn_clusters[warming][i];
    tn_buf_adds(b, "{\"version_info\":");
    tn_pbjson_string(b, c.version ? c.version : "", c.version ? strlen(c.version) : 0);
    tn_buf_adds(b, ",\"cluster\":");
    typed(b, "type.googleapis.com/envoy.config.cluster.v3.Cluster", c.pb);
    tn_buf_adds(b, ",\"last_updated\":\"");
    tn__admin_rfc3339(b, c.updated_ms);
    tn_buf_adds(b, "\"}");
}

static void item_dyn_active(struct dump *d, size_t i, struct tn_buf *b)
{
    item_dyn_cluster(d, false, i, b);
}

static void item_dyn_warming(struct dump *d, size_t i, struct tn_buf *b)
{
    item_dyn_cluster(d, true, i, b);
}

static size_t n_dyn_listeners(struct dump *d)
{
    take_dyn(d);
    return d->n_dyn_listeners;
}

static void lstate(struct tn_buf *b, const char *key, const struct tn_xds_lver *v)
{
    tn_buf_printf(b, ",\"%s\":{\"version_info\":", key);
    tn_pbjson_string(b, v->version ? v->version : "", v->version ? strlen(v->version) : 0);
    tn_buf_adds(b, ",\"listener\":");
    typed(b, "type.googleapis.com/envoy.config.listener.v3.Listener", v->pb);
    tn_buf_adds(b, ",\"last_updated\":\"");
    tn__admin_rfc3339(b, v->updated_ms);
    tn_buf_adds(b, "\"}");
}

static void item_dyn_listener(struct dump *d, size_t i, struct tn_buf *b)
{
    struct tn_xds_listener l = d->dyn_listeners[i];
    tn_buf_adds(b, "{\"name\":");
    tn_pbjson_string(b, l.name ? l.name : "", l.name ? strlen(l.name) : 0);
    if (l.active.l)
        lstate(b, "active_state", &l.active);
    if (l.warming.l)
        lstate(b, "warming_state", &l.warming);
    if (l.error.details) {
        tn_buf_adds(b, ",\"error_state\":{\"failed_configuration\":");
        typed(b, "type.googleapis.com/envoy.config.listener.v3.Listener", l.error.pb);
        tn_buf_adds(b, ",\"last_update_attempt\":\"");
        tn__admin_rfc3339(b, l.error.ms);
        tn_buf_adds(b, "\",\"details\":");
        tn_pbjson_string(b, l.error.details, strlen(l.error.details));
        tn_buf_addc(b, '}');
    }
    tn_buf_addc(b, '}');
}

static const struct list lists[] = {
    {"static_clusters", "ClustersConfigDump", "ClustersConfigDump.StaticCluster", n_clusters, item_cluster},
    {"dynamic_active_clusters", "ClustersConfigDump", "ClustersConfigDump.DynamicCluster", n_dyn_active,
     item_dyn_active},
    {"dynamic_warming_clusters", "ClustersConfigDump", "ClustersConfigDump.DynamicCluster", n_dyn_warming,
     item_dyn_warming},
    {"static_listeners", "ListenersConfigDump", "ListenersConfigDump.StaticListener", n_listeners, item_listener},
    {"dynamic_listeners", "ListenersConfigDump", "ListenersConfigDump.DynamicListener", n_dyn_listeners, item_dyn_listener},
    {"static_route_configs", "RoutesConfigDump", "RoutesConfigDump.StaticRouteConfig", n_routes, item_route},
    {"dynamic_route_configs", "RoutesConfigDump", "RoutesConfigDump.DynamicRouteConfig", n_dyn_routes, item_dyn_route},
};

#define N_LISTS (sizeof(lists) / sizeof(lists[0]))

/* --- ?mask: keep only the named fields (a.b for nested ones) --------------------- */

struct masks {
    const char *v[MAX_MASKS];
    size_t len[MAX_MASKS];
    size_t n;
};

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

/* Past one JSON value (the printer's output is well-formed). */
static const char *skip_value(const char *p)
{
    int depth = 0;
    p = skip_ws(p);
    do {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        } else if (depth == 0) {
            while (*p && *p != ',' && *p != '}' && *p != ']')
                p++;
            return p;
        }
        if (*p)
            p++;
    } while (*p && depth > 0);
    return p;
}

/* The masks below field key (len kl): "key.rest" becomes "rest"; whole is
 * set when "key" itself is named. */
static void sub_masks(const struct masks *m, const char *key, size_t kl, struct masks *sub, bool *whole)
{
    sub->n = 0;
    *whole = false;
    for (size_t i = 0; i < m->n; i++) {
        if (m->len[i] == kl && strncmp(m->v[i], key, kl) == 0)
            *whole = true;
        else if (m->len[i] > kl && m->v[i][kl] == '.' && strncmp(m->v[i], key, kl) == 0) {
            sub->v[sub->n] = m->v[i] + kl + 1;
            sub->len[sub->n++] = m->len[i] - kl - 1;
        }
    }
}

static void mask_object(struct tn_buf *out, const char *p, const struct masks *m, bool keep_type)
{
    bool first = true;
    p = skip_ws(p) + 1; /* '{' */
    tn_buf_addc(out, '{');
    while (*(p = skip_ws(p)) == '"') {
        const char *key = p + 1, *colon = skip_value(p);
        size_t kl = (size_t)(colon - key - 1);
        const char *val = skip_ws(skip_ws(colon) + 1), *end = skip_value(val);
        struct masks sub;
        bool whole;
        sub_masks(m, key, kl, &sub, &whole);
        if (whole || (keep_type && kl == 5 && strncmp(key, "@type", 5) == 0) || (sub.n && *val == '{')) {
            tn_buf_adds(out, first ? "" : ",");
            tn_buf_add(out, p, (size_t)(val - p));
            if (whole || !sub.n)
                tn_buf_add(out, val, (size_t)(end - val));
            else
                mask_object(out, val, &sub, false);
            first = false;
        }
        p = skip_ws(end);
        if (*p == ',')
            p++;
    }
    tn_buf_addc(out, '}');
}

static void parse_masks(const char *spec, struct masks *m)
{
    m->n = 0;
    while (spec && *spec && m->n < MAX_MASKS) {
        const char *comma = strchr(spec, ',');
        size_t len = comma ? (size_t)(comma - spec) : strlen(spec);
        if (len) {
            m->v[m->n] = spec;
            m->len[m->n++] = len;
        }
        spec = comma ? comma + 1 : NULL;
    }
}

/* Appends one element of "configs", masked when the request asks. */
static void emit(struct dump *d, const struct masks *m, struct tn_buf *elt, bool *first)
{
    tn_buf_adds(d->r->body, *first ? "" : ",");
    *first = false;
    if (m->n)
        mask_object(d->r->body, elt->data, m, true);
    else
        tn_buf_add(d->r->body, elt->data, elt->len);
    elt->len = 0;
}

/* --- the pages --------------------------------------------------------------------- */

static void bootstrap_dump(struct dump *d, struct tn_buf *b)
{
    tn_buf_adds(b, "{\"@type\":\"" ADMIN_TYPE "BootstrapConfigDump\",\"bootstrap\":");
    if (d->r->ctx->cfg->bootstrap)
        tn_pbjson_print(&d->r->ctx->cfg->bootstrap->base, b, 0);
    else
        tn_buf_adds(b, "{}");
    last_updated(d, b);
    tn_buf_addc(b, '}');
}

static void list_items(struct dump *d, const struct list *l, struct tn_buf *b)
{
    size_t n = l->count(d);
    tn_buf_printf(b, ",\"%s\":[", l->name);
    for (size_t i = 0; i < n; i++) {
        tn_buf_adds(b, i ? "," : "");
        l->item(d, i, b);
    }
    tn_buf_addc(b, ']');
}

/* One *ConfigDump: the lists from `from` on that share its type. Clusters
 * carry the version of the last CDS response, listeners "" (no LDS yet). */
static size_t group_dump(struct dump *d, size_t from, struct tn_buf *b)
{
    tn_buf_printf(b, "{\"@type\":\"" ADMIN_TYPE "%s\"", lists[from].dump);
    if (strcmp(lists[from].dump, "ClustersConfigDump") == 0) {
        const struct tn_xds_cds *cds = tn_xds_cds(xds_of(d));
        const char *v = cds && cds->version ? cds->version : "";
        tn_buf_adds(b, ",\"version_info\":");
        tn_pbjson_string(b, v, strlen(v));
    } else if (strcmp(lists[from].dump, "ListenersConfigDump") == 0) {
        const struct tn_xds_lds *lds = tn_xds_lds(xds_of(d));
        const char *v = lds && lds->version ? lds->version : "";
        tn_buf_adds(b, ",\"version_info\":");
        tn_pbjson_string(b, v, strlen(v));
    }
    size_t i = from;
    for (; i < N_LISTS && strcmp(lists[i].dump, lists[from].dump) == 0; i++)
        list_items(d, &lists[i], b);
    tn_buf_addc(b, '}');
    return i;
}

/* ?resource=<list>: that list's items, each with its own "@type". */
static int resource_dump(struct dump *d, const struct list *l, const struct masks *m)
{
    struct tn_buf elt, item;
    bool first = true;
    tn_buf_init(&elt);
    tn_buf_init(&item);
    size_t n = l->count(d);
    for (size_t i = 0; i < n; i++) {
        l->item(d, i, &item);
        tn_buf_printf(&elt, "{\"@type\":\"" ADMIN_TYPE "%s\",", l->item_type);
        tn_buf_add(&elt, item.data + 1, item.len - 1);
        item.len = 0;
        emit(d, m, &elt, &first);
    }
    tn_buf_dispose(&elt);
    tn_buf_dispose(&item);
    return 200;
}

static int full_dump(struct dump *d, const struct masks *m)
{
    struct tn_buf elt;
    bool first = true;
    tn_buf_init(&elt);
    bootstrap_dump(d, &elt);
    emit(d, m, &elt, &first);
    for (size_t i = 0; i < N_LISTS;) {
        i = group_dump(d, i, &elt);
        emit(d, m, &elt, &first);
    }
    tn_buf_dispose(&elt);
    return 200;
}

int tn__admin_config_dump(struct tn__admin_req *r)
{
    struct dump d = {.r = r};
    struct masks m;
    const char *resource = tn__admin_param(r, "resource");
    const struct list *l = NULL;
    int status;
    for (size_t i = 0; resource && i < N_LISTS && l == NULL; i++)
        if (strcmp(resource, lists[i].name) == 0)
            l = &lists[i];
    if (resource && *resource && l == NULL) {
        tn_buf_printf(r->body, "The resource %s in config_dump was not found\n", resource);
        return 404;
    }
    parse_masks(tn__admin_param(r, "mask"), &m);
    find_routes(&d);
    r->ctype = TN_ADMIN_JSON;
    tn_buf_adds(r->body, "{\"configs\":[");
    status = l ? resource_dump(&d, l, &m) : full_dump(&d, &m);
    tn_buf_adds(r->body, "]}\n");
    for (size_t i = 0; i < d.n_routes; i++)
        protobuf_c_message_free_unpacked(&d.hcms[i]->base, NULL);
    free(d.dyn_clusters[0]);
    free(d.dyn_clusters[1]);
    free(d.dyn_listeners);
    return status;
}
