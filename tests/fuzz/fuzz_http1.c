/* libFuzzer target for what tern does with a request's bytes before any
 * socket is involved: llhttp (strict) feeding the head collector (in pieces cut
 * where the input says), hop-by-hop and token rules, then route matching,
 * path rewriting and redirect building against a table that uses every
 * matcher kind. Any crash, sanitizer report or broken invariant fails. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "dataplane/http/h1.h"
#include "filters/route.h"
#include "filters/route_match.h"
#include "api/pb/pbconv.h"

static const char ROUTES[] =
    "virtual_hosts:\n"
    "- name: exact\n  domains: [\"a.test\", \"a.test:8080\"]\n"
    "  routes:\n"
    "  - match: {prefix: /p, case_sensitive: false}\n    route: {cluster: c, prefix_rewrite: /q}\n"
    "  - match: {safe_regex: {regex: \"/r/([a-z]+)/(\\\\d+)\"}}\n"
    "    route: {cluster: c, regex_rewrite: {pattern: {regex: \"/(\\\\d+)\"}, substitution: \"/n\\\\1\"}}\n"
    "  - match: {path_separated_prefix: /sep}\n    redirect: {https_redirect: true, port_redirect: 8443}\n"
    "  - match:\n      prefix: /h\n      headers:\n"
    "      - {name: x-a, string_match: {exact: v}}\n      - {name: x-b, present_match: true, invert_match: true}\n"
    "      - {name: x-r, range_match: {start: 1, end: 100}}\n"
    "      query_parameters:\n      - {name: q, string_match: {prefix: z}}\n"
    "    redirect: {host_redirect: b.test, path_redirect: /x?y=1, response_code: TEMPORARY_REDIRECT}\n"
    "  - match: {path: /exact}\n    redirect: {prefix_rewrite: /pre, strip_query: true}\n"
    "- name: wild\n  domains: [\"*.w.test\", \"w.*\", \"*\"]\n"
    "  routes:\n"
    "  - match: {prefix: /, headers: [{name: \":method\", string_match: {exact: POST}}]}\n"
    "    route: {weighted_clusters: {clusters: [{name: c, weight: 1}, {name: d, weight: 3}]}}\n"
    "  - match: {prefix: /}\n    direct_response: {status: 200}\n";

static struct tn_route_table *table;

static struct tn_h1_head head;
static int bad;

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    (void)p;
    return tn_h1_head_url(&head, at, n);
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
    (void)p;
    return tn_h1_head_field(&head, at, n);
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
    (void)p;
    return tn_h1_head_value(&head, at, n);
}

static void route(const llhttp_t *p)
{
    const struct tn_header *host = tn_headers_find(head.h, head.n, "host", 4);
    const struct tn_header *conn = tn_headers_find(head.h, head.n, "connection", 10);
    for (size_t i = 0; i < head.n; i++) {
        tn_h1_hop_by_hop(&head.h[i], conn);
        tn_h1_has_token(head.h[i].value, head.h[i].value_len, "chunked");
        if (tn_h1_te_is_chunked(head.h[i].value, head.h[i].value_len) &&
            !tn_h1_has_token(head.h[i].value, head.h[i].value_len, "chunked"))
            bad = 1;
    }
    /* what tern accepts as an authority has no byte that could end a
     * header line or a target, nor userinfo */
    if (host && tn_h1_authority_ok(host->value, host->value_len))
        for (size_t i = 0; i < host->value_len; i++)
            if (strchr(" \t\r\n/@?#", host->value[i]) || host->value[i] == '\0')
                bad = 1;
    const char *auth, *path;
    size_t al, pl;
    if (tn_h1_split_absolute(tn_h1_head_urlp(&head), head.url_len, &auth, &al, &path, &pl) == 0 &&
        (!tn_h1_authority_ok(auth, al) || auth + al != path || path + pl != tn_h1_head_urlp(&head) + head.url_len))
        bad = 1;
    const char *method = llhttp_method_name(p->method);
    struct tn_request_view v = {.method = method, .method_len = strlen(method), .path = tn_h1_head_urlp(&head),
                                .path_len = head.url_len, .host = host ? host->value : "", .host_len = host ? host->value_len : 0,
                                .scheme = "http", .headers = head.h, .n_headers = head.n, .random = head.len};
    const struct tn_vhost *vh = tn_route_table_vhost(table, v.host, v.host_len);
    const struct tn_route *r = tn_route_match(vh, &v);
    if (r == NULL)
        return;
    char out[512];
    size_t n = tn_route_rewrite_path(r, &v, out, sizeof(out));
    if (n != 0 && n != TN_ROUTE_NOSPACE && (n >= sizeof(out) || out[n] != '\0'))
        bad = 1;
    n = tn_route_redirect_location(r, &v, out, sizeof(out));
    if (n != 0 && n != TN_ROUTE_NOSPACE && (n >= sizeof(out) || out[n] != '\0'))
        bad = 1;
    if (r->kind == TN_ROUTE_WEIGHTED && tn_route_weighted_pick(r, v.random) == NULL)
        bad = 1;
}

static int on_headers(llhttp_t *p)
{
    if (tn_h1_head_finish(&head))
        return -1;
    route(p);
    return 0;
}

static int on_begin(llhttp_t *p)
{
    (void)p;
    tn_h1_head_reset(&head);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct tn_err err;
    (void)argc;
    (void)argv;
    tn_err_init(&err);
    tn_pb_route_config *pb = (void *)tn_pbconv_yaml_msg(
        ROUTES, strlen(ROUTES), &envoy__config__route__v3__route_configuration__descriptor, &err);
    if (pb == NULL || (table = tn_route_table_compile(pb, &err)) == NULL)
        abort();
    protobuf_c_message_free_unpacked((ProtobufCMessage *)pb, NULL);
    tn_h1_head_init(&head, 16 * 1024);
    return 0;
}

/* The first byte chooses how the input is cut into reads. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t step = 1 + data[0] % 64;
    data++;
    size--;
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_message_begin = on_begin;
    st.on_url = on_url;
    st.on_header_field = on_field;
    st.on_header_value = on_value;
    st.on_headers_complete = on_headers;
    llhttp_t p;
    llhttp_init(&p, HTTP_REQUEST, &st);
    bad = 0;
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        if (llhttp_execute(&p, (const char *)data + off, n) != HPE_OK)
            break;
    }
    if (bad)
        abort();
    return 0;
}
