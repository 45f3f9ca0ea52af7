/* HTTP filter factories, looked up by their config's type URL, and the one
 * registry of them (filter.c).
 *
 * Envoy's model in C: a factory turns a filter's typed_config into a config
 * object once per filter chain, on the main thread; the data plane later runs
 * per-stream instances from it. The `name` in the config is only a label; the
 * type URL picks the factory (a config without typed_config falls back to the
 * well-known name, as older Envoy configs are written).
 *
 * Beside its per-stream ops a factory declares what it needs from the server:
 * per-worker state and hooks, main-thread hooks (start, a periodic tick,
 * stop), and admin endpoints. The server, the workers and the admin reach
 * filters only through this registry and never name one: adding a filter is
 * its folder and one line in filter.c's list. */
#ifndef TN_FILTER_H
#define TN_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "dataplane/core/err.h"
#include "dataplane/core/slice.h"

struct tn_stream;
struct tn_response;
struct tn_stats;
struct tn_worker;
struct tn_admin_endpoint;

/* Room for factories in per-worker arrays (struct tn_worker's filter_state);
 * the registry checks its list fits at compile time. */
#define TN_FILTER_FACTORIES_MAX 16

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

/* What the server offers filters' main-thread hooks (main_start). */
struct tn_filter_server {
    /* Runs every main_tick soon, on the main thread. Any thread. */
    void (*kick)(void *arg);
    /* Wakes every worker's loop for one iteration (so each passes its
     * worker_quiescent hooks). Main thread; nothing happens before the
     * workers start or once the server stops. */
    void (*wake_workers)(void *arg);
    void *arg;
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

    /* --- server hooks: all optional, run whether or not a listener uses the
     * filter. Several factories' start hooks (and ticks) run in registry
     * order, their close, stop and exit hooks in reverse. --- */

    /* per worker */
    /* Bytes of per-worker state: zeroed, allocated before the worker's thread
     * starts, freed after it is joined; each worker hook gets it, and the
     * filter finds it with tn_worker_filter_state (dataplane/server/worker.h). 0: none
     * (hooks then get NULL). */
    size_t worker_state_size;
    /* On the worker's thread, before its loop runs. */
    void (*worker_start)(struct tn_worker *w, void *state);
    /* Once per loop iteration, between iterations (a uv_check): the thread
     * holds no pointer it got without a reference (the cache's QSBR). */
    void (*worker_quiescent)(struct tn_worker *w, void *state);
    /* On the worker's thread when it is told to exit: its connections are
     * closed, its pools, timers and clusters are still there. End work that
     * outlives streams (shadow requests) before they go. */
    void (*worker_close)(struct tn_worker *w, void *state);
    /* On the worker's thread once its loop has run out, before the loop is
     * closed: release what is bound to the thread (a reader slot). */
    void (*worker_stop)(struct tn_worker *w, void *state);

    /* the main thread */
    /* Before the cluster manager and the workers start; srv stays valid
     * until main_stop. */
    void (*main_start)(const struct tn_filter_server *srv);
    /* Every 100 ms until the server stops, and soon after srv->kick until
     * main_stop: periodic work (the cache's maintenance). Returns 0, or in
     * how many ms it wants to run again before the next tick. */
    unsigned (*main_tick)(void);
    /* Every worker has been joined: srv's callbacks must not be called any more. */
    void (*main_stop)(void);
    /* Last, after the main loop and the configuration are gone: free what
     * lives as long as the process (the cache's stores). */
    void (*main_exit)(void);

    /* Admin endpoints the filter serves (dataplane/admin/admin_handler.h), ended
     * by one with a NULL path; NULL: none. The admin lists them in /help
     * before its own and finds them by path after its own. */
    const struct tn_admin_endpoint *admin_endpoints;
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

/* Every factory, in registry order (*n of them, at most
 * TN_FILTER_FACTORIES_MAX): what the server, workers and admin walk to run
 * hooks. */
const struct tn_filter_factory *const *tn_filter_factories(size_t *n);

/* f's position in tn_filter_factories; f must be registered. */
size_t tn_filter_factory_index(const struct tn_filter_factory *f);

#endif
