#!/bin/sh
# Request bodies that must wait for an upstream connection: with
# max_connections 1, an upload queued behind a slow request fills the
# buffer limit (per_connection_buffer_limit_bytes), tern stops reading the
# client, and reading must resume once the connection is handed over.
# (Reading once stayed paused for good when the held body was exactly the
# limit; read boundaries decide that, so this cannot force the edge, only
# cover the path around it.)
#
#   backpressure.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

set -- $(free_port 2)
o1=$1 f=$2
start_origin web "$o1" || { tn_fail "origin web starts" "see above"; tn_summary; }
L=$(it_listener front "$f" "$(it_rc "$(it_vhost all '"*"' "$(it_route_cluster / one)")")")
C=$(it_cluster one "127.0.0.1:$o1" 'per_connection_buffer_limit_bytes: 262144, circuit_breakers: {thresholds: [{max_connections: 1, max_pending_requests: 8}]},')
it_config "$TN_TMP/bp.yaml" "$L" "$C"
it_start "$TN_TMP/bp.yaml" "$f" --concurrency 1
base=http://127.0.0.1:$f

for size in 262144 524288 3000000; do
    head -c "$size" /dev/urandom >"$TN_TMP/body"
    want=$(sha256sum <"$TN_TMP/body" | cut -c1-64)
    # the slow request holds the only connection while the upload queues
    tn_curl -o /dev/null "$base/slow?delay_ms=1500" &
    slow=$!
    sleep 0.3
    out=$(TN_CURL_TIMEOUT=30 tn_curl -H 'Expect:' --data-binary @"$TN_TMP/body" "$base/upload")
    wait "$slow"
    check "upload of $size bytes queued behind a slow request: length" "$size" "$(echo "$out" | json_get body_len)"
    check "upload of $size bytes queued behind a slow request: sha256" "$want" "$(echo "$out" | json_get body_sha256)"
done
stop_tern TERM
check "tern drains and exits 0" 0 "$TN_RC"
it_sanitizers
tn_summary
