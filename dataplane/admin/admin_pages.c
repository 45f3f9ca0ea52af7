/* Admin endpoints: the table, query decoding, and the small pages. Filters'
 * endpoints (the cache's /cache, /purge, /proxy-cache) are found through the
 * filter registry and called through admin_handler.h: the admin names no
 * filter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/admin/admin_int.h"
#include "dataplane/core/log.h"
#include "filters/filter.h"
#include "api/pb/pbjson.h"
#include "dataplane/server/xds.h"

/* --- query decoding ---------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s in place ('+' is a space, as in forms). */
static void url_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '+') {
            *o++ = ' ';
        } else if (*s == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
            *o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

/* Splits query (modified in place) into r->q. */
static void parse_query(struct tn__admin_req *r, char *query)
{
    char *save = NULL;
    for (char *kv = strtok_r(query, "&", &save); kv && r->n_q < TN__ADMIN_MAX_PARAMS; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq)
            *eq++ = '\0';
        url_decode(kv);
        if (eq)
            url_decode(eq);
        r->q[r->n_q].key = kv;
        r->q[r->n_q].value = eq ? eq : "";
        r->n_q++;
    }
}

static const char *param_in(const struct tn_admin_param *q, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(q[i].key, key) == 0)
            return q[i].value;
    return NULL;
}

const char *tn__admin_param(const struct tn__admin_req *r, const char *key)
{
    return param_in(r->q, r->n_q, key);
}

const char *tn_admin_param(const struct tn_admin_request *req, const char *key)
{
    return param_in(req->params, req->n_params, key);
}

void tn__admin_rfc3339(struct tn_buf *out, uint64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char s[32];
    gmtime_r(&t, &tm);
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
    tn_buf_printf(out, "%s.%03uZ", s, (unsigned)(ms % 1000));
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- simple pages -------------------------------------------------------------- */

static const char *state(const struct tn__admin_req *r)
{
    const struct tn_admin_ops *ops = r->ctx->ops;
    return ops && ops->state ? ops->state(r->ctx->arg) : "LIVE";
}

static int page_ready(struct tn__admin_req *r)
{
    const char *s = state(r);
    tn_buf_printf(r->body, "%s\n", s);
    return strcmp(s, "LIVE") == 0 ? 200 : 503;
}

static void json_kv_str(struct tn_buf *b, const char *key, const char *v, bool comma)
{
    if (comma)
        tn_buf_addc(b, ',');
    tn_pbjson_string(b, key, strlen(key));
    tn_buf_addc(b, ':');
    tn_pbjson_string(b, v ? v : "", v ? strlen(v) : 0);
}

/* Envoy's CommandLineOptions, from the flags tern shares with Envoy. */
static void command_line(struct tn_buf *b, const struct tn_admin_info *info)
{
    static const struct {
        const char *flag, *alt, *field;
    } opts[] = {
        {"-c", "--config-path", "config_path"},
        {"--config-yaml", NULL, "config_yaml"},
        {"-l", "--log-level", "log_level"},
        {"--component-log-level", NULL, "component_log_level"},
        {"--service-cluster", NULL, "service_cluster"},
        {"--service-node", NULL, "service_node"},
    };
    tn_buf_printf(b, "{\"concurrency\":%u", info->concurrency);
    for (int i = 1; i + 1 < info->argc; i++)
        for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
            if (strcmp(info->argv[i], opts[k].flag) == 0 || (opts[k].alt && strcmp(info->argv[i], opts[k].alt) == 0))
                json_kv_str(b, opts[k].field, info->argv[i + 1], true);
    tn_buf_adds(b, ",\"mode\":\"Serve\"}");
}

static int page_server_info(struct tn__admin_req *r)
{
    const struct tn_admin_info *info = &r->ctx->info;
    struct tn_buf *b = r->body;
    uint64_t now = wall_ms();
    uint64_t up = info->start_ms && now > info->start_ms ? (now - info->start_ms) / 1000 : 0;
    r->ctype = TN_ADMIN_JSON;
    tn_buf_addc(b, '{');
    json_kv_str(b, "version", info->version ? info->version : "unknown", false);
    json_kv_str(b, "state", state(r), true);
    tn_buf_printf(b, ",\"uptime_current_epoch\":\"%llus\",\"uptime_all_epochs\":\"%llus\"", (unsigned long long)up,
                  (unsigned long long)up);
    json_kv_str(b, "hot_restart_version", "disabled", true);
    tn_buf_adds(b, ",\"command_line_options\":");
    command_line(b, info);
    tn_buf_adds(b, ",\"node\":");
    if (r->ctx->cfg->bootstrap && r->ctx->cfg->bootstrap->node)
        tn_pbjson_print((const ProtobufCMessage *)r->ctx->cfg->bootstrap->node, b, 0);
    else
        tn_buf_adds(b, "{}");
    tn_buf_adds(b, "}\n");
    return 200;
}

static int page_ok(struct tn__admin_req *r)
{
    tn_buf_adds(r->body, "OK\n");
    return 200;
}

static int page_quit(struct tn__admin_req *r)
{
    r->quit = true;
    return page_ok(r);
}

static int page_hc_fail(struct tn__admin_req *r)
{
    if (r->ctx->ops && r->ctx->ops->healthcheck)
        r->ctx->ops->healthcheck(r->ctx->arg, true);
    return page_ok(r);
}

static int page_hc_ok(struct tn__admin_req *r)
{
    if (r->ctx->ops && r->ctx->ops->healthcheck)
        r->ctx->ops->healthcheck(r->ctx->arg, false);
    return page_ok(r);
}

static int page_drain(struct tn__admin_req *r)
{
    /* inboundonly: every tern listener is inbound, so it changes nothing. */
    if (r->ctx->ops && r->ctx->ops->drain_listeners)
        r->ctx->ops->drain_listeners(r->ctx->arg, tn__admin_param(r, "graceful") != NULL);
    return page_ok(r);
}

static int page_reopen(struct tn__admin_req *r)
{
    if (r->ctx->ops && r->ctx->ops->reopen_logs)
        r->ctx->ops->reopen_logs(r->ctx->arg);
    return page_ok(r);
}

static int page_reset(struct tn__admin_req *r)
{
    tn_stats_reset_counters(r->ctx->stats);
    return page_ok(r);
}

/* --- /logging ------------------------------------------------------------------ */

static const char *const comp_names[] = {
#define TN_X(name) #name,
    TN_LOG_COMPONENTS(TN_X)
#undef TN_X
};

static void list_loggers(struct tn_buf *b)
{
    tn_buf_adds(b, "active loggers:\n");
    for (size_t i = 0; i < TN_LOGC__COUNT; i++)
        tn_buf_printf(b, "  %s: %s\n", comp_names[i], tn_log_level_name((enum tn_log_level)tn_log_levels[i]));
}

static int logging_usage(struct tn__admin_req *r, const char *why)
{
    tn_buf_printf(r->body,
                  "error: %s\n\nusage: /logging?<name>=<level> (change single level)\n"
                  "usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n"
                  "usage: /logging?level=<level> (change all levels)\n"
                  "levels: trace debug info warning error critical off\n",
                  why);
    list_loggers(r->body);
    return 400;
}

/* Validates and applies every parameter, or none of them. */
static int page_logging(struct tn__admin_req *r)
{
    struct tn_buf spec;
    char err[256];
    int level = -1, rc = 0;
    tn_buf_init(&spec);
    for (size_t i = 0; i < r->n_q && rc == 0; i++) {
        const char *k = r->q[i].key, *v = r->q[i].value;
        if (strcmp(k, "level") == 0) {
            if ((level = tn_log_level_parse(v)) < 0)
                rc = -1;
        } else if (strcmp(k, "paths") == 0) {
            tn_buf_printf(&spec, "%s%s", spec.len ? "," : "", v);
        } else {
            tn_buf_printf(&spec, "%s%s:%s", spec.len ? "," : "", k, v);
        }
    }
    if (rc == 0 && spec.len && tn_log_set_components(spec.data, err, sizeof(err)) != 0)
        rc = -1;
    tn_buf_dispose(&spec);
    if (rc != 0)
        return logging_usage(r, "unknown logger name or level");
    if (level >= 0)
        tn_log_set_all((enum tn_log_level)level);
    list_loggers(r->body);
    return 200;
}

/* --- /clusters ---------------------------------------------------------------- */

/* Splits a host's address into IP text and port. */
static unsigned host_ip(const struct tn_host *h, char *ip, size_t cap)
{
    if (h->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&h->sa;
        uv_ip6_name(s6, ip, cap);
        return ntohs(s6->sin6_port);
    }
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&h->sa;
    uv_ip4_name(s4, ip, cap);
    return ntohs(s4->sin_port);
}

static bool ejected(const struct tn__admin_req *r, struct tn_host *h)
{
    return atomic_load_explicit(&h->eject_until_ms, memory_order_relaxed) > uv_now(r->ctx->loop);
}

/* Envoy's health_flags: "healthy" or the failures, each "/"-prefixed. */
static void health_text(const struct tn__admin_req *r, struct tn_host *h, struct tn_buf *b)
{
    unsigned f = atomic_load_explicit(&h->health, memory_order_relaxed);
    size_t start = b->len;
    if (f & TN_HOST_FAILED_ACTIVE_HC)
        tn_buf_adds(b, "/failed_active_hc");
    if (ejected(r, h))
        tn_buf_adds(b, "/failed_outlier_check");
    if (f & TN_HOST_FAILED_EDS)
        tn_buf_adds(b, "/failed_eds_health");
    if (f & TN_HOST_PENDING_HC)
        tn_buf_adds(b, "/pending_active_hc");
    if (b->len == start)
        tn_buf_adds(b, "healthy");
}

static struct tn_host_set *hosts_of(const struct tn__admin_req *r, const struct tn_cluster *c)
{
    return r->ctx->cm ? tn_cm_hosts(r->ctx->cm, c->name) : NULL;
}

static void cluster_text(struct tn__admin_req *r, const struct tn_cluster *c)
{
    static const char *const prio[] = {"default_priority", "high_priority"};
    struct tn_buf *b = r->body;
    tn_buf_printf(b, "%s::observability_name::%s\n", c->name, c->stat_name ? c->stat_name : c->name);
    for (int p = 0; p < 2; p++) {
        const struct tn_thresholds *t = &c->thresholds[p];
        tn_buf_printf(b, "%s::%s::max_connections::%u\n%s::%s::max_pending_requests::%u\n", c->name, prio[p],
                      t->max_connections, c->name, prio[p], t->max_pending_requests);
        tn_buf_printf(b, "%s::%s::max_requests::%u\n%s::%s::max_retries::%u\n", c->name, prio[p], t->max_requests,
                      c->name, prio[p], t->max_retries);
    }
    tn_buf_printf(b, "%s::added_via_api::false\n", c->name);
    struct tn_host_set *set = hosts_of(r, c);
    for (size_t i = 0; set && i < set->n_hosts; i++) {
        struct tn_host *h = set->hosts[i];
        tn_buf_printf(b, "%s::%s::cx_active::0\n", c->name, h->addr_text);
        tn_buf_printf(b, "%s::%s::rq_active::%u\n", c->name, h->addr_text,
                      atomic_load_explicit(&h->active_rq, memory_order_relaxed));
        tn_buf_printf(b, "%s::%s::hostname::%s\n", c->name, h->addr_text, h->hostname ? h->hostname : "");
        tn_buf_printf(b, "%s::%s::health_flags::", c->name, h->addr_text);
        health_text(r, h, b);
        tn_buf_printf(b, "\n%s::%s::weight::%u\n", c->name, h->addr_text, h->weight);
        tn_buf_printf(b, "%s::%s::region::\n%s::%s::zone::\n%s::%s::sub_zone::\n", c->name, h->addr_text, c->name,
                      h->addr_text, c->name, h->addr_text);
        tn_buf_printf(b, "%s::%s::canary::false\n%s::%s::priority::%u\n", c->name, h->addr_text, c->name, h->addr_text,
                      h->priority);
        tn_buf_printf(b, "%s::%s::success_rate::-1\n%s::%s::local_origin_success_rate::-1\n", c->name, h->addr_text,
                      c->name, h->addr_text);
    }
}

static void host_json(struct tn__admin_req *r, struct tn_host *h)
{
    struct tn_buf *b = r->body;
    char ip[64];
    unsigned port = host_ip(h, ip, sizeof(ip));
    unsigned f = atomic_load_explicit(&h->health, memory_order_relaxed);
    tn_buf_adds(b, "{\"address\":{\"socket_address\":{");
    json_kv_str(b, "address", ip, false);
    tn_buf_printf(b, ",\"port_value\":%u}},\"health_status\":{", port);
    tn_buf_printf(b, "\"eds_health_status\":\"%s\"", f & TN_HOST_FAILED_EDS ? "UNHEALTHY" : "HEALTHY");
    if (f & TN_HOST_FAILED_ACTIVE_HC)
        tn_buf_adds(b, ",\"failed_active_health_check\":true");
    if (ejected(r, h))
        tn_buf_adds(b, ",\"failed_outlier_check\":true");
    if (f & TN_HOST_PENDING_HC)
        tn_buf_adds(b, ",\"pending_active_hc\":true");
    tn_buf_printf(b, "},\"weight\":%u,\"priority\":%u", h->weight, h->priority);
    if (h->hostname)
        json_kv_str(b, "hostname", h->hostname, true);
    tn_buf_addc(b, '}');
}

static void cluster_json(struct tn__admin_req *r, const struct tn_cluster *c)
{
    struct tn_buf *b = r->body;
    tn_buf_addc(b, '{');
    json_kv_str(b, "name", c->name, false);
    json_kv_str(b, "observability_name", c->stat_name ? c->stat_name : c->name, true);
    tn_buf_adds(b, ",\"host_statuses\":[");
    struct tn_host_set *set = hosts_of(r, c);
    for (size_t i = 0; set && i < set->n_hosts; i++) {
        if (i)
            tn_buf_addc(b, ',');
        host_json(r, set->hosts[i]);
    }
    tn_buf_adds(b, "]}");
}

static int bad_format(struct tn__admin_req *r, const char *fmt)
{
    tn_buf_printf(r->body, "unknown format '%s'\n", fmt);
    return 400;
}

/* The clusters in use: the cluster manager's (static and from CDS), or the
 * config's when there is none. */
static size_t n_clusters(const struct tn__admin_req *r)
{
    return r->ctx->cm ? tn_cm_count(r->ctx->cm) : r->ctx->cfg->n_clusters;
}

static const struct tn_cluster *cluster_at(const struct tn__admin_req *r, size_t i)
{
    return r->ctx->cm ? tn_cm_at(r->ctx->cm, i, NULL, NULL, NULL) : r->ctx->cfg->clusters[i];
}

static int page_clusters(struct tn__admin_req *r)
{
    const char *fmt = tn__admin_param(r, "format");
    if (fmt && strcmp(fmt, "json") != 0 && strcmp(fmt, "text") != 0)
        return bad_format(r, fmt);
    if (fmt == NULL || strcmp(fmt, "text") == 0) {
        for (size_t i = 0; i < n_clusters(r); i++)
            cluster_text(r, cluster_at(r, i));
        return 200;
    }
    r->ctype = TN_ADMIN_JSON;
    tn_buf_adds(r->body, "{\"cluster_statuses\":[");
    for (size_t i = 0; i < n_clusters(r); i++) {
        if (i)
            tn_buf_addc(r->body, ',');
        cluster_json(r, cluster_at(r, i));
    }
    tn_buf_adds(r->body, "]}\n");
    return 200;
}

/* --- /listeners --------------------------------------------------------------- */

static void listener_json(struct tn_buf *b, const struct tn_listener *l)
{
    tn_buf_addc(b, '{');
    json_kv_str(b, "name", l->name, false);
    tn_buf_adds(b, ",\"local_address\":{\"socket_address\":{");
    json_kv_str(b, "address", l->addr.host, false);
    tn_buf_printf(b, ",\"port_value\":%u}}}", l->addr.port);
}

/* The static listeners, then those from LDS that accept (active). */
static size_t listeners_of(struct tn__admin_req *r, const struct tn_listener ***out)
{
    const struct tn_config *cfg = r->ctx->cfg;
    const struct tn_xds *x = r->ctx->ops && r->ctx->ops->xds ? r->ctx->ops->xds(r->ctx->arg) : NULL;
    size_t n_dyn = tn_xds_listeners(x, NULL, 0), n = 0;
    struct tn_xds_listener *dl = calloc(n_dyn + 1, sizeof(*dl));
    const struct tn_listener **v = calloc(cfg->n_listeners + n_dyn + 1, sizeof(*v));
    if (dl && v) {
        tn_xds_listeners(x, dl, n_dyn);
        for (size_t i = 0; i < cfg->n_listeners; i++)
            v[n++] = cfg->listeners[i];
        for (size_t i = n_dyn; i-- > 0;) /* oldest first */
            if (dl[i].active.l)
                v[n++] = dl[i].active.l;
    }
    free(dl);
    *out = v;
    return n;
}

static int page_listeners(struct tn__admin_req *r)
{
    const char *fmt = tn__admin_param(r, "format");
    if (fmt && strcmp(fmt, "json") != 0 && strcmp(fmt, "text") != 0)
        return bad_format(r, fmt);
    const struct tn_listener **v;
    size_t n = listeners_of(r, &v);
    if (fmt == NULL || strcmp(fmt, "text") == 0) {
        for (size_t i = 0; i < n; i++)
            tn_buf_printf(r->body, "%s::%s\n", v[i]->name, v[i]->addr.text);
        free(v);
        return 200;
    }
    r->ctype = TN_ADMIN_JSON;
    tn_buf_adds(r->body, "{\"listener_statuses\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            tn_buf_addc(r->body, ',');
        listener_json(r->body, v[i]);
    }
    tn_buf_adds(r->body, "]}\n");
    free(v);
    return 200;
}

/* --- the table ------------------------------------------------------------------ */

static int page_help(struct tn__admin_req *r);

static const struct endpoint {
    const char *path;
    bool post; /* mutates: GET is refused */
    int (*fn)(struct tn__admin_req *r);
    const char *help;
} endpoints[] = {
    {"/", false, page_help, "this list"},
    {"/clusters", false, page_clusters, "upstream cluster status (?format=json)"},
    {"/config_dump", false, tn__admin_config_dump, "dump current Envoy configs (?resource=, ?mask=)"},
    {"/drain_listeners", true, page_drain, "drain listeners (?graceful, ?inboundonly)"},
    {"/healthcheck/fail", true, page_hc_fail, "cause the server to fail health checks"},
    {"/healthcheck/ok", true, page_hc_ok, "cause the server to pass health checks"},
    {"/help", false, page_help, "print out list of admin commands"},
    {"/listeners", false, page_listeners, "print listener info (?format=json)"},
    {"/logging", true, page_logging, "query/change logging levels (?level=, ?<component>=, ?paths=)"},
    {"/quitquitquit", true, page_quit, "exit the server"},
    {"/ready", false, page_ready, "print server state, return 200 if LIVE, otherwise 503"},
    {"/reopen_logs", true, page_reopen, "reopen access logs"},
    {"/reset_counters", true, page_reset, "reset all counters to zero"},
    {"/server_info", false, page_server_info, "print server version/status information"},
    {"/stats", false, tn__admin_stats, "print server stats (?format=json, ?filter=, ?usedonly)"},
    {"/stats/prometheus", false, tn__admin_prometheus, "print server stats in prometheus format"},
};

#define N_ENDPOINTS (sizeof(endpoints) / sizeof(endpoints[0]))

/* --- endpoints filters serve (filters/filter.h, admin_handler.h) ------------------ */

static bool filter_path_matches(const struct tn_admin_endpoint *e, const char *path)
{
    size_t n = strlen(e->path);
    return strncmp(path, e->path, n) == 0 && (path[n] == '\0' || (e->prefix && path[n] == '/'));
}

static const struct tn_admin_endpoint *filter_endpoint(const char *path)
{
    size_t n;
    const struct tn_filter_factory *const *fs = tn_filter_factories(&n);
    for (size_t i = 0; i < n; i++)
        for (const struct tn_admin_endpoint *e = fs[i]->admin_endpoints; e && e->path; e++)
            if (filter_path_matches(e, path))
                return e;
    return NULL;
}

static void filter_help(struct tn_buf *b)
{
    size_t n;
    const struct tn_filter_factory *const *fs = tn_filter_factories(&n);
    for (size_t i = 0; i < n; i++)
        for (const struct tn_admin_endpoint *e = fs[i]->admin_endpoints; e && e->path; e++)
            if (e->help)
                tn_buf_printf(b, "  %s%s: %s\n", e->path, e->mutating ? " (POST)" : "", e->help);
}

static int filter_serve(struct tn__admin_req *r, const struct tn_admin_endpoint *e, const char *path)
{
    struct tn_admin_request req = {.path = path, .post = r->post, .del = r->del, .params = r->q, .n_params = r->n_q};
    struct tn_admin_response resp = {.body = r->body, .ctype = r->ctype};
    int status = e->handler(&req, &resp);
    r->ctype = resp.ctype;
    return status;
}

static int page_help(struct tn__admin_req *r)
{
    tn_buf_adds(r->body, "admin commands are:\n");
    filter_help(r->body);
    for (size_t i = 1; i < N_ENDPOINTS; i++)
        tn_buf_printf(r->body, "  %s%s: %s\n", endpoints[i].path, endpoints[i].post ? " (POST)" : "",
                      endpoints[i].help);
    return 200;
}

int tn__admin_dispatch(struct tn__admin_req *r, const char *url)
{
    char *copy = strdup(url);
    int status = 404;
    if (copy == NULL)
        return 500;
    char *q = strchr(copy, '?');
    if (q) {
        *q = '\0';
        parse_query(r, q + 1);
    }
    const struct endpoint *e = NULL;
    const struct tn_admin_endpoint *fe = NULL;
    for (size_t i = 0; i < N_ENDPOINTS && e == NULL; i++)
        if (strcmp(copy, endpoints[i].path) == 0)
            e = &endpoints[i];
    if (e == NULL)
        fe = filter_endpoint(copy);
    if (e == NULL && fe == NULL) {
        tn_buf_adds(r->body, "invalid path. ");
        page_help(r);
    } else if ((e ? e->post : fe->mutating) && !r->post) {
        tn_buf_adds(r->body, "This endpoint requires POST.\n");
        status = 405;
    } else {
        status = e ? e->fn(r) : filter_serve(r, fe, copy);
    }
    free(copy); /* the query strings point into it: pages are done */
    return status;
}
