/* The configuration sources tern's dynamic resources come from, and what
 * they deliver: decoded messages, never runtime objects.
 *
 * A source is the aggregated stream of dynamic_resources.ads_config, a
 * type's own gRPC service (state of the world or incremental) or a file
 * (dataplane/server/source.h says which). The consumer (dataplane/server/xds.c) opens
 * them as resources name them and says which resources it wants of each;
 * every response is decoded here (its Any payloads into Listener,
 * RouteConfiguration, Cluster or ClusterLoadAssignment messages) and handed
 * to the consumer's callback for its type, which compiles and applies it.
 * What the callback returns is the answer: 0 ACKs, -1 NACKs with the
 * error's text (from a file: logged, the last good content stays).
 *
 * A file's last accepted content is kept and can be handed over again
 * (tn_sub_replay): resources that came to need it take their part. */
#ifndef TN_XDS_SUBSCRIPTION_H
#define TN_XDS_SUBSCRIPTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <protobuf-c/protobuf-c.h>

#include "dataplane/core/err.h"
#include "dataplane/server/source.h"
#include "envoy/config/core/v3/base.pb-c.h"

struct tn_sub;
struct tn_sub_src;

/* One resource of a response, decoded. */
struct tn_sub_resource {
    const char *name;    /* the Resource's name (incremental), NULL in the state of the world */
    const char *version; /* incremental only */
    /* The message of the response's type; the callback may take it (and set
     * it NULL). NULL when the payload did not decode: `error` says why (a
     * NACK's text: "resources[2]: not a valid Cluster"). */
    ProtobufCMessage *pb;
    char *error;
    const uint8_t *bytes; /* the payload as received: the same bytes again change nothing */
    size_t len;
};

/* One response (or file content) of one type. */
struct tn_sub_update {
    const char *type_url;
    const char *version; /* version_info, or system_version_info */
    bool delta;
    struct tn_sub_resource *resources;
    size_t n_resources;
    const char *const *removed; /* incremental only */
    size_t n_removed;
};

/* A response's consumer: 0 accepts it, -1 with err set (the path naming the
 * resource and its field) rejects it whole. */
typedef int (*tn_sub_update_cb)(void *arg, const struct tn_sub_update *u, struct tn_err *err);

/* What the consumer does with each type. A type with no callback is not
 * watched. Every callback runs on the main loop; a file's first read calls
 * one inside tn_sub_open. */
struct tn_sub_ops {
    tn_sub_update_cb on_listeners; /* LDS: only from a source opened for listeners */
    tn_sub_update_cb on_routes;    /* RDS */
    tn_sub_update_cb on_clusters;  /* CDS: only from a source opened for clusters */
    tn_sub_update_cb on_endpoints; /* EDS */
};

/* A set of sources on `loop` (the main loop) identifying as `node` (kept
 * by reference: it outlives the set). NULL when out of memory. */
struct tn_sub *tn_sub_new(uv_loop_t *loop, const Envoy__Config__Core__V3__Node *node, const struct tn_sub_ops *ops,
                          void *arg);

/* Opens the aggregated stream at gRPC `target` (delta: incremental). 0, or
 * -1 with err set (nothing opened). */
int tn_sub_ads(struct tn_sub *s, const char *target, bool delta, bool node_first_only, struct tn_err *err);

/* The source of `spec` for type_url, opened when new: a stream (to gRPC
 * `target`, which a GRPC or DELTA_GRPC spec needs) or a file (read at once:
 * its content reaches the callback before this returns). A source opened
 * for clusters or listeners asks for all of them. NULL with err set when it
 * cannot be (the set is as it was). */
struct tn_sub_src *tn_sub_open(struct tn_sub *s, const struct tn_source *spec, const char *type_url,
                               const char *target, struct tn_err *err);

/* The source spec maps to for type_url when open, else NULL. */
struct tn_sub_src *tn_sub_find(const struct tn_sub *s, const struct tn_source *spec, const char *type_url);

/* The sources, newest first: the first with prev NULL, then the one after
 * prev; NULL past the last. */
struct tn_sub_src *tn_sub_next(const struct tn_sub *s, const struct tn_sub_src *prev);

/* The type src was opened for; NULL for the aggregated stream (every type). */
const char *tn_sub_type(const struct tn_sub_src *src);

/* Asks src for names[0..n) of type_url (endpoints or routes), when that set
 * changed (a file gives what it has). 0, or -1 when out of memory. */
int tn_sub_ask(struct tn_sub_src *src, const char *type_url, const char *const *names, size_t n);

/* Hands a file's last accepted content to the callback again (a stream:
 * nothing); a rejection is logged. */
void tn_sub_replay(struct tn_sub_src *src);

/* Envoy's update_failure: fetches that failed short of a response — a file
 * that could not be read or parsed, a stream that ended. 0 for NULL. */
uint64_t tn_sub_failures(const struct tn_sub_src *src);

/* Whether every stream is up (and there is one). */
bool tn_sub_connected(const struct tn_sub *s);

/* Closes every stream and file and frees the set: no callback comes after.
 * NULL is a no-op. */
void tn_sub_close(struct tn_sub *s);

#endif
