/* envoy.config.core.v3.Address -> what tern binds or connects to. */
#ifndef TN_ADDRESS_H
#define TN_ADDRESS_H

#include <stdbool.h>
#include <sys/socket.h>

#include "dataplane/core/err.h"
#include "envoy/config/core/v3/address.pb-c.h"

struct tn_address {
    struct sockaddr_storage sa; /* valid when is_ip */
    bool is_ip;
    const char *host; /* as configured (IP literal or DNS name); points into the proto or a pool */
    unsigned port;
    char text[80]; /* "127.0.0.1:10000", "[::1]:80", "name:80" for logs and stats */
};

/* Reads a SocketAddress. `need_ip` makes a DNS name an error (listeners,
 * STATIC clusters). 0, or -1 with err set at the current path. */
int tn_address_from_pb(const Envoy__Config__Core__V3__Address *pb, bool need_ip, struct tn_address *out,
                       struct tn_err *err);

/* Whether two resolved addresses are the same IP and port. */
bool tn_address_same(const struct tn_address *a, const struct tn_address *b);

#endif
