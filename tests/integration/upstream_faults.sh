#!/bin/sh
# Origins that break HTTP/1.1, through tern: what the client sees, the
# access log's response flag, the cluster's stats, that the pool's next
# request succeeds and that tern keeps serving. The origin is
# tests/origin/bad_origin.py: the request path picks the exact bytes it
# sends back.
#
#   upstream_faults.sh TERN_BINARY SOURCE_DIR
#
# One worker (--concurrency 1), so that requests to a cluster share one
# pool; route timeouts are 1 s to keep the script short.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

set -- $(free_port 3)
o=$1 f=$2 adm=$3
tn_spawn "$TN_TMP/bad_origin" "$TN_PYTHON" "$TN_SRC/tests/origin/bad_origin.py" "$o"
wait_port "$o" || { tn_fail "bad_origin starts" "not listening on $o"; tn_summary; }
alog=$TN_TMP/access.log

rt() { it_route_cluster "$@"; }
routes="
    $(rt /one/ one 'timeout: 1s, prefix_rewrite: "/",'),
    $(rt /lim/ lim 'timeout: 1s, prefix_rewrite: "/",'),
    $(rt /cbp/ cbp 'timeout: 5s, prefix_rewrite: "/",'),
    $(rt /cbr/ cbr 'timeout: 5s, prefix_rewrite: "/",'),
    $(rt /leave/ bad 'timeout: 10s, prefix_rewrite: "/",'),
    $(rt / bad 'timeout: 1s,')"
L=$(it_listener front "$f" "$(it_rc "$(it_vhost all '"*"' "$routes")")" "$(it_alog "$alog" '%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%')")
opts='typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {"@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, common_http_protocol_options: {max_headers_count: 10, max_response_headers_kb: 2}, explicit_http_config: {http_protocol_options: {}}}},'
C="$(it_cluster bad "127.0.0.1:$o"),
   $(it_cluster one "127.0.0.1:$o" 'circuit_breakers: {thresholds: [{max_connections: 1}]},'),
   $(it_cluster lim "127.0.0.1:$o" "$opts"),
   $(it_cluster cbp "127.0.0.1:$o" 'circuit_breakers: {thresholds: [{max_connections: 1, max_pending_requests: 1}]},'),
   $(it_cluster cbr "127.0.0.1:$o" 'circuit_breakers: {thresholds: [{max_requests: 1}]},')"
printf '{admin: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}, static_resources: {listeners: [%s], clusters: [%s]}}\n' \
    "$adm" "$L" "$C" >"$TN_TMP/faults.yaml"
it_start "$TN_TMP/faults.yaml" "$f" --concurrency 1
wait_port "$adm" || tn_fail "admin listens" "not on $adm"
base=http://127.0.0.1:$f

# flags PATH: "CODE FLAGS" from the access log's last line for PATH.
flags() {
    fl_n=0 fl_line=
    while [ $fl_n -lt 50 ]; do
        fl_line=$(grep -F -- "$1 " "$alog" 2>/dev/null | tail -n 1)
        [ -n "$fl_line" ] && break
        sleep 0.1
        fl_n=$((fl_n + 1))
    done
    echo "${fl_line#"$1 "}"
}

# stat CLUSTER NAME: cluster.CLUSTER.NAME from /stats (0 when absent).
stat() {
    st_v=$(tn_curl "http://127.0.0.1:$adm/stats" | grep -F "cluster.$1.$2: " | sed 's/.*: //')
    echo "${st_v:-0}"
}

# req PATH: "STATUS BODY" (body trimmed to 200 bytes, one line).
req() {
    rq_s=$(curl -s --max-time 10 -o "$TN_TMP/rb" -w '%{http_code}' "$base$1")
    echo "$rq_s $(head -c 200 "$TN_TMP/rb" | tr '\n' ' ')"
}

# events: bad_origin's event log (JSON), asked directly.
events() {
    curl -s --max-time 5 "http://127.0.0.1:$o/__events"
}

# ---- malformed status lines: 503 UPE, counted, the next request fine ----------
for p in badproto badstatus status600 status099; do
    check "$p: 503 upstream protocol error" "503 upstream connect error or disconnect/reset before headers. reset reason: protocol error" "$(req /$p)"
    check "$p: access log says UPE" "503 UPE" "$(flags /$p)"
    check "$p: then /ok on the same cluster" "200 ok" "$(req /ok)"
done
check "upstream_cx_protocol_error counts the 4 bad status lines" 4 "$(stat bad upstream_cx_protocol_error)"

# ---- bytes after a complete response --------------------------------------------
# /one/ has max_connections 1: the second request waits for the connection
# that carries the garbage, and must not inherit it.
cx0=$(stat one upstream_cx_total)
(curl -s --max-time 10 -o "$TN_TMP/extra_a" -w '%{http_code}' "$base/one/delay/300/extra" >"$TN_TMP/extra_a.st") &
pa=$!
sleep 0.1
(curl -s --max-time 10 -o "$TN_TMP/extra_b" -w '%{http_code}' "$base/one/ok" >"$TN_TMP/extra_b.st") &
pb=$!
wait $pa $pb
check "extra bytes: the response itself arrives whole" "200 ok" "$(cat "$TN_TMP/extra_a.st") $(cat "$TN_TMP/extra_a")"
check "extra bytes: the queued request is not hurt" "200 ok" "$(cat "$TN_TMP/extra_b.st") $(cat "$TN_TMP/extra_b")"
check "extra bytes: counted as a protocol error" 1 "$(stat one upstream_cx_protocol_error)"
check "extra bytes: the queued request got a fresh connection" $((cx0 + 2)) "$(stat one upstream_cx_total)"
check "extra bytes: the pool serves the next request" "200 ok" "$(req /one/ok)"

# ---- a response whose head ends it keeps its connection --------------------------
cx0=$(stat one upstream_cx_total)
check "204: passed on" "204 " "$(req /one/empty)"
check "204 again" "204 " "$(req /one/empty)"
check "204: the connection is reused, not closed after the head" "$cx0" "$(stat one upstream_cx_total)"

# ---- bytes on an idle pooled connection -------------------------------------------
check "idle garbage: the response before it" "200 ok" "$(req /one/idle-garbage)"
sleep 0.5
check "idle garbage: the connection is closed, not reused (protocol error)" 2 "$(stat one upstream_cx_protocol_error)"
check "idle garbage: the next request gets a fresh connection" "200 ok" "$(req /one/ok)"

# ---- response header limits ---------------------------------------------------------
# lim: max_headers_count 10, max_response_headers_kb 2 (2048 bytes, the whole head)
check "10 headers (the limit): passed on" "200 ok" "$(req /lim/headers/10)"
check "11 headers: 503" 503 "$(req /lim/headers/11 | cut -d' ' -f1)"
check "11 headers: UPE" "503 UPE" "$(flags /lim/headers/11)"
check "a 2048-byte head (the limit): passed on" "200 ok" "$(req /lim/headsize/2048)"
check "a 2049-byte head: 503" 503 "$(req /lim/headsize/2049 | cut -d' ' -f1)"
check "a 2049-byte head: UPE" "503 UPE" "$(flags /lim/headsize/2049)"
check "header limits: counted as protocol errors" 2 "$(stat lim upstream_cx_protocol_error)"
check "header limits: the next request fine" "200 ok" "$(req /lim/ok)"
# Envoy's defaults without options: 100 headers, 60 KiB
check "default limit: 100 headers passed on" "200 ok" "$(req /headers/100)"
check "default limit: 101 headers: 503" 503 "$(req /headers/101 | cut -d' ' -f1)"
check "default limit: a 61440-byte head passed on" "200 ok" "$(req /headsize/61440)"
check "default limit: a 61441-byte head: 503" 503 "$(req /headsize/61441 | cut -d' ' -f1)"

# ---- the route timeout covers the whole response ---------------------------------
t0=$(date +%s.%N)
curl -s --max-time 10 -o "$TN_TMP/stall" -D "$TN_TMP/stall.h" "$base/stall-body/t"
rc=$?
t1=$(date +%s.%N)
check_contains "stalled body: the head reached the client" "200" "$(head -n 1 "$TN_TMP/stall.h")"
case $rc in
18 | 52 | 56) tn_pass "stalled body: the client's connection is reset (curl exit $rc)" ;;
*) tn_fail "stalled body: the client's connection is reset" "curl exit $rc" ;;
esac
el=$(echo "$t1 - $t0" | bc)
if [ "$(echo "$el < 3" | bc)" = 1 ]; then
    tn_pass "stalled body: reset by the 1 s route timeout (${el}s)"
else
    tn_fail "stalled body: reset by the 1 s route timeout" "took ${el}s"
fi
check "stalled body: access log 200 UT" "200 UT" "$(flags /stall-body/t)"
check "stalled body: upstream_rq_timeout counted" 1 "$(stat bad upstream_rq_timeout)"
sleep 0.3
check_match "stalled body: the origin saw its connection closed at the timeout" '"closed", "/stall-body/t", (0\.9|1\.[0-4])' "$(events)"
check "stalled head: 504 (as before)" 504 "$(req /stall-head/t | cut -d' ' -f1)"
check "stalled head: UT" "504 UT" "$(flags /stall-head/t)"

# ---- the client leaves while the response is stalled --------------------------------
# A client that leaves mid-request (its body unfinished) is noticed by the
# connection manager: the router must close the origin's connection at once.
tx0=$(stat bad upstream_rq_tx_reset)
"$TN_PYTHON" -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /leave/stall-body/partial HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
time.sleep(0.5)
s.close()
' "$f"
sleep 1
check_match "client left mid-request: the origin's connection closed within ~1 s" '"closed", "/stall-body/partial", (0\.[4-9]|1\.[0-4])' "$(events)"
check "client left: counted as a local reset (upstream_rq_tx_reset)" $((tx0 + 1)) "$(stat bad upstream_rq_tx_reset)"
# A client that leaves after its whole request: Envoy and nginx take the FIN
# for the client gone (HTTP/1.1 cannot tell a half-close) and close the
# upstream at once.
curl -s --max-time 0.5 -o /dev/null "$base/leave/stall-body/gone"
sleep 1
check_match "client left after its request: the origin's connection closed within ~1 s" \
    '"closed", "/stall-body/gone", (0\.[4-9]|1\.[0-4])' "$(events)"

# ---- circuit breakers: the overflow counters ----------------------------------------
# max_connections 1, max_pending_requests 1: one busy, one waiting, the third overflows
(curl -s --max-time 10 -o /dev/null "$base/cbp/delay/600/ok") &
pa=$!
sleep 0.2
(curl -s --max-time 10 -o /dev/null "$base/cbp/delay/100/ok") &
pb=$!
sleep 0.2
check "max_pending_requests 1: the third request overflows" 503 "$(req /cbp/ok | cut -d' ' -f1)"
check "max_pending_requests: UO" "503 UO" "$(flags /cbp/ok)"
wait $pa $pb
check "max_pending_requests: upstream_rq_pending_overflow" 1 "$(stat cbp upstream_rq_pending_overflow)"
(curl -s --max-time 10 -o /dev/null "$base/cbr/delay/500/ok") &
pa=$!
sleep 0.2
check "max_requests 1: the second request overflows" 503 "$(req /cbr/ok | cut -d' ' -f1)"
wait $pa
check "max_requests: upstream_rq_pending_overflow (Envoy counts the requests breaker there)" 1 "$(stat cbr upstream_rq_pending_overflow)"

# ---- still serving ----------------------------------------------------------------
check "tern still serves" "200 ok" "$(req /ok)"
if kill -0 "$TN_TERN_PID" 2>/dev/null; then tn_pass "tern is alive"; else tn_fail "tern is alive" "exited"; fi
stop_tern
it_sanitizers
tn_summary
