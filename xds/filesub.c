#include "xds/filesub.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataplane/core/file.h"
#include "dataplane/core/log.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "xds/bootstrap.h"
#include "api/pb/pbconv.h"
#include "api/pb/unsupported.h"

typedef Envoy__Service__Discovery__V3__DiscoveryResponse pb_response;

#define SETTLE_MS     50   /* an event burst (truncate, write, rename) becomes one read */
#define SETTLE_MAX_MS 500  /* ...but a steady stream of events does not put the read off for longer */
#define POLL_MS       1000 /* Envoy's fallback interval when inotify is unavailable */

struct tn_filesub {
    uv_loop_t *loop;
    char *path;
    char *dir;    /* what is watched */
    char *base;   /* the file's name in dir; NULL: any event in dir counts */
    bool polling; /* the directory could not be watched: path is stat'ed every POLL_MS */
    bool gone;    /* the file was seen removed (logged once per removal) */
    bool closing;
    int open_handles;
    uv_fs_event_t event;
    uv_timer_t poll;
    bool seen_exists; /* the path's stat before the last read, for the poll */
    struct stat seen;
    uv_timer_t settle;
    uint64_t settle_since; /* loop time of the first event the settle timer is waiting out */
    tn_ads_update_cb cb;
    void *arg;
    char *last; /* bytes of the last accepted read, to skip rewrites of the same */
    size_t last_len;
    struct tn_filesub_stats stats;
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* ---- reading ---------------------------------------------------------------- */

/* The file's text as a DiscoveryResponse, or NULL with err set to
 * "<file>: [line N: ]<reason>". */
static pb_response *parse(const char *path, const char *text, size_t len, struct tn_err *err)
{
    struct tn_err e;
    ProtobufCMessage *m;

    tn_err_init(&e);
    if (ends_with(path, ".pb_text")) {
        tn_err_fail(err, "%s: text-format protos (.pb_text) are not supported; use .yaml, .json or .pb", path);
        return NULL;
    }
    if (ends_with(path, ".pb")) {
        m = protobuf_c_message_unpack(&envoy__service__discovery__v3__discovery_response__descriptor, NULL, len,
                                      (const uint8_t *)text);
        if (m == NULL) {
            tn_err_fail(err, "%s: not a serialized envoy.service.discovery.v3.DiscoveryResponse", path);
        } else if (tn_unsupported_check(m, &e)) {
            tn_err_fail(err, "%s: %s", path, e.msg);
            protobuf_c_message_free_unpacked(m, NULL);
            m = NULL;
        }
        return (pb_response *)m;
    }
    m = tn_pbconv_yaml_msg(text, len, &envoy__service__discovery__v3__discovery_response__descriptor, &e);
    if (m != NULL && tn_unsupported_check(m, &e)) {
        protobuf_c_message_free_unpacked(m, NULL);
        m = NULL;
    }
    if (m == NULL) {
        if (e.line > 0)
            tn_err_fail(err, "%s: line %d: %s", path, e.line, e.msg);
        else
            tn_err_fail(err, "%s: %s", path, e.msg);
    }
    return (pb_response *)m;
}

/* Hands r to the consumer: its answer, -1 with err set also when out of
 * memory (then cb is not called). */
static int deliver(struct tn_filesub *f, const pb_response *r, struct tn_err *err)
{
    struct tn_ads_resource *res = calloc(r->n_resources ? r->n_resources : 1, sizeof(*res));
    if (res == NULL)
        return tn_err_fail(err, "out of memory");
    for (size_t i = 0; i < r->n_resources; i++)
        res[i] = (struct tn_ads_resource){.type_url = r->resources[i]->type_url ? r->resources[i]->type_url : "",
                                          .value = r->resources[i]->value.data,
                                          .len = r->resources[i]->value.len};
    const char *type_url = r->type_url && *r->type_url ? r->type_url : r->n_resources ? res[0].type_url : "";
    struct tn_ads_update u = {.type_url = type_url,
                              .version = r->version_info ? r->version_info : "",
                              .delta = false,
                              .resources = res,
                              .n_resources = r->n_resources};
    int rc = f->cb(f->arg, &u, err);
    if (rc != 0 && !err->failed)
        tn_err_fail(err, "rejected without a reason");
    free(res);
    return rc == 0 ? 0 : -1;
}

/* Keeps `text` (now owned here) as the last accepted bytes and `version` as
 * the accepted version. */
static void accepted(struct tn_filesub *f, char *text, size_t len, const char *version)
{
    free(f->last);
    f->last = text;
    f->last_len = len;
    free(f->stats.version);
    f->stats.version = strdup(version); /* NULL when out of memory: shown as no version */
    f->stats.update_success++;
}

/* Reads the file and, when its bytes are new, parses and delivers them. */
static void refresh(struct tn_filesub *f, bool initial)
{
    struct tn_err err;
    struct stat st;
    size_t len = 0;

    tn_err_init(&err);
    /* Taken before the read: a change after it shows as a different stat at the next poll. */
    f->seen_exists = stat(f->path, &st) == 0;
    bool missing = !f->seen_exists && errno == ENOENT;
    if (f->seen_exists)
        f->seen = st;
    if (missing && !initial) {
        if (!f->gone)
            TN_LOG(TN_LOG_INFO, config, "%s was removed; its last good config stays", f->path);
        f->gone = true;
        return;
    }
    f->gone = missing; /* missing at start: counted below, not logged again as removed */
    char *text = tn_read_file(f->path, &len, &err);
    if (text != NULL && f->last != NULL && len == f->last_len && memcmp(text, f->last, len) == 0) {
        TN_LOG(TN_LOG_DEBUG, config, "%s: unchanged", f->path);
        free(text);
        return;
    }
    f->stats.update_attempt++;
    pb_response *r = text ? parse(f->path, text, len, &err) : NULL;
    if (r == NULL) {
        f->stats.update_failure++;
        TN_LOG(TN_LOG_WARN, config, "filesystem config update failure: %s", err.msg);
        free(text);
        return;
    }
    if (deliver(f, r, &err) != 0) {
        f->stats.update_rejected++;
        TN_LOG(TN_LOG_WARN, config, "%s: version '%s' rejected: %s", f->path, r->version_info, err.msg);
        free(text);
    } else {
        TN_LOG(TN_LOG_DEBUG, config, "%s: version '%s' accepted (%zu resources)", f->path, r->version_info,
               r->n_resources);
        accepted(f, text, len, r->version_info);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* ---- watching --------------------------------------------------------------- */

static void on_settle(uv_timer_t *t)
{
    struct tn_filesub *f = t->data;
    if (!f->closing)
        refresh(f, false);
}

static void changed(struct tn_filesub *f)
{
    uint64_t now = uv_now(f->loop);
    if (f->closing)
        return;
    if (!uv_is_active((uv_handle_t *)&f->settle))
        f->settle_since = now;
    else if (now - f->settle_since >= SETTLE_MAX_MS)
        return;
    uv_timer_start(&f->settle, on_settle, SETTLE_MS, 0);
}

static void on_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    struct tn_filesub *f = h->data;
    if (status < 0)
        TN_LOG(TN_LOG_WARN, config, "watching %s for %s: %s", f->dir, f->path, uv_strerror(status));
    /* No name (some platforms) or an error: re-read, the byte check keeps it cheap. */
    if (f->base == NULL || filename == NULL || status < 0 || strcmp(filename, f->base) == 0)
        changed(f);
}

static bool same_stat(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* The fallback: our own stat poll rather than uv_fs_poll, whose baseline is
 * its first (asynchronous) stat — a file written between our first read and
 * that stat would never be seen. Comparing with the stat refresh() took
 * before reading has no such gap. */
static void on_poll(uv_timer_t *t)
{
    struct tn_filesub *f = t->data;
    struct stat st;
    bool exists = stat(f->path, &st) == 0;
    if (exists != f->seen_exists || (exists && !same_stat(&st, &f->seen)))
        changed(f);
}

static void on_close(uv_handle_t *h)
{
    struct tn_filesub *f = h->data;
    if (--f->open_handles > 0)
        return;
    free(f->path);
    free(f->dir);
    free(f->base);
    free(f->last);
    free(f->stats.version);
    free(f);
}

/* Watches f->dir, else polls f->path. 0, or a libuv error when neither starts. */
static int watch(struct tn_filesub *f)
{
    int rc = uv_fs_event_init(f->loop, &f->event);
    if (rc == 0) {
        f->event.data = f;
        f->open_handles++;
        rc = uv_fs_event_start(&f->event, on_event, f->dir, 0);
        if (rc == 0)
            return 0;
        uv_close((uv_handle_t *)&f->event, on_close);
    }
    TN_LOG(TN_LOG_WARN, config, "cannot watch %s (%s): polling %s every %d ms", f->dir, uv_strerror(rc), f->path,
           POLL_MS);
    f->polling = true;
    uv_timer_init(f->loop, &f->poll);
    f->poll.data = f;
    f->open_handles++;
    return uv_timer_start(&f->poll, on_poll, POLL_MS, POLL_MS);
}

/* dir and base for `path` (or any event in watched_directory). */
static int split(struct tn_filesub *f, const char *path, const char *watched_directory)
{
    const char *slash = strrchr(path, '/');
    if (watched_directory != NULL)
        return (f->dir = strdup(watched_directory)) ? 0 : -1;
    if ((f->base = strdup(slash ? slash + 1 : path)) == NULL)
        return -1;
    if (slash == NULL)
        f->dir = strdup(".");
    else
        f->dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
    return f->dir ? 0 : -1;
}

struct tn_filesub *tn_filesub_new(uv_loop_t *loop, const char *path, const char *watched_directory, tn_ads_update_cb cb,
                                  void *arg, struct tn_err *err)
{
    struct tn_filesub *f = calloc(1, sizeof(*f));
    int rc;

    if (f == NULL || (f->path = strdup(path)) == NULL || split(f, path, watched_directory) != 0) {
        tn_err_fail(err, "%s: out of memory", path);
        goto err;
    }
    f->loop = loop;
    f->cb = cb;
    f->arg = arg;
    uv_timer_init(loop, &f->settle);
    f->settle.data = f;
    f->open_handles++;
    if ((rc = watch(f)) != 0) {
        tn_err_fail(err, "%s: cannot watch it: %s", path, uv_strerror(rc));
        goto err;
    }
    refresh(f, true);
    return f;
err:
    if (f != NULL && f->open_handles > 0) {
        tn_filesub_close(f);
    } else if (f != NULL) {
        free(f->path);
        free(f->dir);
        free(f->base);
        free(f);
    }
    return NULL;
}

const struct tn_filesub_stats *tn_filesub_stats(const struct tn_filesub *f)
{
    return &f->stats;
}

void tn_filesub_close(struct tn_filesub *f)
{
    if (f == NULL || f->closing)
        return;
    f->closing = true;
    uv_close((uv_handle_t *)&f->settle, on_close);
    uv_close((uv_handle_t *)(f->polling ? (void *)&f->poll : (void *)&f->event), on_close);
}
