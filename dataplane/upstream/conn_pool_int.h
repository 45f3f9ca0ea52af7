/* What the HTTP/1.1 pool (conn_pool.c) and the HTTP/2 pool (h2_pool.c)
 * share behind conn_pool.h. Not for other modules. */
#ifndef TN_CONN_POOL_INT_H
#define TN_CONN_POOL_INT_H

#include "dataplane/upstream/conn_pool.h"

/* Every `struct tn_uconn *` handed out begins with this: an HTTP/1.1
 * connection (h2 false) or an HTTP/2 stream (h2 true). */
struct tn__uhandle {
    bool h2;
};

struct tn__h2s;

static inline bool tn__is_h2(const struct tn_uconn *uc)
{
    return ((const struct tn__uhandle *)(const void *)uc)->h2;
}

/* Drops a reference on the pool (its connections hold one each). */
void tn__hpool_unref(struct tn_hpool *p);
/* Queues r as waiting (counted in the pending breaker and stats). */
void tn__hpool_pend_push(struct tn_hpool *p, struct tn_ureq *r);
/* The first waiting request, taken off the queue; NULL if none. */
struct tn_ureq *tn__hpool_pend_pop(struct tn_hpool *p);

/* The HTTP/2 side of conn_pool.h's functions, same contracts. */
int tn__h2_acquire(struct tn_hpool *p, struct tn_ureq *r);
void tn__h2_cancel(struct tn_ureq *r);
void tn__h2_retire(struct tn_hpool *p);
int tn__h2_send_headers(struct tn__h2s *s, const struct tn_header *h, size_t n, bool end_stream);
int tn__h2_write(struct tn__h2s *s, struct tn_slice *sl, unsigned n);
bool tn__h2_write_above(struct tn__h2s *s);
size_t tn__h2_write_queued(const struct tn__h2s *s);
void tn__h2_request_done(struct tn__h2s *s);
const struct sockaddr_storage *tn__h2_local(const struct tn__h2s *s);
void tn__h2_read_pause(struct tn__h2s *s, bool pause);

#endif
