/* Route lookup cost on a large table: 2000 virtual hosts x 50 routes (prefix,
 * exact, regex and header-matched routes mixed), written as YAML and
 * compiled the way tern loads RDS. Times vhost + route lookups for hits at the
 * start, middle and end of a vhost's route list and for a miss, and prints
 * ns per lookup. Wrong answers abort; timings are only printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/core/buf.h"
#include "filters/route_match.h"
#include "api/pb/pbconv.h"

#define N_VHOSTS   2000
#define N_ROUTES   50
#define ITERATIONS 1000000

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Route j of every vhost: kind j % 4 is prefix, exact, regex, prefix+header. */
static void add_route(struct tn_buf *y, int j)
{
    switch (j % 4) {
    case 0:
        tn_buf_printf(y, "  - {name: r%d, match: {prefix: /p%d/}, route: {cluster: c%d}}\n", j, j, j);
        break;
    case 1:
        tn_buf_printf(y, "  - {name: r%d, match: {path: /e%d}, route: {cluster: c%d}}\n", j, j, j);
        break;
    case 2:
        tn_buf_printf(y, "  - {name: r%d, match: {safe_regex: {regex: '/r%d/[0-9]+'}}, route: {cluster: c%d}}\n", j, j,
                      j);
        break;
    default:
        tn_buf_printf(y,
                      "  - {name: r%d, match: {prefix: /h%d, headers: [{name: x-tenant, exact_match: t%d}]}, "
                      "route: {cluster: c%d}}\n",
                      j, j, j, j);
    }
}

static struct tn_route_table *build_table(void)
{
    struct tn_buf y;
    struct tn_err err;
    tn_buf_init(&y);
    tn_buf_adds(&y, "virtual_hosts:\n");
    for (int i = 0; i < N_VHOSTS; i++) {
        tn_buf_printf(&y, "- name: v%d\n  domains: [h%d.example.com, '*.w%d.example.com']\n  routes:\n", i, i, i);
        for (int j = 0; j < N_ROUTES; j++)
            add_route(&y, j);
    }
    tn_err_init(&err);
    double t0 = now_ns();
    tn_pb_route_config *pb =
        (void *)tn_pbconv_yaml_msg(y.data, y.len, &envoy__config__route__v3__route_configuration__descriptor, &err);
    struct tn_route_table *t = pb ? tn_route_table_compile(pb, &err) : NULL;
    printf("table: %d vhosts x %d routes, %zu bytes of YAML, parsed and compiled in %.0f ms\n", N_VHOSTS, N_ROUTES,
           y.len, (now_ns() - t0) / 1e6);
    if (pb)
        protobuf_c_message_free_unpacked(&pb->base, NULL);
    tn_buf_dispose(&y);
    if (t == NULL) {
        fprintf(stderr, "compile failed: %s\n", err.msg);
        exit(1);
    }
    return t;
}

struct scenario {
    const char *label;
    const char *path;
    const char *tenant; /* x-tenant value, or NULL */
    const char *want;   /* expected route name, or NULL for a miss */
};

static char hosts[N_VHOSTS][32];

/* spread: how many vhosts the loop hops across (1: one hot vhost). */
static void run(const struct tn_route_table *t, const struct scenario *s, size_t spread)
{
    struct tn_header h = {"x-tenant", s->tenant, 8, s->tenant ? (uint32_t)strlen(s->tenant) : 0};
    struct tn_request_view rq = {.method = "GET",
                                 .method_len = 3,
                                 .path = s->path,
                                 .path_len = strlen(s->path),
                                 .scheme = "http",
                                 .headers = s->tenant ? &h : NULL,
                                 .n_headers = s->tenant ? 1 : 0};
    size_t hits = 0;
    double t0 = now_ns();
    for (size_t i = 0; i < ITERATIONS; i++) {
        const char *host = hosts[(i * 7) % spread]; /* hop around the table */
        const struct tn_vhost *vh = tn_route_table_vhost(t, host, strlen(host));
        const struct tn_route *r = tn_route_match(vh, &rq);
        if (vh == NULL || (r == NULL) != (s->want == NULL) || (r && strcmp(r->name, s->want) != 0)) {
            fprintf(stderr, "%s: wrong route for %s%s\n", s->label, host, s->path);
            exit(1);
        }
        hits += r != NULL;
    }
    double ns = (now_ns() - t0) / ITERATIONS;
    printf("%-28s %-14s %-5s %8.1f ns per vhost+route lookup (%zu hits)\n", s->label, s->path,
           spread == 1 ? "hot" : "cold", ns, hits);
}

int main(void)
{
    struct tn_route_table *t = build_table();
    for (int i = 0; i < N_VHOSTS; i++)
        snprintf(hosts[i], sizeof(hosts[i]), "h%d.example.com", i);

    const struct scenario scenarios[] = {
        {"start (route 0, prefix)", "/p0/a/b?x=1", NULL, "r0"},  {"middle (route 25, exact)", "/e25?x=1", NULL, "r25"},
        {"middle (route 26, regex)", "/r26/12345", NULL, "r26"}, {"end (route 47, header)", "/h47/x", "t47", "r47"},
        {"end (route 49, exact)", "/e49", NULL, "r49"},          {"miss (all 50 routes)", "/nothing/here", NULL, NULL},
    };
    printf("hot: one vhost over and over; cold: hopping across all %d vhosts (caches mostly miss)\n", N_VHOSTS);
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        run(t, &scenarios[i], 1);
        run(t, &scenarios[i], N_VHOSTS);
    }

    /* vhost lookup alone, exact and wildcard domains */
    double t0 = now_ns();
    size_t found = 0;
    for (size_t i = 0; i < ITERATIONS; i++) {
        const char *host = hosts[(i * 7) % N_VHOSTS];
        found += tn_route_table_vhost(t, host, strlen(host)) != NULL;
    }
    printf("%-28s %-14s %8.1f ns per lookup (%zu found)\n", "vhost only (exact domain)", "",
           (now_ns() - t0) / ITERATIONS, found);
    t0 = now_ns();
    found = 0;
    for (size_t i = 0; i < ITERATIONS; i++)
        found += tn_route_table_vhost(t, "a.w1500.example.com", 19) != NULL;
    printf("%-28s %-14s %8.1f ns per lookup (%zu found)\n", "vhost only (wildcard)", "", (now_ns() - t0) / ITERATIONS,
           found);
    tn_route_table_unref(t);
    return 0;
}
