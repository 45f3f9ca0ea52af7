#!/bin/sh
# The observability example (examples/observability/run.sh) as a test: tern,
# a real Prometheus scraping its /stats/prometheus, and every PromQL
# expression of the example's Grafana dashboard evaluated through
# Prometheus's API. Ports come from free_port, so that it runs beside the
# other integration tests (the example's own defaults are 8081, 10000, 9901
# and 9090).
#
#   example_observability.sh TERN_BINARY SOURCE_DIR
#
# Exit 77 (skipped, ctest's SKIP_RETURN_CODE) only when Prometheus is not
# installed; tools/install-deps installs it (Debian package prometheus).

. "$(dirname "$0")/lib.sh"
tn_setup "$@"

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    echo "SKIP: prometheus/promtool not installed (Debian package prometheus; tools/install-deps installs it)"
    exit 77
fi

set -- $(free_port 4)
TERN_OBS_ORIGIN_PORT=$1 TERN_OBS_LISTENER_PORT=$2 TERN_OBS_ADMIN_PORT=$3 TERN_OBS_PROMETHEUS_PORT=$4 \
    TMPDIR=$TN_TMP TN_PYTHON=$TN_PYTHON TERN=$TERN \
    sh "$TN_SRC/examples/observability/run.sh" >"$TN_TMP/run.out" 2>&1
rc=$?
sed 's/^/# /' "$TN_TMP/run.out"
check "examples/observability/run.sh exits 0" 0 "$rc"
check_contains "run.sh evaluated the dashboard against Prometheus" "grafana-dashboard.json works against tern" "$(grep '^ok - ' "$TN_TMP/run.out")"
tn_summary
