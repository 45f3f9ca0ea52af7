/* What tern asks the control plane for, and what it does with the answers.
 *
 * From a compiled bootstrap with dynamic_resources.ads_config, one ADS
 * stream (xds/ads.h) watches the ClusterLoadAssignments of the EDS clusters
 * (by eds_cluster_config.service_name, else the cluster's name). Each
 * accepted assignment becomes the cluster's host set through the cluster
 * manager; a response with one assignment that does not compile is NACKed
 * whole with the resource's name and the field's path, and nothing of it is
 * applied. In the state of the world an assignment missing from a response
 * is left as it was (EDS is not a wildcard type); an incremental removal
 * empties the cluster. A cluster that gets no assignment within its
 * initial_fetch_timeout stops holding readiness back.
 *
 * Listeners, routes and clusters from the control plane (LDS, RDS, CDS)
 * come next; the bootstrap compiler accepts lds_config and cds_config, and
 * the server says they are not applied yet. */
#ifndef TN_XDS_SUBSCRIPTION_H
#define TN_XDS_SUBSCRIPTION_H

#include <stdbool.h>
#include <uv.h>

#include "dataplane/cm.h"
#include "dataplane/config.h"
#include "dataplane/err.h"

struct tn_xds;

/* Starts the subscriptions cfg asks for on `loop` (the main loop). NULL with
 * err clear when cfg has no ADS, NULL with err set when it cannot start. */
struct tn_xds *tn_xds_start(uv_loop_t *loop, struct tn_config *cfg, struct tn_cm *cm, struct tn_err *err);

/* Whether the control plane's stream is up. */
bool tn_xds_connected(const struct tn_xds *x);

/* Stops the stream and frees everything (handles close on the loop). */
void tn_xds_close(struct tn_xds *x);

#endif
