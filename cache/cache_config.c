/* Compiles the cache filter's configuration: Envoy's CacheConfig, tern's
 * superset CacheConfig, and tern's CachePerRoute (docs/cache.md). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/cache.h"
#include "cache/cache_int.h"
#include "envoy/extensions/filters/http/cache/v3/cache.pb-c.h"
#include "envoy/extensions/http/cache/simple_http_cache/v3/config.pb-c.h"
#include "tern/extensions/filters/http/cache/v1/cache.pb-c.h"
#include "api/pb/types.h"

typedef Envoy__Extensions__Filters__Http__Cache__V3__CacheConfig pb_envoy_config;
typedef Tern__Extensions__Filters__Http__Cache__V1__CacheConfig pb_tern_config;
typedef Tern__Extensions__Filters__Http__Cache__V1__CachePerRoute pb_per_route;

#define DEFAULT_MAX_SIZE  (256ull * 1024 * 1024)
#define DEFAULT_MAX_ENTRY (1024ull * 1024)

/* RFC 9110 section 15.1: the statuses cacheable by default (heuristically). */
static const uint32_t default_codes[] = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501};
static const char *const default_methods[] = {"GET", "HEAD"};
/* RFC 9213: the targeted field for a CDN, which tern is. */
static const char *const default_targeted[] = {"cdn-cache-control"};

/* ---- helpers ------------------------------------------------------------ */

/* Milliseconds of an optional Duration: TN_CACHE_UNSET when absent, -1 with
 * err set (at `field`) when negative. Same conversion as route.c's. */
static int duration(const Google__Protobuf__Duration *d, const char *field, uint64_t *ms, struct tn_err *err)
{
    if (d == NULL) {
        *ms = TN_CACHE_UNSET;
        return 0;
    }
    if (d->seconds < 0 || d->nanos < 0) {
        tn_err_push(err, ".%s", field);
        return tn_err_fail(err, "must not be negative");
    }
    *ms = (uint64_t)d->seconds * 1000 + (uint64_t)d->nanos / 1000000;
    return 0;
}

/* RFC 9110 tchar: what methods, header names and media type parts are made of. */
static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && strchr("!#$%&'*+-.^_`|~", *s) == NULL)
            return false;
    return true;
}

/* Whether s can be sent (or compared) as a header value: no control bytes. */
static bool is_header_value(const char *s)
{
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return false;
    return true;
}

static char *case_dup(struct tn_pool *pool, const char *s, int (*conv)(int))
{
    char *p = tn_pool_strdup(pool, s);
    for (char *q = p; *q; q++)
        *q = (char)conv((unsigned char)*q);
    return p;
}

static void destroy_config(void *p)
{
    struct tn_cache_config *c = p;
    tn_pool_dispose(&c->pool);
    free(c);
}

/* ---- what both configs share -------------------------------------------- */

/* Storage: the in-memory cache, named by Envoy's SimpleHttpCacheConfig or left out. */
static int compile_storage(const Google__Protobuf__Any *any, struct tn_err *err)
{
    if (any == NULL)
        return 0;
    size_t mark = tn_err_push(err, ".typed_config");
    ProtobufCMessage *storage = tn_any_unpack(
        (const ProtobufCMessage *)any,
        &envoy__extensions__http__cache__simple_http_cache__v3__simple_http_cache_config__descriptor, err);
    if (storage == NULL)
        return -1;
    protobuf_c_message_free_unpacked(storage, NULL);
    tn_err_pop(err, mark);
    return 0;
}

static int compile_allowed_vary(struct tn_cache_config *c, Envoy__Type__Matcher__V3__StringMatcher **pb, size_t n,
                                struct tn_err *err)
{
    c->allowed_vary = tn_pool_alloc(&c->pool, n * sizeof(*c->allowed_vary) + 1);
    for (size_t i = 0; i < n; i++) {
        size_t mark = tn_err_push(err, ".allowed_vary_headers[%zu]", i);
        if (tn_string_matcher_compile(&c->pool, pb[i], &c->allowed_vary[i], err))
            return -1;
        tn_err_pop(err, mark);
    }
    c->n_allowed_vary = n;
    return 0;
}

/* The defaults both configs start from (cache.h). */
static struct tn_cache_config *new_config(struct tn_err *err)
{
    struct tn_cache_config *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    tn_pool_init(&c->pool);
    c->max_size_bytes = DEFAULT_MAX_SIZE;
    c->max_entry_bytes = DEFAULT_MAX_ENTRY;
    c->default_ttl_ms = c->ttl_override_ms = TN_CACHE_UNSET;
    c->n_response_codes = sizeof(default_codes) / sizeof(default_codes[0]);
    c->response_codes = tn_pool_alloc(&c->pool, sizeof(default_codes));
    memcpy(c->response_codes, default_codes, sizeof(default_codes));
    c->n_request_methods = sizeof(default_methods) / sizeof(default_methods[0]);
    c->request_methods = tn_pool_alloc(&c->pool, sizeof(default_methods));
    memcpy(c->request_methods, default_methods, sizeof(default_methods));
    c->targeted_cc = (const char **)default_targeted;
    c->n_targeted_cc = 1;
    return c;
}

/* ---- Envoy's CacheConfig ------------------------------------------------ */

static int compile_envoy(struct tn_cache_config *c, const pb_envoy_config *pb, struct tn_err *err)
{
    if (compile_storage(pb->typed_config, err))
        return -1;
    if (pb->key_creator_params != NULL) {
        tn_err_push(err, ".key_creator_params");
        return tn_err_fail(err, "not supported by tern; use tern's CacheConfig vary_query_params");
    }
    if (compile_allowed_vary(c, pb->allowed_vary_headers, pb->n_allowed_vary_headers, err))
        return -1;
    if (pb->max_body_bytes > c->max_size_bytes) {
        tn_err_push(err, ".max_body_bytes");
        return tn_err_fail(err, "%u is more than the cache's size (%llu); use tern's CacheConfig max_size_bytes",
                           pb->max_body_bytes, (unsigned long long)c->max_size_bytes);
    }
    if (pb->max_body_bytes)
        c->max_entry_bytes = pb->max_body_bytes;
    c->ignore_request_cache_control = pb->ignore_request_cache_control_header;
    c->disabled = pb->disabled && pb->disabled->value;
    /* Envoy keeps expired entries, until evicted for room, to revalidate them */
    c->keep_stale = true;
    return 0;
}

/* ---- tern's CacheConfig ------------------------------------------------- */

static int compile_codes(struct tn_cache_config *c, const pb_tern_config *pb, struct tn_err *err)
{
    if (pb->n_response_codes == 0)
        return 0;
    c->response_codes = tn_pool_alloc(&c->pool, pb->n_response_codes * sizeof(uint32_t));
    for (size_t i = 0; i < pb->n_response_codes; i++) {
        if (pb->response_codes[i] < 100 || pb->response_codes[i] > 599) {
            tn_err_push(err, ".response_codes[%zu]", i);
            return tn_err_fail(err, "%u is not an HTTP status code", pb->response_codes[i]);
        }
        c->response_codes[i] = pb->response_codes[i];
    }
    c->n_response_codes = pb->n_response_codes;
    return 0;
}

static int compile_methods(struct tn_cache_config *c, const pb_tern_config *pb, struct tn_err *err)
{
    if (pb->n_request_methods == 0)
        return 0;
    c->request_methods = tn_pool_alloc(&c->pool, pb->n_request_methods * sizeof(char *));
    for (size_t i = 0; i < pb->n_request_methods; i++) {
        const char *m = pb->request_methods[i];
        size_t mark = tn_err_push(err, ".request_methods[%zu]", i);
        if (!is_token(m))
            return tn_err_fail(err, "'%s' is not a method", m);
        char *up = case_dup(&c->pool, m, toupper);
        if (strcmp(up, "GET") != 0 && strcmp(up, "HEAD") != 0)
            return tn_err_fail(err, "%s is not cacheable: only the safe methods GET and HEAD are", up);
        c->request_methods[i] = up;
        tn_err_pop(err, mark);
    }
    c->n_request_methods = pb->n_request_methods;
    return 0;
}

static int compile_content_types(struct tn_cache_config *c, const pb_tern_config *pb, struct tn_err *err)
{
    c->content_types = tn_pool_alloc(&c->pool, pb->n_content_types * sizeof(char *) + 1);
    for (size_t i = 0; i < pb->n_content_types; i++) {
        char *t = case_dup(&c->pool, pb->content_types[i], tolower);
        char *slash = strchr(t, '/');
        if (slash != NULL)
            *slash = '\0';
        bool ok = slash != NULL && is_token(t) && is_token(slash + 1);
        if (slash != NULL)
            *slash = '/';
        if (!ok) {
            tn_err_push(err, ".content_types[%zu]", i);
            return tn_err_fail(err, "'%s' is not a media type (type/subtype, without parameters)",
                               pb->content_types[i]);
        }
        c->content_types[i] = t;
    }
    c->n_content_types = pb->n_content_types;
    return 0;
}

static int compile_vary(struct tn_cache_config *c, const pb_tern_config *pb, struct tn_err *err)
{
    c->vary_headers = tn_pool_alloc(&c->pool, pb->n_vary_headers * sizeof(char *) + 1);
    for (size_t i = 0; i < pb->n_vary_headers; i++) {
        if (!is_token(pb->vary_headers[i])) {
            tn_err_push(err, ".vary_headers[%zu]", i);
            return tn_err_fail(err, "'%s' is not a header name", pb->vary_headers[i]);
        }
        c->vary_headers[i] = case_dup(&c->pool, pb->vary_headers[i], tolower);
    }
    c->n_vary_headers = pb->n_vary_headers;
    c->vary_query_params = tn_pool_alloc(&c->pool, pb->n_vary_query_params * sizeof(char *) + 1);
    for (size_t i = 0; i < pb->n_vary_query_params; i++) {
        if (pb->vary_query_params[i][0] == '\0') {
            tn_err_push(err, ".vary_query_params[%zu]", i);
            return tn_err_fail(err, "must not be empty");
        }
        c->vary_query_params[i] = tn_pool_strdup(&c->pool, pb->vary_query_params[i]);
    }
    c->n_vary_query_params = pb->n_vary_query_params;
    return 0;
}

static int compile_sizes_and_ttls(struct tn_cache_config *c, const pb_tern_config *pb, struct tn_err *err)
{
    if (pb->max_size_bytes)
        c->max_size_bytes = pb->max_size_bytes;
    if (pb->max_entry_bytes)
        c->max_entry_bytes = pb->max_entry_bytes;
    if (c->max_entry_bytes > c->max_size_bytes) {
        tn_err_push(err, ".max_entry_bytes");
        return tn_err_fail(err, "%llu is more than max_size_bytes (%llu)", (unsigned long long)c->max_entry_bytes,
                           (unsigned long long)c->max_size_bytes);
    }
    if (duration(pb->default_ttl, "default_ttl", &c->default_ttl_ms, err) ||
        duration(pb->ttl_override, "ttl_override", &c->ttl_override_ms, err) ||
        duration(pb->stale_ttl, "stale_ttl", &c->stale_ttl_ms, err))
        return -1;
    if (c->stale_ttl_ms == TN_CACHE_UNSET)
        c->stale_ttl_ms = 0;
    c->only_if_origin_cacheable = pb->only_if_origin_cacheable;
    c->ignore_cache_control = pb->ignore_cache_control;
    if (c->ignore_cache_control && c->only_if_origin_cacheable) {
        tn_err_push(err, ".ignore_cache_control");
        return tn_err_fail(err, "only_if_origin_cacheable and ignore_cache_control are mutually exclusive");
    }
    if (c->ignore_cache_control && c->default_ttl_ms == TN_CACHE_UNSET && c->ttl_override_ms == TN_CACHE_UNSET) {
        tn_err_push(err, ".ignore_cache_control");
        return tn_err_fail(err, "needs default_ttl or ttl_override: without either nothing would be cached");
    }
    return 0;
}

static int compile_targeted(struct tn_cache_config *c, const pb_tern_config *pb, struct tn_err *err)
{
    if (pb->ignore_targeted_cache_control) {
        if (pb->n_targeted_cache_control > 0) {
            tn_err_push(err, ".ignore_targeted_cache_control");
            return tn_err_fail(err, "targeted_cache_control is set too: ignore the list or drop it");
        }
        c->n_targeted_cc = 0;
        return 0;
    }
    if (pb->n_targeted_cache_control == 0)
        return 0;
    c->targeted_cc = tn_pool_alloc(&c->pool, pb->n_targeted_cache_control * sizeof(char *));
    for (size_t i = 0; i < pb->n_targeted_cache_control; i++) {
        const char *name = pb->targeted_cache_control[i];
        if (!is_token(name) || strcasecmp(name, "cache-control") == 0) {
            tn_err_push(err, ".targeted_cache_control[%zu]", i);
            return tn_err_fail(err, "'%s' is not a header name other than Cache-Control", name);
        }
        c->targeted_cc[i] = case_dup(&c->pool, name, tolower);
    }
    c->n_targeted_cc = pb->n_targeted_cache_control;
    return 0;
}

static int compile_tern(struct tn_cache_config *c, const pb_tern_config *pb, struct tn_err *err)
{
    c->tern = true;
    if (pb->name[0] != '\0') {
        if (!is_header_value(pb->name)) {
            tn_err_push(err, ".name");
            return tn_err_fail(err, "must not hold control characters (it is sent as X-Served-By)");
        }
        c->name = tn_pool_strdup(&c->pool, pb->name);
    }
    if (compile_sizes_and_ttls(c, pb, err))
        return -1;
    c->ignore_client_refresh = pb->ignore_client_refresh;
    c->ignore_client_refresh_immutable = pb->ignore_client_refresh_immutable;
    if (compile_codes(c, pb, err) || compile_methods(c, pb, err) || compile_content_types(c, pb, err) ||
        compile_vary(c, pb, err))
        return -1;
    if (pb->purge != NULL) {
        if (!is_header_value(pb->purge->key)) {
            tn_err_push(err, ".purge.key");
            return tn_err_fail(err, "must not hold control characters (it is compared with X-Purge-Key)");
        }
        c->purge = true;
        c->purge_key = tn_pool_strdup(&c->pool, pb->purge->key);
        c->purge_allow_wildcard = pb->purge->allow_wildcard;
    }
    c->status_headers = pb->status_headers ? pb->status_headers->value : true;
    if (compile_storage(pb->typed_config, err))
        return -1;
    if (compile_allowed_vary(c, pb->allowed_vary_headers, pb->n_allowed_vary_headers, err))
        return -1;
    c->ignore_request_cache_control = pb->ignore_request_cache_control_header;
    return compile_targeted(c, pb, err);
}

static void *create_config(const ProtobufCMessage *msg, struct tn_err *err)
{
    struct tn_cache_config *c = new_config(err);
    if (c == NULL)
        return NULL;
    int rc = msg->descriptor == &tern__extensions__filters__http__cache__v1__cache_config__descriptor
                 ? compile_tern(c, (const pb_tern_config *)msg, err)
                 : compile_envoy(c, (const pb_envoy_config *)msg, err);
    if (rc != 0 || tn_cache_attach_store(c, err)) {
        destroy_config(c);
        return NULL;
    }
    return c;
}

/* ---- CachePerRoute ------------------------------------------------------ */

static void *create_route_config(const ProtobufCMessage *msg, struct tn_err *err)
{
    const pb_per_route *pb = (const pb_per_route *)msg;
    struct tn_cache_per_route *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    r->disabled = pb->disabled;
    if (duration(pb->default_ttl, "default_ttl", &r->default_ttl_ms, err) ||
        duration(pb->ttl_override, "ttl_override", &r->ttl_override_ms, err) ||
        duration(pb->stale_ttl, "stale_ttl", &r->stale_ttl_ms, err)) {
        free(r);
        return NULL;
    }
    return r;
}

static const ProtobufCMessageDescriptor *const alt_config_types[] = {
    &tern__extensions__filters__http__cache__v1__cache_config__descriptor,
    NULL,
};

const struct tn_filter_factory tn_cache_factory = {
    .name = "envoy.filters.http.cache",
    .config_type = &envoy__extensions__filters__http__cache__v3__cache_config__descriptor,
    .terminal = false,
    .create_config = create_config,
    .destroy_config = destroy_config,
    .alt_config_types = alt_config_types,
    .route_config_type = &tern__extensions__filters__http__cache__v1__cache_per_route__descriptor,
    .create_route_config = create_route_config,
    .destroy_route_config = free,
    .ops = &tn_cache_ops,
    .register_stats = tn_cache_register_stats,
    .refresh_stats = tn_cache_refresh_stats,
    .worker_state_size = sizeof(int),
    .worker_start = tn_cache_worker_start,
    .worker_quiescent = tn_cache_worker_quiescent,
    .worker_stop = tn_cache_worker_stop,
    .main_start = tn_cache_main_start,
    .main_tick = tn_cache_main_tick,
    .main_stop = tn_cache_main_stop,
    .main_exit = tn_cache_main_exit,
    .admin_endpoints = tn_cache_admin_endpoints,
};
