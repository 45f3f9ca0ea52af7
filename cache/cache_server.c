/* What the cache needs from the server, as its factory's hooks
 * (filters/filter.h): each worker's reader slot in the stores' QSBR
 * (registered when the worker starts, announced once per loop iteration,
 * released when its loop has run out), the stores' maintenance on the main
 * thread (every tick, and soon again while frees wait on the workers), the
 * kicker and waker that tie the stores to the server, and the stores' frees
 * at exit. */
#include <time.h>

#include "cache/cache_int.h"
#include "cache/store.h"

/* how soon maintenance runs again while unlinked entries wait for the
 * workers, whom it just woke (rather than at the next 100 ms tick) */
#define FREES_RETRY_MS 2

void tn_cache_worker_start(struct tn_worker *w, void *state)
{
    (void)w;
    *(int *)state = tn_cache_reader_register();
}

void tn_cache_worker_quiescent(struct tn_worker *w, void *state)
{
    (void)w;
    tn_cache_quiescent(*(int *)state);
}

void tn_cache_worker_stop(struct tn_worker *w, void *state)
{
    (void)w;
    tn_cache_reader_unregister(*(int *)state);
}

void tn_cache_main_start(const struct tn_filter_server *srv)
{
    tn_cache_set_kicker(srv->kick, srv->arg);
    tn_cache_set_waker(srv->wake_workers, srv->arg);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

unsigned tn_cache_main_tick(void)
{
    tn_cache_maintain(wall_ms());
    return tn_cache_frees_waiting() ? FREES_RETRY_MS : 0;
}

void tn_cache_main_stop(void)
{
    tn_cache_set_waker(NULL, NULL);
    tn_cache_set_kicker(NULL, NULL);
}

void tn_cache_main_exit(void)
{
    tn_cache_stores_free();
}
