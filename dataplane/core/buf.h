/* A growable byte buffer for building text (JSON, admin pages) off the hot path. */
#ifndef TN_BUF_H
#define TN_BUF_H

#include <stddef.h>

struct tn_buf {
    char *data; /* always NUL-terminated when len > 0 */
    size_t len;
    size_t cap;
};

void tn_buf_init(struct tn_buf *b);
void tn_buf_dispose(struct tn_buf *b);
void tn_buf_add(struct tn_buf *b, const void *p, size_t n);
void tn_buf_adds(struct tn_buf *b, const char *s);
void tn_buf_addc(struct tn_buf *b, char c);
void tn_buf_printf(struct tn_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
