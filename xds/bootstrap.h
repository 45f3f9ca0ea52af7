/* Loading the bootstrap: a file (.yaml/.yml/.json as YAML, .pb as binary
 * proto) and/or --config-yaml text, merged as Envoy merges them (proto
 * MergeFrom: scalars replaced, messages merged, lists appended). */
#ifndef TN_BOOTSTRAP_H
#define TN_BOOTSTRAP_H

#include "dataplane/core/err.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb-c.h"

typedef Envoy__Config__Bootstrap__V3__Bootstrap tn_pb_bootstrap;

/* Reads and converts the bootstrap. Either argument may be NULL, not both.
 * Returns the message (free with tn_bootstrap_free) or NULL with err set; the
 * error message starts with nothing but the field path, the caller adds the
 * file name. */
tn_pb_bootstrap *tn_bootstrap_load(const char *path, const char *overlay_yaml, struct tn_err *err);
void tn_bootstrap_free(tn_pb_bootstrap *b);

#endif
