/* Matching a request against a compiled route table, and what a matched route
 * does to the request target (Envoy's RouteMatch, weighted_clusters,
 * prefix_rewrite/regex_rewrite and RedirectAction semantics).
 *
 * Everything here reads the table and the request view only, allocates
 * nothing in the common case and is safe to call from any thread at once
 * (regexes use per-thread match data). Header mutations are the connection
 * manager's business, not this module's. */
#ifndef TN_ROUTE_MATCH_H
#define TN_ROUTE_MATCH_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/http/http.h"
#include "filters/route.h"

/* What the builders below return when the result (plus its NUL) does not fit
 * in cap bytes; out then holds nothing usable. */
#define TN_ROUTE_NOSPACE ((size_t)-1)

/* Whether rq's headers satisfy h (several values of one header joined with
 * ",", as Envoy's matchers see them). */
bool tn_header_matcher_match(const struct tn_header_matcher *h, const struct tn_request_view *rq);

/* The first route of vh whose match accepts rq, or NULL (also for a NULL vh).
 * Paths compare without the query string; header matchers see several values
 * of one header joined with ","; runtime_fraction uses rq->random. The route
 * points into the table: it lives as long as the caller's table reference. */
const struct tn_route *tn_route_match(const struct tn_vhost *vh, const struct tn_request_view *rq);

/* The weighted cluster for a random value: random % total_weight walked over
 * the cumulative weights, as Envoy picks. NULL when r has no weighted
 * clusters. The name lives as long as the table. */
const char *tn_route_weighted_pick(const struct tn_route *r, uint64_t random);

/* Writes the request target r forwards upstream for rq (which r must have
 * matched) into out, NUL-terminated, query string kept: prefix_rewrite
 * replaces the matched prefix (the whole path for path and regex routes),
 * regex_rewrite replaces every match in the path without its query (RE2's
 * GlobalReplace: \0..\9 name groups, \\ a backslash). Returns the length
 * written; 0 when r rewrites nothing (or is not a forwarding route, or the
 * rewrite leaves an empty target), or TN_ROUTE_NOSPACE when cap is too
 * small. */
size_t tn_route_rewrite_path(const struct tn_route *r, const struct tn_request_view *rq, char *out, size_t cap);

/* Writes the Location of redirect route r for rq into out, NUL-terminated:
 * scheme (redirect's, else the request's), host (host_redirect, else the
 * request's with its port dropped when a port_redirect is set or when the
 * scheme changes and the port was the old scheme's default), port_redirect,
 * then the path: path_redirect, or the matched prefix replaced by the
 * redirect's prefix_rewrite, or regex_rewrite applied, else the request's.
 * The request's query is kept unless strip_query, or path_redirect carries
 * its own query. Returns the length written; 0 when r is not a redirect, or
 * TN_ROUTE_NOSPACE when cap is too small. */
size_t tn_route_redirect_location(const struct tn_route *r, const struct tn_request_view *rq, char *out, size_t cap);

#endif
