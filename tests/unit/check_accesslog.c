/* Access logs: Envoy's format strings against a filled stream info, the
 * config errors, and the writers on a real loop writing real files. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "dataplane/accesslog/accesslog.h"
#include "dataplane/core/buf.h"
#include "dataplane/http/stream_info.h"
#include "suites.h"
#include "api/pb/pbconv.h"

static struct tn_pool pool;
static struct tn_err err;
static struct tn_stream_info si;

static const struct tn_header req_headers[] = {
    {.name = "user-agent", .value = "curl/8.0", .name_len = 10, .value_len = 8},
    {.name = "x-forwarded-for", .value = "10.0.0.1", .name_len = 15, .value_len = 8},
    {.name = "x-request-id", .value = "abc-123", .name_len = 12, .value_len = 7},
    {.name = "x-long", .value = "0123456789", .name_len = 6, .value_len = 10},
    {.name = "x-quote", .value = "say \"hi\"\n\\\x01\xff", .name_len = 7, .value_len = 12},
    {.name = "x-empty", .value = "", .name_len = 7, .value_len = 0},
};

static const struct tn_header resp_headers[] = {
    {.name = "x-envoy-upstream-service-time", .value = "27", .name_len = 29, .value_len = 2},
    {.name = "content-type", .value = "text/plain", .name_len = 12, .value_len = 10},
};

static const struct tn_header resp_trailers[] = {
    {.name = "grpc-status", .value = "0", .name_len = 11, .value_len = 1},
    {.name = "x-checksum", .value = "abc", .name_len = 10, .value_len = 3},
};

static void fill_si(void)
{
    memset(&si, 0, sizeof(si));
    si.start_ms = 1795341600123ull; /* 2026-11-22T10:00:00.123Z */
    si.start_ns = 5000000000ull;
    si.end_ns = si.start_ns + 42345678;
    si.first_upstream_rx_ns = si.start_ns + 30100000;
    si.response_flags = TN_RF_UPSTREAM_CONNECTION_FAILURE | TN_RF_UPSTREAM_RETRY_LIMIT_EXCEEDED;
    si.response_code = 503;
    si.response_code_details = "via_upstream";
    si.bytes_received = 12;
    si.bytes_sent = 3456;
    si.protocol = "HTTP/1.1";
    si.method = "GET", si.method_len = 3;
    si.path = "/api/v1?x=1", si.path_len = 11;
    si.authority = "example.com:8080", si.authority_len = 16;
    si.scheme = "https";
    si.req_headers = req_headers;
    si.n_req_headers = sizeof(req_headers) / sizeof(req_headers[0]);
    si.resp_headers = resp_headers;
    si.n_resp_headers = sizeof(resp_headers) / sizeof(resp_headers[0]);
    si.route_name = "r1";
    si.upstream_cluster = "web";
    si.upstream_host = "127.0.0.1:8081";
    struct sockaddr_in *r = (void *)&si.downstream_remote;
    r->sin_family = AF_INET;
    r->sin_port = htons(54321);
    inet_pton(AF_INET, "192.168.1.5", &r->sin_addr);
    struct sockaddr_in6 *l = (void *)&si.downstream_local;
    l->sin6_family = AF_INET6;
    l->sin6_port = htons(10000);
    inet_pton(AF_INET6, "::1", &l->sin6_addr);
    si.upstream_attempts = 2;
    si.resp_trailers = resp_trailers;
    si.n_resp_trailers = sizeof(resp_trailers) / sizeof(resp_trailers[0]);
    si.last_downstream_rx_ns = si.start_ns + 7900000;
    struct sockaddr_in *u = (void *)&si.upstream_local;
    u->sin_family = AF_INET;
    u->sin_port = htons(40001);
    inet_pton(AF_INET, "127.0.0.1", &u->sin_addr);
}

static void setup(void)
{
    tn_pool_init(&pool);
    tn_err_init(&err);
    fill_si();
}

static void teardown(void)
{
    tn_pool_dispose(&pool);
}

/* The line f makes of si, in the pool. */
static const char *run(const struct tn_alog_format *f)
{
    struct tn_alog_buf b = {.max = 1 << 20};
    ck_assert(tn_alog_format(f, &si, &b));
    char *s = tn_pool_strndup(&pool, b.data ? b.data : "", b.len);
    free(b.data);
    return s;
}

static const char *fmt(const char *format)
{
    const struct tn_alog_format *f = NULL;
    tn_err_init(&err);
    ck_assert_msg(tn_alog_format_compile(&pool, format, &f, &err) == 0, "%s: %s", format, err.msg);
    return run(f);
}

static void fmt_error(const char *format, const char *msg)
{
    const struct tn_alog_format *f = NULL;
    tn_err_init(&err);
    ck_assert_int_eq(tn_alog_format_compile(&pool, format, &f, &err), -1);
    ck_assert_ptr_null(f);
    ck_assert_msg(strstr(err.msg, msg) != NULL, "expected '%s' in '%s'", msg, err.msg);
}

/* Compiles one AccessLog given as YAML; NULL with err set on failure. */
static struct tn_access_log *compile_log(const char *yaml)
{
    tn_err_init(&err);
    ProtobufCMessage *m =
        tn_pbconv_yaml_msg(yaml, strlen(yaml), &envoy__config__accesslog__v3__access_log__descriptor, &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    Envoy__Config__Accesslog__V3__AccessLog *pb = (void *)m;
    struct tn_access_log *out = NULL;
    int rc = tn_access_logs_compile(&pool, &pb, 1, &out, "access_log", &err);
    protobuf_c_message_free_unpacked(m, NULL);
    return rc == 0 ? out : NULL;
}

#define FILE_LOG(fmt_yaml)                                                                                             \
    "name: envoy.access_loggers.file\n"                                                                                \
    "typed_config:\n"                                                                                                  \
    "  '@type': type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n"                           \
    "  path: /dev/null\n" fmt_yaml

START_TEST(each_operator)
{
    static const struct {
        const char *format, *want;
    } cases[] = {
        {"%START_TIME%", "2026-11-22T10:00:00.123Z"},
        {"%REQ(:METHOD)% %REQ(:PATH)% %REQ(:AUTHORITY)% %REQ(:SCHEME)%", "GET /api/v1?x=1 example.com:8080 https"},
        {"%REQ(USER-AGENT)%|%REQ(user-agent)%|%REQ(User-Agent)%", "curl/8.0|curl/8.0|curl/8.0"},
        {"%REQ(X-NOPE)%", "-"},
        {"%REQ(X-EMPTY)%", "-"},
        {"%REQ(HOST)%", "example.com:8080"},
        {"%RESP(CONTENT-TYPE)% %RESP(:STATUS)% %RESP(X-NOPE)%", "text/plain 503 -"},
        {"%RESPONSE_CODE%", "503"},
        {"%RESPONSE_CODE_DETAILS%", "via_upstream"},
        {"%RESPONSE_FLAGS%", "UF,URX"},
        {"%BYTES_RECEIVED% %BYTES_SENT%", "12 3456"},
        {"%DURATION%", "42"},
        {"%RESPONSE_DURATION%", "30"},
        {"%REQUEST_DURATION%", "7"},
        {"%TRAILER(GRPC-STATUS)% %TRAILER(x-checksum)% %TRAILER(X-NOPE)% %TRAILER(X-NOPE?X-CHECKSUM)%", "0 abc - abc"},
        {"%TRAILER(X-CHECKSUM):2%", "ab"},
        {"%UPSTREAM_LOCAL_ADDRESS% %UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "127.0.0.1:40001 127.0.0.1"},
        {"%UPSTREAM_REMOTE_ADDRESS%", "127.0.0.1:8081"},
        {"%PROTOCOL%", "HTTP/1.1"},
        {"%UPSTREAM_HOST% %UPSTREAM_CLUSTER% %ROUTE_NAME%", "127.0.0.1:8081 web r1"},
        {"%DOWNSTREAM_REMOTE_ADDRESS%", "192.168.1.5:54321"},
        {"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "192.168.1.5"},
        {"%DOWNSTREAM_LOCAL_ADDRESS%", "[::1]:10000"},
        {"%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "::1"},
        {"%UPSTREAM_REQUEST_ATTEMPT_COUNT%", "2"},
        {"100%% sure, %%%RESPONSE_CODE%%%", "100% sure, %503%"},
        {"plain text", "plain text"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_str_eq(fmt(cases[i].format), cases[i].want);

    char host[256] = "";
    ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
    ck_assert_str_eq(fmt("%HOSTNAME%"), host);
}
END_TEST

/* Whether the one log in `yaml` (a FILE_LOG with a filter) logs si. */
static bool logs(const char *filter_yaml)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml), FILE_LOG("") "%s", filter_yaml);
    struct tn_access_log *l = compile_log(yaml);
    ck_assert_msg(l != NULL, "%s: %s", filter_yaml, err.msg);
    return tn_alog_filter_pass(l->filter, &si);
}

static void filter_error(const char *filter_yaml, const char *msg)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml), FILE_LOG("") "%s", filter_yaml);
    tn_err_init(&err);
    ProtobufCMessage *m =
        tn_pbconv_yaml_msg(yaml, strlen(yaml), &envoy__config__accesslog__v3__access_log__descriptor, &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    Envoy__Config__Accesslog__V3__AccessLog *pb = (void *)m;
    struct tn_access_log *out = NULL;
    ck_assert_int_eq(tn_access_logs_compile(&pool, &pb, 1, &out, "access_log", &err), -1);
    protobuf_c_message_free_unpacked(m, NULL);
    ck_assert_msg(strstr(err.msg, msg) != NULL, "expected '%s' in '%s'", msg, err.msg);
}

#define STATUS(op, v) "filter: {status_code_filter: {comparison: {op: " op ", value: {default_value: " v ", runtime_key: k}}}}\n"
#define DURATION(op, v) "filter: {duration_filter: {comparison: {op: " op ", value: {default_value: " v ", runtime_key: k}}}}\n"

START_TEST(filters)
{
    /* si: 503, UF+URX, 42 ms, user-agent curl/8.0 */
    struct tn_access_log *plain = compile_log(FILE_LOG(""));
    ck_assert_ptr_null(plain->filter);
    ck_assert(logs(STATUS("GE", "500")));
    ck_assert(!logs(STATUS("GE", "504")));
    ck_assert(logs(STATUS("EQ", "503")));
    ck_assert(!logs(STATUS("EQ", "200")));
    ck_assert(logs(STATUS("LE", "503")));
    ck_assert(!logs(STATUS("LE", "499")));
    ck_assert(logs(DURATION("GE", "42")));
    ck_assert(!logs(DURATION("GE", "43")));
    ck_assert(logs(DURATION("LE", "100")));
    ck_assert(logs("filter: {not_health_check_filter: {}}\n"));
    si.health_check = true;
    ck_assert(!logs("filter: {not_health_check_filter: {}}\n"));
    si.health_check = false;
    ck_assert(logs("filter: {header_filter: {header: {name: User-Agent, string_match: {prefix: curl}}}}\n"));
    ck_assert(!logs("filter: {header_filter: {header: {name: user-agent, string_match: {exact: wget}}}}\n"));
    ck_assert(logs("filter: {header_filter: {header: {name: x-absent, present_match: false}}}\n"));
    ck_assert(logs("filter: {response_flag_filter: {flags: [UH, URX]}}\n"));
    ck_assert(!logs("filter: {response_flag_filter: {flags: [UH, NR]}}\n"));
    ck_assert(logs("filter: {response_flag_filter: {}}\n"));
    si.response_flags = 0;
    ck_assert(!logs("filter: {response_flag_filter: {}}\n"));
    si.response_flags = TN_RF_NO_ROUTE_FOUND;
    ck_assert(logs("filter: {response_flag_filter: {flags: [NR]}}\n"));
    ck_assert(logs("filter: {and_filter: {filters: [" "{status_code_filter: {comparison: {op: GE, value: {default_value: 500, runtime_key: a}}}},"
                   "{not_health_check_filter: {}}]}}\n"));
    ck_assert(!logs("filter: {and_filter: {filters: [" "{status_code_filter: {comparison: {op: GE, value: {default_value: 500, runtime_key: a}}}},"
                    "{response_flag_filter: {flags: [UH]}}]}}\n"));
    ck_assert(logs("filter: {or_filter: {filters: [" "{status_code_filter: {comparison: {op: EQ, value: {default_value: 200, runtime_key: a}}}},"
                   "{response_flag_filter: {flags: [NR]}}]}}\n"));
    ck_assert(!logs("filter: {or_filter: {filters: [" "{status_code_filter: {comparison: {op: EQ, value: {default_value: 200, runtime_key: a}}}},"
                    "{duration_filter: {comparison: {op: GE, value: {default_value: 1000, runtime_key: a}}}}]}}\n"));
    ck_assert(logs("filter: {runtime_filter: {runtime_key: k, percent_sampled: {numerator: 100}}}\n"));
    ck_assert(!logs("filter: {runtime_filter: {runtime_key: k, percent_sampled: {numerator: 0}}}\n"));
    ck_assert(!logs("filter: {runtime_filter: {runtime_key: k}}\n"));
    /* sampling by x-request-id: the same request, the same answer */
    bool first = logs("filter: {runtime_filter: {runtime_key: k, percent_sampled: {numerator: 50}}}\n");
    for (int i = 0; i < 20; i++)
        ck_assert(logs("filter: {runtime_filter: {runtime_key: k, percent_sampled: {numerator: 50}}}\n") == first);
    /* independent randomness over many tries: some in, some out */
    int in = 0;
    for (int i = 0; i < 1000; i++)
        in += logs("filter: {runtime_filter: {runtime_key: k, percent_sampled: {numerator: 50}, "
                   "use_independent_randomness: true}}\n");
    ck_assert_int_gt(in, 350);
    ck_assert_int_lt(in, 650);
}
END_TEST

START_TEST(filter_errors)
{
    filter_error("filter: {response_flag_filter: {flags: [UH, XX]}}\n",
                 "access_log[0].filter.response_flag_filter.flags[1]: unknown response flag 'XX'");
    filter_error("filter: {status_code_filter: {}}\n", "access_log[0].filter.status_code_filter: comparison: required");
    filter_error("filter: {and_filter: {filters: [{not_health_check_filter: {}}]}}\n",
                 "access_log[0].filter.and_filter: filters: at least two are required");
    filter_error("filter: {traceable_filter: {}}\n", "tern does not trace requests");
    filter_error("filter: {}\n", "access_log[0].filter: one filter kind is required");
    filter_error("filter: {or_filter: {filters: [{not_health_check_filter: {}}, {header_filter: {header: {name: ''}}}]}}\n",
                 "access_log[0].filter.or_filter.filters[1].header_filter.header: header name must not be empty");
}
END_TEST

START_TEST(start_time_formats)
{
    ck_assert_str_eq(fmt("%START_TIME(%Y/%m/%d %H:%M:%S)%"), "2026/11/22 10:00:00");
    ck_assert_str_eq(fmt("%START_TIME(%s.%3f)%"), "1795341600.123");
    ck_assert_str_eq(fmt("%START_TIME(%s.%6f)%"), "1795341600.123000");
    ck_assert_str_eq(fmt("%START_TIME(%s.%9f)%"), "1795341600.123000000");
    ck_assert_str_eq(fmt("%START_TIME(%f)%"), "123000000");
    ck_assert_str_eq(fmt("%START_TIME(%1f|%2f)%"), "1|12");
    ck_assert_str_eq(fmt("%START_TIME(%H:%M:%S.%3fZ on %a)%"), "10:00:00.123Z on Sun");
    ck_assert_str_eq(fmt("%START_TIME(100%%s)%"), "100%s"); /* strftime's %% stays a '%' */
    ck_assert_str_eq(fmt("%START_TIME()%"), "2026-11-22T10:00:00.123Z");
}
END_TEST

START_TEST(default_format)
{
    ck_assert_str_eq(fmt(NULL), "[2026-11-22T10:00:00.123Z] \"GET /api/v1?x=1 HTTP/1.1\" 503 UF,URX 12 3456 42 27 "
                                "\"10.0.0.1\" \"curl/8.0\" \"abc-123\" \"example.com:8080\" \"127.0.0.1:8081\"\n");
    /* A request that got nowhere: everything unknown is "-". */
    memset(&si, 0, sizeof(si));
    si.start_ms = 1795341600123ull;
    ck_assert_str_eq(fmt(NULL), "[2026-11-22T10:00:00.123Z] \"- - -\" 0 - 0 0 - - \"-\" \"-\" \"-\" \"-\" \"-\"\n");
    /* A log with no format compiles to the default. */
    struct tn_access_log *log = compile_log(FILE_LOG(""));
    ck_assert_msg(log != NULL, "%s", err.msg);
    fill_si();
    ck_assert_str_eq(run(log->formatter), fmt(NULL));
}
END_TEST

START_TEST(fallback_and_truncation)
{
    ck_assert_str_eq(fmt("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"), "/api/v1?x=1");
    ck_assert_str_eq(fmt("%REQ(X-NOPE?USER-AGENT)%"), "curl/8.0");
    ck_assert_str_eq(fmt("%REQ(USER-AGENT?X-LONG)%"), "curl/8.0");
    ck_assert_str_eq(fmt("%REQ(X-NOPE?X-NOPE2)%"), "-");
    ck_assert_str_eq(fmt("%RESP(X-NOPE?CONTENT-TYPE)%"), "text/plain");
    ck_assert_str_eq(fmt("%REQ(X-LONG):4%"), "0123");
    ck_assert_str_eq(fmt("%REQ(X-LONG):10%"), "0123456789");
    ck_assert_str_eq(fmt("%REQ(X-LONG):100%"), "0123456789");
    ck_assert_str_eq(fmt("%REQ(X-NOPE?X-LONG):3%"), "012");
    ck_assert_str_eq(fmt("%REQ(X-NOPE):1%"), "-");
    ck_assert_str_eq(fmt("%UPSTREAM_HOST:9%"), "127.0.0.1");

    static const struct tn_header orig[] = {
        {.name = "x-envoy-original-path", .value = "/before", .name_len = 21, .value_len = 7},
    };
    si.req_headers = orig;
    si.n_req_headers = 1;
    ck_assert_str_eq(fmt("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"), "/before");
}
END_TEST

START_TEST(response_flags_string)
{
    char buf[128];
    ck_assert_uint_eq(tn_response_flags_str(0, buf, sizeof(buf)), 1);
    ck_assert_str_eq(buf, "-");
    tn_response_flags_str(TN_RF_NO_ROUTE_FOUND, buf, sizeof(buf));
    ck_assert_str_eq(buf, "NR");
    tn_response_flags_str(TN_RF_OVERLOAD_MANAGER | TN_RF_FAILED_LOCAL_HEALTHCHECK | TN_RF_UPSTREAM_REQUEST_TIMEOUT, buf,
                          sizeof(buf));
    ck_assert_str_eq(buf, "LH,UT,OM");
    tn_response_flags_str(0xffffffffu, buf, sizeof(buf));
    ck_assert_str_eq(buf, "LH,UH,UT,LR,UR,UF,UC,UO,NR,DI,FI,RL,DC,URX,SI,DPE,UPE,NC,OM");
    /* Too small: whole names only, no dangling comma. */
    ck_assert_uint_eq(tn_response_flags_str(TN_RF_LOCAL_RESET | TN_RF_UPSTREAM_RETRY_LIMIT_EXCEEDED, buf, 5), 2);
    ck_assert_str_eq(buf, "LR");
    ck_assert_str_eq(fmt("%RESPONSE_FLAGS%"), "UF,URX");
    si.response_flags = 0;
    ck_assert_str_eq(fmt("%RESPONSE_FLAGS%"), "-");
}
END_TEST

START_TEST(json_format)
{
    struct tn_access_log *log = compile_log(FILE_LOG("  log_format:\n"
                                                     "    json_format:\n"
                                                     "      status: '%RESPONSE_CODE%'\n"
                                                     "      method: '%REQ(:METHOD)%'\n"
                                                     "      line: '%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%'\n"
                                                     "      missing: '%RESP(X-NOPE)%'\n"
                                                     "      missing_in_text: 'a %RESP(X-NOPE)%'\n"
                                                     "      quote: '%REQ(X-QUOTE)%'\n"
                                                     "      short_code: '%RESPONSE_CODE:1%'\n"
                                                     "      flags: '%RESPONSE_FLAGS%'\n"
                                                     "      nested: {dur: '%DURATION%', 'k\"ey': x}\n"
                                                     "      list: ['%BYTES_SENT%', 1.5]\n"
                                                     "      n: 5\n"
                                                     "      b: true\n"));
    ck_assert_msg(log != NULL, "%s", err.msg);
    ck_assert_int_eq(log->json, 1);
    ck_assert_str_eq(run(log->formatter),
                     "{\"status\":503,\"method\":\"GET\",\"line\":\"GET /api/v1?x=1 503\",\"missing\":null,"
                     "\"missing_in_text\":\"a -\",\"quote\":\"say \\\"hi\\\"\\n\\\\\\u0001\\ufffd\","
                     "\"short_code\":\"5\",\"flags\":\"UF,URX\",\"nested\":{\"dur\":42,\"k\\\"ey\":\"x\"},"
                     "\"list\":[3456,1.5],\"n\":5,\"b\":true}\n");
    si.end_ns = 0;
    ck_assert_ptr_nonnull(strstr(run(log->formatter), "\"nested\":{\"dur\":null,"));
}
END_TEST

START_TEST(bad_operators)
{
    fmt_error("%FOO%", "unknown command operator %FOO%");
    fmt_error("a %REQ(X)% b %BYTES_SENT_X%", "unknown command operator %BYTES_SENT_X%");
    fmt_error("100% done", "'%' at position 3 does not start a command operator");
    fmt_error("%", "'%' at position 0 does not start a command operator");
    fmt_error("%REQ%", "%REQ% needs an argument");
    fmt_error("%REQ()%", "a header name is empty");
    fmt_error("%REQ(A?)%", "a header name is empty");
    fmt_error("%REQ(:PATH%", "%REQ(: missing ')'");
    fmt_error("%PROTOCOL(x)%", "%PROTOCOL% takes no argument");
    fmt_error("%PROTOCOL", "command operator %PROTOCOL at position 0 is not closed by '%'");
    fmt_error("%REQ(X):%", "is not closed by '%'");

    ck_assert_ptr_null(compile_log(FILE_LOG("  log_format: {text_format: 'x %FOO% y'}\n")));
    ck_assert_str_eq(err.msg, "access_log[0].typed_config.log_format.text_format: unknown command operator %FOO%");
    ck_assert_ptr_null(compile_log(FILE_LOG("  format: '%BAR%'\n")));
    ck_assert_str_eq(err.msg, "access_log[0].typed_config.format: unknown command operator %BAR%");
    ck_assert_ptr_null(
        compile_log(FILE_LOG("  log_format: {json_format: {ok: '%PROTOCOL%', inner: {bad: '%BAZ%'}}}\n")));
    ck_assert_str_eq(err.msg,
                     "access_log[0].typed_config.log_format.json_format.inner.bad: unknown command operator %BAZ%");
    ck_assert_ptr_null(
        compile_log("name: envoy.access_loggers.stdout\n"
                    "typed_config:\n"
                    "  '@type': type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog\n"
                    "  log_format: {text_format_source: {inline_string: '%QUX%'}}\n"));
    ck_assert_str_eq(err.msg, "access_log[0].typed_config.log_format.text_format_source.inline_string: "
                              "unknown command operator %QUX%");
}
END_TEST

START_TEST(format_respects_the_cap)
{
    const struct tn_alog_format *f;
    ck_assert_int_eq(tn_alog_format_compile(&pool, "%REQ(X-LONG)%\n", &f, &err), 0);
    struct tn_alog_buf b = {.max = 25};
    ck_assert(tn_alog_format(f, &si, &b));
    ck_assert(tn_alog_format(f, &si, &b));
    ck_assert_uint_eq(b.len, 22);
    ck_assert(!tn_alog_format(f, &si, &b)); /* 33 > 25: refused, nothing half-written */
    ck_assert_uint_eq(b.len, 22);
    ck_assert_int_eq(memcmp(b.data, "0123456789\n0123456789\n", 22), 0);
    free(b.data);
}
END_TEST

/* ---- writers ----------------------------------------------------------- */

static char dir[64];

static void writer_setup(void)
{
    setup();
    snprintf(dir, sizeof(dir), "/tmp/tern-alog.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void writer_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    teardown();
}

static struct tn_access_log *log_to(const char *name, const char *format)
{
    struct tn_access_log *log = tn_pool_alloc(&pool, sizeof(*log));
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    log->sink = TN_ACCESS_LOG_FILE;
    log->path = tn_pool_strdup(&pool, path);
    ck_assert_int_eq(tn_alog_format_compile(&pool, format, &log->formatter, &err), 0);
    return log;
}

/* The file's whole content, malloc'd ("" when missing). */
static char *slurp(const char *path)
{
    struct tn_buf b;
    char chunk[65536];
    ssize_t n;
    int fd = open(path, O_RDONLY);
    tn_buf_init(&b);
    tn_buf_add(&b, "", 0); /* "" for a missing or empty file */
    while (fd >= 0 && (n = read(fd, chunk, sizeof(chunk))) > 0)
        tn_buf_add(&b, chunk, (size_t)n);
    if (fd >= 0)
        close(fd);
    return b.data ? b.data : strdup("");
}

/* Lines "<prefix> <i> <padding>\n" for i in [from, to), as the file should hold them. */
static void expect_lines(struct tn_buf *b, const char *prefix, int from, int to)
{
    for (int i = from; i < to; i++)
        tn_buf_printf(b, "%s %d %s\n", prefix, i, "0123456789abcdef0123456789abcdef0123456789abcdef");
}

static void write_lines(struct tn_alog_writer *w, const struct tn_access_log *log, int from, int to)
{
    static char rid[32];
    for (int i = from; i < to; i++) {
        si.request_id_len = (size_t)snprintf(rid, sizeof(rid), "%d", i);
        si.request_id = rid;
        si.n_req_headers = 0; /* x-request-id comes from the stream info */
        tn_alog_write(w, log, &si);
    }
}

static void close_and_drain(uv_loop_t *loop, struct tn_alog_writer *w)
{
    tn_alog_writer_close(w);
    ck_assert_int_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(loop), 0);
}

#define LINE_FORMAT(p) p " %REQ(X-REQUEST-ID)% 0123456789abcdef0123456789abcdef0123456789abcdef\n"

START_TEST(writer_writes_files_in_order)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    struct tn_alog_writer *w = tn_alog_writer_new(&loop);
    ck_assert_ptr_nonnull(w);
    struct tn_access_log *a = log_to("a.log", LINE_FORMAT("A"));
    struct tn_access_log *a2 = log_to("a.log", LINE_FORMAT("A2")); /* another log, same file */
    struct tn_access_log *b = log_to("b.log", LINE_FORMAT("B"));
    /* 5000 lines of ~60 bytes: several 64 KiB batches, and the loop runs
     * between them so writes complete while lines keep coming. */
    for (int i = 0; i < 5000; i += 500) {
        write_lines(w, a, i, i + 500);
        write_lines(w, b, i, i + 500);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    write_lines(w, a2, 0, 3);
    close_and_drain(&loop, w);

    struct tn_buf want;
    tn_buf_init(&want);
    expect_lines(&want, "A", 0, 5000);
    expect_lines(&want, "A2", 0, 3);
    char path[128];
    snprintf(path, sizeof(path), "%s/a.log", dir);
    char *got = slurp(path);
    ck_assert_uint_eq(strlen(got), want.len);
    ck_assert(strcmp(got, want.data) == 0);
    free(got);
    tn_buf_dispose(&want);
    expect_lines(&want, "B", 0, 5000);
    snprintf(path, sizeof(path), "%s/b.log", dir);
    got = slurp(path);
    ck_assert(strcmp(got, want.data) == 0);
    free(got);
    tn_buf_dispose(&want);
}
END_TEST

START_TEST(writer_appends)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/a.log", dir);
    FILE *f = fopen(path, "w");
    fputs("before\n", f);
    fclose(f);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tn_alog_writer *w = tn_alog_writer_new(&loop);
    write_lines(w, log_to("a.log", LINE_FORMAT("A")), 0, 2);
    close_and_drain(&loop, w);
    char *got = slurp(path);
    ck_assert_str_eq(got, "before\n"
                          "A 0 0123456789abcdef0123456789abcdef0123456789abcdef\n"
                          "A 1 0123456789abcdef0123456789abcdef0123456789abcdef\n");
    free(got);
}
END_TEST

static void on_check(uv_timer_t *t)
{
    char path[128], *got;
    snprintf(path, sizeof(path), "%s/a.log", dir);
    got = slurp(path);
    ck_assert_str_eq(got, "A 7 0123456789abcdef0123456789abcdef0123456789abcdef\n");
    free(got);
    tn_alog_writer_close(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

START_TEST(writer_flushes_every_second)
{
    uv_loop_t loop;
    uv_timer_t check;
    uv_loop_init(&loop);
    struct tn_alog_writer *w = tn_alog_writer_new(&loop);
    write_lines(w, log_to("a.log", LINE_FORMAT("A")), 7, 8);
    /* Without a close, one small line is written by the 1 s timer. */
    uv_timer_init(&loop, &check);
    check.data = w;
    uv_timer_start(&check, on_check, 1500, 0);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(writer_drops_when_full)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tn_alog_writer *w = tn_alog_writer_new(&loop);
    struct tn_access_log *a = log_to("a.log", LINE_FORMAT("A"));
    /* The loop does not run, so the first batch never completes: one 64 KiB
     * batch in flight, 2 MiB waiting, the rest dropped. */
    int n = 100000;
    write_lines(w, a, 0, n);
    uint64_t dropped = tn_alog_writer_dropped(w);
    ck_assert_uint_gt(dropped, 0);
    ck_assert_uint_lt(dropped, (uint64_t)n);
    close_and_drain(&loop, w);
    struct tn_buf want;
    tn_buf_init(&want);
    expect_lines(&want, "A", 0, n - (int)dropped);
    char path[128];
    snprintf(path, sizeof(path), "%s/a.log", dir);
    char *got = slurp(path);
    ck_assert_uint_eq(strlen(got), want.len);
    ck_assert(strcmp(got, want.data) == 0);
    ck_assert_uint_le(want.len, 2u * 1024 * 1024 + 64 * 1024 + 128); /* one batch in flight, one full buffer */
    free(got);
    tn_buf_dispose(&want);
}
END_TEST

static void on_check_dropped(uv_timer_t *t)
{
    ck_assert_uint_eq(tn_alog_writer_dropped(t->data), 3);
    tn_alog_writer_close(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

START_TEST(writer_counts_failed_opens)
{
    uv_loop_t loop;
    uv_timer_t check;
    uv_loop_init(&loop);
    struct tn_alog_writer *w = tn_alog_writer_new(&loop);
    write_lines(w, log_to("no/such/dir/a.log", LINE_FORMAT("A")), 0, 3);
    /* The 1 s flush fails to open the file: the lines are counted as dropped. */
    uv_timer_init(&loop, &check);
    check.data = w;
    uv_timer_start(&check, on_check_dropped, 1500, 0);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(writer_stdout)
{
    /* fd 1 goes to a file for the test; /dev/stdout as a path and the stdout
     * logger share one destination, so their lines interleave in order. */
    char path[128];
    snprintf(path, sizeof(path), "%s/out", dir);
    fflush(stdout);
    int saved = dup(1), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    dup2(fd, 1);
    close(fd);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tn_alog_writer *w = tn_alog_writer_new(&loop);
    struct tn_access_log s = {.sink = TN_ACCESS_LOG_STDOUT}, d = {.sink = TN_ACCESS_LOG_FILE, .path = "/dev/stdout"};
    ck_assert_int_eq(tn_alog_format_compile(&pool, "S %RESPONSE_CODE%\n", &s.formatter, &err), 0);
    ck_assert_int_eq(tn_alog_format_compile(&pool, "D %PROTOCOL%\n", &d.formatter, &err), 0);
    tn_alog_write(w, &s, &si);
    tn_alog_write(w, &d, &si);
    tn_alog_write(w, &s, &si);
    close_and_drain(&loop, w);
    dup2(saved, 1);
    close(saved);
    char *got = slurp(path);
    ck_assert_str_eq(got, "S 503\nD HTTP/1.1\nS 503\n");
    free(got);
}
END_TEST

Suite *accesslog_suite(void)
{
    Suite *s = suite_create("accesslog");
    TCase *f = tcase_create("format");
    tcase_add_checked_fixture(f, setup, teardown);
    tcase_add_test(f, each_operator);
    tcase_add_test(f, start_time_formats);
    tcase_add_test(f, default_format);
    tcase_add_test(f, fallback_and_truncation);
    tcase_add_test(f, response_flags_string);
    tcase_add_test(f, json_format);
    tcase_add_test(f, bad_operators);
    tcase_add_test(f, format_respects_the_cap);
    tcase_add_test(f, filters);
    tcase_add_test(f, filter_errors);
    suite_add_tcase(s, f);
    TCase *w = tcase_create("writer");
    tcase_add_checked_fixture(w, writer_setup, writer_teardown);
    tcase_set_timeout(w, 30);
    tcase_add_test(w, writer_writes_files_in_order);
    tcase_add_test(w, writer_appends);
    tcase_add_test(w, writer_flushes_every_second);
    tcase_add_test(w, writer_drops_when_full);
    tcase_add_test(w, writer_counts_failed_opens);
    tcase_add_test(w, writer_stdout);
    suite_add_tcase(s, w);
    return s;
}
