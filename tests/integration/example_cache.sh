#!/bin/sh
# The caching-proxy example (examples/cache/run.sh) as a test: tern with the
# cache filter in front of a counting origin, every step of the example's
# walk checked (miss/hit, 304, no-store, per-route disable and TTL, purges,
# Kong's API, stale while the origin is down, totals and stats, Envoy's plain
# CacheConfig). Ports come from free_port, so that it runs beside the other
# integration tests (the example's own defaults are 8080, 10000 and 9901).
#
#   example_cache.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
tn_setup "$@"

set -- $(free_port 3)
TERN_CACHE_ORIGIN_PORT=$1 TERN_CACHE_LISTENER_PORT=$2 TERN_CACHE_ADMIN_PORT=$3 \
    TMPDIR=$TN_TMP TN_PYTHON=$TN_PYTHON TERN=$TERN \
    sh "$TN_SRC/examples/cache/run.sh" >"$TN_TMP/run.out" 2>&1
rc=$?
sed 's/^/# /' "$TN_TMP/run.out"
check "examples/cache/run.sh exits 0" 0 "$rc"
check "run.sh reports no failed check" "" "$(grep '^not ok - ' "$TN_TMP/run.out")"
check_contains "run.sh got as far as Envoy's plain CacheConfig" "envoy-plain.yaml: Envoy's CacheConfig" "$(cat "$TN_TMP/run.out")"
tn_summary
