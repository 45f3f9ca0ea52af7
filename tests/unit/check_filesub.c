/* xDS from a file (path_config_source) on a real loop with real files in a
 * temporary directory: the first read, atomic replacement, bad files and
 * rejected ones keeping the last good config, rewrites of the same bytes,
 * removal and re-creation, watched_directory, the poll fallback, and the
 * .json and .pb forms. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "suites.h"
#include "xds/ads.h"
#include "xds/filesub.h"
#include "api/pb/types.h"

typedef Envoy__Config__Endpoint__V3__ClusterLoadAssignment pb_cla;

static uv_loop_t loop;
static uv_timer_t tick; /* keeps uv_run(ONCE) from blocking while a test waits */
static char dir[64];
static struct tn_err err;
static int saved_stderr = -1;

/* What the subscription handed over last, unpacked. */
struct rec {
    int calls;
    int reject; /* answer -1 */
    char version[64];
    char type_url[128];
    char names[4][32];
    size_t n;
};

static int on_update(void *arg, const struct tn_ads_update *u, struct tn_err *e)
{
    struct rec *r = arg;
    r->calls++;
    ck_assert(!u->delta);
    ck_assert_uint_le(u->n_resources, 4);
    snprintf(r->version, sizeof(r->version), "%s", u->version);
    snprintf(r->type_url, sizeof(r->type_url), "%s", u->type_url);
    r->n = u->n_resources;
    for (size_t i = 0; i < u->n_resources; i++) {
        const struct tn_ads_resource *res = &u->resources[i];
        ck_assert_ptr_null(res->name);
        ck_assert_ptr_null(res->version);
        ck_assert_str_eq(res->type_url, TN_TYPE_ENDPOINT);
        pb_cla *c = (pb_cla *)protobuf_c_message_unpack(tn_type_find(res->type_url), NULL, res->len, res->value);
        ck_assert_ptr_nonnull(c);
        snprintf(r->names[i], sizeof(r->names[i]), "%s", c->cluster_name);
        protobuf_c_message_free_unpacked(&c->base, NULL);
    }
    if (r->reject)
        return tn_err_fail(e, "resources[0]: cluster '%s' is not wanted", r->names[0]);
    return 0;
}

/* ---- loop and files ------------------------------------------------------------ */

static void on_tick(uv_timer_t *t)
{
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(p);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/tn_filesub.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    tn_err_init(&err);
}

static void teardown(void)
{
    if (saved_stderr >= 0) {
        dup2(saved_stderr, 2);
        close(saved_stderr);
        saved_stderr = -1;
    }
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Closes what is left and checks that nothing leaked a handle. */
static void loop_finish(void)
{
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

#define RUN_UNTIL(cond, ms)                                                                                            \
    do {                                                                                                               \
        uint64_t deadline_ = uv_now(&loop) + (ms);                                                                     \
        while (!(cond) && uv_now(&loop) < deadline_)                                                                   \
            uv_run(&loop, UV_RUN_ONCE);                                                                                \
        ck_assert_msg((cond), "timed out waiting for %s", #cond);                                                      \
    } while (0)

/* Runs the loop for `ms`: long enough for the 50 ms settle timer to fire. */
static void run_for(uint64_t ms)
{
    uint64_t deadline = uv_now(&loop) + ms;
    while (uv_now(&loop) < deadline)
        uv_run(&loop, UV_RUN_ONCE);
}

static const char *at(const char *name)
{
    static char p[4][128];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
    return p[i];
}

static void put_bytes(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(data, 1, len, fp), len);
    ck_assert_int_eq(fclose(fp), 0);
}

static void put(const char *name, const char *text)
{
    put_bytes(at(name), text, strlen(text));
}

/* How writers replace config: a temp file renamed onto the path. */
static void put_mv(const char *name, const char *text)
{
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
    put_bytes(tmp, text, strlen(text));
    ck_assert_int_eq(rename(tmp, at(name)), 0);
}

/* Two ClusterLoadAssignments, with or without the response's type_url. */
static const char *cla(const char *version, const char *a, const char *b, int with_type)
{
    static char y[2][512];
    static int i;
    i = (i + 1) % 2;
    snprintf(y[i], sizeof(y[i]),
             "version_info: \"%s\"\n"
             "%s"
             "resources:\n"
             "- \"@type\": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\n"
             "  cluster_name: %s\n"
             "- \"@type\": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\n"
             "  cluster_name: %s\n",
             version, with_type ? "type_url: " TN_TYPE_ENDPOINT "\n" : "", a, b);
    return y[i];
}

/* Sends this process's log lines to a file read back by captured(). */
static void capture_start(void)
{
    int fd = open(at("log"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
}

static const char *captured(void)
{
    static char buf[8192];
    FILE *fp = fopen(at("log"), "rb");
    ck_assert_ptr_nonnull(fp);
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return buf;
}

static struct tn_filesub *sub(const char *name, const char *watched, struct rec *r)
{
    struct tn_filesub *f = tn_filesub_new(&loop, at(name), watched, on_update, r, &err);
    ck_assert_msg(f != NULL, "%s", err.msg);
    return f;
}

/* ---- cases ----------------------------------------------------------------- */

START_TEST(initial_read_delivers)
{
    struct rec r = {0};
    setup();
    put("eds.yaml", cla("1", "a", "b", 0));
    struct tn_filesub *f = sub("eds.yaml", NULL, &r);
    /* Delivered before tn_filesub_new returned, the type taken from the first resource. */
    ck_assert_int_eq(r.calls, 1);
    ck_assert_str_eq(r.version, "1");
    ck_assert_str_eq(r.type_url, TN_TYPE_ENDPOINT);
    ck_assert_uint_eq(r.n, 2);
    ck_assert_str_eq(r.names[0], "a");
    ck_assert_str_eq(r.names[1], "b");
    const struct tn_filesub_stats *s = tn_filesub_stats(f);
    ck_assert_uint_eq(s->update_attempt, 1);
    ck_assert_uint_eq(s->update_success, 1);
    ck_assert_uint_eq(s->update_failure + s->update_rejected, 0);
    ck_assert_str_eq(s->version, "1");
    tn_filesub_close(f);
    loop_finish();
    teardown();
}
END_TEST

START_TEST(mv_replace_and_in_place_write)
{
    struct rec r = {0};
    setup();
    put("eds.yaml", cla("1", "a", "b", 1));
    struct tn_filesub *f = sub("eds.yaml", NULL, &r);
    ck_assert_int_eq(r.calls, 1);

    put_mv("eds.yaml", cla("2", "c", "d", 1));
    RUN_UNTIL(r.calls == 2, 2000);
    ck_assert_str_eq(r.version, "2");
    ck_assert_str_eq(r.names[0], "c");
    ck_assert_str_eq(tn_filesub_stats(f)->version, "2");

    put("eds.yaml", cla("3", "e", "f", 1)); /* truncate and write: one read after the burst */
    RUN_UNTIL(r.calls == 3, 2000);
    ck_assert_str_eq(r.version, "3");
    run_for(150);
    ck_assert_int_eq(r.calls, 3);
    ck_assert_uint_eq(tn_filesub_stats(f)->update_attempt, 3);
    ck_assert_uint_eq(tn_filesub_stats(f)->update_failure, 0);
    tn_filesub_close(f);
    loop_finish();
    teardown();
}
END_TEST

START_TEST(bad_file_keeps_the_last_good)
{
    struct rec r = {0};
    setup();
    capture_start();
    put("eds.yaml", cla("1", "a", "b", 0));
    struct tn_filesub *f = sub("eds.yaml", NULL, &r);
    const struct tn_filesub_stats *s = tn_filesub_stats(f);

    /* A misspelt field in the second resource, on line 6. */
    char bad[512];
    snprintf(bad, sizeof(bad), "%s", cla("2", "c", "d", 0));
    char *field = strstr(strstr(bad, "cluster_name: d"), "name");
    memmove(field, field + 1, strlen(field)); /* cluster_ame */
    put_mv("eds.yaml", bad);
    RUN_UNTIL(s->update_failure == 1, 2000);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_str_eq(s->version, "1");
    char want[256];
    snprintf(want, sizeof(want), "%s: line 6: resources[1].cluster_ame: unknown field", at("eds.yaml"));
    ck_assert_msg(strstr(captured(), want) != NULL, "no '%s' in the log:\n%s", want, captured());

    put_mv("eds.yaml", "version_info: \"3\"\nresources: [\n"); /* not YAML at all */
    RUN_UNTIL(s->update_failure == 2, 2000);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_str_eq(s->version, "1");

    put_mv("eds.yaml", cla("4", "g", "h", 0)); /* and a good one is taken again */
    RUN_UNTIL(r.calls == 2, 2000);
    ck_assert_str_eq(r.version, "4");
    ck_assert_uint_eq(s->update_attempt, 4);
    ck_assert_uint_eq(s->update_success, 2);
    ck_assert_uint_eq(s->update_rejected, 0);
    tn_filesub_close(f);
    loop_finish();
    teardown();
}
END_TEST

START_TEST(rejected_keeps_the_last_good)
{
    struct rec r = {0};
    setup();
    capture_start();
    put("eds.yaml", cla("1", "a", "b", 0));
    struct tn_filesub *f = sub("eds.yaml", NULL, &r);
    const struct tn_filesub_stats *s = tn_filesub_stats(f);

    r.reject = 1;
    put_mv("eds.yaml", cla("2", "x", "y", 0));
    RUN_UNTIL(s->update_rejected == 1, 2000);
    ck_assert_int_eq(r.calls, 2);
    ck_assert_str_eq(s->version, "1");
    ck_assert_uint_eq(s->update_success, 1);
    ck_assert_uint_eq(s->update_failure, 0);
    char want[256];
    snprintf(want, sizeof(want), "%s: version '2' rejected: resources[0]: cluster 'x' is not wanted", at("eds.yaml"));
    ck_assert_msg(strstr(captured(), want) != NULL, "no '%s' in the log:\n%s", want, captured());

    /* A rejected file is not "the last accepted": the same bytes are tried again. */
    r.reject = 0;
    put_mv("eds.yaml", cla("2", "x", "y", 0));
    RUN_UNTIL(r.calls == 3, 2000);
    ck_assert_str_eq(s->version, "2");
    ck_assert_uint_eq(s->update_success, 2);
    tn_filesub_close(f);
    loop_finish();
    teardown();
}
END_TEST

START_TEST(same_bytes_no_callback)
{
    struct rec r = {0};
    setup();
    put("eds.yaml", cla("1", "a", "b", 0));
    struct tn_filesub *f = sub("eds.yaml", NULL, &r);
    const struct tn_filesub_stats *s = tn_filesub_stats(f);

    put_mv("eds.yaml", cla("1", "a", "b", 0));
    put("eds.yaml", cla("1", "a", "b", 0));
    run_for(250);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_uint_eq(s->update_attempt, 1);

    put_mv("eds.yaml", cla("2", "a", "b", 0)); /* the watch is still alive */
    RUN_UNTIL(r.calls == 2, 2000);
    ck_assert_str_eq(r.version, "2");
    tn_filesub_close(f);
    loop_finish();
    teardown();
}
END_TEST

START_TEST(removed_then_recreated)
{
    struct rec r = {0};
    setup();
    put("eds.yaml", cla("1", "a", "b", 0));
    struct tn_filesub *f = sub("eds.yaml", NULL, &r);
    const struct tn_filesub_stats *s = tn_filesub_stats(f);

    ck_assert_int_eq(unlink(at("eds.yaml")), 0);
    run_for(250);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_str_eq(s->version, "1");
    ck_assert_uint_eq(s->update_failure, 0); /* a removal is not a bad update */

    put("eds.yaml", cla("2", "c", "d", 0));
    RUN_UNTIL(r.calls == 2, 2000);
    ck_assert_str_eq(r.version, "2");
    ck_assert_str_eq(r.names[1], "d");
    tn_filesub_close(f);
    loop_finish();
    teardown();
}
END_TEST

START_TEST(missing_at_start_then_created)
{
    struct rec r = {0};
    setup();
    struct tn_filesub *f = sub("eds.yaml", NULL, &r);
    const struct tn_filesub_stats *s = tn_filesub_stats(f);
    ck_assert_int_eq(r.calls, 0);
    ck_assert_uint_eq(s->update_attempt, 1);
    ck_assert_uint_eq(s->update_failure, 1);
    ck_assert_ptr_null(s->version);

    put_mv("eds.yaml", cla("1", "a", "b", 0));
    RUN_UNTIL(r.calls == 1, 2000);
    ck_assert_str_eq(s->version, "1");
    tn_filesub_close(f);
    loop_finish();
    teardown();
}
END_TEST

/* Kubernetes' ConfigMap layout: eds.yaml -> ..data/eds.yaml, ..data ->
 * ..v1; an update renames a new ..data symlink into place, so no event ever
 * names eds.yaml. */
static void configmap(const char *version, const char *a)
{
    char d[160], tmp[160];
    snprintf(d, sizeof(d), "%s/..v%s", dir, version);
    ck_assert_int_eq(mkdir(d, 0700), 0);
    snprintf(d, sizeof(d), "..v%s/eds.yaml", version);
    put(d, cla(version, a, "b", 0));
    snprintf(d, sizeof(d), "..v%s", version);
    snprintf(tmp, sizeof(tmp), "%s/..data_tmp", dir);
    ck_assert_int_eq(symlink(d, tmp), 0);
    ck_assert_int_eq(rename(tmp, at("..data")), 0);
}

START_TEST(watched_directory)
{
    struct rec r = {0}, plain = {0};
    setup();
    configmap("1", "a");
    ck_assert_int_eq(symlink("..data/eds.yaml", at("eds.yaml")), 0);
    struct tn_filesub *f = sub("eds.yaml", dir, &r);
    struct tn_filesub *g = sub("eds.yaml", NULL, &plain);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(plain.calls, 1);

    configmap("2", "c");
    RUN_UNTIL(r.calls == 2, 2000);
    ck_assert_str_eq(r.version, "2");
    ck_assert_str_eq(r.names[0], "c");
    /* Without watched_directory the swap goes unseen, as in Envoy. */
    run_for(150);
    ck_assert_int_eq(plain.calls, 1);
    ck_assert_str_eq(tn_filesub_stats(g)->version, "1");
    tn_filesub_close(f);
    tn_filesub_close(g);
    loop_finish();
    teardown();
}
END_TEST

/* Another file in the watched directory written every 10 ms. */
static void on_noise(uv_timer_t *t)
{
    put("noise", "x");
}

START_TEST(steady_events_do_not_starve_the_read)
{
    struct rec r = {0};
    uv_timer_t noise;
    setup();
    put("eds.yaml", cla("1", "a", "b", 0));
    struct tn_filesub *f = sub("eds.yaml", dir, &r);
    uv_timer_init(&loop, &noise);
    uv_timer_start(&noise, on_noise, 0, 10);
    run_for(30);
    put_mv("eds.yaml", cla("2", "c", "d", 0));
    uint64_t t0 = uv_now(&loop);
    RUN_UNTIL(r.calls == 2, 2000); /* the settle timer is capped at 500 ms, events or not */
    ck_assert_uint_lt(uv_now(&loop) - t0, 1000);
    ck_assert_str_eq(r.version, "2");
    uv_close((uv_handle_t *)&noise, NULL);
    tn_filesub_close(f);
    loop_finish();
    teardown();
}
END_TEST

START_TEST(unwatchable_directory_polls)
{
    struct rec r = {0};
    setup();
    /* The directory does not exist yet: no inotify watch, so the path is polled. */
    struct tn_filesub *f = sub("later/eds.yaml", NULL, &r);
    ck_assert_int_eq(r.calls, 0);
    ck_assert_uint_eq(tn_filesub_stats(f)->update_failure, 1);
    ck_assert_int_eq(mkdir(at("later"), 0700), 0);
    put("later/eds.yaml", cla("1", "a", "b", 0));
    RUN_UNTIL(r.calls == 1, 3000);
    ck_assert_str_eq(r.version, "1");
    put("later/eds.yaml", cla("2", "c", "d", 0)); /* same inode, new size and mtime */
    RUN_UNTIL(r.calls == 2, 3000);
    ck_assert_str_eq(r.version, "2");
    tn_filesub_close(f);
    loop_finish();
    teardown();
}
END_TEST

START_TEST(json_and_binary)
{
    struct rec r = {0}, b = {0};
    setup();
    put("eds.json", "{\"version_info\": \"j1\", \"typeUrl\": \"" TN_TYPE_ENDPOINT "\", \"resources\": ["
                    "{\"@type\": \"" TN_TYPE_ENDPOINT "\", \"clusterName\": \"a\"}]}");
    struct tn_filesub *f = sub("eds.json", NULL, &r);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_str_eq(r.version, "j1");
    ck_assert_str_eq(r.names[0], "a");

    pb_cla c = ENVOY__CONFIG__ENDPOINT__V3__CLUSTER_LOAD_ASSIGNMENT__INIT;
    c.cluster_name = "p";
    uint8_t cbytes[64];
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = TN_TYPE_ENDPOINT;
    any.value.data = cbytes;
    any.value.len = protobuf_c_message_pack(&c.base, cbytes);
    Google__Protobuf__Any *anys[] = {&any};
    Envoy__Service__Discovery__V3__DiscoveryResponse resp = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_RESPONSE__INIT;
    resp.version_info = "b1";
    resp.resources = anys;
    resp.n_resources = 1;
    uint8_t rbytes[256];
    size_t rlen = protobuf_c_message_pack(&resp.base, rbytes);
    put_bytes(at("eds.pb"), rbytes, rlen);
    struct tn_filesub *g = sub("eds.pb", NULL, &b);
    ck_assert_int_eq(b.calls, 1);
    ck_assert_str_eq(b.version, "b1");
    ck_assert_str_eq(b.type_url, TN_TYPE_ENDPOINT);
    ck_assert_str_eq(b.names[0], "p");

    put_mv("eds.pb", "\xff\xff\xff not a proto");
    RUN_UNTIL(tn_filesub_stats(g)->update_failure == 1, 2000);
    ck_assert_int_eq(b.calls, 1);
    tn_filesub_close(f);
    tn_filesub_close(g);
    loop_finish();
    teardown();
}
END_TEST

START_TEST(close_with_a_read_pending)
{
    struct rec r = {0};
    setup();
    put("eds.yaml", cla("1", "a", "b", 0));
    struct tn_filesub *f = sub("eds.yaml", NULL, &r);
    put_mv("eds.yaml", cla("2", "a", "b", 0));
    run_for(20); /* the event is in, its 50 ms settle timer is not done */
    tn_filesub_close(f);
    loop_finish(); /* no callback after close, nothing leaked */
    ck_assert_int_eq(r.calls, 1);
    teardown();
}
END_TEST

Suite *filesub_suite(void)
{
    Suite *s = suite_create("filesub");
    TCase *tc = tcase_create("filesub");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, initial_read_delivers);
    tcase_add_test(tc, mv_replace_and_in_place_write);
    tcase_add_test(tc, bad_file_keeps_the_last_good);
    tcase_add_test(tc, rejected_keeps_the_last_good);
    tcase_add_test(tc, same_bytes_no_callback);
    tcase_add_test(tc, removed_then_recreated);
    tcase_add_test(tc, missing_at_start_then_created);
    tcase_add_test(tc, watched_directory);
    tcase_add_test(tc, steady_events_do_not_starve_the_read);
    tcase_add_test(tc, unwatchable_directory_polls);
    tcase_add_test(tc, json_and_binary);
    tcase_add_test(tc, close_with_a_read_pending);
    suite_add_tcase(s, tc);
    return s;
}
