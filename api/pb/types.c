#include "api/pb/types.h"

#include <stdio.h>
#include <string.h>

#include "envoy/config/bootstrap/v3/bootstrap.pb-c.h"
#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/extensions/access_loggers/file/v3/file.pb-c.h"
#include "envoy/extensions/access_loggers/stream/v3/stream.pb-c.h"
#include "envoy/extensions/filters/http/cache/v3/cache.pb-c.h"
#include "envoy/extensions/filters/http/router/v3/router.pb-c.h"
#include "envoy/extensions/filters/http/health_check/v3/health_check.pb-c.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb-c.h"
#include "envoy/extensions/http/cache/simple_http_cache/v3/config.pb-c.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "tern/extensions/filters/http/cache/v1/cache.pb-c.h"
#include "api/pb/unsupported.h"

/* Every message type that may appear inside an Any. */
#define TN_TYPES(X)                                                                                                    \
    X(envoy__config__bootstrap__v3__bootstrap__descriptor)                                                             \
    X(envoy__config__listener__v3__listener__descriptor)                                                               \
    X(envoy__config__route__v3__route_configuration__descriptor)                                                       \
    X(envoy__config__cluster__v3__cluster__descriptor)                                                                 \
    X(envoy__config__endpoint__v3__cluster_load_assignment__descriptor)                                                \
    X(envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager__descriptor)           \
    X(envoy__extensions__filters__http__router__v3__router__descriptor)                                                \
    X(envoy__extensions__filters__http__health_check__v3__health_check__descriptor)                                    \
    X(envoy__extensions__filters__http__cache__v3__cache_config__descriptor)                                           \
    X(envoy__extensions__http__cache__simple_http_cache__v3__simple_http_cache_config__descriptor)                     \
    X(envoy__extensions__access_loggers__file__v3__file_access_log__descriptor)                                        \
    X(envoy__extensions__access_loggers__stream__v3__stdout_access_log__descriptor)                                    \
    X(envoy__extensions__access_loggers__stream__v3__stderr_access_log__descriptor)                                    \
    X(envoy__extensions__upstreams__http__v3__http_protocol_options__descriptor)                                       \
    X(tern__extensions__filters__http__cache__v1__cache_config__descriptor)                                            \
    X(tern__extensions__filters__http__cache__v1__cache_per_route__descriptor)

static const ProtobufCMessageDescriptor *const types[] = {
#define TN_X(d) &d,
    TN_TYPES(TN_X)
#undef TN_X
};

const char *tn_type_name(const char *type_url)
{
    const char *slash = strrchr(type_url, '/');
    return slash ? slash + 1 : type_url;
}

const ProtobufCMessageDescriptor *tn_type_find(const char *type_url)
{
    const char *name = tn_type_name(type_url);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(types[i]->name, name) == 0)
            return types[i];
    return NULL;
}

void tn_type_unsupported_msg(const char *type_url, const char *ext_name, char *out, size_t size)
{
    const char *name = tn_type_name(type_url);
    size_t len = strlen(name), cap = (len / 8 < 2 ? len / 8 : 2) + 1, best = cap;
    const char *near = NULL;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        size_t e = tn_edit_distance(name, types[i]->name, best);
        if (e < best) {
            best = e;
            near = types[i]->name;
        }
    }
    if (near != NULL)
        snprintf(out, size, "unknown type '%s' (did you mean 'type.googleapis.com/%s'?)", type_url, near);
    else if (ext_name != NULL && *ext_name)
        snprintf(out, size, "unsupported extension %s (%s)", ext_name, type_url);
    else
        snprintf(out, size, "unknown or unsupported type '%s'", type_url);
}

ProtobufCMessage *tn_any_unpack(const ProtobufCMessage *msg, const ProtobufCMessageDescriptor *expect,
                                struct tn_err *err)
{
    const Google__Protobuf__Any *any = (const Google__Protobuf__Any *)msg;
    const char *url = any->type_url ? any->type_url : "";
    const ProtobufCMessageDescriptor *d = tn_type_find(url);

    if (d == NULL) {
        tn_err_fail(err, "unknown or unsupported type '%s'", url);
        return NULL;
    }
    if (expect != NULL && d != expect) {
        tn_err_fail(err, "expected type '%s', got '%s'", expect->name, d->name);
        return NULL;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, any->value.len, any->value.data);
    if (m == NULL)
        tn_err_fail(err, "invalid serialized '%s'", d->name);
    return m;
}
