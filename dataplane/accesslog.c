#include "dataplane/accesslog.h"

#include <string.h>

#include "dataplane/buf.h"
#include "envoy/extensions/access_loggers/file/v3/file.pb-c.h"
#include "envoy/extensions/access_loggers/stream/v3/stream.pb-c.h"
#include "xds/pbjson.h"
#include "xds/types.h"

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

static int compile_one(struct tn_pool *pool, const Envoy__Config__Accesslog__V3__AccessLog *pb,
                       struct tn_access_log *o, struct tn_err *err)
{
    if (pb->typed_config == NULL)
        return tn_err_fail(err, "typed_config: required");
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
