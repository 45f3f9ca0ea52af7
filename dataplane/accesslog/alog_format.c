/* Envoy's substitution format strings: compiled once at config time into
 * segments (literal text or a command operator with its arguments), then
 * run per request against a tn_stream_info. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/accesslog/accesslog.h"
#include "dataplane/http/stream_info.h"
#include "google/protobuf/struct.pb-c.h"

/* What an operator yields for one request. */
enum val_kind {
    VAL_NONE = 0, /* not known: "-" in text, null in JSON */
    VAL_STR,
    VAL_NUM, /* a JSON number when it is a value's only operator */
};

struct val {
    enum val_kind kind;
    const char *s;
    size_t len;
    uint64_t n;
    char tmp[256]; /* backing for s when the text is made here */
};

struct seg;
typedef void (*op_eval_cb)(const struct seg *s, const struct tn_stream_info *si, struct val *v);
typedef int (*op_setup_cb)(struct tn_pool *pool, struct seg *s, const char *arg, size_t arg_len, struct tn_err *err);

enum arg_use {
    ARG_NONE = 0,
    ARG_OPTIONAL,
    ARG_REQUIRED,
};

struct op {
    const char *name;
    enum arg_use arg;
    op_eval_cb eval;
    op_setup_cb setup; /* reads the (...) argument into the segment; may be NULL */
};

struct seg {
    const struct op *op; /* NULL: literal text */
    const char *text;    /* literal text, START_TIME's format (NULL: default), HOSTNAME's value */
    size_t text_len;
    const char *name, *alt; /* REQ/RESP: lower-case header names; alt NULL without '?' */
    size_t name_len, alt_len;
    size_t max_len; /* :N truncation, 0 for none */
};

struct tmpl {
    struct seg *v;
    size_t n;
};

enum jkind {
    J_TMPL = 0, /* a format string */
    J_RAW,      /* a number, bool or null from the config, as JSON text */
    J_OBJ,
    J_LIST,
};

struct jnode {
    enum jkind kind;
    const char *key; /* in objects: "\"key\":", escaped at compile time */
    size_t key_len;
    struct tmpl tmpl;
    const char *raw;
    struct jnode *kids;
    size_t n_kids;
};

struct tn_alog_format {
    bool json;
    struct tmpl text;  /* !json */
    struct jnode root; /* json: a J_OBJ */
};

/* ---- output: appends that fail sticky at the buffer's cap --------------- */

struct out {
    struct tn_alog_buf *b;
    bool failed;
};

static bool reserve(struct tn_alog_buf *b, size_t n)
{
    if (n <= b->cap - b->len)
        return true;
    if (b->len > b->max || n > b->max - b->len)
        return false;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n)
        cap *= 2;
    if (cap > b->max)
        cap = b->max;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return false;
    b->data = p;
    b->cap = cap;
    return true;
}

static void put(struct out *o, const char *p, size_t n)
{
    if (o->failed || n == 0)
        return;
    if (!reserve(o->b, n)) {
        o->failed = true;
        return;
    }
    memcpy(o->b->data + o->b->len, p, n);
    o->b->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at p (of n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xbf;
    size_t k;
    if (c >= 0xc2 && c <= 0xdf)
        k = 2;
    else if (c >= 0xe0 && c <= 0xef)
        k = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        k = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (n < k || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < k; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return k;
}

/* Appends s as the inside of a JSON string: quotes, backslashes and
 * controls escaped, invalid UTF-8 as U+FFFD so a line is always valid JSON. */
static void put_escaped(struct out *o, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t start = 0, i = 0;
    while (i < n) {
        size_t k = 1;
        if (u[i] >= 0x20 && u[i] != '"' && u[i] != '\\' && u[i] < 0x80) {
            i++;
            continue;
        }
        if (u[i] >= 0x80 && (k = utf8_len(u + i, n - i)) > 0) {
            i += k;
            continue;
        }
        put(o, s + start, i - start);
        char esc[8];
        if (u[i] == '"' || u[i] == '\\')
            snprintf(esc, sizeof(esc), "\\%c", u[i]);
        else if (u[i] == '\n' || u[i] == '\r' || u[i] == '\t')
            snprintf(esc, sizeof(esc), "\\%c", u[i] == '\n' ? 'n' : u[i] == '\r' ? 'r' : 't');
        else if (u[i] < 0x20)
            snprintf(esc, sizeof(esc), "\\u%04x", u[i]);
        else
            snprintf(esc, sizeof(esc), "\\ufffd");
        puts_(o, esc);
        start = ++i;
    }
    put(o, s + start, n - start);
}

/* ---- operators ------------------------------------------------------------ */

static void set_str(struct val *v, const char *s, size_t len)
{
    if (s != NULL && len > 0) {
        v->kind = VAL_STR;
        v->s = s;
        v->len = len;
    }
}

static void set_cstr(struct val *v, const char *s)
{
    set_str(v, s, s ? strlen(s) : 0);
}

static void set_tmp(struct val *v, int n)
{
    if (n > 0)
        set_str(v, v->tmp, (size_t)n < sizeof(v->tmp) ? (size_t)n : sizeof(v->tmp) - 1);
}

static void set_num(struct val *v, uint64_t n)
{
    v->kind = VAL_NUM;
    v->n = n;
}

/* Appends the strftime expansion of the chunk fmt[0..n) at buf+*pos. */
static void strftime_chunk(const char *fmt, size_t n, const struct tm *tm, char *buf, size_t len, size_t *pos)
{
    char f[256];
    if (n == 0 || n >= sizeof(f) || *pos >= len)
        return;
    memcpy(f, fmt, n);
    f[n] = '\0';
    *pos += strftime(buf + *pos, len - *pos, f, tm);
}

/* Formats ms since the epoch with strftime plus Envoy's %s (epoch seconds),
 * %f and %1f..%9f (fractional seconds, 9 digits by default). */
static size_t format_time(const char *fmt, uint64_t ms, char *buf, size_t len)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    char nanos[10];
    size_t pos = 0, chunk = 0, i = 0;
    gmtime_r(&secs, &tm);
    snprintf(nanos, sizeof(nanos), "%09" PRIu64, (ms % 1000) * 1000000);
    buf[0] = '\0';
    while (fmt[i] != '\0') {
        char extra[32];
        size_t skip = 0;
        extra[0] = '\0';
        if (fmt[i] == '%' && fmt[i + 1] == 's')
            snprintf(extra, sizeof(extra), "%lld", (long long)secs), skip = 2;
        else if (fmt[i] == '%' && fmt[i + 1] == 'f')
            snprintf(extra, sizeof(extra), "%s", nanos), skip = 2;
        else if (fmt[i] == '%' && fmt[i + 1] >= '1' && fmt[i + 1] <= '9' && fmt[i + 2] == 'f')
            snprintf(extra, sizeof(extra), "%.*s", fmt[i + 1] - '0', nanos), skip = 3;
        if (skip == 0) {
            i += fmt[i] == '%' && fmt[i + 1] != '\0' ? 2 : 1; /* keeps "%%s" whole for strftime */
            continue;
        }
        strftime_chunk(fmt + chunk, i - chunk, &tm, buf, len, &pos);
        size_t n = strlen(extra);
        if (pos + n < len) {
            memcpy(buf + pos, extra, n + 1);
            pos += n;
        }
        i += skip;
        chunk = i;
    }
    strftime_chunk(fmt + chunk, i - chunk, &tm, buf, len, &pos);
    return pos;
}

static void op_start_time(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    if (s->text != NULL) {
        set_tmp(v, (int)format_time(s->text, si->start_ms, v->tmp, sizeof(v->tmp)));
        return;
    }
    time_t secs = (time_t)(si->start_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    set_tmp(v, snprintf(v->tmp, sizeof(v->tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(si->start_ms % 1000)));
}

static bool name_is(const char *name, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(name, lit, len) == 0;
}

/* A request header by lower-case name; pseudo headers, the request id and
 * Host come from the stream info when the list does not have them. */
static void req_header(const char *name, size_t len, const struct tn_stream_info *si, struct val *v)
{
    if (name_is(name, len, ":method"))
        set_str(v, si->method, si->method_len);
    else if (name_is(name, len, ":path"))
        set_str(v, si->path, si->path_len);
    else if (name_is(name, len, ":authority"))
        set_str(v, si->authority, si->authority_len);
    else if (name_is(name, len, ":scheme"))
        set_cstr(v, si->scheme);
    if (v->kind != VAL_NONE)
        return;
    const struct tn_header *h = tn_headers_find(si->req_headers, si->n_req_headers, name, len);
    if (h != NULL)
        set_str(v, h->value, h->value_len);
    else if (name_is(name, len, "x-request-id"))
        set_str(v, si->request_id, si->request_id_len);
    else if (name_is(name, len, "host"))
        set_str(v, si->authority, si->authority_len);
}

static void resp_header(const char *name, size_t len, const struct tn_stream_info *si, struct val *v)
{
    if (name_is(name, len, ":status") && si->response_code > 0) {
        set_tmp(v, snprintf(v->tmp, sizeof(v->tmp), "%d", si->response_code));
        return;
    }
    const struct tn_header *h = tn_headers_find(si->resp_headers, si->n_resp_headers, name, len);
    if (h != NULL)
        set_str(v, h->value, h->value_len);
}

static void op_req(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    req_header(s->name, s->name_len, si, v);
    if (v->kind == VAL_NONE && s->alt != NULL)
        req_header(s->alt, s->alt_len, si, v);
}

static void op_resp(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    resp_header(s->name, s->name_len, si, v);
    if (v->kind == VAL_NONE && s->alt != NULL)
        resp_header(s->alt, s->alt_len, si, v);
}

static void trailer(const char *name, size_t len, const struct tn_stream_info *si, struct val *v)
{
    const struct tn_header *h = tn_headers_find(si->resp_trailers, si->n_resp_trailers, name, len);
    if (h != NULL)
        set_str(v, h->value, h->value_len);
}

static void op_trailer(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    trailer(s->name, s->name_len, si, v);
    if (v->kind == VAL_NONE && s->alt != NULL)
        trailer(s->alt, s->alt_len, si, v);
}

static void op_response_code(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_num(v, (uint64_t)(si->response_code > 0 ? si->response_code : 0));
}

static void op_response_code_details(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_cstr(v, si->response_code_details);
}

static void op_response_flags(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_str(v, v->tmp, tn_response_flags_str(si->response_flags, v->tmp, sizeof(v->tmp)));
}

static void op_bytes_received(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_num(v, si->bytes_received);
}

static void op_bytes_sent(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_num(v, si->bytes_sent);
}

/* Milliseconds from the request's start to a monotonic time, none if unset. */
static void set_since_start(const struct tn_stream_info *si, uint64_t ns, struct val *v)
{
    if (ns != 0 && ns >= si->start_ns)
        set_num(v, (ns - si->start_ns) / 1000000);
}

static void op_duration(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_since_start(si, si->end_ns, v);
}

static void op_response_duration(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_since_start(si, si->first_upstream_rx_ns, v);
}

static void op_request_duration(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_since_start(si, si->last_downstream_rx_ns, v);
}

static void op_protocol(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_cstr(v, si->protocol);
}

static void op_upstream_host(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_cstr(v, si->upstream_host);
}

static void op_upstream_cluster(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_cstr(v, si->upstream_cluster);
}

static void op_route_name(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_cstr(v, si->route_name);
}

/* "1.2.3.4:80", "[::1]:80", or without the port "1.2.3.4", "::1"; a Unix
 * socket's path; none for an unset address. */
static void set_addr(const struct sockaddr_storage *ss, bool port, struct val *v)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        set_tmp(v, port ? snprintf(v->tmp, sizeof(v->tmp), "%s:%u", ip, ntohs(a->sin_port))
                        : snprintf(v->tmp, sizeof(v->tmp), "%s", ip));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        set_tmp(v, port ? snprintf(v->tmp, sizeof(v->tmp), "[%s]:%u", ip, ntohs(a->sin6_port))
                        : snprintf(v->tmp, sizeof(v->tmp), "%s", ip));
    } else if (ss->ss_family == AF_UNIX) {
        const struct sockaddr_un *a = (const void *)ss;
        set_str(v, a->sun_path, strnlen(a->sun_path, sizeof(a->sun_path)));
    }
}

static void op_downstream_remote(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_addr(&si->downstream_remote, true, v);
}

static void op_downstream_remote_noport(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_addr(&si->downstream_remote, false, v);
}

static void op_downstream_local(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_addr(&si->downstream_local, true, v);
}

static void op_downstream_local_noport(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_addr(&si->downstream_local, false, v);
}

static void op_upstream_local(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_addr(&si->upstream_local, true, v);
}

static void op_upstream_local_noport(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_addr(&si->upstream_local, false, v);
}

static void op_attempts(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_num(v, si->upstream_attempts);
}

static void op_text(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    set_str(v, s->text, s->text_len);
}

/* ---- operator arguments, read at compile time ---------------------------- */

static char *lower_dup(struct tn_pool *pool, const char *s, size_t n)
{
    char *d = tn_pool_strndup(pool, s, n);
    for (size_t i = 0; d != NULL && i < n; i++)
        if (d[i] >= 'A' && d[i] <= 'Z')
            d[i] = (char)(d[i] - 'A' + 'a');
    return d;
}

static int setup_header(struct tn_pool *pool, struct seg *s, const char *arg, size_t len, struct tn_err *err)
{
    const char *q = memchr(arg, '?', len);
    size_t n1 = q ? (size_t)(q - arg) : len;
    if (n1 == 0 || (q != NULL && n1 + 1 == len))
        return tn_err_fail(err, "%%%s(%.*s)%%: a header name is empty", s->op->name, (int)len, arg);
    s->name = lower_dup(pool, arg, n1);
    s->name_len = n1;
    if (q != NULL) {
        s->alt = lower_dup(pool, q + 1, len - n1 - 1);
        s->alt_len = len - n1 - 1;
    }
    return 0;
}

static int setup_start_time(struct tn_pool *pool, struct seg *s, const char *arg, size_t len, struct tn_err *err)
{
    if (arg != NULL && len > 0)
        s->text = tn_pool_strndup(pool, arg, len);
    return 0;
}

static int setup_hostname(struct tn_pool *pool, struct seg *s, const char *arg, size_t len, struct tn_err *err)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0)
        return 0; /* logs "-" */
    host[sizeof(host) - 1] = '\0';
    s->text = tn_pool_strdup(pool, host);
    s->text_len = strlen(host);
    return 0;
}

static const struct op ops[] = {
    {"START_TIME", ARG_OPTIONAL, op_start_time, setup_start_time},
    {"REQ", ARG_REQUIRED, op_req, setup_header},
    {"RESP", ARG_REQUIRED, op_resp, setup_header},
    {"TRAILER", ARG_REQUIRED, op_trailer, setup_header},
    {"RESPONSE_CODE", ARG_NONE, op_response_code, NULL},
    {"RESPONSE_CODE_DETAILS", ARG_NONE, op_response_code_details, NULL},
    {"RESPONSE_FLAGS", ARG_NONE, op_response_flags, NULL},
    {"BYTES_RECEIVED", ARG_NONE, op_bytes_received, NULL},
    {"BYTES_SENT", ARG_NONE, op_bytes_sent, NULL},
    {"DURATION", ARG_NONE, op_duration, NULL},
    {"REQUEST_DURATION", ARG_NONE, op_request_duration, NULL},
    {"RESPONSE_DURATION", ARG_NONE, op_response_duration, NULL},
    {"PROTOCOL", ARG_NONE, op_protocol, NULL},
    {"UPSTREAM_HOST", ARG_NONE, op_upstream_host, NULL},
    {"UPSTREAM_CLUSTER", ARG_NONE, op_upstream_cluster, NULL},
    {"UPSTREAM_LOCAL_ADDRESS", ARG_NONE, op_upstream_local, NULL},
    {"UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", ARG_NONE, op_upstream_local_noport, NULL},
    {"UPSTREAM_REMOTE_ADDRESS", ARG_NONE, op_upstream_host, NULL},
    {"ROUTE_NAME", ARG_NONE, op_route_name, NULL},
    {"DOWNSTREAM_REMOTE_ADDRESS", ARG_NONE, op_downstream_remote, NULL},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", ARG_NONE, op_downstream_remote_noport, NULL},
    {"DOWNSTREAM_LOCAL_ADDRESS", ARG_NONE, op_downstream_local, NULL},
    {"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", ARG_NONE, op_downstream_local_noport, NULL},
    {"UPSTREAM_REQUEST_ATTEMPT_COUNT", ARG_NONE, op_attempts, NULL},
    {"HOSTNAME", ARG_NONE, op_text, setup_hostname},
};

static const struct op *find_op(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (name_is(name, len, ops[i].name))
            return &ops[i];
    return NULL;
}

/* ---- compiling format strings ------------------------------------------- */

static bool is_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Reads the command operator at text[*pos] == '%' into s and moves *pos past
 * its closing '%': NAME, then (ARG), then :N, then '%'. */
static int parse_op(struct tn_pool *pool, const char *text, size_t *pos, struct seg *s, struct tn_err *err)
{
    const char *name = text + *pos + 1, *p = name, *arg = NULL;
    size_t arg_len = 0;
    while (is_name_char(*p))
        p++;
    size_t name_len = (size_t)(p - name);
    if (name_len == 0)
        return tn_err_fail(err, "'%%' at position %zu does not start a command operator (write %%%% for a '%%')", *pos);
    if (*p == '(') {
        const char *close = strchr(p, ')');
        if (close == NULL)
            return tn_err_fail(err, "%%%.*s(: missing ')'", (int)name_len, name);
        arg = p + 1;
        arg_len = (size_t)(close - arg);
        p = close + 1;
    }
    if (*p == ':' && p[1] >= '0' && p[1] <= '9')
        s->max_len = strtoul(p + 1, (char **)&p, 10);
    if (*p != '%')
        return tn_err_fail(err, "command operator %%%.*s at position %zu is not closed by '%%'", (int)name_len, name,
                           *pos);
    if ((s->op = find_op(name, name_len)) == NULL)
        return tn_err_fail(err, "unknown command operator %%%.*s%%", (int)name_len, name);
    if (s->op->arg == ARG_REQUIRED && arg == NULL)
        return tn_err_fail(err, "%%%s%% needs an argument: %%%s(...)%%", s->op->name, s->op->name);
    if (s->op->arg == ARG_NONE && arg != NULL)
        return tn_err_fail(err, "%%%s%% takes no argument", s->op->name);
    if (s->op->setup != NULL && s->op->setup(pool, s, arg, arg_len, err))
        return -1;
    *pos = (size_t)(p + 1 - text);
    return 0;
}

static void add_literal(struct tmpl *t, const char *text, size_t from, size_t to)
{
    if (to > from)
        t->v[t->n++] = (struct seg){.text = text + from, .text_len = to - from};
}

/* Splits text (copied to the pool) into literal and operator segments. */
static int parse_tmpl(struct tn_pool *pool, const char *src, struct tmpl *t, struct tn_err *err)
{
    const char *text = tn_pool_strdup(pool, src);
    size_t n_pct = 0, lit = 0, i = 0;
    for (const char *p = text; (p = strchr(p, '%')) != NULL; p++)
        n_pct++;
    t->v = tn_pool_alloc(pool, (2 * n_pct + 1) * sizeof(*t->v));
    t->n = 0;
    while (text[i] != '\0') {
        if (text[i] != '%') {
            i++;
        } else if (text[i + 1] == '%') { /* "%%": keep one '%' in the literal */
            add_literal(t, text, lit, i + 1);
            lit = i += 2;
        } else {
            add_literal(t, text, lit, i);
            struct seg *s = &t->v[t->n];
            if (parse_op(pool, text, &i, s, err))
                return -1;
            t->n++;
            lit = i;
        }
    }
    add_literal(t, text, lit, i);
    return 0;
}

int tn_alog_format_compile(struct tn_pool *pool, const char *text, const struct tn_alog_format **out,
                           struct tn_err *err)
{
    struct tn_alog_format *f = tn_pool_alloc(pool, sizeof(*f));
    if (parse_tmpl(pool, text ? text : TN_ALOG_DEFAULT_FORMAT, &f->text, err))
        return -1;
    *out = f;
    return 0;
}

static int compile_jobj(struct tn_pool *pool, const Google__Protobuf__Struct *obj, struct jnode *n, struct tn_err *err);

/* A number from the config, as JSON: integers without a fraction. */
static const char *json_number(struct tn_pool *pool, double d)
{
    char num[64];
    if (!isfinite(d))
        return "null";
    if (d == floor(d) && fabs(d) < 9007199254740992.0)
        snprintf(num, sizeof(num), "%.0f", d);
    else
        snprintf(num, sizeof(num), "%.17g", d);
    return tn_pool_strdup(pool, num);
}

static int compile_jlist(struct tn_pool *pool, const Google__Protobuf__ListValue *l, struct jnode *n,
                         struct tn_err *err);

static int compile_jvalue(struct tn_pool *pool, const Google__Protobuf__Value *v, struct jnode *n, struct tn_err *err)
{
    switch (v->kind_case) {
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
        n->kind = J_TMPL;
        return parse_tmpl(pool, v->string_value, &n->tmpl, err);
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
        n->kind = J_RAW;
        n->raw = json_number(pool, v->number_value);
        return 0;
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
        n->kind = J_RAW;
        n->raw = v->bool_value ? "true" : "false";
        return 0;
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
        return compile_jobj(pool, v->struct_value, n, err);
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
        return compile_jlist(pool, v->list_value, n, err);
    default:
        n->kind = J_RAW;
        n->raw = "null";
        return 0;
    }
}

static int compile_jlist(struct tn_pool *pool, const Google__Protobuf__ListValue *l, struct jnode *n,
                         struct tn_err *err)
{
    n->kind = J_LIST;
    n->n_kids = l->n_values;
    n->kids = tn_pool_alloc(pool, (l->n_values + 1) * sizeof(*n->kids));
    for (size_t i = 0; i < l->n_values; i++) {
        size_t mark = tn_err_push(err, "[%zu]", i);
        if (compile_jvalue(pool, l->values[i], &n->kids[i], err))
            return -1;
        tn_err_pop(err, mark);
    }
    return 0;
}

/* "\"key\":" with the key escaped, in the pool. */
static const char *json_key(struct tn_pool *pool, const char *key, size_t *len)
{
    struct tn_alog_buf b = {.max = (size_t)-1};
    struct out o = {.b = &b};
    put(&o, "\"", 1);
    put_escaped(&o, key, strlen(key));
    put(&o, "\":", 2);
    const char *k = o.failed ? NULL : tn_pool_strndup(pool, b.data, b.len);
    *len = o.failed ? 0 : b.len;
    free(b.data);
    return k;
}

static int compile_jobj(struct tn_pool *pool, const Google__Protobuf__Struct *obj, struct jnode *n, struct tn_err *err)
{
    n->kind = J_OBJ;
    n->n_kids = obj->n_fields;
    n->kids = tn_pool_alloc(pool, (obj->n_fields + 1) * sizeof(*n->kids));
    for (size_t i = 0; i < obj->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *e = obj->fields[i];
        size_t mark = tn_err_push(err, ".%s", e->key);
        n->kids[i].key = json_key(pool, e->key, &n->kids[i].key_len);
        if (n->kids[i].key == NULL)
            return tn_err_fail(err, "out of memory");
        if (e->value == NULL) {
            n->kids[i].kind = J_RAW;
            n->kids[i].raw = "null";
        } else if (compile_jvalue(pool, e->value, &n->kids[i], err)) {
            return -1;
        }
        tn_err_pop(err, mark);
    }
    return 0;
}

int tn_alog_format_compile_json(struct tn_pool *pool, const struct Google__Protobuf__Struct *obj,
                                const struct tn_alog_format **out, struct tn_err *err)
{
    struct tn_alog_format *f = tn_pool_alloc(pool, sizeof(*f));
    static const Google__Protobuf__Struct empty = GOOGLE__PROTOBUF__STRUCT__INIT;
    f->json = true;
    if (compile_jobj(pool, obj ? obj : &empty, &f->root, err))
        return -1;
    *out = f;
    return 0;
}

/* ---- running a format ------------------------------------------------------ */

static void eval(const struct seg *s, const struct tn_stream_info *si, struct val *v)
{
    v->kind = VAL_NONE;
    s->op->eval(s, si, v);
    if (v->kind == VAL_NUM) {
        int n = snprintf(v->tmp, sizeof(v->tmp), "%" PRIu64, v->n);
        v->s = v->tmp;
        v->len = (size_t)n;
    }
    if (s->max_len > 0 && v->kind != VAL_NONE && v->len > s->max_len)
        v->len = s->max_len;
}

/* A value as text ("-" when none); escaped for use inside a JSON string. */
static void put_val(struct out *o, const struct val *v, bool esc)
{
    if (v->kind == VAL_NONE)
        put(o, "-", 1);
    else if (esc)
        put_escaped(o, v->s, v->len);
    else
        put(o, v->s, v->len);
}

static void render_tmpl(struct out *o, const struct tmpl *t, const struct tn_stream_info *si, bool esc)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct seg *s = &t->v[i];
        if (s->op == NULL) {
            if (esc)
                put_escaped(o, s->text, s->text_len);
            else
                put(o, s->text, s->text_len);
            continue;
        }
        struct val v;
        eval(s, si, &v);
        put_val(o, &v, esc);
    }
}

/* A value that is exactly one operator keeps its type (Envoy's typed JSON):
 * a number, a string, or null; anything else is a string. */
static void render_json_tmpl(struct out *o, const struct tmpl *t, const struct tn_stream_info *si)
{
    if (t->n == 1 && t->v[0].op != NULL) {
        struct val v;
        eval(&t->v[0], si, &v);
        if (v.kind == VAL_NONE)
            put(o, "null", 4);
        if (v.kind == VAL_NUM && t->v[0].max_len == 0)
            put(o, v.s, v.len);
        if (v.kind == VAL_NONE || (v.kind == VAL_NUM && t->v[0].max_len == 0))
            return;
    }
    put(o, "\"", 1);
    render_tmpl(o, t, si, true);
    put(o, "\"", 1);
}

static void render_jnode(struct out *o, const struct jnode *n, const struct tn_stream_info *si)
{
    switch (n->kind) {
    case J_TMPL:
        render_json_tmpl(o, &n->tmpl, si);
        break;
    case J_RAW:
        puts_(o, n->raw);
        break;
    case J_OBJ:
    case J_LIST:
        put(o, n->kind == J_OBJ ? "{" : "[", 1);
        for (size_t i = 0; i < n->n_kids; i++) {
            if (i > 0)
                put(o, ",", 1);
            put(o, n->kids[i].key, n->kids[i].key_len);
            render_jnode(o, &n->kids[i], si);
        }
        put(o, n->kind == J_OBJ ? "}" : "]", 1);
        break;
    }
}

bool tn_alog_format(const struct tn_alog_format *f, const struct tn_stream_info *si, struct tn_alog_buf *out)
{
    struct out o = {.b = out};
    size_t mark = out->len;
    if (f->json) {
        render_jnode(&o, &f->root, si);
        put(&o, "\n", 1);
    } else {
        render_tmpl(&o, &f->text, si, false);
    }
    if (o.failed)
        out->len = mark;
    return !o.failed;
}
