#include "dataplane/core/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tn_buf_init(struct tn_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void tn_buf_dispose(struct tn_buf *b)
{
    free(b->data);
    tn_buf_init(b);
}

static void reserve(struct tn_buf *b, size_t n)
{
    if (b->len + n + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        abort(); /* config-time text only; out of memory here is not recoverable */
    b->data = p;
    b->cap = cap;
}

void tn_buf_add(struct tn_buf *b, const void *p, size_t n)
{
    reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void tn_buf_adds(struct tn_buf *b, const char *s)
{
    tn_buf_add(b, s, strlen(s));
}

void tn_buf_addc(struct tn_buf *b, char c)
{
    tn_buf_add(b, &c, 1);
}

void tn_buf_printf(struct tn_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}
