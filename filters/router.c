/* envoy.filters.http.router: picks the route, the cluster and a host, sends
 * the request upstream through the host's pool, retries what its policy
 * allows while the request body can be replayed, enforces the route and
 * per-try timeouts, and streams the response back. Mirroring runs through
 * mirror/, whose per-worker shadows are this factory's worker state. */
#include "filters/router.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <llhttp.h>
#include <netinet/in.h>

#include "dataplane/upstream/cluster.h"
#include "dataplane/http/h1.h"
#include "dataplane/server/listener.h"
#include "dataplane/core/log.h"
#include "dataplane/upstream/outlier.h"
#include "dataplane/http/stream.h"
#include "dataplane/upstream/conn_pool.h"
#include "dataplane/server/worker.h"
#include "envoy/extensions/filters/http/router/v3/router.pb-c.h"
#include "filters/route_match.h"
#include "mirror/mirror.h"

/* Stats: CS(r, name) is the cluster's slot, HSR(r, name) the connection
 * manager's, both on the worker's shard. */
#define CS(r, f) tn_stream_worker((r)->s)->shard, (r)->cluster->stats.f
#define HSR(r, f) tn_stream_worker((r)->s)->shard, tn_stream_hcm((r)->s)->stats.f

#define RESET_BODY_PREFIX "upstream connect error or disconnect/reset before headers. reset reason: "

struct router {
    struct tn_stream *s;
    const struct tn_router_config *cfg;
    struct tn_ureq ureq;
    struct tn_route_table *rt; /* reference */
    const struct tn_vhost *vh;
    const struct tn_route *route;
    struct tn_wcluster *wc;
    struct tn_cluster *cluster; /* reference */
    struct tn_host *host;       /* reference, the current try's */
    const struct tn_host *last_host; /* the previous try's (compared only) */
    struct tn_host_set *set;    /* reference, for outlier accounting */
    struct tn_slice head;       /* the request head, kept for retries */
    struct tn_slices body;      /* body kept for retries, or waiting for a connection */
    struct tn_mirror mirror;    /* the request's shadows, fed the body while the stream lives */
    size_t body_written;        /* slices of `body` already written on this try */
    struct tn_retry_policy retry; /* the route's (or virtual host's), as the request's x-envoy-* amend it */
    uint32_t retry_codes[8];
    uint64_t timeout_ms;
    struct tn_timer timeout, try_timeout, backoff;
    uint64_t try_start;
    unsigned attempts;
    bool retry_counted, replayable, req_end, resp_started, done, counted_rq, chunked, head_written, paused_down;
    bool upgrade; /* the client's upgrade is enabled and goes upstream */
    bool h2;      /* the cluster speaks HTTP/2: the request goes as h2h, its body unframed */
    bool refused; /* the last try's stream was refused (HTTP/2): never processed */
    struct tn_header *h2h; /* the request as a header list (stream memory), kept for retries */
    size_t n_h2h;
    struct tn_block *h2blk; /* holds the configured headers h2h points into */
    int64_t content_length;
};

/* --- small helpers -------------------------------------------------------- */

static struct tn_worker *W(struct router *r)
{
    return tn_stream_worker(r->s);
}

static void respond(struct router *r, int status, const char *body, uint32_t flags, const char *details)
{
    r->done = true;
    tn_stream_local_reply(r->s, status, body, flags, details);
}

static void release_try(struct router *r)
{
    /* an exchange given up before its response ended (timeout, retry, the
     * client left, a local reply): Envoy's upstream_rq_tx_reset */
    if (r->ureq.uc && !r->done)
        tn_stat_inc(CS(r, upstream_rq_tx_reset));
    if (r->ureq.uc || r->ureq.pending)
        tn_ureq_cancel(&r->ureq);
    tn_timer_stop(&W(r)->timers, &r->try_timeout);
    if (r->host) {
        tn_stat_dec(CS(r, upstream_rq_active));
        atomic_fetch_sub(&r->host->active_rq, 1);
        tn_host_unref(r->host);
        r->host = NULL;
    }
}

static void cleanup(struct router *r)
{
    struct tn_worker *w = W(r);
    tn_mirror_detach(&r->mirror); /* complete shadows go on alone, the others are reset */
    release_try(r);
    tn_timer_stop(&w->timers, &r->timeout);
    tn_timer_stop(&w->timers, &r->backoff);
    if (r->counted_rq) {
        atomic_fetch_sub(&r->cluster->rc_rq, 1);
        r->counted_rq = false;
    }
    if (r->retry_counted) {
        atomic_fetch_sub(&r->cluster->rc_retries, 1);
        r->retry_counted = false;
    }
    tn_slice_release(&r->head);
    if (r->h2blk)
        tn_block_unref(r->h2blk);
    r->h2blk = NULL;
    tn_slices_dispose(&r->body);
    if (r->set)
        tn_host_set_unref(r->set);
    if (r->cluster)
        tn_cluster_unref(r->cluster);
    if (r->wc)
        tn_wcluster_unref(r->wc);
    r->wc = NULL;
    if (r->rt)
        tn_route_table_unref(r->rt);
    r->set = NULL;
    r->cluster = NULL;
    r->rt = NULL;
}

/* --- request head --------------------------------------------------------- */

static const struct tn_header_mutations *levels(struct router *r, int i)
{
    switch (i) {
    case 0:
        return &r->route->headers_mut;
    case 1:
        return &r->vh->headers_mut;
    default:
        return &r->rt->headers_mut;
    }
}

static bool removed(const char **names, size_t n, const struct tn_header *h)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(names[i]) == h->name_len && memcmp(names[i], h->name, h->name_len) == 0)
            return true;
    return false;
}

static bool header_overridden(struct router *r, const struct tn_header *h, bool req)
{
    for (int lv = 0; lv < 3; lv++) {
        const struct tn_header_mutations *m = levels(r, lv);
        if (req ? removed(m->req_remove, m->n_req_remove, h) : removed(m->resp_remove, m->n_resp_remove, h))
            return true;
        const struct tn_header_op *ops = req ? m->req_add : m->resp_add;
        size_t n = req ? m->n_req_add : m->n_resp_add;
        for (size_t i = 0; i < n; i++)
            if ((ops[i].action == 2 || ops[i].action == 3) && strlen(ops[i].key) == h->name_len &&
                memcmp(ops[i].key, h->name, h->name_len) == 0)
                return true;
    }
    return false;
}

static bool key_is(const char *key, size_t kl, const struct tn_header_op *op)
{
    return strlen(op->key) == kl && memcmp(op->key, key, kl) == 0;
}

/* Whether a level after `lv` overwrites `key` (Envoy applies route, then
 * virtual host, then route configuration, so the later one wins). */
static bool overwritten_later(struct router *r, int lv, bool req, const char *key, size_t kl)
{
    for (int l = lv + 1; l < 3; l++) {
        const struct tn_header_mutations *m = levels(r, l);
        const struct tn_header_op *ops = req ? m->req_add : m->resp_add;
        size_t n = req ? m->n_req_add : m->n_resp_add;
        for (size_t i = 0; i < n; i++)
            if (ops[i].action == 2 && key_is(key, kl, &ops[i]))
                return true;
    }
    return false;
}

/* Whether an earlier level added `key` (for ADD_IF_ABSENT and
 * OVERWRITE_IF_EXISTS at a later one). */
static bool added_earlier(struct router *r, int lv, bool req, const char *key, size_t kl)
{
    for (int l = 0; l < lv; l++) {
        const struct tn_header_mutations *m = levels(r, l);
        const struct tn_header_op *ops = req ? m->req_add : m->resp_add;
        size_t n = req ? m->n_req_add : m->n_resp_add;
        for (size_t i = 0; i < n; i++)
            if (key_is(key, kl, &ops[i]) && (ops[i].value[0] || ops[i].keep_empty_value))
                return true;
    }
    return false;
}

/* Adds the configured headers of every level (route, virtual host, route
 * configuration), honouring each header's append action. */
static int add_configured(struct router *r, struct tn_block *b, size_t *pos, bool req, const struct tn_header *have,
                          size_t n_have)
{
    for (int lv = 0; lv < 3; lv++) {
        const struct tn_header_mutations *m = levels(r, lv);
        const struct tn_header_op *ops = req ? m->req_add : m->resp_add;
        size_t n = req ? m->n_req_add : m->n_resp_add;
        for (size_t i = 0; i < n; i++) {
            size_t kl = strlen(ops[i].key), vl = strlen(ops[i].value);
            bool exists = tn_headers_find(have, n_have, ops[i].key, kl) != NULL || added_earlier(r, lv, req, ops[i].key, kl);
            if ((ops[i].action == 1 && exists) || (ops[i].action == 3 && !exists))
                continue;
            if (vl == 0 && !ops[i].keep_empty_value)
                continue;
            if (overwritten_later(r, lv, req, ops[i].key, kl))
                continue;
            if (tn_h1_put_header(b->data, b->cap, pos, ops[i].key, kl, ops[i].value, vl))
                return -1;
        }
    }
    return 0;
}

static size_t headers_size(const struct tn_header *h, size_t n)
{
    size_t sz = 0;
    for (size_t i = 0; i < n; i++)
        sz += h[i].name_len + h[i].value_len + 4;
    return sz;
}

static size_t mutations_size(struct router *r, bool req)
{
    size_t sz = 0;
    for (int lv = 0; lv < 3; lv++) {
        const struct tn_header_mutations *m = levels(r, lv);
        const struct tn_header_op *ops = req ? m->req_add : m->resp_add;
        size_t n = req ? m->n_req_add : m->n_resp_add;
        for (size_t i = 0; i < n; i++)
            sz += strlen(ops[i].key) + strlen(ops[i].value) + 4;
    }
    return sz;
}

static int build_head(struct router *r, const char *host, size_t host_len)
{
    struct tn_request *rq = tn_stream_request(r->s);
    struct tn_request_view view = {.method = rq->method, .method_len = rq->method_len, .path = rq->path,
                                   .path_len = rq->path_len, .host = rq->host, .host_len = rq->host_len,
                                   .scheme = rq->scheme, .headers = rq->headers, .n_headers = rq->n_headers};
    size_t cap = 256 + rq->path_len * 2 + host_len + headers_size(rq->headers, rq->n_headers) + mutations_size(r, true);
    char *path = NULL;
    size_t path_len = 0;
    if (r->route->prefix_rewrite || r->route->regex_rewrite) {
        size_t pcap = rq->path_len * 4 + 1024;
        path = tn_stream_alloc(r->s, pcap);
        if (path == NULL)
            return -1;
        path_len = tn_route_rewrite_path(r->route, &view, path, pcap);
        if (path_len > pcap)
            path_len = 0;
        cap += path_len;
    }
    if (path_len == 0) {
        path = (char *)rq->path;
        path_len = rq->path_len;
    }
    struct tn_block *b = tn_block_new(cap);
    if (b == NULL)
        return -1;
    size_t pos = 0;
    if (rq->method_len + path_len + 12 > b->cap)
        goto fail;
    memcpy(b->data, rq->method, rq->method_len);
    pos = rq->method_len;
    b->data[pos++] = ' ';
    memcpy(b->data + pos, path, path_len);
    pos += path_len;
    memcpy(b->data + pos, " HTTP/1.1\r\n", 11);
    pos += 11;
    if (tn_h1_put_header(b->data, b->cap, &pos, "host", 4, host, host_len))
        goto fail;
    for (size_t i = 0; i < rq->n_headers; i++) {
        const struct tn_header *h = &rq->headers[i];
        if (header_overridden(r, h, true))
            continue;
        if (tn_h1_put_header(b->data, b->cap, &pos, h->name, h->name_len, h->value, h->value_len))
            goto fail;
    }
    if (add_configured(r, b, &pos, true, rq->headers, rq->n_headers))
        goto fail;
    if (r->upgrade && tn_h1_put_header(b->data, b->cap, &pos, "connection", 10, "upgrade", 7))
        goto fail;
    if (rq->content_length >= 0) {
        char num[24];
        size_t nl = tn_h1_u64(num, (uint64_t)rq->content_length);
        if (tn_h1_put_header(b->data, b->cap, &pos, "content-length", 14, num, (size_t)nl))
            goto fail;
    } else if (rq->chunked) {
        r->chunked = true;
        if (tn_h1_put_header(b->data, b->cap, &pos, "transfer-encoding", 17, "chunked", 7))
            goto fail;
    }
    if (pos + 2 > b->cap)
        goto fail;
    memcpy(b->data + pos, "\r\n", 2);
    pos += 2;
    r->head = tn_slice_of(b, b->data, pos);
    tn_block_unref(b);
    return 0;
fail:
    tn_block_unref(b);
    return -1;
}

/* The request as a header list for an HTTP/2 upstream: the pseudo-headers,
 * the client's headers less what the route removes, the configured ones,
 * content-length when known (the body is sent unframed). */
static int build_h2_headers(struct router *r, const char *host, size_t host_len)
{
    struct tn_request *rq = tn_stream_request(r->s);
    const char *path = rq->path;
    size_t path_len = rq->path_len;
    if (r->route->prefix_rewrite || r->route->regex_rewrite) {
        struct tn_request_view view = {.method = rq->method, .method_len = rq->method_len, .path = rq->path,
                                       .path_len = rq->path_len, .host = rq->host, .host_len = rq->host_len,
                                       .scheme = rq->scheme, .headers = rq->headers, .n_headers = rq->n_headers};
        size_t pcap = rq->path_len * 4 + 1024;
        char *p = tn_stream_alloc(r->s, pcap);
        if (p == NULL)
            return -1;
        size_t pl = tn_route_rewrite_path(r->route, &view, p, pcap);
        if (pl && pl <= pcap) {
            path = p;
            path_len = pl;
        }
    }
    size_t max = rq->n_headers + 8 + mutations_size(r, true) / 4;
    struct tn_header *h = tn_stream_alloc(r->s, max * sizeof(*h));
    struct tn_block *b = tn_block_new(64 + mutations_size(r, true));
    if (h == NULL || b == NULL) {
        if (b)
            tn_block_unref(b);
        return -1;
    }
    size_t n = 0, pos = 0, start = 0;
    h[n++] = (struct tn_header){.name = ":method", .name_len = 7, .value = rq->method, .value_len = rq->method_len};
    h[n++] = (struct tn_header){.name = ":scheme", .name_len = 7, .value = "http", .value_len = 4};
    h[n++] = (struct tn_header){.name = ":authority", .name_len = 10, .value = host, .value_len = host_len};
    h[n++] = (struct tn_header){.name = ":path", .name_len = 5, .value = path, .value_len = path_len};
    for (size_t i = 0; i < rq->n_headers; i++)
        if (!header_overridden(r, &rq->headers[i], true))
            h[n++] = rq->headers[i];
    if (add_configured(r, b, &pos, true, rq->headers, rq->n_headers))
        goto fail;
    while (start < pos && n + 1 < max) {
        char *line = b->data + start, *colon = memchr(line, ':', pos - start), *eol = memchr(line, '\r', pos - start);
        if (colon == NULL || eol == NULL)
            break;
        h[n++] = (struct tn_header){.name = line, .name_len = colon - line, .value = colon + 2,
                                    .value_len = eol - colon - 2};
        start = (size_t)(eol - b->data) + 2;
    }
    if (rq->content_length >= 0 && n < max && pos + 24 <= b->cap) {
        char *v = b->data + pos;
        size_t vl = tn_h1_u64(v, (uint64_t)rq->content_length);
        h[n++] = (struct tn_header){.name = "content-length", .name_len = 14, .value = v, .value_len = (uint32_t)vl};
    }
    r->h2h = h;
    r->n_h2h = n;
    r->h2blk = b;
    return 0;
fail:
    tn_block_unref(b);
    return -1;
}

/* The authority sent upstream: rewritten (literal or the host's name) or
 * the client's. */
static void upstream_authority(struct router *r, const char **h, size_t *len)
{
    struct tn_request *rq = tn_stream_request(r->s);
    if (r->route->host_rewrite_literal) {
        *h = r->route->host_rewrite_literal;
        *len = strlen(*h);
    } else if (r->route->auto_host_rewrite && r->host) {
        *h = r->host->hostname ? r->host->hostname : r->host->addr_text;
        *len = strlen(*h);
    } else {
        *h = rq->host;
        *len = rq->host_len;
    }
}

/* --- sending ------------------------------------------------------------------ */

static void write_body_slices(struct router *r)
{
    struct tn_uconn *uc = r->ureq.uc;
    while (uc && r->body_written < r->body.n) {
        struct tn_slice *sl = tn_slices_at(&r->body, r->body_written);
        struct tn_slice copy = tn_slice_of(sl->blk, sl->p, sl->len);
        int rc;
        if (r->chunked && !r->h2) {
            char pre[24];
            size_t pl = tn_h1_chunk_size(pre, sl->len);
            rc = tn_uconn_write(uc, pre, (size_t)pl, &copy, 1, "\r\n", 2);
        } else {
            rc = tn_uconn_write(uc, NULL, 0, &copy, 1, NULL, 0);
        }
        if (rc)
            return; /* the connection reports its failure */
        r->body_written++;
    }
    if (!r->replayable) {
        /* written bytes need not be kept */
        while (r->body_written > 0) {
            struct tn_slice sl = tn_slices_shift(&r->body);
            tn_slice_release(&sl);
            r->body_written--;
        }
    }
    if (uc && r->req_end && r->body_written == r->body.n) {
        if (r->chunked && !r->h2)
            tn_uconn_write(uc, "0\r\n\r\n", 5, NULL, 0, NULL, 0);
        tn_uconn_request_done(uc);
    }
}

static void fail(struct router *r, int status, const char *body, uint32_t flags, const char *details);

static void send_request(struct router *r)
{
    struct tn_uconn *uc = r->ureq.uc;
    struct tn_slice h = tn_slice_of(r->head.blk, r->head.p, r->head.len);
    r->body_written = 0;
    r->try_start = tn_worker_now(W(r));
    tn_stream_info(r->s)->upstream_local = *tn_uconn_local(uc);
    if (r->h2) {
        tn_slice_release(&h);
        if (tn_uconn_send_headers(uc, r->h2h, r->n_h2h, r->req_end && r->body.n == 0)) {
            fail(r, 503, RESET_BODY_PREFIX "protocol error", TN_RF_UPSTREAM_PROTOCOL_ERROR,
                 "upstream_reset_before_response_started{protocol_error}");
            return;
        }
    } else if (tn_uconn_write(uc, NULL, 0, &h, 1, NULL, 0)) {
        return;
    }
    if (r->ureq.uc)
        write_body_slices(r);
    /* the body waiting for this connection is now the connection's to
     * write: reading resumes unless it is already above its watermark (then
     * on_write_low resumes it) */
    if (r->ureq.uc && !r->req_end && r->paused_down && !tn_uconn_write_above(r->ureq.uc)) {
        r->paused_down = false;
        tn_stream_request_pause(r->s, false);
    }
}

static void start_try(struct router *r);

/* Outlier detection hears of every try's result; an ejection counts. */
static void report_outlier(struct router *r, int status, uint64_t now)
{
    if (r->host && tn_outlier_report(r->cluster, r->set, r->host, status, now))
        tn_stat_inc(CS(r, outlier_detection_ejections_enforced_total));
}

/* Whether the policy retries this failure (status 0: connect failure,
 * reset or per-try timeout). */
static bool retry_on(struct router *r, int status, bool connect_failure);

static bool retriable(struct router *r, int status, bool connect_failure)
{
    const struct tn_retry_policy *p = &r->retry;
    if (!p->set || !r->replayable || r->resp_started)
        return false;
    if (r->attempts > p->num_retries) {
        if (retry_on(r, status, connect_failure)) {
            tn_stream_info(r->s)->response_flags |= TN_RF_UPSTREAM_RETRY_LIMIT_EXCEEDED;
            tn_stat_inc(CS(r, upstream_rq_retry_limit_exceeded));
        }
        return false;
    }
    return retry_on(r, status, connect_failure);
}

/* Whether the policy's retry_on covers this result. */
static bool retry_on(struct router *r, int status, bool connect_failure)
{
    const struct tn_retry_policy *p = &r->retry;
    if (status == 0) {
        if (r->refused && (p->retry_on & TN_RETRY_ON_REFUSED_STREAM))
            return true;
        if (p->retry_on & (TN_RETRY_ON_5XX | TN_RETRY_ON_GATEWAY_ERROR | TN_RETRY_ON_RESET))
            return true;
        return connect_failure && (p->retry_on & TN_RETRY_ON_CONNECT_FAILURE);
    }
    if ((p->retry_on & TN_RETRY_ON_5XX) && status >= 500)
        return true;
    if ((p->retry_on & TN_RETRY_ON_GATEWAY_ERROR) && status >= 502 && status <= 504)
        return true;
    if (p->retry_on & TN_RETRY_ON_RETRIABLE_STATUS_CODES)
        for (size_t i = 0; i < p->n_retriable_status_codes; i++)
            if ((int)p->retriable_status_codes[i] == status)
                return true;
    if ((p->retry_on & TN_RETRY_ON_RETRIABLE_4XX) && status == 409)
        return true;
    return false;
}

static void on_backoff(struct tn_timer *t)
{
    struct router *r = (struct router *)((char *)t - offsetof(struct router, backoff));
    start_try(r);
}

/* Schedules another try if allowed (Envoy's jittered back-off, 25 ms base). */
static bool maybe_retry(struct router *r, int status, bool connect_failure)
{
    if (!retriable(r, status, connect_failure))
        return false;
    struct tn_cluster *c = r->cluster;
    if (atomic_load(&c->rc_retries) >= c->thresholds[0].max_retries) {
        tn_stat_inc(CS(r, upstream_rq_retry_overflow));
        tn_stream_info(r->s)->response_flags |= TN_RF_UPSTREAM_OVERFLOW;
        return false;
    }
    const struct tn_retry_policy *p = &r->retry;
    uint64_t base = p->back_off_base_ms ? p->back_off_base_ms : 25;
    uint64_t max = p->back_off_max_ms ? p->back_off_max_ms : base * 10;
    uint64_t cap = base << (r->attempts > 10 ? 10 : r->attempts - 1);
    if (cap > max)
        cap = max;
    release_try(r);
    tn_stat_inc(CS(r, upstream_rq_retry));
    if (!r->retry_counted) {
        atomic_fetch_add(&c->rc_retries, 1); /* an active retry until the request ends */
        r->retry_counted = true;
    }
    tn_timer_start(&W(r)->timers, &r->backoff, tn_worker_random(W(r)) % (cap + 1));
    TN_LOG(TN_LOG_DEBUG, router, "%s retrying (attempt %u)", tn_stream_tag(r->s), r->attempts + 1);
    return true;
}

static void fail(struct router *r, int status, const char *body, uint32_t flags, const char *details)
{
    release_try(r);
    if (r->resp_started) {
        r->done = true;
        tn_stream_reset(r->s, flags);
        return;
    }
    respond(r, status, body, flags, details);
}

/* --- upstream events ---------------------------------------------------------- */

static void on_ready(struct tn_ureq *q, struct tn_uconn *uc)
{
    struct router *r = (struct router *)((char *)q - offsetof(struct router, ureq));
    (void)uc;
    send_request(r);
}

static void on_failure(struct tn_ureq *q, enum tn_pool_failure why)
{
    struct router *r = (struct router *)((char *)q - offsetof(struct router, ureq));
    if (why == TN_POOL_OVERFLOW) {
        tn_stat_inc(CS(r, upstream_rq_pending_overflow));
        fail(r, 503, RESET_BODY_PREFIX "overflow", TN_RF_UPSTREAM_OVERFLOW, "upstream_reset_before_response_started{overflow}");
        return;
    }
    report_outlier(r, 0, tn_worker_now(W(r)));
    if (maybe_retry(r, 0, true))
        return;
    fail(r, 503, RESET_BODY_PREFIX "connection failure", TN_RF_UPSTREAM_CONNECTION_FAILURE,
         "upstream_reset_before_response_started{connection_failure}");
}

static void on_reset(struct tn_ureq *q, enum tn_reset_reason why)
{
    struct router *r = (struct router *)((char *)q - offsetof(struct router, ureq));
    /* the connection is gone: the origin closed it (reset remotely), or it
     * broke the protocol and tern closed it (reset locally) */
    if (why == TN_RESET_PROTOCOL_ERROR)
        tn_stat_inc(CS(r, upstream_rq_tx_reset));
    else
        tn_stat_inc(CS(r, upstream_rq_rx_reset));
    report_outlier(r, 0, tn_worker_now(W(r)));
    r->refused = why == TN_RESET_REFUSED_STREAM;
    if (!r->resp_started && maybe_retry(r, 0, false))
        return;
    if (why == TN_RESET_REMOTE_RESET || why == TN_RESET_REFUSED_STREAM)
        fail(r, 503, RESET_BODY_PREFIX "remote reset", TN_RF_UPSTREAM_REMOTE_RESET,
             why == TN_RESET_REFUSED_STREAM ? "upstream_reset_before_response_started{remote_refused_stream_reset}"
                                            : "upstream_reset_before_response_started{remote_reset}");
    else if (why == TN_RESET_PROTOCOL_ERROR)
        fail(r, 503, RESET_BODY_PREFIX "protocol error", TN_RF_UPSTREAM_PROTOCOL_ERROR,
             "upstream_reset_before_response_started{protocol_error}");
    else
        fail(r, 503, RESET_BODY_PREFIX "connection termination", TN_RF_UPSTREAM_CONNECTION_TERMINATION,
             "upstream_reset_before_response_started{connection_termination}");
}

/* The upstream answered a try: Envoy's upstream_rq_<class>, _completed,
 * _time, and retry_success when a retry is what got the answer. */
static void count_response(struct router *r, int status, uint64_t now)
{
    const struct tn_cluster_stats *cs = &r->cluster->stats;
    _Atomic uint64_t *shard = tn_stream_worker(r->s)->shard;
    if (status >= 100 && status < 600) {
        const uint32_t slots[5] = {cs->upstream_rq_1xx, cs->upstream_rq_2xx, cs->upstream_rq_3xx, cs->upstream_rq_4xx,
                                   cs->upstream_rq_5xx};
        tn_stat_inc(shard, slots[status / 100 - 1]);
        tn_stat_inc(shard, cs->upstream_rq_code + (uint32_t)(status - 100));
    }
    tn_stat_inc(shard, cs->upstream_rq_completed);
    tn_stat_record(shard, cs->upstream_rq_time, now - r->try_start);
    if (r->attempts > 1 && status < 500)
        tn_stat_inc(shard, cs->upstream_rq_retry_success);
}

static void on_headers(struct tn_ureq *q, struct tn_response *resp)
{
    struct router *r = (struct router *)((char *)q - offsetof(struct router, ureq));
    struct tn_worker *w = W(r);
    uint64_t now = tn_worker_now(w);
    report_outlier(r, resp->status, now);
    if (maybe_retry(r, resp->status, false)) {
        count_response(r, resp->status, now); /* the try's answer counts though it is not passed on */
        return;
    }
    /* the route and per-try timeouts run on to the response's end (Envoy:
     * they span until the response is completely processed), but for an
     * upgrade only to its 101: the tunnel has the stream idle timeout */
    r->resp_started = true;
    if (resp->status == 101) {
        tn_timer_stop(&w->timers, &r->timeout);
        tn_timer_stop(&w->timers, &r->try_timeout);
    }
    count_response(r, resp->status, now);
    struct tn_stream_info *si = tn_stream_info(r->s);
    if (si->first_upstream_rx_ns == 0)
        si->first_upstream_rx_ns = uv_now(&w->loop) * 1000000;

    /* the response's headers, less what the route removes, plus its own */
    size_t cap = 128 + headers_size(resp->headers, resp->n_headers) + mutations_size(r, false);
    struct tn_block *b = tn_block_new(cap);
    size_t n = 0, pos = 0;
    struct tn_header *out = tn_stream_alloc(r->s, (resp->n_headers + 64) * sizeof(*out));
    if (b == NULL || out == NULL) {
        if (b)
            tn_block_unref(b);
        fail(r, 503, "out of memory", TN_RF_LOCAL_RESET, "router_oom");
        return;
    }
    for (size_t i = 0; i < resp->n_headers; i++)
        if (!header_overridden(r, &resp->headers[i], false))
            out[n++] = resp->headers[i];
    /* configured headers and x-envoy-upstream-service-time, formatted into b */
    size_t start = 0;
    add_configured(r, b, &pos, false, resp->headers, resp->n_headers);
    while (start < pos && n < resp->n_headers + 63) {
        char *line = b->data + start, *colon = memchr(line, ':', pos - start);
        char *eol = memchr(line, '\r', pos - start);
        if (colon == NULL || eol == NULL)
            break;
        out[n++] = (struct tn_header){.name = line, .name_len = colon - line, .value = colon + 2,
                                      .value_len = eol - colon - 2};
        start = (size_t)(eol - b->data) + 2;
    }
    if (!r->cfg->suppress_envoy_headers) {
        char *v = b->data + pos;
        size_t vl = tn_h1_u64(v, now - r->try_start);
        out[n++] = (struct tn_header){.name = "x-envoy-upstream-service-time", .name_len = 29, .value = v,
                                      .value_len = (uint32_t)vl};
        pos += (size_t)vl;
    }
    struct tn_response down = *resp;
    down.headers = out;
    down.n_headers = n;
    if (resp->end_stream) {
        r->done = true;
        release_try(r);
        tn_timer_stop(&w->timers, &r->timeout);
    }
    tn_stream_encode_headers(r->s, &down);
    tn_block_unref(b); /* the head was serialized from it already */
}

static void on_data(struct tn_ureq *q, struct tn_slice *data, bool end)
{
    struct router *r = (struct router *)((char *)q - offsetof(struct router, ureq));
    if (r->done) {
        tn_slice_release(data);
        return;
    }
    if (end) {
        r->done = true;
        r->ureq.uc = NULL;
        release_try(r);
        tn_timer_stop(&W(r)->timers, &r->timeout);
    }
    tn_stream_encode_data(r->s, data, end);
    if (!end && r->ureq.uc && tn_stream_downstream_above(r->s))
        tn_uconn_read_pause(r->ureq.uc, true);
}

static void on_write_low(struct tn_ureq *q)
{
    struct router *r = (struct router *)((char *)q - offsetof(struct router, ureq));
    if (r->paused_down && !r->req_end) {
        r->paused_down = false;
        tn_stream_request_pause(r->s, false);
    }
}

/* Trailers go to the access log (%TRAILER(X)%); as Envoy's HTTP/1 codec
 * without enable_trailers, they are not sent on to the client. */
static void on_trailers(struct tn_ureq *q, const struct tn_header *h, size_t n)
{
    struct router *r = (struct router *)((char *)q - offsetof(struct router, ureq));
    struct tn_stream_info *si = tn_stream_info(r->s);
    struct tn_header *t = n ? tn_stream_alloc(r->s, n * sizeof(*t)) : NULL;
    if (t == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        t[i].name = tn_stream_strdup(r->s, h[i].name, h[i].name_len);
        t[i].value = tn_stream_strdup(r->s, h[i].value, h[i].value_len);
        if (t[i].name == NULL || t[i].value == NULL)
            return;
        t[i].name_len = h[i].name_len;
        t[i].value_len = h[i].value_len;
    }
    si->resp_trailers = t;
    si->n_resp_trailers = n;
}

/* 103 Early Hints, 100 Continue: on to the client before the answer. */
static void on_interim(struct tn_ureq *q, const struct tn_response *resp)
{
    struct router *r = (struct router *)((char *)q - offsetof(struct router, ureq));
    tn_stream_encode_interim(r->s, resp);
}

static const struct tn_ureq_ops ureq_ops = {
    .on_interim = on_interim,
    .on_trailers = on_trailers,
    .on_ready = on_ready,
    .on_failure = on_failure,
    .on_headers = on_headers,
    .on_data = on_data,
    .on_reset = on_reset,
    .on_write_low = on_write_low,
};

/* --- timeouts ------------------------------------------------------------------ */

static void on_timeout(struct tn_timer *t)
{
    struct router *r = (struct router *)((char *)t - offsetof(struct router, timeout));
    if (r->done)
        return;
    tn_stat_inc(CS(r, upstream_rq_timeout));
    if (r->host)
        report_outlier(r, 0, tn_worker_now(W(r)));
    fail(r, 504, "upstream request timeout", TN_RF_UPSTREAM_REQUEST_TIMEOUT, "upstream_response_timeout");
}

static void on_try_timeout(struct tn_timer *t)
{
    struct router *r = (struct router *)((char *)t - offsetof(struct router, try_timeout));
    if (r->done)
        return;
    tn_stat_inc(CS(r, upstream_rq_per_try_timeout));
    if (r->host)
        report_outlier(r, 0, tn_worker_now(W(r)));
    if (maybe_retry(r, 0, false))
        return;
    fail(r, 504, "upstream request timeout", TN_RF_UPSTREAM_REQUEST_TIMEOUT, "upstream_per_try_timeout");
}

/* --- choosing a host ----------------------------------------------------------- */

static bool hash_request(struct router *r, uint64_t *out)
{
    struct tn_request *rq = tn_stream_request(r->s);
    bool have = false;
    uint64_t h = 0;
    for (size_t i = 0; i < r->route->n_hashes; i++) {
        const struct tn_hash_policy *p = &r->route->hashes[i];
        uint64_t one = 0;
        bool got = false;
        if (p->kind == TN_HASH_HEADER) {
            const struct tn_header *hd = tn_headers_find(rq->headers, rq->n_headers, p->name, strlen(p->name));
            if (p->name[0] == ':' && strcmp(p->name, ":authority") == 0) {
                one = tn_lb_hash(rq->host, rq->host_len);
                got = true;
            } else if (hd) {
                one = tn_lb_hash(hd->value, hd->value_len);
                got = true;
            }
        } else if (p->kind == TN_HASH_COOKIE) {
            const struct tn_header *hd = tn_headers_find(rq->headers, rq->n_headers, "cookie", 6);
            size_t nl = strlen(p->name);
            for (const char *c = hd ? hd->value : NULL, *e = hd ? hd->value + hd->value_len : NULL; c && c < e;) {
                while (c < e && (*c == ' ' || *c == ';'))
                    c++;
                const char *end = memchr(c, ';', (size_t)(e - c));
                if (end == NULL)
                    end = e;
                if ((size_t)(end - c) > nl && memcmp(c, p->name, nl) == 0 && c[nl] == '=') {
                    one = tn_lb_hash(c + nl + 1, (size_t)(end - c - nl - 1));
                    got = true;
                    break;
                }
                c = end;
            }
        } else if (p->kind == TN_HASH_SOURCE_IP) {
            const struct sockaddr_storage *ss = &tn_stream_info(r->s)->downstream_remote;
            if (ss->ss_family == AF_INET)
                one = tn_lb_hash(&((const struct sockaddr_in *)ss)->sin_addr, 4);
            else
                one = tn_lb_hash(&((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
            got = true;
        }
        if (got) {
            h = have ? ((h << 1) | (h >> 63)) ^ one : one;
            have = true;
            if (p->terminal)
                break;
        }
    }
    *out = h;
    return have;
}

static void start_try(struct router *r)
{
    struct tn_worker *w = W(r);
    struct tn_wcluster *wc = r->wc;
    struct tn_lb_context ctx = {.exclude = r->last_host};
    r->attempts++;
    tn_stream_info(r->s)->upstream_attempts = r->attempts;
    ctx.has_hash = hash_request(r, &ctx.hash);
    if (r->set == NULL && wc->hosts)
        r->set = tn_host_set_ref(wc->hosts);
    struct tn_host *h = wc->hosts ? tn_lb_choose(r->cluster, wc->hosts, &wc->lb, &ctx, tn_worker_now(w)) : NULL;
    struct tn_hpool *p = h ? tn_wcluster_pool(wc, h) : NULL;
    if (p == NULL) {
        fail(r, 503, "no healthy upstream", TN_RF_NO_HEALTHY_UPSTREAM, "no_healthy_upstream");
        return;
    }
    r->host = tn_host_ref(h);
    r->last_host = h;
    tn_stat_inc(CS(r, upstream_rq_total));
    tn_stat_inc(CS(r, upstream_rq_active));
    atomic_fetch_add(&h->active_rq, 1);
    tn_stream_info(r->s)->upstream_host = h->addr_text;
    bool first = r->head.blk == NULL;
    if (first) {
        const char *auth;
        size_t al;
        upstream_authority(r, &auth, &al);
        if (build_head(r, auth, al) || (r->h2 && build_h2_headers(r, auth, al))) {
            fail(r, 500, "request head too large", TN_RF_LOCAL_RESET, "router_head_failed");
            return;
        }
    }
    r->ureq.ops = &ureq_ops;
    r->ureq.head = tn_stream_request(r->s)->method_id == HTTP_HEAD;
    r->ureq.upgrade = r->upgrade;
    const struct tn_retry_policy *rp = &r->retry;
    if (rp->per_try_timeout_ms)
        tn_timer_start(&w->timers, &r->try_timeout, rp->per_try_timeout_ms);
    int rc = tn_hpool_acquire(p, &r->ureq);
    /* the head is final: shadows start from it, once per request, and only
     * now, so that a shadow to the same cluster never takes the primary's
     * idle connection */
    if (first && rc >= 0)
        tn_mirror_start(&r->mirror, r->s, r->route, &r->head, r->chunked, r->req_end, r->timeout_ms);
    switch (rc) {
    case 0:
        send_request(r);
        break;
    case 1:
        break;
    default:
        tn_stat_inc(CS(r, upstream_rq_pending_overflow));
        fail(r, 503, RESET_BODY_PREFIX "overflow", TN_RF_UPSTREAM_OVERFLOW,
             "upstream_reset_before_response_started{overflow}");
    }
}

/* --- the filter ------------------------------------------------------------------ */

static void send_redirect(struct router *r, struct tn_request_view *view)
{
    char loc[8192];
    size_t n = tn_route_redirect_location(r->route, view, loc, sizeof(loc));
    if (n == 0 || n >= sizeof(loc)) {
        respond(r, 500, "redirect location too long", TN_RF_LOCAL_RESET, "redirect_failed");
        return;
    }
    struct tn_header h = {.name = "location", .name_len = 8, .value = loc, .value_len = (uint32_t)n};
    struct tn_response resp = {.status = (int)r->route->redirect_code, .headers = &h, .n_headers = 1,
                               .content_length = 0, .end_stream = true};
    r->done = true;
    tn_stream_info(r->s)->response_code_details = "direct_response";
    tn_stream_encode_headers(r->s, &resp);
}

static void send_direct(struct router *r)
{
    const struct tn_route *rt = r->route;
    struct tn_header hs[64];
    size_t n = 0;
    struct tn_block *b = tn_block_new(mutations_size(r, false) + 64);
    size_t pos = 0, start = 0;
    if (b == NULL) {
        respond(r, 500, "out of memory", TN_RF_LOCAL_RESET, "router_oom");
        return;
    }
    if (rt->direct_body_len)
        hs[n++] = (struct tn_header){.name = "content-type", .name_len = 12, .value = "text/plain", .value_len = 10};
    add_configured(r, b, &pos, false, hs, n);
    while (start < pos && n < 64) {
        char *line = b->data + start, *colon = memchr(line, ':', pos - start), *eol = memchr(line, '\r', pos - start);
        if (colon == NULL || eol == NULL)
            break;
        hs[n++] = (struct tn_header){.name = line, .name_len = colon - line, .value = colon + 2,
                                     .value_len = eol - colon - 2};
        start = (size_t)(eol - b->data) + 2;
    }
    struct tn_response resp = {.status = (int)rt->direct_status, .headers = hs, .n_headers = n,
                               .content_length = (int64_t)rt->direct_body_len, .end_stream = rt->direct_body_len == 0};
    r->done = true;
    tn_stream_info(r->s)->response_code_details = "direct_response";
    tn_stream_encode_headers(r->s, &resp);
    tn_block_unref(b);
    if (rt->direct_body_len) {
        struct tn_block *bb = tn_block_new(rt->direct_body_len);
        if (bb == NULL)
            return;
        memcpy(bb->data, rt->direct_body, rt->direct_body_len);
        struct tn_slice sl = tn_slice_of(bb, bb->data, rt->direct_body_len);
        tn_block_unref(bb);
        tn_stream_encode_data(r->s, &sl, true);
    }
}

static bool header_u64(struct tn_request *rq, const char *name, uint64_t *out)
{
    const struct tn_header *h = tn_headers_find(rq->headers, rq->n_headers, name, strlen(name));
    if (h == NULL || h->value_len == 0 || h->value_len > 18)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < h->value_len; i++) {
        if (h->value[i] < '0' || h->value[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(h->value[i] - '0');
    }
    *out = v;
    return true;
}

static void remove_request_header(struct tn_request *rq, const char *name)
{
    size_t n = strlen(name), j = 0;
    for (size_t i = 0; i < rq->n_headers; i++)
        if (!(rq->headers[i].name_len == n && memcmp(rq->headers[i].name, name, n) == 0))
            rq->headers[j++] = rq->headers[i];
    rq->n_headers = j;
}

/* Whether the client's upgrade (rq->upgrade) may go through: the route's
 * upgrade_configs decide for the types they name, the connection
 * manager's for the others; a type neither names is not enabled. */
static bool upgrade_enabled(struct router *r, const struct tn_request *rq)
{
    const struct tn_route *rt = r->route;
    const struct tn_hcm *hcm = tn_stream_hcm(r->s);
    for (size_t i = 0; i < rt->n_upgrades; i++)
        if (strlen(rt->upgrades[i].type) == rq->upgrade_len &&
            strncasecmp(rt->upgrades[i].type, rq->upgrade, rq->upgrade_len) == 0)
            return rt->upgrades[i].enabled;
    for (size_t i = 0; i < hcm->n_upgrades; i++)
        if (strlen(hcm->upgrades[i].type) == rq->upgrade_len &&
            strncasecmp(hcm->upgrades[i].type, rq->upgrade, rq->upgrade_len) == 0)
            return hcm->upgrades[i].enabled;
    return false;
}

/* The route's timeout and retry policy, amended by Envoy's request headers
 * (x-envoy-upstream-rq-timeout-ms, -per-try-timeout-ms, x-envoy-retry-on,
 * x-envoy-max-retries, x-envoy-retriable-status-codes). The connection
 * manager strips x-envoy-* from external requests, so only trusted clients
 * steer the router; the headers are not forwarded. */
static void apply_request_controls(struct router *r, struct tn_request *rq)
{
    uint64_t v;
    r->retry = r->route->retry.set ? r->route->retry : r->vh->retry;
    r->timeout_ms = r->route->timeout_ms;
    if (header_u64(rq, "x-envoy-upstream-rq-timeout-ms", &v))
        r->timeout_ms = v;
    if (header_u64(rq, "x-envoy-upstream-rq-per-try-timeout-ms", &v))
        r->retry.per_try_timeout_ms = v;
    const struct tn_header *on = tn_headers_find(rq->headers, rq->n_headers, "x-envoy-retry-on", 16);
    if (on) {
        static const struct {
            const char *name;
            uint32_t bit;
        } kinds[] = {{"5xx", TN_RETRY_ON_5XX},
                     {"gateway-error", TN_RETRY_ON_GATEWAY_ERROR},
                     {"connect-failure", TN_RETRY_ON_CONNECT_FAILURE},
                     {"reset", TN_RETRY_ON_RESET},
                     {"retriable-status-codes", TN_RETRY_ON_RETRIABLE_STATUS_CODES},
                     {"retriable-4xx", TN_RETRY_ON_RETRIABLE_4XX},
                     {"refused-stream", TN_RETRY_ON_REFUSED_STREAM}};
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
            if (tn_h1_has_token(on->value, on->value_len, kinds[i].name))
                r->retry.retry_on |= kinds[i].bit;
        if (!r->retry.set) {
            r->retry.set = true;
            r->retry.num_retries = 1; /* Envoy's default when only the header asks */
        }
    }
    if (header_u64(rq, "x-envoy-max-retries", &v) && r->retry.set)
        r->retry.num_retries = (uint32_t)v;
    const struct tn_header *codes = tn_headers_find(rq->headers, rq->n_headers, "x-envoy-retriable-status-codes", 30);
    if (codes && r->retry.set) {
        size_t n = 0;
        for (size_t i = 0; i < r->retry.n_retriable_status_codes && n < 8; i++)
            r->retry_codes[n++] = r->retry.retriable_status_codes[i];
        for (const char *c = codes->value, *e = codes->value + codes->value_len; c < e && n < 8;) {
            uint32_t code = 0;
            while (c < e && (*c < '0' || *c > '9'))
                c++;
            while (c < e && *c >= '0' && *c <= '9')
                code = code * 10 + (uint32_t)(*c++ - '0');
            if (code >= 100 && code < 600)
                r->retry_codes[n++] = code;
        }
        r->retry.retriable_status_codes = r->retry_codes;
        r->retry.n_retriable_status_codes = n;
    }
    static const char *const controls[] = {"x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
                                           "x-envoy-retry-on", "x-envoy-max-retries", "x-envoy-retriable-status-codes"};
    for (size_t i = 0; i < sizeof(controls) / sizeof(controls[0]); i++)
        remove_request_header(rq, controls[i]);
}

static const char *pick_cluster(struct router *r, struct tn_request *rq, uint64_t random)
{
    switch (r->route->kind) {
    case TN_ROUTE_CLUSTER:
        return r->route->cluster;
    case TN_ROUTE_WEIGHTED:
        return tn_route_weighted_pick(r->route, random);
    case TN_ROUTE_CLUSTER_HEADER: {
        const char *n = r->route->cluster_header;
        const struct tn_header *h = tn_headers_find(rq->headers, rq->n_headers, n, strlen(n));
        return h ? tn_stream_strdup(r->s, h->value, h->value_len) : NULL;
    }
    default:
        return NULL;
    }
}

static enum tn_filter_status on_request_headers(struct tn_stream *s, void *config, void *ctx, bool end_stream)
{
    struct router *r = ctx;
    struct tn_worker *w = tn_stream_worker(s);
    struct tn_request *rq = tn_stream_request(s);
    struct tn_stream_info *si = tn_stream_info(s);
    r->s = s;
    r->cfg = config;
    tn_slices_init(&r->body);
    tn_timer_init(&r->timeout, on_timeout);
    tn_timer_init(&r->try_timeout, on_try_timeout);
    tn_timer_init(&r->backoff, on_backoff);
    r->req_end = end_stream;
    r->replayable = true;

    struct tn_route_table *rt = tn_stream_routes(s);
    uint64_t random = tn_worker_random(w);
    struct tn_request_view view = {.method = rq->method, .method_len = rq->method_len, .path = rq->path,
                                   .path_len = rq->path_len, .host = rq->host, .host_len = rq->host_len,
                                   .scheme = rq->scheme, .headers = rq->headers, .n_headers = rq->n_headers,
                                   .random = random};
    r->vh = rt ? tn_route_table_vhost(rt, rq->host, rq->host_len) : NULL;
    r->route = r->vh ? tn_route_match(r->vh, &view) : NULL;
    if (r->route == NULL) {
        tn_stat_inc(HSR(r, no_route));
        TN_LOG(TN_LOG_DEBUG, router, "%s no route for %.*s %.*s", tn_stream_tag(s), (int)rq->host_len, rq->host,
               (int)rq->path_len, rq->path);
        respond(r, 404, NULL, TN_RF_NO_ROUTE_FOUND, "route_not_found");
        return TN_FILTER_STOP;
    }
    r->rt = tn_route_table_ref(rt);
    si->route_name = r->route->name;
    tn_stat_inc(HSR(r, rq_total));
    if (r->route->kind == TN_ROUTE_DIRECT) {
        tn_stat_inc(HSR(r, rq_direct_response));
        send_direct(r);
        return TN_FILTER_STOP;
    }
    if (r->route->kind == TN_ROUTE_REDIRECT) {
        tn_stat_inc(HSR(r, rq_redirect));
        send_redirect(r, &view);
        return TN_FILTER_STOP;
    }
    apply_request_controls(r, rq);
    const char *name = pick_cluster(r, rq, random);
    r->wc = name ? tn_worker_cluster(w, name) : NULL;
    if (r->wc == NULL) {
        tn_stat_inc(HSR(r, no_cluster));
        respond(r, (int)r->route->cluster_not_found_code, NULL, TN_RF_NO_CLUSTER_FOUND, "cluster_not_found");
        return TN_FILTER_STOP;
    }
    tn_wcluster_ref(r->wc); /* a cluster removed meanwhile stays for this request */
    r->cluster = tn_cluster_ref(r->wc->c);
    r->h2 = r->cluster->http2;
    si->upstream_cluster = r->cluster->name;
    if (atomic_load(&r->cluster->rc_rq) >= r->cluster->thresholds[0].max_requests) {
        /* Envoy counts the requests breaker's overflow here too */
        tn_stat_inc(CS(r, upstream_rq_pending_overflow));
        respond(r, 503, RESET_BODY_PREFIX "overflow", TN_RF_UPSTREAM_OVERFLOW,
                "upstream_reset_before_response_started{overflow}");
        return TN_FILTER_STOP;
    }
    atomic_fetch_add(&r->cluster->rc_rq, 1);
    r->counted_rq = true;
    if (r->route->idle_timeout_ms)
        tn_stream_set_idle_timeout(s, r->route->idle_timeout_ms);
    if (rq->expect_continue)
        tn_stream_send_continue(s);
    if (rq->upgrade) {
        r->upgrade = upgrade_enabled(r, rq);
        if (!r->upgrade) {
            /* not enabled: Envoy forwards the request without its Upgrade */
            remove_request_header(rq, "upgrade");
            rq->upgrade = NULL;
            r->req_end = end_stream = true;
        } else if (r->h2) {
            /* an upgrade over HTTP/2 is extended CONNECT, which tern does not speak upstream */
            respond(r, 503, RESET_BODY_PREFIX "protocol error", TN_RF_UPSTREAM_PROTOCOL_ERROR,
                    "upgrade_over_http2_upstream_unsupported");
            return TN_FILTER_STOP;
        } else {
            r->replayable = false; /* the tunnel's bytes are not kept for a retry */
        }
    }
    if ((end_stream || r->upgrade) && r->timeout_ms)
        tn_timer_start(&w->timers, &r->timeout, r->timeout_ms);
    start_try(r);
    return TN_FILTER_STOP;
}

static enum tn_filter_status on_request_body(struct tn_stream *s, void *config, void *ctx, struct tn_slice *data,
                                             bool end_stream)
{
    struct router *r = ctx;
    (void)config;
    tn_mirror_body(&r->mirror, data, end_stream); /* shadows take references of their own */
    if (r->done || r->cluster == NULL) {
        tn_slice_release(data);
        return TN_FILTER_STOP;
    }
    if (data->len && tn_slices_push(&r->body, *data))
        r->replayable = false;
    else if (!data->len)
        tn_slice_release(data);
    if (r->body.bytes >= r->cluster->per_connection_buffer_limit)
        r->replayable = false; /* too big to keep for a retry */
    if (end_stream) {
        r->req_end = true;
        if (r->timeout_ms)
            tn_timer_start(&tn_stream_worker(s)->timers, &r->timeout, r->timeout_ms);
    }
    if (r->ureq.uc)
        write_body_slices(r);
    /* backpressure: the upstream is slow, or no connection yet */
    if (!r->req_end && !r->paused_down &&
        ((r->ureq.uc && tn_uconn_write_above(r->ureq.uc)) ||
         (!r->ureq.uc && r->body.bytes >= r->cluster->per_connection_buffer_limit))) {
        r->paused_down = true;
        tn_stream_request_pause(s, true);
    }
    return TN_FILTER_STOP;
}

static void on_downstream_drained(struct tn_stream *s, void *config, void *ctx)
{
    struct router *r = ctx;
    (void)s;
    (void)config;
    if (r->ureq.uc)
        tn_uconn_read_pause(r->ureq.uc, false);
}

static void on_destroy(struct tn_stream *s, void *config, void *ctx)
{
    struct router *r = ctx;
    (void)s;
    (void)config;
    if (r->s == NULL)
        return;
    cleanup(r);
}

static const struct tn_filter_ops router_ops = {
    .ctx_size = sizeof(struct router),
    .on_request_headers = on_request_headers,
    .on_request_body = on_request_body,
    .on_downstream_drained = on_downstream_drained,
    .on_destroy = on_destroy,
};

static void *create_config(const ProtobufCMessage *msg, struct tn_err *err)
{
    const Envoy__Extensions__Filters__Http__Router__V3__Router *pb = (const void *)msg;
    struct tn_router_config *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    c->suppress_envoy_headers = pb->suppress_envoy_headers;
    c->respect_expected_rq_timeout = pb->respect_expected_rq_timeout;
    return c;
}

/* A worker's shadows live in the router's per-worker state (mirror/): they
 * outlive their streams, so the worker ends them before its pools go. */
static void router_worker_close(struct tn_worker *w, void *state)
{
    (void)w;
    tn_mirror_worker_close(state);
}

const struct tn_filter_factory tn_router_factory = {
    .name = "envoy.filters.http.router",
    .config_type = &envoy__extensions__filters__http__router__v3__router__descriptor,
    .terminal = true,
    .create_config = create_config,
    .destroy_config = free,
    .ops = &router_ops,
    .worker_state_size = sizeof(struct tn_mirror_worker),
    .worker_close = router_worker_close,
};
