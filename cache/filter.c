/* The cache filter on a stream: look the request up, answer hits from the
 * shared store (HEAD, 304 to conditional requests, byte ranges, Age),
 * revalidate stale entries upstream, fill misses (one upstream request per
 * key across workers, the others wait for it), serve stale entries instead
 * of upstream errors, and handle PURGE. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "cache/cache_int.h"
#include "cache/policy.h"
#include "cache/store.h"
#include "dataplane/core/log.h"
#include "dataplane/http/stream.h"
#include "dataplane/server/worker.h"
#include "filters/route.h"
#include "filters/route_match.h"

#define WAIT_POLL_MS 5
#define WAIT_MAX_MS  5000 /* a coalesced request stops waiting and goes upstream */

enum state {
    ST_PASS = 0, /* not cached: the request and response pass untouched */
    ST_HIT,      /* answered from the store */
    ST_FILL,     /* a miss going upstream; the response may be stored */
    ST_REVALIDATE, /* a stale entry being validated upstream */
    ST_WAIT,     /* another fill of the key is under way */
    ST_TAKEOVER, /* the upstream's answer is replaced by an entry */
};

struct cache_ctx {
    struct tn_stream *s;
    const struct tn_cache_config *f;
    const struct tn_cache_per_route *pr;
    const char *cluster; /* the route's (background refreshes go there) */
    unsigned idx;
    enum state state;
    const char *status_word; /* X-Cache-Status for a filled or passed response */
    char *key;
    size_t key_len;
    uint64_t hash_lo, hash_hi;
    uint64_t purge_gen;
    int64_t request_time;
    struct tn_cc req_cc;
    bool claimed, head, conditional, stored_ok;
    const struct tn_header *client_hdrs; /* the request's headers as the client sent them */
    size_t n_client_hdrs;
    struct tn_cache_entry *entry; /* the stale entry (revalidation, stale-if-error) */
    struct tn_cache_entry *serve; /* what a takeover answers with */
    const char *serve_word;
    bool serve_validated; /* the origin's 304 validated what is served */
    bool invalidate;      /* an unsafe method: a non-error response invalidates */
    /* the response being stored */
    bool storing;
    struct tn_cache_meta meta;
    struct tn_header *resp_hdrs;
    size_t n_resp_hdrs;
    int resp_status;
    struct tn_slices body;
    struct tn_timer timer; /* waiting for another fill, or a takeover next iteration */
    uint64_t wait_until;
};

static struct tn_worker *W(struct cache_ctx *c)
{
    return tn_stream_worker(c->s);
}

static void count(struct cache_ctx *c, uint32_t slot)
{
    tn_stat_inc(W(c)->shard, slot);
}

static int64_t now_s(struct cache_ctx *c)
{
    return (int64_t)(tn_worker_wall_ms(W(c)) / 1000);
}

static bool name_is(const struct tn_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && memcmp(h->name, name, n) == 0;
}

/* --- the key ------------------------------------------------------------------- */

/* "host\npath\n" then "name: value\n" for each vary_headers entry. With
 * vary_query_params the query keeps only those parameters, in the
 * configured order (sorted at config time), so ?b=2&a=1 and ?a=1&b=2 share
 * an entry. */
static int build_key(struct cache_ctx *c, const struct tn_request *rq)
{
    const struct tn_cache_config *cfg = c->f;
    size_t cap = rq->host_len + rq->path_len + 64;
    for (size_t i = 0; i < rq->n_headers; i++)
        cap += rq->headers[i].name_len + rq->headers[i].value_len + 4;
    char *k = tn_stream_alloc(c->s, cap);
    if (k == NULL)
        return -1;
    size_t at = 0;
    for (size_t i = 0; i < rq->host_len; i++) /* the host is case-insensitive */
        k[at++] = (char)(rq->host[i] >= 'A' && rq->host[i] <= 'Z' ? rq->host[i] + 32 : rq->host[i]);
    k[at++] = '\n';
    const char *q = memchr(rq->path, '?', rq->path_len);
    if (cfg->n_vary_query_params == 0 || q == NULL) {
        memcpy(k + at, rq->path, rq->path_len);
        at += rq->path_len;
    } else {
        size_t pl = (size_t)(q - rq->path), ql = rq->path_len - pl - 1;
        memcpy(k + at, rq->path, pl);
        at += pl;
        char sep = '?';
        for (size_t i = 0; i < cfg->n_vary_query_params; i++) {
            const char *name = cfg->vary_query_params[i];
            size_t nl = strlen(name);
            for (const char *p = q + 1, *end = q + 1 + ql; p < end;) {
                const char *amp = memchr(p, '&', (size_t)(end - p));
                const char *seg_end = amp ? amp : end;
                if ((size_t)(seg_end - p) >= nl && memcmp(p, name, nl) == 0 && (p + nl == seg_end || p[nl] == '=')) {
                    k[at++] = sep;
                    sep = '&';
                    memcpy(k + at, p, (size_t)(seg_end - p));
                    at += (size_t)(seg_end - p);
                }
                p = amp ? amp + 1 : end;
            }
        }
    }
    k[at++] = '\n';
    for (size_t i = 0; i < cfg->n_vary_headers; i++) {
        const char *name = cfg->vary_headers[i];
        size_t nl = strlen(name);
        memcpy(k + at, name, nl);
        at += nl;
        k[at++] = ':';
        for (size_t j = 0; j < rq->n_headers; j++)
            if (rq->headers[j].name_len == nl && memcmp(rq->headers[j].name, name, nl) == 0) {
                k[at++] = ' ';
                memcpy(k + at, rq->headers[j].value, rq->headers[j].value_len);
                at += rq->headers[j].value_len;
            }
        k[at++] = '\n';
    }
    c->key = k;
    c->key_len = at;
    tn_cache_hash(k, at, &c->hash_lo, &c->hash_hi);
    return 0;
}

/* --- answering from an entry ------------------------------------------------------ */

static void entry_block_release(struct tn_block *b)
{
    tn_cache_entry_unref(b->owner);
    free(b);
}

/* Fields of a stored entry not replayed as they are (Age is computed). */
static bool skip_stored(const struct tn_header *h)
{
    return !tn_cache_header_stored(h);
}

/* The status headers Kong and CDNs send, appended to hv at *n (room for 4). */
static void add_status_headers(struct cache_ctx *c, struct tn_header *hv, size_t *n, const char *word,
                               const char *keyhex, unsigned hits)
{
    const struct tn_cache_config *cfg = c->f;
    if (cfg->status_headers) {
        hv[(*n)++] = (struct tn_header){.name = "x-cache-status", .name_len = 14, .value = word,
                                        .value_len = (uint32_t)strlen(word)};
        if (keyhex) {
            char *k = tn_stream_strdup(c->s, keyhex, 32);
            if (k)
                hv[(*n)++] = (struct tn_header){.name = "x-cache-key", .name_len = 11, .value = k, .value_len = 32};
        }
        if (hits) {
            char num[24];
            int l = snprintf(num, sizeof(num), "%u", hits);
            char *v = tn_stream_strdup(c->s, num, (size_t)l);
            if (v)
                hv[(*n)++] = (struct tn_header){.name = "x-cache-hits", .name_len = 12, .value = v,
                                                .value_len = (uint32_t)l};
        }
    }
    if (cfg->name)
        hv[(*n)++] = (struct tn_header){.name = "x-served-by", .name_len = 11, .value = cfg->name,
                                        .value_len = (uint32_t)strlen(cfg->name)};
}

/* Answers the request from e (the caller keeps its reference): 304 to a
 * conditional request that matches, 206/416 to a satisfiable/unsatisfiable
 * single range, headers only to HEAD, else the stored response. validated:
 * the origin has just said e is current (a 304 for this request), so it
 * goes without Age (RFC 9111 5.1: Age says it was not validated). */
static void serve_entry(struct cache_ctx *c, struct tn_cache_entry *e, const char *word, bool validated)
{
    struct tn_request *rq = tn_stream_request(c->s);
    unsigned hits = atomic_fetch_add_explicit(&e->hits, 1, memory_order_relaxed) + 1;
    struct tn_header *hv = tn_stream_alloc(c->s, (e->n_headers + 8) * sizeof(*hv));
    if (hv == NULL) {
        tn_stream_local_reply(c->s, 500, "out of memory", TN_RF_LOCAL_RESET, "cache_oom");
        return;
    }
    size_t n = 0;
    int status = e->meta.status;
    uint64_t first = 0, last = e->body_len ? e->body_len - 1 : 0, len = e->body_len;
    /* the client's own conditions and range (validators the cache added
     * for its revalidation are not the client's) */
    const struct tn_header *ch = c->client_hdrs ? c->client_hdrs : rq->headers;
    size_t nch = c->client_hdrs ? c->n_client_hdrs : rq->n_headers;
    bool not_modified = tn_cache_not_modified(&e->meta, ch, nch);
    char cr[96];
    if (not_modified) {
        status = 304;
        len = 0;
    } else if (status == 200) {
        const struct tn_header *rh = tn_headers_find(ch, nch, "range", 5);
        int rr = rh ? tn_cache_range(rh->value, rh->value_len, e->body_len, &first, &last) : -1;
        if (rr == 1) {
            int l = snprintf(cr, sizeof(cr), "bytes */%zu", e->body_len);
            hv[n++] = (struct tn_header){.name = "content-range", .name_len = 13,
                                         .value = tn_stream_strdup(c->s, cr, (size_t)l), .value_len = (uint32_t)l};
            status = 416;
            len = 0;
        } else if (rr == 0) {
            int l = snprintf(cr, sizeof(cr), "bytes %llu-%llu/%zu", (unsigned long long)first,
                             (unsigned long long)last, e->body_len);
            hv[n++] = (struct tn_header){.name = "content-range", .name_len = 13,
                                         .value = tn_stream_strdup(c->s, cr, (size_t)l), .value_len = (uint32_t)l};
            status = 206;
            len = last - first + 1;
        }
    }
    for (size_t i = 0; i < e->n_headers; i++) {
        const struct tn_header *h = &e->headers[i];
        if (skip_stored(h))
            continue;
        /* a 304 carries the validators and caching headers, not the representation's */
        if (status == 304 && (name_is(h, "content-type") || name_is(h, "content-encoding") ||
                              name_is(h, "content-language") || name_is(h, "content-range")))
            continue;
        if (status == 416 && name_is(h, "content-range"))
            continue;
        hv[n++] = *h;
    }
    char age[24];
    int al = snprintf(age, sizeof(age), "%lld", (long long)tn_cache_age(&e->meta, now_s(c)));
    if (!validated)
        hv[n++] = (struct tn_header){.name = "age", .name_len = 3,
                                     .value = tn_stream_strdup(c->s, age, (size_t)al), .value_len = (uint32_t)al};
    char hex[33];
    tn_cache_key_hex(e, hex);
    add_status_headers(c, hv, &n, word, hex, hits);
    struct tn_response r = {
        .status = status,
        .headers = hv,
        .n_headers = n,
        .content_length = status == 304 ? -1 : (int64_t)len,
        .end_stream = len == 0 || c->head || status == 304,
    };
    if (status == 304)
        r.content_length = -1;
    tn_stream_info(c->s)->response_code_details = "cache_hit";
    tn_stream_encode_headers_from(c->s, c->idx, &r);
    if (r.end_stream)
        return;
    struct tn_block *b = tn_block_foreign(e, entry_block_release);
    if (b == NULL) {
        tn_stream_reset(c->s, TN_RF_LOCAL_RESET);
        return;
    }
    tn_cache_entry_ref(e);
    struct tn_slice sl = tn_slice_of(b, e->body + first, len);
    tn_block_unref(b);
    tn_stream_encode_data_from(c->s, c->idx, &sl, true);
}

/* --- the request ---------------------------------------------------------------- */

static bool method_cached(const struct tn_cache_config *cfg, const struct tn_request *rq)
{
    if (cfg->n_request_methods == 0)
        return (rq->method_len == 3 && memcmp(rq->method, "GET", 3) == 0) ||
               (rq->method_len == 4 && memcmp(rq->method, "HEAD", 4) == 0);
    for (size_t i = 0; i < cfg->n_request_methods; i++)
        if (strlen(cfg->request_methods[i]) == rq->method_len &&
            memcmp(cfg->request_methods[i], rq->method, rq->method_len) == 0)
            return true;
    return false;
}

static bool has_conditional(const struct tn_request *rq)
{
    for (size_t i = 0; i < rq->n_headers; i++)
        if (name_is(&rq->headers[i], "if-none-match") || name_is(&rq->headers[i], "if-modified-since") ||
            name_is(&rq->headers[i], "if-match") || name_is(&rq->headers[i], "if-unmodified-since") ||
            name_is(&rq->headers[i], "if-range"))
            return true;
    return false;
}

/* The request goes upstream asking whether e is still current: the
 * client's own conditions are replaced by the entry's validators (the
 * client's are answered from the refreshed entry). */
static int add_validators(struct cache_ctx *c, const struct tn_cache_entry *e)
{
    struct tn_request *rq = tn_stream_request(c->s);
    struct tn_header *hv = tn_stream_alloc(c->s, (rq->n_headers + 2) * sizeof(*hv));
    if (hv == NULL)
        return -1;
    c->client_hdrs = rq->headers;
    c->n_client_hdrs = rq->n_headers;
    size_t n = 0;
    for (size_t i = 0; i < rq->n_headers; i++) {
        const struct tn_header *h = &rq->headers[i];
        if (name_is(h, "if-none-match") || name_is(h, "if-modified-since") || name_is(h, "range") ||
            name_is(h, "if-range"))
            continue;
        hv[n++] = *h;
    }
    if (e->meta.etag[0])
        hv[n++] = (struct tn_header){.name = "if-none-match", .name_len = 13, .value = e->meta.etag,
                                     .value_len = (uint32_t)strlen(e->meta.etag)};
    if (e->meta.last_modified >= 0) {
        char d[30];
        tn_http_date_format(e->meta.last_modified, d);
        hv[n++] = (struct tn_header){.name = "if-modified-since", .name_len = 17,
                                     .value = tn_stream_strdup(c->s, d, 29), .value_len = 29};
    }
    rq->headers = hv;
    rq->n_headers = n;
    return 0;
}

static void release_claim(struct cache_ctx *c)
{
    if (c->claimed)
        tn_cache_fill_release(c->f->store, c->hash_lo);
    c->claimed = false;
}

/* Goes upstream to fill the key (or just past the cache). */
static enum tn_filter_status go_upstream(struct cache_ctx *c, enum state st, bool from_wait)
{
    c->state = st;
    c->purge_gen = tn_cache_purge_gen(c->f->store);
    c->request_time = now_s(c);
    if (from_wait) {
        tn_stream_continue_decoding(c->s, c->idx);
        return TN_FILTER_STOP;
    }
    return TN_FILTER_CONTINUE;
}

static void on_wait(struct tn_timer *t);

/* A miss: fill it, or wait for the fill another request started. */
static enum tn_filter_status miss(struct cache_ctx *c, bool from_wait)
{
    struct tn_request *rq = tn_stream_request(c->s);
    if (c->req_cc.only_if_cached) {
        count(c, c->f->stats.miss);
        tn_stream_local_reply(c->s, 504, "Gateway Timeout", 0, "cache_only_if_cached");
        return TN_FILTER_STOP;
    }
    bool busy;
    c->claimed = tn_cache_fill_claim(c->f->store, c->hash_lo, &busy);
    if (busy && !rq->has_body && !c->head) {
        c->state = ST_WAIT;
        if (!from_wait) {
            c->wait_until = tn_worker_now(W(c)) + WAIT_MAX_MS;
            count(c, c->f->stats.coalesced);
        }
        tn_timer_start(&W(c)->timers, &c->timer, WAIT_POLL_MS);
        return TN_FILTER_STOP;
    }
    c->status_word = "Miss";
    count(c, c->f->stats.miss);
    return go_upstream(c, ST_FILL, from_wait);
}

/* Looks the key up and decides; from_wait: again, after waiting. */
static enum tn_filter_status decide(struct cache_ctx *c, bool from_wait)
{
    const struct tn_cache_config *cfg = c->f;
    struct tn_request *rq = tn_stream_request(c->s);
    struct tn_cache_entry *e =
        tn_cache_lookup(c->f->store, c->key, c->key_len, rq->headers, rq->n_headers, tn_worker_wall_ms(W(c)));
    if (e == NULL)
        return miss(c, from_wait);
    if (tn_headers_find(rq->headers, rq->n_headers, "authorization", 13) && !e->meta.authorization_ok) {
        tn_cache_entry_unref(e);
        c->status_word = "Bypass";
        count(c, c->f->stats.bypass);
        return go_upstream(c, ST_PASS, from_wait);
    }
    enum tn_cache_use use = tn_cache_usable(cfg, c->pr, &e->meta, &c->req_cc, now_s(c));
    switch (use) {
    case TN_USE_FRESH:
    case TN_USE_STALE_OK:
    case TN_USE_STALE_WHILE_REVALIDATE:
        count(c, c->f->stats.hit);
        if (use != TN_USE_FRESH)
            count(c, c->f->stats.stale_served);
        /* stale-while-revalidate: served now, refreshed in the background
         * (one refresh per key at a time) */
        if (use == TN_USE_STALE_WHILE_REVALIDATE &&
            tn_cache_refresh_start(W(c), cfg, c->pr, c->cluster, e, rq->headers, rq->n_headers))
            count(c, c->f->stats.refresh);
        c->state = ST_HIT;
        serve_entry(c, e, "Hit", false);
        tn_cache_entry_unref(e);
        return TN_FILTER_STOP;
    case TN_USE_REVALIDATE:
        if (c->req_cc.only_if_cached) {
            tn_cache_entry_unref(e);
            count(c, c->f->stats.miss);
            tn_stream_local_reply(c->s, 504, "Gateway Timeout", 0, "cache_only_if_cached");
            return TN_FILTER_STOP;
        }
        if (c->head || add_validators(c, e)) {
            tn_cache_entry_unref(e);
            c->status_word = "Refresh";
            count(c, c->f->stats.refresh);
            return go_upstream(c, ST_FILL, from_wait);
        }
        c->entry = e;
        c->status_word = "Refresh";
        count(c, c->f->stats.refresh);
        return go_upstream(c, ST_REVALIDATE, from_wait);
    case TN_USE_UNUSABLE:
    default:
        tn_cache_entry_unref(e);
        return miss(c, from_wait);
    }
}

static void on_wait(struct tn_timer *t)
{
    struct cache_ctx *c = (struct cache_ctx *)((char *)t - offsetof(struct cache_ctx, timer));
    if (c->state != ST_WAIT)
        return;
    if (tn_worker_now(W(c)) >= c->wait_until) {
        /* waited long enough: this one goes upstream too */
        c->status_word = "Miss";
        count(c, c->f->stats.miss);
        go_upstream(c, ST_FILL, true);
        return;
    }
    decide(c, true);
}

/* PURGE /path (Host: h): X-Purge-Key, X-Purge-Method, a trailing "**"
 * for a prefix; 200 {"purged": N}, 404, 401. */
static enum tn_filter_status purge(struct cache_ctx *c, struct tn_request *rq)
{
    const struct tn_cache_config *cfg = c->f;
    if (cfg->purge_key && cfg->purge_key[0]) {
        const struct tn_header *k = tn_headers_find(rq->headers, rq->n_headers, "x-purge-key", 11);
        size_t kl = strlen(cfg->purge_key);
        if (k == NULL || k->value_len != kl || memcmp(k->value, cfg->purge_key, kl) != 0) {
            tn_stream_local_reply(c->s, 401, "{\"message\":\"Unauthorized\"}\n", 0, "cache_purge_unauthorized");
            return TN_FILTER_STOP;
        }
    }
    /* X-Purge-Method: only GET and HEAD are stored, so another method purges nothing */
    const struct tn_header *m = tn_headers_find(rq->headers, rq->n_headers, "x-purge-method", 14);
    bool none = m && !((m->value_len == 3 && memcmp(m->value, "GET", 3) == 0) ||
                       (m->value_len == 4 && memcmp(m->value, "HEAD", 4) == 0));
    size_t pl = rq->path_len;
    bool prefix = false;
    if (pl >= 2 && memcmp(rq->path + pl - 2, "**", 2) == 0) {
        if (!cfg->purge_allow_wildcard) {
            tn_stream_local_reply(c->s, 400, "{\"message\":\"wildcard purge is not allowed\"}\n", 0,
                                  "cache_purge_wildcard");
            return TN_FILTER_STOP;
        }
        prefix = true;
        pl -= 2;
    }
    size_t n = none ? 0 : tn_cache_purge(c->f->store, rq->host, rq->host_len, rq->path, pl, prefix);
    char body[64];
    snprintf(body, sizeof(body), "{\"purged\":%zu}\n", n);
    tn_stream_local_reply(c->s, n ? 200 : 404, body, 0, n ? "cache_purged" : "cache_purge_not_found");
    return TN_FILTER_STOP;
}

static enum tn_filter_status on_request_headers(struct tn_stream *s, void *config, void *ctx, bool end_stream)
{
    const struct tn_cache_config *f = config;
    const struct tn_cache_config *cfg = f;
    struct cache_ctx *c = ctx;
    struct tn_request *rq = tn_stream_request(s);
    (void)end_stream;
    c->s = s;
    c->f = f;
    c->idx = tn_stream_filter_index(s, ctx);
    tn_timer_init(&c->timer, on_wait);
    tn_slices_init(&c->body);
    if (cfg->disabled || f->store == NULL)
        return TN_FILTER_CONTINUE;
    /* whatever the route says: its response may invalidate entries that
     * another route (another method, say) stored */
    c->invalidate = !tn_cache_method_safe(rq->method, rq->method_len);
    c->pr = tn_cache_route_config(c->s, f, &c->cluster);
    if (c->pr && c->pr->disabled) {
        c->status_word = "Bypass"; /* the route says not to cache */
        count(c, f->stats.bypass);
        return TN_FILTER_CONTINUE;
    }
    if (cfg->purge && rq->method_len == 5 && memcmp(rq->method, "PURGE", 5) == 0)
        return purge(c, rq);
    c->head = rq->method_len == 4 && memcmp(rq->method, "HEAD", 4) == 0;
    if (!method_cached(cfg, rq) || rq->upgrade) { /* an upgrade (WebSocket) is a tunnel, never stored */
        c->status_word = "Bypass";
        count(c, f->stats.bypass);
        return TN_FILTER_CONTINUE;
    }
    if (cfg->ignore_request_cache_control)
        memset(&c->req_cc, 0, sizeof(c->req_cc)), c->req_cc.max_age = c->req_cc.s_maxage = c->req_cc.max_stale =
                                                      c->req_cc.min_fresh = c->req_cc.stale_while_revalidate =
                                                          c->req_cc.stale_if_error = TN_CC_ABSENT;
    else
        tn_cc_parse(rq->headers, rq->n_headers, true, &c->req_cc);
    if (build_key(c, rq)) {
        c->status_word = "Bypass";
        return TN_FILTER_CONTINUE;
    }
    c->conditional = has_conditional(rq);
    return decide(c, false);
}

/* --- the response ------------------------------------------------------------------- */

/* Answers with c->serve at the next loop iteration (the upstream's
 * response, which it replaces, is still being delivered now). */
static void on_takeover(struct tn_timer *t)
{
    struct cache_ctx *c = (struct cache_ctx *)((char *)t - offsetof(struct cache_ctx, timer));
    struct tn_cache_entry *e = c->serve;
    c->serve = NULL;
    if (e == NULL)
        return;
    serve_entry(c, e, c->serve_word, c->serve_validated);
    tn_cache_entry_unref(e);
}

static void takeover(struct cache_ctx *c, struct tn_cache_entry *e, const char *word, bool validated)
{
    release_claim(c);
    c->state = ST_TAKEOVER;
    c->serve = e;
    c->serve_word = word;
    c->serve_validated = validated;
    tn_timer_init(&c->timer, on_takeover);
    tn_timer_start(&W(c)->timers, &c->timer, 0);
}

/* A 304 from upstream for c->entry: a new entry with the stored body and
 * the headers the 304 updates (RFC 9111 4.3.4); NULL when it cannot be
 * stored (then the old entry answers once more). */
static struct tn_cache_entry *refreshed(struct cache_ctx *c, struct tn_response *r)
{
    struct tn_cache_entry *old = c->entry;
    size_t n_meta, cap = old->n_headers + r->n_headers;
    struct tn_header *hv = tn_stream_alloc(c->s, (cap + 1) * sizeof(*hv));
    if (hv == NULL)
        return NULL;
    size_t n = tn_cache_merge_304(old->headers, old->n_headers, r->headers, r->n_headers, hv, &n_meta);
    struct tn_request *rq = tn_stream_request(c->s);
    struct tn_cache_meta meta;
    if (tn_cache_storable(c->f, c->pr, "GET", 3, rq->headers, rq->n_headers, old->meta.status, hv, n_meta,
                          c->request_time, now_s(c), &meta) != TN_STORE_OK)
        return NULL;
    struct tn_cache_entry_spec sp = {
        .key = old->key, .key_len = old->key_len, .host = old->host, .host_len = old->host_len, .path = old->path,
        .path_len = old->path_len, .vary = old->vary, .n_vary = old->n_vary, .meta = &meta, .headers = hv,
        .n_headers = n, .body_len = old->body_len, .now_ms = tn_worker_wall_ms(W(c))};
    sp.expire_ms = tn_cache_expire_ms(c->f, c->pr, &meta, sp.now_ms);
    struct tn_cache_entry *e = tn_cache_entry_new(c->f->store, &sp);
    if (e == NULL)
        return NULL;
    memcpy((char *)e->body, old->body, old->body_len);
    tn_cache_entry_ref(e); /* one for the store, one to answer with */
    if (!tn_cache_insert(e, c->purge_gen)) {
        tn_cache_entry_unref(e);
        return NULL;
    }
    count(c, c->f->stats.insert);
    return e;
}

/* The Vary names of a response with the request's values, in stream memory. */
static int vary_of(struct cache_ctx *c, const struct tn_response *r, struct tn_header **out, size_t *n_out)
{
    struct tn_request *rq = tn_stream_request(c->s);
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < r->n_headers; i++)
        if (name_is(&r->headers[i], "vary"))
            cap += r->headers[i].value_len / 2 + 1;
    struct tn_header *v = cap ? tn_stream_alloc(c->s, cap * sizeof(*v)) : NULL;
    for (size_t i = 0; i < r->n_headers && v; i++) {
        if (!name_is(&r->headers[i], "vary"))
            continue;
        const char *s;
        size_t sl, pos = 0;
        while (n < cap && tn_list_next(r->headers[i].value, r->headers[i].value_len, &pos, &s, &sl)) {
            const char *p = s + sl;
            char *name = tn_stream_strdup(c->s, s, (size_t)(p - s));
            if (name == NULL)
                return -1;
            for (char *q = name; *q; q++)
                *q = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);
            /* the request's values, joined with "," as the store compares them */
            size_t total = 0, count = 0;
            for (size_t j = 0; j < rq->n_headers; j++)
                if (rq->headers[j].name_len == (size_t)(p - s) && memcmp(rq->headers[j].name, name, (size_t)(p - s)) == 0)
                    total += rq->headers[j].value_len + (count++ ? 1 : 0);
            char *val = NULL;
            if (count) {
                val = tn_stream_alloc(c->s, total + 1);
                if (val == NULL)
                    return -1;
                size_t at = 0;
                for (size_t j = 0; j < rq->n_headers; j++)
                    if (rq->headers[j].name_len == (size_t)(p - s) &&
                        memcmp(rq->headers[j].name, name, (size_t)(p - s)) == 0) {
                        if (at)
                            val[at++] = ',';
                        memcpy(val + at, rq->headers[j].value, rq->headers[j].value_len);
                        at += rq->headers[j].value_len;
                    }
            }
            v[n++] = (struct tn_header){.name = name, .name_len = (uint32_t)(p - s), .value = val,
                                        .value_len = (uint32_t)total};
        }
    }
    *out = v;
    *n_out = n;
    return 0;
}

/* Decides whether the upstream's response is stored, and adds the status
 * headers to it. */
static void begin_store(struct cache_ctx *c, struct tn_response *r)
{
    const struct tn_cache_config *cfg = c->f;
    struct tn_request *rq = tn_stream_request(c->s);
    c->storing = false;
    if (c->state != ST_FILL && c->state != ST_REVALIDATE)
        return;
    if (c->head || tn_headers_find(r->headers, r->n_headers, "set-cookie", 10))
        return;
    if (r->content_length > 0 && (uint64_t)r->content_length > cfg->max_entry_bytes)
        return;
    enum tn_storable why = tn_cache_storable(cfg, c->pr, rq->method, rq->method_len, rq->headers, rq->n_headers,
                                             r->status, r->headers, r->n_headers, c->request_time, now_s(c), &c->meta);
    if (why != TN_STORE_OK)
        return;
    c->resp_hdrs = tn_stream_alloc(c->s, (r->n_headers + 1) * sizeof(*c->resp_hdrs));
    if (c->resp_hdrs == NULL)
        return;
    c->n_resp_hdrs = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct tn_header *h = &r->headers[i];
        if (skip_stored(h))
            continue;
        char *nm = tn_stream_strdup(c->s, h->name, h->name_len), *v = tn_stream_strdup(c->s, h->value, h->value_len);
        if (nm == NULL || v == NULL)
            return;
        c->resp_hdrs[c->n_resp_hdrs++] =
            (struct tn_header){.name = nm, .name_len = h->name_len, .value = v, .value_len = h->value_len};
    }
    c->resp_status = r->status;
    c->storing = true;
}

static void finish_store(struct cache_ctx *c)
{
    struct tn_request *rq = tn_stream_request(c->s);
    struct tn_header *vary;
    size_t n_vary;
    c->storing = false;
    struct tn_response fake = {.headers = c->resp_hdrs, .n_headers = c->n_resp_hdrs};
    if (vary_of(c, &fake, &vary, &n_vary))
        goto out;
    struct tn_cache_entry_spec sp = {
        .key = c->key, .key_len = c->key_len, .host = rq->host, .host_len = rq->host_len, .path = rq->path,
        .path_len = rq->path_len, .vary = vary, .n_vary = n_vary, .meta = &c->meta, .headers = c->resp_hdrs,
        .n_headers = c->n_resp_hdrs, .body_len = c->body.bytes, .now_ms = tn_worker_wall_ms(W(c))};
    sp.expire_ms = tn_cache_expire_ms(c->f, c->pr, &c->meta, sp.now_ms);
    struct tn_cache_entry *e = tn_cache_entry_new(c->f->store, &sp);
    if (e == NULL) {
        count(c, c->f->stats.insert_failed);
        goto out;
    }
    size_t at = 0;
    for (size_t i = 0; i < c->body.n; i++) {
        struct tn_slice *sl = tn_slices_at(&c->body, i);
        memcpy((char *)e->body + at, sl->p, sl->len);
        at += sl->len;
    }
    if (tn_cache_insert(e, c->purge_gen))
        count(c, c->f->stats.insert);
out:
    tn_slices_clear(&c->body);
    release_claim(c); /* after the insert: waiters find the entry */
}

/* Invalidates the entries for host and path (RFC 9111 4.4). When the key
 * is made of host and path alone, only their bucket is walked. */
static size_t invalidate_uri(struct cache_ctx *c, const char *host, size_t host_len, const char *path, size_t path_len)
{
    const struct tn_cache_config *cfg = c->f;
    char *key = NULL;
    size_t kl = 0;
    if (cfg->n_vary_headers == 0 && cfg->n_vary_query_params == 0 &&
        (key = tn_stream_alloc(c->s, host_len + path_len + 2)) != NULL) {
        for (size_t i = 0; i < host_len; i++) /* as build_key writes it */
            key[kl++] = (char)(host[i] >= 'A' && host[i] <= 'Z' ? host[i] + 32 : host[i]);
        key[kl++] = '\n';
        memcpy(key + kl, path, path_len);
        kl += path_len;
        key[kl++] = '\n';
    }
    return tn_cache_purge_uri(cfg->store, key, kl, host, host_len, path, path_len);
}

/* A non-error response to an unsafe method: the target URI's entries go,
 * and those of Location and Content-Location when on the same origin. */
static void invalidate(struct cache_ctx *c, const struct tn_response *r)
{
    static const char *const fields[] = {"location", "content-location"};
    struct tn_request *rq = tn_stream_request(c->s);
    size_t n = invalidate_uri(c, rq->host, rq->host_len, rq->path, rq->path_len);
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const struct tn_header *h = tn_headers_find(r->headers, r->n_headers, fields[i], strlen(fields[i]));
        char path[2048];
        size_t pl = h ? tn_cache_same_origin_path(h->value, h->value_len, rq->scheme, rq->host, rq->host_len,
                                                  rq->path, rq->path_len, path, sizeof(path))
                      : 0;
        if (pl > 0 && !(pl == rq->path_len && memcmp(path, rq->path, pl) == 0))
            n += invalidate_uri(c, rq->host, rq->host_len, path, pl);
    }
    if (n)
        TN_LOG(TN_LOG_DEBUG, cache, "%.*s %.*s invalidated %zu entries", (int)rq->method_len, rq->method,
               (int)rq->path_len, rq->path, n);
}

static bool upstream_failed(const struct tn_response *r, const struct tn_stream_info *si)
{
    return r->status >= 500 || (si->response_flags & (TN_RF_UPSTREAM_CONNECTION_FAILURE | TN_RF_NO_HEALTHY_UPSTREAM |
                                                      TN_RF_UPSTREAM_REQUEST_TIMEOUT | TN_RF_UPSTREAM_OVERFLOW |
                                                      TN_RF_UPSTREAM_CONNECTION_TERMINATION));
}

static enum tn_filter_status on_response_headers(struct tn_stream *s, void *config, void *ctx, struct tn_response *r)
{
    struct cache_ctx *c = ctx;
    (void)config;
    if (c->f == NULL || c->state == ST_HIT || c->state == ST_TAKEOVER)
        return TN_FILTER_CONTINUE;
    if (c->invalidate && r->status >= 200 && r->status < 400)
        invalidate(c, r);
    /* the stale entry answers instead of an upstream error (stale-if-error) */
    if ((c->state == ST_REVALIDATE || c->state == ST_FILL) && upstream_failed(r, tn_stream_info(s))) {
        struct tn_cache_entry *e = c->entry;
        if (e == NULL) {
            struct tn_request *rq = tn_stream_request(s);
            e = tn_cache_lookup(c->f->store, c->key, c->key_len, rq->headers, rq->n_headers, tn_worker_wall_ms(W(c)));
        }
        if (e && tn_cache_stale_if_error(c->f, c->pr, &e->meta, &c->req_cc, now_s(c))) {
            if (e == c->entry)
                c->entry = NULL;
            count(c, c->f->stats.stale_served);
            tn_stream_info(s)->response_code_details = "cache_stale_if_error";
            takeover(c, e, "Hit", false);
            return TN_FILTER_STOP;
        }
        if (e && e != c->entry)
            tn_cache_entry_unref(e);
    }
    if (c->state == ST_REVALIDATE && r->status == 304 && c->entry) {
        struct tn_cache_entry *e = refreshed(c, r);
        if (e == NULL) {
            e = c->entry;
            c->entry = NULL;
        }
        takeover(c, e, "Refresh", true);
        return TN_FILTER_STOP;
    }
    if (c->state == ST_REVALIDATE && c->entry && r->status == 404)
        tn_cache_kill(c->entry); /* gone at the origin */
    begin_store(c, r);
    if (!c->storing)
        release_claim(c); /* waiters go upstream themselves */
    if (c->status_word && (c->f->status_headers || c->f->name)) {
        struct tn_header *hv = tn_stream_alloc(s, (r->n_headers + 4) * sizeof(*hv));
        if (hv) {
            memcpy(hv, r->headers, r->n_headers * sizeof(*hv));
            size_t n = r->n_headers;
            char hex[33], *hp = NULL;
            if (c->key) {
                static const char digits[] = "0123456789abcdef";
                uint64_t v[2] = {c->hash_hi, c->hash_lo};
                for (int i = 0; i < 32; i++)
                    hex[i] = digits[(v[i / 16] >> (60 - 4 * (i % 16))) & 15];
                hex[32] = '\0';
                hp = hex;
            }
            add_status_headers(c, hv, &n, c->status_word, hp, 0);
            r->headers = hv;
            r->n_headers = n;
        }
    }
    if (c->storing && r->end_stream)
        finish_store(c);
    return TN_FILTER_CONTINUE;
}

static enum tn_filter_status on_response_body(struct tn_stream *s, void *config, void *ctx, struct tn_slice *data,
                                              bool end_stream)
{
    struct cache_ctx *c = ctx;
    (void)s, (void)config;
    if (c->f == NULL)
        return TN_FILTER_CONTINUE;
    if (c->state == ST_TAKEOVER) {
        tn_slice_release(data); /* the upstream's answer is replaced */
        return TN_FILTER_STOP;
    }
    if (!c->storing)
        return TN_FILTER_CONTINUE;
    if (data->len) {
        if (c->body.bytes + data->len > c->f->max_entry_bytes ||
            tn_slices_push(&c->body, tn_slice_of(data->blk, data->p, data->len))) {
            c->storing = false;
            tn_slices_clear(&c->body);
            release_claim(c);
        }
    }
    if (c->storing && end_stream)
        finish_store(c);
    return TN_FILTER_CONTINUE;
}

static void on_destroy(struct tn_stream *s, void *config, void *ctx)
{
    struct cache_ctx *c = ctx;
    (void)config;
    if (c->f == NULL)
        return;
    tn_timer_stop(&tn_stream_worker(s)->timers, &c->timer);
    release_claim(c);
    if (c->entry)
        tn_cache_entry_unref(c->entry);
    if (c->serve)
        tn_cache_entry_unref(c->serve);
    c->entry = c->serve = NULL;
    tn_slices_dispose(&c->body);
}

/* --- the filter's config ---------------------------------------------------------------- */

int tn_cache_attach_store(struct tn_cache_config *cfg, struct tn_err *err)
{
    cfg->store = tn_cache_store_get(cfg->name ? cfg->name : "", cfg->max_size_bytes);
    if (cfg->store == NULL)
        return tn_err_fail(err, "cannot create the cache store (out of memory, or more than 16 named caches)");
    return 0;
}

int tn_cache_register_stats(void *config, struct tn_stats *st, const char *stat_prefix)
{
    struct tn_cache_config *f = config;
    static const struct {
        const char *name;
        enum tn_stat_kind kind;
        size_t off;
    } rows[] = {
#define TN_X(n, k) {"cache." #n, TN_STAT_##k, offsetof(struct tn_cache_stats, n)},
        TN_CACHE_STATS(TN_X)
#undef TN_X
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint32_t slot = tn_stats_add(st, TN_SCOPE_HTTP, stat_prefix, rows[i].name, rows[i].kind);
        if (slot == UINT32_MAX)
            return -1;
        *(uint32_t *)((char *)&f->stats + rows[i].off) = slot;
    }
    f->stats_registered = true;
    return 0;
}

void tn_cache_refresh_stats(void *config, _Atomic uint64_t *main_shard)
{
    struct tn_cache_config *f = config;
    struct tn_cache_totals t;
    if (!f->stats_registered || f->store == NULL)
        return;
    tn_cache_store_totals(f->store, &t);
    tn_stat_set(main_shard, f->stats.bytes, t.bytes);
    tn_stat_set(main_shard, f->stats.entries, t.entries);
    tn_stat_set(main_shard, f->stats.eviction, t.evictions);
    tn_stat_set(main_shard, f->stats.purge, t.purged); /* by PURGE, the admin and Kong's API alike */
}

const struct tn_cache_per_route *tn_cache_route_config(struct tn_stream *s, const struct tn_cache_config *f,
                                                       const char **cluster)
{
    /* the cache runs before the router: it matches the route itself to find
     * the route's or virtual host's typed_per_filter_config */
    struct tn_route_table *rt = tn_stream_routes(s);
    const struct tn_request *rq = tn_stream_request(s);
    (void)f;
    *cluster = NULL;
    if (rt == NULL)
        return NULL;
    const struct tn_vhost *vh = tn_route_table_vhost(rt, rq->host, rq->host_len);
    if (vh == NULL)
        return NULL;
    struct tn_request_view view = {.method = rq->method, .method_len = rq->method_len, .path = rq->path,
                                   .path_len = rq->path_len, .host = rq->host, .host_len = rq->host_len,
                                   .scheme = rq->scheme, .headers = rq->headers, .n_headers = rq->n_headers};
    const struct tn_route *r = tn_route_match(vh, &view);
    *cluster = r ? r->cluster : NULL;
    return tn_route_filter_config(r, vh, &tn_cache_factory);
}

const struct tn_filter_ops tn_cache_ops = {
    .ctx_size = sizeof(struct cache_ctx),
    .on_request_headers = on_request_headers,
    .on_response_headers = on_response_headers,
    .on_response_body = on_response_body,
    .on_destroy = on_destroy,
};
