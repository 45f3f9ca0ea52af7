/* The one type registry: type URL -> protobuf-c descriptor.
 *
 * Every `google.protobuf.Any` tern reads (typed_config, xDS resources) resolves
 * here, whether it came from YAML ("@type") or from a control plane's bytes.
 * Filter and access-log factories are looked up by the same full names. */
#ifndef TN_TYPES_H
#define TN_TYPES_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "dataplane/core/err.h"

/* Returns the descriptor for a type URL ("type.googleapis.com/envoy.config...")
 * or a bare full name, or NULL when tern does not know the type. */
const ProtobufCMessageDescriptor *tn_type_find(const char *type_url);

/* The full name part of a type URL (after the last '/'). */
const char *tn_type_name(const char *type_url);

/* Why a type URL tern does not know is refused, into out: "unknown type
 * 'URL' (did you mean 'URL2'?)" when it is one edit or two away from a known
 * type, "unsupported extension NAME (URL)" when the extension is named
 * (ext_name may be NULL), else "unknown or unsupported type 'URL'". */
void tn_type_unsupported_msg(const char *type_url, const char *ext_name, char *out, size_t size);

/* Unpacks an Any (given as its type_url and value) into a message of the
 * expected descriptor; `expect` NULL accepts any registered type. Returns the
 * message (free with protobuf_c_message_free_unpacked(m, NULL)) or NULL with
 * err set at the current path. */
ProtobufCMessage *tn_any_unpack(const ProtobufCMessage *any, const ProtobufCMessageDescriptor *expect,
                                struct tn_err *err);

#endif
