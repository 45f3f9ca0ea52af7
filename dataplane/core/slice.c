#include "dataplane/core/slice.h"

#include <stdlib.h>
#include <string.h>

#define FREE_MAX 64 /* standard blocks kept per thread: 4 MiB */

static _Thread_local struct tn_block *free_list;
static _Thread_local unsigned n_free;

struct tn_block *tn_block_new(size_t cap)
{
    struct tn_block *b;
    if (cap <= TN_BLOCK_SIZE && free_list) {
        b = free_list;
        free_list = b->next_free;
        n_free--;
    } else {
        if (cap < TN_BLOCK_SIZE)
            cap = TN_BLOCK_SIZE;
        if ((b = malloc(sizeof(*b) + cap)) == NULL)
            return NULL;
        b->cap = cap;
    }
    b->refcnt = 1;
    b->next_free = NULL;
    b->release = NULL;
    b->owner = NULL;
    return b;
}

struct tn_block *tn_block_foreign(void *owner, void (*release)(struct tn_block *b))
{
    struct tn_block *b = malloc(sizeof(*b));
    if (b == NULL)
        return NULL;
    b->refcnt = 1;
    b->cap = 0;
    b->next_free = NULL;
    b->release = release;
    b->owner = owner;
    return b;
}

void tn_block_unref(struct tn_block *b)
{
    if (--b->refcnt)
        return;
    if (b->release) {
        b->release(b);
        return;
    }
    if (b->cap == TN_BLOCK_SIZE && n_free < FREE_MAX) {
        b->next_free = free_list;
        free_list = b;
        n_free++;
        return;
    }
    free(b);
}

void tn_block_cache_trim(unsigned keep)
{
    while (n_free > keep) {
        struct tn_block *b = free_list;
        free_list = b->next_free;
        n_free--;
        free(b);
    }
}

void tn_block_cache_drain(void)
{
    while (free_list) {
        struct tn_block *b = free_list;
        free_list = b->next_free;
        free(b);
    }
    n_free = 0;
}

void tn_slices_init(struct tn_slices *q)
{
    memset(q, 0, sizeof(*q));
}

static int grow(struct tn_slices *q)
{
    size_t cap = q->cap ? q->cap * 2 : 8;
    struct tn_slice *v = malloc(cap * sizeof(*v));
    if (v == NULL)
        return -1;
    for (size_t i = 0; i < q->n; i++)
        v[i] = q->v[(q->head + i) % q->cap];
    free(q->v);
    q->v = v;
    q->cap = cap;
    q->head = 0;
    return 0;
}

int tn_slices_push(struct tn_slices *q, struct tn_slice s)
{
    if (q->n == q->cap && grow(q)) {
        tn_slice_release(&s);
        return -1;
    }
    q->v[(q->head + q->n) % q->cap] = s;
    q->n++;
    q->bytes += s.len;
    return 0;
}

int tn_slices_copy(struct tn_slices *dst, const struct tn_slices *src)
{
    for (size_t i = 0; i < src->n; i++) {
        const struct tn_slice *s = &src->v[(src->head + i) % src->cap];
        if (tn_slices_push(dst, tn_slice_of(s->blk, s->p, s->len)))
            return -1;
    }
    return 0;
}

struct tn_slice tn_slices_shift(struct tn_slices *q)
{
    struct tn_slice s = q->v[q->head];
    q->head = (q->head + 1) % q->cap;
    q->n--;
    q->bytes -= s.len;
    return s;
}

void tn_slices_clear(struct tn_slices *q)
{
    while (q->n) {
        struct tn_slice s = tn_slices_shift(q);
        tn_slice_release(&s);
    }
    q->head = 0;
}

void tn_slices_dispose(struct tn_slices *q)
{
    tn_slices_clear(q);
    free(q->v);
    memset(q, 0, sizeof(*q));
}
