/* Upstream pools on a real loop against a tiny keep-alive origin in the
 * test: reuse, the pending queue, circuit breakers, connect failures. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "dataplane/server/config.h"
#include "dataplane/stats/dp_stats.h"
#include "dataplane/stats/stats.h"
#include "dataplane/upstream/conn_pool.h"
#include "dataplane/server/worker.h"
#include "suites.h"
#include "xds/bootstrap.h"

/* --- the origin: answers every request line it sees with a fixed response */

static uv_tcp_t origin;
static int origin_port, origin_accepts, origin_requests;

struct oconn {
    uv_tcp_t tcp;
    char buf[4096];
};

static void o_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct oconn *c = h->data;
    (void)hint;
    *b = uv_buf_init(c->buf, sizeof(c->buf));
}

static void o_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void o_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    static char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    if (n < 0) {
        uv_close((uv_handle_t *)s, (uv_close_cb)free);
        return;
    }
    for (ssize_t i = 0; i + 3 < n; i++) /* one response per request head */
        if (memcmp(b->base + i, "\r\n\r\n", 4) == 0) {
            origin_requests++;
            uv_write_t *w = malloc(sizeof(*w));
            uv_buf_t out = uv_buf_init(resp, sizeof(resp) - 1);
            uv_write(w, s, &out, 1, o_written);
        }
}

static void o_conn(uv_stream_t *srv, int status)
{
    (void)status;
    struct oconn *c = calloc(1, sizeof(*c));
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    uv_accept(srv, (uv_stream_t *)&c->tcp);
    origin_accepts++;
    uv_read_start((uv_stream_t *)&c->tcp, o_alloc, o_read);
}

/* --- a worker with one cluster --------------------------------------------- */

static struct tn_worker w;
static struct tn_config *cfg;
static struct tn_wcluster wc;

static void setup_worker(int port, unsigned max_cx, unsigned max_pending)
{
    char yaml[1024];
    struct tn_err err;
    snprintf(yaml, sizeof(yaml),
             "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}\n"
             "static_resources:\n  clusters:\n  - name: o\n    connect_timeout: 2s\n"
             "    circuit_breakers: {thresholds: [{max_connections: %u, max_pending_requests: %u}]}\n"
             "    load_assignment:\n      cluster_name: o\n      endpoints:\n      - lb_endpoints:\n"
             "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}\n",
             max_cx, max_pending, port);
    tn_err_init(&err);
    tn_pb_bootstrap *b = tn_bootstrap_load(NULL, yaml, &err);
    ck_assert_msg(b != NULL, "%s", err.msg);
    cfg = tn_config_compile(b, &err);
    ck_assert_msg(cfg != NULL, "%s", err.msg);
    memset(&w, 0, sizeof(w));
    static struct tn_stats st;
    static struct tn_server_stats ss;
    tn_stats_dispose(&st);
    tn_stats_init(&st);
    ck_assert_int_eq(tn_dp_stats_register(&st, cfg, &ss), 0);
    w.shard = tn_stats_shard(&st);
    ck_assert_ptr_nonnull(w.shard);
    ck_assert_int_eq(uv_loop_init(&w.loop), 0);
    tn_timers_init(&w.timers, &w.loop);
    tn_outq_flusher_init(&w.flusher, &w.loop);
    memset(&wc, 0, sizeof(wc));
    wc.c = cfg->clusters[0];
    wc.w = &w;
    wc.refs = 1; /* the test's: pools add theirs */
}

static void start_origin(void)
{
    struct sockaddr_in sa;
    int len = sizeof(sa);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&w.loop, &origin);
    ck_assert_int_eq(uv_tcp_bind(&origin, (struct sockaddr *)&sa, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&origin, 16, o_conn), 0);
    uv_tcp_getsockname(&origin, (struct sockaddr *)&sa, &len);
    origin_port = ntohs(sa.sin_port);
    origin_accepts = origin_requests = 0;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, h->data == NULL || h == (uv_handle_t *)&origin ? NULL : (uv_close_cb)free);
}

static void finish(struct tn_hpool *p)
{
    tn_hpool_retire(p);
    tn_timers_close(&w.timers);
    tn_outq_flusher_close(&w.flusher);
    uv_run(&w.loop, UV_RUN_NOWAIT);
    uv_walk(&w.loop, walk_close, NULL);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&w.loop), 0);
    ck_assert_uint_eq(wc.refs, 1); /* every pool gave its reference back */
    tn_config_unref(cfg);
}

/* --- a request that writes a GET and records what happens ---------------- */

struct req {
    struct tn_ureq u;
    int ready, failure, status, done, reset;
    bool pause_on_data; /* as the router does when the client reads slowly */
};

static void r_send(struct req *r)
{
    struct tn_block *b = tn_block_new(64);
    static const char get[] = "GET / HTTP/1.1\r\nHost: o\r\n\r\n";
    memcpy(b->data, get, sizeof(get) - 1);
    struct tn_slice s = tn_slice_of(b, b->data, sizeof(get) - 1);
    tn_block_unref(b);
    ck_assert_int_eq(tn_uconn_write(r->u.uc, NULL, 0, &s, 1, NULL, 0), 0);
    tn_uconn_request_done(r->u.uc);
}

static void r_ready(struct tn_ureq *u, struct tn_uconn *uc)
{
    struct req *r = (struct req *)u;
    (void)uc;
    r->ready++;
    r_send(r);
}

static void r_failure(struct tn_ureq *u, enum tn_pool_failure why)
{
    ((struct req *)u)->failure = (int)why + 1;
}

static void r_headers(struct tn_ureq *u, struct tn_response *resp)
{
    ((struct req *)u)->status = resp->status;
}

static void r_data(struct tn_ureq *u, struct tn_slice *d, bool end)
{
    struct req *r = (struct req *)u;
    tn_slice_release(d);
    if (!end && r->pause_on_data && u->uc)
        tn_uconn_read_pause(u->uc, true);
    if (end)
        ((struct req *)u)->done = 1;
}

static void r_reset(struct tn_ureq *u, enum tn_reset_reason why)
{
    (void)why;
    ((struct req *)u)->reset = 1;
}

static const struct tn_ureq_ops ops = {.on_ready = r_ready, .on_failure = r_failure, .on_headers = r_headers,
                                       .on_data = r_data, .on_reset = r_reset};

static void run_until(int *flag)
{
    for (int i = 0; i < 2000 && !*flag; i++)
        uv_run(&w.loop, UV_RUN_ONCE);
    ck_assert(*flag);
}

static struct tn_hpool *new_pool(void)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", origin_port, &sa);
    struct tn_host *h = tn_host_new((struct sockaddr *)&sa, sizeof(sa), NULL, 1, 0);
    struct tn_hpool *p = tn_hpool_new(&wc, h);
    tn_host_unref(h);
    return p;
}

START_TEST(connections_are_reused)
{
    setup_worker(0, 1024, 1024);
    start_origin();
    struct tn_hpool *p = new_pool();
    struct req a = {.u.ops = &ops}, b = {.u.ops = &ops};
    ck_assert_int_eq(tn_hpool_acquire(p, &a.u), 1); /* no connection yet: pending */
    run_until(&a.done);
    ck_assert_int_eq(a.status, 200);
    ck_assert_int_eq(tn_hpool_acquire(p, &b.u), 0); /* the idle one, at once */
    r_send(&b);
    run_until(&b.done);
    ck_assert_int_eq(b.status, 200);
    ck_assert_int_eq(origin_accepts, 1);
    ck_assert_int_eq(origin_requests, 2);
    ck_assert_uint_eq(atomic_load(&wc.c->rc_pending), 0);
    finish(p);
}
END_TEST

/* The previous owner paused reading on the response's last body bytes, which
 * came in the same read as its end: the connection goes back to the pool
 * reading again, or the next request on it would never see its answer. */
START_TEST(read_pause_ends_with_the_response)
{
    setup_worker(0, 1024, 1024);
    start_origin();
    struct tn_hpool *p = new_pool();
    struct req a = {.u.ops = &ops, .pause_on_data = true}, b = {.u.ops = &ops};
    ck_assert_int_eq(tn_hpool_acquire(p, &a.u), 1);
    run_until(&a.done);
    ck_assert_int_eq(tn_hpool_acquire(p, &b.u), 0);
    r_send(&b);
    run_until(&b.done);
    ck_assert_int_eq(b.status, 200);
    ck_assert_int_eq(origin_accepts, 1);
    finish(p);
}
END_TEST

START_TEST(pending_queue_and_overflow)
{
    setup_worker(0, 1, 1); /* one connection, one waiting request */
    start_origin();
    struct tn_hpool *p = new_pool();
    struct req a = {.u.ops = &ops}, b = {.u.ops = &ops}, c = {.u.ops = &ops};
    ck_assert_int_eq(tn_hpool_acquire(p, &a.u), 1);
    run_until(&a.ready);
    ck_assert_int_eq(tn_hpool_acquire(p, &b.u), 1);  /* waits for a's connection */
    ck_assert_int_eq(tn_hpool_acquire(p, &c.u), -1); /* max_pending_requests: overflow */
    run_until(&b.done);
    ck_assert(a.done && a.status == 200 && b.status == 200);
    ck_assert_int_eq(origin_accepts, 1); /* max_connections held */
    finish(p);
}
END_TEST

START_TEST(cancel_leaves_the_queue)
{
    setup_worker(0, 1, 4);
    start_origin();
    struct tn_hpool *p = new_pool();
    struct req a = {.u.ops = &ops}, b = {.u.ops = &ops};
    ck_assert_int_eq(tn_hpool_acquire(p, &a.u), 1);
    ck_assert_int_eq(tn_hpool_acquire(p, &b.u), 1);
    ck_assert_uint_eq(atomic_load(&wc.c->rc_pending), 2);
    tn_ureq_cancel(&b.u);
    ck_assert_uint_eq(atomic_load(&wc.c->rc_pending), 1);
    run_until(&a.done);
    ck_assert_int_eq(b.ready, 0);
    finish(p);
}
END_TEST

START_TEST(connect_failure_is_reported)
{
    setup_worker(0, 1024, 1024);
    start_origin();
    uv_close((uv_handle_t *)&origin, NULL); /* nothing listens there any more */
    uv_run(&w.loop, UV_RUN_NOWAIT);
    struct tn_hpool *p = new_pool();
    struct req a = {.u.ops = &ops};
    ck_assert_int_eq(tn_hpool_acquire(p, &a.u), 1);
    run_until(&a.failure);
    ck_assert_int_eq(a.failure, TN_POOL_CONNECT_FAILURE + 1);
    ck_assert_int_eq(a.ready, 0);
    ck_assert_uint_eq(atomic_load(&wc.c->rc_cx), 0);
    ck_assert_uint_eq(atomic_load(&wc.c->rc_pending), 0);
    finish(p);
}
END_TEST

Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, connections_are_reused);
    tcase_add_test(tc, read_pause_ends_with_the_response);
    tcase_add_test(tc, pending_queue_and_overflow);
    tcase_add_test(tc, cancel_leaves_the_queue);
    tcase_add_test(tc, connect_failure_is_reported);
    suite_add_tcase(s, tc);
    return s;
}
