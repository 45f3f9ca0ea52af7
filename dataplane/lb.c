/* Load balancing. This first version is plain round robin over healthy hosts
 * of the best priority; the policies of lb.h replace it. */
#include "dataplane/lb.h"

#include <xxhash.h>

#include "dataplane/cluster.h"

void tn_lb_state_init(struct tn_lb_state *st, uint64_t seed)
{
    *st = (struct tn_lb_state){.rng = seed ? seed : 0x9e3779b97f4a7c15ull};
}

void tn_lb_state_dispose(struct tn_lb_state *st)
{
    (void)st;
}

int tn_lb_prepare(struct tn_host_set *set, const struct tn_cluster *c)
{
    (void)set;
    (void)c;
    return 0;
}

void tn_lb_release(struct tn_host_set *set)
{
    (void)set;
}

struct tn_host *tn_lb_choose(const struct tn_cluster *c, const struct tn_host_set *set, struct tn_lb_state *st,
                             const struct tn_lb_context *ctx, uint64_t now_ms)
{
    (void)c;
    (void)ctx;
    if (set->n_hosts == 0)
        return NULL;
    for (size_t i = 0; i < set->n_hosts; i++) {
        struct tn_host *h = set->hosts[st->rr++ % set->n_hosts];
        if (tn_host_healthy(h, now_ms))
            return h;
    }
    return set->hosts[st->rr++ % set->n_hosts]; /* panic: all unhealthy */
}

uint64_t tn_lb_hash(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}
