#include "dataplane/core/outq.h"

#include <stdlib.h>
#include <string.h>

#define MAX_BUFS 16
#define SMALL 256
#define FREE_MAX 256

struct wreq {
    uv_write_t req;
    struct tn_outq *q;
    size_t bytes;
    unsigned n_bufs, n_slices;
    size_t small_len;
    uv_buf_t bufs[MAX_BUFS];
    struct tn_slice s[MAX_BUFS];
    char small[SMALL];
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
    } else if ((w = malloc(sizeof(*w))) == NULL) {
        return NULL;
    }
    w->bytes = 0;
    w->n_bufs = w->n_slices = 0;
    w->small_len = 0;
    return w;
}

static void wreq_put(struct wreq *w)
{
    for (unsigned i = 0; i < w->n_slices; i++)
        tn_slice_release(&w->s[i]);
    if (n_free < FREE_MAX) {
        w->next_free = free_reqs;
        free_reqs = w;
        n_free++;
    } else {
        free(w);
    }
}

void tn_outq_cache_trim(unsigned keep)
{
    while (n_free > keep) {
        struct wreq *w = free_reqs;
        free_reqs = w->next_free;
        n_free--;
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

static void unlist(struct tn_outq *q)
{
    if (!q->queued)
        return;
    struct tn_outq **pp = &q->fl->list;
    while (*pp && *pp != q)
        pp = &(*pp)->next_flush;
    if (*pp)
        *pp = q->next_flush;
    q->queued = false;
}

static int submit(struct tn_outq *q, struct wreq *w)
{
    int rc = uv_write(&w->req, q->stream, w->bufs, w->n_bufs, on_written);
    if (rc < 0) {
        q->inflight -= w->bytes;
        wreq_put(w);
        if (q->error == 0)
            q->error = rc;
    }
    return rc;
}

void tn_outq_flush(struct tn_outq *q)
{
    struct wreq *w = q->pend;
    unlist(q);
    if (w == NULL)
        return;
    q->pend = NULL;
    if (submit(q, w) < 0 && q->on_error)
        q->on_error(q, q->error);
}

void tn_outq_dispose(struct tn_outq *q)
{
    unlist(q);
    if (q->pend) {
        q->inflight -= q->pend->bytes;
        wreq_put(q->pend);
        q->pend = NULL;
    }
}

/* Writes what the kernel takes at once without a write request: libuv
 * would re-arm the poll for every completed uv_write (an epoll_ctl per
 * write), which a proxy answering from memory does not need. Returns 1 when
 * everything went, 0 when the rest must be queued (w adjusted), <0 on error. */
static int try_write(struct tn_outq *q, struct wreq *w)
{
    int n = uv_try_write(q->stream, w->bufs, w->n_bufs);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
        return 0;
    if (n < 0)
        return n;
    size_t left = (size_t)n;
    unsigned i = 0;
    while (i < w->n_bufs && left >= w->bufs[i].len)
        left -= w->bufs[i++].len;
    if (i == w->n_bufs)
        return 1;
    w->bufs[i].base += left;
    w->bufs[i].len -= left;
    memmove(w->bufs, w->bufs + i, (w->n_bufs - i) * sizeof(w->bufs[0]));
    w->n_bufs -= i;
    return 0;
}

/* Submits q's gathered bytes at the end of a loop iteration, where calling
 * the queue's callbacks at once is safe. */
static void flush_now(struct tn_outq *q)
{
    struct wreq *w = q->pend;
    if (w == NULL)
        return;
    q->pend = NULL;
    int rc = try_write(q, w);
    if (rc == 0) {
        if (submit(q, w) < 0 && q->on_error)
            q->on_error(q, q->error);
        return;
    }
    /* written at once (rc 1) or failed: finish as libuv would */
    uv_write_t *req = &w->req;
    w->q = q;
    on_written(req, rc < 0 ? rc : 0);
}

static void on_check(uv_check_t *h)
{
    struct tn_outq_flusher *fl = h->data;
    uv_idle_stop(&fl->idle);
    while (fl->list) {
        struct tn_outq *q = fl->list;
        fl->list = q->next_flush;
        q->queued = false;
        flush_now(q);
    }
}

static void on_idle(uv_idle_t *h)
{
    (void)h;
}

int tn_outq_flusher_init(struct tn_outq_flusher *fl, uv_loop_t *loop)
{
    memset(fl, 0, sizeof(*fl));
    int rc = uv_check_init(loop, &fl->check);
    if (rc == 0)
        rc = uv_idle_init(loop, &fl->idle);
    if (rc)
        return rc;
    fl->check.data = fl->idle.data = fl;
    uv_unref((uv_handle_t *)&fl->check);
    return uv_check_start(&fl->check, on_check);
}

void tn_outq_flusher_close(struct tn_outq_flusher *fl)
{
    on_check(&fl->check);
    uv_close((uv_handle_t *)&fl->check, NULL);
    uv_close((uv_handle_t *)&fl->idle, NULL);
}

static int add_small(struct wreq *w, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (w->small_len + n > SMALL || w->n_bufs == MAX_BUFS)
        return -1;
    char *d = w->small + w->small_len;
    memcpy(d, p, n);
    w->small_len += n;
    /* merge with the previous buffer when it is the small area's tail */
    if (w->n_bufs && w->bufs[w->n_bufs - 1].base + w->bufs[w->n_bufs - 1].len == d)
        w->bufs[w->n_bufs - 1].len += n;
    else
        w->bufs[w->n_bufs++] = uv_buf_init(d, n);
    w->bytes += n;
    return 0;
}

static bool fits(const struct wreq *w, size_t pre_len, unsigned n, size_t post_len)
{
    return w->small_len + pre_len + post_len <= SMALL && w->n_bufs + n + 2 <= MAX_BUFS;
}

int tn_outq_write(struct tn_outq *q, const char *pre, size_t pre_len, struct tn_slice *s, unsigned n,
                  const char *post, size_t post_len)
{
    struct wreq *w = NULL;
    unsigned i;
    int rc;

    if (q->error || n + 2 > MAX_BUFS || pre_len + post_len > SMALL) {
        rc = q->error ? q->error : UV_EINVAL;
        goto fail;
    }
    if (q->pend && !fits(q->pend, pre_len, n, post_len)) {
        struct wreq *full = q->pend;
        q->pend = NULL;
        if ((rc = submit(q, full)) < 0)
            goto fail;
    }
    w = q->pend;
    if (w == NULL && (w = wreq_get()) == NULL) {
        rc = UV_ENOMEM;
        goto fail;
    }
    w->q = q;
    size_t before = w->bytes;
    add_small(w, pre, pre_len);
    for (i = 0; i < n; i++) {
        w->s[w->n_slices++] = s[i];
        w->bufs[w->n_bufs++] = uv_buf_init((char *)s[i].p, s[i].len);
        w->bytes += s[i].len;
    }
    add_small(w, post, post_len);
    q->inflight += w->bytes - before;
    if (q->inflight > q->high)
        q->above = true;
    if (q->fl == NULL) {
        return submit(q, w);
    }
    q->pend = w;
    if (!q->queued) {
        q->queued = true;
        q->next_flush = q->fl->list;
        q->fl->list = q;
        uv_idle_start(&q->fl->idle, on_idle);
    }
    return 0;
fail:
    for (i = 0; i < n; i++)
        tn_slice_release(&s[i]);
    return rc;
}

ssize_t tn_outq_copy(struct tn_outq *q, struct tn_block **blk, size_t *pos, const void *data, size_t n)
{
    struct tn_block *b = *blk;
    if (b == NULL || *pos + 1 > b->cap) {
        if (b)
            tn_block_unref(b);
        *blk = b = tn_block_new(TN_BLOCK_SIZE);
        *pos = 0;
        if (b == NULL)
            return -1;
    }
    if (n > b->cap - *pos)
        n = b->cap - *pos;
    memcpy(b->data + *pos, data, n);
    struct tn_slice sl = tn_slice_of(b, b->data + *pos, n);
    *pos += n;
    if (tn_outq_write(q, NULL, 0, &sl, 1, NULL, 0))
        return -1;
    return (ssize_t)n;
}

int tn_outq_write_from(struct tn_outq *q, const char *pre, size_t pre_len, struct tn_slices *src, size_t length)
{
    struct tn_slice v[8];
    do {
        unsigned k = 0;
        while (length && k < 8) {
            struct tn_slice *f = tn_slices_at(src, 0);
            if (f->len <= length) {
                v[k] = tn_slices_shift(src);
                length -= v[k++].len;
            } else {
                v[k++] = tn_slice_of(f->blk, f->p, length);
                f->p += length;
                f->len -= length;
                src->bytes -= length;
                length = 0;
            }
        }
        if (tn_outq_write(q, pre, pre_len, v, k, NULL, 0))
            return -1;
        pre_len = 0;
    } while (length);
    return 0;
}
