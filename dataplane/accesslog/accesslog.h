/* Access logs (envoy.config.accesslog.v3.AccessLog): where each log goes,
 * its format compiled from Envoy's substitution format strings
 * (%REQ(X?Y):N%, %START_TIME(fmt)%, ... or json_format), and per-thread
 * writers that keep file I/O off the event loop. */
#ifndef TN_ACCESSLOG_H
#define TN_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/core/err.h"
#include "dataplane/core/pool.h"
#include "envoy/config/accesslog/v3/accesslog.pb-c.h"

enum tn_access_log_sink {
    TN_ACCESS_LOG_FILE = 0,
    TN_ACCESS_LOG_STDOUT,
    TN_ACCESS_LOG_STDERR,
};

struct tn_alog_format; /* a compiled format: immutable, from the log's pool */
struct tn_stream_info;

/* An access log filter (envoy.config.accesslog.v3.AccessLogFilter),
 * compiled: a tree of tests on the finished request. */
enum tn_alog_filter_kind {
    TN_ALF_STATUS = 0,    /* status_code_filter */
    TN_ALF_DURATION,      /* duration_filter (ms) */
    TN_ALF_NOT_HC,        /* not_health_check_filter */
    TN_ALF_HEADER,        /* header_filter (request headers) */
    TN_ALF_RESPONSE_FLAG, /* response_flag_filter */
    TN_ALF_RUNTIME,       /* runtime_filter: percent_sampled (there is no runtime) */
    TN_ALF_AND,
    TN_ALF_OR,
};

struct tn_header_matcher;

struct tn_alog_filter {
    enum tn_alog_filter_kind kind;
    int op;         /* STATUS, DURATION: 0 EQ, 1 GE, 2 LE */
    uint64_t value; /* STATUS, DURATION */
    uint32_t flags; /* RESPONSE_FLAG: TN_RF_* any of which passes (all flags when none named) */
    uint32_t numerator, denominator; /* RUNTIME */
    bool independent;                /* RUNTIME: ignore x-request-id */
    const struct tn_header_matcher *header;
    const struct tn_alog_filter *subs; /* AND, OR */
    size_t n_subs;
};

/* Whether a request passes filter f (NULL passes everything). */
bool tn_alog_filter_pass(const struct tn_alog_filter *f, const struct tn_stream_info *si);

struct tn_access_log {
    const struct tn_alog_filter *filter; /* NULL: every request is logged */
    enum tn_access_log_sink sink;
    const char *path;   /* FILE */
    const char *format; /* text format; NULL for Envoy's default format */
    int json;           /* the format is json_format (kept as JSON text in `format`) */
    /* what tn_alog_format runs; never NULL once compiled */
    const struct tn_alog_format *formatter;
};

/* Envoy's default access log format. */
#define TN_ALOG_DEFAULT_FORMAT                                                                                         \
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% "                 \
    "%RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "                 \
    "\"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" "                  \
    "\"%UPSTREAM_HOST%\"\n"

/* Compiles the access logs at `pb` into out[] (allocated from pool).
 * 0, or -1 with err set; `field` names the list in error paths. */
int tn_access_logs_compile(struct tn_pool *pool, Envoy__Config__Accesslog__V3__AccessLog **pb, size_t n,
                           struct tn_access_log **out, const char *field, struct tn_err *err);

/* --- formatting --------------------------------------------------------- */

/* Compiles a text format string (NULL: the default format) into *out,
 * allocated from pool. 0, or -1 with err set at the current path ("unknown
 * command operator %FOO%") and *out untouched. */
int tn_alog_format_compile(struct tn_pool *pool, const char *text, const struct tn_alog_format **out,
                           struct tn_err *err);

/* Compiles a json_format object (a google.protobuf.Struct whose string
 * values are format strings; nested objects, lists, numbers, bools and null
 * are kept) into *out, allocated from pool. Lines are one JSON object plus
 * "\n". 0, or -1 with err set (path down to the failing key). */
struct Google__Protobuf__Struct;
int tn_alog_format_compile_json(struct tn_pool *pool, const struct Google__Protobuf__Struct *obj,
                                const struct tn_alog_format **out, struct tn_err *err);

/* A byte buffer that lines are appended to, capped at `max` bytes. Start it
 * zeroed with max set; free(data) when done. */
struct tn_alog_buf {
    char *data;
    size_t len, cap, max;
};

/* Appends the line `f` makes of `si` to out (no NUL is added). Returns true;
 * false when the line would take out past max or memory ran out, leaving
 * out->len as it was. */
bool tn_alog_format(const struct tn_alog_format *f, const struct tn_stream_info *si, struct tn_alog_buf *out);

/* --- writing (on workers and the main thread) -------------------------------
 * Each thread that logs owns a tn_alog_writer on its loop: a line is
 * formatted into the writer's buffer for that log, and buffers go to their
 * files off the loop (libuv's thread pool), at 64 KiB or every second, so a
 * slow disk or a full stdout pipe never blocks a worker and no lock is taken
 * per request. Lines from one writer stay in order. */
struct tn_alog_writer;
struct uv_loop_s;

/* A writer for the thread running `loop`, NULL when out of memory. Its
 * timer is unreferenced: an idle writer does not keep the loop alive. Call
 * the functions below only on that loop's thread. */
struct tn_alog_writer *tn_alog_writer_new(struct uv_loop_s *loop);

/* Log rotation (SIGUSR1, POST /reopen_logs): every writer closes and
 * reopens its files before its next batch (within a second). Any thread. */
void tn_alog_reopen(void);

/* Formats one line of `log` for the request and queues it, when the
 * request passes the log's filter; never blocks.
 * Logs sharing a destination (the same path, stdout, stderr) share one
 * buffer and one fd, so their lines stay in order. A line that finds the
 * destination's buffers full (up to 4 MiB waiting on a slow disk or pipe) is
 * dropped and counted, with a warning the first time. `log` and `si` are
 * not kept past the call. */
void tn_alog_write(struct tn_alog_writer *w, const struct tn_access_log *log, const struct tn_stream_info *si);

/* Lines dropped so far (full buffers, out of memory, failed opens or writes). */
uint64_t tn_alog_writer_dropped(const struct tn_alog_writer *w);

/* Flushes what is queued, then closes the writer's handles and frees it
 * when they are closed (the loop must keep running until then: pending
 * writes keep it alive). No tn_alog_write after this. */
void tn_alog_writer_close(struct tn_alog_writer *w);

#endif
