/* tern's command line: Envoy's flags, the configuration path, and the modes. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/server/config.h"
#include "dataplane/core/log.h"
#include "dataplane/server/server.h"
#include "xds/bootstrap.h"

struct options {
    const char *config_path;
    const char *config_yaml;
    const char *mode;
    const char *service_node;
    const char *service_cluster;
    long concurrency;
    long drain_time_s;
};

enum {
    OPT_CONFIG_YAML = 256,
    OPT_MODE,
    OPT_COMPONENT_LOG_LEVEL,
    OPT_CONCURRENCY,
    OPT_SERVICE_NODE,
    OPT_SERVICE_CLUSTER,
    OPT_DRAIN_TIME_S,
    OPT_VERSION,
};

static const struct option long_opts[] = {
    {"config-path", required_argument, NULL, 'c'},
    {"config-yaml", required_argument, NULL, OPT_CONFIG_YAML},
    {"mode", required_argument, NULL, OPT_MODE},
    {"log-level", required_argument, NULL, 'l'},
    {"component-log-level", required_argument, NULL, OPT_COMPONENT_LOG_LEVEL},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"service-node", required_argument, NULL, OPT_SERVICE_NODE},
    {"service-cluster", required_argument, NULL, OPT_SERVICE_CLUSTER},
    {"drain-time-s", required_argument, NULL, OPT_DRAIN_TIME_S},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: tern -c <config> [options]\n"
                 "\n"
                 "  -c, --config-path PATH          bootstrap file (.yaml, .yml, .json, or .pb)\n"
                 "      --config-yaml YAML          YAML merged over the bootstrap file (as Envoy)\n"
                 "      --mode serve|validate       validate: load and compile the configuration, bind nothing\n"
                 "  -l, --log-level LEVEL           trace|debug|info|warning|error|critical|off (default info)\n"
                 "      --component-log-level C:L   per-component levels, e.g. upstream:debug,config:trace\n"
                 "      --concurrency N             worker threads (default: the number of cores)\n"
                 "      --service-node NAME         node id (overrides node.id)\n"
                 "      --service-cluster NAME      node cluster (overrides node.cluster)\n"
                 "      --drain-time-s N            how long to drain connections on shutdown (default 600)\n"
                 "      --version                   print the version and exit\n"
                 "  -h, --help                      this text\n");
}

static int parse_long(const char *flag, const char *s, long min, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end || v < min) {
        fprintf(stderr, "tern: %s: '%s' is not an integer >= %ld\n", flag, s, min);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
    int c, level;
    char errbuf[256];

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:l:h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config_path = optarg;
            break;
        case OPT_CONFIG_YAML:
            o->config_yaml = optarg;
            break;
        case OPT_MODE:
            if (strcmp(optarg, "serve") != 0 && strcmp(optarg, "validate") != 0) {
                fprintf(stderr, "tern: --mode: '%s' is not one of serve, validate\n", optarg);
                return -1;
            }
            o->mode = optarg;
            break;
        case 'l':
            if ((level = tn_log_level_parse(optarg)) < 0) {
                fprintf(stderr, "tern: --log-level: unknown level '%s'\n", optarg);
                return -1;
            }
            tn_log_set_all(level);
            break;
        case OPT_COMPONENT_LOG_LEVEL:
            if (tn_log_set_components(optarg, errbuf, sizeof(errbuf))) {
                fprintf(stderr, "tern: --component-log-level: %s\n", errbuf);
                return -1;
            }
            break;
        case OPT_CONCURRENCY:
            if (parse_long("--concurrency", optarg, 1, &o->concurrency))
                return -1;
            break;
        case OPT_SERVICE_NODE:
            o->service_node = optarg;
            break;
        case OPT_SERVICE_CLUSTER:
            o->service_cluster = optarg;
            break;
        case OPT_DRAIN_TIME_S:
            if (parse_long("--drain-time-s", optarg, 0, &o->drain_time_s))
                return -1;
            break;
        case OPT_VERSION:
            printf("tern version %s\n", TN_VERSION);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        case ':':
            fprintf(stderr, "tern: option '%s' needs a value\n\n", argv[optind - 1]);
            usage(stderr);
            return -1;
        default:
            fprintf(stderr, "tern: unknown option '%s'\n\n", argv[optind - 1]);
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tern: unexpected argument '%s'\n\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    if (o->config_path == NULL && o->config_yaml == NULL) {
        fprintf(stderr, "tern: a configuration is required: -c <path> or --config-yaml <yaml>\n\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

/* --service-node / --service-cluster override the bootstrap's node, as Envoy. */
static int apply_node_flags(tn_pb_bootstrap *b, const struct options *o)
{
    if (o->service_node == NULL && o->service_cluster == NULL)
        return 0;
    if (b->node == NULL) {
        b->node = malloc(sizeof(*b->node));
        if (b->node == NULL)
            return -1;
        envoy__config__core__v3__node__init(b->node);
    }
    if (o->service_node) {
        if (b->node->id != protobuf_c_empty_string)
            free(b->node->id);
        b->node->id = strdup(o->service_node);
    }
    if (o->service_cluster) {
        if (b->node->cluster != protobuf_c_empty_string)
            free(b->node->cluster);
        b->node->cluster = strdup(o->service_cluster);
    }
    return b->node->id && b->node->cluster ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct options o = {.mode = "serve", .concurrency = sysconf(_SC_NPROCESSORS_ONLN), .drain_time_s = 600};
    struct tn_err err;
    const char *what = o.config_path;

    if (parse_args(argc, argv, &o))
        return 1;
    what = o.config_path ? o.config_path : "--config-yaml";
    tn_err_init(&err);
    tn_pb_bootstrap *b = tn_bootstrap_load(o.config_path, o.config_yaml, &err);
    if (b == NULL || apply_node_flags(b, &o)) {
        fprintf(stderr, "tern: configuration '%s' is invalid: %s%s\n", what, err.msg, b ? "out of memory" : "");
        if (err.line > 0 && o.config_path)
            fprintf(stderr, "tern: (at %s line %d)\n", o.config_path, err.line);
        tn_bootstrap_free(b);
        return 1;
    }
    struct tn_config *cfg = tn_config_compile(b, &err);
    if (cfg == NULL) {
        fprintf(stderr, "tern: configuration '%s' is invalid: %s\n", what, err.msg);
        return 1;
    }
    if (strcmp(o.mode, "validate") == 0) {
        printf("configuration '%s' OK\n", what);
        tn_config_unref(cfg);
        return 0;
    }
    TN_LOG(TN_LOG_INFO, main, "tern %s starting: configuration '%s', %ld worker%s", TN_VERSION, what,
           o.concurrency, o.concurrency == 1 ? "" : "s");
    struct tn_server_options so = {.concurrency = (unsigned)o.concurrency,
                                   .drain_time_s = (unsigned)o.drain_time_s,
                                   .argv = (const char *const *)argv,
                                   .argc = argc};
    int rc = tn_server_run(cfg, &so);
    tn_config_unref(cfg);
    return rc;
}
