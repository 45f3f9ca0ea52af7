/* Access log configuration (envoy.config.accesslog.v3.AccessLog): where each
 * log goes. The formatter and writers arrive with the observability issue. */
#ifndef TN_ACCESSLOG_H
#define TN_ACCESSLOG_H

#include <stddef.h>

#include "dataplane/err.h"
#include "dataplane/pool.h"
#include "envoy/config/accesslog/v3/accesslog.pb-c.h"

enum tn_access_log_sink {
    TN_ACCESS_LOG_FILE = 0,
    TN_ACCESS_LOG_STDOUT,
    TN_ACCESS_LOG_STDERR,
};

struct tn_access_log {
    enum tn_access_log_sink sink;
    const char *path;   /* FILE */
    const char *format; /* text format; NULL for Envoy's default format */
    int json;           /* the format is json_format (kept as JSON text in `format`) */
};

/* Compiles the access logs at `pb` into out[] (allocated from pool).
 * 0, or -1 with err set; `field` names the list in error paths. */
int tn_access_logs_compile(struct tn_pool *pool, Envoy__Config__Accesslog__V3__AccessLog **pb, size_t n,
                           struct tn_access_log **out, const char *field, struct tn_err *err);

/* --- writing (on workers and the main thread) -------------------------------
 * Each thread that logs owns a tn_alog_writer on its loop: a line is
 * formatted into the writer's buffer for that log, and buffers go to their
 * files off the loop (libuv's thread pool), at 64 KiB or every second, so a
 * slow disk or a full stdout pipe never blocks a worker and no lock is taken
 * per request. Lines from one writer stay in order. */
struct tn_stream_info;
struct tn_alog_writer;
struct uv_loop_s;

/* A writer for the thread running `loop`, NULL when out of memory. */
struct tn_alog_writer *tn_alog_writer_new(struct uv_loop_s *loop);

/* Formats one line of `log` for the request and queues it. */
void tn_alog_write(struct tn_alog_writer *w, const struct tn_access_log *log, const struct tn_stream_info *si);

/* Flushes what is queued, then closes the writer's handles and frees it
 * when they are closed (the loop must keep running until then). */
void tn_alog_writer_close(struct tn_alog_writer *w);

#endif
