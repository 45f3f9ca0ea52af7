/* Request mirroring's pure parts: the "-shadow" authority, the
 * runtime_fraction decision, and the shadow's head built from the primary's
 * (shared bytes, not copies). Includes mirror.c to reach its static
 * functions. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mirror/mirror.c"
#include "suites.h"

static const char *shadow(const char *host)
{
    static char out[256];
    size_t n = tn_mirror_shadow_authority(host, strlen(host), out, sizeof(out) - 1);
    out[n] = '\0';
    return out;
}

START_TEST(authority_before_the_port)
{
    ck_assert_str_eq(shadow("localhost:10000"), "localhost-shadow:10000");
    ck_assert_str_eq(shadow("example.com:80"), "example.com-shadow:80");
    ck_assert_str_eq(shadow("10.0.0.1:8080"), "10.0.0.1-shadow:8080");
}
END_TEST

START_TEST(authority_without_a_port)
{
    ck_assert_str_eq(shadow("localhost"), "localhost-shadow");
    ck_assert_str_eq(shadow("a.b.example"), "a.b.example-shadow");
    ck_assert_str_eq(shadow("host:"), "host-shadow:");       /* an empty port is still the port's place */
    ck_assert_str_eq(shadow("host:abc"), "host:abc-shadow"); /* not a port */
}
END_TEST

START_TEST(authority_ipv6)
{
    ck_assert_str_eq(shadow("[::1]:80"), "[::1]-shadow:80");
    ck_assert_str_eq(shadow("[fe80::1%25eth0]"), "[fe80::1%25eth0]-shadow");
    ck_assert_str_eq(shadow("::1"), "::1-shadow");   /* bare: every colon is the address's */
    ck_assert_str_eq(shadow("[::1"), "[::1-shadow"); /* unclosed: at the end */
}
END_TEST

START_TEST(authority_does_not_overflow)
{
    char out[12];
    memset(out, 'x', sizeof(out));
    ck_assert_uint_eq(tn_mirror_shadow_authority("abcde:1", 7, out, 13), 0); /* 14 bytes needed */
    ck_assert_uint_eq(tn_mirror_shadow_authority("abcd:1", 6, out, sizeof(out)), 0);
    ck_assert_int_eq(out[0], 'x'); /* untouched */
    ck_assert_uint_eq(tn_mirror_shadow_authority("ab:1", 4, out, sizeof(out)), 11);
    ck_assert_int_eq(memcmp(out, "ab-shadow:1", 11), 0);
    ck_assert_uint_eq(tn_mirror_shadow_authority("", 0, out, sizeof(out)), 7);
}
END_TEST

START_TEST(fraction_decision)
{
    unsigned fired = 0;
    for (uint64_t r = 0; r < 100; r++)
        fired += tn_mirror_sampled(50, 100, r);
    ck_assert_uint_eq(fired, 50);
    fired = 0;
    for (uint64_t r = 0; r < 1000000; r++)
        fired += tn_mirror_sampled(1, 1000000, r);
    ck_assert_uint_eq(fired, 1);
    for (uint64_t r = 0; r < 1000; r++) {
        ck_assert(tn_mirror_sampled(100, 100, r * 0x9e3779b97f4a7c15ull));
        ck_assert(tn_mirror_sampled(200, 100, r)); /* more than all: always */
        ck_assert(!tn_mirror_sampled(0, 100, r));
        ck_assert(!tn_mirror_sampled(0, 0, r));
        ck_assert(!tn_mirror_sampled(5, 0, r)); /* no denominator: never */
    }
}
END_TEST

/* --- the shadow's head ----------------------------------------------------- */

static struct tn_slice head_of(const char *text)
{
    struct tn_block *b = tn_block_new(strlen(text));
    memcpy(b->data, text, strlen(text));
    struct tn_slice s = tn_slice_of(b, b->data, strlen(text));
    tn_block_unref(b);
    return s;
}

/* What the shadow writes: head[0], "-shadow" when suffixed, head[1]. */
static char *written(const struct tn_shadow *sh)
{
    static char out[1024];
    size_t n = 0;
    memcpy(out, sh->head[0].p, sh->head[0].len);
    n = sh->head[0].len;
    if (sh->suffix) {
        memcpy(out + n, SUFFIX, SUFFIX_LEN);
        n += SUFFIX_LEN;
    }
    if (sh->head[1].blk) {
        memcpy(out + n, sh->head[1].p, sh->head[1].len);
        n += sh->head[1].len;
    }
    out[n] = '\0';
    return out;
}

static struct head_info info(const struct tn_slice *h, const char *base)
{
    struct head_info hi = {.head = h, .base = base, .base_len = strlen(base)};
    find_host(&hi);
    return hi;
}

#define HEAD "GET /a?b=1 HTTP/1.1\r\nhost: localhost:10000\r\nx-a: 1\r\ncontent-length: 3\r\n\r\n"

START_TEST(head_shares_the_primary_bytes)
{
    struct tn_slice h = head_of(HEAD);
    struct head_info hi = info(&h, "localhost:10000");
    struct tn_shadow sh = {0};
    ck_assert_ptr_nonnull(hi.hv);
    ck_assert_int_eq(shadow_head(&sh, &hi, true), 0);
    ck_assert_str_eq(written(&sh),
                     "GET /a?b=1 HTTP/1.1\r\nhost: localhost-shadow:10000\r\nx-a: 1\r\ncontent-length: 3\r\n\r\n");
    ck_assert_ptr_eq(sh.head[0].blk, h.blk); /* references, no copy */
    ck_assert_ptr_eq(sh.head[1].blk, h.blk);
    ck_assert_uint_eq(h.blk->refcnt, 3);
    tn_slice_release(&sh.head[0]);
    tn_slice_release(&sh.head[1]);
    ck_assert_uint_eq(h.blk->refcnt, 1);
    tn_slice_release(&h);
}
END_TEST

START_TEST(head_without_suffix_is_the_primary_head)
{
    struct tn_slice h = head_of(HEAD);
    struct head_info hi = info(&h, "localhost:10000");
    struct tn_shadow sh = {0};
    ck_assert_int_eq(shadow_head(&sh, &hi, false), 0);
    ck_assert_str_eq(written(&sh), HEAD);
    ck_assert_ptr_eq(sh.head[0].p, h.p);
    ck_assert_ptr_null(sh.head[1].blk);
    tn_slice_release(&sh.head[0]);
    tn_slice_release(&h);
}
END_TEST

START_TEST(head_with_another_authority_is_rewritten)
{
    /* the primary's Host came from auto_host_rewrite; the shadow is named
     * after the request's authority */
    struct tn_slice h = head_of("POST / HTTP/1.1\r\nhost: backend.internal\r\nx: y\r\n\r\n");
    struct head_info hi = info(&h, "[::1]:8443");
    struct tn_shadow sh = {0};
    ck_assert_int_eq(shadow_head(&sh, &hi, true), 0);
    ck_assert_str_eq(written(&sh), "POST / HTTP/1.1\r\nhost: [::1]-shadow:8443\r\nx: y\r\n\r\n");
    ck_assert_ptr_ne(sh.head[0].blk, h.blk);
    tn_slice_release(&sh.head[0]);
    hi = info(&h, "front.example");
    ck_assert_int_eq(shadow_head(&sh, &hi, false), 0);
    ck_assert_str_eq(written(&sh), "POST / HTTP/1.1\r\nhost: front.example\r\nx: y\r\n\r\n");
    tn_slice_release(&sh.head[0]);
    tn_slice_release(&h);
}
END_TEST

START_TEST(head_without_host_line_is_refused)
{
    struct tn_slice h = head_of("GET / HTTP/1.1\r\nx-a: 1\r\n\r\n");
    struct head_info hi = info(&h, "a.test");
    struct tn_shadow sh = {0};
    ck_assert_ptr_null(hi.hv);
    ck_assert_int_eq(shadow_head(&sh, &hi, true), -1);
    ck_assert_ptr_null(sh.head[0].blk);
    tn_slice_release(&h);
}
END_TEST

Suite *mirror_suite(void)
{
    Suite *s = suite_create("mirror");
    TCase *tc = tcase_create("mirror");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, authority_before_the_port);
    tcase_add_test(tc, authority_without_a_port);
    tcase_add_test(tc, authority_ipv6);
    tcase_add_test(tc, authority_does_not_overflow);
    tcase_add_test(tc, fraction_decision);
    tcase_add_test(tc, head_shares_the_primary_bytes);
    tcase_add_test(tc, head_without_suffix_is_the_primary_head);
    tcase_add_test(tc, head_with_another_authority_is_rewritten);
    tcase_add_test(tc, head_without_host_line_is_refused);
    suite_add_tcase(s, tc);
    return s;
}
