/* Request mirroring (Envoy's request_mirror_policies), run by the router.
 *
 * For each policy of the route that fires (runtime_fraction) and names a
 * known cluster (cluster, or the first value of cluster_header), a shadow
 * request goes to that cluster with the primary's method, path, headers
 * (as the primary sends them) and body, its authority suffixed "-shadow".
 * The shadow's response is read and dropped; only its status and timing
 * reach the mirror cluster's stats.
 *
 * A shadow owns itself: it takes references on the primary's head and body
 * slices (never a copy), holds its cluster and host, and may outlive the
 * stream. It never slows the primary: it does not pause the client, and
 * when it cannot keep up (circuit breakers, its connection's write side above
 * the high watermark, more body waiting for a connection than the cluster's
 * buffer limit) it is dropped and counted. */
#ifndef TN_MIRROR_H
#define TN_MIRROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/core/slice.h"
#include "mirror/mirror-t.h"

struct tn_stream;
struct tn_route;
struct tn_worker;

/* Where "-shadow" goes in an authority: before the port (":digits" at the
 * end), after the closing ']' of an IPv6 literal, else at the end. A bare
 * IPv6 address (two colons or more, no brackets) gets it at the end. */
size_t tn_mirror_suffix_at(const char *host, size_t len);

/* Writes the shadow authority of host into out (at most cap bytes); returns
 * its length, or 0 when it does not fit (out untouched). */
size_t tn_mirror_shadow_authority(const char *host, size_t len, char *out, size_t cap);

/* Whether a policy with runtime_fraction numerator/denominator fires for a
 * request drawing `random` (Envoy: random % denominator < numerator; a zero
 * denominator never fires). */
bool tn_mirror_sampled(uint32_t numerator, uint32_t denominator, uint64_t random);

/* Starts the route's shadows for stream s, whose primary request head is
 * `head` (as build_head made it: request line, then the host line first);
 * `chunked`: the body is sent chunked; `end_stream`: no body follows;
 * `timeout_ms`: the route's timeout for each shadow (0: none). Takes its own
 * references; shadows are linked into m. Never calls back into the router,
 * never fails the primary (a shadow that cannot start is counted). */
void tn_mirror_start(struct tn_mirror *m, struct tn_stream *s, const struct tn_route *route,
                     const struct tn_slice *head, bool chunked, bool end_stream, uint64_t timeout_ms);

/* A request body slice of the primary (data is not taken over: each shadow
 * takes a reference of its own); end_stream: the request is complete. */
void tn_mirror_body(struct tn_mirror *m, const struct tn_slice *data, bool end_stream);

/* The stream goes away. Shadows whose request is complete go on alone;
 * the others (the client left before the body ended) are reset. m is empty
 * afterwards. */
void tn_mirror_detach(struct tn_mirror *m);

/* The worker stops (the router's worker_close hook, with its state on that
 * worker): every shadow in flight is cancelled and the free list freed. */
void tn_mirror_worker_close(struct tn_mirror_worker *mw);

#endif
