#include "filters/route.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dataplane/core/file.h"
#include "dataplane/core/log.h"
#include "envoy/config/route/v3/route_components.pb-c.h"
#include "filters/filter.h"
#include "api/pb/types.h"
#include "api/pb/unsupported.h"

typedef Envoy__Config__Route__V3__VirtualHost pb_vhost;
typedef Envoy__Config__Route__V3__Route pb_route;
typedef Envoy__Config__Route__V3__RouteMatch pb_match;
typedef Envoy__Config__Route__V3__RouteAction pb_action;
typedef Envoy__Config__Route__V3__RetryPolicy pb_retry;
typedef Envoy__Config__Route__V3__RouteAction__RequestMirrorPolicy pb_mirror;
typedef Envoy__Config__Route__V3__HeaderMatcher pb_header_matcher;
typedef Envoy__Config__Route__V3__QueryParameterMatcher pb_query_matcher;
typedef Envoy__Config__Route__V3__RedirectAction pb_redirect;
typedef Envoy__Config__Route__V3__DirectResponseAction pb_direct;
typedef Envoy__Config__Core__V3__HeaderValueOption pb_header_option;
typedef Envoy__Type__V3__FractionalPercent pb_fraction;

#define DEFAULT_TIMEOUT_MS 15000
#define DEFAULT_MAX_DIRECT_BODY 4096

struct ctx {
    struct tn_route_table *t;
    struct tn_err *err;
};

static uint64_t duration_ms(const Google__Protobuf__Duration *d)
{
    if (d->seconds < 0 || d->nanos < 0)
        return 0;
    return (uint64_t)d->seconds * 1000 + (uint64_t)d->nanos / 1000000;
}

static char *lower_dup(struct ctx *c, const char *s)
{
    char *p = tn_pool_strdup(&c->t->pool, s);
    for (char *q = p; q && *q; q++)
        *q = (char)tolower((unsigned char)*q);
    return p;
}

/* Envoy's rule for header names in mutations and matchers. */
static int check_name(struct tn_err *err, const char *name, int allow_pseudo)
{
    if (*name == '\0')
        return tn_err_fail(err, "header name must not be empty");
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f || (*p == ':' && (p != name || !allow_pseudo)))
            return tn_err_fail(err, "invalid header name '%s'", name);
    return 0;
}

static int check_header_name(struct ctx *c, const char *name, int allow_pseudo)
{
    return check_name(c->err, name, allow_pseudo);
}

static int fraction(struct ctx *c, const pb_fraction *f, uint32_t *num, uint32_t *den)
{
    static const uint32_t dens[] = {100, 10000, 1000000};
    if ((unsigned)f->denominator > 2)
        return tn_err_fail(c->err, "unknown denominator %d", f->denominator);
    *den = dens[f->denominator];
    *num = f->numerator > *den ? *den : f->numerator; /* Envoy caps at 100% */
    return 0;
}

/* ---- header mutations --------------------------------------------------- */

static int compile_adds(struct ctx *c, pb_header_option **pb, size_t n, struct tn_header_op **out, size_t *n_out,
                        const char *field)
{
    struct tn_header_op *ops = tn_pool_alloc(&c->t->pool, n * sizeof(*ops) + 1);
    for (size_t i = 0; i < n; i++) {
        size_t mark = tn_err_push(c->err, ".%s[%zu]", field, i);
        if (pb[i]->header == NULL)
            return tn_err_fail(c->err, "header: required");
        tn_err_push(c->err, ".header.key");
        if (check_header_name(c, pb[i]->header->key, 0))
            return -1;
        tn_err_pop(c->err, mark);
        if (pb[i]->append != NULL && pb[i]->append_action != 0) {
            tn_err_push(c->err, ".%s[%zu]", field, i);
            return tn_err_fail(c->err, "append and append_action are mutually exclusive");
        }
        ops[i].key = lower_dup(c, pb[i]->header->key);
        ops[i].value = tn_pool_strdup(&c->t->pool, pb[i]->header->value);
        ops[i].action = pb[i]->append ? (pb[i]->append->value ? 0 : 2) : (int)pb[i]->append_action;
        ops[i].keep_empty_value = pb[i]->keep_empty_value;
    }
    *out = ops;
    *n_out = n;
    return 0;
}

static int compile_removes(struct ctx *c, char **pb, size_t n, const char ***out, size_t *n_out, const char *field)
{
    const char **names = tn_pool_alloc(&c->t->pool, n * sizeof(*names) + 1);
    for (size_t i = 0; i < n; i++) {
        size_t mark = tn_err_push(c->err, ".%s[%zu]", field, i);
        if (check_header_name(c, pb[i], 1))
            return -1;
        if (pb[i][0] == ':' || strcasecmp(pb[i], "host") == 0)
            return tn_err_fail(c->err, "':'-prefixed or host headers may not be removed");
        tn_err_pop(c->err, mark);
        names[i] = lower_dup(c, pb[i]);
    }
    *out = names;
    *n_out = n;
    return 0;
}

#define COMPILE_MUTATIONS(c, pb, m)                                                                                    \
    (compile_adds(c, (pb)->request_headers_to_add, (pb)->n_request_headers_to_add, &(m)->req_add, &(m)->n_req_add,     \
                  "request_headers_to_add") ||                                                                         \
     compile_adds(c, (pb)->response_headers_to_add, (pb)->n_response_headers_to_add, &(m)->resp_add,                   \
                  &(m)->n_resp_add, "response_headers_to_add") ||                                                      \
     compile_removes(c, (pb)->request_headers_to_remove, (pb)->n_request_headers_to_remove, &(m)->req_remove,          \
                     &(m)->n_req_remove, "request_headers_to_remove") ||                                               \
     compile_removes(c, (pb)->response_headers_to_remove, (pb)->n_response_headers_to_remove, &(m)->resp_remove,       \
                     &(m)->n_resp_remove, "response_headers_to_remove"))

/* ---- retry and mirror policies ------------------------------------------ */

static const struct {
    const char *name;
    uint32_t bit; /* 0: an Envoy condition tern accepts but does not act on */
} retry_conditions[] = {
    {"5xx", TN_RETRY_ON_5XX},
    {"gateway-error", TN_RETRY_ON_GATEWAY_ERROR},
    {"connect-failure", TN_RETRY_ON_CONNECT_FAILURE},
    {"reset", TN_RETRY_ON_RESET},
    {"retriable-status-codes", TN_RETRY_ON_RETRIABLE_STATUS_CODES},
    {"retriable-4xx", TN_RETRY_ON_RETRIABLE_4XX},
    {"refused-stream", TN_RETRY_ON_REFUSED_STREAM},
    {"reset-before-request", 0},
    {"envoy-ratelimited", 0},
    {"retriable-headers", 0},
    {"http3-post-connect-failure", 0},
    {"cancelled", 0},
    {"deadline-exceeded", 0},
    {"internal", 0},
    {"resource-exhausted", 0},
    {"unavailable", 0},
};

static int parse_retry_on(struct ctx *c, const char *s, uint32_t *bits)
{
    *bits = 0;
    while (*s) {
        while (*s == ' ' || *s == ',')
            s++;
        size_t len = strcspn(s, ", ");
        if (len == 0)
            break;
        size_t i;
        for (i = 0; i < sizeof(retry_conditions) / sizeof(retry_conditions[0]); i++)
            if (strlen(retry_conditions[i].name) == len && strncmp(retry_conditions[i].name, s, len) == 0)
                break;
        if (i == sizeof(retry_conditions) / sizeof(retry_conditions[0])) {
            tn_err_push(c->err, ".retry_on");
            return tn_err_fail(c->err, "unknown retry condition '%.*s'", (int)len, s);
        }
        if (retry_conditions[i].bit == 0)
            TN_LOG(TN_LOG_WARN, config, "retry condition '%s' is accepted but not acted on by tern",
                   retry_conditions[i].name);
        *bits |= retry_conditions[i].bit;
        s += len;
    }
    return 0;
}

static int compile_retry(struct ctx *c, const pb_retry *pb, struct tn_retry_policy *r)
{
    size_t mark = tn_err_push(c->err, ".retry_policy");
    if (parse_retry_on(c, pb->retry_on, &r->retry_on))
        return -1;
    r->num_retries = pb->num_retries ? pb->num_retries->value : 1;
    r->per_try_timeout_ms = pb->per_try_timeout ? duration_ms(pb->per_try_timeout) : 0;
    r->retriable_status_codes = tn_pool_alloc(&c->t->pool, pb->n_retriable_status_codes * sizeof(uint32_t) + 1);
    for (size_t i = 0; i < pb->n_retriable_status_codes; i++) {
        if (pb->retriable_status_codes[i] < 100 || pb->retriable_status_codes[i] > 599) {
            tn_err_push(c->err, ".retriable_status_codes[%zu]", i);
            return tn_err_fail(c->err, "%u is not an HTTP status code", pb->retriable_status_codes[i]);
        }
        r->retriable_status_codes[i] = pb->retriable_status_codes[i];
    }
    r->n_retriable_status_codes = pb->n_retriable_status_codes;
    r->back_off_base_ms = 25; /* Envoy's defaults: 25 ms base, 10x max */
    if (pb->retry_back_off != NULL) {
        if (pb->retry_back_off->base_interval == NULL || duration_ms(pb->retry_back_off->base_interval) == 0) {
            tn_err_push(c->err, ".retry_back_off.base_interval");
            return tn_err_fail(c->err, "must be at least 1ms");
        }
        r->back_off_base_ms = duration_ms(pb->retry_back_off->base_interval);
        if (pb->retry_back_off->max_interval != NULL &&
            duration_ms(pb->retry_back_off->max_interval) < r->back_off_base_ms) {
            tn_err_push(c->err, ".retry_back_off.max_interval");
            return tn_err_fail(c->err, "must not be less than base_interval");
        }
    }
    r->back_off_max_ms = pb->retry_back_off && pb->retry_back_off->max_interval
                             ? duration_ms(pb->retry_back_off->max_interval)
                             : r->back_off_base_ms * 10;
    r->set = true;
    tn_err_pop(c->err, mark);
    return 0;
}

static int compile_mirrors(struct ctx *c, pb_mirror **pb, size_t n, struct tn_mirror_policy **out, size_t *n_out)
{
    struct tn_mirror_policy *ms = tn_pool_alloc(&c->t->pool, n * sizeof(*ms) + 1);
    for (size_t i = 0; i < n; i++) {
        size_t mark = tn_err_push(c->err, ".request_mirror_policies[%zu]", i);
        const char *cl = pb[i]->cluster, *hdr = pb[i]->cluster_header;
        if (*cl && *hdr)
            return tn_err_fail(c->err, "only one of cluster '%s' or cluster_header '%s' may be set", cl, hdr);
        if (!*cl && !*hdr)
            return tn_err_fail(c->err, "one of cluster or cluster_header is required");
        if (*hdr) {
            tn_err_push(c->err, ".cluster_header");
            if (check_header_name(c, hdr, 0))
                return -1;
            tn_err_pop(c->err, mark);
            tn_err_push(c->err, ".request_mirror_policies[%zu]", i);
        }
        ms[i].cluster = *cl ? tn_pool_strdup(&c->t->pool, cl) : NULL;
        ms[i].cluster_header = *hdr ? lower_dup(c, hdr) : NULL;
        ms[i].numerator = ms[i].denominator = 100;
        if (pb[i]->runtime_fraction && pb[i]->runtime_fraction->default_value) {
            tn_err_push(c->err, ".runtime_fraction.default_value");
            if (fraction(c, pb[i]->runtime_fraction->default_value, &ms[i].numerator, &ms[i].denominator))
                return -1;
        }
        ms[i].disable_shadow_host_suffix_append = pb[i]->disable_shadow_host_suffix_append;
        tn_err_pop(c->err, mark);
    }
    *out = ms;
    *n_out = n;
    return 0;
}

/* ---- typed_per_filter_config ------------------------------------------- */

/* Compiles one entry into out[*n]: the filter is the one the key names, else
 * the one whose (per-route) config type the Any holds, as Envoy looks it up. */
static int add_filter_config(struct ctx *c, const char *key, const Google__Protobuf__Any *any,
                             struct tn_route_filter_config *out, size_t *n)
{
    size_t mark = tn_err_push(c->err, ".typed_per_filter_config[\"%s\"]", key);
    const char *url = any && any->type_url ? any->type_url : "";
    if (strcmp(tn_type_name(url), "envoy.config.route.v3.FilterConfig") == 0)
        return tn_err_fail(c->err, "envoy.config.route.v3.FilterConfig (is_optional, disabled) is not supported by "
                                   "tern; give the filter's per-route config itself");
    const struct tn_filter_factory *f = tn_filter_factory_by_name(key);
    if (f == NULL)
        f = tn_filter_factory_by_type(url);
    if (f == NULL)
        return tn_err_fail(c->err, "no HTTP filter named '%s' or for type '%s'", key, url);
    if (f->create_route_config == NULL)
        return tn_err_fail(c->err, "filter '%s' takes no per-route config", f->name);
    for (size_t i = 0; i < *n; i++)
        if (out[i].factory == f)
            return tn_err_fail(c->err, "filter '%s' is also configured under '%s'", f->name, out[i].name);
    ProtobufCMessage *m = tn_any_unpack((const ProtobufCMessage *)any, f->route_config_type, c->err);
    if (m == NULL)
        return -1;
    void *config = f->create_route_config(m, c->err);
    protobuf_c_message_free_unpacked(m, NULL);
    if (config == NULL)
        return -1;
    if (tn_pool_on_dispose(&c->t->pool, f->destroy_route_config, config)) {
        f->destroy_route_config(config);
        return tn_err_fail(c->err, "out of memory");
    }
    out[*n] = (struct tn_route_filter_config){.name = tn_pool_strdup(&c->t->pool, key), .factory = f, .config = config};
    (*n)++;
    tn_err_pop(c->err, mark);
    return 0;
}

const void *tn_route_filter_config(const struct tn_route *r, const struct tn_vhost *vh,
                                   const struct tn_filter_factory *f)
{
    for (size_t i = 0; r != NULL && i < r->n_filter_configs; i++)
        if (r->filter_configs[i].factory == f)
            return r->filter_configs[i].config;
    for (size_t i = 0; vh != NULL && i < vh->n_filter_configs; i++)
        if (vh->filter_configs[i].factory == f)
            return vh->filter_configs[i].config;
    return NULL;
}

/* ---- matchers ----------------------------------------------------------- */

int tn_header_matcher_compile(struct tn_pool *pool, const pb_header_matcher *pb, struct tn_header_matcher *h,
                              struct tn_err *err)
{
    if (check_name(err, pb->name, 1))
        return -1;
    h->name = tn_pool_strdup(pool, pb->name);
    for (char *q = (char *)h->name; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    h->invert = pb->invert_match;
    h->treat_missing_as_empty = pb->treat_missing_header_as_empty;
    struct tn_string_matcher *m = &h->m;
    const char *v = NULL;
    switch (pb->header_match_specifier_case) {
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_EXACT_MATCH:
        m->kind = TN_MATCH_EXACT, v = pb->exact_match;
        break;
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_PREFIX_MATCH:
        m->kind = TN_MATCH_PREFIX, v = pb->prefix_match;
        break;
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_SUFFIX_MATCH:
        m->kind = TN_MATCH_SUFFIX, v = pb->suffix_match;
        break;
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_CONTAINS_MATCH:
        m->kind = TN_MATCH_CONTAINS, v = pb->contains_match;
        break;
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_SAFE_REGEX_MATCH:
        tn_err_push(err, ".safe_regex_match.regex");
        m->kind = TN_MATCH_REGEX;
        m->re = tn_regex_compile(pool, pb->safe_regex_match ? pb->safe_regex_match->regex : "", true, err);
        return m->re ? 0 : -1;
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_STRING_MATCH:
        tn_err_push(err, ".string_match");
        return tn_string_matcher_compile(pool, pb->string_match, m, err);
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_RANGE_MATCH:
        m->kind = TN_MATCH_RANGE;
        h->range_start = pb->range_match->start;
        h->range_end = pb->range_match->end;
        if (h->range_start >= h->range_end) {
            tn_err_push(err, ".range_match");
            return tn_err_fail(err, "start must be less than end");
        }
        return 0;
    case ENVOY__CONFIG__ROUTE__V3__HEADER_MATCHER__HEADER_MATCH_SPECIFIER_PRESENT_MATCH:
        m->kind = TN_MATCH_PRESENT;
        h->present = pb->present_match;
        return 0;
    default: /* no specifier: the header must be present, as Envoy */
        m->kind = TN_MATCH_PRESENT;
        h->present = true;
        return 0;
    }
    m->value = tn_pool_strdup(pool, v);
    m->len = strlen(v);
    return 0;
}

static int compile_header_matcher(struct ctx *c, const pb_header_matcher *pb, struct tn_header_matcher *h)
{
    return tn_header_matcher_compile(&c->t->pool, pb, h, c->err);
}

/* Length of the literal text every full match of an anchored pattern starts
 * with, so matching can reject most paths before running the regex. Stops at
 * the first metacharacter, escape or non-ASCII byte, and drops a literal a
 * quantifier makes optional; any '|' could make it wrong, so gives 0. */
static size_t regex_literal_prefix(const char *pattern)
{
    size_t n = 0;
    if (strchr(pattern, '|') != NULL)
        return 0;
    while (pattern[n] != '\0' && strchr("\\^$.|?*+()[]{}", pattern[n]) == NULL && (unsigned char)pattern[n] < 0x80)
        n++;
    if (n > 0 && pattern[n] != '\0' && strchr("?*{", pattern[n]) != NULL)
        n--;
    return n;
}

static int compile_match(struct ctx *c, const pb_match *pb, struct tn_route *r)
{
    size_t mark = tn_err_push(c->err, ".match");
    switch (pb->path_specifier_case) {
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_PREFIX:
        r->path_kind = TN_PATH_PREFIX, r->path = pb->prefix;
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_PATH:
        r->path_kind = TN_PATH_EXACT, r->path = pb->path;
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_PATH_SEPARATED_PREFIX: {
        const char *p = pb->path_separated_prefix;
        size_t len = strlen(p);
        r->path_kind = TN_PATH_SEPARATED_PREFIX, r->path = p;
        /* Envoy's pattern ^[^?#]+[^?#/]$ rejects a lone "/" too. */
        if (p[0] != '/' || len < 2 || strpbrk(p, "?#") || p[len - 1] == '/') {
            tn_err_push(c->err, ".path_separated_prefix");
            return tn_err_fail(c->err, "'%s' must start with '/', not end with '/', and hold no '?' or '#'", p);
        }
        break;
    }
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_SAFE_REGEX:
        r->path_kind = TN_PATH_REGEX;
        tn_err_push(c->err, ".safe_regex.regex");
        r->path_re = tn_regex_compile(&c->t->pool, pb->safe_regex->regex, true, c->err);
        if (r->path_re == NULL)
            return -1;
        tn_err_pop(c->err, mark + strlen(".match"));
        r->path_len = regex_literal_prefix(pb->safe_regex->regex);
        r->path = tn_pool_strndup(&c->t->pool, pb->safe_regex->regex, r->path_len);
        break;
    default:
        return tn_err_fail(c->err, "one of prefix, path, safe_regex, path_separated_prefix is required");
    }
    if (r->path != NULL && r->path_kind != TN_PATH_REGEX) {
        r->path = tn_pool_strdup(&c->t->pool, r->path);
        r->path_len = strlen(r->path);
    }
    r->case_sensitive = pb->case_sensitive ? pb->case_sensitive->value : true;
    r->headers = tn_pool_alloc(&c->t->pool, pb->n_headers * sizeof(*r->headers) + 1);
    for (size_t i = 0; i < pb->n_headers; i++) {
        size_t m2 = tn_err_push(c->err, ".headers[%zu]", i);
        if (compile_header_matcher(c, pb->headers[i], &r->headers[i]))
            return -1;
        tn_err_pop(c->err, m2);
    }
    r->n_headers = pb->n_headers;
    r->queries = tn_pool_alloc(&c->t->pool, pb->n_query_parameters * sizeof(*r->queries) + 1);
    for (size_t i = 0; i < pb->n_query_parameters; i++) {
        const pb_query_matcher *q = pb->query_parameters[i];
        size_t m2 = tn_err_push(c->err, ".query_parameters[%zu]", i);
        if (*q->name == '\0')
            return tn_err_fail(c->err, "name must not be empty");
        r->queries[i].name = tn_pool_strdup(&c->t->pool, q->name);
        if (q->query_parameter_match_specifier_case ==
            ENVOY__CONFIG__ROUTE__V3__QUERY_PARAMETER_MATCHER__QUERY_PARAMETER_MATCH_SPECIFIER_STRING_MATCH) {
            tn_err_push(c->err, ".string_match");
            if (tn_string_matcher_compile(&c->t->pool, q->string_match, &r->queries[i].m, c->err))
                return -1;
        } else {
            r->queries[i].m.kind = TN_MATCH_PRESENT;
        }
        tn_err_pop(c->err, m2);
    }
    r->n_queries = pb->n_query_parameters;
    if (pb->runtime_fraction && pb->runtime_fraction->default_value) {
        tn_err_push(c->err, ".runtime_fraction.default_value");
        if (fraction(c, pb->runtime_fraction->default_value, &r->fraction_num, &r->fraction_den))
            return -1;
    }
    tn_err_pop(c->err, mark);
    return 0;
}

/* ---- actions ------------------------------------------------------------ */

static int compile_weighted(struct ctx *c, const Envoy__Config__Route__V3__WeightedCluster *pb, struct tn_route *r)
{
    size_t mark = tn_err_push(c->err, ".weighted_clusters");
    if (pb->n_clusters == 0)
        return tn_err_fail(c->err, "clusters must not be empty");
    r->weighted = tn_pool_alloc(&c->t->pool, pb->n_clusters * sizeof(*r->weighted));
    for (size_t i = 0; i < pb->n_clusters; i++) {
        const Envoy__Config__Route__V3__WeightedCluster__ClusterWeight *w = pb->clusters[i];
        if (*w->name == '\0') {
            tn_err_push(c->err, ".clusters[%zu]", i);
            return tn_err_fail(c->err, "name is required%s",
                               *w->cluster_header ? " (cluster_header in weighted clusters is not supported)" : "");
        }
        if (w->n_typed_per_filter_config > 0) {
            tn_err_push(c->err, ".clusters[%zu].typed_per_filter_config", i);
            return tn_err_fail(c->err, "not supported by tern on weighted clusters; set it on the route");
        }
        r->weighted[i].name = tn_pool_strdup(&c->t->pool, w->name);
        r->weighted[i].weight = w->weight ? w->weight->value : 0;
        r->total_weight += r->weighted[i].weight;
    }
    r->n_weighted = pb->n_clusters;
    if (r->total_weight == 0)
        return tn_err_fail(c->err, "the sum of the cluster weights must be greater than 0");
    if (pb->total_weight && pb->total_weight->value != r->total_weight)
        return tn_err_fail(c->err, "the sum of the cluster weights (%llu) does not equal total_weight (%u)",
                           (unsigned long long)r->total_weight, pb->total_weight->value);
    tn_err_pop(c->err, mark);
    return 0;
}

static int compile_hashes(struct ctx *c, const pb_action *pb, struct tn_route *r)
{
    r->hashes = tn_pool_alloc(&c->t->pool, pb->n_hash_policy * sizeof(*r->hashes) + 1);
    for (size_t i = 0; i < pb->n_hash_policy; i++) {
        const Envoy__Config__Route__V3__RouteAction__HashPolicy *h = pb->hash_policy[i];
        struct tn_hash_policy *o = &r->hashes[i];
        size_t mark = tn_err_push(c->err, ".hash_policy[%zu]", i);
        o->terminal = h->terminal;
        switch (h->policy_specifier_case) {
        case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_HEADER:
            o->kind = TN_HASH_HEADER;
            tn_err_push(c->err, ".header.header_name");
            if (check_header_name(c, h->header->header_name, 1))
                return -1;
            o->name = lower_dup(c, h->header->header_name);
            break;
        case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_COOKIE:
            o->kind = TN_HASH_COOKIE;
            if (*h->cookie->name == '\0') {
                tn_err_push(c->err, ".cookie.name");
                return tn_err_fail(c->err, "must not be empty");
            }
            o->name = tn_pool_strdup(&c->t->pool, h->cookie->name);
            break;
        case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_CONNECTION_PROPERTIES:
            o->kind = TN_HASH_SOURCE_IP;
            break;
        case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_QUERY_PARAMETER:
            o->kind = TN_HASH_QUERY_PARAMETER;
            o->name = tn_pool_strdup(&c->t->pool, h->query_parameter->name);
            break;
        case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_FILTER_STATE:
            return tn_err_fail(c->err, "filter_state hash policies are not supported by tern");
        default:
            return tn_err_fail(c->err, "one of header, cookie, connection_properties, query_parameter is required");
        }
        tn_err_pop(c->err, mark);
    }
    r->n_hashes = pb->n_hash_policy;
    return 0;
}

static int compile_action(struct ctx *c, const pb_action *pb, struct tn_route *r)
{
    size_t mark = tn_err_push(c->err, ".route");
    switch (pb->cluster_specifier_case) {
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_CLUSTER:
        if (*pb->cluster == '\0') {
            tn_err_push(c->err, ".cluster");
            return tn_err_fail(c->err, "must not be empty");
        }
        r->kind = TN_ROUTE_CLUSTER;
        r->cluster = tn_pool_strdup(&c->t->pool, pb->cluster);
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_CLUSTER_HEADER:
        tn_err_push(c->err, ".cluster_header");
        if (check_header_name(c, pb->cluster_header, 1))
            return -1;
        tn_err_pop(c->err, mark + strlen(".route"));
        r->kind = TN_ROUTE_CLUSTER_HEADER;
        r->cluster_header = lower_dup(c, pb->cluster_header);
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_WEIGHTED_CLUSTERS:
        r->kind = TN_ROUTE_WEIGHTED;
        if (compile_weighted(c, pb->weighted_clusters, r))
            return -1;
        break;
    default:
        return tn_err_fail(c->err, "one of cluster, cluster_header, weighted_clusters is required");
    }
    static const uint32_t nf_codes[] = {503, 404, 500};
    r->cluster_not_found_code = (unsigned)pb->cluster_not_found_response_code <= 2
                                    ? nf_codes[pb->cluster_not_found_response_code]
                                    : 503;
    if (*pb->prefix_rewrite && pb->regex_rewrite) {
        return tn_err_fail(c->err, "only one of prefix_rewrite and regex_rewrite may be set");
    }
    if (*pb->prefix_rewrite)
        r->prefix_rewrite = tn_pool_strdup(&c->t->pool, pb->prefix_rewrite);
    if (pb->regex_rewrite) {
        tn_err_push(c->err, ".regex_rewrite.pattern.regex");
        const char *re = pb->regex_rewrite->pattern ? pb->regex_rewrite->pattern->regex : "";
        r->regex_rewrite = tn_regex_compile(&c->t->pool, re, false, c->err);
        if (r->regex_rewrite == NULL)
            return -1;
        tn_err_pop(c->err, mark + strlen(".route"));
        r->regex_substitution = tn_pool_strdup(&c->t->pool, pb->regex_rewrite->substitution);
    }
    switch (pb->host_rewrite_specifier_case) {
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HOST_REWRITE_SPECIFIER_HOST_REWRITE_LITERAL:
        r->host_rewrite_literal = tn_pool_strdup(&c->t->pool, pb->host_rewrite_literal);
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HOST_REWRITE_SPECIFIER_AUTO_HOST_REWRITE:
        r->auto_host_rewrite = pb->auto_host_rewrite && pb->auto_host_rewrite->value;
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HOST_REWRITE_SPECIFIER__NOT_SET:
        break;
    default:
        return tn_err_fail(c->err, "host_rewrite_header and host_rewrite_path_regex are not supported by tern");
    }
    r->timeout_ms = pb->timeout ? duration_ms(pb->timeout) : DEFAULT_TIMEOUT_MS;
    r->idle_timeout_ms = pb->idle_timeout ? duration_ms(pb->idle_timeout) : 0;
    if (pb->retry_policy && compile_retry(c, pb->retry_policy, &r->retry))
        return -1;
    if (compile_mirrors(c, pb->request_mirror_policies, pb->n_request_mirror_policies, &r->mirrors, &r->n_mirrors))
        return -1;
    if (compile_hashes(c, pb, r))
        return -1;
    if (pb->n_upgrade_configs) {
        r->upgrades = tn_pool_alloc(&c->t->pool, pb->n_upgrade_configs * sizeof(*r->upgrades));
        if (r->upgrades == NULL)
            return tn_err_fail(c->err, "out of memory");
        for (size_t i = 0; i < pb->n_upgrade_configs; i++) {
            const char *t = pb->upgrade_configs[i]->upgrade_type;
            if (*t == '\0' || strcasecmp(t, "connect") == 0) {
                tn_err_push(c->err, ".upgrade_configs[%zu].upgrade_type", i);
                return tn_err_fail(c->err, *t ? "CONNECT is not supported by tern yet" : "must not be empty");
            }
            char *lt = tn_pool_strdup(&c->t->pool, t);
            for (char *q = lt; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            r->upgrades[i] = (struct tn_upgrade){
                .type = lt, .enabled = pb->upgrade_configs[i]->enabled == NULL || pb->upgrade_configs[i]->enabled->value};
        }
        r->n_upgrades = pb->n_upgrade_configs;
    }
    tn_err_pop(c->err, mark);
    return 0;
}

static int compile_redirect(struct ctx *c, const pb_redirect *pb, struct tn_route *r)
{
    static const uint32_t codes[] = {301, 302, 303, 307, 308};
    size_t mark = tn_err_push(c->err, ".redirect");
    r->kind = TN_ROUTE_REDIRECT;
    if ((unsigned)pb->response_code > 4)
        return tn_err_fail(c->err, "unknown response_code %d", pb->response_code);
    r->redirect_code = codes[pb->response_code];
    if (pb->scheme_rewrite_specifier_case ==
        ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__SCHEME_REWRITE_SPECIFIER_HTTPS_REDIRECT)
        r->redirect_scheme = pb->https_redirect ? "https" : NULL;
    else if (pb->scheme_rewrite_specifier_case ==
             ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__SCHEME_REWRITE_SPECIFIER_SCHEME_REDIRECT)
        r->redirect_scheme = lower_dup(c, pb->scheme_redirect);
    if (*pb->host_redirect)
        r->redirect_host = tn_pool_strdup(&c->t->pool, pb->host_redirect);
    if (pb->port_redirect > 65535) {
        tn_err_push(c->err, ".port_redirect");
        return tn_err_fail(c->err, "%u is not a port", pb->port_redirect);
    }
    r->redirect_port = pb->port_redirect;
    switch (pb->path_rewrite_specifier_case) {
    case ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__PATH_REWRITE_SPECIFIER_PATH_REDIRECT:
        r->redirect_path = tn_pool_strdup(&c->t->pool, pb->path_redirect);
        break;
    case ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__PATH_REWRITE_SPECIFIER_PREFIX_REWRITE:
        r->redirect_prefix = tn_pool_strdup(&c->t->pool, pb->prefix_rewrite);
        break;
    case ENVOY__CONFIG__ROUTE__V3__REDIRECT_ACTION__PATH_REWRITE_SPECIFIER_REGEX_REWRITE:
        tn_err_push(c->err, ".regex_rewrite.pattern.regex");
        r->regex_rewrite = tn_regex_compile(&c->t->pool, pb->regex_rewrite->pattern ? pb->regex_rewrite->pattern->regex
                                                                                    : "",
                                            false, c->err);
        if (r->regex_rewrite == NULL)
            return -1;
        r->regex_substitution = tn_pool_strdup(&c->t->pool, pb->regex_rewrite->substitution);
        break;
    default:
        break;
    }
    r->strip_query = pb->strip_query;
    tn_err_pop(c->err, mark);
    return 0;
}

static int compile_direct(struct ctx *c, const pb_direct *pb, struct tn_route *r, uint32_t max_body)
{
    size_t mark = tn_err_push(c->err, ".direct_response");
    r->kind = TN_ROUTE_DIRECT;
    if (pb->status < 200 || pb->status > 599) {
        tn_err_push(c->err, ".status");
        return tn_err_fail(c->err, "%u is not in [200, 599]", pb->status);
    }
    r->direct_status = pb->status;
    r->direct_body = "";
    if (pb->body != NULL) {
        const Envoy__Config__Core__V3__DataSource *ds = pb->body;
        tn_err_push(c->err, ".body");
        switch (ds->specifier_case) {
        case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_STRING:
            r->direct_body_len = strlen(ds->inline_string);
            r->direct_body = tn_pool_strndup(&c->t->pool, ds->inline_string, r->direct_body_len);
            break;
        case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_BYTES:
            r->direct_body_len = ds->inline_bytes.len;
            r->direct_body = tn_pool_strndup(&c->t->pool, (const char *)ds->inline_bytes.data, ds->inline_bytes.len);
            break;
        case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_FILENAME: {
            size_t len;
            char *data = tn_read_file(ds->filename, &len, c->err);
            if (data == NULL)
                return -1;
            r->direct_body = tn_pool_strndup(&c->t->pool, data, len);
            r->direct_body_len = len;
            free(data);
            break;
        }
        case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_ENVIRONMENT_VARIABLE: {
            const char *v = getenv(ds->environment_variable);
            if (v == NULL)
                return tn_err_fail(c->err, "environment variable '%s' is not set", ds->environment_variable);
            r->direct_body_len = strlen(v);
            r->direct_body = tn_pool_strdup(&c->t->pool, v);
            break;
        }
        default:
            return tn_err_fail(c->err, "one of filename, inline_bytes, inline_string, environment_variable is required");
        }
        if (r->direct_body_len > max_body)
            return tn_err_fail(c->err, "body is %zu bytes, more than max_direct_response_body_size_bytes (%u)",
                               r->direct_body_len, max_body);
    }
    tn_err_pop(c->err, mark);
    return 0;
}

static int compile_route(struct ctx *c, const pb_route *pb, const struct tn_vhost *vh, struct tn_route *r,
                         uint32_t max_body)
{
    r->name = tn_pool_strdup(&c->t->pool, pb->name);
    if (pb->match == NULL) {
        tn_err_push(c->err, ".match");
        return tn_err_fail(c->err, "required");
    }
    if (compile_match(c, pb->match, r))
        return -1;
    switch (pb->action_case) {
    case ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_ROUTE:
        if (compile_action(c, pb->route, r))
            return -1;
        /* The most specific non-empty mirror list wins; lists are not merged. */
        if (r->n_mirrors == 0 && vh->n_mirrors > 0) {
            r->mirrors = vh->mirrors;
            r->n_mirrors = vh->n_mirrors;
            r->mirrors_from_vhost = true;
        }
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_REDIRECT:
        if (compile_redirect(c, pb->redirect, r))
            return -1;
        break;
    case ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_DIRECT_RESPONSE:
        if (compile_direct(c, pb->direct_response, r, max_body))
            return -1;
        break;
    default:
        return tn_err_fail(c->err, "one of route, redirect, direct_response is required");
    }
    if (COMPILE_MUTATIONS(c, pb, &r->headers_mut))
        return -1;
    r->filter_configs = tn_pool_alloc(&c->t->pool, pb->n_typed_per_filter_config * sizeof(*r->filter_configs) + 1);
    for (size_t i = 0; i < pb->n_typed_per_filter_config; i++)
        if (add_filter_config(c, pb->typed_per_filter_config[i]->key, pb->typed_per_filter_config[i]->value,
                              r->filter_configs, &r->n_filter_configs))
            return -1;
    return 0;
}

/* ---- virtual hosts and domains ------------------------------------------ */

static void fill_key(const struct tn_route *r, struct tn_route_key *k)
{
    unsigned char head[8] = {0}, mask[8] = {0};
    size_t n = r->path_len < 8 ? r->path_len : 8;
    bool icase = !r->case_sensitive && r->path_kind != TN_PATH_REGEX; /* case_sensitive ignores regexes */
    for (size_t i = 0; i < n; i++) {
        head[i] = (unsigned char)(icase ? tolower((unsigned char)r->path[i]) : r->path[i]);
        mask[i] = 0xff;
    }
    memcpy(&k->head, head, 8);
    memcpy(&k->mask, mask, 8);
    k->path_len = (uint32_t)r->path_len;
    k->path_kind = (uint8_t)r->path_kind;
    k->icase = icase;
    k->route = r;
}

static int cmp_domain(const void *a, const void *b)
{
    const struct tn_domain *x = a, *y = b;
    if (x->len != y->len) /* wildcard groups: longest first */
        return x->len > y->len ? -1 : 1;
    return strcmp(x->text, y->text);
}

static int cmp_exact(const void *a, const void *b)
{
    return strcmp(((const struct tn_domain *)a)->text, ((const struct tn_domain *)b)->text);
}

static int add_domain(struct ctx *c, const char *d, struct tn_vhost *vh, size_t *counts)
{
    struct tn_route_table *t = c->t;
    const char *star = strchr(d, '*');
    struct tn_domain dom = {.vhost = vh};

    if (*d == '\0')
        return tn_err_fail(c->err, "domain must not be empty");
    if (strcmp(d, "*") == 0) {
        if (t->any != NULL)
            return tn_err_fail(c->err, "only unique values for domains are permitted: '*' is also in virtual host '%s'",
                               t->any->name);
        t->any = vh;
        return 0;
    }
    if (star != NULL && (strchr(star + 1, '*') || (star != d && star[1] != '\0')))
        return tn_err_fail(c->err, "invalid domain '%s': a wildcard may only be the first or last character", d);
    dom.kind = star == NULL ? TN_DOMAIN_EXACT : star == d ? TN_DOMAIN_SUFFIX : TN_DOMAIN_PREFIX;
    char *text = lower_dup(c, dom.kind == TN_DOMAIN_SUFFIX ? d + 1 : d);
    if (dom.kind == TN_DOMAIN_PREFIX)
        text[star - d] = '\0';
    dom.text = text;
    dom.len = strlen(text);
    struct tn_domain *arr = dom.kind == TN_DOMAIN_EXACT ? t->exact : dom.kind == TN_DOMAIN_SUFFIX ? t->suffix : t->prefix;
    arr[counts[dom.kind]++] = dom; /* uniqueness is checked once all are sorted */
    return 0;
}

static int check_unique(struct ctx *c, struct tn_domain *arr, size_t n, const char *kind_prefix)
{
    for (size_t i = 1; i < n; i++)
        if (arr[i].len == arr[i - 1].len && strcmp(arr[i].text, arr[i - 1].text) == 0) {
            tn_err_push(c->err, ".virtual_hosts");
            return tn_err_fail(c->err,
                               "only unique values for domains are permitted: '%s%s' is in virtual hosts '%s' and '%s'",
                               kind_prefix, arr[i].text, arr[i - 1].vhost->name, arr[i].vhost->name);
        }
    return 0;
}

static int compile_vhosts(struct ctx *c, const tn_pb_route_config *pb, uint32_t max_body)
{
    struct tn_route_table *t = c->t;
    size_t n_domains = 0, counts[3] = {0, 0, 0};

    for (size_t i = 0; i < pb->n_virtual_hosts; i++)
        n_domains += pb->virtual_hosts[i]->n_domains;
    t->vhosts = tn_pool_alloc(&t->pool, pb->n_virtual_hosts * sizeof(*t->vhosts) + 1);
    t->exact = tn_pool_alloc(&t->pool, n_domains * sizeof(struct tn_domain) + 1);
    t->suffix = tn_pool_alloc(&t->pool, n_domains * sizeof(struct tn_domain) + 1);
    t->prefix = tn_pool_alloc(&t->pool, n_domains * sizeof(struct tn_domain) + 1);
    for (size_t i = 0; i < pb->n_virtual_hosts; i++) {
        const pb_vhost *pv = pb->virtual_hosts[i];
        struct tn_vhost *vh = &t->vhosts[i];
        size_t mark = tn_err_push(c->err, ".virtual_hosts[%zu]", i);
        if (*pv->name == '\0')
            return tn_err_fail(c->err, "name: must not be empty");
        for (size_t j = 0; j < i; j++)
            if (strcmp(t->vhosts[j].name, pv->name) == 0)
                return tn_err_fail(c->err, "duplicate virtual host name '%s'", pv->name);
        vh->name = tn_pool_strdup(&t->pool, pv->name);
        if (pv->n_domains == 0)
            return tn_err_fail(c->err, "domains: at least one domain is required");
        for (size_t j = 0; j < pv->n_domains; j++) {
            size_t m2 = tn_err_push(c->err, ".domains[%zu]", j);
            if (add_domain(c, pv->domains[j], vh, counts))
                return -1;
            tn_err_pop(c->err, m2);
        }
        if (COMPILE_MUTATIONS(c, pv, &vh->headers_mut))
            return -1;
        if (pv->retry_policy && compile_retry(c, pv->retry_policy, &vh->retry))
            return -1;
        if (compile_mirrors(c, pv->request_mirror_policies, pv->n_request_mirror_policies, &vh->mirrors,
                            &vh->n_mirrors))
            return -1;
        vh->filter_configs = tn_pool_alloc(&t->pool, pv->n_typed_per_filter_config * sizeof(*vh->filter_configs) + 1);
        for (size_t j = 0; j < pv->n_typed_per_filter_config; j++)
            if (add_filter_config(c, pv->typed_per_filter_config[j]->key, pv->typed_per_filter_config[j]->value,
                                  vh->filter_configs, &vh->n_filter_configs))
                return -1;
        vh->routes = tn_pool_alloc(&t->pool, pv->n_routes * sizeof(*vh->routes) + 1);
        for (size_t j = 0; j < pv->n_routes; j++) {
            size_t m2 = tn_err_push(c->err, ".routes[%zu]", j);
            if (compile_route(c, pv->routes[j], vh, &vh->routes[j], max_body))
                return -1;
            if (!vh->routes[j].retry.set && vh->retry.set) /* the route's policy replaces the vhost's whole */
                vh->routes[j].retry = vh->retry;
            tn_err_pop(c->err, m2);
        }
        vh->n_routes = pv->n_routes;
        vh->keys = tn_pool_alloc(&t->pool, pv->n_routes * sizeof(*vh->keys) + 1);
        for (size_t j = 0; j < pv->n_routes; j++)
            fill_key(&vh->routes[j], &vh->keys[j]);
        tn_err_pop(c->err, mark);
    }
    t->n_vhosts = pb->n_virtual_hosts;
    t->n_exact = counts[TN_DOMAIN_EXACT];
    t->n_suffix = counts[TN_DOMAIN_SUFFIX];
    t->n_prefix = counts[TN_DOMAIN_PREFIX];
    qsort(t->exact, t->n_exact, sizeof(*t->exact), cmp_exact);
    qsort(t->suffix, t->n_suffix, sizeof(*t->suffix), cmp_domain);
    qsort(t->prefix, t->n_prefix, sizeof(*t->prefix), cmp_domain);
    size_t base = c->err->path_len;
    if (check_unique(c, t->exact, t->n_exact, "") || check_unique(c, t->suffix, t->n_suffix, "*"))
        return -1;
    if (check_unique(c, t->prefix, t->n_prefix, "")) /* reads "foo." for "foo.*": good enough */
        return -1;
    tn_err_pop(c->err, base);
    return 0;
}

struct tn_route_table *tn_route_table_compile(const tn_pb_route_config *pb, struct tn_err *err)
{
    struct tn_route_table *t = calloc(1, sizeof(*t));
    struct ctx c = {.t = t, .err = err};
    size_t mark = err->path_len;

    if (t == NULL) {
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    t->refcnt = 1;
    tn_pool_init(&t->pool);
    if (tn_unsupported_check(&pb->base, err)) /* a route configuration from RDS is not in the bootstrap's walk */
        goto err;
    t->name = tn_pool_strdup(&t->pool, pb->name);
    uint32_t max_body = pb->max_direct_response_body_size_bytes ? pb->max_direct_response_body_size_bytes->value
                                                                : DEFAULT_MAX_DIRECT_BODY;
    t->validate_clusters = pb->validate_clusters ? pb->validate_clusters->value : true;
    if (COMPILE_MUTATIONS(&c, pb, &t->headers_mut))
        goto err;
    if (pb->n_typed_per_filter_config > 0) {
        tn_err_push(err, ".typed_per_filter_config");
        tn_err_fail(err, "not supported by tern on the route configuration; set it on virtual hosts or routes");
        goto err;
    }
    t->internal_only_headers = tn_pool_alloc(&t->pool, pb->n_internal_only_headers * sizeof(char *) + 1);
    for (size_t i = 0; i < pb->n_internal_only_headers; i++) {
        tn_err_push(err, ".internal_only_headers[%zu]", i);
        if (check_header_name(&c, pb->internal_only_headers[i], 0))
            goto err;
        tn_err_pop(err, mark);
        t->internal_only_headers[i] = lower_dup(&c, pb->internal_only_headers[i]);
    }
    t->n_internal_only_headers = pb->n_internal_only_headers;
    if (compile_vhosts(&c, pb, max_body))
        goto err;
    return t;
err:
    tn_route_table_unref(t);
    return NULL;
}

struct tn_route_table *tn_route_table_ref(struct tn_route_table *t)
{
    t->refcnt++;
    return t;
}

void tn_route_table_unref(struct tn_route_table *t)
{
    if (t == NULL || --t->refcnt > 0)
        return;
    tn_pool_dispose(&t->pool);
    free(t);
}

/* ---- lookup ------------------------------------------------------------- */

/* Finds text (len bytes, lower case) among the same-length group of a sorted
 * wildcard array. */
static const struct tn_domain *find_in_group(const struct tn_domain *arr, size_t lo, size_t hi, const char *text,
                                             size_t len)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strncmp(arr[mid].text, text, len);
        if (r == 0)
            return &arr[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The end of the same-length group starting at i (lengths descend), found by
 * binary search: a walk would make every lookup linear in the domains. */
static size_t group_end(const struct tn_domain *arr, size_t i, size_t n)
{
    size_t lo = i + 1, hi = n, l = arr[i].len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (arr[mid].len == l)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Longest wildcard match: one binary search per distinct wildcard length. */
static const struct tn_vhost *find_wildcard(const struct tn_domain *arr, size_t n, const char *host, size_t len,
                                            int suffix)
{
    size_t i = 0;
    while (i < n) {
        size_t j = group_end(arr, i, n);
        size_t l = arr[i].len;
        if (l < len) { /* the '*' must stand for at least one character */
            const struct tn_domain *d = find_in_group(arr, i, j, suffix ? host + len - l : host, l);
            if (d != NULL)
                return d->vhost;
        }
        i = j;
    }
    return NULL;
}

const struct tn_vhost *tn_route_table_vhost(const struct tn_route_table *t, const char *host, size_t len)
{
    char lower[256];
    if (len >= sizeof(lower))
        return t->any;
    for (size_t i = 0; i < len; i++)
        lower[i] = (char)tolower((unsigned char)host[i]);
    lower[len] = '\0';

    size_t lo = 0, hi = t->n_exact;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(t->exact[mid].text, lower);
        if (r == 0)
            return t->exact[mid].vhost;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    const struct tn_vhost *vh = find_wildcard(t->suffix, t->n_suffix, lower, len, 1);
    if (vh == NULL)
        vh = find_wildcard(t->prefix, t->n_prefix, lower, len, 0);
    return vh ? vh : t->any;
}

int tn_route_table_each_cluster(const struct tn_route_table *t, int (*fn)(void *, const char *, const char *),
                                void *arg)
{
    char where[256];
    for (size_t i = 0; i < t->n_vhosts; i++) {
        const struct tn_vhost *vh = &t->vhosts[i];
        for (size_t j = 0; j < vh->n_routes; j++) {
            const struct tn_route *r = &vh->routes[j];
            int rc = 0;
            if (r->kind == TN_ROUTE_CLUSTER) {
                snprintf(where, sizeof(where), "virtual_hosts[%zu].routes[%zu].route.cluster", i, j);
                rc = fn(arg, r->cluster, where);
            }
            for (size_t k = 0; rc == 0 && k < r->n_weighted; k++) {
                snprintf(where, sizeof(where), "virtual_hosts[%zu].routes[%zu].route.weighted_clusters.clusters[%zu].name",
                         i, j, k);
                rc = fn(arg, r->weighted[k].name, where);
            }
            for (size_t k = 0; rc == 0 && k < r->n_mirrors; k++) {
                if (r->mirrors_from_vhost)
                    snprintf(where, sizeof(where), "virtual_hosts[%zu].request_mirror_policies[%zu].cluster", i, k);
                else
                    snprintf(where, sizeof(where), "virtual_hosts[%zu].routes[%zu].route.request_mirror_policies[%zu].cluster",
                             i, j, k);
                if (r->mirrors[k].cluster)
                    rc = fn(arg, r->mirrors[k].cluster, where);
            }
            if (rc)
                return rc;
        }
    }
    return 0;
}
