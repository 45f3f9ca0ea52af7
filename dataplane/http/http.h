/* HTTP message pieces shared by the codecs, the connection manager, filters
 * and the router: header lists and the view of a request that route matching
 * reads. Codec-neutral (HTTP/1.1 and HTTP/2 fill the same shapes). */
#ifndef TN_HTTP_H
#define TN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One header. Names are lower case (the codec folds them on the way in);
 * name and value point into memory the owner of the list keeps alive, and
 * are not NUL-terminated. */
struct tn_header {
    const char *name;
    const char *value;
    uint32_t name_len;
    uint32_t value_len;
};

/* A header list in arrival order; duplicates kept as separate entries. */
struct tn_headers {
    struct tn_header *v;
    size_t n;
    size_t cap;
};

/* What route matching sees of a request. `path` is the request target in
 * origin form ("/a/b?x=1"), query included; `host` is the Host/:authority as
 * the client sent it (port included). `headers` excludes pseudo headers; a
 * matcher on ":method", ":path", ":authority" or ":scheme" reads the fields
 * here. `random` is a per-request random value for runtime_fraction and
 * weighted cluster choice. */
struct tn_request_view {
    const char *method;
    size_t method_len;
    const char *path;
    size_t path_len;
    const char *host;
    size_t host_len;
    const char *scheme; /* "http" or "https" */
    const struct tn_header *headers;
    size_t n_headers;
    uint64_t random;
};

/* An upgrade_configs entry (the connection manager's or a route's): a
 * protocol (lower case, "websocket") let through or turned off. */
struct tn_upgrade {
    const char *type;
    bool enabled;
};

/* The first header named `name` (lower case, length n), or NULL. */
static inline const struct tn_header *tn_headers_find(const struct tn_header *v, size_t count, const char *name,
                                                      size_t n)
{
    for (size_t i = 0; i < count; i++)
        if (v[i].name_len == n && __builtin_memcmp(v[i].name, name, n) == 0)
            return &v[i];
    return 0;
}

#endif
