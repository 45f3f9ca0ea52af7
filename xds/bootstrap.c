#include "xds/bootstrap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xds/pbconv.h"

#define MAX_CONFIG_BYTES (64u << 20)

char *tn_read_file(const char *path, size_t *len, struct tn_err *err)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL) {
        tn_err_fail(err, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        if (cap - n < 65536) {
            cap = cap ? cap * 2 : 65536;
            char *p = realloc(data, cap + 1);
            if (p == NULL)
                break;
            data = p;
        }
        size_t got = fread(data + n, 1, cap - n, f);
        n += got;
        if (n > MAX_CONFIG_BYTES) {
            tn_err_fail(err, "'%s' is larger than %u bytes", path, MAX_CONFIG_BYTES);
            goto err;
        }
        if (got == 0)
            break;
    }
    if (ferror(f) || data == NULL) {
        tn_err_fail(err, "cannot read '%s': %s", path, ferror(f) ? strerror(errno) : "out of memory");
        goto err;
    }
    fclose(f);
    data[n] = '\0';
    *len = n;
    return data;
err:
    fclose(f);
    free(data);
    return NULL;
}

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

tn_pb_bootstrap *tn_bootstrap_load(const char *path, const char *overlay, struct tn_err *err)
{
    struct tn_bytes base = {0}, over = {0};
    tn_pb_bootstrap *b = NULL;

    if (path != NULL && load_file(path, &base, err))
        return NULL;
    if (overlay != NULL &&
        tn_pbconv_yaml(overlay, strlen(overlay), &envoy__config__bootstrap__v3__bootstrap__descriptor, &over, err)) {
        free(base.data);
        return NULL;
    }
    /* Parsing two serialized messages back to back is proto MergeFrom. */
    uint8_t *all = malloc(base.len + over.len + 1);
    if (all != NULL) {
        if (base.len)
            memcpy(all, base.data, base.len);
        if (over.len)
            memcpy(all + base.len, over.data, over.len);
        b = envoy__config__bootstrap__v3__bootstrap__unpack(NULL, base.len + over.len, all);
    }
    if (b == NULL)
        tn_err_fail(err, "cannot merge --config-yaml over the bootstrap");
    free(all);
    free(base.data);
    free(over.data);
    return b;
}

void tn_bootstrap_free(tn_pb_bootstrap *b)
{
    if (b != NULL)
        envoy__config__bootstrap__v3__bootstrap__free_unpacked(b, NULL);
}
