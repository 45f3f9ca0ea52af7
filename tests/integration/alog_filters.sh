#!/bin/sh
# Access log filters, the health check filter and the operators that read
# the upstream connection, through the real tern: each log keeps only the
# requests its filter passes (status code, duration, not_health_check,
# header, response flags, and/or); the health check filter answers 200, then
# 503 after POST /healthcheck/fail and 200 again after /healthcheck/ok;
# %TRAILER(X)% shows the origin's chunked trailers, %UPSTREAM_LOCAL_ADDRESS%
# the proxy's own end of the upstream connection, %REQUEST_DURATION% the time
# the request body took; the admin listener's access_log logs admin requests;
# /stats shows histograms as Envoy's percentiles.
#
#   alog_filters.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

set -- $(free_port 4)
o1=$1 f=$2 adm=$3 dead=$4
start_origin web "$o1" || { tn_fail "origin web starts" "see above"; tn_summary; }

FILE='"@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog'
# log NAME FILTER FORMAT: one file access log in $TN_TMP/NAME.log
log() {
    printf '{name: envoy.access_loggers.file, %s typed_config: {%s, path: "%s/%s.log", log_format: {text_format_source: {inline_string: "%s\\n"}}}}' \
        "$2" "$FILE" "$TN_TMP" "$1" "${3:-%REQ(:PATH)% %RESPONSE_CODE%}"
}
cmp() { # cmp KIND OP VALUE
    printf '%s: {comparison: {op: %s, value: {default_value: %s, runtime_key: k}}}' "$1" "$2" "$3"
}
LOGS="access_log: [
  $(log all ''),
  $(log errors "filter: {$(cmp status_code_filter GE 500)},"),
  $(log slow "filter: {$(cmp duration_filter GE 400)},"),
  $(log nohc 'filter: {not_health_check_filter: {}},'),
  $(log hdr 'filter: {header_filter: {header: {name: x-debug, string_match: {exact: "1"}}}},'),
  $(log flags 'filter: {response_flag_filter: {flags: [UF, UH]}},'),
  $(log and "filter: {and_filter: {filters: [{$(cmp status_code_filter GE 500)}, {response_flag_filter: {}}]}},"),
  $(log or "filter: {or_filter: {filters: [{$(cmp status_code_filter EQ 404)}, {header_filter: {header: {name: x-debug}}}]}},"),
  $(log ops '' '%REQ(:PATH)% %TRAILER(X-CHECKSUM)% %TRAILER(X-NOPE?GRPC-STATUS)% %UPSTREAM_LOCAL_ADDRESS% %UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% %REQUEST_DURATION% %DURATION%')
],"
HC='{name: envoy.filters.http.health_check, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck, pass_through_mode: false, headers: [{name: ":path", string_match: {exact: /healthz}}], cluster_min_healthy_percentages: {web: {value: 100}}}}'
ROUTES="{name: r1, match: {prefix: /dead}, route: {cluster: dead}}, {name: r2, match: {prefix: /}, route: {cluster: web}}"
L=$(printf '{name: front, address: {socket_address: {address: 127.0.0.1, port_value: %s}}, filter_chains: [{filters: [{name: envoy.filters.network.http_connection_manager, typed_config: {"@type": %s, stat_prefix: front, %s route_config: %s, http_filters: [%s, %s]}}]}]}' \
    "$f" "$IT_HCM_TYPE" "$LOGS" "$(it_rc "$(it_vhost all '"*"' "$ROUTES")")" "$HC" "$IT_ROUTER")
C="$(it_cluster web "127.0.0.1:$o1"), $(it_cluster dead "127.0.0.1:$dead")"
ADMIN_LOG="access_log: [{name: envoy.access_loggers.file, typed_config: {$FILE, path: \"$TN_TMP/admin.log\", log_format: {text_format_source: {inline_string: \"%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %REQ(USER-AGENT)% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%\\\\n\"}}}}],"
printf '{admin: {%s address: {socket_address: {address: 127.0.0.1, port_value: %s}}}, static_resources: {listeners: [%s], clusters: [%s]}}\n' \
    "$ADMIN_LOG" "$adm" "$L" "$C" >"$TN_TMP/filters.yaml"
it_start "$TN_TMP/filters.yaml" "$f" --concurrency 1
wait_port "$adm" || tn_fail "admin listens" "not on $adm"
base=http://127.0.0.1:$f
A=http://127.0.0.1:$adm

# --- traffic: one request of each kind, in order ---------------------------------
tn_curl -o /dev/null "$base/ok"
tn_curl -o /dev/null "$base/err?status=503"
tn_curl -o /dev/null "$base/slow?delay_ms=600"
tn_curl -o /dev/null -H 'x-debug: 1' "$base/debug"
tn_curl -o /dev/null -H 'x-debug: 2' "$base/debug2"
tn_curl -o /dev/null "$base/dead"
tn_curl -o /dev/null "$base/nf?status=404"
check "health check request answered 200 by the filter" 200 "$(http_status "$base/healthz")"
seen=$(tn_curl "http://127.0.0.1:$o1/__count" | json_get paths./healthz)
check "the origin never saw the health check" 0 "${seen:-0}"
check "POST /healthcheck/fail" 200 "$(http_status "$A/healthcheck/fail" -X POST)"
check "health check fails with 503 after /healthcheck/fail" 503 "$(http_status "$base/healthz")"
check "other requests still served while failing" 200 "$(http_status "$base/ok2")"
# Envoy's DRAINING state: readiness probes and preStop hooks rely on it
check "/ready answers 503 while failing" 503 "$(http_status "$A/ready")"
check "/ready says DRAINING while failing" DRAINING "$(tn_curl "$A/ready" | tr -d '\n')"
check "/server_info state DRAINING while failing" DRAINING "$(tn_curl "$A/server_info" | json_get state)"
check "POST /healthcheck/ok" 200 "$(http_status "$A/healthcheck/ok" -X POST)"
check "health check passes again after /healthcheck/ok" 200 "$(http_status "$base/healthz")"
check "/ready answers 200 again after /healthcheck/ok" 200 "$(http_status "$A/ready")"
check "/server_info state LIVE again" LIVE "$(tn_curl "$A/server_info" | json_get state)"
tn_curl -o /dev/null "$base/trail?trailer=x-checksum:abc123&trailer=grpc-status:0"
printf 'x%.0s' $(seq 1 3000) >"$TN_TMP/body"
tn_curl -o /dev/null --data-binary @"$TN_TMP/body" "$base/post"

wait_log() { # wait_log NAME LINE: until NAME.log has LINE
    wl_n=0
    while [ $wl_n -lt 50 ]; do
        grep -qx -- "$2" "$TN_TMP/$1.log" 2>/dev/null && return 0
        sleep 0.1
        wl_n=$((wl_n + 1))
    done
    return 1
}
wait_log all "/post 200" || tn_fail "the unfiltered log got every request" "$(cat "$TN_TMP/all.log" 2>/dev/null)"
sleep 1.2 # every writer has flushed (they flush each second)
lines() { tr '\n' '|' <"$TN_TMP/$1.log" 2>/dev/null; }
check "no filter: every request" "/ok 200|/err?status=503 503|/slow?delay_ms=600 200|/debug 200|/debug2 200|/dead 503|/nf?status=404 404|/healthz 200|/healthz 503|/ok2 200|/healthz 200|/trail?trailer=x-checksum:abc123&trailer=grpc-status:0 200|/post 200|" "$(lines all)"
check "status_code_filter GE 500" "/err?status=503 503|/dead 503|/healthz 503|" "$(lines errors)"
check "duration_filter GE 400 ms" "/slow?delay_ms=600 200|" "$(lines slow)"
check "not_health_check_filter drops the health checks" "/ok 200|/err?status=503 503|/slow?delay_ms=600 200|/debug 200|/debug2 200|/dead 503|/nf?status=404 404|/ok2 200|/trail?trailer=x-checksum:abc123&trailer=grpc-status:0 200|/post 200|" "$(lines nohc)"
check "header_filter exact x-debug: 1" "/debug 200|" "$(lines hdr)"
check "response_flag_filter [UF, UH]" "/dead 503|" "$(lines flags)"
check "and_filter: 5xx with any flag" "/dead 503|/healthz 503|" "$(lines and)"
check "or_filter: 404 or x-debug present" "/debug 200|/debug2 200|/nf?status=404 404|" "$(lines or)"

# --- operators: trailers, upstream local address, request duration -----------
tl=$(grep '^/trail' "$TN_TMP/ops.log")
check_match "%TRAILER(X)% and %TRAILER(X?Y)% from the origin's chunked trailers" '^/trail[^ ]* abc123 0 ' "$tl"
check_match "%UPSTREAM_LOCAL_ADDRESS% is tern's end of the upstream connection" ' 127\.0\.0\.1:[0-9]+ 127\.0\.0\.1 [0-9]+ [0-9]+$' "$tl"
check_match "no upstream connection: %UPSTREAM_LOCAL_ADDRESS% is -" '^/dead - - - - [0-9]+ [0-9]+$' "$(grep '^/dead' "$TN_TMP/ops.log")"
check_match "the health check answered locally has no upstream" '^/healthz - - - - [0-9]+ [0-9]+$' "$(grep '^/healthz' "$TN_TMP/ops.log" | head -1)"
# the local port is one the origin saw a connection from: the origin logs peers? use ss
lp=$(echo "$tl" | cut -d' ' -f4 | cut -d: -f2)
if ss -tn 2>/dev/null | grep -q "127.0.0.1:$lp *127.0.0.1:$o1"; then
    tn_pass "the logged upstream local port is a live connection to the origin"
else
    tn_fail "the logged upstream local port is a live connection to the origin" "port $lp; $(ss -tn | grep ":$o1" | head -3)"
fi

# --- admin access log ---------------------------------------------------------------
tn_curl -o /dev/null -A 'adm-test/1' "$A/ready"
tn_curl -o /dev/null "$A/nope"
wait_log admin "GET /nope 404 - 127.0.0.1" || true
sleep 1.2
check_contains "admin access log: POST /healthcheck/fail" "POST /healthcheck/fail 200 curl/" "$(cat "$TN_TMP/admin.log" 2>/dev/null)"
check_contains "admin access log: GET /ready with its user agent and client" "GET /ready 200 adm-test/1 127.0.0.1" "$(cat "$TN_TMP/admin.log" 2>/dev/null)"
check_contains "admin access log: a 404" "GET /nope 404 " "$(cat "$TN_TMP/admin.log" 2>/dev/null)"
check_not_contains "admin requests are not in the data listener's log" "/ready" "$(cat "$TN_TMP/all.log")"

# --- histograms in /stats -----------------------------------------------------------------
st=$(tn_curl "$A/stats?filter=%5Ehttp.front.downstream_rq_time%24")
check_match "/stats prints a histogram as Envoy's percentiles" '^http\.front\.downstream_rq_time: P0\(nan,[0-9.e+]+\) P25\(nan,[0-9.e+]+\) P50\(nan,[0-9.e+]+\) P75\(nan,[0-9.e+]+\) P90\(nan,[0-9.e+]+\) P95\(nan,[0-9.e+]+\) P99\(nan,[0-9.e+]+\) P99\.5\(nan,[0-9.e+]+\) P99\.9\(nan,[0-9.e+]+\) P100\(nan,[0-9.e+]+\)$' "$st"
p100=$(echo "$st" | sed 's/.*P100(nan,\([0-9.e+]*\)).*/\1/')
check "P100 is in the bucket of the slow 600 ms request (500..1000]" yes "$(awk -v v="$p100" 'BEGIN { print (v > 500 && v <= 1000) ? "yes" : "no: " v }')"
js=$(tn_curl "$A/stats?format=json&filter=%5Ehttp.front.downstream_rq_time%24")
check "JSON /stats carries Envoy's histograms object" "[0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]" "$(echo "$js" | json_get stats.0.histograms.supported_quantiles)"
check "JSON histogram name" "http.front.downstream_rq_time" "$(echo "$js" | json_get stats.0.histograms.computed_quantiles.0.name)"
# Envoy's per-status-code counters appear once a code was seen
codes=$(tn_curl "$A/stats?filter=%5Ecluster%5C.web%5C.upstream_rq_%5B0-9%5D%2B%24" | tr '\n' ' ')
check "per-code counters: the codes the origin answered, and no others" \
    "cluster.web.upstream_rq_200: 7 cluster.web.upstream_rq_404: 1 cluster.web.upstream_rq_503: 1 " "$codes"
check_contains "per-code counters in Prometheus with envoy_response_code" \
    'envoy_cluster_upstream_rq{envoy_response_code="503",envoy_cluster_name="web"} 1' "$(tn_curl "$A/stats/prometheus")"
ver=$(tn_curl "$A/server_info" | json_get version)
want=$(echo "$ver" | awk -F. '{ print $1 * 1000000 + $2 * 1000 + $3 }')
check "server.version is the release $ver as a number" "server.version: $want" "$(tn_curl "$A/stats?filter=%5Eserver.version%24")"

stop_tern
check "tern exits 0" 0 "$TN_RC"
it_sanitizers
tn_summary
