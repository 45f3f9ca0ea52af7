#!/bin/sh
# HTTP/2 from clients (h2c, prior knowledge) through tern, end to end, with
# real clients: curl --http2-prior-knowledge, h2load, nghttp and a raw
# python3-h2 client (h2_client.py). codec_type AUTO (the preface chooses),
# HTTP1 (the preface is a bad request) and HTTP2; GET, a 10 MB POST (sha256
# checked by the origin) through the default windows and through 64 KB
# ones, many streams on one connection, cookie crumbs joined, the origin's
# trailers and 103 Early Hints, http2_protocol_options in SETTINGS, a client
# reset cancelling the upstream request, too many headers (RST_STREAM),
# the access log's %PROTOCOL%, Envoy's stats, GOAWAY on SIGTERM with a
# request in flight that finishes.
#
#   proxy_h2.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

if ! curl --version | grep -q HTTP2; then
    tn_skip "HTTP/2 from clients" "curl without HTTP/2"
    tn_summary
fi

set -- $(free_port 6)
o=$1 f=$2 f1=$3 f2=$4 admin=$5 bad=$6
start_origin web "$o" || { tn_fail "origin starts" "see above"; tn_summary; }
tn_spawn "$TN_TMP/bad_origin" "$TN_PYTHON" "$TN_SRC/tests/origin/bad_origin.py" "$bad"
wait_port "$bad" || { tn_fail "bad_origin starts" "not listening on $bad"; tn_summary; }
alog=$TN_TMP/access.log

routes="$(it_route_direct /direct 200 direct), $(it_route_cluster /bad/ bad 'prefix_rewrite: "/",'), $(it_route_cluster / web)"
rc=$(it_rc "$(it_vhost all '"*"' "$routes")")
L=$(it_listener front "$f" "$rc" "$(it_alog "$alog" '%PROTOCOL% %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%')")
L1=$(it_listener h1only "$f1" "$rc" "codec_type: HTTP1,")
L2=$(it_listener h2only "$f2" "$rc" \
    "codec_type: HTTP2, max_request_headers_kb: 8, common_http_protocol_options: {idle_timeout: 0.5s}, http2_protocol_options: {max_concurrent_streams: 10, initial_stream_window_size: 65535, initial_connection_window_size: 65535, hpack_table_size: 0},")
printf '{admin: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}, static_resources: {listeners: [%s], clusters: [%s]}}\n' \
    "$admin" "$L, $L1, $L2" "$(it_cluster web "127.0.0.1:$o"), $(it_cluster bad "127.0.0.1:$bad")" >"$TN_TMP/h2.yaml"
# one worker: the stats of one connection are the listener's
it_start "$TN_TMP/h2.yaml" "$f" --concurrency 1
wait_port "$f2" || tn_fail "HTTP2 listener" "not listening on $f2"
base=http://127.0.0.1:$f

# forget_tern: tern was reaped by hand; drop it from the cleanup list.
forget_tern() {
    ft_new=
    for p in $TN_PIDS; do
        [ "$p" = "$TN_TERN_PID" ] || ft_new="$ft_new $p"
    done
    TN_PIDS=$ft_new
    TN_TERN_PID=
}
# exited_within PID SECONDS: true when PID is gone (or a zombie) in time.
exited_within() {
    ew_n=0
    while [ $ew_n -lt $(($2 * 10)) ]; do
        if ! kill -0 "$1" 2>/dev/null || tn_is_zombie "$1"; then
            return 0
        fi
        sleep 0.1
        ew_n=$((ew_n + 1))
    done
    return 1
}
stat() {
    tn_curl "http://127.0.0.1:$admin/stats" | grep "^$1: " | sed 's/.*: //'
}
h2curl() {
    curl -s --http2-prior-knowledge --max-time 30 "$@"
}

check_not_contains "no 'serves HTTP/1.1 until HTTP/2' warning" "until HTTP/2 arrives" "$(cat "$TN_TMP/tern.log")"

# ---- GET -------------------------------------------------------------------------------
out=$(h2curl -D "$TN_TMP/h" -H 'x-custom: yes' -H 'cookie: a=1' -H 'cookie: b=2' "$base/hello?x=1")
check "GET: HTTP/2 200" "HTTP/2 200" "$(head -n 1 "$TN_TMP/h" | tr -d '\r' | sed 's/ *$//')"
check "GET: the origin saw the path" "/hello?x=1" "$(echo "$out" | json_get path)"
check "GET: :authority became Host" "127.0.0.1:$f" "$(echo "$out" | json_get headers.host)"
check "GET: headers go through" yes "$(echo "$out" | json_get headers.x-custom)"
check "GET: cookie crumbs joined with '; '" "a=1; b=2" "$(echo "$out" | json_get headers.cookie)"
check "GET: x-forwarded-proto from :scheme" http "$(echo "$out" | json_get headers.x-forwarded-proto)"
check "GET: no content-length invented upstream" "" "$(echo "$out" | json_get headers.content-length)"
check_contains "GET: server header" "server: tern" "$(cat "$TN_TMP/h")"
check "direct response over HTTP/2" direct "$(h2curl "$base/direct")"
check "HEAD: 200, no body" "200 0" "$(h2curl -I -o /dev/null -w '%{http_code} %{size_download}' "$base/hello")"
check "the same listener serves HTTP/1.1 (AUTO)" web "$(tn_curl "$base/h1" | json_get name)"

# ---- a 10 MB POST ----------------------------------------------------------------------
head -c 10485760 /dev/urandom >"$TN_TMP/big"
want=$(sha256sum <"$TN_TMP/big" | cut -d' ' -f1)
out=$(h2curl --max-time 60 --data-binary @"$TN_TMP/big" "$base/upload")
check "POST 10 MB: the origin got every byte" "10485760 $want" "$(echo "$out" | json_get body_len) $(echo "$out" | json_get body_sha256)"
check "POST 10 MB: content-length forwarded" 10485760 "$(echo "$out" | json_get headers.content-length)"
# 64 KB windows: tern opens them as the upstream takes the bytes
out=$(h2curl --max-time 60 --data-binary @"$TN_TMP/big" "http://127.0.0.1:$f2/upload")
check "POST 10 MB through 64 KB windows (codec_type HTTP2)" "10485760 $want" "$(echo "$out" | json_get body_len) $(echo "$out" | json_get body_sha256)"
out=$(head -c 300000 "$TN_TMP/big" | h2curl -H 'content-length:' --data-binary @- "$base/upload")
check "POST without content-length: 300000 bytes" 300000 "$(echo "$out" | json_get body_len)"
code=$(h2curl -o "$TN_TMP/down" -w '%{http_code}' "$base/down?size=5000000")
check "GET 5 MB: 200" 200 "$code"
check "GET 5 MB: all bytes" 5000000 "$(wc -c <"$TN_TMP/down" | tr -d ' ')"

# ---- many streams on one connection ---------------------------------------------------
cx0=$(stat http.front.downstream_cx_http2_total)
if command -v h2load >/dev/null; then
    out=$(h2load -n 200 -c 1 -m 50 "$base/many?delay_ms=50" 2>&1)
    check_contains "h2load: 200 requests, 50 at a time, on one connection" "200 succeeded, 0 failed, 0 errored" "$out"
    check_contains "h2load: all 2xx" "status codes: 200 2xx" "$out"
    check "h2load: one connection" $((cx0 + 1)) "$(stat http.front.downstream_cx_http2_total)"
else
    tn_skip "h2load" "nghttp2-client is not installed (tools/install-deps)"
fi
if command -v nghttp >/dev/null; then
    out=$(nghttp -n -s "$base/n1" "$base/n2" "$base/n3" "$base/n4" 2>&1)
    check "nghttp: four URLs, four 200 streams" 4 "$(printf '%s\n' "$out" | grep -c ' 200 ')"
fi
# the origin's trailers (chunked HTTP/1.1) reach the HTTP/2 client after the last DATA
if command -v nghttp >/dev/null; then
    out=$(nghttp -nv "$base/tr?trailer=x-checksum:abc&size=100000" 2>&1 | tr -d '\n')
    check_match "trailers: x-checksum in a HEADERS frame that ends the stream, after the body" \
        "recv DATA frame <length=[0-9]*, flags=0x00.*x-checksum: abc.*recv HEADERS frame <length=[0-9]*, flags=0x05" "$out"
fi
# 103 Early Hints from the origin: an interim HEADERS before the answer
if command -v nghttp >/dev/null; then
    out=$(nghttp -v "$base/bad/early" 2>&1 | tr -d '\n')
    check_match "103 Early Hints: interim HEADERS with its link, then 200" \
        ":status: 103.*link: </style.css>; rel=preload.*:status: 200" "$out"
fi
# max_concurrent_streams 10 on the HTTP2 listener: SETTINGS say so
if command -v nghttp >/dev/null; then
    out=$(nghttp -v "http://127.0.0.1:$f2/s" 2>&1)
    check_contains "http2_protocol_options: SETTINGS_MAX_CONCURRENT_STREAMS" "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):10" "$out"
    check_contains "http2_protocol_options: SETTINGS_INITIAL_WINDOW_SIZE" "SETTINGS_INITIAL_WINDOW_SIZE(0x04):65535" "$out"
    check_contains "http2_protocol_options: SETTINGS_HEADER_TABLE_SIZE" "SETTINGS_HEADER_TABLE_SIZE(0x01):0" "$out"
fi

# ---- codec_type ------------------------------------------------------------------------
out=$(printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' | it_raw "$f1" 5)
check_match "codec_type HTTP1: the preface is a bad request (400)" "^HTTP/1.1 400" "$out"
check "codec_type HTTP1: HTTP/1.1 served" web "$(tn_curl "http://127.0.0.1:$f1/a" | json_get name)"
check "codec_type HTTP2: HTTP/2 served" 200 "$(h2curl -o /dev/null -w '%{http_code}' "http://127.0.0.1:$f2/a")"
code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$f2/a")
check "codec_type HTTP2: an HTTP/1.1 request gets no HTTP/1.1 answer" 000 "$code"

# ---- a client reset cancels the upstream request ---------------------------------------
if "$TN_PYTHON" -c 'import h2' 2>/dev/null; then
    tx0=$(stat cluster.web.upstream_rq_tx_reset)
    out=$("$TN_PYTHON" "$TN_SRC/tests/integration/h2_client.py" --port "$f" reset "/slow?delay_ms=3000" --after-ms 300 2>&1)
    check_contains "reset: sent" "reset sent" "$out"
    n=0
    while [ $n -lt 50 ] && [ "$(stat http2.rx_reset)" != 1 ]; do sleep 0.1; n=$((n + 1)); done
    check "reset: http2.rx_reset" 1 "$(stat http2.rx_reset)"
    check "reset: downstream_rq_rx_reset" 1 "$(stat http.front.downstream_rq_rx_reset)"
    check "reset: the router cancelled the upstream request" $((tx0 + 1)) "$(stat cluster.web.upstream_rq_tx_reset)"
    check "reset: the stream is gone (streams_active)" 0 "$(stat http2.streams_active)"
else
    tn_skip "client reset" "python3-h2 is not installed"
fi

# ---- too many headers: RST_STREAM, as Envoy -------------------------------------------
hs=
i=0
while [ $i -lt 120 ]; do
    hs="$hs -H x-h$i:v"
    i=$((i + 1))
done
# shellcheck disable=SC2086
out=$(h2curl $hs -o /dev/null -w '%{http_code} %{errormsg}' "$base/many-headers" 2>&1)
check_contains "too many headers: the stream is reset" "not closed cleanly" "$out"
check "too many headers: http2.too_many_headers" 1 "$(stat http2.too_many_headers)"
check "too many headers: the connection goes on" 200 "$(h2curl -o /dev/null -w '%{http_code}' "$base/after")"
# (on the listener with max_request_headers_kb 8: nghttp2 itself refuses
# header blocks over 64 KB with REFUSED_STREAM, before tern sees them)
big=$(head -c 1000 /dev/zero | tr '\0' a)
hs=
i=0
while [ $i -lt 10 ]; do
    hs="$hs -H x-b$i:$big"
    i=$((i + 1))
done
# shellcheck disable=SC2086
out=$(h2curl $hs -o /dev/null -w '%{http_code} %{errormsg}' "http://127.0.0.1:$f2/big-header" 2>&1)
check_contains "headers over max_request_headers_kb: reset" "not closed cleanly" "$out"
check "headers over max_request_headers_kb: http2.header_overflow (with the count's, as Envoy)" 2 "$(stat http2.header_overflow)"
# connection-specific headers are refused (nghttp2's checks; curl drops them, h2_client does not)
if "$TN_PYTHON" -c 'import h2' 2>/dev/null; then
    out=$("$TN_PYTHON" "$TN_SRC/tests/integration/h2_client.py" --port "$f" get /conn-specific --header "te:gzip" 2>&1)
    check_contains "TE other than trailers: the stream is reset (PROTOCOL_ERROR)" "reset 1" "$out"
    out=$("$TN_PYTHON" "$TN_SRC/tests/integration/h2_client.py" --port "$f2" get /idle 2>&1)
    check "idle timeout: GOAWAY (NO_ERROR, last stream 1) after the request" "status 200
goaway 1 0" "$out"
    check "idle timeout: counted" 1 "$(stat http.h2only.downstream_cx_idle_timeout)"
fi

# ---- stats and the access log ------------------------------------------------------------
check "downstream_cx_http1_total counts the HTTP/1.1 connection" 1 "$(stat http.front.downstream_cx_http1_total)"
n=$(stat http.front.downstream_rq_http2_total)
if [ "${n:-0}" -ge 200 ]; then tn_pass "downstream_rq_http2_total counts HTTP/2 requests ($n)"; else tn_fail "downstream_rq_http2_total" "$n"; fi
check "downstream_cx_http2_active: none left" 0 "$(stat http.front.downstream_cx_http2_active)"
check "http2.tx_reset counts RST_STREAM sent (three refusals)" 3 "$(stat http2.tx_reset)"
check "http2.rx_reset counts only the client's reset" 1 "$(stat http2.rx_reset)"
n=0
while [ $n -lt 50 ] && ! grep -q '/hello?x=1' "$alog" 2>/dev/null; do sleep 0.1; n=$((n + 1)); done
check "access log: %PROTOCOL% is HTTP/2" "HTTP/2 GET /hello?x=1 200 -" "$(grep -F '/hello?x=1' "$alog" | head -n 1)"
check "access log: HTTP/1.1 on the same listener" "HTTP/1.1 GET /h1 200 -" "$(grep -F ' /h1 ' "$alog" | head -n 1)"
check "access log: the client reset (DC)" "HTTP/2 GET /slow?delay_ms=3000 - DC" "$(grep -F '/slow' "$alog" | head -n 1 | sed 's/ 0 DC/ - DC/')"

# ---- GOAWAY on SIGTERM, the request in flight finishes ---------------------------------
if command -v nghttp >/dev/null; then
    nghttp -v "$base/drain?delay_ms=1500" >"$TN_TMP/drain.out" 2>&1 &
    cpid=$!
    n=0
    while [ $n -lt 100 ] && ! grep -q ' /drain' "$(origin_log web)"; do sleep 0.05; n=$((n + 1)); done
    kill -TERM "$TN_TERN_PID"
    wait "$cpid"
    out=$(cat "$TN_TMP/drain.out")
    check_match "drain: GOAWAY (NO_ERROR) with the request's stream as the last" "recv GOAWAY frame.*last_stream_id=13, error_code=NO_ERROR" "$(printf '%s\n' "$out" | tr -d '\n')"
    check_contains "drain: the request in flight finishes" ":status: 200" "$out"
    if exited_within "$TN_TERN_PID" 30; then
        wait "$TN_TERN_PID"
        check "drain: tern exits 0" 0 "$?"
    else
        tn_fail "drain: tern exits" "still running"
        kill -KILL "$TN_TERN_PID"
    fi
    forget_tern
fi
it_sanitizers
tn_summary
