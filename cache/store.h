/* The cache's storage: one in-memory store per cache name, shared by every
 * worker, bounded in bytes, with no lock anywhere.
 *
 * Entries are immutable once published. Lookups walk a fixed hash table of
 * atomic chain pointers and take a reference on the entry they use, so a
 * hit streams from the entry for as long as it needs. Workers publish new
 * entries at the head of a chain with a compare-and-swap and mark old ones
 * dead with an atomic flag (purges, replacements): a dead entry is never
 * returned again, on any worker, from that instant. Only the main thread
 * unlinks entries (dead, expired, or evicted to stay within max_size_bytes:
 * the least recently used of a sample, as Redis approximates LRU), and frees
 * them once every worker has passed a quiescent point since (QSBR: each
 * worker announces one per loop iteration), so a lookup never touches freed
 * memory. Bytes are reserved before an entry is built: the store never holds
 * more than max_size_bytes.
 *
 * Concurrent misses for one key are coalesced with fill claims: the first
 * worker to claim a key fills it; the others poll for the entry for a
 * bounded time (cache/filter.c). */
#ifndef TN_CACHE_STORE_H
#define TN_CACHE_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/policy.h"
#include "dataplane/http/http.h"

#define TN_CACHE_MAX_READERS 128 /* threads that look entries up (workers) */

struct tn_cache_store;

/* One stored response. Everything but the atomics is written before the
 * entry is published and never changes after. */
struct tn_cache_entry {
    struct tn_cache_entry *_Atomic next; /* hash chain */
    struct tn_cache_entry *retired_next; /* main thread: waiting to be freed */
    atomic_uint refcnt;                  /* the table's reference and each user's */
    atomic_bool dead;                    /* purged or replaced: never returned again */
    atomic_bool linked;
    _Atomic uint64_t last_used_ms; /* for eviction (relaxed) */
    atomic_uint hits;
    uint64_t retire_epoch;
    struct tn_cache_store *store;
    uint64_t hash_lo, hash_hi; /* XXH3-128 of the key: bucket, X-Cache-Key */
    uint64_t expire_ms;        /* wall ms after which the entry is useless (stale window included) */
    uint64_t inserted_ms;
    size_t charge; /* bytes counted against the store */

    const char *key; /* the key text (host, path, key headers) */
    size_t key_len;
    const char *host; /* the Host the client sent (for purges) */
    size_t host_len;
    const char *path; /* the full path with query (for purges) */
    size_t path_len;
    /* the response's Vary: names (lower case) and the request's values */
    const struct tn_header *vary;
    size_t n_vary;

    struct tn_cache_meta meta;
    const struct tn_header *headers; /* response headers to replay */
    size_t n_headers;
    const char *body;
    size_t body_len;
    char data[];
};

/* The store named `name` ("" for the default), created with max_bytes the
 * first time; later calls with a larger max_bytes raise it. Main thread.
 * NULL when out of memory. Stores live until tn_cache_stores_free. */
struct tn_cache_store *tn_cache_store_get(const char *name, uint64_t max_bytes);
/* Frees every store (at exit, after the workers are gone). */
void tn_cache_stores_free(void);

/* --- readers (worker threads) ---------------------------------------------- */

/* A slot for the calling thread's quiescent announcements; -1 when all are
 * taken (that thread must not look entries up). Shared by every store. */
int tn_cache_reader_register(void);
/* The calling thread is between loop iterations and holds no entry pointer
 * it got without a reference. Cheap: call once per loop iteration. */
void tn_cache_quiescent(int slot);
/* The thread stops reading for good (its slot no longer holds back frees). */
void tn_cache_reader_unregister(int slot);
/* Called (on the main thread) when frees wait on idle readers: wake them so
 * they announce. Set by the cache's main_start hook (cache_server.c). */
void tn_cache_set_waker(void (*wake)(void *arg), void *arg);

/* The key's 128-bit hash. */
void tn_cache_hash(const char *key, size_t len, uint64_t *lo, uint64_t *hi);

/* The live entry for key whose Vary values match the request's headers,
 * with a reference taken (tn_cache_entry_unref when done), or NULL. Marks
 * it used at now_ms. Entries past expire_ms are not returned. */
struct tn_cache_entry *tn_cache_lookup(struct tn_cache_store *st, const char *key, size_t key_len,
                                       const struct tn_header *req, size_t n_req, uint64_t now_ms);

static inline void tn_cache_entry_ref(struct tn_cache_entry *e)
{
    atomic_fetch_add_explicit(&e->refcnt, 1, memory_order_relaxed);
}
void tn_cache_entry_unref(struct tn_cache_entry *e);

/* --- filling ---------------------------------------------------------------- */

/* What a new entry holds; strings are copied into it. */
struct tn_cache_entry_spec {
    const char *key, *host, *path;
    size_t key_len, host_len, path_len;
    const struct tn_header *vary; /* names and the request's values */
    size_t n_vary;
    const struct tn_cache_meta *meta;
    const struct tn_header *headers;
    size_t n_headers;
    size_t body_len;
    uint64_t expire_ms, now_ms;
};

/* Reserves room and builds an unpublished entry (one reference, the
 * caller's); the caller copies the body into e->body (writable until
 * published: (char *)e->body). NULL when the entry would take the store past
 * its size (eviction is started) or memory ran out. */
struct tn_cache_entry *tn_cache_entry_new(struct tn_cache_store *st, const struct tn_cache_entry_spec *spec);

/* The purge generation now: take it when a fill starts. */
uint64_t tn_cache_purge_gen(struct tn_cache_store *st);

/* Publishes e (taking over the caller's reference) unless a purge since
 * purge_gen matches it (then e is dropped: a fill that raced a purge must
 * not bring back what was purged). Older entries for the same key and Vary
 * values are marked dead. Returns true when published. */
bool tn_cache_insert(struct tn_cache_entry *e, uint64_t purge_gen);

/* Marks e dead (a replacement, or the origin said it is gone). */
void tn_cache_kill(struct tn_cache_entry *e);

/* Fill claims: true when the caller now fills the key (release it with
 * tn_cache_fill_release, whatever happens); false when another fill of it is
 * under way, or the claim table is full (then the caller goes upstream
 * without waiting). */
bool tn_cache_fill_claim(struct tn_cache_store *st, uint64_t hash_lo, bool *busy);
void tn_cache_fill_release(struct tn_cache_store *st, uint64_t hash_lo);

/* --- purging (any thread) ----------------------------------------------------- */

/* Marks dead every live entry whose host equals `host` (any host when NULL)
 * and whose path equals `path`, or starts with it when prefix; returns how
 * many. Walks the whole table. */
size_t tn_cache_purge(struct tn_cache_store *st, const char *host, size_t host_len, const char *path, size_t path_len,
                      bool prefix);
/* Invalidation (RFC 9111 4.4): tn_cache_purge of exactly host and path,
 * walking only the bucket of `key` when it is not NULL: the key every
 * entry for host and path has (when the key is made of them alone). */
size_t tn_cache_purge_uri(struct tn_cache_store *st, const char *key, size_t key_len, const char *host, size_t host_len,
                          const char *path, size_t path_len);
/* Marks dead the entry whose X-Cache-Key is `hex` (32 hex digits); returns
 * 1 or 0. */
size_t tn_cache_purge_key(struct tn_cache_store *st, const char *hex);
/* Marks every entry dead; returns how many. */
size_t tn_cache_purge_all(struct tn_cache_store *st);
/* The live entry with X-Cache-Key `hex`, referenced, or NULL. Main thread. */
struct tn_cache_entry *tn_cache_find_key(struct tn_cache_store *st, const char *hex);
/* Writes e's X-Cache-Key (32 hex digits + NUL) into out. */
void tn_cache_key_hex(const struct tn_cache_entry *e, char out[33]);

/* --- maintenance (main thread) ------------------------------------------------- */

/* Unlinks dead and expired entries, evicts to stay under the size, frees
 * what no worker can still see. Call periodically and when kicked. */
void tn_cache_maintain(uint64_t now_ms);
/* Whether unlinked entries wait for the workers to move on (then call
 * tn_cache_maintain again soon: they are freed once all have). */
bool tn_cache_frees_waiting(void);
/* Called (from any thread) when a store wants maintenance soon (it is over
 * its size). Set by the cache's main_start hook (cache_server.c). */
void tn_cache_set_kicker(void (*kick)(void *arg), void *arg);

/* --- numbers (any thread; cache.* stats and GET /cache) --------------------------- */

struct tn_cache_totals {
    uint64_t bytes, entries, max_bytes;
    uint64_t inserts, evictions, purged, expired, insert_failed;
};
void tn_cache_store_totals(const struct tn_cache_store *st, struct tn_cache_totals *out);
/* Calls fn for every store. */
void tn_cache_stores_each(void (*fn)(void *arg, const char *name, struct tn_cache_store *st), void *arg);

#endif
