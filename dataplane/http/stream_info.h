/* What is known about one downstream request when it is logged (Envoy's
 * StreamInfo): what the access log formatter reads. Filled by the connection
 * manager and the router; strings point into the stream's memory and live
 * until the log line is written. */
#ifndef TN_STREAM_INFO_H
#define TN_STREAM_INFO_H

#include <stdint.h>
#include <sys/socket.h>

#include "dataplane/http/http.h"

/* Envoy's response flags, with their short names in access logs. */
#define TN_RESPONSE_FLAGS(X)                                                                                          \
    X(FAILED_LOCAL_HEALTHCHECK, "LH")                                                                                  \
    X(NO_HEALTHY_UPSTREAM, "UH")                                                                                       \
    X(UPSTREAM_REQUEST_TIMEOUT, "UT")                                                                                  \
    X(LOCAL_RESET, "LR")                                                                                               \
    X(UPSTREAM_REMOTE_RESET, "UR")                                                                                     \
    X(UPSTREAM_CONNECTION_FAILURE, "UF")                                                                               \
    X(UPSTREAM_CONNECTION_TERMINATION, "UC")                                                                           \
    X(UPSTREAM_OVERFLOW, "UO")                                                                                         \
    X(NO_ROUTE_FOUND, "NR")                                                                                            \
    X(DELAY_INJECTED, "DI")                                                                                            \
    X(FAULT_INJECTED, "FI")                                                                                            \
    X(RATE_LIMITED, "RL")                                                                                              \
    X(DOWNSTREAM_CONNECTION_TERMINATION, "DC")                                                                         \
    X(UPSTREAM_RETRY_LIMIT_EXCEEDED, "URX")                                                                            \
    X(STREAM_IDLE_TIMEOUT, "SI")                                                                                       \
    X(DOWNSTREAM_PROTOCOL_ERROR, "DPE")                                                                                \
    X(UPSTREAM_PROTOCOL_ERROR, "UPE")                                                                                  \
    X(NO_CLUSTER_FOUND, "NC")                                                                                          \
    X(OVERLOAD_MANAGER, "OM")

enum {
#define TN_X(name, s) TN_RF_BIT_##name,
    TN_RESPONSE_FLAGS(TN_X)
#undef TN_X
};
enum {
#define TN_X(name, s) TN_RF_##name = 1u << TN_RF_BIT_##name,
    TN_RESPONSE_FLAGS(TN_X)
#undef TN_X
};

struct tn_stream_info {
    uint64_t start_ms;       /* wall clock, ms since the epoch: %START_TIME% */
    uint64_t start_ns;       /* monotonic, for durations */
    uint64_t end_ns;         /* when the last byte was sent (0 if not yet) */
    uint64_t last_downstream_rx_ns; /* the request's last byte arrived, 0 if not yet */
    uint64_t first_upstream_rx_ns; /* first response byte from upstream, 0 if none */
    uint32_t response_flags; /* TN_RF_* */
    int response_code;       /* 0 when no response was sent */
    const char *response_code_details; /* "via_upstream", "route_not_found", ... */
    uint64_t bytes_received, bytes_sent; /* bodies */
    const char *protocol;    /* "HTTP/1.1" */
    /* the request as received (after nothing was rewritten) */
    const char *method;
    size_t method_len;
    const char *path;
    size_t path_len;
    const char *authority;
    size_t authority_len;
    const struct tn_header *req_headers;
    size_t n_req_headers;
    const struct tn_header *resp_headers;
    size_t n_resp_headers;
    const char *request_id; /* x-request-id */
    size_t request_id_len;
    const char *route_name;
    const char *upstream_cluster; /* NULL when none was chosen */
    const char *upstream_host;    /* "127.0.0.1:8081", NULL when none */
    struct sockaddr_storage downstream_remote, downstream_local;
    struct sockaddr_storage upstream_local; /* ss_family 0 when no upstream connection was used */
    const struct tn_header *resp_trailers;  /* as received from upstream */
    size_t n_resp_trailers;
    bool health_check; /* answered (or passed on) by the health check filter */
    uint32_t upstream_attempts; /* tries made (1 + retries) */
    const char *scheme;         /* "http" or "https" (%REQ(:SCHEME)%), NULL when unknown */
};

/* The short names of the flags set in `flags`, comma separated ("UF,URX"),
 * or "-" when none, written to buf (always NUL-terminated). */
size_t tn_response_flags_str(uint32_t flags, char *buf, size_t len);

#endif
