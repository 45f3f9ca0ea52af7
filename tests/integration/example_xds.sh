#!/bin/sh
# The control-plane example (examples/xds/run.sh) as a test: tern managed by
# tests/xds/xds_server.py over ADS, every step of the example's walk checked
# (routes and endpoints from the control plane, a route change and two
# endpoint changes applied live and ACKed, an invalid snapshot NACKed with
# the field's path while the last good configuration serves, a client that
# saw no failure, the stats, exit 0 on SIGTERM), once with the state-of-the-
# world protocol (the example's envoy.yaml) and once incremental
# (TERN_XDS_API_TYPE=DELTA_GRPC). Ports come from free_port, so that it runs
# beside the other integration tests (the example's own defaults are 8081,
# 8082, 18000, 10000 and 9901).
#
#   example_xds.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
tn_setup "$@"

# The control plane's protobuf modules, generated once per build directory
# (as xds.sh and xds_server_selftest do).
GEN=$TN_TMP/gen
[ -d "$(dirname "$TERN")" ] && GEN=$(cd "$(dirname "$TERN")" && pwd)/xds-gen

for api in GRPC DELTA_GRPC; do
    set -- $(free_port 5)
    TERN_XDS_ORIGIN1_PORT=$1 TERN_XDS_ORIGIN2_PORT=$2 TERN_XDS_CONTROL_PLANE_PORT=$3 \
        TERN_XDS_LISTENER_PORT=$4 TERN_XDS_ADMIN_PORT=$5 TERN_XDS_API_TYPE=$api TERN_XDS_GEN_DIR=$GEN \
        TMPDIR=$TN_TMP TN_PYTHON=$TN_PYTHON TERN=$TERN \
        sh "$TN_SRC/examples/xds/run.sh" >"$TN_TMP/run-$api.out" 2>&1
    rc=$?
    sed 's/^/# /' "$TN_TMP/run-$api.out"
    check "$api: examples/xds/run.sh exits 0" 0 "$rc"
    check "$api: run.sh reports no failed check" "" "$(grep '^not ok - ' "$TN_TMP/run-$api.out")"
    check_contains "$api: run.sh got as far as stopping tern" "ok - tern exits 0 on SIGTERM" "$(cat "$TN_TMP/run-$api.out")"
done
tn_summary
