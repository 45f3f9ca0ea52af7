/* Reading a whole file: configuration files, direct_response bodies. Main
 * thread only (it blocks). */
#ifndef TN_FILE_H
#define TN_FILE_H

#include <stddef.h>

#include "dataplane/core/err.h"

/* Reads a whole file (at most 64 MiB) into a NUL-terminated malloc'd buffer;
 * NULL with err set ("cannot open 'PATH': ...") on failure. */
char *tn_read_file(const char *path, size_t *len, struct tn_err *err);

#endif
