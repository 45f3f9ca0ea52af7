/* Load balancing: priorities, panic, and each lb_policy over real host sets. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "dataplane/upstream/cluster.h"
#include "dataplane/upstream/host.h"
#include "dataplane/upstream/lb.h"
#include "suites.h"

#define NOW  1000000ull
#define MAXH 16

static struct tn_host *hosts[MAXH];
static size_t n_hosts;
static struct tn_cluster cluster;
static struct tn_lb_state st;

/* Host i is 10.0.0.i:8000, with a weight and a priority. */
static struct tn_host *add_host(uint32_t weight, uint32_t priority)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(8000)};
    sa.sin_addr.s_addr = htonl(0x0a000000u + (uint32_t)n_hosts + 1);
    struct tn_host *h = tn_host_new((struct sockaddr *)&sa, sizeof(sa), NULL, weight, priority);
    ck_assert_ptr_nonnull(h);
    hosts[n_hosts++] = h;
    return h;
}

static void add_hosts(size_t n, uint32_t weight, uint32_t priority)
{
    for (size_t i = 0; i < n; i++)
        add_host(weight, priority);
}

static struct tn_host_set *make_set(enum tn_lb_policy lb)
{
    cluster.lb = lb;
    struct tn_host_set *s = tn_host_set_new(hosts, n_hosts, &cluster);
    ck_assert_ptr_nonnull(s);
    return s;
}

static void setup(void)
{
    memset(&cluster, 0, sizeof(cluster));
    n_hosts = 0;
    tn_lb_state_init(&st, 42);
}

static void teardown(void)
{
    tn_lb_state_dispose(&st);
    for (size_t i = 0; i < n_hosts; i++)
        tn_host_unref(hosts[i]);
}

static int index_of(const struct tn_host *h)
{
    for (size_t i = 0; i < n_hosts; i++)
        if (hosts[i] == h)
            return (int)i;
    ck_abort_msg("picked a host not in the set");
    return -1;
}

static int pick(struct tn_host_set *s, const struct tn_lb_context *ctx)
{
    struct tn_host *h = tn_lb_choose(&cluster, s, &st, ctx, NOW);
    ck_assert_ptr_nonnull(h);
    return index_of(h);
}

static int pick_hash(struct tn_host_set *s, uint64_t hash)
{
    struct tn_lb_context ctx = {.has_hash = true, .hash = hash};
    return pick(s, &ctx);
}

/* counts[i] = picks of host i over n picks. */
static void tally(struct tn_host_set *s, int n, int *counts)
{
    memset(counts, 0, MAXH * sizeof(*counts));
    for (int i = 0; i < n; i++)
        counts[pick(s, NULL)]++;
}

static uint64_t key_hash(int k)
{
    return tn_lb_hash(&k, sizeof(k));
}

static void mark_unhealthy(size_t i)
{
    atomic_store(&hosts[i]->health, TN_HOST_FAILED_ACTIVE_HC);
}

START_TEST(empty_set_gives_null)
{
    static const enum tn_lb_policy all[] = {TN_LB_ROUND_ROBIN, TN_LB_LEAST_REQUEST, TN_LB_RANDOM, TN_LB_RING_HASH,
                                            TN_LB_MAGLEV};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        struct tn_host_set *s = make_set(all[i]);
        struct tn_lb_context ctx = {.has_hash = true, .hash = 7};
        ck_assert_ptr_null(tn_lb_choose(&cluster, s, &st, &ctx, NOW));
        ck_assert_ptr_null(tn_lb_choose(&cluster, s, &st, NULL, NOW));
        tn_host_set_unref(s);
    }
}
END_TEST

START_TEST(rr_equal_weights_exact_sequence)
{
    add_hosts(3, 1, 0);
    struct tn_host_set *s = make_set(TN_LB_ROUND_ROBIN);
    for (int i = 0; i < 9; i++)
        ck_assert_int_eq(pick(s, NULL), i % 3);
    tn_host_set_unref(s);
}
END_TEST

START_TEST(rr_weights_1_3_exact_and_interleaved)
{
    add_host(1, 0);
    add_host(3, 0);
    struct tn_host_set *s = make_set(TN_LB_ROUND_ROBIN);
    int counts[2] = {0};
    for (int w = 0; w < 100; w++) {
        int window[2] = {0};
        for (int i = 0; i < 4; i++)
            window[pick(s, NULL)]++;
        ck_assert_int_eq(window[0], 1); /* smooth: every cycle of 4 is 1:3 */
        counts[0] += window[0];
        counts[1] += window[1];
    }
    ck_assert_int_eq(counts[0], 100);
    ck_assert_int_eq(counts[1], 300);
    tn_host_set_unref(s);
}
END_TEST

START_TEST(rr_weighted_schedule_follows_new_set)
{
    add_host(1, 0);
    add_host(3, 0);
    struct tn_host_set *a = make_set(TN_LB_ROUND_ROBIN);
    pick(a, NULL);
    hosts[1]->weight = 1; /* the next set sees weights 1, 1, 2: the schedule must be rebuilt */
    add_host(2, 0);
    struct tn_host_set *b = make_set(TN_LB_ROUND_ROBIN);
    int counts[MAXH];
    tally(b, 400, counts);
    ck_assert_int_eq(counts[0], 100);
    ck_assert_int_eq(counts[1], 100);
    ck_assert_int_eq(counts[2], 200);
    ck_assert_ptr_eq(st.rr_set, b);
    tn_host_set_unref(a);
    tn_host_set_unref(b);
}
END_TEST

START_TEST(rr_skips_unhealthy_and_ejected)
{
    add_hosts(4, 1, 0);
    mark_unhealthy(1);
    atomic_store(&hosts[2]->eject_until_ms, NOW + 1);
    atomic_store(&hosts[3]->health, TN_HOST_PENDING_HC); /* not yet checked counts as healthy */
    struct tn_host_set *s = make_set(TN_LB_ROUND_ROBIN);
    int counts[MAXH];
    tally(s, 100, counts);
    ck_assert_int_eq(counts[0], 50);
    ck_assert_int_eq(counts[1], 0);
    ck_assert_int_eq(counts[2], 0);
    ck_assert_int_eq(counts[3], 50);
    atomic_store(&hosts[2]->eject_until_ms, NOW); /* ejection over */
    tally(s, 90, counts);
    ck_assert_int_eq(counts[2], 30);
    tn_host_set_unref(s);
}
END_TEST

START_TEST(panic_balances_over_all_hosts)
{
    add_hosts(4, 1, 0);
    mark_unhealthy(0);
    mark_unhealthy(1);
    mark_unhealthy(2); /* 25 % healthy: under the 50 % threshold */
    struct tn_host_set *s = make_set(TN_LB_ROUND_ROBIN);
    int counts[MAXH];
    tally(s, 400, counts);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(counts[i], 100);
    tn_host_set_unref(s);
}
END_TEST

START_TEST(priority_failover)
{
    add_hosts(2, 1, 1); /* hosts 0,1 at priority 1, listed first */
    add_hosts(2, 1, 0); /* hosts 2,3 at priority 0 */
    struct tn_host_set *s = make_set(TN_LB_ROUND_ROBIN);
    int counts[MAXH];
    tally(s, 200, counts);
    ck_assert_int_eq(counts[0] + counts[1], 0);
    ck_assert_int_eq(counts[2], 100);
    mark_unhealthy(2);
    mark_unhealthy(3);
    tally(s, 200, counts);
    ck_assert_int_eq(counts[2] + counts[3], 0);
    ck_assert_int_eq(counts[0], 100);
    ck_assert_int_eq(counts[1], 100);
    tn_host_set_unref(s);
}
END_TEST

START_TEST(priority_spill_proportions)
{
    add_hosts(2, 1, 0);
    add_hosts(2, 1, 1);
    mark_unhealthy(0); /* P0 50 % healthy: health 70, P1 takes the other 30 */
    struct tn_host_set *s = make_set(TN_LB_RANDOM);
    int counts[MAXH];
    tally(s, 20000, counts);
    ck_assert_int_eq(counts[0], 0);
    ck_assert_int_ge(counts[1], 13600);
    ck_assert_int_le(counts[1], 14400);
    tn_host_set_unref(s);
}
END_TEST

START_TEST(priority_spill_with_panic_level)
{
    add_hosts(4, 1, 0);
    add_hosts(2, 1, 1);
    mark_unhealthy(0);
    mark_unhealthy(1);
    mark_unhealthy(2); /* P0 25 %: health 35 and in panic */
    struct tn_host_set *s = make_set(TN_LB_RANDOM);
    int counts[MAXH];
    tally(s, 20000, counts);
    int p0 = counts[0] + counts[1] + counts[2] + counts[3];
    ck_assert_int_ge(p0, 6600);
    ck_assert_int_le(p0, 7400);
    ck_assert_int_gt(counts[0], 1000); /* panic: unhealthy P0 hosts take their share */
    tn_host_set_unref(s);
}
END_TEST

START_TEST(total_panic_follows_host_counts)
{
    add_hosts(1, 1, 0);
    add_hosts(3, 1, 1);
    for (size_t i = 0; i < 4; i++)
        mark_unhealthy(i);
    struct tn_host_set *s = make_set(TN_LB_RANDOM);
    int counts[MAXH];
    tally(s, 20000, counts);
    ck_assert_int_ge(counts[0], 4500); /* a quarter of the hosts, a quarter of the load */
    ck_assert_int_le(counts[0], 5500);
    tn_host_set_unref(s);
}
END_TEST

START_TEST(least_request_prefers_fewer_active)
{
    add_hosts(3, 1, 0);
    atomic_store(&hosts[0]->active_rq, 5);
    atomic_store(&hosts[2]->active_rq, 5);
    struct tn_host_set *s = make_set(TN_LB_LEAST_REQUEST);
    int counts[MAXH];
    tally(s, 3000, counts);
    ck_assert_int_gt(counts[1], 1500); /* P2C: 5/9 expected, 1/3 if random */
    ck_assert_int_lt(counts[1], 1850);
    cluster.least_request_choices = 10;
    tally(s, 3000, counts);
    ck_assert_int_gt(counts[1], 2850);
    tn_host_set_unref(s);
}
END_TEST

START_TEST(least_request_weighted_divides_by_active)
{
    add_host(2, 0);
    add_host(1, 0);
    struct tn_host_set *s = make_set(TN_LB_LEAST_REQUEST);
    int counts[MAXH];
    tally(s, 300, counts);
    ck_assert_int_eq(counts[0], 200);
    atomic_store(&hosts[0]->active_rq, 3); /* 2 / 4 against 1 / 1 */
    tally(s, 300, counts);
    ck_assert_int_ge(counts[1], 195);
    ck_assert_int_le(counts[1], 205);
    tn_host_set_unref(s);
}
END_TEST

START_TEST(random_covers_all_hosts_by_weight)
{
    add_hosts(4, 1, 0);
    struct tn_host_set *s = make_set(TN_LB_RANDOM);
    int counts[MAXH];
    tally(s, 10000, counts);
    for (int i = 0; i < 4; i++)
        ck_assert_int_ge(counts[i], 2200);
    mark_unhealthy(3);
    tally(s, 3000, counts);
    ck_assert_int_eq(counts[3], 0);
    tn_host_set_unref(s);

    for (size_t i = 0; i < n_hosts; i++)
        tn_host_unref(hosts[i]);
    n_hosts = 0;
    add_host(1, 0);
    add_host(3, 0);
    s = make_set(TN_LB_RANDOM);
    tally(s, 20000, counts);
    ck_assert_int_ge(counts[1], 14400);
    ck_assert_int_le(counts[1], 15600);
    tn_host_set_unref(s);
}
END_TEST

static void hash_same_key_same_host(enum tn_lb_policy lb)
{
    add_hosts(5, 1, 0);
    struct tn_host_set *s = make_set(lb);
    struct tn_host_set *again = make_set(lb); /* tables depend only on the hosts */
    int used[MAXH] = {0};
    for (int k = 0; k < 1000; k++) {
        int h = pick_hash(s, key_hash(k));
        ck_assert_int_eq(pick_hash(s, key_hash(k)), h);
        ck_assert_int_eq(pick_hash(again, key_hash(k)), h);
        used[h] = 1;
    }
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(used[i], 1);
    tn_host_set_unref(s);
    tn_host_set_unref(again);
}

/* Shares within 20 % of weight / total over 20000 keys. */
static void hash_distribution_by_weight(enum tn_lb_policy lb)
{
    static const uint32_t w[] = {1, 1, 2, 4};
    for (int i = 0; i < 4; i++)
        add_host(w[i], 0);
    struct tn_host_set *s = make_set(lb);
    int counts[MAXH] = {0};
    for (int k = 0; k < 20000; k++)
        counts[pick_hash(s, key_hash(k))]++;
    for (int i = 0; i < 4; i++) {
        double want = 20000.0 * w[i] / 8;
        ck_assert_msg(counts[i] > want * 0.8 && counts[i] < want * 1.2, "host %d: %d keys, want ~%.0f", i, counts[i],
                      want);
    }
    tn_host_set_unref(s);
}

/* Removing one of 10 hosts: its keys move, most others stay. */
static void hash_minimal_disruption(enum tn_lb_policy lb)
{
    add_hosts(10, 1, 0);
    struct tn_host_set *before = make_set(lb);
    n_hosts = 9; /* host 9 leaves (still unref'd in teardown through hosts[9]) */
    struct tn_host_set *after = make_set(lb);
    n_hosts = 10;
    int kept = 0, others = 0;
    for (int k = 0; k < 10000; k++) {
        int a = pick_hash(before, key_hash(k)), b = pick_hash(after, key_hash(k));
        ck_assert_int_ne(b, 9);
        if (a != 9) {
            others++;
            kept += a == b;
        }
    }
    ck_assert_msg(kept > others * 0.85, "%d of %d keys kept their host", kept, others);
    tn_host_set_unref(before);
    tn_host_set_unref(after);
}

/* An unhealthy host's keys go elsewhere; other keys stay put. */
static void hash_unhealthy_walks_on(enum tn_lb_policy lb)
{
    add_hosts(4, 1, 0);
    struct tn_host_set *s = make_set(lb);
    int before[1000];
    for (int k = 0; k < 1000; k++)
        before[k] = pick_hash(s, key_hash(k));
    mark_unhealthy(2);
    int moved = 0;
    for (int k = 0; k < 1000; k++) {
        int now = pick_hash(s, key_hash(k));
        ck_assert_int_ne(now, 2);
        if (before[k] != 2)
            ck_assert_int_eq(now, before[k]);
        moved += before[k] == 2;
    }
    ck_assert_int_gt(moved, 0);
    tn_host_set_unref(s);
}

static void hash_without_hash_is_random(enum tn_lb_policy lb)
{
    add_hosts(4, 1, 0);
    struct tn_host_set *s = make_set(lb);
    int counts[MAXH];
    tally(s, 4000, counts);
    for (int i = 0; i < 4; i++)
        ck_assert_int_gt(counts[i], 500);
    tn_host_set_unref(s);
}

START_TEST(ring_same_key_same_host)
{
    hash_same_key_same_host(TN_LB_RING_HASH);
}
END_TEST

START_TEST(ring_distribution_by_weight)
{
    hash_distribution_by_weight(TN_LB_RING_HASH);
}
END_TEST

START_TEST(ring_minimal_disruption)
{
    hash_minimal_disruption(TN_LB_RING_HASH);
}
END_TEST

START_TEST(ring_unhealthy_walks_on)
{
    hash_unhealthy_walks_on(TN_LB_RING_HASH);
}
END_TEST

START_TEST(ring_without_hash_is_random)
{
    hash_without_hash_is_random(TN_LB_RING_HASH);
}
END_TEST

START_TEST(ring_small_max_size_still_works)
{
    cluster.ring_min = 4;
    cluster.ring_max = 8;
    add_hosts(4, 1, 0);
    struct tn_host_set *s = make_set(TN_LB_RING_HASH);
    for (int k = 0; k < 100; k++)
        ck_assert_int_eq(pick_hash(s, key_hash(k)), pick_hash(s, key_hash(k)));
    tn_host_set_unref(s);
}
END_TEST

START_TEST(maglev_same_key_same_host)
{
    hash_same_key_same_host(TN_LB_MAGLEV);
}
END_TEST

START_TEST(maglev_distribution_by_weight)
{
    hash_distribution_by_weight(TN_LB_MAGLEV);
}
END_TEST

START_TEST(maglev_small_table_by_weight)
{
    cluster.maglev_table_size = 251;
    hash_distribution_by_weight(TN_LB_MAGLEV);
}
END_TEST

START_TEST(maglev_minimal_disruption)
{
    hash_minimal_disruption(TN_LB_MAGLEV);
}
END_TEST

START_TEST(maglev_unhealthy_walks_on)
{
    hash_unhealthy_walks_on(TN_LB_MAGLEV);
}
END_TEST

START_TEST(maglev_without_hash_is_random)
{
    hash_without_hash_is_random(TN_LB_MAGLEV);
}
END_TEST

START_TEST(exclude_prefers_another_host)
{
    static const enum tn_lb_policy all[] = {TN_LB_ROUND_ROBIN, TN_LB_LEAST_REQUEST, TN_LB_RANDOM, TN_LB_RING_HASH,
                                            TN_LB_MAGLEV};
    add_hosts(3, 1, 0);
    for (size_t p = 0; p < sizeof(all) / sizeof(all[0]); p++) {
        struct tn_host_set *s = make_set(all[p]);
        for (int k = 0; k < 200; k++) {
            int first = pick_hash(s, key_hash(k));
            struct tn_lb_context retry = {.has_hash = true, .hash = key_hash(k), .exclude = hosts[first]};
            ck_assert_int_ne(pick(s, &retry), first);
        }
        tn_host_set_unref(s);
    }
}
END_TEST

START_TEST(exclude_only_healthy_host_is_kept)
{
    add_hosts(2, 1, 0);
    mark_unhealthy(1); /* 50 %: not in panic, host 0 is the only choice */
    struct tn_host_set *s = make_set(TN_LB_RING_HASH);
    struct tn_lb_context retry = {.exclude = hosts[0]};
    for (int k = 0; k < 50; k++)
        ck_assert_int_eq(pick(s, &retry), 0);
    tn_host_set_unref(s);
}
END_TEST

START_TEST(hash_is_xxh3)
{
    ck_assert_uint_eq(tn_lb_hash("", 0), 0x2d06800538d394c2ull); /* XXH3_64bits of empty input */
    ck_assert_uint_ne(tn_lb_hash("a", 1), tn_lb_hash("b", 1));
}
END_TEST

Suite *lb_suite(void)
{
    Suite *s = suite_create("lb");
    TCase *tc = tcase_create("lb");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, empty_set_gives_null);
    tcase_add_test(tc, rr_equal_weights_exact_sequence);
    tcase_add_test(tc, rr_weights_1_3_exact_and_interleaved);
    tcase_add_test(tc, rr_weighted_schedule_follows_new_set);
    tcase_add_test(tc, rr_skips_unhealthy_and_ejected);
    tcase_add_test(tc, panic_balances_over_all_hosts);
    tcase_add_test(tc, priority_failover);
    tcase_add_test(tc, priority_spill_proportions);
    tcase_add_test(tc, priority_spill_with_panic_level);
    tcase_add_test(tc, total_panic_follows_host_counts);
    tcase_add_test(tc, least_request_prefers_fewer_active);
    tcase_add_test(tc, least_request_weighted_divides_by_active);
    tcase_add_test(tc, random_covers_all_hosts_by_weight);
    tcase_add_test(tc, ring_same_key_same_host);
    tcase_add_test(tc, ring_distribution_by_weight);
    tcase_add_test(tc, ring_minimal_disruption);
    tcase_add_test(tc, ring_unhealthy_walks_on);
    tcase_add_test(tc, ring_without_hash_is_random);
    tcase_add_test(tc, ring_small_max_size_still_works);
    tcase_add_test(tc, maglev_same_key_same_host);
    tcase_add_test(tc, maglev_distribution_by_weight);
    tcase_add_test(tc, maglev_small_table_by_weight);
    tcase_add_test(tc, maglev_minimal_disruption);
    tcase_add_test(tc, maglev_unhealthy_walks_on);
    tcase_add_test(tc, maglev_without_hash_is_random);
    tcase_add_test(tc, exclude_prefers_another_host);
    tcase_add_test(tc, exclude_only_healthy_host_is_kept);
    tcase_add_test(tc, hash_is_xxh3);
    suite_add_tcase(s, tc);
    return s;
}
