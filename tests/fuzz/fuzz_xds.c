/* libFuzzer target for what a control plane sends: arbitrary bytes as a
 * DiscoveryResponse or DeltaDiscoveryResponse (first byte even or odd),
 * each resource decoded by its type URL and compiled as tern compiles it
 * (Listener, Cluster, RouteConfiguration, ClusterLoadAssignment) — the path from the
 * wire to the runtime objects, less the cluster manager. Beyond "no crash,
 * no sanitizer report": a resource that does not compile leaves an error
 * message, and one that compiles frees cleanly. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/upstream/cluster.h"
#include "dataplane/server/listener.h"
#include "dataplane/core/log.h"
#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "filters/route.h"
#include "xds/ads.h"

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void compile_one(const char *type_url, const uint8_t *v, size_t len)
{
    struct tn_err err;
    tn_err_init(&err);
    if (strcmp(type_url, TN_TYPE_CLUSTER) == 0) {
        Envoy__Config__Cluster__V3__Cluster *pb = envoy__config__cluster__v3__cluster__unpack(NULL, len, v);
        if (pb == NULL)
            return;
        struct tn_cluster *c = tn_cluster_compile(pb, &err);
        check(c != NULL || (err.failed && err.msg[0]));
        tn_cluster_unref(c);
        envoy__config__cluster__v3__cluster__free_unpacked(pb, NULL);
    } else if (strcmp(type_url, TN_TYPE_ROUTE) == 0) {
        Envoy__Config__Route__V3__RouteConfiguration *pb =
            envoy__config__route__v3__route_configuration__unpack(NULL, len, v);
        if (pb == NULL)
            return;
        struct tn_route_table *t = tn_route_table_compile(pb, &err);
        check(t != NULL || (err.failed && err.msg[0]));
        tn_route_table_unref(t);
        envoy__config__route__v3__route_configuration__free_unpacked(pb, NULL);
    } else if (strcmp(type_url, TN_TYPE_LISTENER) == 0) {
        Envoy__Config__Listener__V3__Listener *pb = envoy__config__listener__v3__listener__unpack(NULL, len, v);
        if (pb == NULL)
            return;
        struct tn_listener *l = tn_listener_compile(pb, &err);
        check(l != NULL || (err.failed && err.msg[0]));
        tn_listener_unref(l);
        envoy__config__listener__v3__listener__free_unpacked(pb, NULL);
    } else if (strcmp(type_url, TN_TYPE_ENDPOINT) == 0) {
        Envoy__Config__Endpoint__V3__ClusterLoadAssignment *pb =
            envoy__config__endpoint__v3__cluster_load_assignment__unpack(NULL, len, v);
        if (pb == NULL)
            return;
        struct tn_endpoint_set *es = tn_endpoint_set_compile(pb, true, &err);
        check(es != NULL || (err.failed && err.msg[0]));
        if (es)
            tn_endpoint_set_unref(es);
        envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(pb, NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        tn_log_set_all(TN_LOG_OFF);
        quiet = true;
    }
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        Envoy__Service__Discovery__V3__DeltaDiscoveryResponse *r =
            envoy__service__discovery__v3__delta_discovery_response__unpack(NULL, size - 1, data + 1);
        if (r == NULL)
            return 0;
        for (size_t i = 0; i < r->n_resources; i++)
            if (r->resources[i]->resource)
                compile_one(r->resources[i]->resource->type_url, r->resources[i]->resource->value.data,
                            r->resources[i]->resource->value.len);
        envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);
        return 0;
    }
    Envoy__Service__Discovery__V3__DiscoveryResponse *r =
        envoy__service__discovery__v3__discovery_response__unpack(NULL, size - 1, data + 1);
    if (r == NULL)
        return 0;
    for (size_t i = 0; i < r->n_resources; i++) {
        /* the response's type decides when a resource does not say */
        const char *t = *r->resources[i]->type_url ? r->resources[i]->type_url : r->type_url;
        compile_one(t, r->resources[i]->value.data, r->resources[i]->value.len);
    }
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    return 0;
}
