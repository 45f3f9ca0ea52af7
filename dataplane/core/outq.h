/* Writes to a libuv stream with watermarks: the count of bytes handed to the
 * kernel path but not yet written is what backpressure watches. Bytes are
 * slices (their references are held until written); small framing (chunk
 * sizes, CRLF) is copied into the write request. */
#ifndef TN_OUTQ_H
#define TN_OUTQ_H

#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

#include "dataplane/core/slice.h"

struct tn_outq;
/* The queue fell below its low watermark after having been above its high
 * one; the producer may resume. */
typedef void (*tn_outq_low_cb)(struct tn_outq *q);
/* A write failed (status < 0); the stream should be closed. */
typedef void (*tn_outq_error_cb)(struct tn_outq *q, int status);
/* Everything queued so far has been written. */
typedef void (*tn_outq_empty_cb)(struct tn_outq *q);

struct wreq;

/* Writes of one loop iteration are gathered per stream and handed to the
 * kernel together when the iteration's I/O is done (one writev for a
 * response head and its body), by a check handle of the worker's loop. */
struct tn_outq_flusher {
    uv_check_t check;
    uv_idle_t idle; /* keeps the poll from blocking while writes wait */
    struct tn_outq *list;
};

struct tn_outq {
    uv_stream_t *stream;
    struct tn_outq_flusher *fl; /* NULL: every write goes out at once */
    struct wreq *pend;          /* gathered, not yet submitted */
    struct tn_outq *next_flush;
    bool queued;
    size_t inflight; /* bytes in uv_write requests not completed */
    size_t high, low;
    bool above;
    int error; /* first write error, 0 if none */
    tn_outq_low_cb on_low;
    tn_outq_error_cb on_error;
    tn_outq_empty_cb on_empty;
    void *data;
};

void tn_outq_init(struct tn_outq *q, uv_stream_t *stream, size_t high, void *data);

/* Sets up a loop's flusher; 0 or a uv error. */
int tn_outq_flusher_init(struct tn_outq_flusher *fl, uv_loop_t *loop);
/* Submits what is gathered and closes the flusher's handles. */
void tn_outq_flusher_close(struct tn_outq_flusher *fl);
/* Gathers this queue's writes on fl until the end of the loop iteration. */
static inline void tn_outq_gather(struct tn_outq *q, struct tn_outq_flusher *fl)
{
    q->fl = fl;
}

/* Submits gathered writes now (before closing the stream, for instance). */
void tn_outq_flush(struct tn_outq *q);
/* Drops gathered writes that were not submitted (the stream is closing
 * without a graceful end); must be called before the stream's memory goes. */
void tn_outq_dispose(struct tn_outq *q);

/* Queues pre (copied, at most 32 bytes), the slices s[0..n) (references
 * taken over) and post (copied, at most 8 bytes). Returns 0 or a negative
 * uv error; on error the slices are released and on_error is not called. */
int tn_outq_write(struct tn_outq *q, const char *pre, size_t pre_len, struct tn_slice *s, unsigned n,
                  const char *post, size_t post_len);

static inline bool tn_outq_above(const struct tn_outq *q)
{
    return q->above;
}

/* Queues pre (copied) then the first `length` bytes of src, taken off it
 * (references move over; a slice longer than what is left is split): an
 * HTTP/2 DATA frame's header and payload. src must hold `length` bytes.
 * 0, or -1 when a write failed. */
int tn_outq_write_from(struct tn_outq *q, const char *pre, size_t pre_len, struct tn_slices *src, size_t length);

/* Queues a copy of up to n bytes of borrowed memory (nghttp2's frames):
 * they are copied into *blk at *pos, a block the caller keeps between calls
 * (replaced by a fresh one when full, its old reference dropped), and the
 * copy is queued as a slice. Returns the bytes queued (maybe fewer than n:
 * call again for the rest), or -1 when out of memory or the write failed.
 * The caller drops *blk when done with it. */
ssize_t tn_outq_copy(struct tn_outq *q, struct tn_block **blk, size_t *pos, const void *data, size_t n);

/* Frees all but `keep` write requests of this thread's free list. */
void tn_outq_cache_trim(unsigned keep);
/* Frees the calling thread's cache of write requests. */
void tn_outq_cache_drain(void);

#endif
