/* Configuration errors that name the field they are about.
 *
 * A loader or compiler walks a config tree pushing one path segment per step
 * (".listeners", "[0]"); the first failure freezes "<path>: <reason>" into the
 * message. The path format is the one users see from Envoy:
 * static_resources.listeners[0].filter_chains[0].filters[0].typed_config... */
#ifndef TN_ERR_H
#define TN_ERR_H

#include <stddef.h>

#define TN_ERR_PATH_MAX 1024
#define TN_ERR_MSG_MAX 2048

struct tn_err {
    char path[TN_ERR_PATH_MAX];
    size_t path_len;
    char msg[TN_ERR_MSG_MAX];
    int failed;
    int line; /* 1-based source line of the failing node, 0 when unknown */
};

/* Resets err to "no error, empty path". */
void tn_err_init(struct tn_err *err);

/* Appends a segment to the path (".name", "[3]"); returns the previous length
 * to hand back to tn_err_pop. A path that outgrows the buffer is truncated. */
size_t tn_err_push(struct tn_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tn_err_pop(struct tn_err *err, size_t len);

/* Records "<path>: <reason>" unless an error is already recorded; returns -1
 * so callers can `return tn_err_fail(...)`. */
int tn_err_fail(struct tn_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
