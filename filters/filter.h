/* HTTP filter factories, looked up by their config's type URL.
 *
 * Envoy's model in C: a factory turns a filter's typed_config into a config
 * object once per filter chain, on the main thread; the data plane later runs
 * per-stream instances from it. The `name` in the config is only a label; the
 * type URL picks the factory (a config without typed_config falls back to the
 * well-known name, as older Envoy configs are written). */
#ifndef TN_FILTER_H
#define TN_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "dataplane/err.h"
#include "dataplane/slice.h"

struct tn_stream;
struct tn_response;
struct tn_stats;

enum tn_filter_status {
    TN_FILTER_CONTINUE = 0, /* go on to the next filter */
    TN_FILTER_STOP,         /* this filter holds the stream (it answered, or will resume it) */
};

/* A filter's per-stream operations (Envoy's StreamFilter in C). `ctx` is
 * ctx_size zeroed bytes owned by the stream; `config` is what create_config
 * returned. Every callback may be NULL (the filter lets that event pass). */
struct tn_filter_ops {
    size_t ctx_size;
    /* Request headers arrived (end_stream: no body follows). */
    enum tn_filter_status (*on_request_headers)(struct tn_stream *s, void *config, void *ctx, bool end_stream);
    /* A request body slice; the filter takes over the slice's reference when
     * it returns STOP, else the next filter gets it. */
    enum tn_filter_status (*on_request_body)(struct tn_stream *s, void *config, void *ctx, struct tn_slice *data,
                                             bool end_stream);
    /* Response headers / body passing back towards the client. */
    enum tn_filter_status (*on_response_headers)(struct tn_stream *s, void *config, void *ctx,
                                                 struct tn_response *r);
    enum tn_filter_status (*on_response_body)(struct tn_stream *s, void *config, void *ctx, struct tn_slice *data,
                                              bool end_stream);
    /* The client's write side drained below its low watermark. */
    void (*on_downstream_drained)(struct tn_stream *s, void *config, void *ctx);
    /* The stream is going away (response done, or the client left): release
     * everything, never touch s again. */
    void (*on_destroy)(struct tn_stream *s, void *config, void *ctx);
};

struct tn_filter_factory {
    const char *name;                              /* Envoy's canonical filter name */
    const ProtobufCMessageDescriptor *config_type; /* typed_config's message */
    bool terminal;                                 /* must be, and only be, the last filter */
    /* Builds the filter's config from its message (already unpacked, of
     * config_type or one of alt_config_types: dispatch on msg->descriptor);
     * returns it, or NULL with err set. Never keeps a pointer into msg. */
    void *(*create_config)(const ProtobufCMessage *msg, struct tn_err *err);
    void (*destroy_config)(void *config);
    const struct tn_filter_ops *ops; /* NULL: the filter is configuration only (yet) */
    /* More messages typed_config may hold (a superset config beside Envoy's),
     * NULL-terminated; NULL: config_type only. */
    const ProtobufCMessageDescriptor *const *alt_config_types;
    /* Per-route config: the message a route's or virtual host's
     * typed_per_filter_config holds for this filter, and how to build and free
     * it (same contract as create_config). All NULL: the filter takes none,
     * and a typed_per_filter_config entry for it is an error. */
    const ProtobufCMessageDescriptor *route_config_type;
    void *(*create_route_config)(const ProtobufCMessage *msg, struct tn_err *err);
    void (*destroy_route_config)(void *config);
    /* Optional: registers the filter's stats for one connection manager
     * (http.<stat_prefix>.*) in its config; 0 or -1. Main thread, before
     * the workers start. */
    int (*register_stats)(void *config, struct tn_stats *st, const char *stat_prefix);
    /* Optional: refreshes gauges the main thread keeps (every second). */
    void (*refresh_stats)(void *config, _Atomic uint64_t *main_shard);
};

/* The factory for a type URL or full message name, NULL if none. As Envoy's
 * registry, a factory answers to its config_type, its alt_config_types and
 * its route_config_type. */
const struct tn_filter_factory *tn_filter_factory_by_type(const char *type_url);

/* Which of f's filter config messages (config_type, alt_config_types) a type
 * URL or full name names; NULL if none (its route_config_type is not one). */
const ProtobufCMessageDescriptor *tn_filter_factory_config_type(const struct tn_filter_factory *f,
                                                                const char *type_url);

/* The factory for a canonical filter name, NULL if none. */
const struct tn_filter_factory *tn_filter_factory_by_name(const char *name);

#endif
