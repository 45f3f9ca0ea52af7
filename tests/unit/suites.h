/* Every Check suite of the unit runner (libuv's test-list.h shape). */
#ifndef TN_TEST_SUITES_H
#define TN_TEST_SUITES_H

#include <check.h>

#define TN_SUITES(X)                                                                                                   \
    X(pbconv_suite)                                                                                                    \
    X(compiler_suite)                                                                                                  \
    X(cache_config_suite)                                                                                              \
    X(lb_suite)                                                                                                        \
    X(route_match_suite)                                                                                               \
    X(cm_suite)                                                                                                        \
    X(accesslog_suite)                                                                                                 \
    X(h1_suite)                                                                                                        \
    X(pool_suite)                                                                                                      \
    X(stats_suite)                                                                                                     \
    X(cache_policy_suite)                                                                                              \
    X(mirror_suite)                                                                                                    \
    X(admin_suite)                                                                                                     \
    X(cache_store_suite)                                                                                               \
    X(filesub_suite)

#define TN_X(s) Suite *s(void);
TN_SUITES(TN_X)
#undef TN_X

#endif
