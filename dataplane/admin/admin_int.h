/* Shared by the admin server (admin.c) and its own pages (admin_*.c).
 * Endpoints served by filters see only admin_handler.h. */
#ifndef TN_ADMIN_INT_H
#define TN_ADMIN_INT_H

#include <stdbool.h>

#include "dataplane/admin/admin.h"
#include "dataplane/admin/admin_handler.h"
#include "dataplane/core/buf.h"

#define TN__ADMIN_MAX_PARAMS 32

/* What every page may read. */
struct tn__admin_ctx {
    uv_loop_t *loop;
    struct tn_config *cfg;
    struct tn_stats *stats;
    struct tn_cm *cm; /* may be NULL: clusters then show no hosts */
    const struct tn_admin_ops *ops;
    void *arg;
    struct tn_admin_info info;
};

/* One request: its decoded query and the response being built. */
struct tn__admin_req {
    struct tn__admin_ctx *ctx;
    bool post, del; /* POST, DELETE */
    struct tn_admin_param q[TN__ADMIN_MAX_PARAMS]; /* decoded */
    size_t n_q;
    struct tn_buf *body;
    const char *ctype; /* TN_ADMIN_TEXT unless a page says otherwise */
    bool quit;         /* call ops->quit once the response is written */
};

/* Answers r for url ("/stats?format=json"): fills r->body (and r->ctype,
 * r->quit) and returns the HTTP status. */
int tn__admin_dispatch(struct tn__admin_req *r, const char *url);

/* The value of query parameter key, NULL when absent. */
const char *tn__admin_param(const struct tn__admin_req *r, const char *key);

/* Pages living in their own files. */
int tn__admin_stats(struct tn__admin_req *r);
int tn__admin_prometheus(struct tn__admin_req *r);
int tn__admin_config_dump(struct tn__admin_req *r);

/* Appends the wall clock at ms as RFC 3339 ("2024-05-01T10:00:00.123Z"). */
void tn__admin_rfc3339(struct tn_buf *out, uint64_t ms);

#endif
