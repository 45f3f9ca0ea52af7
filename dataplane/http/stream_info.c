#include "dataplane/http/stream_info.h"

#include <string.h>

static const char *const flag_names[] = {
#define TN_X(name, s) [TN_RF_BIT_##name] = s,
    TN_RESPONSE_FLAGS(TN_X)
#undef TN_X
};

/* Appends sep then s at *pos when both fit (room for the NUL kept); returns whether they did. */
static int put(char *buf, size_t len, size_t *pos, const char *sep, const char *s)
{
    size_t m = strlen(sep), n = strlen(s);
    if (*pos + m + n + 1 > len)
        return 0;
    memcpy(buf + *pos, sep, m);
    memcpy(buf + *pos + m, s, n);
    *pos += m + n;
    return 1;
}

size_t tn_response_flags_str(uint32_t flags, char *buf, size_t len)
{
    size_t pos = 0;
    if (len == 0)
        return 0;
    for (size_t i = 0; i < sizeof(flag_names) / sizeof(flag_names[0]); i++) {
        if (!(flags & (1u << i)))
            continue;
        if (!put(buf, len, &pos, pos > 0 ? "," : "", flag_names[i]))
            break;
    }
    if (pos == 0)
        put(buf, len, &pos, "", "-");
    buf[pos] = '\0';
    return pos;
}
