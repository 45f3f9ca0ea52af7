/* YAML / JSON text -> protobuf-c message, driven only by descriptors.
 *
 * Follows the proto3 JSON mapping as Envoy applies it to its YAML: snake_case
 * or lowerCamelCase keys, enums by name or number, int64 as number or string,
 * Duration as "1.5s", wrappers as plain scalars, Any with "@type" (resolved
 * through api/pb/types.h), Struct/Value/ListValue, bytes as base64, maps as
 * mappings. Keys tagged `!ignore` are skipped, as Envoy does (anchor holders).
 * Anything unknown or ill-typed fails with "<full.path>: <reason>". */
#ifndef TN_PBCONV_H
#define TN_PBCONV_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "dataplane/core/err.h"

struct tn_bytes {
    uint8_t *data; /* malloc'd */
    size_t len;
};

/* Converts one YAML (or JSON) document into the serialized form of a `desc`
 * message. On success returns 0 and out->data is the caller's to free(); on
 * failure returns -1 with err set (err->line is the 1-based source line) and
 * out untouched. Input of any bytes is safe. */
int tn_pbconv_yaml(const char *text, size_t len, const ProtobufCMessageDescriptor *desc, struct tn_bytes *out,
                   struct tn_err *err);

/* Same, but returns the unpacked message (free with
 * protobuf_c_message_free_unpacked(m, NULL)), or NULL with err set. */
ProtobufCMessage *tn_pbconv_yaml_msg(const char *text, size_t len, const ProtobufCMessageDescriptor *desc,
                                     struct tn_err *err);

/* Parses a proto3 JSON Duration ("5s", "0.25s", "-1.5s"); 0 or -1. */
int tn_pbconv_parse_duration(const char *s, int64_t *seconds, int32_t *nanos);

#endif
