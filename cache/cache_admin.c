/* The cache's admin endpoints: GET /cache (totals per store), POST /purge
 * (?path=, ?hostname=), and Kong's proxy-cache API: GET/DELETE
 * /proxy-cache/<key>, DELETE /proxy-cache. Listed in the cache's factory
 * (tn_cache_admin_endpoints); the admin calls them through
 * dataplane/admin/admin_handler.h, all of the admin they see. Main thread. */
#include <string.h>

#include "cache/cache_int.h"
#include "cache/store.h"
#include "dataplane/admin/admin_handler.h"
#include "api/pb/pbjson.h"

static void totals(void *arg, const char *name, struct tn_cache_store *st)
{
    struct tn_admin_response *r = arg;
    struct tn_cache_totals t;
    tn_cache_store_totals(st, &t);
    if (r->body->len > 1)
        tn_buf_addc(r->body, ',');
    tn_buf_adds(r->body, "{\"name\":");
    tn_pbjson_string(r->body, name, strlen(name));
    tn_buf_printf(r->body,
                  ",\"bytes\":%llu,\"max_bytes\":%llu,\"entries\":%llu,\"inserts\":%llu,\"evictions\":%llu,"
                  "\"purged\":%llu,\"expired\":%llu,\"insert_failed\":%llu}",
                  (unsigned long long)t.bytes, (unsigned long long)t.max_bytes, (unsigned long long)t.entries,
                  (unsigned long long)t.inserts, (unsigned long long)t.evictions, (unsigned long long)t.purged,
                  (unsigned long long)t.expired, (unsigned long long)t.insert_failed);
}

static int page_cache(const struct tn_admin_request *req, struct tn_admin_response *r)
{
    (void)req;
    r->ctype = TN_ADMIN_JSON;
    tn_buf_adds(r->body, "[");
    tn_cache_stores_each(totals, r);
    tn_buf_adds(r->body, "]\n");
    return 200;
}

struct purge_args {
    const char *host, *path;
    size_t path_len;
    bool prefix;
    size_t n;
};

static void purge_one(void *arg, const char *name, struct tn_cache_store *st)
{
    struct purge_args *a = arg;
    (void)name;
    a->n += tn_cache_purge(st, a->host, a->host ? strlen(a->host) : 0, a->path, a->path_len, a->prefix);
}

/* POST /purge?hostname=H&path=P: P as the client sent it (query included),
 * a trailing '*' purges the prefix; no hostname: every host. */
static int page_purge(const struct tn_admin_request *req, struct tn_admin_response *r)
{
    struct purge_args a = {.host = tn_admin_param(req, "hostname"), .path = tn_admin_param(req, "path")};
    r->ctype = TN_ADMIN_JSON;
    if (a.path == NULL || a.path[0] != '/') {
        tn_buf_adds(r->body, "{\"message\":\"path=/... is required\"}\n");
        return 400;
    }
    if (a.host && a.host[0] == '\0')
        a.host = NULL;
    a.path_len = strlen(a.path);
    if (a.path[a.path_len - 1] == '*') {
        a.prefix = true;
        a.path_len--;
    }
    tn_cache_stores_each(purge_one, &a);
    tn_buf_printf(r->body, "{\"purged\":%zu}\n", a.n);
    return a.n ? 200 : 404;
}

struct key_args {
    const char *hex;
    struct tn_admin_response *r;
    bool del;
    size_t n;
};

static void key_one(void *arg, const char *name, struct tn_cache_store *st)
{
    struct key_args *a = arg;
    if (a->n)
        return;
    if (a->del) {
        a->n = tn_cache_purge_key(st, a->hex);
        return;
    }
    struct tn_cache_entry *e = tn_cache_find_key(st, a->hex);
    if (e == NULL)
        return;
    struct tn_buf *b = a->r->body;
    a->n = 1;
    tn_buf_adds(b, "{\"key\":\"");
    tn_buf_adds(b, a->hex);
    tn_buf_adds(b, "\",\"cache\":");
    tn_pbjson_string(b, name, strlen(name));
    tn_buf_adds(b, ",\"host\":");
    tn_pbjson_string(b, e->host, e->host_len);
    tn_buf_adds(b, ",\"path\":");
    tn_pbjson_string(b, e->path, e->path_len);
    tn_buf_printf(b,
                  ",\"status\":%d,\"body_len\":%zu,\"hits\":%u,\"inserted_ms\":%llu,\"expire_ms\":%llu,"
                  "\"ttl_s\":%lld,\"age_s\":%lld,\"headers\":{",
                  e->meta.status, e->body_len, atomic_load(&e->hits), (unsigned long long)e->inserted_ms,
                  (unsigned long long)e->expire_ms, (long long)e->meta.lifetime,
                  (long long)tn_cache_age(&e->meta, (int64_t)(e->inserted_ms / 1000)));
    for (size_t i = 0; i < e->n_headers; i++) {
        if (i)
            tn_buf_addc(b, ',');
        tn_pbjson_string(b, e->headers[i].name, e->headers[i].name_len);
        tn_buf_addc(b, ':');
        tn_pbjson_string(b, e->headers[i].value, e->headers[i].value_len);
    }
    tn_buf_adds(b, "}}\n");
    tn_cache_entry_unref(e);
}

static void purge_everything(void *arg, const char *name, struct tn_cache_store *st)
{
    (void)arg, (void)name;
    tn_cache_purge_all(st);
}

/* Kong's API: GET and DELETE */
static int page_proxy_cache(const struct tn_admin_request *req, struct tn_admin_response *r)
{
    const char *path = req->path;
    r->ctype = TN_ADMIN_JSON;
    if (strcmp(path, "/proxy-cache") == 0) {
        if (!req->del) {
            tn_buf_adds(r->body, "{\"message\":\"DELETE /proxy-cache empties the cache; "
                                 "GET /proxy-cache/<key> shows an entry\"}\n");
            return 405;
        }
        tn_cache_stores_each(purge_everything, NULL);
        return 204;
    }
    struct key_args a = {.hex = path + 13, .r = r, .del = req->del};
    if (!req->del && req->post) {
        tn_buf_adds(r->body, "{\"message\":\"GET or DELETE\"}\n");
        return 405;
    }
    tn_cache_stores_each(key_one, &a);
    if (a.n == 0) {
        tn_buf_adds(r->body, "{\"message\":\"Not found\"}\n");
        return 404;
    }
    return req->del ? 204 : 200;
}

const struct tn_admin_endpoint tn_cache_admin_endpoints[] = {
    {.path = "/cache", .handler = page_cache, .help = "response cache totals per store (JSON)"},
    {.path = "/purge", .mutating = true, .handler = page_purge,
     .help = "purge cached responses (?path=P[*], ?hostname=H)"},
    {.path = "/proxy-cache", .prefix = true, .handler = page_proxy_cache}, /* Kong's: not in /help */
    {.path = NULL},
};
