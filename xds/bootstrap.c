#include "xds/bootstrap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/pb/pbconv.h"
#include "dataplane/core/file.h"


static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Serialized bootstrap from the file, in `out` (malloc'd). */
static int load_file(const char *path, struct tn_bytes *out, struct tn_err *err)
{
    size_t len;
    char *text = tn_read_file(path, &len, err);
    if (text == NULL)
        return -1;
    if (ends_with(path, ".pb")) {
        ProtobufCMessage *m =
            protobuf_c_message_unpack(&envoy__config__bootstrap__v3__bootstrap__descriptor, NULL, len, (uint8_t *)text);
        if (m == NULL) {
            free(text);
            return tn_err_fail(err, "'%s' is not a serialized envoy.config.bootstrap.v3.Bootstrap", path);
        }
        protobuf_c_message_free_unpacked(m, NULL);
        out->data = (uint8_t *)text;
        out->len = len;
        return 0;
    }
    int rc = tn_pbconv_yaml(text, len, &envoy__config__bootstrap__v3__bootstrap__descriptor, out, err);
    free(text);
    return rc;
}

static ProtobufCMessage *copy_message(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n + 1);
    if (buf == NULL)
        return NULL;
    protobuf_c_message_pack(m, buf);
    ProtobufCMessage *c = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    free(buf);
    return c;
}

static size_t elt_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

/* Copies one value of a field (deep for strings, bytes and messages). */
static int copy_value(const ProtobufCFieldDescriptor *f, void *dst, const void *src)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        return (*(char **)dst = strdup(*(char *const *)src)) ? 0 : -1;
    case PROTOBUF_C_TYPE_MESSAGE:
        return (*(ProtobufCMessage **)dst = copy_message(*(ProtobufCMessage *const *)src)) ? 0 : -1;
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *s = src;
        ProtobufCBinaryData *d = dst;
        d->len = s->len;
        d->data = malloc(s->len + 1);
        if (d->data && s->len)
            memcpy(d->data, s->data, s->len);
        return d->data ? 0 : -1;
    }
    default:
        memcpy(dst, src, elt_size(f->type));
        return 0;
    }
}

static void free_value(const ProtobufCFieldDescriptor *f, void *v)
{
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        char *s = *(char **)v;
        if (s != protobuf_c_empty_string && s != f->default_value)
            free(s);
    } else if (f->type == PROTOBUF_C_TYPE_MESSAGE && *(ProtobufCMessage **)v) {
        protobuf_c_message_free_unpacked(*(ProtobufCMessage **)v, NULL);
    } else if (f->type == PROTOBUF_C_TYPE_BYTES) {
        free(((ProtobufCBinaryData *)v)->data);
    }
}

static int is_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const char *v = (const char *)m + f->offset;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)((const char *)m + f->quantifier_offset) == f->id;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING)
        return *(const protobuf_c_boolean *)((const char *)m + f->quantifier_offset);
    if (f->type == PROTOBUF_C_TYPE_STRING)
        return *(char *const *)v && **(char *const *)v;
    if (f->type == PROTOBUF_C_TYPE_BYTES)
        return ((const ProtobufCBinaryData *)v)->len > 0;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return *(void *const *)v != NULL;
    static const char zero[8];
    return memcmp(v, zero, elt_size(f->type)) != 0;
}

/* Proto MergeFrom on unpacked messages: set scalars replace, messages merge,
 * repeated fields append. Both sides use the default allocator. */
static int merge(ProtobufCMessage *dst, const ProtobufCMessage *src)
{
    const ProtobufCMessageDescriptor *d = dst->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char *dv = (char *)dst + f->offset;
        const char *sv = (const char *)src + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t *dn = (size_t *)((char *)dst + f->quantifier_offset);
            size_t sn = *(const size_t *)((const char *)src + f->quantifier_offset), esz = elt_size(f->type);
            if (sn == 0)
                continue;
            char *arr = realloc(*(char **)dv, (*dn + sn) * esz);
            if (arr == NULL)
                return -1;
            *(char **)dv = arr;
            for (size_t k = 0; k < sn; k++, (*dn)++)
                if (copy_value(f, arr + *dn * esz, *(char *const *)sv + k * esz))
                    return -1;
            continue;
        }
        if (!is_set(src, f))
            continue;
        uint32_t *dcase = (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ? (uint32_t *)((char *)dst + f->quantifier_offset) : NULL;
        int same_member = dcase == NULL || *dcase == f->id;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && same_member && *(ProtobufCMessage **)dv) {
            if (merge(*(ProtobufCMessage **)dv, *(ProtobufCMessage *const *)sv))
                return -1;
            continue;
        }
        if (dcase && *dcase != 0) { /* another oneof member (or this one) is replaced */
            const ProtobufCFieldDescriptor *old = protobuf_c_message_descriptor_get_field(d, (int)*dcase);
            if (old)
                free_value(old, (char *)dst + old->offset);
        } else if (dcase == NULL) {
            free_value(f, dv);
        }
        if (copy_value(f, dv, sv))
            return -1;
        if (dcase)
            *dcase = f->id;
        else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
                 f->type != PROTOBUF_C_TYPE_STRING)
            *(protobuf_c_boolean *)((char *)dst + f->quantifier_offset) = 1;
    }
    return 0;
}

static tn_pb_bootstrap *unpack(const struct tn_bytes *b)
{
    return envoy__config__bootstrap__v3__bootstrap__unpack(NULL, b->len, b->data ? b->data : (const uint8_t *)"");
}

tn_pb_bootstrap *tn_bootstrap_load(const char *path, const char *overlay, struct tn_err *err)
{
    struct tn_bytes base = {0}, over = {0};
    tn_pb_bootstrap *b = NULL, *o = NULL;

    if (path != NULL && load_file(path, &base, err))
        return NULL;
    if (overlay != NULL &&
        tn_pbconv_yaml(overlay, strlen(overlay), &envoy__config__bootstrap__v3__bootstrap__descriptor, &over, err)) {
        /* Say the error is the overlay's, not the file's. */
        char msg[sizeof(err->msg)];
        snprintf(msg, sizeof(msg), "--config-yaml: %s", err->msg);
        memcpy(err->msg, msg, sizeof(msg));
        err->line = 0;
        goto out;
    }
    b = unpack(&base);
    o = over.data ? unpack(&over) : NULL;
    if (b == NULL || (over.data && o == NULL) || (o && merge(&b->base, &o->base))) {
        tn_bootstrap_free(b);
        b = NULL;
        tn_err_fail(err, "cannot merge --config-yaml over the bootstrap: out of memory");
    }
out:
    tn_bootstrap_free(o);
    free(base.data);
    free(over.data);
    return b;
}

void tn_bootstrap_free(tn_pb_bootstrap *b)
{
    if (b != NULL)
        envoy__config__bootstrap__v3__bootstrap__free_unpacked(b, NULL);
}
