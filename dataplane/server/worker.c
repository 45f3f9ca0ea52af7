/* A worker: its mailbox, its view of the clusters, its listeners and its
 * thread. Filters' per-worker hooks run here through the registry
 * (filters/filter.h): worker_start before the loop runs, worker_quiescent
 * once per iteration, worker_close when told to exit (before the pools and
 * timers go), worker_stop once the loop has run out; their state is
 * allocated with the worker and freed when it is joined. */
#include "dataplane/server/worker.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/prctl.h>

#include "dataplane/accesslog/accesslog.h"
#include "dataplane/http/conn.h"
#include "dataplane/core/log.h"
#include "dataplane/core/outq.h"
#include "dataplane/server/server.h"
#include "dataplane/core/slice.h"
#include "dataplane/upstream/conn_pool.h"

enum msg_type {
    MSG_HOSTS = 0,
    MSG_ROUTES,   /* a route configuration from RDS (m->index is its rds index) */
    MSG_CLUSTERS, /* clusters added and removed (CDS) */
    MSG_LISTENER, /* a listener from LDS to accept on, one to stop accepting on (and drain), or both */
    MSG_LISTENER_CLOSE, /* a drained listener's time is over: close its connections */
    MSG_DRAIN,
    MSG_EXIT,
};

struct tn_msg {
    enum msg_type type;
    struct tn_msg *next;
    size_t index;
    struct tn_cluster *c;          /* MSG_HOSTS: reference */
    struct tn_host_set *set;       /* MSG_HOSTS: reference */
    struct tn_route_table *routes; /* reference, may be NULL (removed) */
    struct tn__cluster_hosts *add; /* MSG_CLUSTERS: references */
    struct tn_cluster **remove;    /* MSG_CLUSTERS: references */
    size_t n_add, n_remove;
    struct tn_listener *lis, *old_lis; /* MSG_LISTENER, MSG_LISTENER_CLOSE: references */
    int fd;                            /* MSG_LISTENER: lis's socket, ours to close */
};

static void msg_free(struct tn_msg *m)
{
    if (m->type == MSG_HOSTS) {
        if (m->set)
            tn_host_set_unref(m->set);
        tn_cluster_unref(m->c);
    }
    if (m->type == MSG_ROUTES)
        tn_route_table_unref(m->routes);
    for (size_t i = 0; i < m->n_add; i++) {
        tn_cluster_unref(m->add[i].c);
        if (m->add[i].set)
            tn_host_set_unref(m->add[i].set);
    }
    for (size_t i = 0; i < m->n_remove; i++)
        tn_cluster_unref(m->remove[i]);
    if (m->fd >= 0)
        close(m->fd);
    tn_listener_unref(m->lis);
    tn_listener_unref(m->old_lis);
    free(m->add);
    free(m->remove);
    free(m);
}

/* --- clusters ------------------------------------------------------------- */

/* Switches a cluster to a new host set; pools of hosts that stay are kept,
 * those of hosts that left are retired (busy connections finish). */
void tn__worker_set_hosts(struct tn_wcluster *wc, struct tn_host_set *set)
{
    struct tn_hpool **pools = set && set->n_hosts ? calloc(set->n_hosts, sizeof(*pools)) : NULL;
    size_t n_old = wc->hosts ? wc->hosts->n_hosts : 0;
    if (set && set->n_hosts && pools == NULL) {
        TN_LOG(TN_LOG_ERROR, upstream, "out of memory updating cluster %s", wc->c->name);
        tn_host_set_unref(set);
        return;
    }
    for (size_t i = 0; set && i < set->n_hosts; i++) {
        for (size_t j = 0; j < n_old; j++)
            if (wc->pools[j] && wc->hosts->hosts[j] == set->hosts[i]) {
                pools[i] = wc->pools[j];
                wc->pools[j] = NULL;
                break;
            }
        if (pools[i] == NULL)
            pools[i] = tn_hpool_new(wc, set->hosts[i]);
    }
    for (size_t j = 0; j < n_old; j++)
        if (wc->pools[j])
            tn_hpool_retire(wc->pools[j]);
    free(wc->pools);
    if (wc->hosts)
        tn_host_set_unref(wc->hosts);
    wc->pools = pools;
    wc->hosts = set;
}

static int cmp_wcluster(const void *a, const void *b)
{
    const struct tn_wcluster *x = *(struct tn_wcluster *const *)a, *y = *(struct tn_wcluster *const *)b;
    return strcmp(x->c->name, y->c->name);
}

/* Where name is, or would go, among the first n (sorted) clusters. */
static size_t cluster_pos_in(struct tn_worker *w, size_t n, const char *name, bool *found)
{
    size_t lo = 0, hi = n;
    *found = false;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(name, w->clusters[mid]->c->name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static size_t cluster_pos(struct tn_worker *w, const char *name, bool *found)
{
    return cluster_pos_in(w, w->n_clusters, name, found);
}

struct tn_wcluster *tn_worker_cluster(struct tn_worker *w, const char *name)
{
    bool found;
    size_t i = cluster_pos(w, name, &found);
    return found ? w->clusters[i] : NULL;
}

void tn_wcluster_unref(struct tn_wcluster *wc)
{
    if (--wc->refs > 0)
        return;
    /* every pool has gone (each held a reference), so has every request */
    free(wc->pools);
    if (wc->hosts)
        tn_host_set_unref(wc->hosts);
    tn_lb_state_dispose(&wc->lb);
    tn_cluster_unref(wc->c);
    free(wc);
}

static struct tn_wcluster *wcluster_new(struct tn_worker *w, struct tn_cluster *c, struct tn_host_set *set)
{
    struct tn_wcluster *wc = calloc(1, sizeof(*wc));
    if (wc == NULL)
        return NULL;
    wc->c = tn_cluster_ref(c);
    wc->w = w;
    wc->refs = 1; /* the map's */
    tn_lb_state_init(&wc->lb, tn_worker_random(w));
    if (set)
        tn__worker_set_hosts(wc, tn_host_set_ref(set));
    return wc;
}

/* Takes wc out of use: its pools retire (busy connections finish), new
 * requests no longer find it; those in flight keep it. */
static void wcluster_drop(struct tn_wcluster *wc)
{
    tn__worker_set_hosts(wc, NULL);
    tn_wcluster_unref(wc);
}

/* Applies a CDS change: removals, then additions (replacing a cluster of the
 * same name), then one sort. */
static void apply_clusters(struct tn_worker *w, const struct tn_msg *m)
{
    bool found;
    for (size_t i = 0; i < m->n_remove; i++) {
        size_t k = cluster_pos(w, m->remove[i]->name, &found);
        if (!found || w->clusters[k]->c != m->remove[i])
            continue;
        wcluster_drop(w->clusters[k]);
        memmove(&w->clusters[k], &w->clusters[k + 1], (w->n_clusters - k - 1) * sizeof(*w->clusters));
        w->n_clusters--;
    }
    if (w->n_clusters + m->n_add > w->cap_clusters) {
        size_t cap = (w->n_clusters + m->n_add) * 2;
        struct tn_wcluster **v = realloc(w->clusters, cap * sizeof(*v));
        if (v == NULL) {
            TN_LOG(TN_LOG_ERROR, upstream, "worker %u: out of memory adding %zu clusters", w->id, m->n_add);
            return;
        }
        w->clusters = v;
        w->cap_clusters = cap;
    }
    if (m->n_add == 1) { /* the common case: one sorted insertion */
        struct tn_wcluster *wc = wcluster_new(w, m->add[0].c, m->add[0].set);
        if (wc == NULL) {
            TN_LOG(TN_LOG_ERROR, upstream, "worker %u: out of memory adding cluster %s", w->id, m->add[0].c->name);
            return;
        }
        size_t k = cluster_pos(w, wc->c->name, &found);
        if (found) {
            wcluster_drop(w->clusters[k]);
            w->clusters[k] = wc;
            return;
        }
        memmove(&w->clusters[k + 1], &w->clusters[k], (w->n_clusters - k) * sizeof(*w->clusters));
        w->clusters[k] = wc;
        w->n_clusters++;
        return;
    }
    size_t sorted = w->n_clusters;
    for (size_t i = 0; i < m->n_add; i++) {
        struct tn_wcluster *wc = wcluster_new(w, m->add[i].c, m->add[i].set);
        if (wc == NULL) {
            TN_LOG(TN_LOG_ERROR, upstream, "worker %u: out of memory adding cluster %s", w->id, m->add[i].c->name);
            continue;
        }
        size_t k = cluster_pos_in(w, sorted, wc->c->name, &found);
        if (found) {
            wcluster_drop(w->clusters[k]);
            w->clusters[k] = wc;
        } else {
            w->clusters[w->n_clusters++] = wc;
        }
    }
    qsort(w->clusters, w->n_clusters, sizeof(*w->clusters), cmp_wcluster);
}

/* --- small services ------------------------------------------------------------ */

uint64_t tn_worker_random(struct tn_worker *w)
{
    /* xorshift64* */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

const char *tn_worker_date(struct tn_worker *w)
{
    uint64_t now = uv_now(&w->loop);
    if (w->date[0] == '\0' || now - w->date_sec >= 500) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        time_t t = ts.tv_sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        w->wall_offset_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - (int64_t)now;
        strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        w->date_sec = now;
    }
    return w->date;
}

void tn_worker_conn_closed(struct tn_worker *w)
{
    w->n_conns--;
    if (w->draining && w->n_conns == 0)
        tn__server_worker_drained(w->server, w->id);
}

/* --- listeners ---------------------------------------------------------------- */

static void on_connection(uv_stream_t *server, int status)
{
    struct tn_wlistener *wl = server->data;
    if (status < 0) {
        TN_LOG(TN_LOG_WARN, connection, "accept on %s: %s", wl->l->addr.text, uv_strerror(status));
        return;
    }
    tn_conn_accept(wl);
}

static void on_wlistener_closed(uv_handle_t *h)
{
    struct tn_wlistener *wl = h->data;
    tn_listener_unref(wl->l);
    free(wl);
}

static void close_listeners(struct tn_worker *w)
{
    for (size_t i = 0; i < w->n_listeners; i++)
        if (w->listeners[i]->open) {
            w->listeners[i]->open = false;
            uv_close((uv_handle_t *)&w->listeners[i]->tcp, on_wlistener_closed);
        }
    w->n_listeners = 0; /* each is freed once closed */
}

/* Starts accepting on fd for l; the fd is taken over (closed on failure). */
static int listener_open(struct tn_worker *w, struct tn_listener *l, int fd)
{
    if (w->n_listeners == w->cap_listeners) {
        size_t cap = w->cap_listeners ? w->cap_listeners * 2 : 4;
        struct tn_wlistener **v = realloc(w->listeners, cap * sizeof(*v));
        if (v == NULL) {
            close(fd);
            return UV_ENOMEM;
        }
        w->listeners = v;
        w->cap_listeners = cap;
    }
    struct tn_wlistener *wl = calloc(1, sizeof(*wl));
    if (wl == NULL) {
        close(fd);
        return UV_ENOMEM;
    }
    wl->l = tn_listener_ref(l);
    wl->w = w;
    uv_tcp_init(&w->loop, &wl->tcp);
    wl->tcp.data = wl;
    wl->open = true;
    w->listeners[w->n_listeners++] = wl;
    int rc = uv_tcp_open(&wl->tcp, fd);
    if (rc)
        close(fd);
    else
        rc = uv_listen((uv_stream_t *)&wl->tcp, 4096, on_connection);
    if (rc) {
        TN_LOG(TN_LOG_ERROR, main, "listener %s (%s): %s", l->name, l->addr.text, uv_strerror(rc));
        wl->open = false;
        uv_close((uv_handle_t *)&wl->tcp, on_wlistener_closed);
        w->n_listeners--;
    }
    return rc;
}

/* Stops accepting on l (its connections are drained by the caller). */
static void listener_close(struct tn_worker *w, const struct tn_listener *l)
{
    for (size_t i = 0; i < w->n_listeners; i++) {
        struct tn_wlistener *wl = w->listeners[i];
        if (wl->l != l)
            continue;
        if (wl->open) {
            wl->open = false;
            uv_close((uv_handle_t *)&wl->tcp, on_wlistener_closed);
        }
        memmove(&w->listeners[i], &w->listeners[i + 1], (w->n_listeners - i - 1) * sizeof(*w->listeners));
        w->n_listeners--;
        return;
    }
}

/* LDS: old (if any) stops accepting and drains, lis (if any) starts. */
static void apply_listener(struct tn_worker *w, struct tn_msg *m)
{
    if (m->old_lis) {
        listener_close(w, m->old_lis);
        tn_conn_drain_listener(w, m->old_lis, false);
    }
    if (m->lis && !w->draining) {
        int fd = m->fd;
        m->fd = -1;
        listener_open(w, m->lis, fd);
    }
}

/* A route configuration from RDS; the table array grows as LDS brings
 * listeners that name new ones. */
static void apply_routes(struct tn_worker *w, struct tn_msg *m)
{
    if (m->index >= w->n_rds) {
        size_t n = m->index + 1 > w->n_rds * 2 ? m->index + 1 : w->n_rds * 2;
        struct tn_route_table **v = realloc(w->rds, n * sizeof(*v));
        if (v == NULL) {
            TN_LOG(TN_LOG_ERROR, main, "worker %u: out of memory taking a route configuration", w->id);
            return;
        }
        memset(v + w->n_rds, 0, (n - w->n_rds) * sizeof(*v));
        w->rds = v;
        w->n_rds = n;
    }
    /* streams hold their own references: the old table lives until the
     * last of them ends */
    struct tn_route_table *old = w->rds[m->index];
    w->rds[m->index] = m->routes;
    m->routes = old;
}

/* --- mailbox ------------------------------------------------------------------ */

static struct tn_msg *msg_new(enum msg_type type)
{
    struct tn_msg *m = calloc(1, sizeof(*m));
    if (m) {
        m->type = type;
        m->fd = -1;
    }
    return m;
}

static void post(struct tn_worker *w, struct tn_msg *m)
{
    m->next = NULL;
    uv_mutex_lock(&w->mu);
    if (w->inbox_tail)
        w->inbox_tail->next = m;
    else
        w->inbox = m;
    w->inbox_tail = m;
    uv_mutex_unlock(&w->mu);
    uv_async_send(&w->async);
}

/* --- filters' per-worker hooks (filters/filter.h) ------------------------------ */

enum filter_hook {
    HOOK_START = 0,
    HOOK_QUIESCENT,
    HOOK_CLOSE,
    HOOK_STOP,
};

/* Runs one hook of every factory that has it: starting in registry order,
 * closing and stopping in reverse. */
static void run_filter_hooks(struct tn_worker *w, enum filter_hook hook)
{
    size_t n;
    const struct tn_filter_factory *const *fs = tn_filter_factories(&n);
    bool reverse = hook == HOOK_CLOSE || hook == HOOK_STOP;
    for (size_t k = 0; k < n; k++) {
        size_t i = reverse ? n - 1 - k : k;
        const struct tn_filter_factory *f = fs[i];
        void (*fn)(struct tn_worker *, void *) = hook == HOOK_START       ? f->worker_start
                                                 : hook == HOOK_QUIESCENT ? f->worker_quiescent
                                                 : hook == HOOK_CLOSE     ? f->worker_close
                                                                          : f->worker_stop;
        if (fn)
            fn(w, w->filter_state[i]);
    }
}

/* Each factory's worker_state_size zeroed bytes; -1 when out of memory. */
static int filter_state_alloc(struct tn_worker *w)
{
    size_t n;
    const struct tn_filter_factory *const *fs = tn_filter_factories(&n);
    for (size_t i = 0; i < n; i++)
        if (fs[i]->worker_state_size && (w->filter_state[i] = calloc(1, fs[i]->worker_state_size)) == NULL)
            return -1;
    return 0;
}

static void filter_state_free(struct tn_worker *w)
{
    for (size_t i = 0; i < TN_FILTER_FACTORIES_MAX; i++) {
        free(w->filter_state[i]);
        w->filter_state[i] = NULL;
    }
}

static void shutdown_worker(struct tn_worker *w)
{
    close_listeners(w);
    tn_conn_close_all(w);
    run_filter_hooks(w, HOOK_CLOSE); /* before the pools and timers go (shadow requests) */
    for (size_t i = 0; i < w->n_clusters; i++)
        tn__worker_set_hosts(w->clusters[i], NULL);
    if (w->alog)
        tn_alog_writer_close(w->alog);
    w->alog = NULL;
    tn_timers_close(&w->timers);
    tn_outq_flusher_close(&w->flusher);
    uv_close((uv_handle_t *)&w->quiescent, NULL);
    uv_close((uv_handle_t *)&w->async, NULL);
}

static void on_mail(uv_async_t *a)
{
    struct tn_worker *w = a->data;
    uv_mutex_lock(&w->mu);
    struct tn_msg *m = w->inbox;
    w->inbox = w->inbox_tail = NULL;
    uv_mutex_unlock(&w->mu);
    while (m) {
        struct tn_msg *next = m->next;
        switch (m->type) {
        case MSG_HOSTS: {
            struct tn_wcluster *wc = tn_worker_cluster(w, m->c->name);
            if (wc && wc->c == m->c) {
                tn__worker_set_hosts(wc, m->set);
                m->set = NULL;
            }
            break;
        }
        case MSG_ROUTES:
            apply_routes(w, m);
            break;
        case MSG_LISTENER:
            apply_listener(w, m);
            break;
        case MSG_LISTENER_CLOSE:
            tn_conn_drain_listener(w, m->lis, true);
            break;
        case MSG_CLUSTERS:
            apply_clusters(w, m);
            break;
        case MSG_DRAIN:
            if (!w->draining) {
                w->draining = true;
                close_listeners(w);
                tn_conn_drain_all(w);
                if (w->n_conns == 0)
                    tn__server_worker_drained(w->server, w->id);
            }
            break;
        case MSG_EXIT:
            msg_free(m);
            for (m = next; m; m = next) {
                next = m->next;
                msg_free(m);
            }
            shutdown_worker(w);
            return;
        }
        msg_free(m);
        m = next;
    }
}

void tn__worker_post_hosts(struct tn_worker *w, struct tn_cluster *c, struct tn_host_set *set)
{
    struct tn_msg *m = msg_new(MSG_HOSTS);
    if (m == NULL)
        return;
    m->c = tn_cluster_ref(c);
    m->set = tn_host_set_ref(set);
    post(w, m);
}

void tn__worker_post_clusters(struct tn_worker *w, const struct tn__cluster_hosts *add, size_t n_add,
                              struct tn_cluster *const *remove, size_t n_remove)
{
    struct tn_msg *m = msg_new(MSG_CLUSTERS);
    if (m == NULL || (m->add = calloc(n_add + 1, sizeof(*m->add))) == NULL ||
        (m->remove = calloc(n_remove + 1, sizeof(*m->remove))) == NULL) {
        TN_LOG(TN_LOG_ERROR, upstream, "out of memory telling worker %u of cluster changes", w->id);
        if (m)
            free(m->add);
        free(m);
        return;
    }
    for (size_t i = 0; i < n_add; i++) {
        m->add[i].c = tn_cluster_ref(add[i].c);
        m->add[i].set = add[i].set ? tn_host_set_ref(add[i].set) : NULL;
    }
    for (size_t i = 0; i < n_remove; i++)
        m->remove[i] = tn_cluster_ref(remove[i]);
    m->n_add = n_add;
    m->n_remove = n_remove;
    post(w, m);
}

void tn__worker_post_routes(struct tn_worker *w, size_t rds_index, struct tn_route_table *t)
{
    struct tn_msg *m = msg_new(MSG_ROUTES);
    if (m == NULL)
        return;
    m->index = rds_index;
    m->routes = t ? tn_route_table_ref(t) : NULL;
    post(w, m);
}

void tn__worker_post_listener(struct tn_worker *w, struct tn_listener *l, int fd, struct tn_listener *old)
{
    struct tn_msg *m = msg_new(MSG_LISTENER);
    if (m == NULL) {
        TN_LOG(TN_LOG_ERROR, main, "out of memory telling worker %u of a listener change", w->id);
        if (fd >= 0)
            close(fd);
        return;
    }
    m->lis = l ? tn_listener_ref(l) : NULL;
    m->fd = fd;
    m->old_lis = old ? tn_listener_ref(old) : NULL;
    post(w, m);
}

void tn__worker_post_listener_close(struct tn_worker *w, struct tn_listener *l)
{
    struct tn_msg *m = msg_new(MSG_LISTENER_CLOSE);
    if (m == NULL)
        return;
    m->lis = tn_listener_ref(l);
    post(w, m);
}

static void post_simple(struct tn_worker *w, enum msg_type type)
{
    struct tn_msg *m = msg_new(type);
    if (m == NULL)
        return;
    post(w, m);
}

void tn__worker_post_drain(struct tn_worker *w)
{
    post_simple(w, MSG_DRAIN);
}

void tn__worker_post_exit(struct tn_worker *w)
{
    post_simple(w, MSG_EXIT);
}

/* --- the thread ----------------------------------------------------------------- */

static void on_quiescent(uv_check_t *h)
{
    struct tn_worker *w = h->data;
    run_filter_hooks(w, HOOK_QUIESCENT);
    tn_conn_quiescent(w);
}

struct tn_hpool *tn_wcluster_pool(struct tn_wcluster *wc, struct tn_host *h)
{
    for (size_t i = 0; wc->hosts && i < wc->hosts->n_hosts; i++)
        if (wc->hosts->hosts[i] == h)
            return wc->pools[i];
    return NULL;
}

void tn__worker_wake(struct tn_worker *w)
{
    uv_async_send(&w->async);
}

static void run(void *arg)
{
    struct tn_worker *w = arg;
    char name[16];
    /* "top -H" and tools/lockcount tell workers apart by name */
    snprintf(name, sizeof(name), "tern-worker-%u", w->id);
    prctl(PR_SET_NAME, name, 0, 0, 0);
    run_filter_hooks(w, HOOK_START);
    uv_check_init(&w->loop, &w->quiescent);
    w->quiescent.data = w;
    uv_check_start(&w->quiescent, on_quiescent);
    uv_unref((uv_handle_t *)&w->quiescent);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    run_filter_hooks(w, HOOK_STOP);
    /* the pools and requests are gone with the loop: the map's references
     * are the last */
    for (size_t i = 0; i < w->n_clusters; i++)
        tn_wcluster_unref(w->clusters[i]);
    w->n_clusters = 0;
    if (uv_loop_close(&w->loop))
        TN_LOG(TN_LOG_WARN, main, "worker %u: loop closed with handles open", w->id);
    tn_conn_worker_done(w);
    tn_block_cache_drain();
    tn_outq_cache_drain();
}

static uint64_t seed(unsigned id)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^
           (id + 1) * 0x9e3779b97f4a7c15ull;
}

struct tn_worker *tn__worker_start(struct tn_server *srv, unsigned id, struct tn_config *cfg, const int *fds,
                                   const struct tn__cluster_hosts *clusters, size_t n_clusters,
                                   struct tn_route_table *const *rds, size_t n_rds, _Atomic uint64_t *shard)
{
    struct tn_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->shard = shard;
    w->id = id;
    w->server = srv;
    w->cfg = tn_config_ref(cfg);
    w->rng = seed(id);
    if (filter_state_alloc(w)) {
        filter_state_free(w);
        tn_config_unref(w->cfg);
        free(w);
        return NULL;
    }
    uv_loop_init(&w->loop);
    uv_mutex_init(&w->mu);
    uv_async_init(&w->loop, &w->async, on_mail);
    w->async.data = w;
    tn_timers_init(&w->timers, &w->loop);
    tn_outq_flusher_init(&w->flusher, &w->loop);
    tn_worker_date(w);
    w->alog = tn_alog_writer_new(&w->loop);
    w->cap_clusters = n_clusters + 16;
    w->clusters = calloc(w->cap_clusters, sizeof(*w->clusters));
    w->n_rds = n_rds;
    w->rds = calloc(n_rds + 1, sizeof(*w->rds));
    if (w->clusters == NULL || w->rds == NULL)
        return NULL;
    for (size_t i = 0; i < n_rds; i++)
        w->rds[i] = rds[i] ? tn_route_table_ref(rds[i]) : NULL;
    for (size_t i = 0; i < n_clusters; i++) {
        struct tn_wcluster *wc = wcluster_new(w, clusters[i].c, clusters[i].set);
        if (wc == NULL)
            return NULL;
        w->clusters[w->n_clusters++] = wc;
    }
    qsort(w->clusters, w->n_clusters, sizeof(*w->clusters), cmp_wcluster);
    for (size_t i = 0; i < cfg->n_listeners; i++)
        if (listener_open(w, cfg->listeners[i], fds[i])) {
            TN_LOG(TN_LOG_CRITICAL, main, "listener %s cannot accept", cfg->listeners[i]->name);
            return NULL;
        }
    if (uv_thread_create(&w->thread, run, w))
        return NULL;
    return w;
}

void tn__worker_join(struct tn_worker *w)
{
    uv_thread_join(&w->thread);
    uv_mutex_destroy(&w->mu);
    for (size_t i = 0; i < w->n_rds; i++)
        tn_route_table_unref(w->rds[i]);
    free(w->rds);
    tn_config_unref(w->cfg);
    free(w->clusters);
    free(w->listeners);
    filter_state_free(w);
    free(w);
}
