#include "dataplane/core/pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_BYTES 16384

struct tn_pool_chunk {
    struct tn_pool_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

struct tn_pool_cleanup {
    struct tn_pool_cleanup *next;
    void (*fn)(void *);
    void *arg;
};

void tn_pool_init(struct tn_pool *pool)
{
    pool->chunks = NULL;
    pool->cleanups = NULL;
    pool->chunk = CHUNK_BYTES;
}

void tn_pool_init_small(struct tn_pool *pool)
{
    tn_pool_init(pool);
    pool->chunk = 512;
}

void tn_pool_dispose(struct tn_pool *pool)
{
    /* Cleanups live in the chunks: run them all before freeing memory. */
    for (struct tn_pool_cleanup *c = pool->cleanups; c != NULL; c = c->next)
        c->fn(c->arg);
    pool->cleanups = NULL;
    while (pool->chunks != NULL) {
        struct tn_pool_chunk *next = pool->chunks->next;
        free(pool->chunks);
        pool->chunks = next;
    }
}

void *tn_pool_alloc(struct tn_pool *pool, size_t n)
{
    const size_t align = sizeof(max_align_t);
    if (n > SIZE_MAX - align)
        return NULL;
    n = (n + align - 1) / align * align;
    struct tn_pool_chunk *ch = pool->chunks;
    if (ch == NULL || ch->cap - ch->used < n) {
        size_t want = pool->chunk ? pool->chunk : CHUNK_BYTES;
        size_t cap = n > want ? n : want;
        ch = malloc(sizeof(*ch) + cap);
        if (ch == NULL)
            return NULL;
        if (want < CHUNK_BYTES)
            pool->chunk = want * 2;
        ch->used = 0;
        ch->cap = cap;
        if (n > CHUNK_BYTES / 4 && pool->chunks != NULL) {
            /* A big block gets its own chunk behind the current one, so the
             * current chunk's free space is not thrown away. */
            ch->next = pool->chunks->next;
            pool->chunks->next = ch;
        } else {
            ch->next = pool->chunks;
            pool->chunks = ch;
        }
    }
    void *p = (char *)ch->data + ch->used;
    ch->used += n;
    memset(p, 0, n);
    return p;
}

char *tn_pool_strndup(struct tn_pool *pool, const char *s, size_t n)
{
    char *p = tn_pool_alloc(pool, n + 1);
    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

char *tn_pool_strdup(struct tn_pool *pool, const char *s)
{
    return tn_pool_strndup(pool, s, strlen(s));
}

int tn_pool_on_dispose(struct tn_pool *pool, void (*fn)(void *), void *arg)
{
    struct tn_pool_cleanup *c = tn_pool_alloc(pool, sizeof(*c));
    if (c == NULL)
        return -1;
    c->fn = fn;
    c->arg = arg;
    c->next = pool->cleanups;
    pool->cleanups = c;
    return 0;
}
