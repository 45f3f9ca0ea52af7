/* The main thread: binds every listener once per worker (SO_REUSEPORT, so a
 * port in use is found before anything starts), lets the cluster manager
 * resolve the clusters, starts the workers, forwards host-set changes to
 * them, and runs the drain on SIGTERM/SIGINT. Filters are reached only
 * through the registry (filters/filter.h): their main-thread hooks start
 * before the cluster manager, tick every 100 ms (or when kicked), stop once
 * the workers are joined and exit last. */
#include "dataplane/server/server.h"

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "dataplane/accesslog/accesslog.h"
#include "dataplane/admin/admin.h"
#include "dataplane/upstream/cm.h"
#include "dataplane/stats/dp_stats.h"
#include "dataplane/stats/stats.h"
#include "dataplane/server/listener.h"
#include "dataplane/core/log.h"
#include "dataplane/server/worker.h"
#include "filters/filter.h"
#include "dataplane/server/xds.h"

/* A listener from LDS: its sockets, one per worker (dups of one with
 * reuse_port off), bound on the main thread; each worker gets a dup of its
 * own once the listener is up. */
struct slis {
    struct slis *next;
    struct tn_listener *l; /* reference */
    int *fds;              /* [concurrency] */
    bool up;
};

/* A replaced or removed listener draining: when the drain time is over,
 * the workers close what is left of its connections. */
struct ldrain {
    uv_timer_t timer;
    struct ldrain *next;
    struct tn_server *srv;
    struct tn_listener *l; /* reference */
};

struct tn_server {
    uv_loop_t *loop;
    struct tn_config *cfg;
    struct tn_server_options opts;
    struct tn_cm *cm;
    struct tn_xds *xds; /* the control plane's subscriptions, NULL without ADS */
    struct tn_worker **workers;
    int *fds; /* [worker][listener] */
    struct tn_route_table **rds; /* latest per route configuration (references, NULL until it comes) */
    size_t n_rds;
    struct slis *slis;     /* listeners from LDS */
    struct ldrain *drains; /* listeners from LDS draining */
    size_t n_drains;
    bool clusters_ready, xds_ready; /* workers start when both are */
    struct tn__cluster_hosts *warm;  /* clusters from CDS warmed this iteration (references) */
    size_t n_warm, cap_warm;
    uv_timer_t warm_timer;
    uv_signal_t sigterm, sigint, sigusr1, sighup;
    uv_timer_t drain_timer;
    uv_async_t drained_async;
    atomic_uint n_drained;
    unsigned signals;
    bool started, stopping;
    int exit_code;
    struct tn_stats stats;
    struct tn_server_stats sstats;
    _Atomic uint64_t *main_shard;
    _Atomic uint64_t **worker_shards;
    uv_timer_t stats_timer;
    uv_timer_t filters_timer;            /* filters' main_tick, every 100 ms */
    uv_timer_t filters_soon;             /* again in a moment when a tick asks */
    uv_async_t filters_async;            /* a filter's kick (any thread): tick now */
    struct tn_filter_server filters_srv; /* what the main_start hooks got */
    uint64_t start_ms;
    uint64_t start_wall_ms;
    struct tn_admin *admin;
    bool draining;          /* listeners closed (signal or POST /drain_listeners) */
    bool exit_when_drained; /* a signal asked for the drain: exit when it ends */
};

static atomic_bool health_failing; /* POST /healthcheck/fail (tn_server_health_failing) */

bool tn_server_health_failing(void)
{
    return atomic_load_explicit(&health_failing, memory_order_relaxed);
}

/* SO_REUSEPORT would let a second process share a port it finds in use
 * (any process of the same user may join the group), so first check with a
 * plain bind that nobody holds it. */
static int probe_free(const struct tn_listener *l)
{
    const struct sockaddr *sa = (const struct sockaddr *)&l->addr.sa;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rc = 0;
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, sa, len))
        rc = -errno;
    close(fd);
    return rc;
}

static int bind_one(const struct tn_listener *l, int *out, bool listen_now)
{
    const struct sockaddr *sa = (const struct sockaddr *)&l->addr.sa;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (l->reuse_port)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, sa, len) || (listen_now && listen(fd, 4096))) {
        int e = -errno;
        close(fd);
        return e;
    }
    *out = fd;
    return 0;
}

/* Every worker gets its own socket per listener; with reuse_port off, one
 * socket is shared (dup'ed) and the kernel balances accepts. */
static int bind_all(struct tn_server *srv)
{
    struct tn_config *cfg = srv->cfg;
    unsigned nw = srv->opts.concurrency;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct tn_listener *l = cfg->listeners[i];
        int rc = probe_free(l);
        if (rc) {
            TN_LOG(TN_LOG_CRITICAL, main, "cannot listen on %s (listener '%s'): %s", l->addr.text, l->name,
                   strerror(-rc));
            return -1;
        }
        for (unsigned w = 0; w < nw; w++) {
            int *fd = &srv->fds[w * cfg->n_listeners + i];
            int rc = (!l->reuse_port && w > 0) ? ((*fd = dup(srv->fds[i])) < 0 ? -errno : 0) : bind_one(l, fd, true);
            if (rc) {
                TN_LOG(TN_LOG_CRITICAL, main, "cannot listen on %s (listener '%s'): %s", l->addr.text, l->name,
                       strerror(-rc));
                return -1;
            }
        }
        TN_LOG(TN_LOG_INFO, main, "listener '%s' listening on %s", l->name, l->addr.text);
    }
    return 0;
}

static void on_hosts(void *arg, const struct tn_cluster *c, struct tn_host_set *set)
{
    struct tn_server *srv = arg;
    /* a worker without the cluster (still warming) ignores it */
    if (srv->started)
        for (unsigned w = 0; w < srv->opts.concurrency; w++)
            tn__worker_post_hosts(srv->workers[w], (struct tn_cluster *)c, set);
}

static void stop(struct tn_server *srv);

/* Registers every stat and makes one shard per writer thread (the main
 * thread and each worker) before any worker runs. */
static int stats_setup(struct tn_server *srv)
{
    tn_stats_init(&srv->stats);
    if (tn_dp_stats_register(&srv->stats, srv->cfg, &srv->sstats))
        return -1;
    if (srv->cfg->cds_dynamic || srv->cfg->lds_dynamic) /* room for about 12,000 clusters or listeners from xDS */
        tn_stats_reserve(&srv->stats, 8u << 20);
    if ((srv->main_shard = tn_stats_shard(&srv->stats)) == NULL)
        return -1;
    srv->worker_shards = calloc(srv->opts.concurrency, sizeof(*srv->worker_shards));
    if (srv->worker_shards == NULL)
        return -1;
    for (unsigned w = 0; w < srv->opts.concurrency; w++)
        if ((srv->worker_shards[w] = tn_stats_shard(&srv->stats)) == NULL)
            return -1;
    return 0;
}

/* Heap bytes in use (glibc's count); where another allocator stands in
 * (sanitizer builds report 0 there) the resident set size instead. */
static uint64_t memory_allocated(void)
{
    struct mallinfo2 mi = mallinfo2();
    uint64_t n = mi.uordblks + mi.hblkhd;
    if (n == 0) {
        unsigned long size, resident;
        FILE *f = fopen("/proc/self/statm", "r");
        if (f && fscanf(f, "%lu %lu", &size, &resident) == 2)
            n = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
        if (f)
            fclose(f);
    }
    return n;
}

/* server.version: Envoy reports its source revision as a number; tern
 * reports its release, "1.2.3" as 1002003. */
static uint64_t version_number(const char *v)
{
    unsigned a = 0, b = 0, c = 0;
    sscanf(v, "%u.%u.%u", &a, &b, &c);
    return (uint64_t)a * 1000000 + (uint64_t)b * 1000 + c;
}

/* Main-thread stats, refreshed every second and before the admin reads:
 * server gauges, cluster membership, health-check counters. */
static void stats_refresh(struct tn_server *srv)
{
    struct tn_config *cfg = srv->cfg;
    _Atomic uint64_t *m = srv->main_shard;
    const struct tn_server_stats *ss = &srv->sstats;
    uint64_t now = uv_now(srv->loop);
    tn_stat_set(m, ss->live, srv->started && !srv->stopping ? 1 : 0);
    tn_stat_set(m, ss->uptime, (now - srv->start_ms) / 1000);
    tn_stat_set(m, ss->concurrency, srv->opts.concurrency);
    tn_stat_set(m, ss->version, version_number(TN_VERSION));
    size_t n_dyn = tn_xds_listeners(srv->xds, NULL, 0), n_all = cfg->n_listeners + 2 * n_dyn, n_l = 0;
    size_t n_dyn_active = 0, n_dyn_warming = 0;
    const struct tn_listener **all = calloc(n_all + 1, sizeof(*all));
    struct tn_xds_listener *dl = calloc(n_dyn + 1, sizeof(*dl));
    if (all == NULL || dl == NULL)
        n_dyn = n_all = 0;
    tn_xds_listeners(srv->xds, dl, n_dyn);
    for (size_t i = 0; all && i < cfg->n_listeners; i++)
        all[n_l++] = cfg->listeners[i];
    for (size_t i = 0; i < n_dyn; i++) {
        if (dl[i].active.l)
            all[n_l++] = dl[i].active.l, n_dyn_active++;
        if (dl[i].warming.l)
            all[n_l++] = dl[i].warming.l, n_dyn_warming++;
    }
    for (size_t i = 0; i < n_l; i++)
        for (size_t j = 0; j < all[i]->hcm.n_filters; j++) {
            const struct tn_http_filter *hf = &all[i]->hcm.filters[j];
            if (hf->factory->refresh_stats)
                hf->factory->refresh_stats(hf->config, m);
        }
    tn_stat_set(m, ss->memory_allocated, memory_allocated());
    const struct tn_xds_cds *cds = tn_xds_cds(srv->xds);
    tn_stat_set(m, ss->cm_cluster_added, cfg->n_clusters + (cds ? cds->cluster_added : 0));
    if (cds) {
        tn_stat_set(m, ss->cm_cluster_modified, cds->cluster_modified);
        tn_stat_set(m, ss->cm_cluster_removed, cds->cluster_removed);
        tn_stat_set(m, ss->cds_update_attempt, cds->update_attempt);
        tn_stat_set(m, ss->cds_update_success, cds->update_success);
        tn_stat_set(m, ss->cds_update_rejected, cds->update_rejected);
        tn_stat_set(m, ss->cds_update_empty, cds->update_empty);
        tn_stat_set(m, ss->cds_update_failure, tn_xds_cds_failures(srv->xds));
    }
    const struct tn_xds_lds *lds = tn_xds_lds(srv->xds);
    tn_stat_set(m, ss->lm_total_listeners_active, cfg->n_listeners + n_dyn_active);
    tn_stat_set(m, ss->lm_total_listeners_warming, n_dyn_warming);
    tn_stat_set(m, ss->lm_total_listeners_draining, srv->n_drains);
    tn_stat_set(m, ss->lm_listener_added, cfg->n_listeners + (lds ? lds->listener_added : 0));
    tn_stat_set(m, ss->lm_listener_create_success,
                (cfg->n_listeners + (lds ? lds->listener_added + lds->listener_modified : 0)) * srv->opts.concurrency);
    if (lds) {
        tn_stat_set(m, ss->lm_listener_modified, lds->listener_modified);
        tn_stat_set(m, ss->lm_listener_removed, lds->listener_removed);
        tn_stat_set(m, ss->lds_update_attempt, lds->update_attempt);
        tn_stat_set(m, ss->lds_update_success, lds->update_success);
        tn_stat_set(m, ss->lds_update_rejected, lds->update_rejected);
        tn_stat_set(m, ss->lds_update_empty, lds->update_empty);
        tn_stat_set(m, ss->lds_update_failure, tn_xds_lds_failures(srv->xds));
    }
    /* each listener's downstream_cx_active once (versions of a listener on
     * one address share it): not a walk of every stat, which CDS makes
     * hundreds of thousands */
    uint64_t conns = 0;
    for (size_t i = 0; i < n_l; i++) {
        uint32_t slot = all[i]->stats.downstream_cx_active;
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = all[k]->stats.downstream_cx_active == slot;
        if (!seen)
            conns += tn_stats_value(&srv->stats, &(struct tn_stat){.kind = TN_STAT_GAUGE, .slot = slot});
    }
    tn_stat_set(m, ss->total_connections, conns);
    size_t n_cm = srv->cm ? tn_cm_count(srv->cm) : 0, n_active = 0;
    for (size_t i = 0; i < n_cm; i++) {
        struct tn_host_set *set;
        bool ready;
        const struct tn_cm_stats *cs;
        const struct tn_cluster *c = tn_cm_at(srv->cm, i, &set, &ready, &cs);
        n_active += ready;
        uint64_t healthy = 0, ejected = 0;
        for (size_t h = 0; set && h < set->n_hosts; h++) {
            healthy += tn_host_healthy(set->hosts[h], now);
            ejected += atomic_load(&set->hosts[h]->eject_until_ms) > now;
        }
        tn_stat_set(m, c->stats.outlier_detection_ejections_active, ejected);
        tn_stat_set(m, c->stats.membership_total, set ? set->n_hosts : 0);
        tn_stat_set(m, c->stats.membership_healthy, healthy);
        tn_stat_set(m, c->stats.health_check_healthy, healthy);
        tn_stat_set(m, c->stats.health_check_attempt, cs->hc_attempt);
        tn_stat_set(m, c->stats.health_check_success, cs->hc_success);
        tn_stat_set(m, c->stats.health_check_failure, cs->hc_failure);
        tn_stat_set(m, c->stats.health_check_network_failure, cs->hc_network_failure);
        tn_stat_set(m, c->stats.update_attempt, cs->update_attempt);
        tn_stat_set(m, c->stats.update_success, cs->update_success);
        tn_stat_set(m, c->stats.update_failure, cs->update_failure);
        tn_stat_set(m, c->stats.update_rejected, cs->update_rejected);
        tn_stat_set(m, c->stats.update_empty, cs->update_empty);
    }
    tn_stat_set(m, ss->cm_active_clusters, n_active);
    tn_stat_set(m, ss->cm_warming_clusters, n_cm - n_active);
    if (srv->sstats.has_control_plane)
        tn_stat_set(m, srv->sstats.cp_connected_state, tn_xds_connected(srv->xds));
    for (size_t i = 0; i < n_l; i++) {
        const struct tn_hcm *h = &all[i]->hcm;
        const struct tn_xds_rds *r = h->rds_name ? tn_xds_rds(srv->xds, h->rds_index) : NULL;
        if (r == NULL)
            continue;
        tn_stat_set(m, h->rds_stats.update_attempt, r->update_attempt);
        tn_stat_set(m, h->rds_stats.update_success, r->update_success);
        tn_stat_set(m, h->rds_stats.update_rejected, r->update_rejected);
        tn_stat_set(m, h->rds_stats.update_empty, r->update_empty);
        tn_stat_set(m, h->rds_stats.config_reload, r->config_reload);
    }
    free(all);
    free(dl);
}

static void on_stats_timer(uv_timer_t *t)
{
    stats_refresh(t->data);
}

/* --- filters' main-thread hooks (filters/filter.h) ------------------------------ */

/* Every factory's main_tick (the cache's maintenance); one that asks to run
 * again in a moment (frees waiting on the workers it just woke) gets it
 * before the next 100 ms tick. */
static void on_filters_soon(uv_timer_t *t)
{
    size_t n;
    const struct tn_filter_factory *const *fs = tn_filter_factories(&n);
    unsigned soon = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned ms = fs[i]->main_tick ? fs[i]->main_tick() : 0;
        if (ms && (soon == 0 || ms < soon))
            soon = ms;
    }
    if (soon)
        uv_timer_start(t, on_filters_soon, soon, 0);
}

static void on_filters_timer(uv_timer_t *t)
{
    struct tn_server *srv = t->data;
    on_filters_soon(&srv->filters_soon);
}

static void on_filters_async(uv_async_t *a)
{
    struct tn_server *srv = a->data;
    on_filters_soon(&srv->filters_soon);
}

static void filters_kick(void *arg)
{
    struct tn_server *srv = arg;
    uv_async_send(&srv->filters_async);
}

static void filters_wake_workers(void *arg)
{
    struct tn_server *srv = arg;
    if (srv->stopping || !srv->started)
        return;
    for (unsigned w = 0; w < srv->opts.concurrency; w++)
        if (srv->workers[w])
            tn__worker_wake(srv->workers[w]);
}

/* The tick's handles and main_start: before the cluster manager. */
static void filters_main_start(struct tn_server *srv)
{
    uv_timer_init(srv->loop, &srv->filters_timer);
    srv->filters_timer.data = srv;
    uv_timer_start(&srv->filters_timer, on_filters_timer, 100, 100);
    uv_timer_init(srv->loop, &srv->filters_soon);
    uv_async_init(srv->loop, &srv->filters_async, on_filters_async);
    srv->filters_async.data = srv;
    uv_unref((uv_handle_t *)&srv->filters_async); /* closed once the workers, who kick it, are gone */
    srv->filters_srv =
        (struct tn_filter_server){.kick = filters_kick, .wake_workers = filters_wake_workers, .arg = srv};
    size_t n;
    const struct tn_filter_factory *const *fs = tn_filter_factories(&n);
    for (size_t i = 0; i < n; i++)
        if (fs[i]->main_start)
            fs[i]->main_start(&srv->filters_srv);
}

/* The workers are joined: nothing kicks any more (main_stop, in reverse
 * registry order); the async closes (run the loop once more). */
static void filters_main_stop(struct tn_server *srv)
{
    size_t n;
    const struct tn_filter_factory *const *fs = tn_filter_factories(&n);
    for (size_t i = n; i-- > 0;)
        if (fs[i]->main_stop)
            fs[i]->main_stop();
    uv_close((uv_handle_t *)&srv->filters_async, NULL);
}

/* Last of all, after the loop and the configuration are gone. */
static void filters_main_exit(void)
{
    size_t n;
    const struct tn_filter_factory *const *fs = tn_filter_factories(&n);
    for (size_t i = n; i-- > 0;)
        if (fs[i]->main_exit)
            fs[i]->main_exit();
}

static void on_routes(void *arg, size_t rds_index, struct tn_route_table *t)
{
    struct tn_server *srv = arg;
    if (rds_index >= srv->n_rds) {
        size_t n = rds_index + 1 > srv->n_rds * 2 ? rds_index + 1 : srv->n_rds * 2;
        struct tn_route_table **v = realloc(srv->rds, n * sizeof(*v));
        if (v == NULL) {
            TN_LOG(TN_LOG_ERROR, main, "out of memory taking a route configuration");
            return;
        }
        memset(v + srv->n_rds, 0, (n - srv->n_rds) * sizeof(*v));
        srv->rds = v;
        srv->n_rds = n;
    }
    tn_route_table_unref(srv->rds[rds_index]);
    srv->rds[rds_index] = t ? tn_route_table_ref(t) : NULL;
    if (srv->started)
        for (unsigned w = 0; w < srv->opts.concurrency; w++)
            tn__worker_post_routes(srv->workers[w], rds_index, t);
}

static void start_workers(struct tn_server *srv);

/* --- listeners from LDS --------------------------------------------------------- */

static struct slis *slis_find(struct tn_server *srv, const struct tn_listener *l)
{
    for (struct slis *s = srv->slis; s; s = s->next)
        if (s->l == l)
            return s;
    return NULL;
}

static void slis_free(struct tn_server *srv, struct slis *s)
{
    for (struct slis **pp = &srv->slis; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    for (unsigned w = 0; w < srv->opts.concurrency; w++)
        if (s->fds[w] >= 0)
            close(s->fds[w]);
    tn_listener_unref(s->l);
    free(s->fds);
    free(s);
}

static void on_ldrain_closed(uv_handle_t *h)
{
    struct ldrain *d = h->data;
    tn_listener_unref(d->l);
    free(d);
}

static void ldrain_unlink(struct tn_server *srv, struct ldrain *d)
{
    for (struct ldrain **pp = &srv->drains; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            srv->n_drains--;
            break;
        }
}

static void on_ldrain_timeout(uv_timer_t *t)
{
    struct ldrain *d = t->data;
    struct tn_server *srv = d->srv;
    TN_LOG(TN_LOG_INFO, main, "listener '%s': drain time over, closing what is left of its connections", d->l->name);
    for (unsigned w = 0; w < srv->opts.concurrency; w++)
        tn__worker_post_listener_close(srv->workers[w], d->l);
    ldrain_unlink(srv, d);
    uv_close((uv_handle_t *)&d->timer, on_ldrain_closed);
}

/* l stopped accepting: its connections drain, and those left when the
 * drain time is over are closed. */
static void ldrain_start(struct tn_server *srv, struct tn_listener *l)
{
    struct ldrain *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        TN_LOG(TN_LOG_ERROR, main, "out of memory draining listener '%s'", l->name);
        return;
    }
    d->srv = srv;
    d->l = tn_listener_ref(l);
    uv_timer_init(srv->loop, &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, on_ldrain_timeout, (uint64_t)srv->opts.drain_time_s * 1000, 0);
    d->next = srv->drains;
    srv->drains = d;
    srv->n_drains++;
}

static int on_listener_bind(void *arg, struct tn_listener *l, struct tn_listener *old, struct tn_err *err)
{
    struct tn_server *srv = arg;
    unsigned nw = srv->opts.concurrency;
    if (tn_dp_stats_register_listener(&srv->stats, l))
        return tn_err_fail(err, "no room left for its stats");
    struct slis *s = calloc(1, sizeof(*s)), *o = old ? slis_find(srv, old) : NULL;
    if (s == NULL || (s->fds = malloc(nw * sizeof(*s->fds))) == NULL) {
        free(s);
        return tn_err_fail(err, "out of memory");
    }
    for (unsigned w = 0; w < nw; w++)
        s->fds[w] = -1;
    s->l = tn_listener_ref(l);
    s->next = srv->slis;
    srv->slis = s;
    int rc = 0;
    if (o && tn_address_same(&o->l->addr, &l->addr) && o->l->reuse_port == l->reuse_port) {
        /* the same sockets: nothing in their accept queues is lost */
        for (unsigned w = 0; w < nw && rc == 0; w++)
            if ((s->fds[w] = dup(o->fds[w])) < 0)
                rc = -errno;
    } else if ((rc = probe_free(l)) == 0) {
        for (unsigned w = 0; w < nw && rc == 0; w++)
            rc = (!l->reuse_port && w > 0) ? ((s->fds[w] = dup(s->fds[0])) < 0 ? -errno : 0)
                                           : bind_one(l, &s->fds[w], false);
    }
    if (rc) {
        slis_free(srv, s);
        tn_err_push(err, ".address");
        return tn_err_fail(err, "cannot listen on %s: %s", l->addr.text, strerror(-rc));
    }
    return 0;
}

static void on_listener_up(void *arg, struct tn_listener *l, struct tn_listener *old)
{
    struct tn_server *srv = arg;
    struct slis *s = slis_find(srv, l);
    if (s == NULL)
        return;
    for (unsigned w = 0; w < srv->opts.concurrency; w++)
        if (listen(s->fds[w], 4096))
            TN_LOG(TN_LOG_ERROR, main, "listener '%s' on %s: listen: %s", l->name, l->addr.text, strerror(errno));
    s->up = true;
    if (srv->started && !srv->stopping)
        for (unsigned w = 0; w < srv->opts.concurrency; w++)
            tn__worker_post_listener(srv->workers[w], l, srv->draining ? -1 : dup(s->fds[w]), old);
    struct slis *o = old ? slis_find(srv, old) : NULL;
    if (o) {
        slis_free(srv, o);
        if (srv->started && !srv->stopping)
            ldrain_start(srv, old);
    }
}

static void on_listener_down(void *arg, struct tn_listener *l, bool was_up)
{
    struct tn_server *srv = arg;
    struct slis *s = slis_find(srv, l);
    if (was_up && srv->started && !srv->stopping) {
        for (unsigned w = 0; w < srv->opts.concurrency; w++)
            tn__worker_post_listener(srv->workers[w], NULL, -1, l);
        ldrain_start(srv, l);
    }
    if (s)
        slis_free(srv, s);
}

/* CDS: a new cluster's stats, within the reserve made at start. */
static int on_cluster_added(void *arg, struct tn_cluster *c)
{
    struct tn_server *srv = arg;
    return tn_dp_stats_register_cluster(&srv->stats, c);
}

static void on_cluster_removed(void *arg, struct tn_cluster *c)
{
    struct tn_server *srv = arg;
    if (srv->started)
        for (unsigned w = 0; w < srv->opts.concurrency; w++)
            tn__worker_post_clusters(srv->workers[w], NULL, 0, &c, 1);
}

/* Hands the clusters that warmed during this loop iteration to the workers
 * in one message (a push of thousands sorts each worker's map once). */
static void on_warm_flush(uv_timer_t *t)
{
    struct tn_server *srv = t->data;
    size_t n = 0;
    for (size_t i = 0; i < srv->n_warm; i++) {
        struct tn_cluster *c = srv->warm[i].c;
        if (tn_cm_ready(srv->cm, c)) /* not replaced or removed meanwhile */
            srv->warm[n++] = (struct tn__cluster_hosts){c, tn_cm_hosts(srv->cm, c->name)};
        else
            tn_cluster_unref(c);
    }
    for (unsigned w = 0; n && w < srv->opts.concurrency; w++)
        tn__worker_post_clusters(srv->workers[w], srv->warm, n, NULL, 0);
    for (size_t i = 0; i < n; i++)
        tn_cluster_unref(srv->warm[i].c);
    srv->n_warm = 0;
}

/* A cluster from CDS has warmed: the workers take it (replacing the one of
 * its name) at the end of this iteration; before they run, start_workers
 * hands them all at once. */
static void on_cluster_warm(void *arg, struct tn_cluster *c)
{
    struct tn_server *srv = arg;
    if (!srv->started) {
        start_workers(srv);
        return;
    }
    if (srv->n_warm == srv->cap_warm) {
        size_t cap = srv->cap_warm ? srv->cap_warm * 2 : 64;
        struct tn__cluster_hosts *v = realloc(srv->warm, cap * sizeof(*v));
        if (v == NULL) {
            TN_LOG(TN_LOG_ERROR, upstream, "out of memory handing cluster %s to the workers", c->name);
            return;
        }
        srv->warm = v;
        srv->cap_warm = cap;
    }
    srv->warm[srv->n_warm++] = (struct tn__cluster_hosts){tn_cluster_ref(c), NULL};
    if (srv->n_warm == 1)
        uv_timer_start(&srv->warm_timer, on_warm_flush, 0, 0);
}

/* Every cluster has its hosts (or gave up waiting for them). */
static void on_clusters_ready(void *arg)
{
    struct tn_server *srv = arg;
    srv->clusters_ready = true;
    start_workers(srv);
}

/* Every route configuration from RDS has come (or timed out). */
static void on_xds_ready(void *arg)
{
    struct tn_server *srv = arg;
    srv->xds_ready = true;
    start_workers(srv);
}

static void start_workers(struct tn_server *srv)
{
    struct tn_config *cfg = srv->cfg;
    if (srv->stopping || srv->started || !srv->clusters_ready || !srv->xds_ready || tn_cm_warming(srv->cm) > 0)
        return;
    /* the clusters ready now; those warming come by message when they are */
    size_t n = tn_cm_count(srv->cm), n_ready = 0;
    struct tn__cluster_hosts *ready = calloc(n + 1, sizeof(*ready));
    if (ready == NULL) {
        TN_LOG(TN_LOG_CRITICAL, main, "out of memory");
        srv->exit_code = 1;
        stop(srv);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        bool ok;
        struct tn_host_set *set;
        struct tn_cluster *c = tn_cm_at(srv->cm, i, &set, &ok, NULL);
        if (ok)
            ready[n_ready++] = (struct tn__cluster_hosts){c, set};
    }
    for (unsigned w = 0; w < srv->opts.concurrency; w++) {
        srv->workers[w] =
            tn__worker_start(srv, w, cfg, &srv->fds[w * cfg->n_listeners], ready, n_ready, srv->rds, srv->n_rds,
                             srv->worker_shards[w]);
        if (srv->workers[w] == NULL) {
            TN_LOG(TN_LOG_CRITICAL, main, "cannot start worker %u", w);
            srv->exit_code = 1;
            free(ready);
            stop(srv);
            return;
        }
    }
    free(ready);
    srv->started = true;
    for (struct slis *sl = srv->slis; sl; sl = sl->next) /* listeners from LDS that warmed before */
        for (unsigned w = 0; sl->up && w < srv->opts.concurrency; w++)
            tn__worker_post_listener(srv->workers[w], sl->l, dup(sl->fds[w]), NULL);
    TN_LOG(TN_LOG_INFO, main, "all clusters initialized; serving with %u worker%s", srv->opts.concurrency,
           srv->opts.concurrency == 1 ? "" : "s");
}

static void stop(struct tn_server *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = true;
    for (unsigned w = 0; w < srv->opts.concurrency; w++)
        if (srv->workers[w])
            tn__worker_post_exit(srv->workers[w]);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->sigusr1, NULL);
    uv_close((uv_handle_t *)&srv->sighup, NULL);
    uv_close((uv_handle_t *)&srv->drain_timer, NULL);
    uv_close((uv_handle_t *)&srv->drained_async, NULL);
    uv_close((uv_handle_t *)&srv->stats_timer, NULL);
    uv_close((uv_handle_t *)&srv->filters_timer, NULL);
    uv_close((uv_handle_t *)&srv->filters_soon, NULL);
    uv_close((uv_handle_t *)&srv->warm_timer, NULL);
    for (size_t i = 0; i < srv->n_warm; i++)
        tn_cluster_unref(srv->warm[i].c);
    srv->n_warm = 0;
    for (struct ldrain *d = srv->drains; d; d = d->next)
        uv_close((uv_handle_t *)&d->timer, on_ldrain_closed);
    srv->drains = NULL;
    if (srv->admin)
        tn_admin_close(srv->admin);
    srv->admin = NULL;
    if (srv->xds)
        tn_xds_close(srv->xds);
    srv->xds = NULL;
    if (srv->cm)
        tn_cm_close(srv->cm);
    srv->cm = NULL;
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct tn_server *srv = t->data;
    TN_LOG(TN_LOG_INFO, main, "drain time over: closing the remaining connections");
    stop(srv);
}

static void on_drained(uv_async_t *a)
{
    struct tn_server *srv = a->data;
    if (srv->exit_when_drained && atomic_load(&srv->n_drained) >= srv->opts.concurrency) {
        TN_LOG(TN_LOG_INFO, main, "drained: every connection finished");
        stop(srv);
    }
}

void tn__server_worker_drained(struct tn_server *srv, unsigned id)
{
    (void)id;
    atomic_fetch_add(&srv->n_drained, 1);
    uv_async_send(&srv->drained_async);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct tn_server *srv = h->data;
    if (++srv->signals > 1) {
        TN_LOG(TN_LOG_WARN, main, "second signal (%s): exiting now", strsignal(signum));
        _exit(1);
    }
    TN_LOG(TN_LOG_INFO, main, "caught %s: draining for up to %us (a second signal exits at once)", strsignal(signum),
           srv->opts.drain_time_s);
    if (!srv->started) {
        stop(srv);
        return;
    }
    srv->exit_when_drained = true;
    if (srv->draining) { /* already drained by the admin: nothing to wait for */
        if (atomic_load(&srv->n_drained) >= srv->opts.concurrency)
            stop(srv);
        else
            uv_timer_start(&srv->drain_timer, on_drain_timeout, (uint64_t)srv->opts.drain_time_s * 1000, 0);
        return;
    }
    srv->draining = true;
    for (unsigned w = 0; w < srv->opts.concurrency; w++)
        tn__worker_post_drain(srv->workers[w]);
    uv_timer_start(&srv->drain_timer, on_drain_timeout, (uint64_t)srv->opts.drain_time_s * 1000, 0);
}

/* --- what the admin API asks of the server ---------------------------------- */

static const char *admin_state(void *arg)
{
    struct tn_server *srv = arg;
    /* a failed health check is Envoy's DRAINING state: /ready answers 503,
     * which takes the proxy out of a Kubernetes Service before it stops */
    if (srv->draining || srv->stopping || tn_server_health_failing())
        return "DRAINING";
    return srv->started ? "LIVE" : "INITIALIZING";
}

static void admin_quit(void *arg)
{
    struct tn_server *srv = arg;
    TN_LOG(TN_LOG_INFO, main, "admin: /quitquitquit");
    stop(srv);
}

static void admin_drain_listeners(void *arg, bool graceful)
{
    struct tn_server *srv = arg;
    TN_LOG(TN_LOG_INFO, main, "admin: draining listeners%s", graceful ? " (graceful)" : "");
    if (srv->draining || !srv->started)
        return;
    srv->draining = true;
    for (unsigned w = 0; w < srv->opts.concurrency; w++)
        tn__worker_post_drain(srv->workers[w]);
}

static void admin_healthcheck(void *arg, bool fail)
{
    (void)arg;
    atomic_store_explicit(&health_failing, fail, memory_order_relaxed);
    TN_LOG(TN_LOG_INFO, main, "admin: health check %s", fail ? "failing" : "passing");
}

static void admin_reopen_logs(void *arg)
{
    (void)arg;
    TN_LOG(TN_LOG_INFO, main, "reopening access log files");
    tn_alog_reopen();
}

static void on_sigusr1(uv_signal_t *h, int signum)
{
    (void)signum;
    admin_reopen_logs(h->data);
}

/* A terminal going away (or a habit from other daemons) must not end the
 * process and the requests in flight: Envoy eats SIGHUP the same way. */
static void on_sighup(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    TN_LOG(TN_LOG_WARN, main, "caught and eating SIGHUP (SIGUSR1 reopens the access logs; tern has no hot restart)");
}

static void admin_refresh_stats(void *arg)
{
    stats_refresh(arg);
}

static const struct tn_xds *admin_xds(void *arg)
{
    return ((struct tn_server *)arg)->xds;
}

static const struct tn_admin_ops admin_ops = {
    .state = admin_state,
    .quit = admin_quit,
    .drain_listeners = admin_drain_listeners,
    .healthcheck = admin_healthcheck,
    .reopen_logs = admin_reopen_logs,
    .refresh_stats = admin_refresh_stats,
    .xds = admin_xds,
};

int tn_server_run(struct tn_config *cfg, const struct tn_server_options *opts)
{
    struct tn_server srv = {.loop = uv_default_loop(), .cfg = tn_config_ref(cfg), .opts = *opts};
    unsigned nw = srv.opts.concurrency ? srv.opts.concurrency : 1;
    srv.opts.concurrency = nw;
    srv.workers = calloc(nw, sizeof(*srv.workers));
    srv.fds = calloc(nw * (cfg->n_listeners ? cfg->n_listeners : 1), sizeof(int));
    srv.n_rds = cfg->n_rds;
    srv.rds = calloc(cfg->n_rds + 1, sizeof(*srv.rds));
    if (srv.workers == NULL || srv.fds == NULL || srv.rds == NULL) {
        TN_LOG(TN_LOG_CRITICAL, main, "out of memory");
        return 1;
    }
    for (size_t i = 0; i < nw * cfg->n_listeners; i++)
        srv.fds[i] = -1;
    srv.start_ms = uv_now(srv.loop);
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        srv.start_wall_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    }
    if (stats_setup(&srv)) {
        TN_LOG(TN_LOG_CRITICAL, main, "out of memory");
        srv.exit_code = 1;
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    if (bind_all(&srv)) {
        srv.exit_code = 1;
        goto out;
    }
    uv_signal_init(srv.loop, &srv.sigterm);
    uv_signal_init(srv.loop, &srv.sigint);
    srv.sigterm.data = srv.sigint.data = &srv;
    uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv.sigint, on_signal, SIGINT);
    uv_signal_init(srv.loop, &srv.sigusr1);
    srv.sigusr1.data = &srv;
    uv_signal_start(&srv.sigusr1, on_sigusr1, SIGUSR1);
    uv_signal_init(srv.loop, &srv.sighup);
    uv_signal_start(&srv.sighup, on_sighup, SIGHUP);
    uv_timer_init(srv.loop, &srv.drain_timer);
    srv.drain_timer.data = &srv;
    uv_async_init(srv.loop, &srv.drained_async, on_drained);
    srv.drained_async.data = &srv;
    uv_timer_init(srv.loop, &srv.stats_timer);
    srv.stats_timer.data = &srv;
    uv_timer_start(&srv.stats_timer, on_stats_timer, 1000, 1000);
    uv_timer_init(srv.loop, &srv.warm_timer);
    srv.warm_timer.data = &srv;
    filters_main_start(&srv);
    srv.cm = tn_cm_new(srv.loop, cfg, on_hosts, on_clusters_ready, &srv);
    if (srv.cm == NULL) {
        TN_LOG(TN_LOG_CRITICAL, main, "cannot start the cluster manager");
        srv.exit_code = 1;
        stop(&srv);
    }
    if (srv.cm && !srv.stopping) {
        struct tn_err err;
        tn_err_init(&err);
        struct tn_xds_hooks hooks = {.routes = on_routes,
                                     .ready = on_xds_ready,
                                     .cluster_added = on_cluster_added,
                                     .cluster_removed = on_cluster_removed,
                                     .listener_bind = on_listener_bind,
                                     .listener_up = on_listener_up,
                                     .listener_down = on_listener_down};
        tn_cm_set_warm_cb(srv.cm, on_cluster_warm);
        srv.xds = tn_xds_start(srv.loop, cfg, srv.cm, &hooks, &srv, &err);
        if (srv.xds == NULL && !err.failed)
            srv.xds_ready = true; /* nothing to wait for */
        if (srv.xds == NULL && err.failed) {
            TN_LOG(TN_LOG_CRITICAL, xds, "cannot start the xDS client: %s", err.msg);
            srv.exit_code = 1;
            stop(&srv);
        }
    }
    if (cfg->has_admin && !srv.stopping) {
        struct tn_admin_info info = {.version = TN_VERSION, .start_ms = srv.start_wall_ms,
                                     .concurrency = srv.opts.concurrency, .argv = opts->argv, .argc = opts->argc};
        srv.admin = tn_admin_start(srv.loop, cfg, &srv.stats, srv.cm, &admin_ops, &srv, &info);
        if (srv.admin == NULL) {
            srv.exit_code = 1;
            stop(&srv);
        }
    }
    uv_run(srv.loop, UV_RUN_DEFAULT);
    for (unsigned w = 0; w < nw; w++)
        if (srv.workers[w])
            tn__worker_join(srv.workers[w]);
    filters_main_stop(&srv);
    uv_run(srv.loop, UV_RUN_DEFAULT);
out:
    for (size_t i = 0; i < nw * cfg->n_listeners; i++)
        if (srv.fds[i] >= 0 && !srv.started)
            close(srv.fds[i]);
    for (size_t i = 0; srv.rds && i < srv.n_rds; i++)
        tn_route_table_unref(srv.rds[i]);
    while (srv.slis)
        slis_free(&srv, srv.slis);
    free(srv.rds);
    free(srv.warm);
    free(srv.fds);
    free(srv.worker_shards);
    tn_stats_dispose(&srv.stats);
    free(srv.workers);
    uv_loop_close(srv.loop);
    tn_config_unref(srv.cfg);
    filters_main_exit();
    return srv.exit_code;
}
