/* Types of request mirroring that other modules embed (the router's
 * per-request handle; the worker's shadow lists, the router's per-worker
 * state in the filter registry); see mirror.h. */
#ifndef TN_MIRROR_T_H
#define TN_MIRROR_T_H

#include <stdbool.h>
#include <stddef.h>

struct tn_shadow;

/* The shadows of one request, as the router holds them while the stream
 * lives. Zeroed memory is an empty set. */
struct tn_mirror {
    struct tn_shadow *head;
};

/* One worker's shadows: those in flight (cancelled when the worker stops)
 * and a free list, so a shadow costs no malloc in steady traffic. */
struct tn_mirror_worker {
    struct tn_shadow *live, *free;
    unsigned n_live, n_free;
    size_t queued; /* body bytes the live shadows hold that their mirrors have not taken, as last seen */
    bool closed;   /* the worker stopped: ended shadows are freed at once */
};

#endif
