/* A memory pool: many small allocations freed together (h2o's mem pool).
 *
 * Compiled config objects take all their pieces from one pool, so dropping
 * the last reference frees the object in one call; resources that are not
 * memory (PCRE2 codes) register a cleanup that runs at dispose. */
#ifndef TN_POOL_H
#define TN_POOL_H

#include <stddef.h>

struct tn_pool_chunk;
struct tn_pool_cleanup;

struct tn_pool {
    struct tn_pool_chunk *chunks;
    struct tn_pool_cleanup *cleanups;
    size_t chunk; /* the next chunk's size */
};

/* Chunks of 16 KiB: a request's pool, a configuration's. */
void tn_pool_init(struct tn_pool *pool);

/* Chunks from 512 bytes, doubling to 16 KiB: for objects made by the
 * thousand (a control plane's clusters and their endpoint sets), most of
 * which need far less than a big chunk. */
void tn_pool_init_small(struct tn_pool *pool);

/* Runs the cleanups (last registered first) and frees all memory. */
void tn_pool_dispose(struct tn_pool *pool);

/* Zeroed, max_align_t-aligned memory; NULL only when malloc fails. */
void *tn_pool_alloc(struct tn_pool *pool, size_t n);
char *tn_pool_strdup(struct tn_pool *pool, const char *s);
char *tn_pool_strndup(struct tn_pool *pool, const char *s, size_t n);

/* Registers fn(arg) to run at dispose; returns 0 or -1 (out of memory, fn not
 * registered and not called). */
int tn_pool_on_dispose(struct tn_pool *pool, void (*fn)(void *), void *arg);

#endif
