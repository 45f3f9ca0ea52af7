#include "dataplane/core/matcher.h"

#include <pcre2.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "envoy/type/matcher/v3/regex.pb-c.h"

/* One match data per thread, not per call: route matching runs regexes on
 * every request. The key only exists to free it when a thread exits. */
static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static _Thread_local pcre2_match_data *md_local;

static void free_match_data(void *md)
{
    pcre2_match_data_free(md);
}

static void make_md_key(void)
{
    pthread_key_create(&md_key, free_match_data);
}

pcre2_match_data *tn__regex_match_data(void)
{
    if (md_local == NULL) {
        pthread_once(&md_once, make_md_key);
        md_local = pcre2_match_data_create(TN_REGEX_MAX_PAIRS, NULL);
        if (md_local != NULL)
            pthread_setspecific(md_key, md_local);
    }
    return md_local;
}

bool tn_regex_match(const pcre2_code *re, const char *s, size_t len)
{
    pcre2_match_data *md = tn__regex_match_data();
    /* 0 means the match data was too small for every group: still a match. */
    return md != NULL && pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL) >= 0;
}

static void free_code(void *code)
{
    pcre2_code_free(code);
}

pcre2_code *tn_regex_compile(struct tn_pool *pool, const char *pattern, bool anchored, struct tn_err *err)
{
    int code;
    PCRE2_SIZE offset;
    uint32_t opts = PCRE2_UTF | (anchored ? PCRE2_ANCHORED | PCRE2_ENDANCHORED : 0);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &code, &offset, NULL);

    if (re == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof(msg));
        tn_err_fail(err, "invalid regex '%s': %s at offset %zu", pattern, (char *)msg, (size_t)offset);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* best effort: the interpreter is the fallback */
    if (tn_pool_on_dispose(pool, free_code, re)) {
        pcre2_code_free(re);
        tn_err_fail(err, "out of memory");
        return NULL;
    }
    return re;
}

int tn_string_matcher_compile(struct tn_pool *pool, const Envoy__Type__Matcher__V3__StringMatcher *pb,
                              struct tn_string_matcher *m, struct tn_err *err)
{
    const char *v = NULL;
    m->ignore_case = pb->ignore_case;
    switch (pb->match_pattern_case) {
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_EXACT:
        m->kind = TN_MATCH_EXACT, v = pb->exact;
        break;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_PREFIX:
        m->kind = TN_MATCH_PREFIX, v = pb->prefix;
        break;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_SUFFIX:
        m->kind = TN_MATCH_SUFFIX, v = pb->suffix;
        break;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_CONTAINS:
        m->kind = TN_MATCH_CONTAINS, v = pb->contains;
        break;
    case ENVOY__TYPE__MATCHER__V3__STRING_MATCHER__MATCH_PATTERN_SAFE_REGEX: {
        size_t mark = tn_err_push(err, ".safe_regex.regex");
        m->kind = TN_MATCH_REGEX;
        m->re = tn_regex_compile(pool, pb->safe_regex ? pb->safe_regex->regex : "", true, err);
        if (m->re == NULL)
            return -1;
        tn_err_pop(err, mark);
        return 0;
    }
    default:
        return tn_err_fail(err, "one of exact, prefix, suffix, contains, safe_regex is required");
    }
    if ((m->kind == TN_MATCH_PREFIX || m->kind == TN_MATCH_SUFFIX || m->kind == TN_MATCH_CONTAINS) && *v == '\0')
        return tn_err_fail(err, "the match string must not be empty");
    m->value = tn_pool_strdup(pool, v);
    m->len = strlen(v);
    return m->value ? 0 : tn_err_fail(err, "out of memory");
}

static bool eq(const char *a, const char *b, size_t n, bool icase)
{
    return icase ? strncasecmp(a, b, n) == 0 : memcmp(a, b, n) == 0;
}

bool tn_string_matcher_match(const struct tn_string_matcher *m, const char *s, size_t len)
{
    switch (m->kind) {
    case TN_MATCH_EXACT:
        return len == m->len && eq(s, m->value, len, m->ignore_case);
    case TN_MATCH_PREFIX:
        return len >= m->len && eq(s, m->value, m->len, m->ignore_case);
    case TN_MATCH_SUFFIX:
        return len >= m->len && eq(s + len - m->len, m->value, m->len, m->ignore_case);
    case TN_MATCH_CONTAINS:
        for (size_t i = 0; i + m->len <= len; i++)
            if (eq(s + i, m->value, m->len, m->ignore_case))
                return true;
        return false;
    case TN_MATCH_REGEX:
        return tn_regex_match(m->re, s, len);
    case TN_MATCH_PRESENT:
        return true;
    case TN_MATCH_RANGE:
        return false;
    }
    return false;
}
