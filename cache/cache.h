/* envoy.filters.http.cache: the response cache filter.
 *
 * This file holds the filter's configuration (Envoy's CacheConfig); the
 * storage, lookup and purge arrive with the cache issue. */
#ifndef TN_CACHE_H
#define TN_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/matcher.h"
#include "dataplane/pool.h"
#include "filters/filter.h"

struct tn_cache_config {
    struct tn_pool pool;
    struct tn_string_matcher *allowed_vary; /* headers a response may Vary on */
    size_t n_allowed_vary;
    uint32_t max_body_bytes; /* 0: the storage's limit */
    bool ignore_request_cache_control;
    bool disabled;
};

extern const struct tn_filter_factory tn_cache_factory;

#endif
