#include "xds/ads.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/core/log.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"

typedef Envoy__Service__Discovery__V3__DiscoveryRequest pb_req;
typedef Envoy__Service__Discovery__V3__DiscoveryResponse pb_resp;
typedef Envoy__Service__Discovery__V3__DeltaDiscoveryRequest pb_dreq;
typedef Envoy__Service__Discovery__V3__DeltaDiscoveryResponse pb_dresp;

#define SOTW_METHOD     "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
#define DELTA_METHOD    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
#define BACKOFF_BASE_MS 500
#define BACKOFF_MAX_MS  30000

enum op_kind {
    OP_START = 0, /* initial metadata sent and received */
    OP_STATUS,    /* the call's end */
    OP_RECV,      /* one message */
    OP_SEND,      /* one message */
};

struct call;

struct op {
    struct call *call;
    enum op_kind kind;
};

/* One attempt at the stream; freed once every op it started has come back. */
struct call {
    struct tn_ads *a;
    grpc_call *gc;
    struct op op_start, op_status, op_recv, op_send;
    unsigned n_ops; /* started and not yet back */
    grpc_metadata_array md_initial, md_trailing;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    grpc_byte_buffer *recv_buf, *send_buf;
    bool ended, sending, got_response;
};

/* An outgoing request, serialized. */
struct outmsg {
    struct outmsg *next;
    size_t len;
    uint8_t data[];
};

/* What has been accepted of one resource (incremental). */
struct rver {
    char *name, *version;
};

struct watch {
    char *type_url;
    char **names;
    size_t n_names;
    bool wildcard;
    char *version;   /* last accepted version_info (state of the world) */
    char *nonce;     /* of the last response */
    struct rver *rv; /* incremental: accepted resources and their versions */
    size_t n_rv;
    char **sent_names; /* incremental: what this stream has subscribed */
    size_t n_sent;
};

struct event {
    void *tag;
    int ok;
};

struct tn_ads {
    uv_loop_t *loop;
    tn_ads_update_cb update_cb;
    tn_ads_state_cb state_cb;
    void *arg;
    bool delta, node_first_only, node_sent, closing, connected, ua_set, uav_set;
    char *method;
    Envoy__Config__Core__V3__Node *node; /* packed copy, unpacked */
    grpc_channel *channel;
    grpc_completion_queue *cq;
    uv_thread_t thread;
    uv_async_t async;
    uv_timer_t retry;
    uv_mutex_t mu;
    struct event *events; /* filled by the queue thread */
    size_t n_events, cap_events;
    struct call *call; /* the current attempt, NULL between attempts */
    struct outmsg *out_head, *out_tail;
    struct watch *watches;
    size_t n_watches;
    unsigned failures; /* attempts since the last response */
    uint64_t rng;
    struct tn_ads_stats stats;
};

static void call_open(struct tn_ads *a);
static void send_next(struct call *c);

/* --- the completion queue's thread -------------------------------------------- */

static void cq_thread(void *arg)
{
    struct tn_ads *a = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(a->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        uv_mutex_lock(&a->mu);
        if (a->n_events == a->cap_events) {
            size_t cap = a->cap_events ? a->cap_events * 2 : 16;
            struct event *p = realloc(a->events, cap * sizeof(*p));
            if (p == NULL) {
                uv_mutex_unlock(&a->mu);
                TN_LOG(TN_LOG_CRITICAL, xds, "out of memory queueing a gRPC event");
                abort(); /* a lost completion would leak the call forever */
            }
            a->events = p;
            a->cap_events = cap;
        }
        a->events[a->n_events++] = (struct event){ev.tag, ev.success};
        uv_mutex_unlock(&a->mu);
        uv_async_send(&a->async);
    }
}

/* --- small helpers -------------------------------------------------------------- */

static uint64_t next_random(struct tn_ads *a)
{
    a->rng ^= a->rng << 13;
    a->rng ^= a->rng >> 7;
    a->rng ^= a->rng << 17;
    return a->rng;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static char **strv_dup(const char *const *v, size_t n)
{
    char **out = calloc(n + 1, sizeof(*out));
    for (size_t i = 0; out && i < n; i++)
        if ((out[i] = strdup(v[i])) == NULL) {
            strv_free(out, i);
            return NULL;
        }
    return out;
}

static bool strv_has(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

static void set_str(char **dst, const char *src)
{
    char *s = strdup(src ? src : "");
    if (s == NULL)
        return; /* keep the old value: at worst a version is re-sent */
    free(*dst);
    *dst = s;
}

static struct watch *find_watch(struct tn_ads *a, const char *type_url)
{
    for (size_t i = 0; i < a->n_watches; i++)
        if (strcmp(a->watches[i].type_url, type_url) == 0)
            return &a->watches[i];
    return NULL;
}

static const char *short_type(const char *type_url)
{
    const char *dot = strrchr(type_url, '.');
    return dot ? dot + 1 : type_url;
}

/* --- requests ------------------------------------------------------------------- */

static void queue_msg(struct tn_ads *a, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    struct outmsg *o = malloc(sizeof(*o) + len);
    if (o == NULL) {
        TN_LOG(TN_LOG_ERROR, xds, "out of memory building a discovery request");
        return;
    }
    protobuf_c_message_pack(m, o->data);
    o->len = len;
    o->next = NULL;
    if (a->out_tail)
        a->out_tail->next = o;
    else
        a->out_head = o;
    a->out_tail = o;
    if (a->call)
        send_next(a->call);
}

static Envoy__Config__Core__V3__Node *node_for_message(struct tn_ads *a)
{
    if (a->node_first_only && a->node_sent)
        return NULL;
    a->node_sent = true;
    return a->node;
}

/* A state-of-the-world request: the subscription, the version accepted and
 * the nonce answered; error (NULL for an ACK) makes it a NACK. */
static void send_sotw(struct tn_ads *a, struct watch *w, const char *nonce, const char *error)
{
    pb_req r = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_REQUEST__INIT;
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    r.version_info = w->version ? w->version : "";
    r.node = node_for_message(a);
    r.resource_names = w->names;
    r.n_resource_names = w->n_names;
    r.type_url = w->type_url;
    r.response_nonce = (char *)(nonce ? nonce : "");
    if (error) {
        st.code = 3; /* INVALID_ARGUMENT, as Envoy sends */
        st.message = (char *)error;
        r.error_detail = &st;
    }
    queue_msg(a, &r.base);
}

/* An incremental request: subscription changes since what this stream has
 * sent, the versions held (first request of a stream), and the nonce. */
static void send_delta(struct tn_ads *a, struct watch *w, bool first, const char *nonce, const char *error)
{
    pb_dreq r = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    char **sub = calloc(w->n_names + 1, sizeof(*sub)), **unsub = calloc(w->n_sent + 1, sizeof(*unsub));
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry *ents = NULL, **pents = NULL;
    if (sub == NULL || unsub == NULL)
        goto out;
    r.node = node_for_message(a);
    r.type_url = w->type_url;
    for (size_t i = 0; i < w->n_names; i++)
        if (!strv_has(w->sent_names, w->n_sent, w->names[i]))
            sub[r.n_resource_names_subscribe++] = w->names[i];
    for (size_t i = 0; i < w->n_sent; i++)
        if (!strv_has(w->names, w->n_names, w->sent_names[i]))
            unsub[r.n_resource_names_unsubscribe++] = w->sent_names[i];
    r.resource_names_subscribe = sub;
    r.resource_names_unsubscribe = unsub;
    if (first && w->n_rv) {
        ents = calloc(w->n_rv, sizeof(*ents));
        pents = calloc(w->n_rv, sizeof(*pents));
        if (ents == NULL || pents == NULL)
            goto out;
        for (size_t i = 0; i < w->n_rv; i++) {
            envoy__service__discovery__v3__delta_discovery_request__initial_resource_versions_entry__init(&ents[i]);
            ents[i].key = w->rv[i].name;
            ents[i].value = w->rv[i].version;
            pents[i] = &ents[i];
        }
        r.initial_resource_versions = pents;
        r.n_initial_resource_versions = w->n_rv;
    }
    r.response_nonce = (char *)(nonce ? nonce : "");
    if (error) {
        st.code = 3;
        st.message = (char *)error;
        r.error_detail = &st;
    }
    if (!first && !nonce && r.n_resource_names_subscribe == 0 && r.n_resource_names_unsubscribe == 0)
        goto out; /* nothing changed */
    queue_msg(a, &r.base);
    char **sent = strv_dup((const char *const *)w->names, w->n_names);
    if (sent) {
        strv_free(w->sent_names, w->n_sent);
        w->sent_names = sent;
        w->n_sent = w->n_names;
    }
out:
    free(sub);
    free(unsub);
    free(ents);
    free(pents);
}

/* The first request of each watched type on a new stream. */
static void send_initial(struct tn_ads *a)
{
    a->node_sent = false;
    for (size_t i = 0; i < a->n_watches; i++) {
        struct watch *w = &a->watches[i];
        if (a->delta) {
            strv_free(w->sent_names, w->n_sent);
            w->sent_names = NULL;
            w->n_sent = 0;
            send_delta(a, w, true, NULL, NULL);
        } else {
            send_sotw(a, w, NULL, NULL);
        }
    }
}

/* --- responses ------------------------------------------------------------------ */

static void rv_set(struct watch *w, const char *name, const char *version)
{
    for (size_t i = 0; i < w->n_rv; i++)
        if (strcmp(w->rv[i].name, name) == 0) {
            set_str(&w->rv[i].version, version);
            return;
        }
    struct rver *p = realloc(w->rv, (w->n_rv + 1) * sizeof(*p));
    if (p == NULL)
        return;
    w->rv = p;
    p[w->n_rv].name = strdup(name);
    p[w->n_rv].version = strdup(version ? version : "");
    if (p[w->n_rv].name == NULL || p[w->n_rv].version == NULL) {
        free(p[w->n_rv].name);
        free(p[w->n_rv].version);
        return;
    }
    w->n_rv++;
}

static void rv_remove(struct watch *w, const char *name)
{
    for (size_t i = 0; i < w->n_rv; i++)
        if (strcmp(w->rv[i].name, name) == 0) {
            free(w->rv[i].name);
            free(w->rv[i].version);
            w->rv[i] = w->rv[--w->n_rv];
            return;
        }
}

static void handle_sotw(struct tn_ads *a, const uint8_t *data, size_t len)
{
    pb_resp *r = envoy__service__discovery__v3__discovery_response__unpack(NULL, len, data);
    if (r == NULL) {
        TN_LOG(TN_LOG_WARN, xds, "a discovery response that does not parse (%zu bytes): ignored", len);
        return;
    }
    struct watch *w = find_watch(a, r->type_url);
    if (w == NULL) {
        TN_LOG(TN_LOG_WARN, xds, "a response for %s, which tern did not ask for: ignored", r->type_url);
        goto out;
    }
    struct tn_ads_resource *res = calloc(r->n_resources + 1, sizeof(*res));
    if (res == NULL)
        goto out;
    for (size_t i = 0; i < r->n_resources; i++)
        res[i] = (struct tn_ads_resource){.type_url = r->resources[i]->type_url,
                                          .value = r->resources[i]->value.data,
                                          .len = r->resources[i]->value.len};
    struct tn_ads_update u = {
        .type_url = r->type_url, .version = r->version_info, .resources = res, .n_resources = r->n_resources};
    struct tn_err err;
    tn_err_init(&err);
    int rc = a->update_cb(a->arg, &u, &err);
    free(res);
    /* the callback may have watched a new type, moving the watches */
    if ((w = find_watch(a, r->type_url)) == NULL)
        goto out;
    set_str(&w->nonce, r->nonce);
    if (rc == 0) {
        set_str(&w->version, r->version_info);
        a->stats.acks++;
        TN_LOG(TN_LOG_DEBUG, xds, "%s version %s accepted (%zu resources)", short_type(r->type_url), r->version_info,
               r->n_resources);
        send_sotw(a, w, r->nonce, NULL);
    } else {
        a->stats.nacks++;
        TN_LOG(TN_LOG_WARN, xds, "%s version %s rejected: %s", short_type(r->type_url), r->version_info, err.msg);
        send_sotw(a, w, r->nonce, err.msg);
    }
out:
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
}

static void handle_delta(struct tn_ads *a, const uint8_t *data, size_t len)
{
    pb_dresp *r = envoy__service__discovery__v3__delta_discovery_response__unpack(NULL, len, data);
    if (r == NULL) {
        TN_LOG(TN_LOG_WARN, xds, "a delta discovery response that does not parse (%zu bytes): ignored", len);
        return;
    }
    struct watch *w = find_watch(a, r->type_url);
    if (w == NULL) {
        TN_LOG(TN_LOG_WARN, xds, "a response for %s, which tern did not ask for: ignored", r->type_url);
        goto out;
    }
    struct tn_ads_resource *res = calloc(r->n_resources + 1, sizeof(*res));
    if (res == NULL)
        goto out;
    size_t n = 0;
    for (size_t i = 0; i < r->n_resources; i++) {
        const Envoy__Service__Discovery__V3__Resource *x = r->resources[i];
        if (x->resource == NULL)
            continue; /* a name alone: nothing to apply */
        res[n++] = (struct tn_ads_resource){.name = x->name,
                                            .version = x->version,
                                            .type_url = x->resource->type_url,
                                            .value = x->resource->value.data,
                                            .len = x->resource->value.len};
    }
    struct tn_ads_update u = {.type_url = r->type_url,
                              .version = r->system_version_info,
                              .delta = true,
                              .resources = res,
                              .n_resources = n,
                              .removed = (const char *const *)r->removed_resources,
                              .n_removed = r->n_removed_resources};
    struct tn_err err;
    tn_err_init(&err);
    int rc = a->update_cb(a->arg, &u, &err);
    /* the callback may have watched a new type, moving the watches */
    if ((w = find_watch(a, r->type_url)) == NULL) {
        free(res);
        goto out;
    }
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            rv_set(w, res[i].name, res[i].version);
        for (size_t i = 0; i < r->n_removed_resources; i++)
            rv_remove(w, r->removed_resources[i]);
        a->stats.acks++;
        TN_LOG(TN_LOG_DEBUG, xds, "%s delta %s accepted (%zu resources, %zu removed)", short_type(r->type_url),
               r->system_version_info, n, r->n_removed_resources);
        send_delta(a, w, false, r->nonce, NULL);
    } else {
        a->stats.nacks++;
        TN_LOG(TN_LOG_WARN, xds, "%s delta %s rejected: %s", short_type(r->type_url), r->system_version_info, err.msg);
        send_delta(a, w, false, r->nonce, err.msg);
    }
    free(res);
out:
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);
}

/* --- the call ------------------------------------------------------------------- */

static void call_start_batch(struct call *c, grpc_op *ops, size_t n, struct op *tag)
{
    grpc_call_error e = grpc_call_start_batch(c->gc, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        TN_LOG(TN_LOG_ERROR, xds, "gRPC refused a batch (%d); cancelling the stream", (int)e);
        grpc_call_cancel(c->gc, NULL);
        return;
    }
    c->n_ops++;
}

static void recv_next(struct call *c)
{
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
    op.data.recv_message.recv_message = &c->recv_buf;
    call_start_batch(c, &op, 1, &c->op_recv);
}

static void send_next(struct call *c)
{
    struct tn_ads *a = c->a;
    if (c->sending || c->ended || a->out_head == NULL)
        return;
    struct outmsg *o = a->out_head;
    a->out_head = o->next;
    if (a->out_head == NULL)
        a->out_tail = NULL;
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)o->data, o->len);
    free(o);
    c->send_buf = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    op.data.send_message.send_message = c->send_buf;
    c->sending = true;
    call_start_batch(c, &op, 1, &c->op_send);
}

static void set_connected(struct tn_ads *a, bool up)
{
    if (a->connected == up)
        return;
    a->connected = up;
    if (a->state_cb)
        a->state_cb(a->arg, up);
}

static void call_free(struct call *c)
{
    grpc_metadata_array_destroy(&c->md_initial);
    grpc_metadata_array_destroy(&c->md_trailing);
    grpc_slice_unref(c->details);
    if (c->error_string)
        gpr_free((void *)c->error_string);
    if (c->recv_buf)
        grpc_byte_buffer_destroy(c->recv_buf);
    if (c->send_buf)
        grpc_byte_buffer_destroy(c->send_buf);
    if (c->gc)
        grpc_call_unref(c->gc);
    free(c);
}

static void on_retry(uv_timer_t *t)
{
    struct tn_ads *a = t->data;
    if (!a->closing && a->call == NULL)
        call_open(a);
}

static void schedule_retry(struct tn_ads *a)
{
    unsigned shift = a->failures < 6 ? a->failures : 6;
    uint64_t cap = (uint64_t)BACKOFF_BASE_MS << shift;
    if (cap > BACKOFF_MAX_MS)
        cap = BACKOFF_MAX_MS;
    uint64_t delay = cap / 2 + next_random(a) % (cap / 2 + 1);
    a->failures++;
    TN_LOG(TN_LOG_INFO, xds, "reconnecting to the control plane in %llu ms", (unsigned long long)delay);
    uv_timer_start(&a->retry, on_retry, delay, 0);
}

static void op_done(struct op *op, int ok)
{
    struct call *c = op->call;
    struct tn_ads *a = c->a;
    c->n_ops--;
    switch (op->kind) {
    case OP_START:
        break;
    case OP_RECV: {
        grpc_byte_buffer *bb = c->recv_buf;
        c->recv_buf = NULL;
        if (!ok || bb == NULL)
            break; /* the stream is ending: the status follows */
        grpc_byte_buffer_reader rd;
        if (grpc_byte_buffer_reader_init(&rd, bb)) {
            grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
            grpc_byte_buffer_reader_destroy(&rd);
            c->got_response = true;
            a->failures = 0;
            a->stats.responses++;
            set_connected(a, true);
            if (!a->closing) {
                if (a->delta)
                    handle_delta(a, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
                else
                    handle_sotw(a, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
            }
            grpc_slice_unref(s);
        }
        grpc_byte_buffer_destroy(bb);
        if (!c->ended && !a->closing)
            recv_next(c);
        break;
    }
    case OP_SEND:
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
        c->sending = false;
        if (ok)
            send_next(c);
        break;
    case OP_STATUS: {
        c->ended = true;
        char *details = grpc_slice_to_c_string(c->details);
        TN_LOG(a->closing                    ? TN_LOG_DEBUG
               : c->status == GRPC_STATUS_OK ? TN_LOG_INFO
                                             : TN_LOG_WARN,
               xds, "%s gRPC config stream closed: %d, %s",
               a->delta ? "DeltaAggregatedResources" : "StreamAggregatedResources", (int)c->status,
               details ? details : "");
        gpr_free(details);
        a->stats.streams_closed++;
        if (a->call == c)
            a->call = NULL;
        if (!a->closing) {
            set_connected(a, false);
            schedule_retry(a);
        }
        break;
    }
    }
    if (c->ended && c->n_ops == 0)
        call_free(c);
}

static void on_events(uv_async_t *h)
{
    struct tn_ads *a = h->data;
    for (;;) {
        uv_mutex_lock(&a->mu);
        size_t n = a->n_events;
        struct event *ev = NULL;
        if (n) {
            ev = malloc(n * sizeof(*ev));
            if (ev)
                memcpy(ev, a->events, n * sizeof(*ev));
            else
                n = 0;
            a->n_events -= n;
        }
        uv_mutex_unlock(&a->mu);
        if (n == 0)
            return;
        for (size_t i = 0; i < n; i++)
            op_done(ev[i].tag, ev[i].ok);
        free(ev);
    }
}

static void call_open(struct tn_ads *a)
{
    struct call *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        schedule_retry(a);
        return;
    }
    c->a = a;
    c->op_start = (struct op){c, OP_START};
    c->op_status = (struct op){c, OP_STATUS};
    c->op_recv = (struct op){c, OP_RECV};
    c->op_send = (struct op){c, OP_SEND};
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->md_initial);
    grpc_metadata_array_init(&c->md_trailing);
    grpc_slice method = grpc_slice_from_static_string(a->method);
    c->gc = grpc_channel_create_call(a->channel, NULL, GRPC_PROPAGATE_DEFAULTS, a->cq, method, NULL,
                                     gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (c->gc == NULL) {
        call_free(c);
        schedule_retry(a);
        return;
    }
    a->stats.streams_opened++;
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &c->md_initial;
    call_start_batch(c, ops, 2, &c->op_start);
    grpc_op st = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT};
    st.data.recv_status_on_client.trailing_metadata = &c->md_trailing;
    st.data.recv_status_on_client.status = &c->status;
    st.data.recv_status_on_client.status_details = &c->details;
    st.data.recv_status_on_client.error_string = &c->error_string;
    call_start_batch(c, &st, 1, &c->op_status);
    if (c->n_ops != 2) {
        /* gRPC refused the call's first batches: give it back once its ops return */
        c->ended = true;
        if (c->n_ops == 0)
            call_free(c);
        schedule_retry(a);
        return;
    }
    a->call = c;
    recv_next(c);
    /* requests queued for a previous stream were for it alone */
    while (a->out_head) {
        struct outmsg *o = a->out_head;
        a->out_head = o->next;
        free(o);
    }
    a->out_tail = NULL;
    send_initial(a);
}

/* --- the client ------------------------------------------------------------------ */

static Envoy__Config__Core__V3__Node *node_copy(const Envoy__Config__Core__V3__Node *src)
{
    Envoy__Config__Core__V3__Node init = ENVOY__CONFIG__CORE__V3__NODE__INIT, *n;
    if (src == NULL)
        src = &init;
    size_t len = protobuf_c_message_get_packed_size(&src->base);
    uint8_t *buf = malloc(len + 1);
    if (buf == NULL)
        return NULL;
    protobuf_c_message_pack(&src->base, buf);
    n = envoy__config__core__v3__node__unpack(NULL, len, buf);
    free(buf);
    return n;
}

void tn_ads_target_for(const char *host, unsigned port, char *out, size_t cap)
{
    if (strchr(host, ':'))
        snprintf(out, cap, "ipv6:[%s]:%u", host, port);
    else if (strspn(host, "0123456789.") == strlen(host))
        snprintf(out, cap, "ipv4:%s:%u", host, port);
    else
        snprintf(out, cap, "dns:///%s:%u", host, port);
}

static void watch_dispose(struct watch *w)
{
    free(w->type_url);
    strv_free(w->names, w->n_names);
    strv_free(w->sent_names, w->n_sent);
    free(w->version);
    free(w->nonce);
    for (size_t i = 0; i < w->n_rv; i++) {
        free(w->rv[i].name);
        free(w->rv[i].version);
    }
    free(w->rv);
}

static void ads_free(struct tn_ads *a)
{
    for (size_t i = 0; i < a->n_watches; i++)
        watch_dispose(&a->watches[i]);
    free(a->watches);
    while (a->out_head) {
        struct outmsg *o = a->out_head;
        a->out_head = o->next;
        free(o);
    }
    if (a->node) {
        if (a->ua_set)
            a->node->user_agent_name = NULL;
        if (a->uav_set)
            a->node->user_agent_version_type_case = ENVOY__CONFIG__CORE__V3__NODE__USER_AGENT_VERSION_TYPE__NOT_SET;
        envoy__config__core__v3__node__free_unpacked(a->node, NULL);
    }
    free(a->events);
    free(a->method);
    free(a);
}

static void on_async_closed(uv_handle_t *h)
{
    struct tn_ads *a = h->data;
    uv_mutex_destroy(&a->mu);
    ads_free(a);
    grpc_shutdown();
}

static void on_retry_closed(uv_handle_t *h)
{
    struct tn_ads *a = h->data;
    uv_close((uv_handle_t *)&a->async, on_async_closed);
}

struct tn_ads *tn_ads_new(uv_loop_t *loop, const struct tn_ads_options *o, tn_ads_update_cb update_cb,
                          tn_ads_state_cb state_cb, void *arg, struct tn_err *err)
{
    struct tn_ads *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    a->loop = loop;
    a->update_cb = update_cb;
    a->state_cb = state_cb;
    a->arg = arg;
    a->delta = o->delta;
    a->node_first_only = o->node_first_only;
    a->rng = (uint64_t)uv_hrtime() | 1;
    a->method = strdup(o->method ? o->method : o->delta ? DELTA_METHOD : SOTW_METHOD);
    a->node = node_copy(o->node);
    if (a->method == NULL || a->node == NULL) {
        tn_err_fail(err, "out of memory");
        ads_free(a);
        return NULL;
    }
    if (a->node->user_agent_name == NULL || *a->node->user_agent_name == '\0') {
        /* static strings, taken back out before the message is freed */
        a->node->user_agent_name = "tern";
        a->ua_set = true;
        if (a->node->user_agent_version_type_case == ENVOY__CONFIG__CORE__V3__NODE__USER_AGENT_VERSION_TYPE__NOT_SET) {
            a->node->user_agent_version_type_case =
                ENVOY__CONFIG__CORE__V3__NODE__USER_AGENT_VERSION_TYPE_USER_AGENT_VERSION;
            a->node->user_agent_version = TN_VERSION;
            a->uav_set = true;
        }
    }
    grpc_init();
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    a->channel = grpc_channel_create(o->target, creds, NULL);
    grpc_channel_credentials_release(creds);
    a->cq = grpc_completion_queue_create_for_next(NULL);
    uv_mutex_init(&a->mu);
    uv_async_init(loop, &a->async, on_events);
    a->async.data = a;
    uv_timer_init(loop, &a->retry);
    a->retry.data = a;
    if (uv_thread_create(&a->thread, cq_thread, a)) {
        tn_err_fail(err, "cannot start the gRPC completion queue thread");
        grpc_completion_queue_shutdown(a->cq);
        grpc_completion_queue_destroy(a->cq);
        grpc_channel_destroy(a->channel);
        uv_close((uv_handle_t *)&a->retry, on_retry_closed);
        return NULL;
    }
    TN_LOG(TN_LOG_INFO, xds, "control plane %s (%s)", o->target, a->delta ? "incremental" : "state of the world");
    /* the stream opens on the next loop iteration, once the caller has said
     * what to watch */
    uv_timer_start(&a->retry, on_retry, 0, 0);
    return a;
}

int tn_ads_watch(struct tn_ads *a, const char *type_url, const char *const *names, size_t n, bool wildcard)
{
    struct watch *w = find_watch(a, type_url);
    if (w == NULL) {
        struct watch *p = realloc(a->watches, (a->n_watches + 1) * sizeof(*p));
        if (p == NULL)
            return -1;
        a->watches = p;
        w = &p[a->n_watches];
        memset(w, 0, sizeof(*w));
        if ((w->type_url = strdup(type_url)) == NULL)
            return -1;
        a->n_watches++;
    }
    char **v = strv_dup(names, n);
    if (v == NULL)
        return -1;
    strv_free(w->names, w->n_names);
    w->names = v;
    w->n_names = n;
    w->wildcard = wildcard;
    if (a->call) {
        if (a->delta)
            send_delta(a, w, false, NULL, NULL);
        else
            send_sotw(a, w, w->nonce, NULL);
    }
    return 0;
}

bool tn_ads_connected(const struct tn_ads *a)
{
    return a->connected;
}

const struct tn_ads_stats *tn_ads_stats(const struct tn_ads *a)
{
    return &a->stats;
}

void tn_ads_close(struct tn_ads *a)
{
    a->closing = true;
    uv_timer_stop(&a->retry);
    if (a->call)
        grpc_call_cancel(a->call->gc, NULL);
    /* every op of a cancelled call comes back before the queue's shutdown
     * event: hand them over here, then the thread ends */
    grpc_completion_queue_shutdown(a->cq);
    uv_thread_join(&a->thread);
    on_events(&a->async);
    if (a->call) { /* its status never came (cannot happen once cancelled) */
        a->call->ended = true;
        if (a->call->n_ops == 0)
            call_free(a->call);
        a->call = NULL;
    }
    grpc_completion_queue_destroy(a->cq);
    grpc_channel_destroy(a->channel);
    uv_close((uv_handle_t *)&a->retry, on_retry_closed);
}
