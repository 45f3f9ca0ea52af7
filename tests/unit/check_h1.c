/* HTTP/1.1 helpers, slices and the timer heap. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>
#include <uv.h>

#include "dataplane/http/h1.h"
#include "dataplane/core/slice.h"
#include "dataplane/core/timer.h"
#include "suites.h"

/* Feeds a request to llhttp in pieces of `step` bytes and collects its
 * head the way the connection does. */
static struct tn_h1_head head;
static int head_rc;

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    (void)p;
    return head_rc = tn_h1_head_url(&head, at, n);
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
    (void)p;
    return head_rc = tn_h1_head_field(&head, at, n);
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
    (void)p;
    return head_rc = tn_h1_head_value(&head, at, n);
}

static int on_done(llhttp_t *p)
{
    (void)p;
    return head_rc = tn_h1_head_finish(&head);
}

static int parse_in_steps(const char *req, size_t step, size_t limit)
{
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_url = on_url;
    st.on_header_field = on_field;
    st.on_header_value = on_value;
    st.on_headers_complete = on_done;
    llhttp_t p;
    llhttp_init(&p, HTTP_REQUEST, &st);
    tn_h1_head_init(&head, limit);
    head_rc = 0;
    size_t len = strlen(req);
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        if (llhttp_execute(&p, req + off, n) != HPE_OK)
            return -1;
    }
    return head_rc;
}

static int header_is(size_t i, const char *name, const char *value)
{
    const struct tn_header *h = &head.h[i];
    return h->name_len == strlen(name) && memcmp(h->name, name, h->name_len) == 0 &&
           h->value_len == strlen(value) && memcmp(h->value, value, h->value_len) == 0;
}

static const char REQ[] = "GET /a/b?x=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nX-Long-Header-Name: some value  \r\n"
                          "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n";

START_TEST(head_survives_any_split)
{
    /* every split point: names and values cut across reads */
    for (size_t step = 1; step <= sizeof(REQ); step++) {
        ck_assert_int_eq(parse_in_steps(REQ, step, 4096), 0);
        ck_assert_uint_eq(head.n, 4);
        ck_assert_uint_eq(head.url_len, 8);
        ck_assert_int_eq(memcmp(tn_h1_head_urlp(&head), "/a/b?x=1", 8), 0);
        ck_assert(header_is(0, "host", "Example.COM:8080"));  /* names folded, values kept */
        ck_assert(header_is(1, "x-long-header-name", "some value")); /* trailing blanks trimmed */
        ck_assert(header_is(2, "connection", "keep-alive, X-Hop"));
        ck_assert(header_is(3, "x-hop", "1"));
        tn_h1_head_dispose(&head);
    }
}
END_TEST

START_TEST(head_limit_refuses_more)
{
    ck_assert_int_eq(parse_in_steps(REQ, 7, 40), -1);
    tn_h1_head_dispose(&head);
    ck_assert_int_eq(parse_in_steps(REQ, 7, sizeof(REQ)), 0);
    tn_h1_head_dispose(&head);
}
END_TEST

START_TEST(hop_by_hop_and_connection_tokens)
{
    ck_assert_int_eq(parse_in_steps(REQ, 1000, 4096), 0);
    const struct tn_header *conn = &head.h[2];
    ck_assert(!tn_h1_hop_by_hop(&head.h[0], conn));
    ck_assert(!tn_h1_hop_by_hop(&head.h[1], conn));
    ck_assert(tn_h1_hop_by_hop(&head.h[2], conn));
    ck_assert(tn_h1_hop_by_hop(&head.h[3], conn)); /* named in Connection */
    ck_assert(!tn_h1_hop_by_hop(&head.h[3], NULL));
    struct tn_header te = {.name = "transfer-encoding", .name_len = 17, .value = "chunked", .value_len = 7};
    struct tn_header ka = {.name = "keep-alive", .name_len = 10, .value = "timeout=5", .value_len = 9};
    struct tn_header up = {.name = "upgrade", .name_len = 7, .value = "h2c", .value_len = 3};
    ck_assert(tn_h1_hop_by_hop(&te, NULL) && tn_h1_hop_by_hop(&ka, NULL) && tn_h1_hop_by_hop(&up, NULL));
    tn_h1_head_dispose(&head);
}
END_TEST

START_TEST(tokens)
{
    const char *v = " Keep-Alive ,x-a,  100-continue ";
    ck_assert(tn_h1_has_token(v, strlen(v), "keep-alive"));
    ck_assert(tn_h1_has_token(v, strlen(v), "X-A"));
    ck_assert(tn_h1_has_token(v, strlen(v), "100-continue"));
    ck_assert(!tn_h1_has_token(v, strlen(v), "x"));
    ck_assert(!tn_h1_has_token(v, strlen(v), "close"));
    ck_assert(!tn_h1_has_token("", 0, "close"));
}
END_TEST

START_TEST(header_count_limit)
{
    tn_h1_head_init(&head, 4096);
    head.max_headers = 2;
    ck_assert_int_eq(tn_h1_head_field(&head, "a", 1), 0);
    ck_assert_int_eq(tn_h1_head_value(&head, "1", 1), 0);
    ck_assert_int_eq(tn_h1_head_field(&head, "b", 1), 0);
    ck_assert_int_eq(tn_h1_head_field(&head, "b", 1), 0); /* the same name, split across reads */
    ck_assert_int_eq(tn_h1_head_value(&head, "2", 1), 0);
    ck_assert_int_eq(tn_h1_head_field(&head, "c", 1), TN_H1_TOO_MANY);
    tn_h1_head_dispose(&head);
}
END_TEST

START_TEST(transfer_codings)
{
    ck_assert(tn_h1_te_is_chunked("chunked", 7));
    ck_assert(tn_h1_te_is_chunked(" Chunked\t", 9));
    ck_assert(!tn_h1_te_is_chunked("gzip, chunked", 13));
    ck_assert(!tn_h1_te_is_chunked("identity, chunked", 17));
    ck_assert(!tn_h1_te_is_chunked("chunked, chunked", 16));
    ck_assert(!tn_h1_te_is_chunked("", 0));
}
END_TEST

#define AUTH_OK(lit) tn_h1_authority_ok(lit, sizeof(lit) - 1)
START_TEST(authorities)
{
    ck_assert(AUTH_OK("example.com"));
    ck_assert(AUTH_OK("example.com:8080"));
    ck_assert(AUTH_OK("127.0.0.1:1"));
    ck_assert(AUTH_OK("[::1]:80"));
    ck_assert(AUTH_OK("[::ffff:10.0.0.1]"));
    ck_assert(AUTH_OK("a_b-c.~x%41"));
    ck_assert(!AUTH_OK(""));
    ck_assert(!AUTH_OK("a b"));
    ck_assert(!AUTH_OK("a/b"));
    ck_assert(!AUTH_OK("user@host"));
    ck_assert(!AUTH_OK("host:8x"));
    ck_assert(!AUTH_OK(":80"));
    ck_assert(!AUTH_OK("[::1"));
    ck_assert(!AUTH_OK("[]"));
    ck_assert(!AUTH_OK("[::1]x"));
    ck_assert(!AUTH_OK("a\x01"));
    ck_assert(!tn_h1_authority_ok("a\0b", 3));
}
END_TEST

START_TEST(absolute_targets)
{
    const char *a, *p;
    size_t al, pl;
    const char *u = "http://other.example?id=X";
    ck_assert_int_eq(tn_h1_split_absolute(u, strlen(u), &a, &al, &p, &pl), 0);
    ck_assert(al == 13 && memcmp(a, "other.example", al) == 0);
    ck_assert(pl == 5 && memcmp(p, "?id=X", pl) == 0);
    u = "HTTPS://[::1]:8443/a/b?c";
    ck_assert_int_eq(tn_h1_split_absolute(u, strlen(u), &a, &al, &p, &pl), 0);
    ck_assert(al == 10 && memcmp(a, "[::1]:8443", al) == 0);
    ck_assert(pl == 6 && memcmp(p, "/a/b?c", pl) == 0);
    u = "http://h";
    ck_assert_int_eq(tn_h1_split_absolute(u, strlen(u), &a, &al, &p, &pl), 0);
    ck_assert_uint_eq(pl, 0);
    u = "http://user:pw@other.example/";
    ck_assert_int_eq(tn_h1_split_absolute(u, strlen(u), &a, &al, &p, &pl), -1);
    u = "ftp://h/";
    ck_assert_int_eq(tn_h1_split_absolute(u, strlen(u), &a, &al, &p, &pl), -1);
    u = "http:///x";
    ck_assert_int_eq(tn_h1_split_absolute(u, strlen(u), &a, &al, &p, &pl), -1);
    u = "host:443";
    ck_assert_int_eq(tn_h1_split_absolute(u, strlen(u), &a, &al, &p, &pl), -1);
}
END_TEST

START_TEST(numbers_and_reasons)
{
    char b[24];
    ck_assert_uint_eq(tn_h1_u64(b, 0), 1);
    ck_assert_int_eq(memcmp(b, "0", 1), 0);
    ck_assert_uint_eq(tn_h1_u64(b, 18446744073709551615ull), 20);
    ck_assert_int_eq(memcmp(b, "18446744073709551615", 20), 0);
    ck_assert_uint_eq(tn_h1_chunk_size(b, 0x1a2f), 6);
    ck_assert_int_eq(memcmp(b, "1a2f\r\n", 6), 0);
    ck_assert_uint_eq(tn_h1_chunk_size(b, 0), 3);
    ck_assert_str_eq(tn_h1_reason(431), "Request Header Fields Too Large");
    ck_assert_str_eq(tn_h1_reason(504), "Gateway Timeout");
    ck_assert_str_eq(tn_h1_reason(299), "Unknown");
    size_t pos = 0;
    char out[16];
    ck_assert_int_eq(tn_h1_put_header(out, sizeof(out), &pos, "a", 1, "bc", 2), 0);
    ck_assert_int_eq(memcmp(out, "a: bc\r\n", 7), 0);
    ck_assert_int_eq(tn_h1_put_header(out, sizeof(out), &pos, "long", 4, "value", 5), -1);
    ck_assert_uint_eq(pos, 7); /* nothing written when it does not fit */
}
END_TEST

START_TEST(slices_share_blocks)
{
    struct tn_block *b = tn_block_new(10);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_ge(b->cap, TN_BLOCK_SIZE);
    memcpy(b->data, "hello world", 11);
    struct tn_slices q, copy;
    tn_slices_init(&q);
    tn_slices_init(&copy);
    for (int i = 0; i < 20; i++) /* grows past its first ring */
        ck_assert_int_eq(tn_slices_push(&q, tn_slice_of(b, b->data + (i % 2) * 6, 5)), 0);
    ck_assert_uint_eq(q.n, 20);
    ck_assert_uint_eq(q.bytes, 100);
    ck_assert_uint_eq(b->refcnt, 21);
    ck_assert_int_eq(tn_slices_copy(&copy, &q), 0);
    ck_assert_uint_eq(b->refcnt, 41);
    struct tn_slice s = tn_slices_shift(&q);
    ck_assert_int_eq(memcmp(s.p, "hello", 5), 0);
    tn_slice_release(&s);
    s = tn_slices_shift(&q);
    ck_assert_int_eq(memcmp(s.p, "world", 5), 0);
    tn_slice_release(&s);
    ck_assert_uint_eq(q.bytes, 90);
    tn_slices_dispose(&q);
    tn_slices_dispose(&copy);
    ck_assert_uint_eq(b->refcnt, 1);
    tn_block_unref(b);
    tn_block_cache_drain();
}
END_TEST

static int fired[8], n_fired;
static struct tn_timers *the_timers;
static struct tn_timer timers[8];

static void on_fire(struct tn_timer *t)
{
    fired[n_fired++] = (int)(t - timers);
    if (t == &timers[0]) /* a callback may stop another timer */
        tn_timer_stop(the_timers, &timers[5]);
}

START_TEST(timer_heap_fires_in_order)
{
    uv_loop_t loop;
    struct tn_timers ts;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(tn_timers_init(&ts, &loop), 0);
    the_timers = &ts;
    n_fired = 0;
    static const uint64_t due[8] = {30, 10, 50, 20, 40, 60, 5, 70};
    for (int i = 0; i < 8; i++) {
        tn_timer_init(&timers[i], on_fire);
        ck_assert_int_eq(tn_timer_start(&ts, &timers[i], due[i]), 0);
    }
    tn_timer_stop(&ts, &timers[7]);          /* never fires */
    tn_timer_start(&ts, &timers[6], 45);     /* moved later */
    ck_assert(!tn_timer_armed(&timers[7]) && tn_timer_armed(&timers[6]));
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(n_fired, 6);
    static const int order[6] = {1, 3, 0, 4, 6, 2}; /* 5 stopped by 0's callback */
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(fired[i], order[i]);
    tn_timers_close(&ts);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

Suite *h1_suite(void)
{
    Suite *s = suite_create("h1");
    TCase *tc = tcase_create("h1");
    tcase_add_test(tc, head_survives_any_split);
    tcase_add_test(tc, head_limit_refuses_more);
    tcase_add_test(tc, hop_by_hop_and_connection_tokens);
    tcase_add_test(tc, tokens);
    tcase_add_test(tc, header_count_limit);
    tcase_add_test(tc, transfer_codings);
    tcase_add_test(tc, authorities);
    tcase_add_test(tc, absolute_targets);
    tcase_add_test(tc, numbers_and_reasons);
    tcase_add_test(tc, slices_share_blocks);
    tcase_add_test(tc, timer_heap_fires_in_order);
    suite_add_tcase(s, tc);
    return s;
}
