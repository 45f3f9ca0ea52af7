#include "dataplane/accesslog/accesslog.h"

#include <string.h>

#include <stdlib.h>

#include "dataplane/core/buf.h"
#include "dataplane/http/stream_info.h"
#include "filters/route.h"
#include "filters/route_match.h"
#include "envoy/extensions/access_loggers/file/v3/file.pb-c.h"
#include "envoy/extensions/access_loggers/stream/v3/stream.pb-c.h"
#include "api/pb/pbjson.h"
#include "api/pb/types.h"

typedef Envoy__Config__Core__V3__SubstitutionFormatString pb_format;

static int compile_format(struct tn_pool *pool, const pb_format *f, struct tn_access_log *o, struct tn_err *err)
{
    if (f == NULL)
        return 0;
    size_t mark = tn_err_push(err, ".log_format");
    switch (f->format_case) {
    case ENVOY__CONFIG__CORE__V3__SUBSTITUTION_FORMAT_STRING__FORMAT_TEXT_FORMAT:
        o->format = tn_pool_strdup(pool, f->text_format);
        tn_err_push(err, ".text_format");
        if (tn_alog_format_compile(pool, o->format, &o->formatter, err))
            return -1;
        break;
    case ENVOY__CONFIG__CORE__V3__SUBSTITUTION_FORMAT_STRING__FORMAT_TEXT_FORMAT_SOURCE:
        if (f->text_format_source->specifier_case != ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_STRING)
            return tn_err_fail(err, "text_format_source: only inline_string is supported");
        o->format = tn_pool_strdup(pool, f->text_format_source->inline_string);
        tn_err_push(err, ".text_format_source.inline_string");
        if (tn_alog_format_compile(pool, o->format, &o->formatter, err))
            return -1;
        break;
    case ENVOY__CONFIG__CORE__V3__SUBSTITUTION_FORMAT_STRING__FORMAT_JSON_FORMAT: {
        struct tn_buf b;
        tn_buf_init(&b);
        tn_pbjson_print((const ProtobufCMessage *)f->json_format, &b, 0);
        o->format = tn_pool_strdup(pool, b.data ? b.data : "{}");
        o->json = 1;
        tn_buf_dispose(&b);
        tn_err_push(err, ".json_format");
        if (tn_alog_format_compile_json(pool, f->json_format, &o->formatter, err))
            return -1;
        break;
    }
    default:
        return tn_err_fail(err, "one of text_format, text_format_source, json_format is required");
    }
    tn_err_pop(err, mark);
    return 0;
}

/* --- filters ------------------------------------------------------------------ */

typedef Envoy__Config__Accesslog__V3__AccessLogFilter pb_filter;

static int compile_comparison(const Envoy__Config__Accesslog__V3__ComparisonFilter *c, struct tn_alog_filter *f,
                              struct tn_err *err)
{
    if (c == NULL)
        return tn_err_fail(err, "comparison: required");
    if ((unsigned)c->op > 2) {
        tn_err_push(err, ".comparison.op");
        return tn_err_fail(err, "unknown operator %d", c->op);
    }
    f->op = c->op;
    if (c->value == NULL) {
        tn_err_push(err, ".comparison.value");
        return tn_err_fail(err, "required");
    }
    f->value = c->value->default_value;
    return 0;
}

static int response_flag_bit(const char *name, uint32_t *bit)
{
    static const char *const names[] = {
#define TN_X(n, s) s,
        TN_RESPONSE_FLAGS(TN_X)
#undef TN_X
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(names[i], name) == 0) {
            *bit = 1u << i;
            return 0;
        }
    return -1;
}

static int compile_filter(struct tn_pool *pool, const pb_filter *pb, struct tn_alog_filter *f, struct tn_err *err);

static int compile_list(struct tn_pool *pool, pb_filter **pb, size_t n, struct tn_alog_filter *f, struct tn_err *err)
{
    if (n < 2)
        return tn_err_fail(err, "filters: at least two are required");
    struct tn_alog_filter *subs = tn_pool_alloc(pool, n * sizeof(*subs));
    for (size_t i = 0; i < n; i++) {
        size_t mark = tn_err_push(err, ".filters[%zu]", i);
        if (compile_filter(pool, pb[i], &subs[i], err))
            return -1;
        tn_err_pop(err, mark);
    }
    f->subs = subs;
    f->n_subs = n;
    return 0;
}

static int compile_filter(struct tn_pool *pool, const pb_filter *pb, struct tn_alog_filter *f, struct tn_err *err)
{
    size_t mark;
    memset(f, 0, sizeof(*f));
    switch (pb->filter_specifier_case) {
    case ENVOY__CONFIG__ACCESSLOG__V3__ACCESS_LOG_FILTER__FILTER_SPECIFIER_STATUS_CODE_FILTER:
        f->kind = TN_ALF_STATUS;
        mark = tn_err_push(err, ".status_code_filter");
        if (compile_comparison(pb->status_code_filter->comparison, f, err))
            return -1;
        break;
    case ENVOY__CONFIG__ACCESSLOG__V3__ACCESS_LOG_FILTER__FILTER_SPECIFIER_DURATION_FILTER:
        f->kind = TN_ALF_DURATION;
        mark = tn_err_push(err, ".duration_filter");
        if (compile_comparison(pb->duration_filter->comparison, f, err))
            return -1;
        break;
    case ENVOY__CONFIG__ACCESSLOG__V3__ACCESS_LOG_FILTER__FILTER_SPECIFIER_NOT_HEALTH_CHECK_FILTER:
        f->kind = TN_ALF_NOT_HC;
        return 0;
    case ENVOY__CONFIG__ACCESSLOG__V3__ACCESS_LOG_FILTER__FILTER_SPECIFIER_HEADER_FILTER: {
        f->kind = TN_ALF_HEADER;
        mark = tn_err_push(err, ".header_filter.header");
        if (pb->header_filter->header == NULL)
            return tn_err_fail(err, "required");
        struct tn_header_matcher *h = tn_pool_alloc(pool, sizeof(*h));
        if (tn_header_matcher_compile(pool, pb->header_filter->header, h, err))
            return -1;
        f->header = h;
        break;
    }
    case ENVOY__CONFIG__ACCESSLOG__V3__ACCESS_LOG_FILTER__FILTER_SPECIFIER_RESPONSE_FLAG_FILTER: {
        const Envoy__Config__Accesslog__V3__ResponseFlagFilter *rf = pb->response_flag_filter;
        f->kind = TN_ALF_RESPONSE_FLAG;
        mark = tn_err_push(err, ".response_flag_filter");
        for (size_t i = 0; i < rf->n_flags; i++) {
            uint32_t bit;
            if (response_flag_bit(rf->flags[i], &bit)) {
                tn_err_push(err, ".flags[%zu]", i);
                return tn_err_fail(err, "unknown response flag '%s'", rf->flags[i]);
            }
            f->flags |= bit;
        }
        if (rf->n_flags == 0)
            f->flags = UINT32_MAX;
        break;
    }
    case ENVOY__CONFIG__ACCESSLOG__V3__ACCESS_LOG_FILTER__FILTER_SPECIFIER_RUNTIME_FILTER: {
        const Envoy__Config__Accesslog__V3__RuntimeFilter *rt = pb->runtime_filter;
        static const uint32_t dens[] = {100, 10000, 1000000};
        f->kind = TN_ALF_RUNTIME;
        mark = tn_err_push(err, ".runtime_filter");
        /* Without a runtime the key never has a value: percent_sampled
         * decides, and when it is unset Envoy's default of 0 % holds. */
        f->numerator = 0;
        f->denominator = 100;
        if (rt->percent_sampled) {
            if ((unsigned)rt->percent_sampled->denominator > 2) {
                tn_err_push(err, ".percent_sampled.denominator");
                return tn_err_fail(err, "unknown denominator %d", rt->percent_sampled->denominator);
            }
            f->denominator = dens[rt->percent_sampled->denominator];
            f->numerator = rt->percent_sampled->numerator;
        }
        f->independent = rt->use_independent_randomness;
        break;
    }
    case ENVOY__CONFIG__ACCESSLOG__V3__ACCESS_LOG_FILTER__FILTER_SPECIFIER_AND_FILTER:
        f->kind = TN_ALF_AND;
        mark = tn_err_push(err, ".and_filter");
        if (compile_list(pool, pb->and_filter->filters, pb->and_filter->n_filters, f, err))
            return -1;
        break;
    case ENVOY__CONFIG__ACCESSLOG__V3__ACCESS_LOG_FILTER__FILTER_SPECIFIER_OR_FILTER:
        f->kind = TN_ALF_OR;
        mark = tn_err_push(err, ".or_filter");
        if (compile_list(pool, pb->or_filter->filters, pb->or_filter->n_filters, f, err))
            return -1;
        break;
    case ENVOY__CONFIG__ACCESSLOG__V3__ACCESS_LOG_FILTER__FILTER_SPECIFIER_TRACEABLE_FILTER:
        tn_err_push(err, ".traceable_filter");
        return tn_err_fail(err, "tern does not trace requests, so no request would ever pass");
    default:
        return tn_err_fail(err, "one filter kind is required");
    }
    tn_err_pop(err, mark);
    return 0;
}

static bool compare(int op, uint64_t have, uint64_t want)
{
    return op == 0 ? have == want : op == 1 ? have >= want : have <= want;
}

/* Envoy samples on the x-request-id when there is one, so every log that
 * samples by the same fraction keeps the same requests. */
static uint64_t sample_value(const struct tn_alog_filter *f, const struct tn_stream_info *si)
{
    const char *id = si->request_id;
    size_t len = si->request_id_len;
    if (len == 0) {
        const struct tn_header *h = tn_headers_find(si->req_headers, si->n_req_headers, "x-request-id", 12);
        if (h)
            id = h->value, len = h->value_len;
    }
    if (!f->independent && len > 0) {
        uint64_t h = 1469598103934665603ull; /* FNV-1a */
        for (size_t i = 0; i < len; i++)
            h = (h ^ (unsigned char)id[i]) * 1099511628211ull;
        return h;
    }
    return ((uint64_t)random() << 31) ^ (uint64_t)random();
}

bool tn_alog_filter_pass(const struct tn_alog_filter *f, const struct tn_stream_info *si)
{
    if (f == NULL)
        return true;
    switch (f->kind) {
    case TN_ALF_STATUS:
        return compare(f->op, (uint64_t)(si->response_code > 0 ? si->response_code : 0), f->value);
    case TN_ALF_DURATION: {
        uint64_t ms = si->end_ns > si->start_ns ? (si->end_ns - si->start_ns) / 1000000 : 0;
        return compare(f->op, ms, f->value);
    }
    case TN_ALF_NOT_HC:
        return !si->health_check;
    case TN_ALF_HEADER: {
        struct tn_request_view v = {
            .method = si->method,
            .method_len = si->method_len,
            .path = si->path,
            .path_len = si->path_len,
            .host = si->authority,
            .host_len = si->authority_len,
            .scheme = si->scheme,
            .headers = si->req_headers,
            .n_headers = si->n_req_headers,
        };
        return tn_header_matcher_match(f->header, &v);
    }
    case TN_ALF_RESPONSE_FLAG:
        return (si->response_flags & f->flags) != 0;
    case TN_ALF_RUNTIME:
        return sample_value(f, si) % f->denominator < f->numerator;
    case TN_ALF_AND:
        for (size_t i = 0; i < f->n_subs; i++)
            if (!tn_alog_filter_pass(&f->subs[i], si))
                return false;
        return true;
    case TN_ALF_OR:
        for (size_t i = 0; i < f->n_subs; i++)
            if (tn_alog_filter_pass(&f->subs[i], si))
                return true;
        return false;
    }
    return true;
}

/* --- loggers ------------------------------------------------------------------ */

static int compile_one(struct tn_pool *pool, const Envoy__Config__Accesslog__V3__AccessLog *pb,
                       struct tn_access_log *o, struct tn_err *err)
{
    if (pb->typed_config == NULL)
        return tn_err_fail(err, "typed_config: required");
    if (pb->filter) {
        size_t fmark = tn_err_push(err, ".filter");
        struct tn_alog_filter *f = tn_pool_alloc(pool, sizeof(*f));
        if (compile_filter(pool, pb->filter, f, err))
            return -1;
        o->filter = f;
        tn_err_pop(err, fmark);
    }
    size_t mark = tn_err_push(err, ".typed_config");
    ProtobufCMessage *m = tn_any_unpack((const ProtobufCMessage *)pb->typed_config, NULL, err);
    int rc = -1;
    if (m == NULL)
        return -1;
    if (m->descriptor == &envoy__extensions__access_loggers__file__v3__file_access_log__descriptor) {
        const Envoy__Extensions__AccessLoggers__File__V3__FileAccessLog *f = (const void *)m;
        o->sink = TN_ACCESS_LOG_FILE;
        if (*f->path == '\0') {
            tn_err_push(err, ".path");
            tn_err_fail(err, "must not be empty");
            goto out;
        }
        o->path = tn_pool_strdup(pool, f->path);
        if (f->access_log_format_case ==
            ENVOY__EXTENSIONS__ACCESS_LOGGERS__FILE__V3__FILE_ACCESS_LOG__ACCESS_LOG_FORMAT_FORMAT) {
            o->format = tn_pool_strdup(pool, f->format);
            size_t fmark = tn_err_push(err, ".format");
            if (tn_alog_format_compile(pool, o->format, &o->formatter, err))
                goto out;
            tn_err_pop(err, fmark);
        } else if (f->access_log_format_case ==
                 ENVOY__EXTENSIONS__ACCESS_LOGGERS__FILE__V3__FILE_ACCESS_LOG__ACCESS_LOG_FORMAT_LOG_FORMAT) {
            if (compile_format(pool, f->log_format, o, err))
                goto out;
        } else if (f->access_log_format_case !=
                   ENVOY__EXTENSIONS__ACCESS_LOGGERS__FILE__V3__FILE_ACCESS_LOG__ACCESS_LOG_FORMAT__NOT_SET) {
            tn_err_fail(err, "json_format and typed_json_format are deprecated: use log_format.json_format");
            goto out;
        }
    } else if (m->descriptor == &envoy__extensions__access_loggers__stream__v3__stdout_access_log__descriptor ||
               m->descriptor == &envoy__extensions__access_loggers__stream__v3__stderr_access_log__descriptor) {
        const Envoy__Extensions__AccessLoggers__Stream__V3__StdoutAccessLog *s = (const void *)m;
        o->sink = m->descriptor == &envoy__extensions__access_loggers__stream__v3__stdout_access_log__descriptor
                      ? TN_ACCESS_LOG_STDOUT
                      : TN_ACCESS_LOG_STDERR;
        if (compile_format(pool, s->access_log_format_case ? s->log_format : NULL, o, err))
            goto out;
    } else {
        tn_err_fail(err, "'%s' is not an access logger", m->descriptor->name);
        goto out;
    }
    if (o->formatter == NULL && tn_alog_format_compile(pool, NULL, &o->formatter, err))
        goto out;
    tn_err_pop(err, mark);
    rc = 0;
out:
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

int tn_access_logs_compile(struct tn_pool *pool, Envoy__Config__Accesslog__V3__AccessLog **pb, size_t n,
                           struct tn_access_log **out, const char *field, struct tn_err *err)
{
    *out = tn_pool_alloc(pool, n * sizeof(**out) + 1);
    for (size_t i = 0; i < n; i++) {
        size_t mark = tn_err_push(err, ".%s[%zu]", field, i);
        if (compile_one(pool, pb[i], &(*out)[i], err))
            return -1;
        tn_err_pop(err, mark);
    }
    return 0;
}
