#!/bin/sh
# Active health checks over HTTP/2 through the real tern: an
# http_health_check with codec_client_type HTTP2 against h2_origin.py (its
# log shows the check's :path, :authority and user-agent; a 503 makes the
# host unhealthy), and grpc_health_check (grpc.health.v1.Health/Check)
# against a python3-grpcio server: SERVING is healthy, NOT_SERVING and
# SERVICE_UNKNOWN are not, and a host follows its service's status both
# ways. What tern does not implement of these is refused by name.
#
#   health_h2.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

if ! "$TN_PYTHON" -c 'import h2, grpc' 2>/dev/null; then
    tn_skip "HTTP/2 health checks" "python3-h2 or python3-grpcio is not installed (tools/install-deps)"
    tn_summary
fi

set -- $(free_port 4)
o=$1 g=$2 f=$3 admin=$4
olog=$TN_TMP/origin.log
state=$TN_TMP/grpc
mkdir -p "$state"
echo SERVING >"$state/svc"
echo SERVING >"$state/_"
echo NOT_SERVING >"$state/down"
tn_spawn "$TN_TMP/h2origin" "$TN_PYTHON" "$TN_SRC/tests/integration/h2_origin.py" --port "$o" --log "$olog"
tn_spawn "$TN_TMP/grpc" "$TN_PYTHON" "$TN_SRC/tests/integration/grpc_health_server.py" "$g" "$state"
wait_port "$o" || { tn_fail "the HTTP/2 origin starts" "$(cat "$TN_TMP/h2origin.err")"; tn_summary; }
wait_port "$g" || { tn_fail "the gRPC server starts" "$(cat "$TN_TMP/grpc.err")"; tn_summary; }

hc() { # hc CHECKER: a health_checks field
    printf 'health_checks: [{timeout: 1s, interval: 0.2s, unhealthy_threshold: 1, healthy_threshold: 1, %s}],' "$1"
}
C="$(it_cluster hh2 "127.0.0.1:$o" "$(hc 'http_health_check: {path: /hc, host: hc.example, codec_client_type: HTTP2}')")"
C="$C, $(it_cluster hh2bad "127.0.0.1:$o" "$(hc 'http_health_check: {path: "/hcbad?status=503", codec_client_type: HTTP2}')")"
C="$C, $(it_cluster gsvc "127.0.0.1:$g" "$(hc 'grpc_health_check: {service_name: svc, authority: g.example}')")"
C="$C, $(it_cluster gserver "127.0.0.1:$g" "$(hc 'grpc_health_check: {}')")"
C="$C, $(it_cluster gdown "127.0.0.1:$g" "$(hc 'grpc_health_check: {service_name: down}')")"
C="$C, $(it_cluster gunknown "127.0.0.1:$g" "$(hc 'grpc_health_check: {service_name: nosuch}')")"
L=$(it_listener front "$f" "$(it_rc "$(it_vhost all '"*"' "$(it_route_cluster / gsvc)")")")
printf '{admin: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}, static_resources: {listeners: [%s], clusters: [%s]}}\n' \
    "$admin" "$L" "$C" >"$TN_TMP/hc.yaml"
it_start "$TN_TMP/hc.yaml" "$f" --concurrency 1

flags_of() { # flags_of CLUSTER PORT: the host's health_flags in /clusters
    tn_curl "http://127.0.0.1:$admin/clusters" | sed -n "s/^$1::127\\.0\\.0\\.1:$2::health_flags:://p"
}
wait_flags() { # wait_flags CLUSTER PORT FLAGS: up to 10 s
    wf_n=0
    while [ "$(flags_of "$1" "$2")" != "$3" ] && [ $wf_n -lt 100 ]; do sleep 0.1; wf_n=$((wf_n + 1)); done
    flags_of "$1" "$2"
}
stat() {
    tn_curl "http://127.0.0.1:$admin/stats" | grep "^cluster\.$1: " | sed 's/.*: //'
}

# ---- HTTP/2 http_health_check ------------------------------------------------------------
check "HTTP2 check: the host is healthy" healthy "$(wait_flags hh2 "$o" healthy)"
rec=$(grep -F '"path": "/hc"' "$olog" | tail -n 1)
check "HTTP2 check: the origin saw GET /hc over HTTP/2" "GET /hc" "$(printf '%s' "$rec" | json_get method) $(printf '%s' "$rec" | json_get path)"
check "HTTP2 check: :authority is the configured host" hc.example "$(printf '%s' "$rec" | json_get authority)"
check "HTTP2 check: user-agent Envoy/HC" Envoy/HC "$(printf '%s' "$rec" | json_get headers.user-agent)"
check "HTTP2 check: a 503 makes the host unhealthy" /failed_active_hc "$(wait_flags hh2bad "$o" /failed_active_hc)"
check_match "HTTP2 check: health_check.success counts" '^[1-9][0-9]*$' "$(stat hh2.health_check.success)"
check "HTTP2 check: no network failure" 0 "$(stat hh2.health_check.network_failure)"

# ---- grpc_health_check -----------------------------------------------------------------
check "gRPC check: SERVING is healthy" healthy "$(wait_flags gsvc "$g" healthy)"
check "gRPC check: the server's own status (service_name empty)" healthy "$(wait_flags gserver "$g" healthy)"
check "gRPC check: NOT_SERVING is unhealthy" /failed_active_hc "$(wait_flags gdown "$g" /failed_active_hc)"
check "gRPC check: SERVICE_UNKNOWN is unhealthy" /failed_active_hc "$(wait_flags gunknown "$g" /failed_active_hc)"
check_contains "gRPC check: the service name reaches the server" svc "$(sort -u "$state/calls")"
check_contains "gRPC check: ... and the empty one" _ "$(sort -u "$state/calls")"
echo NOT_SERVING >"$state/svc"
check "gRPC check: a service going NOT_SERVING takes its host out" /failed_active_hc "$(wait_flags gsvc "$g" /failed_active_hc)"
out=$(curl -s --max-time 5 -w ' %{http_code}' "http://127.0.0.1:$f/x")
check "gRPC check: no healthy upstream then (503)" 503 "${out##* }"
echo SERVING >"$state/svc"
check "gRPC check: SERVING again brings it back" healthy "$(wait_flags gsvc "$g" healthy)"
check "gRPC check: no network failure" 0 "$(stat gsvc.health_check.network_failure)"
check_contains "tern logs why a host failed" "gRPC: NOT_SERVING" "$(cat "$TN_TMP/tern.log")"

it_sanitizers
stop_tern

# ---- what tern does not implement is refused by name ----------------------------------
refused() { # refused NAME CHECKER WANT
    printf '{static_resources: {clusters: [%s]}}\n' "$(it_cluster x "127.0.0.1:$o" "$(hc "$2")")" >"$TN_TMP/r.yaml"
    check_contains "$1" "$3" "$("$TERN" --mode validate -c "$TN_TMP/r.yaml" 2>&1)"
}
refused "codec_client_type HTTP3 is refused" 'http_health_check: {path: /hc, codec_client_type: HTTP3}' \
    "codec_client_type: HTTP3 is not supported by tern"
refused "grpc_health_check.initial_metadata is refused" \
    'grpc_health_check: {initial_metadata: [{header: {key: a, value: b}}]}' "initial_metadata"
refused "custom_health_check is refused" 'custom_health_check: {name: x}' "custom_health_check"

tn_summary
