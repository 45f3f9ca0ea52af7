#include <stdlib.h>

#include "cache/cache.h"
#include "envoy/extensions/filters/http/cache/v3/cache.pb-c.h"
#include "envoy/extensions/http/cache/simple_http_cache/v3/config.pb-c.h"
#include "xds/types.h"

typedef Envoy__Extensions__Filters__Http__Cache__V3__CacheConfig pb_cache_config;

static void destroy_config(void *p)
{
    struct tn_cache_config *c = p;
    tn_pool_dispose(&c->pool);
    free(c);
}

static void *create_config(const ProtobufCMessage *msg, struct tn_err *err)
{
    const pb_cache_config *pb = (const void *)msg;
    struct tn_cache_config *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    tn_pool_init(&c->pool);
    /* Storage: the in-memory cache, named by Envoy's SimpleHttpCacheConfig or left out. */
    if (pb->typed_config != NULL) {
        size_t mark = tn_err_push(err, ".typed_config");
        ProtobufCMessage *storage = tn_any_unpack(
            (const ProtobufCMessage *)pb->typed_config,
            &envoy__extensions__http__cache__simple_http_cache__v3__simple_http_cache_config__descriptor, err);
        if (storage == NULL)
            goto err;
        protobuf_c_message_free_unpacked(storage, NULL);
        tn_err_pop(err, mark);
    }
    if (pb->key_creator_params != NULL) {
        tn_err_push(err, ".key_creator_params");
        tn_err_fail(err, "not supported by tern; use tern's CacheConfig vary_query_params");
        goto err;
    }
    c->allowed_vary = tn_pool_alloc(&c->pool, pb->n_allowed_vary_headers * sizeof(*c->allowed_vary) + 1);
    for (size_t i = 0; i < pb->n_allowed_vary_headers; i++) {
        size_t mark = tn_err_push(err, ".allowed_vary_headers[%zu]", i);
        if (tn_string_matcher_compile(&c->pool, pb->allowed_vary_headers[i], &c->allowed_vary[i], err))
            goto err;
        tn_err_pop(err, mark);
    }
    c->n_allowed_vary = pb->n_allowed_vary_headers;
    c->max_entry_bytes = pb->max_body_bytes ? pb->max_body_bytes : 1024 * 1024;
    c->max_size_bytes = 256ull * 1024 * 1024;
    c->default_ttl_ms = c->ttl_override_ms = TN_CACHE_UNSET;
    c->ignore_request_cache_control = pb->ignore_request_cache_control_header;
    c->disabled = pb->disabled && pb->disabled->value;
    return c;
err:
    destroy_config(c);
    return NULL;
}

const struct tn_filter_factory tn_cache_factory = {
    .name = "envoy.filters.http.cache",
    .config_type = &envoy__extensions__filters__http__cache__v3__cache_config__descriptor,
    .terminal = false,
    .create_config = create_config,
    .destroy_config = destroy_config,
};
