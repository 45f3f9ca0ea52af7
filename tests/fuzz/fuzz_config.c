/* Fuzzes the whole configuration path on arbitrary bytes: YAML -> Bootstrap,
 * the compiler, and the JSON printer's round trip (printed JSON must load back
 * to the same message). Any crash, leak, hang or mismatch is a finding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/core/buf.h"
#include "dataplane/server/config.h"
#include "dataplane/core/log.h"
#include "api/pb/pbconv.h"
#include "api/pb/pbjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tn_err err;
    struct tn_bytes a, b;
    const ProtobufCMessageDescriptor *d = &envoy__config__bootstrap__v3__bootstrap__descriptor;

    tn_log_set_all(TN_LOG_OFF);
    tn_err_init(&err);
    if (tn_pbconv_yaml((const char *)data, size, d, &a, &err))
        return 0;
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, a.len, a.data);
    if (m == NULL)
        abort(); /* the converter produced bytes that do not decode */

    struct tn_buf json;
    tn_buf_init(&json);
    tn_pbjson_print(m, &json, 0);
    tn_err_init(&err);
    if (tn_pbconv_yaml(json.data, json.len, d, &b, &err) == 0) {
        if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
            abort(); /* print -> load changed the message */
        free(b.data);
    }
    tn_buf_dispose(&json);

    tn_err_init(&err);
    struct tn_config *cfg = tn_config_compile((tn_pb_bootstrap *)m, &err); /* takes m */
    tn_config_unref(cfg);
    free(a.data);
    return 0;
}
