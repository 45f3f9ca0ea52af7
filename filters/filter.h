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

#include <protobuf-c/protobuf-c.h>

#include "dataplane/err.h"

struct tn_filter_factory {
    const char *name;                              /* Envoy's canonical filter name */
    const ProtobufCMessageDescriptor *config_type; /* typed_config's message */
    bool terminal;                                 /* must be, and only be, the last filter */
    /* Builds the filter's config from its message (already unpacked); returns
     * it, or NULL with err set. Never keeps a pointer into msg. */
    void *(*create_config)(const ProtobufCMessage *msg, struct tn_err *err);
    void (*destroy_config)(void *config);
};

/* The factory for a type URL or full message name, NULL if none. */
const struct tn_filter_factory *tn_filter_factory_by_type(const char *type_url);

/* The factory for a canonical filter name, NULL if none. */
const struct tn_filter_factory *tn_filter_factory_by_name(const char *name);

#endif
