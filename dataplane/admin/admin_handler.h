/* The admin's interface for endpoints served outside it: a filter lists
 * struct tn_admin_endpoint in its factory (filters/filter.h) and the admin
 * finds them there by path. This is all of the admin such an endpoint sees
 * (a request, a response to fill), so a filter never includes the admin's
 * internals and the admin never names a filter. Main thread. */
#ifndef TN_ADMIN_HANDLER_H
#define TN_ADMIN_HANDLER_H

#include <stdbool.h>
#include <stddef.h>

#include "dataplane/core/buf.h"

#define TN_ADMIN_TEXT "text/plain; charset=UTF-8"
#define TN_ADMIN_JSON "application/json"

/* One decoded query parameter; value "" when it has no '='. */
struct tn_admin_param {
    const char *key, *value;
};

/* A request as an endpoint sees it; everything is the admin's and lives
 * until the handler returns. */
struct tn_admin_request {
    const char *path; /* the URL path, without the query */
    bool post, del;   /* POST, DELETE (any other method reads as GET) */
    const struct tn_admin_param *params;
    size_t n_params;
};

/* What the endpoint answers besides its status. */
struct tn_admin_response {
    struct tn_buf *body; /* empty; the handler appends */
    const char *ctype;   /* TN_ADMIN_TEXT unless the handler sets another */
};

/* Answers req: fills resp and returns the HTTP status. */
typedef int (*tn_admin_handler_cb)(const struct tn_admin_request *req, struct tn_admin_response *resp);

struct tn_admin_endpoint {
    const char *path; /* "/cache" */
    bool prefix;      /* also serves path + "/<anything>" (req->path says which) */
    bool mutating;    /* POST only: other methods get 405 without calling handler */
    tn_admin_handler_cb handler;
    const char *help; /* its line in /help; NULL: not listed */
};

/* The value of query parameter key, NULL when absent. */
const char *tn_admin_param(const struct tn_admin_request *req, const char *key);

#endif
