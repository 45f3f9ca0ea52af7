#include "dataplane/core/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

int tn_address_from_pb(const Envoy__Config__Core__V3__Address *pb, bool need_ip, struct tn_address *out,
                       struct tn_err *err)
{
    memset(out, 0, sizeof(*out));
    if (pb == NULL)
        return tn_err_fail(err, "required");
    if (pb->address_case == ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_PIPE)
        return tn_err_fail(err, "pipe: unix domain sockets are not supported by tern yet");
    if (pb->address_case != ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS)
        return tn_err_fail(err, "socket_address: required");

    const Envoy__Config__Core__V3__SocketAddress *sa = pb->socket_address;
    size_t mark = tn_err_push(err, ".socket_address");
    if (sa->protocol != ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PROTOCOL__TCP)
        return tn_err_fail(err, "protocol: only TCP is supported");
    if (sa->port_specifier_case == ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_NAMED_PORT)
        return tn_err_fail(err, "named_port: not supported, use port_value");
    if (sa->port_value > 65535) {
        tn_err_push(err, ".port_value");
        return tn_err_fail(err, "%u is not a port (0-65535)", sa->port_value);
    }
    if (*sa->address == '\0') {
        tn_err_push(err, ".address");
        return tn_err_fail(err, "required");
    }
    if (*sa->resolver_name) {
        tn_err_push(err, ".resolver_name");
        return tn_err_fail(err, "custom resolvers are not supported");
    }
    out->host = sa->address;
    out->port = sa->port_value;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->sa;
    if (inet_pton(AF_INET, sa->address, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)sa->port_value);
        out->is_ip = true;
        snprintf(out->text, sizeof(out->text), "%s:%u", sa->address, sa->port_value);
    } else if (inet_pton(AF_INET6, sa->address, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)sa->port_value);
        out->is_ip = true;
        snprintf(out->text, sizeof(out->text), "[%s]:%u", sa->address, sa->port_value);
    } else if (need_ip) {
        tn_err_push(err, ".address");
        return tn_err_fail(err, "'%s' is not an IP address", sa->address);
    } else {
        snprintf(out->text, sizeof(out->text), "%s:%u", sa->address, sa->port_value);
    }
    tn_err_pop(err, mark);
    return 0;
}

bool tn_address_same(const struct tn_address *a, const struct tn_address *b)
{
    if (!a->is_ip || !b->is_ip || a->sa.ss_family != b->sa.ss_family || a->port != b->port)
        return false;
    if (a->sa.ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)&a->sa)->sin_addr, &((const struct sockaddr_in *)&b->sa)->sin_addr,
                      sizeof(struct in_addr)) == 0;
    return memcmp(&((const struct sockaddr_in6 *)&a->sa)->sin6_addr, &((const struct sockaddr_in6 *)&b->sa)->sin6_addr,
                  sizeof(struct in6_addr)) == 0;
}
