/* What tern asks the control plane for, and what it does with the answers.
 *
 * From a compiled bootstrap with dynamic_resources.ads_config, one ADS
 * stream (xds/ads.h) watches the RouteConfigurations the listeners name in
 * rds.route_config_name and the ClusterLoadAssignments of the EDS clusters
 * (by eds_cluster_config.service_name, else the cluster's name).
 *
 * An accepted RouteConfiguration is compiled as a static route_config is
 * (with validate_clusters against the configured clusters) and handed to
 * the workers; streams keep the table they started with. Listeners do not
 * accept until every route configuration has come or its
 * initial_fetch_timeout has passed (then they answer 404 until it comes).
 *
 * Each
 * accepted assignment becomes the cluster's host set through the cluster
 * manager; a response with one assignment that does not compile is NACKed
 * whole with the resource's name and the field's path, and nothing of it is
 * applied. In the state of the world an assignment missing from a response
 * is left as it was (EDS is not a wildcard type); an incremental removal
 * empties the cluster. A cluster that gets no assignment within its
 * initial_fetch_timeout stops holding readiness back.
 *
 * Clusters from CDS (cds_config: ads) join the static ones: a new or
 * changed cluster warms (first DNS round, health checks, endpoints) before
 * workers use it, the one it replaces serving meanwhile; a cluster missing
 * from a state-of-the-world response, or removed incrementally, stops
 * taking new requests (503 NC) while those in flight finish.
 *
 * Listeners from the control plane (LDS) come next; the bootstrap compiler accepts lds_config and
 * cds_config, and the server says they are not applied yet. */
#ifndef TN_XDS_SUBSCRIPTION_H
#define TN_XDS_SUBSCRIPTION_H

#include <stdbool.h>
#include <uv.h>

#include "dataplane/cm.h"
#include "dataplane/config.h"
#include "dataplane/err.h"
#include <protobuf-c/protobuf-c.h>

struct tn_xds;
struct tn_route_table;
struct tn_cluster;

struct tn_xds_hooks {
    /* A route configuration for cfg->rds_names[rds_index] was accepted (the
     * callee takes its own reference), or removed (t == NULL). */
    void (*routes)(void *arg, size_t rds_index, struct tn_route_table *t);
    /* Every route configuration and the first clusters from CDS have come
     * or timed out: listeners may accept once clusters have warmed (called
     * once; at once when there is nothing to wait for). */
    void (*ready)(void *arg);
    /* A cluster from CDS is about to be used: register its stats. 0, or -1
     * (the response is rejected). */
    int (*cluster_added)(void *arg, struct tn_cluster *c);
    /* A cluster from CDS is gone: new requests to it get 503 NC. */
    void (*cluster_removed)(void *arg, struct tn_cluster *c);
};

/* Starts the subscriptions cfg asks for on `loop` (the main loop). NULL with
 * err clear when cfg has no ADS, NULL with err set when it cannot start. */
struct tn_xds *tn_xds_start(uv_loop_t *loop, struct tn_config *cfg, struct tn_cm *cm, const struct tn_xds_hooks *hooks,
                            void *arg, struct tn_err *err);

/* What the control plane gave one route configuration (cfg->rds_names[i]):
 * Envoy's http.<stat_prefix>.rds.<name>.* counters and what /config_dump
 * shows. */
struct tn_xds_rds {
    uint64_t update_attempt, update_success, update_rejected, update_empty, config_reload;
    char *version;        /* of the accepted configuration, NULL before one */
    uint64_t updated_ms;  /* wall clock of that */
    ProtobufCMessage *pb; /* the accepted RouteConfiguration, NULL before one or once removed */
};

/* CDS: Envoy's cluster_manager.cds.* counters and the clusters' churn. */
struct tn_xds_cds {
    uint64_t update_attempt, update_success, update_rejected, update_empty;
    uint64_t cluster_added, cluster_modified, cluster_removed;
    char *version; /* of the last accepted response */
};
const struct tn_xds_cds *tn_xds_cds(const struct tn_xds *x);

/* A cluster from CDS, for /config_dump. */
struct tn_xds_cluster {
    const struct tn_cluster *c;
    const char *version;
    uint64_t updated_ms;
    const ProtobufCMessage *pb;
};
/* Fills out[0..cap) with the clusters from CDS; returns how many there are. */
size_t tn_xds_clusters(const struct tn_xds *x, struct tn_xds_cluster *out, size_t cap);

/* Route configuration i's state (main thread), NULL when x is NULL. */
const struct tn_xds_rds *tn_xds_rds(const struct tn_xds *x, size_t i);

/* Whether the control plane's stream is up. */
bool tn_xds_connected(const struct tn_xds *x);

/* Stops the stream and frees everything (handles close on the loop). */
void tn_xds_close(struct tn_xds *x);

#endif
