#include "dataplane/core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void tn_err_init(struct tn_err *err)
{
    memset(err, 0, sizeof(*err));
}

size_t tn_err_push(struct tn_err *err, const char *fmt, ...)
{
    size_t old = err->path_len;
    size_t room = sizeof(err->path) - old;
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(err->path + old, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    err->path_len = (size_t)n < room ? old + (size_t)n : sizeof(err->path) - 1;
    return old;
}

void tn_err_pop(struct tn_err *err, size_t len)
{
    err->path_len = len;
    err->path[len] = '\0';
}

int tn_err_fail(struct tn_err *err, const char *fmt, ...)
{
    char reason[TN_ERR_MSG_MAX / 2];
    va_list ap;

    if (err->failed)
        return -1;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    /* A leading '.' comes from the first pushed field; users read paths without it. */
    const char *p = err->path[0] == '.' ? err->path + 1 : err->path;
    if (*p)
        snprintf(err->msg, sizeof(err->msg), "%s: %s", p, reason);
    else
        snprintf(err->msg, sizeof(err->msg), "%s", reason);
    err->failed = 1;
    return -1;
}
