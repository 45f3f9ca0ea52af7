#define _GNU_SOURCE /* tdestroy */
#include "dataplane/upstream/cm.h"

#include <stdio.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>
#include <netdb.h>
#include <nghttp2/nghttp2.h>
#include <netinet/in.h>

#include "dataplane/core/log.h"

struct cm_cluster;

/* One health check in flight: a connection, freed in its close callback. */
struct hc_attempt {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    llhttp_t parser;
    struct hc_session *s;     /* NULL once the result is recorded */
    struct hc_session *owner; /* released when the connection is closed */
    char *request; /* HTTP/1.1: the request; gRPC: the request message, framed */
    size_t req_len, req_sent;
    int status; /* response status once the headers are in, else 0 */
    nghttp2_session *ng; /* HTTP/2 and gRPC checks: one client session per connection */
    int32_t sid;
    int grpc_status;        /* grpc-status (headers or trailers), -1 until seen */
    unsigned char msg[64];  /* gRPC: the response's first bytes (prefix and HealthCheckResponse) */
    size_t msg_len;
    char rbuf[2048];
};

/* Active health checking of one host; freed when its timer and its attempt
 * are closed. */
struct hc_session {
    struct cm_cluster *cc;
    struct tn_host *host;
    const struct tn_health_check *hc;
    uv_timer_t timer; /* the next check, then the running check's timeout */
    struct hc_attempt *attempt;
    unsigned n_ok, n_fail; /* consecutive results */
    unsigned n_open;       /* the timer and the attempt */
    bool first_done, counts_for_ready, closing;
};

enum hc_result {
    HC_OK = 0,
    HC_BAD_STATUS, /* a response outside the expected ranges: unhealthy at once */
    HC_NETWORK,    /* connect failure, reset, timeout, unparsable response */
};

struct dns_req {
    uv_getaddrinfo_t req;
    struct cm_cluster *cc;
    size_t ep;
};

struct ep_hosts {
    struct tn_host **hosts;
    size_t n;
};

struct cm_cluster {
    struct tn_cm *cm;
    struct tn_cluster *c;
    struct tn_host_set *set;
    struct tn_cm_stats stats;
    uv_timer_t dns_timer;
    size_t n_ep;          /* endpoints resolved (DNS clusters) */
    struct dns_req **dns; /* [n_ep]: lookups in flight */
    struct ep_hosts *ep;  /* [n_ep]: each endpoint's current hosts */
    size_t dns_pending;   /* lookups of this round not yet answered */
    bool round_changed, round_failed;
    struct hc_session **sessions;
    size_t n_sessions, cap_sessions;
    size_t hc_first_pending; /* sessions that hold readiness back */
    bool resolved, ready;
    bool removed;    /* by CDS: freed once n_open reaches 0 */
    unsigned n_open; /* its dns timer, lookups and sessions not yet finished */
    size_t pos;      /* in cm->clusters */
};

struct tn_cm {
    uv_loop_t *loop;
    struct tn_config *cfg;
    tn_cm_hosts_cb hosts_cb;
    tn_cm_ready_cb ready_cb;
    void *arg;
    tn_cm_warm_cb warm_cb;
    struct cm_cluster **clusters;
    size_t n_clusters, cap_clusters, n_not_ready;
    void *by_name; /* tsearch tree of the clusters by name: CDS pushes thousands */
    uv_timer_t ready_timer;
    unsigned n_open; /* handles, sessions and lookups not yet finished */
    bool ready_fired, closing;
};

static void cc_free(struct cm_cluster *cc)
{
    tn_host_set_unref(cc->set);
    for (size_t e = 0; cc->ep && e < cc->n_ep; e++) {
        for (size_t k = 0; k < cc->ep[e].n; k++)
            tn_host_unref(cc->ep[e].hosts[k]);
        free(cc->ep[e].hosts);
    }
    free(cc->ep);
    free(cc->dns);
    free(cc->sessions);
    tn_cluster_unref(cc->c);
    free(cc);
}

static int cc_cmp(const void *a, const void *b)
{
    return strcmp(((const struct cm_cluster *)a)->c->name, ((const struct cm_cluster *)b)->c->name);
}

static void no_free(void *p)
{
    (void)p;
}

/* Puts cc at position i of the array and in the name index (replacing the
 * one of its name there). 0, or -1 when out of memory. */
static int cc_place(struct tn_cm *cm, struct cm_cluster *cc, size_t i)
{
    struct cm_cluster **slot = tsearch(cc, &cm->by_name, cc_cmp);
    if (slot == NULL)
        return -1;
    *slot = cc; /* same name, same place in the tree */
    cm->clusters[i] = cc;
    cc->pos = i;
    return 0;
}

static void cm_free(struct tn_cm *cm)
{
    tdestroy(cm->by_name, no_free);
    for (size_t i = 0; i < cm->n_clusters; i++)
        cc_free(cm->clusters[i]);
    free(cm->clusters);
    tn_config_unref(cm->cfg);
    free(cm);
}

static void cm_release(struct tn_cm *cm)
{
    if (--cm->n_open == 0 && cm->closing)
        cm_free(cm);
}

/* A handle, lookup or session of cc finished; a removed cluster goes with
 * its last. Call before cm_release (which may free everything). */
static void cc_release(struct cm_cluster *cc)
{
    if (--cc->n_open == 0 && cc->removed)
        cc_free(cc);
}

static void on_cc_timer_closed(uv_handle_t *h)
{
    struct cm_cluster *cc = h->data;
    struct tn_cm *cm = cc->cm;
    cc_release(cc);
    cm_release(cm);
}

static void on_cm_handle_closed(uv_handle_t *h)
{
    cm_release(h->data);
}

/* ---- readiness ------------------------------------------------------------ */

static void on_ready_timer(uv_timer_t *t)
{
    struct tn_cm *cm = t->data;
    if (cm->ready_fired || cm->closing)
        return;
    cm->ready_fired = true;
    if (cm->ready_cb)
        cm->ready_cb(cm->arg);
}

static void cluster_check_ready(struct cm_cluster *cc)
{
    if (cc->ready || cc->removed || !cc->resolved || cc->hc_first_pending > 0)
        return;
    cc->ready = true;
    cc->cm->n_not_ready--;
    if (cc->cm->ready_fired && cc->cm->warm_cb)
        cc->cm->warm_cb(cc->cm->arg, cc->c);
    if (cc->cm->n_not_ready == 0)
        uv_timer_start(&cc->cm->ready_timer, on_ready_timer, 0, 0);
}

/* ---- health checks ---------------------------------------------------------- */

static void on_check_timer(uv_timer_t *t);

static void session_release(struct hc_session *s)
{
    if (--s->n_open > 0)
        return;
    struct cm_cluster *cc = s->cc;
    struct tn_cm *cm = cc->cm;
    tn_host_unref(s->host);
    free(s);
    cc_release(cc);
    cm_release(cm);
}

static void on_attempt_closed(uv_handle_t *h)
{
    struct hc_attempt *a = h->data;
    struct hc_session *owner = a->owner;
    if (a->ng)
        nghttp2_session_del(a->ng);
    free(a->request);
    free(a);
    session_release(owner);
}

static void on_session_timer_closed(uv_handle_t *h)
{
    session_release(h->data);
}

/* Detaches and closes the running attempt; its callbacks see a->s == NULL. */
static void attempt_drop(struct hc_session *s)
{
    struct hc_attempt *a = s->attempt;
    if (a == NULL)
        return;
    s->attempt = NULL;
    a->s = NULL;
    uv_close((uv_handle_t *)&a->tcp, on_attempt_closed);
}

static uint64_t next_interval(const struct tn_health_check *hc)
{
    uint64_t jitter = hc->interval_ms / 10;
    return hc->interval_ms + (jitter ? (uint64_t)rand() % (jitter + 1) : 0);
}

static void set_failed(struct hc_session *s, bool failed, const char *why)
{
    const char *name = s->cc->c->name, *addr = s->host->addr_text;
    bool first = !s->first_done;
    if (failed) {
        atomic_fetch_or(&s->host->health, TN_HOST_FAILED_ACTIVE_HC);
        if (first)
            TN_LOG(TN_LOG_INFO, hc, "health check: host %s of cluster %s failed its first check: %s", addr, name, why);
        else
            TN_LOG(TN_LOG_INFO, hc, "health check: host %s of cluster %s is now unhealthy: %s", addr, name, why);
    } else {
        atomic_fetch_and(&s->host->health, ~(unsigned)TN_HOST_FAILED_ACTIVE_HC);
        TN_LOG(first ? TN_LOG_DEBUG : TN_LOG_INFO, hc, "health check: host %s of cluster %s is now healthy", addr,
               name);
    }
}

/* Applies one result to the host's flags (Envoy's threshold rules). */
static void record(struct hc_session *s, enum hc_result r, const char *why)
{
    struct tn_cm_stats *st = &s->cc->stats;
    bool failed = atomic_load(&s->host->health) & TN_HOST_FAILED_ACTIVE_HC;
    st->hc_attempt++;
    if (r == HC_OK) {
        st->hc_success++;
        s->n_fail = 0;
        s->n_ok++;
        if (failed && (!s->first_done || s->n_ok >= s->hc->healthy_threshold))
            set_failed(s, false, why);
    } else {
        st->hc_failure++;
        st->hc_network_failure += r == HC_NETWORK;
        s->n_ok = 0;
        s->n_fail++;
        bool trip = r == HC_BAD_STATUS || s->n_fail >= s->hc->unhealthy_threshold;
        if (!s->first_done || (!failed && trip))
            set_failed(s, true, why); /* a first failure only logs: new hosts start failed */
    }
    atomic_fetch_and(&s->host->health, ~(unsigned)TN_HOST_PENDING_HC);
    if (!s->first_done) {
        s->first_done = true;
        if (s->counts_for_ready) {
            s->cc->hc_first_pending--;
            cluster_check_ready(s->cc);
        }
    }
}

static void finish_check(struct hc_session *s, enum hc_result r, const char *why)
{
    attempt_drop(s);
    record(s, r, why);
    uv_timer_start(&s->timer, on_check_timer, next_interval(s->hc), 0);
}

static bool status_expected(const struct tn_health_check *hc, int status)
{
    for (size_t i = 0; i < hc->n_expected; i++)
        if (status >= hc->expected[i][0] && status < hc->expected[i][1])
            return true;
    return false;
}

static void finish_with_status(struct hc_session *s, int status)
{
    char why[32];
    snprintf(why, sizeof(why), "status %d", status);
    finish_check(s, status_expected(s->hc, status) ? HC_OK : HC_BAD_STATUS, why);
}

/* The final head's status, then a pause: the check needs no more. An
 * interim 1xx is skipped; a status outside 100..599 is malformed. */
static int on_hc_headers_complete(llhttp_t *p)
{
    struct hc_attempt *a = p->data;
    if (p->http_major != 1 || p->status_code < 100 || p->status_code > 599 || p->status_code == 101)
        return -1;
    if (p->status_code < 200)
        return 0;
    a->status = p->status_code;
    return HPE_PAUSED;
}

static const llhttp_settings_t hc_parser_settings = {.on_headers_complete = on_hc_headers_complete};

static void on_hc_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct hc_attempt *a = h->data;
    *buf = uv_buf_init(a->rbuf, sizeof(a->rbuf));
}

static void on_hc_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct hc_attempt *a = stream->data;
    struct hc_session *s = a->s;
    if (s == NULL || nread == 0)
        return;
    if (nread > 0 || nread == UV_EOF) {
        llhttp_errno_t e = nread > 0 ? llhttp_execute(&a->parser, buf->base, (size_t)nread) : HPE_OK;
        if (a->status)
            finish_with_status(s, a->status);
        else if (e != HPE_OK)
            finish_check(s, HC_NETWORK, "malformed response");
        else if (nread == UV_EOF)
            finish_check(s, HC_NETWORK, "connection closed before a response");
        return;
    }
    finish_check(s, HC_NETWORK, uv_strerror((int)nread));
}

static void on_hc_written(uv_write_t *w, int status)
{
    struct hc_attempt *a = w->handle->data;
    if (a->s && status < 0)
        finish_check(a->s, HC_NETWORK, uv_strerror(status));
}

static int send_request(struct hc_attempt *a, struct hc_session *s)
{
    const char *host = s->hc->host && *s->hc->host ? s->hc->host : s->cc->c->name;
    const char *fmt = "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: Envoy/HC\r\nConnection: close\r\n\r\n";
    int n = snprintf(NULL, 0, fmt, s->hc->path, host);
    if ((a->request = malloc((size_t)n + 1)) == NULL)
        return UV_ENOMEM;
    snprintf(a->request, (size_t)n + 1, fmt, s->hc->path, host);
    uv_buf_t b = uv_buf_init(a->request, (unsigned)n);
    llhttp_init(&a->parser, HTTP_RESPONSE, &hc_parser_settings);
    a->parser.data = a;
    int e = uv_write(&a->write, (uv_stream_t *)&a->tcp, &b, 1, on_hc_written);
    return e ? e : uv_read_start((uv_stream_t *)&a->tcp, on_hc_alloc, on_hc_read);
}

/* ---- HTTP/2 and gRPC checks: one nghttp2 client session per connection ---------- */

struct h2_write {
    uv_write_t req;
    char data[];
};

static void on_h2_written(uv_write_t *w, int status)
{
    struct hc_attempt *a = w->handle->data;
    free(w);
    if (a->s && status < 0)
        finish_check(a->s, HC_NETWORK, uv_strerror(status));
}

/* Whatever nghttp2 has to send, in one write. 0 or a negative uv error. */
static int h2_flush(struct hc_attempt *a)
{
    const uint8_t *p;
    size_t len = 0, cap = 0;
    struct h2_write *w = NULL;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(a->ng, &p)) > 0) {
        if (len + (size_t)n > cap) {
            cap = (len + (size_t)n) * 2;
            struct h2_write *g = realloc(w, sizeof(*w) + cap);
            if (g == NULL) {
                free(w);
                return UV_ENOMEM;
            }
            w = g;
        }
        memcpy(w->data + len, p, (size_t)n);
        len += (size_t)n;
    }
    if (n < 0) {
        free(w);
        return UV_EPROTO;
    }
    if (len == 0)
        return 0;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    int e = uv_write(&w->req, (uv_stream_t *)&a->tcp, &b, 1, on_h2_written);
    if (e)
        free(w);
    return e;
}

static ssize_t grpc_body_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                              nghttp2_data_source *source, void *ud)
{
    struct hc_attempt *a = ud;
    (void)ng;
    (void)id;
    (void)source;
    size_t n = a->req_len - a->req_sent < length ? a->req_len - a->req_sent : length;
    memcpy(buf, a->request + a->req_sent, n);
    a->req_sent += n;
    if (a->req_sent == a->req_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int h2_on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct hc_attempt *a = ud;
    (void)ng;
    (void)flags;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->hd.stream_id != a->sid)
        return 0;
    int v = 0;
    for (size_t i = 0; i < valuelen && i < 6; i++)
        v = value[i] >= '0' && value[i] <= '9' ? v * 10 + (value[i] - '0') : -1000000;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0)
        a->status = v;
    else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        a->grpc_status = v < 0 ? 2 : v;
    return 0;
}

static int h2_on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    struct hc_attempt *a = ud;
    (void)ng;
    (void)flags;
    if (id == a->sid && a->msg_len < sizeof(a->msg)) {
        size_t n = len < sizeof(a->msg) - a->msg_len ? len : sizeof(a->msg) - a->msg_len;
        memcpy(a->msg + a->msg_len, data, n);
        a->msg_len += n;
    }
    return 0;
}

/* HealthCheckResponse.status from the first gRPC message, or -1. */
static int grpc_serving_status(const struct hc_attempt *a)
{
    if (a->msg_len < 5 || a->msg[0] != 0)
        return -1; /* no message, or compressed */
    size_t len = (size_t)a->msg[1] << 24 | (size_t)a->msg[2] << 16 | (size_t)a->msg[3] << 8 | a->msg[4];
    const unsigned char *p = a->msg + 5, *e = p + (len < a->msg_len - 5 ? len : a->msg_len - 5);
    int status = 0; /* proto3: absent is UNKNOWN */
    while (p < e) {
        unsigned key = *p++;
        uint64_t v = 0;
        for (unsigned sh = 0; p < e && sh < 64; sh += 7) {
            v |= (uint64_t)(*p & 0x7f) << sh;
            if ((*p++ & 0x80) == 0)
                break;
        }
        if (key == 0x08)
            status = (int)v;
        else if ((key & 7) == 2)
            p += v < (uint64_t)(e - p) ? v : (uint64_t)(e - p);
        else if ((key & 7) != 0)
            return -1;
    }
    return status;
}

/* The stream's end: HTTP by its status (as HTTP/1.1), gRPC healthy only
 * for a 200 whose grpc-status is 0 and whose answer is SERVING. */
static void h2_result(struct hc_attempt *a)
{
    struct hc_session *s = a->s;
    if (!s->hc->grpc) {
        finish_with_status(s, a->status);
        return;
    }
    char why[64];
    int st = grpc_serving_status(a);
    if (a->status != 200)
        snprintf(why, sizeof(why), "gRPC: status %d", a->status);
    else if (a->grpc_status != 0)
        snprintf(why, sizeof(why), "gRPC: grpc-status %d", a->grpc_status);
    else if (st != 1)
        snprintf(why, sizeof(why), "gRPC: %s", st == 2 ? "NOT_SERVING" : st == 3 ? "SERVICE_UNKNOWN" : st == 0 ? "UNKNOWN" : "malformed answer");
    else
        snprintf(why, sizeof(why), "gRPC: SERVING");
    finish_check(s, st == 1 && a->status == 200 && a->grpc_status == 0 ? HC_OK : HC_BAD_STATUS, why);
}

static int h2_on_frame(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    struct hc_attempt *a = ud;
    (void)ng;
    if (a->s == NULL || frame->hd.stream_id != a->sid)
        return 0;
    bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (frame->hd.type == NGHTTP2_HEADERS && a->status >= 100 && a->status < 200 && !end)
        a->status = 0; /* an interim answer */
    else if (frame->hd.type == NGHTTP2_HEADERS && !a->s->hc->grpc && a->status >= 200)
        h2_result(a); /* the head is enough */
    else if (end && (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA))
        h2_result(a);
    return 0;
}

static int h2_on_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *ud)
{
    struct hc_attempt *a = ud;
    (void)ng;
    if (a->s && id == a->sid)
        finish_check(a->s, HC_NETWORK, error_code ? nghttp2_http2_strerror(error_code) : "stream closed early");
    return 0;
}

static void on_h2_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct hc_attempt *a = stream->data;
    if (a->s == NULL || nread == 0)
        return;
    if (nread < 0) {
        finish_check(a->s, HC_NETWORK, nread == UV_EOF ? "connection closed before a response" : uv_strerror((int)nread));
        return;
    }
    ssize_t rv = nghttp2_session_mem_recv(a->ng, (const uint8_t *)buf->base, (size_t)nread);
    if (a->s == NULL)
        return; /* decided: the connection is closing */
    int e = rv < 0 ? UV_EPROTO : h2_flush(a);
    if (e && a->s)
        finish_check(a->s, HC_NETWORK, rv < 0 ? nghttp2_strerror((int)rv) : uv_strerror(e));
}

/* The gRPC request message: HealthCheckRequest{service = 1}, framed. */
static int grpc_request(struct hc_attempt *a, const char *service)
{
    size_t sl = strlen(service), vl = 1;
    for (size_t v = sl; v > 0x7f; v >>= 7)
        vl++;
    size_t ml = sl ? 1 + vl + sl : 0;
    if (sl >= (1u << 28) || (a->request = malloc(5 + ml)) == NULL)
        return UV_ENOMEM;
    unsigned char *p = (unsigned char *)a->request;
    p[0] = 0;
    p[1] = (unsigned char)(ml >> 24), p[2] = (unsigned char)(ml >> 16), p[3] = (unsigned char)(ml >> 8);
    p[4] = (unsigned char)ml;
    size_t at = 5;
    if (sl) {
        p[at++] = 0x0a;
        for (size_t v = sl; ; v >>= 7) {
            p[at++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
            if (v <= 0x7f)
                break;
        }
        memcpy(p + at, service, sl);
        at += sl;
    }
    a->req_len = at;
    return 0;
}

static int send_h2_request(struct hc_attempt *a, struct hc_session *s)
{
    const struct tn_health_check *hc = s->hc;
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs))
        return UV_ENOMEM;
    nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h2_on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_on_close);
    int rv = nghttp2_session_client_new(&a->ng, cbs, a);
    nghttp2_session_callbacks_del(cbs);
    if (rv)
        return UV_ENOMEM;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    if (nghttp2_submit_settings(a->ng, NGHTTP2_FLAG_NONE, iv, 1))
        return UV_ENOMEM;
    const char *auth = hc->grpc ? (hc->authority ? hc->authority : s->cc->c->name)
                                : (hc->host && *hc->host ? hc->host : s->cc->c->name);
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nv[] = {NV(":method", hc->grpc ? "POST" : "GET"), NV(":scheme", "http"), NV(":authority", auth),
                       NV(":path", hc->path), NV("user-agent", "Envoy/HC"), NV("content-type", "application/grpc"),
                       NV("te", "trailers")};
#undef NV
    nghttp2_data_provider prd = {.read_callback = grpc_body_read};
    a->grpc_status = -1;
    if (hc->grpc && grpc_request(a, hc->service_name ? hc->service_name : ""))
        return UV_ENOMEM;
    a->sid = nghttp2_submit_request(a->ng, NULL, nv, hc->grpc ? 7 : 5, hc->grpc ? &prd : NULL, NULL);
    if (a->sid < 0)
        return UV_EPROTO;
    int e = h2_flush(a);
    return e ? e : uv_read_start((uv_stream_t *)&a->tcp, on_hc_alloc, on_h2_read);
}

static void on_hc_connected(uv_connect_t *req, int status)
{
    struct hc_attempt *a = req->handle->data;
    struct hc_session *s = a->s;
    int e;
    if (s == NULL)
        return;
    if (status < 0)
        finish_check(s, HC_NETWORK, uv_strerror(status));
    else if (s->hc->path == NULL)
        finish_check(s, HC_OK, "connected");
    else if ((e = s->hc->h2 ? send_h2_request(a, s) : send_request(a, s)) != 0 && a->s)
        finish_check(s, HC_NETWORK, uv_strerror(e));
}

static void on_check_timeout(uv_timer_t *t)
{
    struct hc_session *s = t->data;
    if (s->attempt)
        finish_check(s, HC_NETWORK, "timeout");
}

/* Time for a check: opens its connection and arms its timeout. */
static void on_check_timer(uv_timer_t *t)
{
    struct hc_session *s = t->data;
    struct hc_attempt *a = calloc(1, sizeof(*a));
    int e;
    if (a == NULL || (e = uv_tcp_init(s->cc->cm->loop, &a->tcp)) != 0) {
        free(a);
        record(s, HC_NETWORK, "out of memory");
        uv_timer_start(&s->timer, on_check_timer, next_interval(s->hc), 0);
        return;
    }
    a->tcp.data = a;
    a->s = a->owner = s;
    s->attempt = a;
    s->n_open++;
    uv_timer_start(&s->timer, on_check_timeout, s->hc->timeout_ms, 0);
    e = uv_tcp_connect(&a->connect, &a->tcp, (const struct sockaddr *)&s->host->sa, on_hc_connected);
    if (e)
        finish_check(s, HC_NETWORK, uv_strerror(e));
}

static struct hc_session *session_new(struct cm_cluster *cc, struct tn_host *h)
{
    struct hc_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->cc = cc;
    s->host = tn_host_ref(h);
    s->hc = &cc->c->health_checks[0];
    uv_timer_init(cc->cm->loop, &s->timer);
    s->timer.data = s;
    s->n_open = 1;
    cc->n_open++;
    cc->cm->n_open++;
    if (!cc->ready) {
        s->counts_for_ready = true;
        cc->hc_first_pending++;
    }
    uv_timer_start(&s->timer, on_check_timer, 0, 0);
    return s;
}

static void session_close(struct hc_session *s)
{
    if (s->counts_for_ready && !s->first_done) {
        s->counts_for_ready = false;
        s->cc->hc_first_pending--;
    }
    s->closing = true;
    attempt_drop(s);
    uv_close((uv_handle_t *)&s->timer, on_session_timer_closed);
}

static bool set_has(const struct tn_host_set *set, const struct tn_host *h)
{
    for (size_t i = 0; set && i < set->n_hosts; i++)
        if (set->hosts[i] == h)
            return true;
    return false;
}

static bool sessions_have(const struct cm_cluster *cc, const struct tn_host *h)
{
    for (size_t i = 0; i < cc->n_sessions; i++)
        if (cc->sessions[i]->host == h)
            return true;
    return false;
}

/* Checks the hosts of the current set: new hosts get a session, removed
 * hosts lose theirs. */
static void sync_sessions(struct cm_cluster *cc)
{
    size_t k = 0;
    for (size_t i = 0; i < cc->n_sessions; i++) {
        if (set_has(cc->set, cc->sessions[i]->host))
            cc->sessions[k++] = cc->sessions[i];
        else
            session_close(cc->sessions[i]);
    }
    cc->n_sessions = k;
    for (size_t i = 0; i < cc->set->n_hosts; i++) {
        struct tn_host *h = cc->set->hosts[i];
        if (sessions_have(cc, h))
            continue;
        if (cc->n_sessions == cc->cap_sessions) {
            size_t cap = cc->cap_sessions ? 2 * cc->cap_sessions : 8;
            void *p = realloc(cc->sessions, cap * sizeof(*cc->sessions));
            if (p == NULL)
                break;
            cc->sessions = p;
            cc->cap_sessions = cap;
        }
        struct hc_session *s = session_new(cc, h);
        if (s == NULL)
            break;
        cc->sessions[cc->n_sessions++] = s;
    }
}

/* ---- host sets ---------------------------------------------------------------- */

static struct tn_host *host_new(struct cm_cluster *cc, const struct tn_endpoint *e, const struct sockaddr *sa,
                                const char *hostname)
{
    unsigned salen = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    struct tn_host *h = tn_host_new(sa, salen, hostname, e->weight, e->priority);
    unsigned flags = 0;
    if (h == NULL)
        return NULL;
    if (e->health_status == ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__UNHEALTHY ||
        e->health_status == ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__DRAINING ||
        e->health_status == ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__TIMEOUT)
        flags |= TN_HOST_FAILED_EDS;
    if (cc->c->n_health_checks > 0)
        flags |= TN_HOST_FAILED_ACTIVE_HC | TN_HOST_PENDING_HC;
    atomic_store(&h->health, flags);
    return h;
}

/* Makes hosts[0..n) the cluster's set and hands it to hosts_cb. */
static void publish(struct cm_cluster *cc, struct tn_host **hosts, size_t n)
{
    struct tn_host_set *s = tn_host_set_new(hosts, n, cc->c);
    if (s == NULL) {
        TN_LOG(TN_LOG_ERROR, upstream, "cluster %s: out of memory building its host set", cc->c->name);
        return;
    }
    tn_host_set_unref(cc->set);
    cc->set = s;
    if (cc->c->n_health_checks > 0)
        sync_sessions(cc);
    if (cc->cm->hosts_cb)
        cc->cm->hosts_cb(cc->cm->arg, cc->c, s);
}

static void start_static(struct cm_cluster *cc)
{
    const struct tn_endpoint_set *es = cc->c->type == TN_CLUSTER_EDS ? NULL : cc->c->endpoints;
    size_t n = 0, total = es ? es->n_endpoints : 0;
    struct tn_host **hosts = calloc(total + 1, sizeof(*hosts));
    for (size_t i = 0; hosts && i < total; i++) {
        const struct tn_endpoint *e = &es->endpoints[i];
        struct tn_host *h = e->addr.is_ip ? host_new(cc, e, (const struct sockaddr *)&e->addr.sa, NULL) : NULL;
        if (h)
            hosts[n++] = h;
    }
    if (hosts)
        publish(cc, hosts, n);
    else
        TN_LOG(TN_LOG_ERROR, upstream, "cluster %s: out of memory building its host set", cc->c->name);
    for (size_t i = 0; i < n; i++)
        tn_host_unref(hosts[i]);
    free(hosts);
    cc->resolved = true;
    cluster_check_ready(cc);
}

/* ---- DNS ---------------------------------------------------------------------- */

static void dns_round(struct cm_cluster *cc);

static void on_dns_timer(uv_timer_t *t)
{
    dns_round(t->data);
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr *b)
{
    if (a->ss_family != b->sa_family)
        return false;
    if (b->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0 &&
           x->sin6_scope_id == y->sin6_scope_id;
}

/* The family to keep from a lookup's answers per dns_lookup_family;
 * AF_UNSPEC keeps both. */
static int keep_family(int setting, bool has4, bool has6)
{
    switch (setting) {
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DNS_LOOKUP_FAMILY__V4_ONLY:
        return AF_INET;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DNS_LOOKUP_FAMILY__V6_ONLY:
        return AF_INET6;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DNS_LOOKUP_FAMILY__V4_PREFERRED:
        return has4 ? AF_INET : AF_INET6;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DNS_LOOKUP_FAMILY__ALL:
        return AF_UNSPEC;
    default: /* AUTO */
        return has6 ? AF_INET6 : AF_INET;
    }
}

static int hint_family(int setting)
{
    if (setting == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DNS_LOOKUP_FAMILY__V4_ONLY)
        return AF_INET;
    if (setting == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DNS_LOOKUP_FAMILY__V6_ONLY)
        return AF_INET6;
    return AF_UNSPEC;
}

static struct tn_host *find_host(const struct ep_hosts *old, const struct sockaddr *sa)
{
    for (size_t i = 0; i < old->n; i++)
        if (same_addr(&old->hosts[i]->sa, sa))
            return old->hosts[i];
    return NULL;
}

/* The usable answers of a lookup with the endpoint's port, deduplicated, in
 * resolver order; LOGICAL_DNS keeps the first. Returns how many, -1 on OOM. */
static int collect_addrs(struct cm_cluster *cc, const struct addrinfo *res, unsigned port,
                         struct sockaddr_storage **out)
{
    bool has4 = false, has6 = false;
    size_t cap = 0, n = 0;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next, cap++) {
        has4 |= ai->ai_family == AF_INET;
        has6 |= ai->ai_family == AF_INET6;
    }
    int fam = keep_family(cc->c->dns_family, has4, has6);
    if ((*out = calloc(cap + 1, sizeof(**out))) == NULL)
        return -1;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || (fam != AF_UNSPEC && ai->ai_family != fam))
            continue;
        struct sockaddr_storage ss = {0};
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        if (ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
        else
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
        bool dup = false;
        for (size_t i = 0; i < n && !dup; i++)
            dup = same_addr(&(*out)[i], (struct sockaddr *)&ss);
        if (!dup)
            (*out)[n++] = ss;
        if (n == 1 && cc->c->type == TN_CLUSTER_LOGICAL_DNS)
            break;
    }
    return (int)n;
}

/* Replaces endpoint ep's hosts with the lookup's answers, reusing the host
 * objects whose address did not change. */
static void apply_addrs(struct cm_cluster *cc, size_t ep, const struct addrinfo *res)
{
    const struct tn_endpoint *e = &cc->c->endpoints->endpoints[ep];
    struct ep_hosts *old = &cc->ep[ep], neu = {0};
    struct sockaddr_storage *addrs = NULL;
    int n = collect_addrs(cc, res, e->addr.port, &addrs);
    bool reused_all = true;
    if (n < 0 || (neu.hosts = calloc((size_t)n + 1, sizeof(*neu.hosts))) == NULL)
        goto oom;
    for (int i = 0; i < n; i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&addrs[i];
        struct tn_host *h = find_host(old, sa);
        if (h == NULL)
            reused_all = false;
        if ((h = h ? tn_host_ref(h) : host_new(cc, e, sa, e->addr.host)) == NULL)
            goto oom;
        neu.hosts[neu.n++] = h;
    }
    free(addrs);
    struct ep_hosts drop = neu; /* same addresses, maybe reordered: keep the current set */
    if (!reused_all || neu.n != old->n) {
        drop = *old;
        *old = neu;
        cc->round_changed = true;
    }
    for (size_t i = 0; i < drop.n; i++)
        tn_host_unref(drop.hosts[i]);
    free(drop.hosts);
    return;
oom:
    TN_LOG(TN_LOG_ERROR, dns, "cluster %s: out of memory applying the addresses of %s", cc->c->name, e->addr.host);
    for (size_t i = 0; i < neu.n; i++)
        tn_host_unref(neu.hosts[i]);
    free(neu.hosts);
    free(addrs);
    cc->round_failed = true;
}

static void publish_dns(struct cm_cluster *cc)
{
    size_t total = 0, k = 0;
    for (size_t i = 0; i < cc->n_ep; i++)
        total += cc->ep[i].n;
    struct tn_host **all = calloc(total + 1, sizeof(*all));
    if (all == NULL) {
        TN_LOG(TN_LOG_ERROR, dns, "cluster %s: out of memory building its host set", cc->c->name);
        return;
    }
    for (size_t i = 0; i < cc->n_ep; i++)
        for (size_t j = 0; j < cc->ep[i].n; j++)
            all[k++] = cc->ep[i].hosts[j];
    publish(cc, all, total);
    free(all);
}

static void dns_round_done(struct cm_cluster *cc)
{
    bool first = !cc->resolved;
    if (cc->round_failed)
        cc->stats.update_failure++;
    else
        cc->stats.update_success++;
    if (cc->round_changed || first)
        publish_dns(cc);
    else
        cc->stats.update_no_rebuild++;
    cc->resolved = true;
    cluster_check_ready(cc);
    uv_timer_start(&cc->dns_timer, on_dns_timer, cc->c->dns_refresh_ms, 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct dns_req *r = (struct dns_req *)req;
    struct cm_cluster *cc = r->cc;
    struct tn_cm *cm = cc->cm;
    cc->dns[r->ep] = NULL;
    if (!cm->closing && !cc->removed) {
        if (status < 0) {
            TN_LOG(TN_LOG_WARN, dns, "cluster %s: cannot resolve %s: %s; keeping its %zu previous hosts", cc->c->name,
                   cc->c->endpoints->endpoints[r->ep].addr.host, uv_strerror(status), cc->ep[r->ep].n);
            cc->round_failed = true;
        } else {
            apply_addrs(cc, r->ep, res);
        }
        if (--cc->dns_pending == 0)
            dns_round_done(cc);
    }
    uv_freeaddrinfo(res);
    free(r);
    cc_release(cc);
    cm_release(cm);
}

static int resolve(struct cm_cluster *cc, size_t ep)
{
    const char *name = cc->c->endpoints->endpoints[ep].addr.host;
    struct addrinfo hints = {.ai_family = hint_family(cc->c->dns_family), .ai_socktype = SOCK_STREAM};
    struct dns_req *r = calloc(1, sizeof(*r));
    int e;
    if (r == NULL)
        return UV_ENOMEM;
    r->cc = cc;
    r->ep = ep;
    if ((e = uv_getaddrinfo(cc->cm->loop, &r->req, on_resolved, name, NULL, &hints)) != 0) {
        free(r);
        return e;
    }
    cc->dns[ep] = r;
    cc->n_open++;
    cc->cm->n_open++;
    return 0;
}

/* Looks every endpoint up again; the round ends when all have answered. */
static void dns_round(struct cm_cluster *cc)
{
    cc->stats.update_attempt++;
    cc->round_changed = false;
    cc->round_failed = false;
    cc->dns_pending = cc->n_ep;
    for (size_t i = 0; i < cc->n_ep; i++) {
        int e = resolve(cc, i);
        if (e) {
            TN_LOG(TN_LOG_WARN, dns, "cluster %s: cannot resolve %s: %s", cc->c->name,
                   cc->c->endpoints->endpoints[i].addr.host, uv_strerror(e));
            cc->round_failed = true;
            cc->dns_pending--;
        }
    }
    if (cc->dns_pending == 0)
        dns_round_done(cc);
}

/* ---- the manager ---------------------------------------------------------------- */

static int cluster_alloc(struct cm_cluster *cc)
{
    if (cc->c->type != TN_CLUSTER_STRICT_DNS && cc->c->type != TN_CLUSTER_LOGICAL_DNS)
        return 0;
    cc->n_ep = cc->c->endpoints ? cc->c->endpoints->n_endpoints : 0;
    if (cc->c->type == TN_CLUSTER_LOGICAL_DNS && cc->n_ep > 1)
        cc->n_ep = 1; /* Envoy requires exactly one; the compiler may not */
    cc->dns = calloc(cc->n_ep + 1, sizeof(*cc->dns));
    cc->ep = calloc(cc->n_ep + 1, sizeof(*cc->ep));
    return cc->dns && cc->ep ? 0 : -1;
}

static void cluster_start(struct cm_cluster *cc)
{
    struct tn_cm *cm = cc->cm;
    uv_timer_init(cm->loop, &cc->dns_timer);
    cc->dns_timer.data = cc;
    cc->n_open++;
    cm->n_open++;
    if (cc->c->n_health_checks > 1)
        TN_LOG(TN_LOG_WARN, hc, "cluster %s: only the first of %zu health checks is used", cc->c->name,
               cc->c->n_health_checks);
    switch (cc->c->type) {
    case TN_CLUSTER_STRICT_DNS:
    case TN_CLUSTER_LOGICAL_DNS:
        dns_round(cc);
        break;
    case TN_CLUSTER_EDS:
        /* empty, and warming, until its first assignment or
         * initial_fetch_timeout (tn_cm_eds_update, tn_cm_eds_timeout) */
        publish(cc, NULL, 0);
        break;
    default:
        start_static(cc);
        break;
    }
}

static struct cm_cluster *cc_new(struct tn_cm *cm, struct tn_cluster *c)
{
    struct cm_cluster *cc = calloc(1, sizeof(*cc));
    if (cc == NULL)
        return NULL;
    cc->cm = cm;
    cc->c = tn_cluster_ref(c);
    if (cluster_alloc(cc)) {
        cc_free(cc);
        return NULL;
    }
    return cc;
}

static int clusters_grow(struct tn_cm *cm, size_t n)
{
    if (cm->n_clusters + n <= cm->cap_clusters)
        return 0;
    size_t cap = (cm->n_clusters + n) * 2;
    struct cm_cluster **v = realloc(cm->clusters, cap * sizeof(*v));
    if (v == NULL)
        return -1;
    cm->clusters = v;
    cm->cap_clusters = cap;
    return 0;
}

struct tn_cm *tn_cm_new(uv_loop_t *loop, struct tn_config *cfg, tn_cm_hosts_cb hosts_cb, tn_cm_ready_cb ready_cb,
                        void *arg)
{
    struct tn_cm *cm = calloc(1, sizeof(*cm));
    if (cm == NULL)
        return NULL;
    cm->loop = loop;
    cm->cfg = tn_config_ref(cfg);
    cm->hosts_cb = hosts_cb;
    cm->ready_cb = ready_cb;
    cm->arg = arg;
    if (clusters_grow(cm, cfg->n_clusters + 1))
        goto err;
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        struct cm_cluster *cc = cc_new(cm, cfg->clusters[i]);
        if (cc == NULL)
            goto err;
        if (cc_place(cm, cc, cm->n_clusters)) {
            cc_free(cc);
            goto err;
        }
        cm->n_clusters++;
    }
    cm->n_not_ready = cm->n_clusters;
    uv_timer_init(loop, &cm->ready_timer);
    cm->ready_timer.data = cm;
    cm->n_open = 1;
    if (cm->n_clusters == 0)
        uv_timer_start(&cm->ready_timer, on_ready_timer, 0, 0);
    for (size_t i = 0; i < cm->n_clusters; i++)
        cluster_start(cm->clusters[i]);
    return cm;
err:
    cm_free(cm);
    return NULL;
}

static struct cm_cluster *find_cluster(const struct tn_cm *cm, const char *name)
{
    struct tn_cluster key_c = {.name = name};
    struct cm_cluster key = {.c = &key_c};
    struct cm_cluster **found = tfind(&key, &cm->by_name, cc_cmp);
    return found ? *found : NULL;
}

void tn_cm_set_warm_cb(struct tn_cm *cm, tn_cm_warm_cb cb)
{
    cm->warm_cb = cb;
}

/* Cancels cc's lookups (one already running on the pool cannot be; its
 * callback sees the cluster removed or the manager closing and only frees),
 * closes its health checks and its timer. */
static void cc_stop(struct cm_cluster *cc)
{
    for (size_t e = 0; e < cc->n_ep; e++)
        if (cc->dns[e])
            uv_cancel((uv_req_t *)&cc->dns[e]->req);
    for (size_t k = 0; k < cc->n_sessions; k++)
        session_close(cc->sessions[k]);
    cc->n_sessions = 0;
    uv_close((uv_handle_t *)&cc->dns_timer, on_cc_timer_closed);
}

/* Stops everything of cc and frees it once its handles are closed. */
static void cc_remove(struct cm_cluster *cc)
{
    if (!cc->ready)
        cc->cm->n_not_ready--;
    cc->removed = true;
    cc_stop(cc);
}

int tn_cm_add(struct tn_cm *cm, struct tn_cluster *c)
{
    if (cm->closing || clusters_grow(cm, 1))
        return -1;
    struct cm_cluster *cc = cc_new(cm, c), *old = find_cluster(cm, c->name);
    if (cc == NULL)
        return -1;
    if (cc_place(cm, cc, old ? old->pos : cm->n_clusters)) {
        cc_free(cc);
        return -1;
    }
    if (old)
        cc_remove(old);
    else
        cm->n_clusters++;
    cm->n_not_ready++;
    cluster_start(cc);
    return 0;
}

int tn_cm_remove(struct tn_cm *cm, const char *name)
{
    struct cm_cluster *cc = find_cluster(cm, name);
    if (cc == NULL)
        return -1;
    tdelete(cc, &cm->by_name, cc_cmp);
    struct cm_cluster *last = cm->clusters[--cm->n_clusters];
    cm->clusters[cc->pos] = last;
    last->pos = cc->pos;
    bool was_pending = !cc->ready;
    cc_remove(cc);
    if (was_pending && cm->n_not_ready == 0 && !cm->ready_fired)
        uv_timer_start(&cm->ready_timer, on_ready_timer, 0, 0);
    return 0;
}

size_t tn_cm_count(const struct tn_cm *cm)
{
    return cm->n_clusters;
}

struct tn_cluster *tn_cm_at(const struct tn_cm *cm, size_t i, struct tn_host_set **set, bool *ready,
                            const struct tn_cm_stats **stats)
{
    const struct cm_cluster *cc = cm->clusters[i];
    if (set)
        *set = cc->set;
    if (ready)
        *ready = cc->ready;
    if (stats)
        *stats = &cc->stats;
    return cc->c;
}

bool tn_cm_ready(const struct tn_cm *cm, const struct tn_cluster *c)
{
    const struct cm_cluster *cc = find_cluster(cm, c->name);
    return cc && cc->c == c && cc->ready;
}

size_t tn_cm_warming(const struct tn_cm *cm)
{
    return cm->n_not_ready;
}

/* The host of `set` at sa, if the endpoint e can keep it: same weight and
 * priority (they are fixed in a host); its EDS health is brought up to date. */
static struct tn_host *eds_keep(const struct tn_host_set *set, const struct tn_endpoint *e, const struct sockaddr *sa)
{
    for (size_t i = 0; set && i < set->n_hosts; i++) {
        struct tn_host *h = set->hosts[i];
        if (!same_addr(&h->sa, sa) || h->weight != e->weight || h->priority != e->priority)
            continue;
        bool failed = e->health_status == ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__UNHEALTHY ||
                      e->health_status == ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__DRAINING ||
                      e->health_status == ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__TIMEOUT;
        if (failed)
            atomic_fetch_or(&h->health, TN_HOST_FAILED_EDS);
        else
            atomic_fetch_and(&h->health, ~(unsigned)TN_HOST_FAILED_EDS);
        return tn_host_ref(h);
    }
    return NULL;
}

int tn_cm_eds_update(struct tn_cm *cm, const char *cluster, const struct tn_endpoint_set *es)
{
    struct cm_cluster *cc = find_cluster(cm, cluster);
    if (cc == NULL || cc->c->type != TN_CLUSTER_EDS)
        return -1;
    struct tn_host **hosts = calloc(es->n_endpoints + 1, sizeof(*hosts));
    if (hosts == NULL)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < es->n_endpoints; i++) {
        const struct tn_endpoint *e = &es->endpoints[i];
        const struct sockaddr *sa = (const struct sockaddr *)&e->addr.sa;
        bool dup = false;
        for (size_t k = 0; k < n && !dup; k++)
            dup = same_addr(&hosts[k]->sa, sa);
        if (dup || !e->addr.is_ip)
            continue;
        struct tn_host *h = eds_keep(cc->set, e, sa);
        if (h == NULL)
            h = host_new(cc, e, sa, NULL);
        if (h)
            hosts[n++] = h;
    }
    cc->stats.update_attempt++;
    cc->stats.update_success++;
    if (n == 0)
        cc->stats.update_empty++;
    publish(cc, hosts, n);
    for (size_t i = 0; i < n; i++)
        tn_host_unref(hosts[i]);
    free(hosts);
    if (!cc->resolved) {
        cc->resolved = true;
        cluster_check_ready(cc);
    }
    return 0;
}

void tn_cm_eds_rejected(struct tn_cm *cm, const char *cluster)
{
    struct cm_cluster *cc = find_cluster(cm, cluster);
    if (cc) {
        cc->stats.update_attempt++;
        cc->stats.update_rejected++;
    }
}

void tn_cm_eds_timeout(struct tn_cm *cm, const char *cluster)
{
    struct cm_cluster *cc = find_cluster(cm, cluster);
    if (cc == NULL || cc->resolved)
        return;
    TN_LOG(TN_LOG_WARN, upstream,
           "cluster %s: no endpoints from the control plane within initial_fetch_timeout; "
           "serving without them",
           cc->c->name);
    cc->resolved = true;
    cluster_check_ready(cc);
}

struct tn_host_set *tn_cm_hosts(struct tn_cm *cm, const char *cluster)
{
    struct cm_cluster *cc = find_cluster(cm, cluster);
    return cc ? cc->set : NULL;
}

const struct tn_cm_stats *tn_cm_stats(struct tn_cm *cm, const char *cluster)
{
    struct cm_cluster *cc = find_cluster(cm, cluster);
    return cc ? &cc->stats : NULL;
}

void tn_cm_close(struct tn_cm *cm)
{
    cm->closing = true;
    for (size_t i = 0; i < cm->n_clusters; i++)
        cc_stop(cm->clusters[i]);
    uv_close((uv_handle_t *)&cm->ready_timer, on_cm_handle_closed);
}
