/* The xDS client stream: one gRPC stream to a control plane, state of the
 * world (StreamAggregatedResources, Stream<Type>s) or incremental
 * (Delta...), speaking Envoy's xds_protocol for the types it is asked to
 * watch.
 *
 * gRPC core runs the call; a thread of ours waits on its completion queue
 * and hands each event to the main loop through a uv_async, so every
 * callback here runs on the main loop and nothing else is shared.
 *
 * The stream is type-agnostic: a response's resources go to update_cb as
 * Any payloads, and what update_cb returns is the answer — 0 ACKs the
 * version and the nonce, -1 NACKs them with the error's text as
 * error_detail, keeping the last accepted version. When the stream ends it
 * is opened again after a jittered exponential backoff (0.5 s doubling to
 * 30 s, reset by a response), re-subscribing with what was accepted: the
 * last version (state of the world) or every resource's version
 * (initial_resource_versions, incremental). */
#ifndef TN_ADS_H
#define TN_ADS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "dataplane/core/err.h"
#include "envoy/config/core/v3/base.pb-c.h"

#define TN_TYPE_LISTENER "type.googleapis.com/envoy.config.listener.v3.Listener"
#define TN_TYPE_ROUTE    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
#define TN_TYPE_CLUSTER  "type.googleapis.com/envoy.config.cluster.v3.Cluster"
#define TN_TYPE_ENDPOINT "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

struct tn_ads;

/* One resource of a response. `name` is the Resource's name in an
 * incremental response, NULL in a state-of-the-world one (the name is inside
 * the payload). */
struct tn_ads_resource {
    const char *name;
    const char *version; /* incremental only */
    const char *type_url;
    const uint8_t *value;
    size_t len;
};

struct tn_ads_update {
    const char *type_url;
    const char *version; /* version_info, or system_version_info */
    bool delta;
    const struct tn_ads_resource *resources;
    size_t n_resources;
    const char *const *removed; /* incremental only */
    size_t n_removed;
};

/* A response for a watched type: return 0 to accept it, or -1 with err set
 * (the path names the resource) to reject it whole. */
typedef int (*tn_ads_update_cb)(void *arg, const struct tn_ads_update *u, struct tn_err *err);
/* The stream came up (a first response arrived) or went down. */
typedef void (*tn_ads_state_cb)(void *arg, bool connected);

struct tn_ads_options {
    const char *target;                        /* gRPC target: "ipv4:127.0.0.1:18000", "dns:///cp:18000" */
    bool delta;                                /* incremental variant */
    const char *method;                        /* NULL: the aggregated service's method */
    const Envoy__Config__Core__V3__Node *node; /* copied; user_agent_* filled in */
    bool node_first_only;                      /* set_node_on_first_message_only */
};

/* Creates the client and opens its stream on `loop` (the main loop). NULL
 * when out of memory or when gRPC refuses the target, with err set. */
struct tn_ads *tn_ads_new(uv_loop_t *loop, const struct tn_ads_options *o, tn_ads_update_cb update_cb,
                          tn_ads_state_cb state_cb, void *arg, struct tn_err *err);

/* Watches a type: `names` (copied) are the resources wanted; n == 0 with
 * wildcard asks for all of them (LDS, CDS). Calling it again replaces the
 * set and sends the change at once. 0, or -1 when out of memory. */
int tn_ads_watch(struct tn_ads *a, const char *type_url, const char *const *names, size_t n, bool wildcard);

/* Whether a stream is up (it has had a response since it opened). */
bool tn_ads_connected(const struct tn_ads *a);

/* Counters for control_plane.* stats. */
struct tn_ads_stats {
    unsigned long long responses, acks, nacks, streams_opened, streams_closed;
};
const struct tn_ads_stats *tn_ads_stats(const struct tn_ads *a);

/* Cancels the stream, waits for gRPC to hand back what it holds and frees
 * everything (blocks the calling loop briefly: shutdown only). */
void tn_ads_close(struct tn_ads *a);

/* The gRPC target for an endpoint address "host:port" (an IPv4 or IPv6
 * literal or a name), written into out. */
void tn_ads_target_for(const char *host, unsigned port, char *out, size_t cap);

#endif
