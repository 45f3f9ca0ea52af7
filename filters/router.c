#include "filters/router.h"

#include <stdlib.h>

#include "envoy/extensions/filters/http/router/v3/router.pb-c.h"

static void *create_config(const ProtobufCMessage *msg, struct tn_err *err)
{
    const Envoy__Extensions__Filters__Http__Router__V3__Router *pb = (const void *)msg;
    struct tn_router_config *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    c->suppress_envoy_headers = pb->suppress_envoy_headers;
    c->respect_expected_rq_timeout = pb->respect_expected_rq_timeout;
    return c;
}

const struct tn_filter_factory tn_router_factory = {
    .name = "envoy.filters.http.router",
    .config_type = &envoy__extensions__filters__http__router__v3__router__descriptor,
    .terminal = true,
    .create_config = create_config,
    .destroy_config = free,
};
