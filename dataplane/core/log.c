#include "dataplane/core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

unsigned char tn_log_levels[TN_LOGC__COUNT] = {
#define TN_X(name) [TN_LOGC_##name] = TN_LOG_INFO,
    TN_LOG_COMPONENTS(TN_X)
#undef TN_X
};

static const char *const comp_names[] = {
#define TN_X(name) [TN_LOGC_##name] = #name,
    TN_LOG_COMPONENTS(TN_X)
#undef TN_X
};

static const char *const level_names[] = {
    [TN_LOG_TRACE] = "trace", [TN_LOG_DEBUG] = "debug", [TN_LOG_INFO] = "info",         [TN_LOG_WARN] = "warning",
    [TN_LOG_ERROR] = "error", [TN_LOG_CRITICAL] = "critical", [TN_LOG_OFF] = "off",
};

const char *tn_log_level_name(enum tn_log_level level)
{
    return level <= TN_LOG_OFF ? level_names[level] : "?";
}

int tn_log_level_parse(const char *name)
{
    for (int i = 0; i <= TN_LOG_OFF; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    if (strcasecmp(name, "warn") == 0)
        return TN_LOG_WARN;
    return -1;
}

void tn_log_set_all(enum tn_log_level level)
{
    memset(tn_log_levels, level, sizeof(tn_log_levels));
}

static int find_component(const char *name, size_t len)
{
    for (int i = 0; i < TN_LOGC__COUNT; i++)
        if (strlen(comp_names[i]) == len && strncmp(comp_names[i], name, len) == 0)
            return i;
    return -1;
}

int tn_log_set_components(const char *spec, char *errbuf, unsigned errlen)
{
    unsigned char next[TN_LOGC__COUNT];
    memcpy(next, tn_log_levels, sizeof(next));
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        char level[16];
        if (colon == NULL || (size_t)(p + len - colon - 1) >= sizeof(level)) {
            snprintf(errbuf, errlen, "component log level '%.*s': expected <component>:<level>", (int)len, p);
            return -1;
        }
        int c = find_component(p, (size_t)(colon - p));
        if (c < 0) {
            snprintf(errbuf, errlen, "unknown log component '%.*s'", (int)(colon - p), p);
            return -1;
        }
        memcpy(level, colon + 1, (size_t)(p + len - colon - 1));
        level[p + len - colon - 1] = '\0';
        int l = tn_log_level_parse(level);
        if (l < 0) {
            snprintf(errbuf, errlen, "unknown log level '%s'", level);
            return -1;
        }
        next[c] = (unsigned char)l;
        p = end ? end + 1 : p + len;
    }
    memcpy(tn_log_levels, next, sizeof(next));
    return 0;
}

void tn_log_write(enum tn_log_level level, enum tn_log_component comp, const char *fmt, ...)
{
    char line[4096];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "[%04d-%02d-%02d %02d:%02d:%02d.%03ld][%s][%s] ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000),
                     level_names[level], comp_names[comp]);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line so lines from different threads do not interleave. */
    fprintf(stderr, "%s\n", line);
}
