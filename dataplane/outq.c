#include "dataplane/outq.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SLICES 8
#define FREE_MAX 256

struct wreq {
    uv_write_t req;
    struct tn_outq *q;
    size_t bytes;
    unsigned n;
    struct tn_slice s[MAX_SLICES];
    char pre[32], post[8];
    struct wreq *next_free;
};

static _Thread_local struct wreq *free_reqs;
static _Thread_local unsigned n_free;

static struct wreq *wreq_get(void)
{
    struct wreq *w = free_reqs;
    if (w) {
        free_reqs = w->next_free;
        n_free--;
        return w;
    }
    return malloc(sizeof(*w));
}

static void wreq_put(struct wreq *w)
{
    for (unsigned i = 0; i < w->n; i++)
        tn_slice_release(&w->s[i]);
    if (n_free < FREE_MAX) {
        w->next_free = free_reqs;
        free_reqs = w;
        n_free++;
    } else {
        free(w);
    }
}

void tn_outq_cache_drain(void)
{
    while (free_reqs) {
        struct wreq *w = free_reqs;
        free_reqs = w->next_free;
        free(w);
    }
    n_free = 0;
}

void tn_outq_init(struct tn_outq *q, uv_stream_t *stream, size_t high, void *data)
{
    memset(q, 0, sizeof(*q));
    q->stream = stream;
    q->high = high;
    q->low = high / 2;
    q->data = data;
}

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct tn_outq *q = w->q;
    q->inflight -= w->bytes;
    wreq_put(w);
    if (status < 0) {
        if (q->error == 0) {
            q->error = status;
            if (q->on_error && status != UV_ECANCELED)
                q->on_error(q, status);
        }
        return;
    }
    if (q->above && q->inflight <= q->low) {
        q->above = false;
        if (q->on_low)
            q->on_low(q);
    }
    if (q->inflight == 0 && q->on_empty)
        q->on_empty(q);
}

int tn_outq_write(struct tn_outq *q, const char *pre, size_t pre_len, struct tn_slice *s, unsigned n,
                  const char *post, size_t post_len)
{
    uv_buf_t bufs[MAX_SLICES + 2];
    unsigned nb = 0, i;
    struct wreq *w;
    int rc;

    if (q->error || n > MAX_SLICES || pre_len > sizeof(w->pre) || post_len > sizeof(w->post) ||
        (w = wreq_get()) == NULL) {
        rc = q->error ? q->error : UV_ENOMEM;
        goto fail;
    }
    w->q = q;
    w->n = n;
    w->bytes = pre_len + post_len;
    if (pre_len) {
        memcpy(w->pre, pre, pre_len);
        bufs[nb++] = uv_buf_init(w->pre, pre_len);
    }
    for (i = 0; i < n; i++) {
        w->s[i] = s[i];
        w->bytes += s[i].len;
        bufs[nb++] = uv_buf_init((char *)s[i].p, s[i].len);
    }
    if (post_len) {
        memcpy(w->post, post, post_len);
        bufs[nb++] = uv_buf_init(w->post, post_len);
    }
    if ((rc = uv_write(&w->req, q->stream, bufs, nb, on_written)) < 0) {
        wreq_put(w);
        return rc;
    }
    q->inflight += w->bytes;
    if (q->inflight > q->high)
        q->above = true;
    return 0;
fail:
    for (i = 0; i < n; i++)
        tn_slice_release(&s[i]);
    return rc;
}
