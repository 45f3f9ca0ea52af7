/* Logging with Envoy's levels and component names.
 *
 * TN_LOG checks the component's level before it evaluates its arguments, so a
 * disabled debug line costs one comparison. Levels and components are set from
 * -l / --component-log-level at start and by the admin API later. */
#ifndef TN_LOG_H
#define TN_LOG_H

enum tn_log_level {
    TN_LOG_TRACE = 0,
    TN_LOG_DEBUG,
    TN_LOG_INFO,
    TN_LOG_WARN,
    TN_LOG_ERROR,
    TN_LOG_CRITICAL,
    TN_LOG_OFF,
};

/* Envoy's component names (a subset: the ones tern logs under). */
#define TN_LOG_COMPONENTS(X)                                                                                           \
    X(admin)                                                                                                           \
    X(config)                                                                                                          \
    X(connection)                                                                                                      \
    X(http)                                                                                                            \
    X(http2)                                                                                                           \
    X(main)                                                                                                            \
    X(misc)                                                                                                            \
    X(pool)                                                                                                            \
    X(router)                                                                                                          \
    X(runtime)                                                                                                         \
    X(upstream)                                                                                                        \
    X(dns)                                                                                                             \
    X(hc)                                                                                                              \
    X(cache)                                                                                                           \
    X(mirror)                                                                                                          \
    X(xds)

enum tn_log_component {
#define TN_X(name) TN_LOGC_##name,
    TN_LOG_COMPONENTS(TN_X)
#undef TN_X
        TN_LOGC__COUNT
};

extern unsigned char tn_log_levels[TN_LOGC__COUNT];

#define TN_LOG(level, comp, ...)                                                                                       \
    do {                                                                                                               \
        if ((level) >= tn_log_levels[TN_LOGC_##comp])                                                                  \
            tn_log_write((level), TN_LOGC_##comp, __VA_ARGS__);                                                        \
    } while (0)

void tn_log_write(enum tn_log_level level, enum tn_log_component comp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses a level name ("debug", "warning"/"warn", ...); -1 if unknown. */
int tn_log_level_parse(const char *name);
const char *tn_log_level_name(enum tn_log_level level);

/* Sets every component's level. */
void tn_log_set_all(enum tn_log_level level);

/* Applies "comp:level,comp:level" (Envoy's --component-log-level); returns 0,
 * or -1 with a message in errbuf and no change made. */
int tn_log_set_components(const char *spec, char *errbuf, unsigned errlen);

#endif
