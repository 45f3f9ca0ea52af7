/* Reference-counted byte blocks and slices of them: how bodies move.
 *
 * A socket read lands in a block; body bytes are passed on as slices
 * (block + range) that take a reference, so the upstream write, a mirror
 * copy and a cache insert share the same bytes and nothing is copied. Blocks
 * belong to one worker (plain counters); freed standard-size blocks go to a
 * per-thread free list, so steady traffic does not call malloc. */
#ifndef TN_SLICE_H
#define TN_SLICE_H

#include <stddef.h>

#define TN_BLOCK_SIZE (64 * 1024)

struct tn_block {
    unsigned refcnt;
    size_t cap;
    struct tn_block *next_free;
    /* A foreign block (cap 0) lends bytes it does not hold, e.g. a cache
     * entry's body: release runs instead of free when the last slice goes. */
    void (*release)(struct tn_block *b);
    void *owner;
    char data[];
};

struct tn_slice {
    struct tn_block *blk;
    const char *p;
    size_t len;
};

/* A block of at least `cap` bytes (TN_BLOCK_SIZE when cap is smaller) with
 * one reference; NULL when out of memory. */
struct tn_block *tn_block_new(size_t cap);

/* A foreign block for bytes `owner` keeps alive (one reference); release
 * frees the block (with free) and lets go of the owner. NULL when out of
 * memory. */
struct tn_block *tn_block_foreign(void *owner, void (*release)(struct tn_block *b));

static inline struct tn_block *tn_block_ref(struct tn_block *b)
{
    b->refcnt++;
    return b;
}

void tn_block_unref(struct tn_block *b);

/* Frees all but `keep` blocks of this thread's free list (after a burst). */
void tn_block_cache_trim(unsigned keep);

/* Frees this thread's free list (at thread exit). */
void tn_block_cache_drain(void);

/* A slice of b's bytes [p, p+len) taking a reference on b. */
static inline struct tn_slice tn_slice_of(struct tn_block *b, const char *p, size_t len)
{
    return (struct tn_slice){.blk = tn_block_ref(b), .p = p, .len = len};
}

static inline void tn_slice_release(struct tn_slice *s)
{
    if (s->blk)
        tn_block_unref(s->blk);
    s->blk = NULL;
}

/* A FIFO of slices (a ring that grows). */
struct tn_slices {
    struct tn_slice *v;
    size_t head, n, cap;
    size_t bytes;
};

void tn_slices_init(struct tn_slices *q);
/* Takes over s's reference. 0, or -1 when out of memory (s released). */
int tn_slices_push(struct tn_slices *q, struct tn_slice s);
/* Adds a reference for each slice of src to dst (src unchanged). */
int tn_slices_copy(struct tn_slices *dst, const struct tn_slices *src);
static inline struct tn_slice *tn_slices_at(struct tn_slices *q, size_t i)
{
    return &q->v[(q->head + i) % q->cap];
}
/* Removes the first slice, returning it with its reference. */
struct tn_slice tn_slices_shift(struct tn_slices *q);
void tn_slices_clear(struct tn_slices *q);
void tn_slices_dispose(struct tn_slices *q);

#endif
