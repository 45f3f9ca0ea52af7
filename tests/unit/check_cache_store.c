/* The cache store: lookups, variants, purges (also racing a fill), the size
 * bound with eviction, and reclamation that waits for every reader — then
 * the same under threads hammering it (run under ASan in CI). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cache/store.h"
#include "suites.h"

static struct tn_cache_meta meta;

#define H(n, v) {.name = n, .value = v, .name_len = sizeof(n) - 1, .value_len = (v) ? sizeof(v) - 1 : 0}

static struct tn_cache_entry *make(struct tn_cache_store *st, const char *host, const char *path,
                                   const struct tn_header *vary, size_t n_vary, const char *body, uint64_t expire)
{
    char key[512];
    snprintf(key, sizeof(key), "%s\n%s", host, path);
    struct tn_header hdrs[] = {H("content-type", "text/plain"), H("etag", "\"v1\"")};
    struct tn_cache_entry_spec sp = {
        .key = key, .key_len = strlen(key), .host = host, .host_len = strlen(host), .path = path,
        .path_len = strlen(path), .vary = vary, .n_vary = n_vary, .meta = &meta, .headers = hdrs, .n_headers = 2,
        .body_len = strlen(body), .expire_ms = expire, .now_ms = 1000};
    struct tn_cache_entry *e = tn_cache_entry_new(st, &sp);
    if (e)
        memcpy((char *)e->body, body, strlen(body));
    return e;
}

static struct tn_cache_entry *find(struct tn_cache_store *st, const char *host, const char *path,
                                   const struct tn_header *req, size_t n_req, uint64_t now)
{
    char key[512];
    snprintf(key, sizeof(key), "%s\n%s", host, path);
    return tn_cache_lookup(st, key, strlen(key), req, n_req, now);
}

static const char *body_of(struct tn_cache_entry *e)
{
    static char b[256];
    snprintf(b, sizeof(b), "%.*s", (int)e->body_len, e->body);
    tn_cache_entry_unref(e);
    return b;
}

static void teardown(void)
{
    tn_cache_stores_free();
}

START_TEST(insert_lookup_replace)
{
    struct tn_cache_store *st = tn_cache_store_get("t1", 1 << 20);
    ck_assert_ptr_eq(tn_cache_store_get("t1", 1000), st);
    ck_assert_ptr_null(find(st, "a.com", "/x", NULL, 0, 2000));
    uint64_t gen = tn_cache_purge_gen(st);
    ck_assert(tn_cache_insert(make(st, "a.com", "/x", NULL, 0, "one", 10000), gen));
    ck_assert_str_eq(body_of(find(st, "a.com", "/x", NULL, 0, 2000)), "one");
    ck_assert_ptr_null(find(st, "b.com", "/x", NULL, 0, 2000));
    ck_assert_ptr_null(find(st, "a.com", "/x", NULL, 0, 10000)); /* expired */
    /* a new entry for the key replaces the old at once */
    struct tn_cache_entry *old = find(st, "a.com", "/x", NULL, 0, 2000);
    ck_assert(tn_cache_insert(make(st, "a.com", "/x", NULL, 0, "two", 10000), gen));
    ck_assert_str_eq(body_of(find(st, "a.com", "/x", NULL, 0, 2000)), "two");
    ck_assert(atomic_load(&old->dead));
    ck_assert_str_eq(body_of(old), "one"); /* a holder still reads it */
    struct tn_cache_totals t;
    tn_cache_store_totals(st, &t);
    ck_assert_uint_eq(t.inserts, 2);
    ck_assert_uint_eq(t.entries, 2); /* the dead one waits for maintenance */
    tn_cache_maintain(3000);
    tn_cache_maintain(3000);
    tn_cache_store_totals(st, &t);
    ck_assert_uint_eq(t.entries, 1);
    char hex[33];
    struct tn_cache_entry *e = find(st, "a.com", "/x", NULL, 0, 2000);
    tn_cache_key_hex(e, hex);
    ck_assert_uint_eq(strlen(hex), 32);
    struct tn_cache_entry *k = tn_cache_find_key(st, hex);
    ck_assert_ptr_eq(k, e);
    tn_cache_entry_unref(k);
    tn_cache_entry_unref(e);
    ck_assert_ptr_null(tn_cache_find_key(st, "zz"));
    ck_assert_uint_eq(tn_cache_purge_key(st, hex), 1);
    ck_assert_ptr_null(find(st, "a.com", "/x", NULL, 0, 2000));
    ck_assert_uint_eq(tn_cache_purge_key(st, hex), 0);
}
END_TEST

START_TEST(variants)
{
    struct tn_cache_store *st = tn_cache_store_get("t2", 1 << 20);
    struct tn_header v_gzip[] = {H("accept-encoding", "gzip")};
    struct tn_header v_none[] = {{.name = "accept-encoding", .name_len = 15, .value = NULL}};
    uint64_t gen = tn_cache_purge_gen(st);
    ck_assert(tn_cache_insert(make(st, "a", "/v", v_gzip, 1, "gz", 10000), gen));
    ck_assert(tn_cache_insert(make(st, "a", "/v", v_none, 1, "plain", 10000), gen));
    struct tn_header rq_gzip[] = {H("user-agent", "x"), H("accept-encoding", "gzip")};
    struct tn_header rq_br[] = {H("accept-encoding", "br")};
    struct tn_header rq_two[] = {H("accept-encoding", "gzip"), H("accept-encoding", "br")};
    ck_assert_str_eq(body_of(find(st, "a", "/v", rq_gzip, 2, 2000)), "gz");
    ck_assert_str_eq(body_of(find(st, "a", "/v", NULL, 0, 2000)), "plain");
    ck_assert_ptr_null(find(st, "a", "/v", rq_br, 1, 2000));
    ck_assert_ptr_null(find(st, "a", "/v", rq_two, 2, 2000));
    /* replacing one variant leaves the other */
    ck_assert(tn_cache_insert(make(st, "a", "/v", v_gzip, 1, "gz2", 10000), gen));
    ck_assert_str_eq(body_of(find(st, "a", "/v", rq_gzip, 2, 2000)), "gz2");
    ck_assert_str_eq(body_of(find(st, "a", "/v", NULL, 0, 2000)), "plain");
}
END_TEST

START_TEST(purges)
{
    struct tn_cache_store *st = tn_cache_store_get("t3", 1 << 20);
    uint64_t gen = tn_cache_purge_gen(st);
    const char *paths[] = {"/a", "/a?x=1", "/ab", "/b"};
    for (int i = 0; i < 4; i++) {
        ck_assert(tn_cache_insert(make(st, "h1", paths[i], NULL, 0, "x", 10000), gen));
        ck_assert(tn_cache_insert(make(st, "h2", paths[i], NULL, 0, "x", 10000), gen));
    }
    ck_assert_uint_eq(tn_cache_purge(st, "h1", 2, "/a", 2, false), 1);
    ck_assert_ptr_null(find(st, "h1", "/a", NULL, 0, 2000));
    ck_assert_str_eq(body_of(find(st, "h1", "/a?x=1", NULL, 0, 2000)), "x");
    ck_assert_str_eq(body_of(find(st, "h2", "/a", NULL, 0, 2000)), "x");
    ck_assert_uint_eq(tn_cache_purge(st, "h1", 2, "/a", 2, false), 0);
    ck_assert_uint_eq(tn_cache_purge(st, NULL, 0, "/a", 2, true), 5); /* h1 /a?x=1 /ab, h2 /a /a?x=1 /ab */
    ck_assert_str_eq(body_of(find(st, "h2", "/b", NULL, 0, 2000)), "x");
    ck_assert_uint_eq(tn_cache_purge_all(st), 2);
    ck_assert_ptr_null(find(st, "h2", "/b", NULL, 0, 2000));
    struct tn_cache_totals t;
    tn_cache_store_totals(st, &t);
    ck_assert_uint_eq(t.purged, 8);
}
END_TEST

START_TEST(purge_racing_a_fill)
{
    struct tn_cache_store *st = tn_cache_store_get("t4", 1 << 20);
    /* a fill starts, a purge of its URL comes, the fill ends: nothing stored */
    uint64_t gen = tn_cache_purge_gen(st);
    struct tn_cache_entry *e = make(st, "h", "/p", NULL, 0, "stale", 10000);
    ck_assert_uint_eq(tn_cache_purge(st, "h", 1, "/p", 2, false), 0);
    ck_assert(!tn_cache_insert(e, gen));
    ck_assert_ptr_null(find(st, "h", "/p", NULL, 0, 2000));
    /* a purge of something else does not stop it */
    gen = tn_cache_purge_gen(st);
    e = make(st, "h", "/p", NULL, 0, "fresh", 10000);
    tn_cache_purge(st, "h", 1, "/other", 6, true);
    ck_assert(tn_cache_insert(e, gen));
    ck_assert_str_eq(body_of(find(st, "h", "/p", NULL, 0, 2000)), "fresh");
    /* too many purges since: unknown, so dropped */
    gen = tn_cache_purge_gen(st);
    e = make(st, "h", "/q", NULL, 0, "x", 10000);
    for (int i = 0; i < 100; i++)
        tn_cache_purge(st, "h", 1, "/zzz", 4, false);
    ck_assert(!tn_cache_insert(e, gen));
}
END_TEST

START_TEST(size_bound_and_reclaim)
{
    struct tn_cache_store *st = tn_cache_store_get("t5", 64 * 1024);
    int reader = tn_cache_reader_register();
    ck_assert_int_ge(reader, 0);
    char body[1000];
    memset(body, 'b', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    int stored = 0, failed = 0;
    for (int i = 0; i < 500; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/u%d", i);
        uint64_t gen = tn_cache_purge_gen(st);
        struct tn_cache_entry *e = make(st, "h", path, NULL, 0, body, 100000);
        if (e == NULL) {
            failed++;
            tn_cache_maintain(2000 + (uint64_t)i); /* the kick: evict, then free once the reader moved on */
            tn_cache_quiescent(reader);
            tn_cache_maintain(2000 + (uint64_t)i);
            continue;
        }
        stored += tn_cache_insert(e, gen);
        struct tn_cache_totals t;
        tn_cache_store_totals(st, &t);
        ck_assert_uint_le(t.bytes, 64 * 1024);
    }
    ck_assert_int_gt(stored, 100);
    ck_assert_int_gt(failed, 0);
    struct tn_cache_totals t;
    tn_cache_store_totals(st, &t);
    ck_assert_uint_gt(t.evictions, 100);
    /* the most recent ones are there */
    struct tn_cache_entry *last = find(st, "h", "/u499", NULL, 0, 3000);
    ck_assert_ptr_nonnull(last);
    tn_cache_entry_unref(last);

    /* a reader that has not announced holds frees back */
    uint64_t before = t.bytes;
    tn_cache_purge_all(st);
    tn_cache_maintain(5000);
    tn_cache_store_totals(st, &t);
    ck_assert_uint_eq(t.bytes, before);
    tn_cache_quiescent(reader);
    tn_cache_maintain(5000);
    tn_cache_store_totals(st, &t);
    ck_assert_uint_eq(t.bytes, 0);
    ck_assert_uint_eq(t.entries, 0);
    tn_cache_reader_unregister(reader);
}
END_TEST

/* Threads look up, insert and hold entries while the main thread purges and
 * maintains: under ASan a use after free or a leak fails the run. */
static struct tn_cache_store *hammer_st;
static atomic_bool hammer_stop;
static atomic_ulong hammer_hits;

static void *hammer(void *arg)
{
    int slot = tn_cache_reader_register();
    unsigned seed = (unsigned)(uintptr_t)arg;
    char body[600];
    memset(body, 'z', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    while (!atomic_load(&hammer_stop)) {
        for (int i = 0; i < 100; i++) {
            char path[32];
            seed = seed * 1103515245 + 12345;
            snprintf(path, sizeof(path), "/k%u", (seed >> 16) % 300);
            struct tn_cache_entry *e = find(hammer_st, "h", path, NULL, 0, 2000);
            if (e) {
                ck_assert_uint_eq(e->body_len, sizeof(body) - 1);
                ck_assert(e->body[0] == 'z' && e->body[e->body_len - 1] == 'z');
                atomic_fetch_add(&hammer_hits, 1);
                tn_cache_entry_unref(e);
            } else {
                uint64_t gen = tn_cache_purge_gen(hammer_st);
                struct tn_cache_entry *n = make(hammer_st, "h", path, NULL, 0, body, 100000);
                if (n)
                    tn_cache_insert(n, gen);
            }
        }
        tn_cache_quiescent(slot);
    }
    tn_cache_reader_unregister(slot);
    return NULL;
}

START_TEST(threads)
{
    hammer_st = tn_cache_store_get("t6", 96 * 1024);
    atomic_store(&hammer_stop, false);
    pthread_t t[3];
    for (uintptr_t i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, hammer, (void *)(i + 1));
    for (int round = 0; round < 300; round++) {
        if (round % 7 == 0)
            tn_cache_purge(hammer_st, NULL, 0, "/k1", 3, true);
        if (round % 50 == 0)
            tn_cache_purge_all(hammer_st);
        tn_cache_maintain(2000 + (uint64_t)round);
        struct tn_cache_totals tt;
        tn_cache_store_totals(hammer_st, &tt);
        ck_assert_uint_le(tt.bytes, 96 * 1024);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&hammer_stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    ck_assert_uint_gt(atomic_load(&hammer_hits), 0);
}
END_TEST

Suite *cache_store_suite(void)
{
    Suite *s = suite_create("cache_store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, insert_lookup_replace);
    tcase_add_test(tc, variants);
    tcase_add_test(tc, purges);
    tcase_add_test(tc, purge_racing_a_fill);
    tcase_add_test(tc, size_bound_and_reclaim);
    tcase_add_test(tc, threads);
    suite_add_tcase(s, tc);
    return s;
}
