/* Timers of one worker: a binary heap driven by a single uv_timer.
 *
 * Streams and connections embed a tn_timer and arm or disarm it freely
 * (O(log n), no allocation, no handle to close), which keeps per-request
 * timeouts (route, per-try, idle) out of libuv's handle lifecycle. */
#ifndef TN_TIMER_H
#define TN_TIMER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct tn_timer;
typedef void (*tn_timer_cb)(struct tn_timer *t);

struct tn_timer {
    uint64_t when; /* uv_now-based ms */
    size_t idx;    /* heap position + 1; 0 when not armed */
    tn_timer_cb cb;
};

struct tn_timers {
    uv_loop_t *loop;
    uv_timer_t handle;
    struct tn_timer **heap;
    size_t n, cap;
    uint64_t armed_for; /* when the uv timer is set to fire, 0 if stopped */
};

int tn_timers_init(struct tn_timers *ts, uv_loop_t *loop);
/* Closes the uv timer (the memory must live until the loop runs its close
 * callback) and frees the heap; armed timers are forgotten. */
void tn_timers_close(struct tn_timers *ts);

static inline void tn_timer_init(struct tn_timer *t, tn_timer_cb cb)
{
    t->when = 0;
    t->idx = 0;
    t->cb = cb;
}

static inline bool tn_timer_armed(const struct tn_timer *t)
{
    return t->idx != 0;
}

/* Fires t after ms (re-arming an armed timer moves it). 0 or UV_ENOMEM. */
int tn_timer_start(struct tn_timers *ts, struct tn_timer *t, uint64_t ms);
void tn_timer_stop(struct tn_timers *ts, struct tn_timer *t);

#endif
