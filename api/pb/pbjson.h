/* protobuf-c message -> JSON, from the same descriptors the loader uses.
 *
 * The output is what Envoy's /config_dump prints: proto field names
 * (snake_case), fields left at their proto3 default omitted, enums by name,
 * 64-bit integers as strings, Duration as "1.5s", wrappers as plain values,
 * Any expanded with "@type" first (raw base64 "value" when the type is not
 * registered), bytes as base64. Feeding the output back to tn_pbconv_yaml
 * gives the same message. */
#ifndef TN_PBJSON_H
#define TN_PBJSON_H

#include <protobuf-c/protobuf-c.h>

#include "dataplane/core/buf.h"

/* Appends m as JSON to out; indent > 0 pretty-prints with that many spaces
 * per level, 0 prints one line. */
void tn_pbjson_print(const ProtobufCMessage *m, struct tn_buf *out, int indent);

/* Appends s as a JSON string literal (quotes included); invalid UTF-8 becomes
 * U+FFFD so the output is always valid JSON. */
void tn_pbjson_string(struct tn_buf *out, const char *s, size_t len);

#endif
