#include "dataplane/upstream/outlier.h"

#include <stdbool.h>
#include <stdlib.h>

#include "dataplane/core/log.h"

enum ejection_kind {
    EJECT_5XX = 0,
    EJECT_GATEWAY,
};

/* xorshift64*, one state per thread: enforcing_* percentages only need a
 * cheap, roughly uniform draw, never a lock. */
static unsigned percent_draw(void)
{
    static _Thread_local uint64_t x;
    if (x == 0)
        x = (uint64_t)(uintptr_t)&x ^ 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return (unsigned)((x * 0x2545f4914f6cdd1dull) >> 33) % 100;
}

/* Envoy's max_ejection_percent: no ejection may take the ejected share of
 * the set above the limit, except that one host may always be ejected
 * ("will eject at least one host regardless of the value"). */
static bool ejection_allowed(const struct tn_outlier *o, const struct tn_host_set *set, const struct tn_host *h,
                             uint64_t now_ms)
{
    size_t ejected = 0;
    for (size_t i = 0; i < set->n_hosts; i++)
        if (set->hosts[i] != h && atomic_load_explicit(&set->hosts[i]->eject_until_ms, memory_order_relaxed) > now_ms)
            ejected++;
    return ejected == 0 || (ejected + 1) * 100 <= (uint64_t)o->max_ejection_percent * set->n_hosts;
}

/* How long the next ejection lasts: base x n, capped at max_ejection_time
 * (never below base). As in Envoy, n falls back by one for every `interval`
 * the host spent in service since its last ejection ended (done here lazily,
 * instead of Envoy's sweep). Returns n through *n_out. */
static uint64_t ejection_ms(const struct tn_outlier *o, struct tn_host *h, uint64_t last_until, uint64_t now_ms,
                            unsigned *n_out)
{
    unsigned n = atomic_load_explicit(&h->n_ejections, memory_order_relaxed);
    if (last_until && now_ms > last_until && o->interval_ms) {
        uint64_t back = (now_ms - last_until) / o->interval_ms;
        n = back >= n ? 0 : n - (unsigned)back;
    }
    *n_out = ++n;
    uint64_t cap =
        o->max_ejection_time_ms > o->base_ejection_time_ms ? o->max_ejection_time_ms : o->base_ejection_time_ms;
    uint64_t t = o->base_ejection_time_ms * n;
    return t < cap && t / n == o->base_ejection_time_ms ? t : cap;
}

/* The report that crossed a threshold tries to eject; a compare-and-swap on
 * eject_until_ms lets only one worker win. */
static int try_eject(const struct tn_cluster *c, const struct tn_host_set *set, struct tn_host *h,
                     enum ejection_kind kind, uint64_t now_ms)
{
    const struct tn_outlier *o = &c->outlier;
    uint32_t enforcing = kind == EJECT_5XX ? o->enforcing_consecutive_5xx : o->enforcing_consecutive_gateway_failure;
    uint64_t until = atomic_load_explicit(&h->eject_until_ms, memory_order_relaxed);
    unsigned n;
    if (until > now_ms || percent_draw() >= enforcing || !ejection_allowed(o, set, h, now_ms))
        return 0;
    uint64_t t = ejection_ms(o, h, until, now_ms, &n);
    if (!atomic_compare_exchange_strong(&h->eject_until_ms, &until, now_ms + t))
        return 0;
    atomic_store_explicit(&h->n_ejections, n, memory_order_relaxed);
    atomic_store_explicit(&h->consecutive_5xx, 0, memory_order_relaxed);
    atomic_store_explicit(&h->consecutive_gw, 0, memory_order_relaxed);
    TN_LOG(TN_LOG_INFO, upstream,
           "outlier detection: ejecting host %s of cluster %s for %llu ms (consecutive %s, "
           "ejection %u)",
           h->addr_text, c->name, (unsigned long long)t, kind == EJECT_5XX ? "5xx" : "gateway failures", n);
    return 1;
}

static void reset_counter(atomic_uint *a)
{
    if (atomic_load_explicit(a, memory_order_relaxed) != 0) /* spare the cache line when already 0 */
        atomic_store_explicit(a, 0, memory_order_relaxed);
}

/* Counts one failure; true when this report reached the threshold. The
 * counter restarts then, so the next threshold is as far away again whether
 * or not the host was ejected. */
static bool count_failure(atomic_uint *a, uint32_t threshold)
{
    unsigned v = atomic_fetch_add_explicit(a, 1, memory_order_relaxed) + 1;
    if (threshold == 0 || v != threshold)
        return false;
    atomic_store_explicit(a, 0, memory_order_relaxed);
    return true;
}

int tn_outlier_report(const struct tn_cluster *c, const struct tn_host_set *set, struct tn_host *h, int status,
                      uint64_t now_ms)
{
    const struct tn_outlier *o = &c->outlier;
    /* split_external_local_origin_errors is false: a local-origin failure
     * (status 0) counts as a 5xx and as a gateway failure. */
    bool is_5xx = status == 0 || (status >= 500 && status < 600);
    bool is_gw = status == 0 || status == 502 || status == 503 || status == 504;
    bool gw_hit = false, x5_hit;
    int ejected = 0;
    if (!o->enabled)
        return 0;
    if (!is_5xx) {
        reset_counter(&h->consecutive_5xx);
        reset_counter(&h->consecutive_gw);
        return 0;
    }
    if (is_gw)
        gw_hit = count_failure(&h->consecutive_gw, o->consecutive_gateway_failure);
    else
        reset_counter(&h->consecutive_gw);
    x5_hit = count_failure(&h->consecutive_5xx, o->consecutive_5xx);
    /* Envoy looks at gateway failures first; five 503s cross both, and the
     * 5xx rule (enforced at 100% by default) still ejects when the gateway
     * rule (0% by default) does not. */
    if (gw_hit)
        ejected = try_eject(c, set, h, EJECT_GATEWAY, now_ms);
    if (x5_hit && !ejected)
        ejected = try_eject(c, set, h, EJECT_5XX, now_ms);
    return ejected;
}
