#!/bin/sh
# HTTP/2 upstream (h2c, prior knowledge) through tern, end to end: curl
# speaks HTTP/1.1 to tern, tern HTTP/2 to h2_origin.py (python3-h2). GET,
# a 10 MB POST echoed back (sha256 compared), concurrent requests
# multiplexed on one connection (max_concurrent_streams high enough), a
# response with trailers (%TRAILER()% in the access log), a stream reset by
# the origin (503 UR), the origin closing its connection (503 UC, and the
# next request on a new connection), the route timeout (504 UT), and the
# configuration both ways (the Cluster's http2_protocol_options and
# HttpProtocolOptions' explicit_http_config). A GOAWAY whose last stream is
# below requests in flight: those streams were never processed and are
# retried on a new connection when the route's retry policy covers refused
# streams (Envoy's refused-stream; 503 UR without one, as Envoy), and the
# connection closes once its last stream ends. Mirror shadows to an HTTP/2
# cluster (the origin's log shows the shadow's :authority and body), and
# the cache's background refresh (stale-while-revalidate) against it.
#
#   upstream_h2.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

if ! "$TN_PYTHON" -c 'import h2' 2>/dev/null; then
    tn_skip "HTTP/2 upstream" "python3-h2 is not installed (tools/install-deps)"
    tn_summary
fi

set -- $(free_port 6)
o=$1 f=$2 admin=$3 o2=$4 f2=$5 fc=$6
olog=$TN_TMP/origin.log
tn_spawn "$TN_TMP/h2origin" "$TN_PYTHON" "$TN_SRC/tests/integration/h2_origin.py" --port "$o" --log "$olog"
wait_port "$o" || { tn_fail "the HTTP/2 origin starts" "$(cat "$TN_TMP/h2origin.err")"; tn_summary; }
alog=$TN_TMP/access.log

routes="$(it_route_cluster /t/ h2 'timeout: 1s'), $(it_route_cluster /cl/ h2cl), $(it_route_cluster /ga/ h2 'retry_policy: {retry_on: refused-stream, num_retries: 2},'), $(it_route_cluster /mir/ h2 'request_mirror_policies: [{cluster: h2m}],'), $(it_route_cluster / h2)"
L=$(it_listener front "$f" "$(it_rc "$(it_vhost all '"*"' "$routes")")" \
    "$(it_alog "$alog" '%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST% %TRAILER(x-checksum)%')")
CACHE='{name: envoy.filters.http.cache, typed_config: {"@type": type.googleapis.com/tern.extensions.filters.http.cache.v1.CacheConfig,
  name: edge-h2, max_size_bytes: 16777216, max_entry_bytes: 1048576, stale_ttl: 3600s, default_ttl: 300s}}'
LC=$(printf '{name: cached, address: {socket_address: {address: 127.0.0.1, port_value: %s}}, filter_chains: [{filters: [{name: envoy.filters.network.http_connection_manager, typed_config: {"@type": %s, stat_prefix: cached, route_config: %s, http_filters: [%s, %s]}}]}]}' \
    "$fc" "$IT_HCM_TYPE" "$(it_rc "$(it_vhost all '"*"' "$(it_route_cluster / h2c)")")" "$CACHE" "$IT_ROUTER")
h2opts='typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {"@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {http2_protocol_options: {max_concurrent_streams: 1000, initial_stream_window_size: 65535, initial_connection_window_size: 1048576}}}},'
C="$(it_cluster h2 "127.0.0.1:$o" "$h2opts"), $(it_cluster h2cl "127.0.0.1:$o" 'http2_protocol_options: {},')"
C="$C, $(it_cluster h2m "127.0.0.1:$o" 'http2_protocol_options: {},'), $(it_cluster h2c "127.0.0.1:$o" 'http2_protocol_options: {},')"
printf '{admin: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}, static_resources: {listeners: [%s, %s], clusters: [%s]}}\n' \
    "$admin" "$L" "$LC" "$C" >"$TN_TMP/h2.yaml"
# one worker: one pool per host, so one connection carries everything
it_start "$TN_TMP/h2.yaml" "$f" --concurrency 1
base=http://127.0.0.1:$f

stat() {
    tn_curl "http://127.0.0.1:$admin/stats" | grep "^cluster\.$1: " | sed 's/.*: //'
}
flags() {
    fl_n=0
    while [ $fl_n -lt 50 ]; do
        fl_line=$(grep -F -- "$1 " "$alog" 2>/dev/null | tail -n 1)
        [ -n "$fl_line" ] && break
        sleep 0.1
        fl_n=$((fl_n + 1))
    done
    echo "${fl_line#"$1 "}"
}

check_not_contains "no 'HTTP/2 is not spoken' warning" "speaks HTTP/1.1 to upstreams" "$(cat "$TN_TMP/tern.log")"

# ---- GET -----------------------------------------------------------------------------
out=$(curl -s --max-time 10 -D "$TN_TMP/h" "$base/hello?a=1" -H 'x-custom: yes')
check "GET: 200" 200 "$(sed -n 's/^HTTP\/1.1 \([0-9]*\).*/\1/p' "$TN_TMP/h" | tr -d '\r')"
check "GET: the origin saw :method GET" GET "$(printf '%s' "$out" | json_get method)"
check "GET: the origin saw :path" "/hello?a=1" "$(printf '%s' "$out" | json_get path)"
check "GET: the origin saw :authority" "127.0.0.1:$f" "$(printf '%s' "$out" | json_get authority)"
check "GET: request headers go through" yes "$(printf '%s' "$out" | json_get headers.x-custom)"
check "GET: no hop-by-hop headers upstream" "" "$(printf '%s' "$out" | json_get headers.connection)"
check_contains "GET: x-envoy-upstream-service-time" "x-envoy-upstream-service-time" "$(cat "$TN_TMP/h")"
check "upstream_cx_http2_total is 1" 1 "$(stat h2.upstream_cx_http2_total)"
check "upstream_cx_http1_total is 0" 0 "$(stat h2.upstream_cx_http1_total)"
check "GET: access log, host" "200 - 127.0.0.1:$o -" "$(flags '/hello?a=1')"

# ---- a 10 MB POST, echoed ------------------------------------------------------------
head -c 10485760 /dev/urandom >"$TN_TMP/big"
want=$(sha256sum <"$TN_TMP/big" | cut -d' ' -f1)
code=$(curl -s --max-time 60 -X POST --data-binary @"$TN_TMP/big" -D "$TN_TMP/h" -o "$TN_TMP/echo" -w '%{http_code}' "$base/echo")
check "POST 10 MB: 200" 200 "$code"
check "POST 10 MB: the origin got every byte" "$want" "$(grep -i '^x-body-sha256' "$TN_TMP/h" | sed 's/.*: //' | tr -d '\r')"
check "POST 10 MB: the echo comes back whole" "$want" "$(sha256sum <"$TN_TMP/echo" | cut -d' ' -f1)"
# chunked from the client: no content-length upstream, END_STREAM ends it
code=$(head -c 300000 "$TN_TMP/big" | curl -s --max-time 30 -X POST -H 'transfer-encoding: chunked' --data-binary @- -D "$TN_TMP/h" -o /dev/null -w '%{http_code}' "$base/chunked")
check "POST chunked: 200" 200 "$code"
check "POST chunked: 300000 bytes arrived" 300000 "$(grep -i '^x-body-len' "$TN_TMP/h" | sed 's/.*: //' | tr -d '\r')"

# ---- concurrent requests, one connection -----------------------------------------
i=0
pids=
while [ $i -lt 40 ]; do
    curl -s --max-time 30 -D - -o /dev/null "$base/mux/$i?delay_ms=400" >"$TN_TMP/mux.$i" &
    pids="$pids $!"
    i=$((i + 1))
done
for p in $pids; do wait "$p"; done
check "40 concurrent: all 200" 40 "$(cat "$TN_TMP"/mux.* | grep -c '^HTTP/1.1 200')"
check "40 concurrent: one origin connection" 1 "$(cat "$TN_TMP"/mux.* | grep -i '^x-conn' | sort -u | wc -l | tr -d ' ')"
check "40 concurrent: upstream_cx_http2_total stays 1" 1 "$(stat h2.upstream_cx_http2_total)"
check "upstream_rq_total counts every request" 43 "$(stat h2.upstream_rq_total)"

# ---- trailers -----------------------------------------------------------------------
code=$(curl -s --max-time 10 -o "$TN_TMP/tb" -w '%{http_code}' "$base/tr?trailers=1&bytes=100000")
check "trailers: 200" 200 "$code"
check "trailers: the body" 100000 "$(wc -c <"$TN_TMP/tb" | tr -d ' ')"
check "trailers: %TRAILER(x-checksum)% in the access log" "200 - 127.0.0.1:$o $(sha256sum <"$TN_TMP/tb" | cut -d' ' -f1)" "$(flags '/tr?trailers=1&bytes=100000')"

# ---- a stream reset by the origin ----------------------------------------------------
out=$(curl -s --max-time 10 -w ' %{http_code}' "$base/rst?reset=1")
check "reset stream: 503" 503 "${out##* }"
check_contains "reset stream: Envoy's body" "reset reason: remote reset" "$out"
check "reset stream: flag UR" "503 UR 127.0.0.1:$o -" "$(flags '/rst?reset=1')"
check "reset stream: upstream_rq_rx_reset" 1 "$(stat h2.upstream_rq_rx_reset)"
conn_before=$(curl -s --max-time 10 -D - -o /dev/null "$base/after-reset" | grep -i '^x-conn' | tr -d '\r')
check "reset stream: the connection stays" "1" "$(stat h2.upstream_cx_http2_total)"

# ---- the route timeout ---------------------------------------------------------------
out=$(curl -s --max-time 10 -w ' %{http_code}' "$base/t/slow?delay_ms=3000")
check "route timeout: 504" 504 "${out##* }"
check "route timeout: flag UT" "504 UT 127.0.0.1:$o -" "$(flags '/t/slow?delay_ms=3000')"
conn=$(curl -s --max-time 10 -D - -o /dev/null "$base/after-timeout" | grep -i '^x-conn' | tr -d '\r')
check "route timeout: the stream was reset, the connection kept" "$conn_before" "$conn"

# ---- the origin closes the connection ------------------------------------------------
out=$(curl -s --max-time 10 -w ' %{http_code}' "$base/bye?close=1")
check "origin closes: 503" 503 "${out##* }"
check "origin closes: flag UC" "503 UC 127.0.0.1:$o -" "$(flags '/bye?close=1')"
conn=$(curl -s --max-time 10 -D - -o /dev/null "$base/after-close" | grep -i '^x-conn' | tr -d '\r')
check "origin closes: the next request gets a new connection" yes "$([ -n "$conn" ] && [ "$conn" != "$conn_before" ] && echo yes)"
check "origin closes: upstream_cx_http2_total 2" 2 "$(stat h2.upstream_cx_http2_total)"
check "origin closes: upstream_cx_destroy_remote" 1 "$(stat h2.upstream_cx_destroy_remote)"

# ---- the Cluster's own http2_protocol_options ----------------------------------------
code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$base/cl/x")
check "Cluster.http2_protocol_options: 200" 200 "$code"
check "Cluster.http2_protocol_options: HTTP/2" 1 "$(stat h2cl.upstream_cx_http2_total)"

# ---- GOAWAY: streams above its last stream are retried elsewhere ------------------------
# /ga/a makes the origin send GOAWAY (last stream: its own) 400 ms after it
# arrives; /ga/b and /ga/c went out on the same connection meanwhile, above
# it: never processed, refused, and retried (refused-stream) on a new one.
olog_answered() { # olog_answered PATH ANSWERED: how many times the origin logged PATH so
    grep -F "\"path\": \"$1\"" "$olog" 2>/dev/null | grep -c "\"answered\": $2"
}
retries0=$(stat h2.upstream_rq_retry)
destroy0=$(stat h2.upstream_cx_destroy_local)
curl -s --max-time 10 -D "$TN_TMP/ga.a" -o /dev/null "$base/ga/a?goaway_ms=400" &
pa=$!
sleep 0.15
curl -s --max-time 10 -D "$TN_TMP/ga.b" -o /dev/null "$base/ga/b?delay_ms=800" &
pb=$!
curl -s --max-time 10 -D "$TN_TMP/ga.c" -o /dev/null "$base/ga/c?delay_ms=800" &
pc=$!
wait $pa $pb $pc
xconn() { grep -i '^x-conn' "$1" | sed 's/.*: //' | tr -d '\r'; }
check "GOAWAY: the last processed stream is answered" 200 "$(sed -n 's/^HTTP\/1.1 \([0-9]*\).*/\1/p' "$TN_TMP/ga.a" | tr -d '\r')"
check "GOAWAY: the streams above it get 200 after all" "200 200" "$(cat "$TN_TMP/ga.b" "$TN_TMP/ga.c" | sed -n 's/^HTTP\/1.1 \([0-9]*\).*/\1/p' | tr -d '\r' | tr '\n' ' ' | sed 's/ $//')"
check "GOAWAY: ... from a new connection" yes "$([ "$(xconn "$TN_TMP/ga.b")" = "$(xconn "$TN_TMP/ga.c")" ] && [ "$(xconn "$TN_TMP/ga.b")" != "$(xconn "$TN_TMP/ga.a")" ] && echo yes)"
check "GOAWAY: the origin left them unanswered on the old connection" "1 1" "$(olog_answered '/ga/b?delay_ms=800' false) $(olog_answered '/ga/c?delay_ms=800' false)"
check "GOAWAY: two retries counted (upstream_rq_retry)" 2 "$(($(stat h2.upstream_rq_retry) - retries0))"
n=0
while [ "$(stat h2.upstream_cx_destroy_local)" = "$destroy0" ] && [ $n -lt 30 ]; do sleep 0.1; n=$((n + 1)); done
check "GOAWAY: the old connection closes once its last stream ended" $((destroy0 + 1)) "$(stat h2.upstream_cx_destroy_local)"
check "GOAWAY: one connection left" 1 "$(stat h2.upstream_cx_active)"
# without a retry policy, as Envoy: the refused stream fails (503 UR)
curl -s --max-time 10 -o /dev/null "$base/gn/a?goaway_ms=400" &
pa=$!
sleep 0.15
out=$(curl -s --max-time 10 -w ' %{http_code}' "$base/gn/b?delay_ms=800")
wait $pa
check "GOAWAY, no retry policy: 503" 503 "${out##* }"
check "GOAWAY, no retry policy: flag UR" "503 UR 127.0.0.1:$o -" "$(flags '/gn/b?delay_ms=800')"

# ---- a mirror to an HTTP/2 cluster -------------------------------------------------------
code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' -X POST --data-binary 'hello mirror' "$base/mir/x?m=1")
check "mirror: the primary 200" 200 "$code"
n=0
while ! grep -q -- '-shadow' "$olog" 2>/dev/null && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
shadow=$(grep -F -- '-shadow' "$olog" | tail -n 1)
check "mirror: the shadow's :authority has the suffix" "127.0.0.1-shadow:$f" "$(printf '%s' "$shadow" | json_get authority)"
check "mirror: the shadow's method and path" "POST /mir/x?m=1" "$(printf '%s' "$shadow" | json_get method) $(printf '%s' "$shadow" | json_get path)"
check "mirror: the shadow's body" "12 $(printf 'hello mirror' | sha256sum | cut -d' ' -f1)" "$(printf '%s' "$shadow" | json_get body_len) $(printf '%s' "$shadow" | json_get body_sha256)"
check "mirror: the shadow's request headers" "12" "$(printf '%s' "$shadow" | json_get headers.content-length)"
n=0
while [ "$(stat h2m.upstream_rq_2xx)" != 1 ] && [ $n -lt 30 ]; do sleep 0.1; n=$((n + 1)); done
check "mirror: counted in the mirror cluster (upstream_rq_2xx)" 1 "$(stat h2m.upstream_rq_2xx)"
check "mirror: over HTTP/2" 1 "$(stat h2m.upstream_cx_http2_total)"
check "mirror: none failed" 0 "$(tn_curl "http://127.0.0.1:$admin/stats" | grep '^http\.front\.mirror\.failed: ' | sed 's/.*: //')"
# chunked from the client: the shadow's body goes unframed
head -c 100000 "$TN_TMP/big" | curl -s --max-time 10 -o /dev/null -X POST -H 'transfer-encoding: chunked' --data-binary @- "$base/mir/chunked"
n=0
while ! grep -F -- '-shadow' "$olog" | grep -q '/mir/chunked' && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
check "mirror: a chunked body reaches the HTTP/2 shadow whole" "100000 $(head -c 100000 "$TN_TMP/big" | sha256sum | cut -d' ' -f1)" \
    "$(grep -F -- '-shadow' "$olog" | grep '/mir/chunked' | json_get body_len) $(grep -F -- '-shadow' "$olog" | grep '/mir/chunked' | json_get body_sha256)"

# ---- the cache's background refresh against an HTTP/2 origin -----------------------------
W='/swr?etag=w1&cc=max-age%3D1,%20stale-while-revalidate%3D60'
cget() { curl -s --max-time 10 -D - -o /dev/null "http://127.0.0.1:$fc$W" | tr -d '\r' | tr 'A-Z' 'a-z'; }
check_contains "cache: the first GET is a miss" "x-cache-status: miss" "$(cget)"
sleep 2.2
check_contains "cache: stale-while-revalidate serves the stale entry" "x-cache-status: hit" "$(cget)"
n=0
while [ "$(grep -cF "\"path\": \"$W\"" "$olog")" -lt 2 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
check "cache: the background revalidation reached the HTTP/2 origin" 2 "$(grep -cF "\"path\": \"$W\"" "$olog")"
check "cache: ... with the entry's validator" '"w1"' "$(grep -F "\"path\": \"$W\"" "$olog" | tail -n 1 | json_get headers.if-none-match)"
sleep 0.3
age=$(cget | sed -n 's/^age: //p')
check "cache: after the refresh (a 304) the entry is fresh again" yes "$([ "${age:-9}" -le 1 ] && echo yes || echo "no: age $age")"
check "cache: over HTTP/2" 1 "$(stat h2c.upstream_cx_http2_total)"

# ---- max_requests_per_connection: a second connection ---------------------------------
it_sanitizers
stop_tern
C="$(it_cluster h2 "127.0.0.1:$o" "$h2opts max_requests_per_connection: 2,"), $(it_cluster h2cl "127.0.0.1:$o" 'http2_protocol_options: {},')"
C="$C, $(it_cluster h2m "127.0.0.1:$o" 'http2_protocol_options: {},')"
L=$(it_listener front "$f2" "$(it_rc "$(it_vhost all '"*"' "$routes")")")
printf '{admin: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}, static_resources: {listeners: [%s], clusters: [%s]}}\n' \
    "$admin" "$L" "$C" >"$TN_TMP/h2b.yaml"
it_start "$TN_TMP/h2b.yaml" "$f2" --concurrency 1
i=0
while [ $i -lt 5 ]; do
    curl -s --max-time 10 -o /dev/null "http://127.0.0.1:$f2/m$i"
    i=$((i + 1))
done
check "max_requests_per_connection 2: 5 requests, 3 connections" 3 "$(stat h2.upstream_cx_http2_total)"

it_sanitizers
tn_summary
