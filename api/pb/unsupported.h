/* What tern does not support, said as such: Envoy's fields that tern's api/
 * subset leaves out (so a configuration naming one is told "not supported by
 * tern", not "unknown field"), the fields tern parses but does not act on
 * (refused when set, never silently kept), and the closest name to a typo. */
#ifndef TN_UNSUPPORTED_H
#define TN_UNSUPPORTED_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "dataplane/core/err.h"

/* Whether `field` (snake_case) is a field of Envoy's message `d` that tern's
 * api/ subset does not have. */
bool tn_unsupported_envoy_field(const ProtobufCMessageDescriptor *d, const char *field);

/* The field name of `d` (tern's, or Envoy's that tern lacks) closest to `key`
 * (snake_case) when it is a likely typo of it, else NULL. */
const char *tn_unsupported_closest_field(const ProtobufCMessageDescriptor *d, const char *key);

/* Levenshtein distance between a and b, or `cap` when it is at least `cap`. */
size_t tn_edit_distance(const char *a, const char *b, size_t cap);

/* Walks m (and the messages inside its Any fields, through the type
 * registry) for a set field tern parses but does not act on. 0, or -1 with
 * err's path extended to that field and "<Message>.<field> is not supported
 * by tern ...". m is left untouched. */
int tn_unsupported_check(const ProtobufCMessage *m, struct tn_err *err);

#endif
