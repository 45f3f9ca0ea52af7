/* envoy.filters.http.router: the terminal filter that routes to clusters. */
#ifndef TN_ROUTER_H
#define TN_ROUTER_H

#include <stdbool.h>

#include "filters/filter.h"

struct tn_router_config {
    bool suppress_envoy_headers; /* no x-envoy-* response headers */
    bool respect_expected_rq_timeout;
};

extern const struct tn_filter_factory tn_router_factory;

#endif
