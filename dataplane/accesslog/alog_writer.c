/* Per-thread access log writers.
 *
 * Each destination (a file path, stdout, stderr) has two buffers: lines are
 * formatted into `fill` on the loop thread; at 64 KiB or on the 1 s timer the
 * buffers swap and `out` goes to libuv's thread pool, which writes it whole.
 * While that write is in flight lines keep going into `fill`; when `fill`
 * reaches its cap as well (a slow disk, a stuck pipe) lines are dropped and
 * counted: the loop never blocks and memory stays bounded. */
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "dataplane/accesslog/accesslog.h"
#include "dataplane/core/log.h"

#define FLUSH_BYTES (64 * 1024)
#define BUF_MAX     (2 * 1024 * 1024) /* per buffer: 4 MiB per destination */
#define FLUSH_MS    1000
#define STALL_MS    10000 /* a pipe that takes nothing for this long loses the batch */

/* Writers on all threads share fds 1 and 2; one batch at a time keeps lines
 * whole even when the reader is a pipe (writes over PIPE_BUF may interleave). */
static pthread_mutex_t stdio_lock = PTHREAD_MUTEX_INITIALIZER;

/* Bumped by tn_alog_reopen; a file destination whose fd was opened under an
 * older generation reopens its path before its next batch. */
static atomic_uint reopen_gen;

void tn_alog_reopen(void)
{
    atomic_fetch_add(&reopen_gen, 1);
}

struct dest {
    struct tn_alog_writer *w;
    struct dest *next;
    enum tn_access_log_sink sink;
    char *path;              /* FILE, owned */
    int fd;                  /* FILE: -1 until the pool thread opens it; 1 or 2 for stdout, stderr */
    unsigned gen;            /* reopen generation fd was opened under */
    struct tn_alog_buf fill; /* lines being added (loop thread) */
    size_t fill_lines;
    struct tn_alog_buf out; /* being written (pool thread while busy) */
    size_t out_lines;
    uv_work_t work;
    bool busy;
    int werr; /* errno of the last batch, set on the pool thread */
    bool warned;
};

struct tn_alog_writer {
    uv_loop_t *loop;
    uv_timer_t timer;
    struct dest *dests;
    uint64_t dropped;
    bool closing;
    bool timer_closing;
};

/* ---- on the thread pool --------------------------------------------------- */

/* Writes all of p, waiting out a non-blocking fd; 0 or an errno. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k >= 0) {
            p += k;
            n -= (size_t)k;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, STALL_MS) == 0)
                return EAGAIN;
        } else if (errno != EINTR) {
            return errno;
        }
    }
    return 0;
}

static void write_work(uv_work_t *req)
{
    struct dest *d = req->data;
    d->werr = 0;
    unsigned gen = atomic_load(&reopen_gen);
    if (d->sink == TN_ACCESS_LOG_FILE && d->fd >= 0 && d->gen != gen) {
        close(d->fd); /* log rotation: the path may name a new file now */
        d->fd = -1;
    }
    if (d->fd < 0) {
        d->gen = gen;
        d->fd = open(d->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (d->fd < 0) {
            d->werr = errno;
            return;
        }
    }
    bool shared = d->sink != TN_ACCESS_LOG_FILE;
    if (shared)
        pthread_mutex_lock(&stdio_lock);
    d->werr = write_all(d->fd, d->out.data, d->out.len);
    if (shared)
        pthread_mutex_unlock(&stdio_lock);
}

/* ---- on the loop thread --------------------------------------------------- */

static const char *dest_name(const struct dest *d)
{
    return d->sink == TN_ACCESS_LOG_STDOUT ? "stdout" : d->sink == TN_ACCESS_LOG_STDERR ? "stderr" : d->path;
}

static void drop(struct dest *d, size_t lines, const char *why)
{
    d->w->dropped += lines;
    if (lines == 0 || d->warned)
        return;
    d->warned = true;
    TN_LOG(TN_LOG_WARN, misc, "access log '%s': dropped %zu line(s): %s (further drops are only counted)", dest_name(d),
           lines, why);
}

static void write_done(uv_work_t *req, int status);

/* Hands `fill` to the thread pool unless a write is in flight or it is empty. */
static void submit(struct dest *d)
{
    if (d->busy || d->fill.len == 0)
        return;
    struct tn_alog_buf t = d->out; /* empty: out.len is 0 when not busy */
    d->out = d->fill;
    d->fill = t;
    d->out_lines = d->fill_lines;
    d->fill_lines = 0;
    d->work.data = d;
    if (uv_queue_work(d->w->loop, &d->work, write_work, write_done) != 0) {
        drop(d, d->out_lines, "cannot queue the write");
        d->out.len = d->out_lines = 0;
        return;
    }
    d->busy = true;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct tn_alog_writer *w = h->data;
    while (w->dests != NULL) {
        struct dest *d = w->dests;
        w->dests = d->next;
        if (d->sink == TN_ACCESS_LOG_FILE && d->fd >= 0)
            close(d->fd);
        free(d->path);
        free(d->fill.data);
        free(d->out.data);
        free(d);
    }
    free(w);
}

/* Once closing and nothing is in flight, closes the timer; the writer is
 * freed in its close callback. */
static void maybe_finish(struct tn_alog_writer *w)
{
    for (struct dest *d = w->dests; d != NULL; d = d->next)
        if (d->busy)
            return;
    if (w->timer_closing)
        return;
    w->timer_closing = true;
    uv_close((uv_handle_t *)&w->timer, on_timer_closed);
}

static void write_done(uv_work_t *req, int status)
{
    struct dest *d = req->data;
    struct tn_alog_writer *w = d->w;
    d->busy = false;
    if (status != 0) /* cancelled: write_work never ran */
        drop(d, d->out_lines, "the write was cancelled");
    else if (d->werr != 0)
        drop(d, d->out_lines, strerror(d->werr));
    d->out.len = d->out_lines = 0;
    if (d->out.cap > 4 * FLUSH_BYTES) { /* give back what a burst took */
        free(d->out.data);
        d->out.data = NULL;
        d->out.cap = 0;
    }
    if (w->closing || d->fill.len >= FLUSH_BYTES)
        submit(d);
    if (w->closing)
        maybe_finish(w);
}

static void on_tick(uv_timer_t *t)
{
    struct tn_alog_writer *w = t->data;
    for (struct dest *d = w->dests; d != NULL; d = d->next)
        submit(d);
}

/* Where a log's lines go: FILE /dev/stdout and /dev/stderr share the stdio
 * destinations, so their lines stay whole and in order with the stream loggers'. */
static enum tn_access_log_sink sink_of(const struct tn_access_log *log)
{
    if (log->sink == TN_ACCESS_LOG_FILE && strcmp(log->path, "/dev/stdout") == 0)
        return TN_ACCESS_LOG_STDOUT;
    if (log->sink == TN_ACCESS_LOG_FILE && strcmp(log->path, "/dev/stderr") == 0)
        return TN_ACCESS_LOG_STDERR;
    return log->sink;
}

static struct dest *dest_for(struct tn_alog_writer *w, const struct tn_access_log *log)
{
    enum tn_access_log_sink sink = sink_of(log);
    struct dest *d;
    for (d = w->dests; d != NULL; d = d->next)
        if (d->sink == sink && (sink != TN_ACCESS_LOG_FILE || strcmp(d->path, log->path) == 0))
            return d;
    if ((d = calloc(1, sizeof(*d))) == NULL)
        return NULL;
    if (sink == TN_ACCESS_LOG_FILE && (d->path = strdup(log->path)) == NULL) {
        free(d);
        return NULL;
    }
    d->w = w;
    d->sink = sink;
    d->fd = sink == TN_ACCESS_LOG_STDOUT ? 1 : sink == TN_ACCESS_LOG_STDERR ? 2 : -1;
    d->fill.max = d->out.max = BUF_MAX;
    d->next = w->dests;
    w->dests = d;
    return d;
}

struct tn_alog_writer *tn_alog_writer_new(uv_loop_t *loop)
{
    struct tn_alog_writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->loop = loop;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_tick, FLUSH_MS, FLUSH_MS);
    uv_unref((uv_handle_t *)&w->timer);
    return w;
}

void tn_alog_write(struct tn_alog_writer *w, const struct tn_access_log *log, const struct tn_stream_info *si)
{
    if (log->filter && !tn_alog_filter_pass(log->filter, si))
        return;
    struct dest *d = dest_for(w, log);
    if (d == NULL) {
        w->dropped++;
        return;
    }
    if (!tn_alog_format(log->formatter, si, &d->fill)) {
        drop(d, 1, "the buffers are full (the disk or pipe is too slow) or memory ran out");
        return;
    }
    d->fill_lines++;
    if (d->fill.len >= FLUSH_BYTES)
        submit(d);
}

uint64_t tn_alog_writer_dropped(const struct tn_alog_writer *w)
{
    return w->dropped;
}

void tn_alog_writer_close(struct tn_alog_writer *w)
{
    if (w->closing)
        return;
    w->closing = true;
    for (struct dest *d = w->dests; d != NULL; d = d->next)
        submit(d);
    maybe_finish(w);
}
