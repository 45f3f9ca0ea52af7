/* What tern asks the control plane for, and what it does with the answers:
 * the server's side of xDS. The sources (xds/subscription.h) deliver
 * decoded messages; this compiles them with the compilers the bootstrap
 * uses (tn_listener_compile, tn_route_table_compile, tn_cluster_compile,
 * tn_endpoint_set_compile, the cross-checks of dataplane/server/config.h) and
 * applies the runtime objects, or returns the error a NACK carries.
 *
 * Each type comes from where the bootstrap says (dataplane/server/source.h): the
 * aggregated stream of dynamic_resources.ads_config, the type's own gRPC
 * service (state of the world or incremental), or a file. Streams are
 * opened as resources name them: an EDS cluster from CDS with its own
 * eds_config, a listener from LDS whose rds names a new source.
 *
 * RDS: the RouteConfigurations the listeners name in rds.route_config_name.
 * An accepted one is compiled as a static route_config is and handed to the
 * workers; streams keep the table they started with.
 *
 * EDS: the ClusterLoadAssignments of the EDS clusters (by
 * eds_cluster_config.service_name, else the cluster's name). Each accepted
 * assignment becomes the cluster's host set through the cluster manager. In
 * the state of the world an assignment missing from a response is left as
 * it was (EDS is not a wildcard type); an incremental removal empties the
 * cluster.
 *
 * CDS: clusters join the static ones: a new or changed cluster warms (first
 * DNS round, health checks, endpoints) before workers use it, the one it
 * replaces serving meanwhile; a cluster missing from a state-of-the-world
 * response, or removed incrementally, stops taking new requests (503 NC)
 * while those in flight finish.
 *
 * LDS: a new or changed listener is bound at once (a response whose
 * listener cannot bind is rejected) and warms until its route configuration
 * has come; then it accepts, and the version it replaces stops accepting
 * and drains. A removed listener drains.
 *
 * A response with one resource that does not compile is rejected whole
 * (NACKed, with the resource's name and the field's path; from a file,
 * logged) and nothing of it is applied. Readiness (hooks.ready) waits for
 * the first CDS and LDS responses, every route configuration and, through
 * the cluster manager, the clusters' endpoints — each at most its
 * initial_fetch_timeout. */
#ifndef TN_XDS_H
#define TN_XDS_H

#include <stdbool.h>
#include <uv.h>

#include "dataplane/upstream/cm.h"
#include "dataplane/server/config.h"
#include "dataplane/core/err.h"
#include <protobuf-c/protobuf-c.h>

struct tn_xds;
struct tn_route_table;
struct tn_cluster;
struct tn_listener;

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
    /* A listener from LDS is about to be added, or to replace `old` (the
     * version serving now, NULL when none): register its stats and bind its
     * sockets (taking over old's when the address is the same), not
     * accepting yet. 0, or -1 with err set (the response is rejected). */
    int (*listener_bind)(void *arg, struct tn_listener *l, struct tn_listener *old, struct tn_err *err);
    /* l has warmed: accept on it; old (NULL: none) stops accepting and its
     * connections drain. */
    void (*listener_up)(void *arg, struct tn_listener *l, struct tn_listener *old);
    /* l is gone: its sockets close; when it was up (accepting), its
     * connections drain. */
    void (*listener_down)(void *arg, struct tn_listener *l, bool was_up);
};

/* Starts the subscriptions cfg asks for on `loop` (the main loop). NULL with
 * err clear when cfg has nothing dynamic, NULL with err set when it cannot
 * start. */
struct tn_xds *tn_xds_start(uv_loop_t *loop, struct tn_config *cfg, struct tn_cm *cm, const struct tn_xds_hooks *hooks,
                            void *arg, struct tn_err *err);

/* What the control plane gave one route configuration (the i-th named):
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
/* Envoy's cluster_manager.cds.update_failure: fetches that failed short of
 * a response (a file that could not be read or parsed, a stream that ended). */
uint64_t tn_xds_cds_failures(const struct tn_xds *x);

/* A cluster from CDS, for /config_dump. */
struct tn_xds_cluster {
    const struct tn_cluster *c;
    const char *version;
    uint64_t updated_ms;
    const ProtobufCMessage *pb;
};
/* Fills out[0..cap) with the clusters from CDS; returns how many there are. */
size_t tn_xds_clusters(const struct tn_xds *x, struct tn_xds_cluster *out, size_t cap);

/* Route configurations named so far (the static listeners' first, in
 * cfg->rds_names' order, then LDS's); route configuration i's state (main
 * thread), NULL when x is NULL or i is past them. */
size_t tn_xds_n_rds(const struct tn_xds *x);
const struct tn_xds_rds *tn_xds_rds(const struct tn_xds *x, size_t i);

/* LDS: Envoy's listener_manager.lds.* counters and the listeners' churn. */
struct tn_xds_lds {
    uint64_t update_attempt, update_success, update_rejected, update_empty;
    uint64_t listener_added, listener_modified, listener_removed;
    char *version; /* of the last accepted response */
};
const struct tn_xds_lds *tn_xds_lds(const struct tn_xds *x);
/* The same for listener_manager.lds.update_failure. */
uint64_t tn_xds_lds_failures(const struct tn_xds *x);

/* A listener from LDS, for /config_dump and /listeners: the version serving
 * and the one warming (l NULL when there is none). */
struct tn_xds_lver {
    const struct tn_listener *l;
    const char *version;
    uint64_t updated_ms;
    const ProtobufCMessage *pb;
};
/* Why the last LDS response was rejected, when it failed on this listener
 * (Envoy's error_state; details NULL otherwise). */
struct tn_xds_lerror {
    const char *details;
    uint64_t ms;
    const ProtobufCMessage *pb; /* the listener as it came */
};
struct tn_xds_listener {
    const char *name;
    struct tn_xds_lver active, warming;
    struct tn_xds_lerror error;
};
/* Fills out[0..cap) with the listeners from LDS (a name the last response
 * failed on and that is not otherwise there comes first, with its error
 * alone); returns how many there are. */
size_t tn_xds_listeners(const struct tn_xds *x, struct tn_xds_listener *out, size_t cap);


/* Whether every control plane stream is up (and there is one). */
bool tn_xds_connected(const struct tn_xds *x);

/* Stops the stream and frees everything (handles close on the loop). */
void tn_xds_close(struct tn_xds *x);

#endif
