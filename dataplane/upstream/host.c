#include "dataplane/upstream/host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "dataplane/upstream/lb.h"

static void format_addr(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(out, len, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, len, "?");
    }
}

struct tn_host *tn_host_new(const struct sockaddr *addr, unsigned salen, const char *hostname, uint32_t weight,
                            uint32_t priority)
{
    struct tn_host *h = calloc(1, sizeof(*h));
    if (h == NULL || salen > sizeof(h->sa))
        goto err;
    if (hostname && (h->hostname = strdup(hostname)) == NULL)
        goto err;
    memcpy(&h->sa, addr, salen);
    h->salen = salen;
    format_addr(addr, h->addr_text, sizeof(h->addr_text));
    h->weight = weight ? weight : 1;
    h->priority = priority;
    atomic_init(&h->refcnt, 1);
    return h;
err:
    free(h);
    return NULL;
}

struct tn_host *tn_host_ref(struct tn_host *h)
{
    atomic_fetch_add_explicit(&h->refcnt, 1, memory_order_relaxed);
    return h;
}

void tn_host_unref(struct tn_host *h)
{
    if (h == NULL || atomic_fetch_sub_explicit(&h->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    free((char *)h->hostname);
    free(h);
}

struct tn_host_set *tn_host_set_new(struct tn_host **hosts, size_t n, const struct tn_cluster *c)
{
    struct tn_host_set *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    if (n && (s->hosts = malloc(n * sizeof(*s->hosts))) == NULL) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        s->hosts[i] = tn_host_ref(hosts[i]);
    s->n_hosts = n;
    atomic_init(&s->refcnt, 1);
    if (tn_lb_prepare(s, c)) {
        tn_host_set_unref(s);
        return NULL;
    }
    return s;
}

struct tn_host_set *tn_host_set_ref(struct tn_host_set *s)
{
    atomic_fetch_add_explicit(&s->refcnt, 1, memory_order_relaxed);
    return s;
}

void tn_host_set_unref(struct tn_host_set *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    tn_lb_release(s);
    for (size_t i = 0; i < s->n_hosts; i++)
        tn_host_unref(s->hosts[i]);
    free(s->hosts);
    free(s);
}
