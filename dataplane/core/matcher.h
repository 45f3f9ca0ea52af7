/* Compiled string and header matchers (envoy.type.matcher.v3.StringMatcher,
 * route HeaderMatcher), shared by routes, the cache and access-log filters. */
#ifndef TN_MATCHER_H
#define TN_MATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/core/err.h"
#include "dataplane/core/pool.h"
#include "envoy/type/matcher/v3/string.pb-c.h"

enum tn_match_kind {
    TN_MATCH_EXACT = 0,
    TN_MATCH_PREFIX,
    TN_MATCH_SUFFIX,
    TN_MATCH_CONTAINS,
    TN_MATCH_REGEX,
    TN_MATCH_PRESENT,
    TN_MATCH_RANGE,
};

struct tn_string_matcher {
    enum tn_match_kind kind;
    bool ignore_case;
    const char *value; /* EXACT..CONTAINS */
    size_t len;
    struct pcre2_real_code_8 *re; /* REGEX: anchored, must match the whole string */
};

/* Compiles a regex that must match a whole input (RE2 full-match semantics as
 * Envoy's safe_regex); the code is freed with the pool. NULL with err set if
 * the pattern does not compile. */
struct pcre2_real_code_8 *tn_regex_compile(struct tn_pool *pool, const char *pattern, bool anchored,
                                           struct tn_err *err);

/* Fills m from a StringMatcher; 0 or -1 with err set. */
int tn_string_matcher_compile(struct tn_pool *pool, const Envoy__Type__Matcher__V3__StringMatcher *pb,
                              struct tn_string_matcher *m, struct tn_err *err);

/* Whether s (len bytes) matches. */
bool tn_string_matcher_match(const struct tn_string_matcher *m, const char *s, size_t len);

/* Capture pairs in the per-thread match data: group 0 and \1..\9, all that
 * an RE2-style substitution can reference. A pattern with more groups still
 * matches; its later groups are just not reported. */
#define TN_REGEX_MAX_PAIRS 10

/* Whether re matches s (len bytes), anchoring as compiled. Allocates nothing
 * after the calling thread's first regex match. */
bool tn_regex_match(const struct pcre2_real_code_8 *re, const char *s, size_t len);

/* The calling thread's match data (TN_REGEX_MAX_PAIRS pairs), created on first
 * use and freed at thread exit; NULL only if that first allocation failed.
 * Valid until the thread's next regex call: copy what you need first. */
struct pcre2_real_match_data_8 *tn__regex_match_data(void);

#endif
