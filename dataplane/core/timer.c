#include "dataplane/core/timer.h"

#include <stdlib.h>

static void swap(struct tn_timers *ts, size_t a, size_t b)
{
    struct tn_timer *t = ts->heap[a];
    ts->heap[a] = ts->heap[b];
    ts->heap[b] = t;
    ts->heap[a]->idx = a + 1;
    ts->heap[b]->idx = b + 1;
}

static void sift_up(struct tn_timers *ts, size_t i)
{
    while (i > 0 && ts->heap[(i - 1) / 2]->when > ts->heap[i]->when) {
        swap(ts, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void sift_down(struct tn_timers *ts, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < ts->n && ts->heap[l]->when < ts->heap[m]->when)
            m = l;
        if (r < ts->n && ts->heap[r]->when < ts->heap[m]->when)
            m = r;
        if (m == i)
            return;
        swap(ts, i, m);
        i = m;
    }
}

static void run(uv_timer_t *h);

static void rearm(struct tn_timers *ts)
{
    if (ts->n == 0) {
        if (ts->armed_for)
            uv_timer_stop(&ts->handle);
        ts->armed_for = 0;
        return;
    }
    uint64_t when = ts->heap[0]->when;
    if (ts->armed_for == when)
        return;
    uint64_t now = uv_now(ts->loop);
    uv_timer_start(&ts->handle, run, when > now ? when - now : 0, 0);
    ts->armed_for = when;
}

static void remove_at(struct tn_timers *ts, size_t i)
{
    struct tn_timer *t = ts->heap[i];
    ts->n--;
    if (i != ts->n) {
        ts->heap[i] = ts->heap[ts->n];
        ts->heap[i]->idx = i + 1;
        sift_down(ts, i);
        sift_up(ts, i);
    }
    t->idx = 0;
}

static void run(uv_timer_t *h)
{
    struct tn_timers *ts = h->data;
    uint64_t now = uv_now(ts->loop);
    ts->armed_for = 0;
    while (ts->n && ts->heap[0]->when <= now) {
        struct tn_timer *t = ts->heap[0];
        remove_at(ts, 0);
        t->cb(t);
    }
    rearm(ts);
}

int tn_timers_init(struct tn_timers *ts, uv_loop_t *loop)
{
    *ts = (struct tn_timers){.loop = loop};
    ts->handle.data = ts;
    return uv_timer_init(loop, &ts->handle);
}

void tn_timers_close(struct tn_timers *ts)
{
    for (size_t i = 0; i < ts->n; i++)
        ts->heap[i]->idx = 0;
    free(ts->heap);
    ts->heap = NULL;
    ts->n = ts->cap = 0;
    uv_close((uv_handle_t *)&ts->handle, NULL);
}

int tn_timer_start(struct tn_timers *ts, struct tn_timer *t, uint64_t ms)
{
    if (t->idx)
        remove_at(ts, t->idx - 1);
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 64;
        struct tn_timer **h = realloc(ts->heap, cap * sizeof(*h));
        if (h == NULL)
            return UV_ENOMEM;
        ts->heap = h;
        ts->cap = cap;
    }
    t->when = uv_now(ts->loop) + ms;
    ts->heap[ts->n] = t;
    t->idx = ++ts->n;
    sift_up(ts, ts->n - 1);
    rearm(ts);
    return 0;
}

void tn_timer_stop(struct tn_timers *ts, struct tn_timer *t)
{
    if (t->idx == 0)
        return;
    remove_at(ts, t->idx - 1);
    rearm(ts);
}
