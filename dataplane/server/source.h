/* Where a type of dynamic resource comes from: a ConfigSource
 * (dynamic_resources.lds_config / cds_config, an EDS cluster's eds_config,
 * an HCM's rds.config_source) compiled.
 *
 * ads: {} shares the aggregated stream of dynamic_resources.ads_config;
 * api_config_source opens a stream of the type's own service (GRPC: state
 * of the world, DELTA_GRPC: incremental) to envoy_grpc's static cluster or
 * google_grpc's target; path_config_source (or the deprecated path) reads a
 * DiscoveryResponse from a file and again when it changes. */
#ifndef TN_SOURCE_H
#define TN_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/core/err.h"
#include "dataplane/core/pool.h"
#include "envoy/config/core/v3/config_source.pb-c.h"

enum tn_source_kind {
    TN_SOURCE_ADS = 0,
    TN_SOURCE_GRPC,
    TN_SOURCE_DELTA_GRPC,
    TN_SOURCE_PATH,
};

struct tn_source {
    enum tn_source_kind kind;
    const char *cluster;       /* GRPC, DELTA_GRPC: envoy_grpc.cluster_name (a static cluster) */
    const char *target;        /*   or google_grpc.target_uri */
    const char *path;          /* PATH: the file */
    const char *watched_dir;   /* PATH: path_config_source.watched_directory.path, or NULL */
    uint64_t fetch_timeout_ms; /* initial_fetch_timeout: 15 s by default, 0 = wait forever */
    bool node_first_only;      /* GRPC, DELTA_GRPC: set_node_on_first_message_only */
};

/* Compiles an ApiConfigSource's stream: api_type (GRPC or DELTA_GRPC, and
 * the AGGREGATED_ forms when `aggregated` is allowed), V3 transport and one
 * gRPC service; sets kind (TN_SOURCE_GRPC or TN_SOURCE_DELTA_GRPC), cluster
 * or target. err's path should point at the ApiConfigSource. 0 or -1. */
int tn_api_source_compile(struct tn_pool *pool, const Envoy__Config__Core__V3__ApiConfigSource *api, bool aggregated,
                          struct tn_source *out, struct tn_err *err);

/* Compiles a ConfigSource (err's path pointing at it). 0 or -1. */
int tn_source_compile(struct tn_pool *pool, const Envoy__Config__Core__V3__ConfigSource *pb, struct tn_source *out,
                      struct tn_err *err);

/* Whether a and b are served by the same stream (or file). */
bool tn_source_same(const struct tn_source *a, const struct tn_source *b);

#endif
