#include "api/pb/pbjson.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "api/pb/types.h"

struct printer {
    struct tn_buf *out;
    int indent;
    int level;
};

static void print_message(struct printer *p, const ProtobufCMessage *m);

static void newline(struct printer *p)
{
    if (p->indent == 0)
        return;
    tn_buf_addc(p->out, '\n');
    for (int i = 0; i < p->level * p->indent; i++)
        tn_buf_addc(p->out, ' ');
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0)
        len = 2, cp = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, cp = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void tn_pbjson_string(struct tn_buf *out, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    tn_buf_addc(out, '"');
    for (size_t i = 0; i < n;) {
        unsigned char ch = s[i];
        if (ch == '"' || ch == '\\') {
            tn_buf_addc(out, '\\');
            tn_buf_addc(out, (char)ch);
            i++;
        } else if (ch == '\n') {
            tn_buf_adds(out, "\\n");
            i++;
        } else if (ch == '\t') {
            tn_buf_adds(out, "\\t");
            i++;
        } else if (ch == '\r') {
            tn_buf_adds(out, "\\r");
            i++;
        } else if (ch < 0x20 || ch == 0x7f) {
            tn_buf_printf(out, "\\u%04x", ch);
            i++;
        } else {
            size_t len = utf8_len(s + i, n - i);
            if (len == 0) {
                tn_buf_adds(out, "\\ufffd");
                i++;
            } else if ((len == 2 && s[i] == 0xc2 && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f) ||
                       (len == 3 && s[i] == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9))) {
                /* C1 controls, U+2028 and U+2029: YAML reads NEL and the
                 * separators as line breaks, so they are escaped for the
                 * JSON to load back as the same string */
                unsigned cp = len == 2 ? s[i + 1] : 0x2000u | (unsigned)(s[i + 2] - 0x80);
                tn_buf_printf(out, "\\u%04x", cp);
                i += len;
            } else {
                tn_buf_add(out, s + i, len);
                i += len;
            }
        }
    }
    tn_buf_addc(out, '"');
}

static void print_base64(struct printer *p, const ProtobufCBinaryData *b)
{
    char tmp[4 * ((b->len + 2) / 3) + 1];
    int n = EVP_EncodeBlock((unsigned char *)tmp, b->data, (int)b->len);
    tn_buf_addc(p->out, '"');
    tn_buf_add(p->out, tmp, (size_t)n);
    tn_buf_addc(p->out, '"');
}

static void print_double(struct printer *p, double v, int is_float)
{
    if (isnan(v))
        tn_buf_adds(p->out, "\"NaN\"");
    else if (isinf(v))
        tn_buf_adds(p->out, v < 0 ? "\"-Infinity\"" : "\"Infinity\"");
    else
        tn_buf_printf(p->out, is_float ? "%.9g" : "%.17g", v);
}

static void print_value(struct printer *p, const ProtobufCFieldDescriptor *f, const void *v)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        tn_buf_printf(p->out, "%" PRId32, *(const int32_t *)v);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        tn_buf_printf(p->out, "%" PRIu32, *(const uint32_t *)v);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        tn_buf_printf(p->out, "\"%" PRId64 "\"", *(const int64_t *)v);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        tn_buf_printf(p->out, "\"%" PRIu64 "\"", *(const uint64_t *)v);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        print_double(p, *(const float *)v, 1);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        print_double(p, *(const double *)v, 0);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        tn_buf_adds(p->out, *(const protobuf_c_boolean *)v ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)v);
        if (ev != NULL)
            tn_pbjson_string(p->out, ev->name, strlen(ev->name));
        else
            tn_buf_printf(p->out, "%d", *(const int *)v);
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)v;
        s = s ? s : "";
        tn_pbjson_string(p->out, s, strlen(s));
        break;
    }
    case PROTOBUF_C_TYPE_BYTES:
        print_base64(p, v);
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        print_message(p, *(ProtobufCMessage *const *)v);
        break;
    }
}

static size_t elt_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    default:
        return 4;
    }
}

/* Whether a singular field holds a non-default value (proto3 presence rules). */
static int is_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const char *base = (const char *)m;
    const void *v = base + f->offset;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
        f->type != PROTOBUF_C_TYPE_STRING)
        return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)v;
        return s && *s;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)v)->len > 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(void *const *)v != NULL;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)v != 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)v != 0;
    default: {
        static const char zero[8];
        return memcmp(v, zero, elt_size(f->type)) != 0;
    }
    }
}

static int is_map_entry(const ProtobufCMessageDescriptor *d)
{
    size_t n = strlen(d->name);
    return d->n_fields == 2 && n > 5 && strcmp(d->name + n - 5, "Entry") == 0 &&
           strcmp(d->fields[0].name, "key") == 0 && strcmp(d->fields[1].name, "value") == 0;
}

static const ProtobufCFieldDescriptor *fd(const ProtobufCMessage *m, const char *name)
{
    return protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
}

#define MEMBER(m, f, type) (*(const type *)((const char *)(m) + (f)->offset))

static void print_map(struct printer *p, const ProtobufCFieldDescriptor *f, size_t n, ProtobufCMessage *const *es)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    tn_buf_addc(p->out, '{');
    p->level++;
    for (size_t i = 0; i < n; i++) {
        if (i)
            tn_buf_addc(p->out, ',');
        newline(p);
        /* JSON keys are strings whatever the key type. */
        struct tn_buf key;
        tn_buf_init(&key);
        struct printer kp = {.out = &key};
        print_value(&kp, &ed->fields[0], (const char *)es[i] + ed->fields[0].offset);
        if (key.data[0] == '"')
            tn_buf_add(p->out, key.data, key.len);
        else
            tn_pbjson_string(p->out, key.data, key.len);
        tn_buf_dispose(&key);
        tn_buf_adds(p->out, p->indent ? ": " : ":");
        print_value(p, &ed->fields[1], (const char *)es[i] + ed->fields[1].offset);
    }
    p->level--;
    if (n)
        newline(p);
    tn_buf_addc(p->out, '}');
}

static void print_repeated(struct printer *p, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
    const char *arr = MEMBER(m, f, char *);
    if (f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(f->descriptor)) {
        print_map(p, f, n, (ProtobufCMessage *const *)arr);
        return;
    }
    size_t esz = elt_size(f->type);
    tn_buf_addc(p->out, '[');
    p->level++;
    for (size_t i = 0; i < n; i++) {
        if (i)
            tn_buf_addc(p->out, ',');
        newline(p);
        print_value(p, f, arr + i * esz);
    }
    p->level--;
    newline(p);
    tn_buf_addc(p->out, ']');
}

static void print_fields(struct printer *p, const ProtobufCMessage *m, int first)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED ? *(const size_t *)((const char *)m + f->quantifier_offset) == 0
                                                  : !is_set(m, f))
            continue;
        if (!first)
            tn_buf_addc(p->out, ',');
        first = 0;
        newline(p);
        tn_pbjson_string(p->out, f->name, strlen(f->name));
        tn_buf_adds(p->out, p->indent ? ": " : ":");
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            print_repeated(p, m, f);
        else
            print_value(p, f, (const char *)m + f->offset);
    }
}

static void print_any(struct printer *p, const ProtobufCMessage *m)
{
    const char *url = MEMBER(m, fd(m, "type_url"), char *);
    const ProtobufCBinaryData *value = &MEMBER(m, fd(m, "value"), ProtobufCBinaryData);
    const ProtobufCMessageDescriptor *d = tn_type_find(url ? url : "");
    ProtobufCMessage *inner = d ? protobuf_c_message_unpack(d, NULL, value->len, value->data) : NULL;

    tn_buf_addc(p->out, '{');
    p->level++;
    newline(p);
    tn_buf_adds(p->out, p->indent ? "\"@type\": " : "\"@type\":");
    tn_pbjson_string(p->out, url ? url : "", url ? strlen(url) : 0);
    if (inner != NULL) {
        print_fields(p, inner, 0);
        protobuf_c_message_free_unpacked(inner, NULL);
    } else if (value->len > 0) {
        tn_buf_adds(p->out, p->indent ? ",\"value\": " : ",\"value\":");
        print_base64(p, value);
    }
    p->level--;
    newline(p);
    tn_buf_addc(p->out, '}');
}

static void print_duration(struct printer *p, const ProtobufCMessage *m)
{
    int64_t s = MEMBER(m, fd(m, "seconds"), int64_t);
    int32_t ns = MEMBER(m, fd(m, "nanos"), int32_t);
    int neg = s < 0 || ns < 0;
    uint64_t as = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    uint32_t ans = ns < 0 ? (uint32_t)0 - (uint32_t)ns : (uint32_t)ns;
    char frac[16] = "";
    uint32_t f = ans % 1000000000u;
    if (f) { /* trailing zeros dropped by arithmetic: GCC -O3 cannot bound a backwards string walk */
        int digits = 9;
        for (; f % 10 == 0; f /= 10)
            digits--;
        snprintf(frac, sizeof(frac), ".%0*" PRIu32, digits, f);
    }
    tn_buf_printf(p->out, "\"%s%" PRIu64 "%ss\"", neg ? "-" : "", as, frac);
}

/* Types whose JSON form is not an object of their fields; 1 if m is not one. */
static int print_wkt(struct printer *p, const ProtobufCMessage *m)
{
    const char *name = m->descriptor->name;
    if (strncmp(name, "google.protobuf.", 16) != 0)
        return 1;
    name += 16;
    if (strcmp(name, "Any") == 0)
        print_any(p, m);
    else if (strcmp(name, "Duration") == 0)
        print_duration(p, m);
    else if (strcmp(name, "Struct") == 0)
        print_repeated(p, m, fd(m, "fields"));
    else if (strcmp(name, "ListValue") == 0)
        print_repeated(p, m, fd(m, "values"));
    else if (strcmp(name, "Value") == 0) {
        uint32_t kind = *(const uint32_t *)((const char *)m + fd(m, "null_value")->quantifier_offset);
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(m->descriptor, (int)kind);
        if (f == NULL || f->type == PROTOBUF_C_TYPE_ENUM)
            tn_buf_adds(p->out, "null");
        else
            print_value(p, f, (const char *)m + f->offset);
    } else if (strlen(name) > 5 && strcmp(name + strlen(name) - 5, "Value") == 0) {
        const ProtobufCFieldDescriptor *f = fd(m, "value");
        print_value(p, f, (const char *)m + f->offset);
    } else {
        return 1;
    }
    return 0;
}

static void print_message(struct printer *p, const ProtobufCMessage *m)
{
    if (print_wkt(p, m) == 0)
        return;
    tn_buf_addc(p->out, '{');
    p->level++;
    size_t before = p->out->len;
    print_fields(p, m, 1);
    p->level--;
    if (p->out->len != before)
        newline(p);
    tn_buf_addc(p->out, '}');
}

void tn_pbjson_print(const ProtobufCMessage *m, struct tn_buf *out, int indent)
{
    struct printer p = {.out = out, .indent = indent};
    print_message(&p, m);
}
