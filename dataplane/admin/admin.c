/* The admin listener: a small HTTP/1.1 server (one request per connection,
 * answered with Connection: close) dispatching Envoy's admin endpoints.
 * Pages are built in a tn_buf by the handlers in admin_pages.c. */
#include "dataplane/admin/admin.h"

#include <llhttp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/accesslog/accesslog.h"
#include "dataplane/admin/admin_int.h"
#include "dataplane/server/config.h"
#include "dataplane/http/h1.h"
#include "dataplane/core/log.h"
#include "dataplane/http/stream_info.h"

#define URL_MAX 8192

struct tn_admin {
    uv_tcp_t tcp;
    struct tn__admin_ctx ctx;
    struct tn_alog_writer *alog; /* admin.access_log; NULL when there is none */
    struct aconn *conns;
    unsigned open; /* handles not yet closed: the listener and each connection */
    bool closing;
};

struct aconn {
    uv_tcp_t tcp;
    struct tn_admin *a;
    struct aconn *next, **pprev;
    llhttp_t parser;
    struct tn_buf url;
    struct tn_buf out;
    uv_write_t wr;
    uv_shutdown_t sd;
    struct tn_h1_head head; /* request headers, for the access log */
    uint64_t start_ns, start_ms;
    int status;
    size_t body_len;
    bool complete, url_too_long, quit, closed, logged;
    char rbuf[4096];
};

static void maybe_free(struct tn_admin *a)
{
    if (a->closing && a->open == 0)
        free(a);
}

static void listener_closed(uv_handle_t *h)
{
    struct tn_admin *a = h->data;
    a->open--;
    maybe_free(a);
}

static void conn_closed(uv_handle_t *h)
{
    struct aconn *c = h->data;
    struct tn_admin *a = c->a;
    tn_buf_dispose(&c->url);
    tn_buf_dispose(&c->out);
    tn_h1_head_dispose(&c->head);
    free(c);
    a->open--;
    maybe_free(a);
}

static void conn_close(struct aconn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    if (c->next)
        c->next->pprev = c->pprev;
    *c->pprev = c->next;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

/* --- parsing ----------------------------------------------------------------- */

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct aconn *c = p->data;
    if (c->url.len + n > URL_MAX)
        c->url_too_long = true;
    else
        tn_buf_add(&c->url, at, n);
    return 0;
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
    struct aconn *c = p->data;
    (void)tn_h1_head_field(&c->head, at, n); /* past the limit the log sees fewer headers */
    return 0;
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
    struct aconn *c = p->data;
    (void)tn_h1_head_value(&c->head, at, n);
    return 0;
}

static int on_complete(llhttp_t *p)
{
    struct aconn *c = p->data;
    c->complete = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_message_complete = on_complete,
};

/* --- access log ---------------------------------------------------------------- */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One line per answered request in each of admin.access_log, as Envoy logs
 * its admin requests. */
static void log_request(struct aconn *c)
{
    struct tn_admin *a = c->a;
    const struct tn_config *cfg = a->ctx.cfg;
    if (a->alog == NULL || c->logged || c->status == 0)
        return;
    c->logged = true;
    struct tn_stream_info si;
    memset(&si, 0, sizeof(si));
    si.start_ms = c->start_ms;
    si.start_ns = c->start_ns;
    si.end_ns = uv_hrtime();
    si.last_downstream_rx_ns = si.end_ns;
    si.response_code = c->status;
    si.response_code_details = "admin_filter_response";
    si.bytes_sent = c->body_len;
    si.protocol = c->parser.http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
    si.method = llhttp_method_name(c->parser.method);
    si.method_len = strlen(si.method);
    si.path = c->url.len ? c->url.data : "/";
    si.path_len = c->url.len ? c->url.len : 1;
    si.scheme = "http";
    if (tn_h1_head_finish(&c->head) == 0) {
        si.req_headers = c->head.h;
        si.n_req_headers = c->head.n;
        const struct tn_header *h = tn_headers_find(c->head.h, c->head.n, "host", 4);
        if (h)
            si.authority = h->value, si.authority_len = h->value_len;
        h = tn_headers_find(c->head.h, c->head.n, "x-request-id", 12);
        if (h)
            si.request_id = h->value, si.request_id_len = h->value_len;
    }
    int len = sizeof(si.downstream_remote);
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&si.downstream_remote, &len);
    len = sizeof(si.downstream_local);
    uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&si.downstream_local, &len);
    for (size_t i = 0; i < cfg->n_admin_logs; i++)
        tn_alog_write(a->alog, &cfg->admin_logs[i], &si);
}

/* --- responding -------------------------------------------------------------- */

static void shut_done(uv_shutdown_t *sd, int status)
{
    (void)status;
    conn_close(sd->data);
}

static void written(uv_write_t *w, int status)
{
    struct aconn *c = w->data;
    struct tn_admin *a = c->a;
    bool quit = c->quit && status == 0 && !a->closing;
    if (c->closed)
        return;
    log_request(c);
    c->sd.data = c;
    if (status != 0 || uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, shut_done) != 0)
        conn_close(c);
    /* The response is on the wire; the server may now close everything,
     * this admin included (a stays allocated until the close callbacks). */
    if (quit && a->ctx.ops && a->ctx.ops->quit)
        a->ctx.ops->quit(a->ctx.arg);
}

static void respond(struct aconn *c, int status, const char *ctype, const struct tn_buf *body)
{
    if (status == 204) /* no content: no body, no Content-Length (RFC 9110 8.6) */
        tn_buf_printf(&c->out,
                      "HTTP/1.1 204 No Content\r\nCache-Control: no-cache, max-age=0\r\n"
                      "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n");
    else
        tn_buf_printf(&c->out,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-cache, max-age=0\r\nX-Content-Type-Options: nosniff\r\n"
                      "Connection: close\r\n\r\n",
                      status, tn_h1_reason(status), ctype, body->len);
    c->status = status;
    c->body_len = c->parser.method != HTTP_HEAD ? body->len : 0;
    if (c->parser.method != HTTP_HEAD && body->len && status != 204)
        tn_buf_add(&c->out, body->data, body->len);
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, written) != 0)
        conn_close(c);
}

static void serve(struct aconn *c)
{
    struct tn__admin_req r;
    struct tn_buf body;
    int status;
    tn_buf_init(&body);
    memset(&r, 0, sizeof(r));
    r.ctx = &c->a->ctx;
    r.body = &body;
    r.ctype = TN_ADMIN_TEXT;
    r.post = c->parser.method == HTTP_POST;
    r.del = c->parser.method == HTTP_DELETE;
    if (c->url_too_long) {
        tn_buf_adds(&body, "URL too long\n");
        status = 414;
    } else {
        status = tn__admin_dispatch(&r, c->url.len ? c->url.data : "/");
    }
    c->quit = r.quit;
    respond(c, status, r.ctype, &body);
    tn_buf_dispose(&body);
}

static void bad_request(struct aconn *c)
{
    struct tn_buf body;
    tn_buf_init(&body);
    tn_buf_printf(&body, "bad request: %s\n", llhttp_get_error_reason(&c->parser));
    respond(c, 400, TN_ADMIN_TEXT, &body);
    tn_buf_dispose(&body);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct aconn *c = h->data;
    (void)hint;
    *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct aconn *c = s->data;
    if (n == 0)
        return;
    if (n < 0) {
        conn_close(c);
        return;
    }
    llhttp_errno_t e = llhttp_execute(&c->parser, b->base, (size_t)n);
    if (c->complete) {
        uv_read_stop(s);
        serve(c);
    } else if (e != HPE_OK && e != HPE_PAUSED) {
        uv_read_stop(s);
        bad_request(c);
    }
}

static void on_connection(uv_stream_t *srv, int status)
{
    struct tn_admin *a = srv->data;
    struct aconn *c;
    if (status < 0 || a->closing || (c = calloc(1, sizeof(*c))) == NULL)
        return;
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    c->a = a;
    a->open++;
    c->next = a->conns;
    c->pprev = &a->conns;
    if (a->conns)
        a->conns->pprev = &c->next;
    a->conns = c;
    tn_buf_init(&c->url);
    tn_buf_init(&c->out);
    tn_h1_head_init(&c->head, 64 * 1024);
    c->start_ns = uv_hrtime();
    c->start_ms = wall_ms();
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0 || uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) != 0)
        conn_close(c);
}

/* --- life cycle -------------------------------------------------------------- */

struct tn_admin *tn_admin_start(uv_loop_t *loop, struct tn_config *cfg, struct tn_stats *stats, struct tn_cm *cm,
                                const struct tn_admin_ops *ops, void *arg, const struct tn_admin_info *info)
{
    struct tn_admin *a = calloc(1, sizeof(*a));
    int rc;
    if (a == NULL)
        return NULL;
    a->ctx = (struct tn__admin_ctx){.loop = loop, .cfg = cfg, .stats = stats, .cm = cm, .ops = ops, .arg = arg};
    if (info)
        a->ctx.info = *info;
    uv_tcp_init(loop, &a->tcp);
    a->tcp.data = a;
    a->open = 1;
    if ((rc = uv_tcp_bind(&a->tcp, (const struct sockaddr *)&cfg->admin_addr.sa, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&a->tcp, 128, on_connection)) != 0) {
        TN_LOG(TN_LOG_CRITICAL, admin, "cannot listen on admin address %s: %s", cfg->admin_addr.text, uv_strerror(rc));
        a->closing = true;
        uv_close((uv_handle_t *)&a->tcp, listener_closed);
        return NULL;
    }
    TN_LOG(TN_LOG_INFO, admin, "admin address: %s", cfg->admin_addr.text);
    if (cfg->n_admin_logs && (a->alog = tn_alog_writer_new(loop)) == NULL)
        TN_LOG(TN_LOG_ERROR, admin, "admin access log: out of memory; admin requests are not logged");
    return a;
}

void tn_admin_close(struct tn_admin *a)
{
    a->closing = true;
    while (a->conns)
        conn_close(a->conns);
    if (a->alog)
        tn_alog_writer_close(a->alog);
    a->alog = NULL;
    uv_close((uv_handle_t *)&a->tcp, listener_closed);
}
