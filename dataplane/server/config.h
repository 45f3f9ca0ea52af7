/* A configuration snapshot: everything compiled from one bootstrap.
 *
 * The snapshot is immutable and reference-counted; workers get it by message
 * and requests keep the objects they started with. xDS (dataplane/server/xds.c,
 * fed decoded messages by the sources of xds/) replaces single
 * listeners, route tables and clusters with the per-resource compilers
 * (tn_listener_compile, tn_route_table_compile, tn_cluster_compile) and the
 * same cross-checks (tn_config_check_routes). */
#ifndef TN_CONFIG_H
#define TN_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>

#include "dataplane/accesslog/accesslog.h"
#include "dataplane/core/address.h"
#include "dataplane/upstream/cluster.h"
#include "dataplane/core/err.h"
#include "dataplane/server/listener.h"
#include "xds/bootstrap.h"

enum tn_xds_api {
    TN_XDS_NONE = 0,
    TN_XDS_GRPC,
    TN_XDS_DELTA_GRPC,
};

struct tn_config {
    atomic_uint refcnt; /* shared by the main thread and workers */
    struct tn_pool pool;
    tn_pb_bootstrap *bootstrap; /* owned: what /config_dump prints */
    struct tn_listener **listeners;
    size_t n_listeners;
    struct tn_cluster **clusters;
    size_t n_clusters;
    bool has_admin;
    struct tn_address admin_addr;
    struct tn_access_log *admin_logs;
    size_t n_admin_logs;
    /* dynamic_resources.ads_config: where the control plane is */
    enum tn_xds_api ads_api;
    const char *ads_cluster; /* envoy_grpc.cluster_name, a static cluster */
    const char *ads_target;  /* google_grpc.target_uri */
    bool lds_dynamic, cds_dynamic;
    struct tn_source lds_source, cds_source; /* dynamic_resources.lds_config, cds_config */
    /* route configurations the listeners take from RDS, each once (a
     * listener's hcm.rds_index points here), and where each comes from */
    const char **rds_names;
    const struct tn_source **rds_sources;
    size_t n_rds;
};

/* Compiles a bootstrap, taking ownership of it (freed with the config, or at
 * once on failure). A config with one reference, or NULL with err set. */
struct tn_config *tn_config_compile(tn_pb_bootstrap *b, struct tn_err *err);
struct tn_config *tn_config_ref(struct tn_config *c);
void tn_config_unref(struct tn_config *c);

/* Whether anything of cfg comes over gRPC from a control plane. */
bool tn_config_uses_grpc(const struct tn_config *c);

/* The cluster named `name`, or NULL. */
struct tn_cluster *tn_config_cluster(const struct tn_config *c, const char *name);

/* Checks that every cluster a statically-validated route table names exists
 * among the config's clusters (Envoy's validate_clusters); 0 or -1 with err. */
/* Checks that a source of cfg's can be reached: ads needs
 * dynamic_resources.ads_config, a gRPC service's envoy_grpc cluster must be
 * a static cluster. err's path should point at the ConfigSource; 0 or -1. */
int tn_config_check_source(const struct tn_config *c, const struct tn_source *s, struct tn_err *err);

int tn_config_check_routes(const struct tn_config *c, const struct tn_route_table *t, struct tn_err *err);

#endif
