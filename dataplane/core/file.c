#include "dataplane/core/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
