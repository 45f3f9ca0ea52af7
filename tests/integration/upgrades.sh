#!/bin/sh
# HTTP/1.1 upgrades and interim answers through tern: a real WebSocket client
# (Debian's python3-websockets) talks to a real WebSocket echo server through
# HCM upgrade_configs (text, a 5 MB binary message, a close from each side);
# through the cache filter, which never stores one; a route that turns the
# upgrade off, and a listener without upgrade_configs,
# send the origin a plain request without Upgrade (Envoy's behaviour); the
# upgrade stats and access log; 103 Early Hints reaching curl before the
# answer, an unasked-for 100 dropped, a 101 nobody asked for a 503 UPE.
#
#   upgrades.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

if ! "$TN_PYTHON" -c 'import websockets' 2>/dev/null; then
    tn_fail "python3-websockets is installed" "tools/install-deps installs it"
    tn_summary
fi

set -- $(free_port 6)
ws=$1 web=$2 bad=$3 f=$4 f2=$5 adm=$6
tn_spawn "$TN_TMP/ws_echo" "$TN_PYTHON" "$TN_SRC/tests/origin/ws_echo.py" "$ws" "$TN_TMP/ws.log"
tn_spawn "$TN_TMP/bad_origin" "$TN_PYTHON" "$TN_SRC/tests/origin/bad_origin.py" "$bad"
start_origin web "$web" || { tn_fail "origin starts" "see above"; tn_summary; }
wait_port "$ws" || { tn_fail "ws_echo starts" "not listening on $ws"; tn_summary; }
wait_port "$bad" || { tn_fail "bad_origin starts" "not listening on $bad"; tn_summary; }
alog=$TN_TMP/access.log

rt() { it_route_cluster "$@"; }
routes="
    $(rt /ws ws 'timeout: 2s,'),
    $(rt /off web 'upgrade_configs: [{upgrade_type: websocket, enabled: false}],'),
    $(rt /bad/ bad 'timeout: 2s, prefix_rewrite: "/",'),
    $(rt / web)"
# the front listener runs the cache before the router: an upgrade passes it
# untouched (never stored)
cache='{name: envoy.filters.http.cache, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cache.v3.CacheConfig,
  typed_config: {"@type": type.googleapis.com/envoy.extensions.http.cache.simple_http_cache.v3.SimpleHttpCacheConfig}}}'
router_only=$IT_ROUTER
IT_ROUTER="$cache, $IT_ROUTER"
L1=$(it_listener front "$f" "$(it_rc "$(it_vhost all '"*"' "$routes")")" \
    "upgrade_configs: [{upgrade_type: WebSocket}], stream_idle_timeout: 30s, $(it_alog "$alog" '%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT%')")
IT_ROUTER=$router_only
L2=$(it_listener noupg "$f2" "$(it_rc "$(it_vhost all '"*"' "$(rt / web)")")")
C="$(it_cluster ws "127.0.0.1:$ws"), $(it_cluster web "127.0.0.1:$web"), $(it_cluster bad "127.0.0.1:$bad")"
printf '{admin: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}, static_resources: {listeners: [%s, %s], clusters: [%s]}}\n' \
    "$adm" "$L1" "$L2" "$C" >"$TN_TMP/upg.yaml"
it_start "$TN_TMP/upg.yaml" "$f" --concurrency 2
wait_port "$f2" || tn_fail "second listener" "not listening on $f2"

client() { "$TN_PYTHON" "$TN_SRC/tests/tools/ws_client.py" "$@" 2>&1; }
wslog() { cat "$TN_TMP/ws.log" 2>/dev/null; }

# ---- WebSocket through upgrade_configs ----------------------------------------
out=$(client "ws://127.0.0.1:$f/ws/echo" echo)
check_match "WebSocket: text and a 5 MB binary message echoed unchanged" '^echo ok [0-9a-f]{16}$' "$out"
sleep 0.3
check_contains "the echo server saw the upgrade" '["open", "/ws/echo", "websocket"]' "$(wslog)"
check_contains "the client's close reached the server (1000)" '["closed", "/ws/echo", 1000]' "$(wslog)"
out=$(client "ws://127.0.0.1:$f/ws/echo" echo)
check_match "WebSocket: the same URL again is a tunnel again (nothing cached)" '^echo ok [0-9a-f]{16}$' "$out"
out=$(client "ws://127.0.0.1:$f/ws/bye" server-close)
check "the server's close reached the client (1000 bye)" "closed by server 1000 bye" "$out"
sleep 0.3
check_contains "access log: the upgrade as 101, 5 MB each way" "/ws/echo 101 - " "$(cat "$alog")"
big=$(grep -m1 '^/ws/echo 101' "$alog" | awk '{print ($4 > 5000000 && $5 > 5000000) ? "yes" : "no: " $0}')
check "access log: bytes received and sent counted in the tunnel" yes "$big"
stats=$(tn_curl "http://127.0.0.1:$adm/stats")
check "http.front.downstream_cx_upgrades_total" 3 "$(echo "$stats" | sed -n 's/^http\.front\.downstream_cx_upgrades_total: //p')"
check "http.front.downstream_cx_upgrades_active back to 0" 0 "$(echo "$stats" | sed -n 's/^http\.front\.downstream_cx_upgrades_active: //p')"

# ---- upgrades not enabled go as plain requests ----------------------------------
hdrs='-H Connection:Upgrade -H Upgrade:websocket -H Sec-WebSocket-Version:13 -H Sec-WebSocket-Key:dGhlIHNhbXBsZSBub25jZQ=='
out=$(tn_curl $hdrs "http://127.0.0.1:$f/off/x")
check "route turns the upgrade off: the origin answers a plain GET" /off/x "$(echo "$out" | json_get path)"
check "route turns the upgrade off: no Upgrade reaches the origin" "" "$(it_origin_hdr "$out" upgrade)"
out=$(tn_curl $hdrs "http://127.0.0.1:$f2/y")
check "no upgrade_configs: the origin answers a plain GET" /y "$(echo "$out" | json_get path)"
check "no upgrade_configs: no Upgrade reaches the origin" "" "$(it_origin_hdr "$out" upgrade)"
check "no upgrade_configs: no Connection: upgrade reaches the origin" "" "$(it_origin_hdr "$out" connection)"
out=$(client "ws://127.0.0.1:$f2/ws" echo)
check_match "no upgrade_configs: a WebSocket client is refused (the origin's 200, not 101)" '^error: status 200' "$out"

# ---- interim answers --------------------------------------------------------------
out=$(curl -sS -v --max-time 5 "http://127.0.0.1:$f/bad/early" 2>&1)
check_contains "103 Early Hints reaches curl" "< HTTP/1.1 103 Early Hints" "$out"
check_contains "103 carries its Link header" "< link: </style.css>; rel=preload" "$out"
check_contains "then the answer" "< HTTP/1.1 200 OK" "$out"
check "the answer's body" ok "$(echo "$out" | tail -1)"
out=$(printf 'GET /bad/early HTTP/1.0\r\nHost: a\r\n\r\n' | it_raw "$f" 5 | tr -d '\r')
check_not_contains "no 1xx to an HTTP/1.0 client" "103" "$(echo "$out" | head -1)"
out=$(curl -sS -v --max-time 5 "http://127.0.0.1:$f/bad/continue" 2>&1)
check_not_contains "an unasked-for 100 Continue is not passed on" "< HTTP/1.1 100" "$out"
check_contains "its answer is" "< HTTP/1.1 200 OK" "$out"
check "a 101 nobody asked for: 503" 503 "$(http_status "http://127.0.0.1:$f/bad/switch")"
n=0
while [ $n -lt 30 ] && ! grep -q '^/bad/switch' "$alog"; do sleep 0.1; n=$((n + 1)); done # logs flush once a second
check_contains "a 101 nobody asked for: UPE" "/bad/switch 503 UPE" "$(cat "$alog")"

check "tern still serves" 200 "$(http_status "http://127.0.0.1:$f/after")"
it_sanitizers
stop_tern
check "tern exits 0 on SIGTERM" 0 "$TN_RC"
tn_summary
