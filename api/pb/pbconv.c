#include "api/pb/pbconv.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include <openssl/evp.h>

#include "dataplane/core/pool.h"
#include "api/pb/types.h"
#include "api/pb/unsupported.h"

/* Deep nesting and alias bombs are refused rather than recursed into. */
#define MAX_DEPTH 128
#define MAX_VISITS (4u << 20)

struct conv {
    yaml_document_t *doc;
    struct tn_pool pool; /* everything the walk builds; dropped once packed */
    struct tn_err *err;
    unsigned depth;
    size_t visits;
    const char *ext_name; /* the `name` beside the Any being converted, for "unsupported extension NAME" */
};

static void *arena_alloc(struct conv *c, size_t n)
{
    return tn_pool_alloc(&c->pool, n);
}

static int fail(struct conv *c, yaml_node_t *n, const char *fmt, const char *arg)
{
    if (!c->err->failed && n != NULL)
        c->err->line = (int)n->start_mark.line + 1;
    return tn_err_fail(c->err, fmt, arg);
}

static const char *kind_name(yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a scalar";
    }
}

static const char *scalar(yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static int is_plain(yaml_node_t *n)
{
    return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE || n->data.scalar.style == YAML_ANY_SCALAR_STYLE;
}

/* A YAML null: `~`, `null`, or an empty plain scalar. */
static int is_null(yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || !is_plain(n))
        return 0;
    const char *s = scalar(n);
    return *s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

static int has_nul(yaml_node_t *n)
{
    return strlen(scalar(n)) != n->data.scalar.length;
}

/* ---- scalars ------------------------------------------------------------ */

static int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    if (*s == '\0' || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    if (strcmp(s, "NaN") == 0) {
        *out = NAN;
        return 0;
    }
    if (strcmp(s, "Infinity") == 0 || strcmp(s, "-Infinity") == 0) {
        *out = *s == '-' ? -INFINITY : INFINITY;
        return 0;
    }
    /* Only decimal notation: strtod would also take "inf", "nan" and hex. */
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p) && !strchr("+-.eE", *p))
            return -1;
    if (*s == '\0')
        return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, protobuf_c_boolean *out)
{
    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
        *out = 1;
    else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

int tn_pbconv_parse_duration(const char *s, int64_t *seconds, int32_t *nanos)
{
    const char *p = s;
    int neg = 0;
    int64_t sec = 0;
    int32_t ns = 0;

    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        sec = sec * 10 + (*p - '0');
        if (sec > 315576000000LL) /* the Duration range: +-10,000 years */
            return -1;
    }
    if (*p == '.') {
        int digits = 0;
        for (p++; isdigit((unsigned char)*p); p++, digits++) {
            if (digits == 9)
                return -1;
            ns = ns * 10 + (*p - '0');
        }
        if (digits == 0)
            return -1;
        for (; digits < 9; digits++)
            ns *= 10;
    }
    if (p[0] != 's' || p[1] != '\0')
        return -1;
    *seconds = neg ? -sec : sec;
    *nanos = neg ? -ns : ns;
    return 0;
}

static int decode_base64(struct conv *c, const char *s, size_t len, ProtobufCBinaryData *out)
{
    /* Accept the URL-safe alphabet and missing padding, as proto3 JSON does. */
    size_t padded = (len + 3) / 4 * 4;
    char *norm = arena_alloc(c, padded + 1);
    uint8_t *bin = arena_alloc(c, padded / 4 * 3 + 1);
    if (norm == NULL || bin == NULL)
        return -1;
    for (size_t i = 0; i < len; i++)
        norm[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    for (size_t i = len; i < padded; i++)
        norm[i] = '=';
    if (padded == 0) {
        out->data = bin;
        out->len = 0;
        return 0;
    }
    int n = EVP_DecodeBlock(bin, (const unsigned char *)norm, (int)padded);
    if (n < 0)
        return -1;
    size_t pad = 0;
    while (pad < 2 && norm[padded - 1 - pad] == '=')
        pad++;
    out->data = bin;
    out->len = (size_t)n - pad;
    return 0;
}

/* ---- descriptor helpers ------------------------------------------------- */

static size_t type_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

static int is_map_entry(const ProtobufCMessageDescriptor *d)
{
    size_t n = strlen(d->name);
    return d->n_fields == 2 && n > 5 && strcmp(d->name + n - 5, "Entry") == 0 && d->fields[0].id == 1 &&
           strcmp(d->fields[0].name, "key") == 0 && d->fields[1].id == 2 && strcmp(d->fields[1].name, "value") == 0;
}

/* The proto name a lowerCamelCase JSON name stands for, in snake (256
 * bytes); -1 when key is not such a name (it has an underscore). */
static int json_to_snake(const char *key, char *snake)
{
    size_t j = 0;
    for (const char *p = key; *p; p++) {
        if (j + 3 >= 256 || *p == '_')
            return -1;
        if (isupper((unsigned char)*p)) {
            snake[j++] = '_';
            snake[j++] = (char)tolower((unsigned char)*p);
        } else {
            snake[j++] = *p;
        }
    }
    snake[j] = '\0';
    return 0;
}

/* Looks a key up as the proto name, then as its lowerCamelCase JSON name. */
static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d, const char *key)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);
    if (f != NULL)
        return f;
    char snake[256];
    if (json_to_snake(key, snake))
        return NULL;
    return protobuf_c_message_descriptor_get_field_by_name(d, snake);
}

static void *member(ProtobufCMessage *m, unsigned offset)
{
    return (char *)m + offset;
}

static const ProtobufCFieldDescriptor *field_named(const ProtobufCMessageDescriptor *d, const char *name)
{
    return protobuf_c_message_descriptor_get_field_by_name(d, name);
}

/* "unknown enum value 'X'", naming the closest value when X looks like a typo of it. */
static int fail_enum(struct conv *c, yaml_node_t *n, const ProtobufCEnumDescriptor *ed, const char *s)
{
    char lower[128], name[128];
    size_t len = strlen(s), best = len / 3 < 2 ? len / 3 + 1 : 3;
    const char *found = NULL;

    if (len >= sizeof(lower))
        return fail(c, n, "unknown enum value '%s'", s);
    for (size_t k = 0; k <= len; k++)
        lower[k] = (char)tolower((unsigned char)s[k]);
    for (unsigned k = 0; k < ed->n_values; k++) {
        size_t m = strlen(ed->values[k].name);
        if (m >= sizeof(name))
            continue;
        for (size_t j = 0; j <= m; j++)
            name[j] = (char)tolower((unsigned char)ed->values[k].name[j]);
        size_t e = tn_edit_distance(lower, name, best);
        if (e < best) {
            best = e;
            found = ed->values[k].name;
        }
    }
    if (found == NULL)
        return fail(c, n, "unknown enum value '%s'", s);
    char msg[300];
    snprintf(msg, sizeof(msg), "unknown enum value '%.120s' (did you mean '%.120s'?)", s, found);
    return fail(c, n, "%s", msg);
}

/* ---- the walk ----------------------------------------------------------- */

static int conv_message(struct conv *c, yaml_node_t *n, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out);
static int conv_fields(struct conv *c, yaml_node_t *n, const ProtobufCMessageDescriptor *d, ProtobufCMessage *m,
                       int skip_type);

static int conv_scalar(struct conv *c, void *dst, const ProtobufCFieldDescriptor *f, yaml_node_t *n)
{
    int64_t i;
    uint64_t u;
    double dv;

    if (n->type != YAML_SCALAR_NODE) {
        const char *want = f->type == PROTOBUF_C_TYPE_STRING ? "expected a string, got %s" : "expected a scalar, got %s";
        return fail(c, n, want, kind_name(n));
    }
    const char *s = scalar(n);
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (parse_i64(s, INT32_MIN, INT32_MAX, &i))
            return fail(c, n, "expected a 32-bit integer, got '%s'", s);
        *(int32_t *)dst = (int32_t)i;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (parse_i64(s, INT64_MIN, INT64_MAX, &i))
            return fail(c, n, "expected a 64-bit integer, got '%s'", s);
        *(int64_t *)dst = i;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (parse_u64(s, UINT32_MAX, &u))
            return fail(c, n, "expected an unsigned 32-bit integer, got '%s'", s);
        *(uint32_t *)dst = (uint32_t)u;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (parse_u64(s, UINT64_MAX, &u))
            return fail(c, n, "expected an unsigned 64-bit integer, got '%s'", s);
        *(uint64_t *)dst = u;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
        if (parse_double(s, &dv) || (isfinite(dv) && fabs(dv) > 3.4028234663852886e38))
            return fail(c, n, "expected a number, got '%s'", s);
        *(float *)dst = (float)dv;
        return 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (parse_double(s, &dv))
            return fail(c, n, "expected a number, got '%s'", s);
        *(double *)dst = dv;
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (parse_bool(s, dst))
            return fail(c, n, "expected true or false, got '%s'", s);
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(ed, s);
        for (unsigned k = 0; v == NULL && k < ed->n_values; k++) /* Envoy matches enum names in any case */
            if (strcasecmp(ed->values[k].name, s) == 0)
                v = &ed->values[k];
        if (v == NULL && parse_i64(s, INT32_MIN, INT32_MAX, &i) == 0)
            v = protobuf_c_enum_descriptor_get_value(ed, (int)i);
        if (v == NULL)
            return fail_enum(c, n, ed, s);
        *(int *)dst = v->value;
        return 0;
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (has_nul(n))
            return fail(c, n, "string contains a NUL byte%s", "");
        char *copy = arena_alloc(c, n->data.scalar.length + 1);
        if (copy == NULL)
            return fail(c, n, "out of memory%s", "");
        memcpy(copy, s, n->data.scalar.length);
        *(char **)dst = copy;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES:
        if (decode_base64(c, s, n->data.scalar.length, dst))
            return fail(c, n, "expected base64 bytes, got '%s'", s);
        return 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        break;
    }
    return fail(c, n, "unsupported field type%s", "");
}

static int conv_value(struct conv *c, void *dst, const ProtobufCFieldDescriptor *f, yaml_node_t *n)
{
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return conv_message(c, n, f->descriptor, (ProtobufCMessage **)dst);
    return conv_scalar(c, dst, f, n);
}

static int conv_map(struct conv *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, yaml_node_t *n)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    ProtobufCMessage **entries = arena_alloc(c, count * sizeof(*entries) + 1);
    size_t i = 0;

    if (entries == NULL)
        return fail(c, n, "out of memory%s", "");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++, i++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (k->type != YAML_SCALAR_NODE)
            return fail(c, k, "map key must be a scalar, got %s", kind_name(k));
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = yaml_document_get_node(c->doc, q->key);
            if (k2->type == YAML_SCALAR_NODE && strcmp(scalar(k2), scalar(k)) == 0)
                return fail(c, k, "duplicate map key '%s'", scalar(k));
        }
        size_t mark = tn_err_push(c->err, "[\"%s\"]", scalar(k));
        ProtobufCMessage *e = arena_alloc(c, ed->sizeof_message);
        if (e == NULL)
            return fail(c, n, "out of memory%s", "");
        ed->message_init(e);
        if (conv_scalar(c, member(e, ed->fields[0].offset), &ed->fields[0], k))
            return -1;
        c->ext_name = ed->fields[0].type == PROTOBUF_C_TYPE_STRING ? scalar(k) : NULL;
        if (is_null(v)) {
            if (ed->fields[1].type == PROTOBUF_C_TYPE_MESSAGE)
                return fail(c, v, "map value must not be null%s", "");
        } else if (conv_value(c, member(e, ed->fields[1].offset), &ed->fields[1], v)) {
            return -1;
        }
        tn_err_pop(c->err, mark);
        entries[i] = e;
    }
    *(size_t *)member(m, f->quantifier_offset) = count;
    *(void **)member(m, f->offset) = entries;
    return 0;
}

static int conv_repeated(struct conv *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE && f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(f->descriptor))
        return conv_map(c, m, f, n);
    /* One mapping where a list of messages is expected is a list of one, as
     * Envoy's loader takes it (dynamic-config-fs's lds.yaml: `filters:` holding
     * one filter); the path stays the list's, with [0]. */
    bool single = n->type == YAML_MAPPING_NODE && f->type == PROTOBUF_C_TYPE_MESSAGE;
    if (n->type != YAML_SEQUENCE_NODE && !single)
        return fail(c, n, "expected a list, got %s", kind_name(n));

    size_t count = single ? 1 : (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    size_t esz = type_size(f->type);
    char *arr = arena_alloc(c, count * esz + 1);
    if (arr == NULL)
        return fail(c, n, "out of memory%s", "");
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = single ? n : yaml_document_get_node(c->doc, n->data.sequence.items.start[i]);
        size_t mark = tn_err_push(c->err, "[%zu]", i);
        if (is_null(item) && !(f->type == PROTOBUF_C_TYPE_MESSAGE &&
                               strcmp(((const ProtobufCMessageDescriptor *)f->descriptor)->name,
                                      "google.protobuf.Value") == 0))
            return fail(c, item, "list item must not be null%s", "");
        if (conv_value(c, arr + i * esz, f, item))
            return -1;
        tn_err_pop(c->err, mark);
    }
    *(size_t *)member(m, f->quantifier_offset) = count;
    *(void **)member(m, f->offset) = arr;
    return 0;
}

static int conv_field(struct conv *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, yaml_node_t *n)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return is_null(n) ? 0 : conv_repeated(c, m, f, n);
    /* proto3 JSON: null means "not set", except for Value where it is a value. */
    if (is_null(n) && !(f->type == PROTOBUF_C_TYPE_MESSAGE &&
                        strcmp(((const ProtobufCMessageDescriptor *)f->descriptor)->name, "google.protobuf.Value") == 0))
        return 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *cas = member(m, f->quantifier_offset);
        if (*cas != 0 && *cas != f->id) {
            const ProtobufCFieldDescriptor *other = protobuf_c_message_descriptor_get_field(m->descriptor, (int)*cas);
            return fail(c, n, "only one of a oneof may be set, and '%s' is already set", other ? other->name : "?");
        }
        if (conv_value(c, member(m, f->offset), f, n))
            return -1;
        *cas = f->id;
        return 0;
    }
    if (conv_value(c, member(m, f->offset), f, n))
        return -1;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
        f->type != PROTOBUF_C_TYPE_STRING)
        *(protobuf_c_boolean *)member(m, f->quantifier_offset) = 1;
    return 0;
}

/* ---- well-known types --------------------------------------------------- */

static int set_field(struct conv *c, ProtobufCMessage *m, const char *name, yaml_node_t *n)
{
    const ProtobufCFieldDescriptor *f = field_named(m->descriptor, name);
    return conv_field(c, m, f, n);
}

static int conv_duration(struct conv *c, yaml_node_t *n, ProtobufCMessage *m)
{
    int64_t sec;
    int32_t ns;
    if (n->type == YAML_MAPPING_NODE)
        return conv_fields(c, n, m->descriptor, m, 0);
    if (n->type != YAML_SCALAR_NODE || tn_pbconv_parse_duration(scalar(n), &sec, &ns))
        return fail(c, n, "invalid duration '%s' (expected e.g. \"5s\" or \"0.25s\")",
                    n->type == YAML_SCALAR_NODE ? scalar(n) : kind_name(n));
    *(int64_t *)member(m, field_named(m->descriptor, "seconds")->offset) = sec;
    *(int32_t *)member(m, field_named(m->descriptor, "nanos")->offset) = ns;
    return 0;
}

/* google.protobuf.Value from any node: the JSON value it spells. */
static int conv_struct_value(struct conv *c, yaml_node_t *n, ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const ProtobufCFieldDescriptor *f;
    double dv;

    if (n->type == YAML_MAPPING_NODE)
        f = field_named(d, "struct_value");
    else if (n->type == YAML_SEQUENCE_NODE)
        f = field_named(d, "list_value");
    else if (is_null(n))
        f = field_named(d, "null_value");
    else if (is_plain(n) && (strcmp(scalar(n), "true") == 0 || strcmp(scalar(n), "false") == 0))
        f = field_named(d, "bool_value");
    else if (is_plain(n) && parse_double(scalar(n), &dv) == 0 && isfinite(dv) && isdigit((unsigned char)scalar(n)[strlen(scalar(n)) - 1]))
        f = field_named(d, "number_value"); /* JSON numbers only: NaN and Infinity stay strings */
    else
        f = field_named(d, "string_value");

    *(uint32_t *)member(m, f->quantifier_offset) = f->id;
    if (f->type == PROTOBUF_C_TYPE_ENUM) {
        *(int *)member(m, f->offset) = 0; /* NULL_VALUE */
        return 0;
    }
    return conv_value(c, member(m, f->offset), f, n);
}

static int conv_any(struct conv *c, yaml_node_t *n, ProtobufCMessage *m)
{
    yaml_node_t *type = NULL;

    if (n->type != YAML_MAPPING_NODE)
        return fail(c, n, "expected a mapping with \"@type\", got %s", kind_name(n));
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp(scalar(k), "@type") == 0)
            type = yaml_document_get_node(c->doc, p->value);
    }
    if (type == NULL || type->type != YAML_SCALAR_NODE || has_nul(type))
        return fail(c, n, "missing \"@type\"%s", "");
    const ProtobufCMessageDescriptor *d = tn_type_find(scalar(type));
    if (d == NULL) {
        char msg[600];
        tn_type_unsupported_msg(scalar(type), c->ext_name, msg, sizeof(msg));
        return fail(c, type, "%s", msg);
    }

    ProtobufCMessage *inner = arena_alloc(c, d->sizeof_message);
    if (inner == NULL)
        return fail(c, n, "out of memory%s", "");
    d->message_init(inner);
    if (conv_fields(c, n, d, inner, 1))
        return -1;

    size_t len = protobuf_c_message_get_packed_size(inner);
    uint8_t *bytes = arena_alloc(c, len + 1);
    char *url = arena_alloc(c, type->data.scalar.length + 1);
    if (bytes == NULL || url == NULL)
        return fail(c, n, "out of memory%s", "");
    protobuf_c_message_pack(inner, bytes);
    memcpy(url, scalar(type), type->data.scalar.length);
    *(char **)member(m, field_named(m->descriptor, "type_url")->offset) = url;
    ProtobufCBinaryData *value = member(m, field_named(m->descriptor, "value")->offset);
    value->data = bytes;
    value->len = len;
    return 0;
}

/* Handles the types whose JSON form is not an object of their fields.
 * Returns 1 when `d` is not such a type. */
static int conv_wkt(struct conv *c, yaml_node_t *n, ProtobufCMessage *m)
{
    const char *name = m->descriptor->name;
    if (strncmp(name, "google.protobuf.", 16) != 0)
        return 1;
    name += 16;
    if (strcmp(name, "Duration") == 0)
        return conv_duration(c, n, m);
    if (strcmp(name, "Any") == 0)
        return conv_any(c, n, m);
    if (strcmp(name, "Value") == 0)
        return conv_struct_value(c, n, m);
    if (strcmp(name, "Struct") == 0) {
        if (n->type != YAML_MAPPING_NODE)
            return fail(c, n, "expected a mapping, got %s", kind_name(n));
        return set_field(c, m, "fields", n);
    }
    if (strcmp(name, "ListValue") == 0) {
        if (n->type != YAML_SEQUENCE_NODE)
            return fail(c, n, "expected a list, got %s", kind_name(n));
        return set_field(c, m, "values", n);
    }
    if (strcmp(name, "Timestamp") == 0)
        return fail(c, n, "Timestamp values are not supported in configuration%s", "");
    size_t len = strlen(name);
    if (len > 5 && strcmp(name + len - 5, "Value") == 0) { /* the wrappers: UInt32Value, BoolValue, ... */
        if (n->type != YAML_SCALAR_NODE)
            return fail(c, n, "expected a scalar, got %s", kind_name(n));
        return set_field(c, m, "value", n);
    }
    return 1;
}

/* A key d does not have: a field of Envoy's that tern leaves out, said so,
 * or an unknown one, with the closest name when it looks like a typo. */
static int fail_field(struct conv *c, yaml_node_t *k, const ProtobufCMessageDescriptor *d, const char *key)
{
    char snake[256];
    const char *name = json_to_snake(key, snake) == 0 ? snake : key;
    size_t mark = tn_err_push(c->err, ".%s", key);
    if (tn_unsupported_envoy_field(d, name)) {
        char msg[400];
        snprintf(msg, sizeof(msg), "%.200s.%.100s is not supported by tern", d->name, name);
        fail(c, k, "%s", msg);
    } else {
        const char *near = tn_unsupported_closest_field(d, name);
        char msg[300];
        snprintf(msg, sizeof(msg), "unknown field%s%.120s%s", near ? " (did you mean '" : "", near ? near : "",
                 near ? "'?)" : "");
        fail(c, k, "%s", msg);
    }
    tn_err_pop(c->err, mark);
    return -1;
}

/* The `name` of mapping n (a message d with a string `name`), or NULL: an
 * extension's name, beside its typed_config. */
static const char *ext_name_of(struct conv *c, yaml_node_t *n, const ProtobufCMessageDescriptor *d)
{
    const ProtobufCFieldDescriptor *f = field_named(d, "name");
    if (f == NULL || f->type != PROTOBUF_C_TYPE_STRING)
        return NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (k->type == YAML_SCALAR_NODE && strcmp(scalar(k), "name") == 0 && v->type == YAML_SCALAR_NODE && !has_nul(v))
            return scalar(v);
    }
    return NULL;
}

static int conv_fields(struct conv *c, yaml_node_t *n, const ProtobufCMessageDescriptor *d, ProtobufCMessage *m,
                       int skip_type)
{
    if (n->type != YAML_MAPPING_NODE)
        return fail(c, n, "expected a mapping, got %s", kind_name(n));
    unsigned char *seen = arena_alloc(c, d->n_fields + 1);
    if (seen == NULL)
        return fail(c, n, "out of memory%s", "");

    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (k->type != YAML_SCALAR_NODE)
            return fail(c, k, "field name must be a scalar, got %s", kind_name(k));
        if ((k->tag && strcmp((const char *)k->tag, "!ignore") == 0) ||
            (v->tag && strcmp((const char *)v->tag, "!ignore") == 0))
            continue;
        const char *key = scalar(k);
        if (skip_type && strcmp(key, "@type") == 0)
            continue;
        const ProtobufCFieldDescriptor *f = find_field(d, key);
        if (f == NULL)
            return fail_field(c, k, d, key);
        size_t mark = tn_err_push(c->err, ".%s", f->name);
        if (seen[f - d->fields]++)
            return fail(c, k, "field given more than once%s", "");
        c->ext_name = f->type == PROTOBUF_C_TYPE_MESSAGE &&
                              strcmp(((const ProtobufCMessageDescriptor *)f->descriptor)->name, "google.protobuf.Any") == 0
                          ? ext_name_of(c, n, d)
                          : NULL;
        if (conv_field(c, m, f, v))
            return -1;
        tn_err_pop(c->err, mark);
    }
    return 0;
}

static int conv_message(struct conv *c, yaml_node_t *n, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out)
{
    if (++c->visits > MAX_VISITS)
        return fail(c, n, "document too large or too many alias expansions%s", "");
    if (c->depth >= MAX_DEPTH)
        return fail(c, n, "nesting too deep%s", "");
    ProtobufCMessage *m = arena_alloc(c, d->sizeof_message);
    if (m == NULL)
        return fail(c, n, "out of memory%s", "");
    d->message_init(m);
    c->depth++;
    int rc = conv_wkt(c, n, m);
    if (rc == 1)
        rc = conv_fields(c, n, d, m, 0);
    c->depth--;
    if (rc == 0)
        *out = m;
    return rc;
}

/* ---- entry points ------------------------------------------------------- */

static int load_document(const char *text, size_t len, yaml_document_t *doc, struct tn_err *err)
{
    yaml_parser_t parser;
    yaml_document_t extra;

    if (!yaml_parser_initialize(&parser))
        return tn_err_fail(err, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, doc)) {
        err->line = (int)parser.problem_mark.line + 1;
        tn_err_fail(err, "YAML syntax error at line %zu column %zu: %s%s%s", parser.problem_mark.line + 1,
                    parser.problem_mark.column + 1, parser.problem ? parser.problem : "invalid input",
                    parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return -1;
    }
    if (yaml_document_get_root_node(doc) == NULL) {
        yaml_document_delete(doc);
        yaml_parser_delete(&parser);
        return tn_err_fail(err, "empty configuration");
    }
    /* Exactly one document: a second one would be silently ignored otherwise. */
    int ok = yaml_parser_load(&parser, &extra);
    int more = ok && yaml_document_get_root_node(&extra) != NULL;
    if (ok)
        yaml_document_delete(&extra);
    yaml_parser_delete(&parser);
    if (!ok || more) {
        yaml_document_delete(doc);
        return tn_err_fail(err, more ? "more than one YAML document" : "YAML syntax error after the first document");
    }
    return 0;
}

int tn_pbconv_yaml(const char *text, size_t len, const ProtobufCMessageDescriptor *desc, struct tn_bytes *out,
                   struct tn_err *err)
{
    yaml_document_t doc;
    struct conv c = {.doc = &doc, .err = err};

    tn_pool_init(&c.pool);
    ProtobufCMessage *m = NULL; /* set when conv_message returns 0; GCC -O3 cannot see that */
    int rc = -1;

    if (load_document(text, len, &doc, err))
        return -1;
    if (conv_message(&c, yaml_document_get_root_node(&doc), desc, &m) == 0) {
        size_t n = protobuf_c_message_get_packed_size(m);
        out->data = malloc(n + 1);
        if (out->data != NULL) {
            out->len = protobuf_c_message_pack(m, out->data);
            rc = 0;
        } else {
            tn_err_fail(err, "out of memory");
        }
    }
    tn_pool_dispose(&c.pool);
    yaml_document_delete(&doc);
    return rc;
}

ProtobufCMessage *tn_pbconv_yaml_msg(const char *text, size_t len, const ProtobufCMessageDescriptor *desc,
                                     struct tn_err *err)
{
    struct tn_bytes b;
    if (tn_pbconv_yaml(text, len, desc, &b, err))
        return NULL;
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, b.len, b.data);
    free(b.data);
    if (m == NULL)
        tn_err_fail(err, "internal error: converted message does not unpack");
    return m;
}
