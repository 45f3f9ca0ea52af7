#include "cache/store.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#define MAX_STORES   16
#define PURGE_RING   64
#define CLAIMS       4096
#define CLAIM_PROBES 8
#define PURGE_TEXT   1024

/* What a purge removes. */
struct purge_match {
    bool all, any_host, prefix, by_key;
    uint64_t key_lo, key_hi;
    const char *host, *path;
    size_t host_len, path_len;
};

/* One recent purge, for fills that started before it (tn_cache_insert); a
 * host or path too long to keep makes it count as purging everything for
 * them (they are dropped, which is safe). */
struct purge_rec {
    _Atomic uint64_t gen; /* 0 while being written */
    struct purge_match m; /* host and path point into the record */
    char host[256], path[PURGE_TEXT];
};

struct tn_cache_store {
    char name[64];
    uint64_t max_bytes;
    size_t mask;
    struct tn_cache_entry *_Atomic *buckets;
    _Atomic uint64_t used, entries;
    _Atomic uint64_t inserts, evictions, purged, expired, insert_failed;
    _Atomic uint64_t purge_gen;
    atomic_bool has_dead; /* something was killed since the last sweep */
    atomic_bool over;     /* an insert found the store full */
    struct purge_rec ring[PURGE_RING];
    _Atomic uint64_t claims[CLAIMS];
    /* main thread */
    size_t cursor;          /* eviction sampling position */
    uint64_t pending_bytes; /* unlinked, not yet freed */
    uint64_t last_expiry_sweep_ms;
};

static struct tn_cache_store *stores[MAX_STORES];
static size_t n_stores;

/* --- quiescent-state-based reclamation ------------------------------------------ */

static struct {
    _Atomic uint64_t seen; /* the epoch this reader last announced; UINT64_MAX: offline */
    atomic_bool taken;
    char pad[64 - sizeof(uint64_t) - sizeof(atomic_bool)];
} readers[TN_CACHE_MAX_READERS];
static _Atomic uint64_t epoch = 1;
static struct tn_cache_entry *retired; /* main thread: unlinked, waiting for readers */
static void (*waker)(void *);
static void *waker_arg;
static void (*kicker)(void *);
static void *kicker_arg;

int tn_cache_reader_register(void)
{
    for (int i = 0; i < TN_CACHE_MAX_READERS; i++) {
        bool f = false;
        if (atomic_compare_exchange_strong(&readers[i].taken, &f, true)) {
            atomic_store(&readers[i].seen, atomic_load(&epoch));
            return i;
        }
    }
    return -1;
}

void tn_cache_quiescent(int slot)
{
    uint64_t e = atomic_load_explicit(&epoch, memory_order_acquire);
    if (slot >= 0 && atomic_load_explicit(&readers[slot].seen, memory_order_relaxed) != e)
        atomic_store_explicit(&readers[slot].seen, e, memory_order_release);
}

void tn_cache_reader_unregister(int slot)
{
    if (slot < 0)
        return;
    atomic_store_explicit(&readers[slot].seen, UINT64_MAX, memory_order_release);
    atomic_store(&readers[slot].taken, false);
}

void tn_cache_set_waker(void (*wake)(void *arg), void *arg)
{
    waker = wake, waker_arg = arg;
}

void tn_cache_set_kicker(void (*kick)(void *arg), void *arg)
{
    kicker = kick, kicker_arg = arg;
}

static uint64_t min_seen(void)
{
    uint64_t m = UINT64_MAX;
    for (int i = 0; i < TN_CACHE_MAX_READERS; i++)
        if (atomic_load_explicit(&readers[i].taken, memory_order_relaxed)) {
            uint64_t s = atomic_load_explicit(&readers[i].seen, memory_order_acquire);
            m = s < m ? s : m;
        }
    return m;
}

/* --- entries ------------------------------------------------------------------- */

static void entry_free(struct tn_cache_entry *e)
{
    struct tn_cache_store *st = e->store;
    atomic_fetch_sub(&st->used, e->charge);
    if (atomic_load_explicit(&e->linked, memory_order_relaxed))
        atomic_fetch_sub(&st->entries, 1);
    free(e);
}

void tn_cache_entry_unref(struct tn_cache_entry *e)
{
    if (atomic_fetch_sub_explicit(&e->refcnt, 1, memory_order_acq_rel) == 1)
        entry_free(e);
}

void tn_cache_hash(const char *key, size_t len, uint64_t *lo, uint64_t *hi)
{
    XXH128_hash_t h = XXH3_128bits(key, len);
    *lo = h.low64, *hi = h.high64;
}

void tn_cache_key_hex(const struct tn_cache_entry *e, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v[2] = {e->hash_hi, e->hash_lo};
    for (int i = 0; i < 32; i++)
        out[i] = hex[(v[i / 16] >> (60 - 4 * (i % 16))) & 15];
    out[32] = '\0';
}

static int parse_hex(const char *hex, uint64_t *lo, uint64_t *hi)
{
    uint64_t v[2] = {0, 0};
    for (int i = 0; i < 32; i++) {
        char c = hex[i];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                                             : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                                                                    : 16u;
        if (d == 16)
            return -1;
        v[i / 16] = v[i / 16] << 4 | d;
    }
    if (hex[32] != '\0')
        return -1;
    *hi = v[0], *lo = v[1];
    return 0;
}

/* All values of request header `name` joined with ",", into buf (NULL when
 * absent); false when they do not fit. */
static bool request_value(const struct tn_header *req, size_t n, const char *name, size_t nl, char *buf, size_t cap,
                          const char **v, size_t *len)
{
    size_t at = 0;
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        if (req[i].name_len != nl || memcmp(req[i].name, name, nl) != 0)
            continue;
        if (found && at < cap)
            buf[at++] = ',';
        if (at + req[i].value_len > cap)
            return false;
        memcpy(buf + at, req[i].value, req[i].value_len);
        at += req[i].value_len;
        found = true;
    }
    *v = found ? buf : NULL;
    *len = at;
    return true;
}

static bool vary_matches(const struct tn_cache_entry *e, const struct tn_header *req, size_t n_req)
{
    char buf[4096];
    for (size_t i = 0; i < e->n_vary; i++) {
        const struct tn_header *h = &e->vary[i];
        const char *v;
        size_t len;
        if (!request_value(req, n_req, h->name, h->name_len, buf, sizeof(buf), &v, &len))
            return false;
        if ((v == NULL) != (h->value == NULL))
            return false;
        if (v && (len != h->value_len || memcmp(v, h->value, len) != 0))
            return false;
    }
    return true;
}

static bool same_variant(const struct tn_cache_entry *a, const struct tn_cache_entry *b)
{
    if (a->n_vary != b->n_vary)
        return false;
    for (size_t i = 0; i < a->n_vary; i++) {
        const struct tn_header *x = &a->vary[i], *y = &b->vary[i];
        if (x->name_len != y->name_len || memcmp(x->name, y->name, x->name_len) != 0)
            return false;
        if ((x->value == NULL) != (y->value == NULL))
            return false;
        if (x->value && (x->value_len != y->value_len || memcmp(x->value, y->value, x->value_len) != 0))
            return false;
    }
    return true;
}

static bool live(const struct tn_cache_entry *e, uint64_t now_ms)
{
    return !atomic_load_explicit(&e->dead, memory_order_acquire) && e->expire_ms > now_ms;
}

struct tn_cache_entry *tn_cache_lookup(struct tn_cache_store *st, const char *key, size_t key_len,
                                       const struct tn_header *req, size_t n_req, uint64_t now_ms)
{
    uint64_t lo, hi;
    tn_cache_hash(key, key_len, &lo, &hi);
    struct tn_cache_entry *e = atomic_load_explicit(&st->buckets[lo & st->mask], memory_order_acquire);
    for (; e; e = atomic_load_explicit(&e->next, memory_order_acquire)) {
        if (e->hash_lo != lo || e->hash_hi != hi || e->key_len != key_len || memcmp(e->key, key, key_len) != 0)
            continue;
        if (!live(e, now_ms) || !vary_matches(e, req, n_req))
            continue;
        tn_cache_entry_ref(e);
        atomic_store_explicit(&e->last_used_ms, now_ms, memory_order_relaxed);
        return e;
    }
    return NULL;
}

/* --- building and publishing ---------------------------------------------------- */

static void kick(struct tn_cache_store *st)
{
    atomic_store(&st->over, true);
    if (kicker)
        kicker(kicker_arg);
}

static char *put(char **at, const char *s, size_t n)
{
    char *d = *at;
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    *at += n + 1;
    return d;
}

struct tn_cache_entry *tn_cache_entry_new(struct tn_cache_store *st, const struct tn_cache_entry_spec *sp)
{
    size_t strings = sp->key_len + sp->host_len + sp->path_len + 3;
    for (size_t i = 0; i < sp->n_vary; i++)
        strings += sp->vary[i].name_len + sp->vary[i].value_len + 2;
    for (size_t i = 0; i < sp->n_headers; i++)
        strings += sp->headers[i].name_len + sp->headers[i].value_len + 2;
    size_t arrays = (sp->n_vary + sp->n_headers) * sizeof(struct tn_header);
    size_t size = sizeof(struct tn_cache_entry) + arrays + strings + sp->body_len;

    uint64_t used = atomic_load(&st->used);
    do {
        if (used + size > st->max_bytes) {
            atomic_fetch_add_explicit(&st->insert_failed, 1, memory_order_relaxed);
            kick(st);
            return NULL;
        }
    } while (!atomic_compare_exchange_weak(&st->used, &used, used + size));
    /* past 90 %: the main thread makes room before the store is full */
    if (used + size > st->max_bytes / 10 * 9 && !atomic_load_explicit(&st->over, memory_order_relaxed))
        kick(st);
    struct tn_cache_entry *e = malloc(size);
    if (e == NULL) {
        atomic_fetch_sub(&st->used, size);
        atomic_fetch_add_explicit(&st->insert_failed, 1, memory_order_relaxed);
        return NULL;
    }
    memset(e, 0, sizeof(*e));
    atomic_init(&e->refcnt, 1);
    e->store = st;
    e->charge = size;
    e->expire_ms = sp->expire_ms;
    e->inserted_ms = sp->now_ms;
    atomic_init(&e->last_used_ms, sp->now_ms);
    e->meta = *sp->meta;
    tn_cache_hash(sp->key, sp->key_len, &e->hash_lo, &e->hash_hi);

    struct tn_header *hv = (struct tn_header *)e->data;
    char *at = e->data + arrays;
    e->key = put(&at, sp->key, sp->key_len), e->key_len = sp->key_len;
    e->host = put(&at, sp->host, sp->host_len), e->host_len = sp->host_len;
    e->path = put(&at, sp->path, sp->path_len), e->path_len = sp->path_len;
    for (size_t i = 0; i < sp->n_vary; i++) {
        hv[i].name = put(&at, sp->vary[i].name, sp->vary[i].name_len);
        hv[i].name_len = sp->vary[i].name_len;
        hv[i].value = sp->vary[i].value ? put(&at, sp->vary[i].value, sp->vary[i].value_len) : (at++, NULL);
        hv[i].value_len = sp->vary[i].value ? sp->vary[i].value_len : 0;
    }
    e->vary = hv, e->n_vary = sp->n_vary;
    struct tn_header *hh = hv + sp->n_vary;
    for (size_t i = 0; i < sp->n_headers; i++) {
        hh[i].name = put(&at, sp->headers[i].name, sp->headers[i].name_len);
        hh[i].name_len = sp->headers[i].name_len;
        hh[i].value = put(&at, sp->headers[i].value, sp->headers[i].value_len);
        hh[i].value_len = sp->headers[i].value_len;
    }
    e->headers = hh, e->n_headers = sp->n_headers;
    e->body = at;
    e->body_len = sp->body_len;
    return e;
}

uint64_t tn_cache_purge_gen(struct tn_cache_store *st)
{
    return atomic_load(&st->purge_gen);
}

static bool purge_matches(const struct purge_match *p, const struct tn_cache_entry *e)
{
    if (p->all)
        return true;
    if (p->by_key)
        return p->key_lo == e->hash_lo && p->key_hi == e->hash_hi;
    if (!p->any_host && (p->host_len != e->host_len || memcmp(p->host, e->host, p->host_len) != 0))
        return false;
    if (p->prefix)
        return e->path_len >= p->path_len && memcmp(e->path, p->path, p->path_len) == 0;
    return e->path_len == p->path_len && memcmp(e->path, p->path, p->path_len) == 0;
}

/* Whether a purge after generation `since` (up to now) covers e; true also
 * when that cannot be known (the ring moved on, a record is being written). */
static bool purged_since(struct tn_cache_store *st, uint64_t since, const struct tn_cache_entry *e)
{
    uint64_t now = atomic_load(&st->purge_gen);
    if (now == since)
        return false;
    if (now - since > PURGE_RING)
        return true;
    for (uint64_t g = since + 1; g <= now; g++) {
        struct purge_rec *p = &st->ring[g % PURGE_RING];
        if (atomic_load_explicit(&p->gen, memory_order_acquire) != g)
            return true;
        /* a seqlock read: copy, then check the record was not rewritten */
        char host[sizeof(p->host)], path[sizeof(p->path)];
        struct purge_match m = p->m;
        if (m.host_len > sizeof(host) || m.path_len > sizeof(path))
            return true;
        memcpy(host, p->host, m.host_len);
        memcpy(path, p->path, m.path_len);
        m.host = host, m.path = path;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&p->gen, memory_order_relaxed) != g || purge_matches(&m, e))
            return true;
    }
    return false;
}

bool tn_cache_insert(struct tn_cache_entry *e, uint64_t purge_gen)
{
    struct tn_cache_store *st = e->store;
    if (purged_since(st, purge_gen, e)) {
        tn_cache_entry_unref(e);
        return false;
    }
    struct tn_cache_entry *_Atomic *b = &st->buckets[e->hash_lo & st->mask];
    /* older entries for this key and variant are replaced */
    for (struct tn_cache_entry *o = atomic_load(b); o; o = atomic_load(&o->next))
        if (o->hash_lo == e->hash_lo && o->hash_hi == e->hash_hi && o->key_len == e->key_len &&
            memcmp(o->key, e->key, e->key_len) == 0 && same_variant(o, e))
            tn_cache_kill(o);
    atomic_store_explicit(&e->linked, true, memory_order_relaxed);
    atomic_fetch_add(&st->entries, 1);
    struct tn_cache_entry *head = atomic_load(b);
    do
        atomic_store_explicit(&e->next, head, memory_order_relaxed);
    while (!atomic_compare_exchange_weak(b, &head, e));
    atomic_fetch_add_explicit(&st->inserts, 1, memory_order_relaxed);
    /* a purge that ran while this was published: it may have walked past */
    if (purged_since(st, purge_gen, e))
        tn_cache_kill(e);
    return true;
}

void tn_cache_kill(struct tn_cache_entry *e)
{
    bool was = false;
    if (atomic_compare_exchange_strong(&e->dead, &was, true))
        atomic_store(&e->store->has_dead, true);
}

bool tn_cache_fill_claim(struct tn_cache_store *st, uint64_t lo, bool *busy)
{
    uint64_t v = lo | 1;
    size_t at = (size_t)(lo >> 1) % CLAIMS;
    *busy = false;
    /* every claimer of a key probes the same slots in the same order and
     * stops at the first free one, so two of them meet there */
    for (size_t i = 0; i < CLAIM_PROBES; i++) {
        _Atomic uint64_t *slot = &st->claims[(at + i) % CLAIMS];
        uint64_t have = atomic_load(slot);
        if (have == 0 && atomic_compare_exchange_strong(slot, &have, v))
            return true;
        if (have == v) {
            *busy = true;
            return false;
        }
    }
    return false;
}

void tn_cache_fill_release(struct tn_cache_store *st, uint64_t lo)
{
    uint64_t v = lo | 1;
    size_t at = (size_t)(lo >> 1) % CLAIMS;
    for (size_t i = 0; i < CLAIM_PROBES; i++) {
        uint64_t want = v;
        if (atomic_compare_exchange_strong(&st->claims[(at + i) % CLAIMS], &want, 0))
            return;
    }
}

/* --- purging ----------------------------------------------------------------------- */

/* Announces a purge to fills under way (the ring), then marks the entries
 * it covers dead: in every bucket, or only in the bucket of key_hash when
 * not NULL (all the entries it covers are there). */
static size_t purge_run(struct tn_cache_store *st, const struct purge_match *m, const uint64_t *key_hash)
{
    uint64_t gen = atomic_fetch_add(&st->purge_gen, 1) + 1;
    struct purge_rec *p = &st->ring[gen % PURGE_RING];
    atomic_store_explicit(&p->gen, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    p->m = *m;
    if (m->host_len > sizeof(p->host) || m->path_len > sizeof(p->path)) {
        p->m = (struct purge_match){.all = true};
    } else {
        if (m->host_len)
            memcpy(p->host, m->host, m->host_len);
        if (m->path_len)
            memcpy(p->path, m->path, m->path_len);
    }
    atomic_store_explicit(&p->gen, gen, memory_order_release);

    size_t n = 0, first = key_hash ? (size_t)(*key_hash & st->mask) : 0;
    size_t last = key_hash ? first : st->mask;
    for (size_t b = first; b <= last; b++)
        for (struct tn_cache_entry *e = atomic_load_explicit(&st->buckets[b], memory_order_acquire); e;
             e = atomic_load_explicit(&e->next, memory_order_acquire)) {
            if (atomic_load_explicit(&e->dead, memory_order_relaxed) || !purge_matches(m, e))
                continue;
            bool was = false;
            if (atomic_compare_exchange_strong(&e->dead, &was, true))
                n++;
        }
    if (n) {
        atomic_store(&st->has_dead, true);
        atomic_fetch_add(&st->purged, n);
    }
    return n;
}

size_t tn_cache_purge(struct tn_cache_store *st, const char *host, size_t host_len, const char *path, size_t path_len,
                      bool prefix)
{
    struct purge_match m = {.any_host = host == NULL, .prefix = prefix, .host = host, .host_len = host ? host_len : 0,
                            .path = path, .path_len = path_len};
    return purge_run(st, &m, NULL);
}

size_t tn_cache_purge_uri(struct tn_cache_store *st, const char *key, size_t key_len, const char *host, size_t host_len,
                          const char *path, size_t path_len)
{
    struct purge_match m = {.host = host, .host_len = host_len, .path = path, .path_len = path_len};
    uint64_t lo, hi;
    if (key == NULL)
        return purge_run(st, &m, NULL);
    tn_cache_hash(key, key_len, &lo, &hi);
    return purge_run(st, &m, &lo);
}

size_t tn_cache_purge_key(struct tn_cache_store *st, const char *hex)
{
    struct purge_match m = {.by_key = true};
    if (parse_hex(hex, &m.key_lo, &m.key_hi))
        return 0;
    return purge_run(st, &m, NULL);
}

size_t tn_cache_purge_all(struct tn_cache_store *st)
{
    struct purge_match m = {.all = true};
    return purge_run(st, &m, NULL);
}

struct tn_cache_entry *tn_cache_find_key(struct tn_cache_store *st, const char *hex)
{
    uint64_t lo, hi;
    if (parse_hex(hex, &lo, &hi))
        return NULL;
    for (struct tn_cache_entry *e = atomic_load(&st->buckets[lo & st->mask]); e; e = atomic_load(&e->next))
        if (e->hash_lo == lo && e->hash_hi == hi && !atomic_load(&e->dead)) {
            tn_cache_entry_ref(e);
            return e;
        }
    return NULL;
}

/* --- maintenance (main thread) ------------------------------------------------------- */

/* Takes e out of its chain (only this thread unlinks; workers only push at
 * the head) and queues it for freeing. */
static void unlink_entry(struct tn_cache_store *st, struct tn_cache_entry *_Atomic *b, struct tn_cache_entry *e)
{
    struct tn_cache_entry *next = atomic_load(&e->next), *head = e;
    if (!atomic_compare_exchange_strong(b, &head, next)) {
        struct tn_cache_entry *p = head;
        while (atomic_load(&p->next) != e)
            p = atomic_load(&p->next);
        atomic_store(&p->next, next);
    }
    atomic_store(&e->dead, true);
    e->retire_epoch = atomic_fetch_add(&epoch, 1) + 1;
    e->retired_next = retired;
    retired = e;
    st->pending_bytes += e->charge;
}

/* Unlinks every dead entry, and the expired ones when `expired`. */
static void sweep(struct tn_cache_store *st, uint64_t now_ms, bool expired)
{
    for (size_t i = 0; i <= st->mask; i++) {
        struct tn_cache_entry *_Atomic *b = &st->buckets[i];
        struct tn_cache_entry *e = atomic_load(b);
        while (e) {
            struct tn_cache_entry *next = atomic_load(&e->next);
            bool dead = atomic_load(&e->dead), old = expired && e->expire_ms <= now_ms;
            if (dead || old) {
                if (old && !dead)
                    atomic_fetch_add_explicit(&st->expired, 1, memory_order_relaxed);
                unlink_entry(st, b, e);
            }
            e = next;
        }
    }
}

/* Evicts the least recently used of samples of live entries until the
 * store is under 80 % of its size (counting what waits to be freed as gone). */
static void evict(struct tn_cache_store *st)
{
    uint64_t low = st->max_bytes / 10 * 8;
    size_t guard = 0;
    while (atomic_load(&st->used) - st->pending_bytes > low && guard++ < 1000000) {
        struct tn_cache_entry *best = NULL, *_Atomic *best_b = NULL;
        size_t seen = 0, scanned = 0;
        while (seen < 16 && scanned <= st->mask) {
            struct tn_cache_entry *_Atomic *b = &st->buckets[st->cursor];
            for (struct tn_cache_entry *e = atomic_load(b); e; e = atomic_load(&e->next)) {
                if (atomic_load(&e->dead))
                    continue;
                seen++;
                if (best == NULL || atomic_load_explicit(&e->last_used_ms, memory_order_relaxed) <
                                        atomic_load_explicit(&best->last_used_ms, memory_order_relaxed))
                    best = e, best_b = b;
            }
            st->cursor = (st->cursor + 1) & st->mask;
            scanned++;
        }
        if (best == NULL)
            break;
        atomic_fetch_add_explicit(&st->evictions, 1, memory_order_relaxed);
        unlink_entry(st, best_b, best);
    }
}

static void reclaim(void)
{
    uint64_t m = min_seen();
    struct tn_cache_entry **pp = &retired;
    while (*pp) {
        struct tn_cache_entry *e = *pp;
        if (e->retire_epoch <= m) {
            *pp = e->retired_next;
            e->store->pending_bytes -= e->charge;
            tn_cache_entry_unref(e); /* the table's reference */
        } else {
            pp = &e->retired_next;
        }
    }
    if (retired && waker)
        waker(waker_arg); /* idle workers: announce, so these can go */
}

bool tn_cache_frees_waiting(void)
{
    return retired != NULL;
}

void tn_cache_maintain(uint64_t now_ms)
{
    for (size_t i = 0; i < n_stores; i++) {
        struct tn_cache_store *st = stores[i];
        bool expiry = now_ms - st->last_expiry_sweep_ms >= 1000;
        bool dead = atomic_exchange(&st->has_dead, false);
        if (dead || expiry) {
            sweep(st, now_ms, expiry);
            if (expiry)
                st->last_expiry_sweep_ms = now_ms;
        }
        bool over = atomic_exchange(&st->over, false);
        if (over || atomic_load(&st->used) - st->pending_bytes > st->max_bytes / 10 * 9)
            evict(st);
    }
    reclaim();
}

/* --- stores ------------------------------------------------------------------------- */

struct tn_cache_store *tn_cache_store_get(const char *name, uint64_t max_bytes)
{
    for (size_t i = 0; i < n_stores; i++)
        if (strcmp(stores[i]->name, name) == 0) {
            if (max_bytes > stores[i]->max_bytes)
                stores[i]->max_bytes = max_bytes;
            return stores[i];
        }
    if (n_stores == MAX_STORES || strlen(name) >= sizeof(stores[0]->name))
        return NULL;
    struct tn_cache_store *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    /* about one bucket per 4 KiB of room, 1 Ki .. 1 Mi buckets */
    size_t n = 1024;
    while (n < (1u << 20) && (uint64_t)n * 4096 < max_bytes)
        n <<= 1;
    st->buckets = calloc(n, sizeof(*st->buckets));
    if (st->buckets == NULL) {
        free(st);
        return NULL;
    }
    st->mask = n - 1;
    st->max_bytes = max_bytes;
    strcpy(st->name, name);
    stores[n_stores++] = st;
    return st;
}

void tn_cache_stores_free(void)
{
    for (size_t i = 0; i < n_stores; i++) {
        struct tn_cache_store *st = stores[i];
        for (size_t b = 0; b <= st->mask; b++) {
            struct tn_cache_entry *e = atomic_load(&st->buckets[b]);
            while (e) {
                struct tn_cache_entry *next = atomic_load(&e->next);
                tn_cache_entry_unref(e);
                e = next;
            }
        }
    }
    while (retired) {
        struct tn_cache_entry *e = retired;
        retired = e->retired_next;
        tn_cache_entry_unref(e);
    }
    for (size_t i = 0; i < n_stores; i++) {
        free(stores[i]->buckets);
        free(stores[i]);
    }
    n_stores = 0;
}

void tn_cache_store_totals(const struct tn_cache_store *st, struct tn_cache_totals *o)
{
    o->bytes = atomic_load(&st->used);
    o->entries = atomic_load(&st->entries);
    o->max_bytes = st->max_bytes;
    o->inserts = atomic_load(&st->inserts);
    o->evictions = atomic_load(&st->evictions);
    o->purged = atomic_load(&st->purged);
    o->expired = atomic_load(&st->expired);
    o->insert_failed = atomic_load(&st->insert_failed);
}

void tn_cache_stores_each(void (*fn)(void *arg, const char *name, struct tn_cache_store *st), void *arg)
{
    for (size_t i = 0; i < n_stores; i++)
        fn(arg, stores[i]->name, stores[i]);
}
