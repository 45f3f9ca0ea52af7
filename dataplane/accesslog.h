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

#endif
