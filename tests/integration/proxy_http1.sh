#!/bin/sh
# HTTP/1.1 through tern, end to end: keep-alive, pipelining, chunked and
# Content-Length bodies both ways, 100 MB up and down with sha256 checks,
# Expect: 100-continue, HEAD, Connection: close, hop-by-hop headers, the
# absolute form, Host; malformed input (400, 431), request-header and idle
# timeouts; the headers Envoy adds (x-forwarded-for/-proto, x-request-id,
# x-envoy-upstream-service-time, server, date).
#
#   proxy_http1.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

set -- $(free_port 3)
o=$1 f=$2 f2=$3
start_origin web "$o" || { tn_fail "origin starts" "see above"; tn_summary; }

routes="$(it_route_cluster / web)"
L1=$(it_listener front "$f" "$(it_rc "$(it_vhost all '"*"' "$routes")")" \
    "use_remote_address: true, request_headers_timeout: 1s,")
L2=$(it_listener named "$f2" "$(it_rc "$(it_vhost all '"*"' "$routes")")" "server_name: foo, via: tern-edge, common_http_protocol_options: {idle_timeout: 2s},")
it_config "$TN_TMP/h1.yaml" "$L1, $L2" "$(it_cluster web "127.0.0.1:$o")"
it_start "$TN_TMP/h1.yaml" "$f" --concurrency 2
wait_port "$f2" || tn_fail "second listener" "not listening on $f2"
base=http://127.0.0.1:$f

# ---- basics ------------------------------------------------------------------

out=$(tn_curl "$base/hello?x=1")
check "GET reaches the origin" web "$(echo "$out" | json_get name)"
check "origin sees the path and query" "/hello?x=1" "$(echo "$out" | json_get path)"
check "Host forwarded" "127.0.0.1:$f" "$(echo "$out" | json_get headers.host)"
out=$(tn_curl -H 'Host: example.com:1234' "$base/")
check "client Host forwarded unchanged" "example.com:1234" "$(echo "$out" | json_get headers.host)"

# Keep-alive: one curl, two URLs, one connection.
err=$(curl -sS -v --max-time 10 -o /dev/null -o /dev/null "$base/a" "$base/b" 2>&1)
check_match "keep-alive: curl re-uses the connection" "Re-using existing connection|Reusing existing connection" "$err"
check "keep-alive: one connection opened" 1 "$(printf '%s\n' "$err" | grep -c 'Connected to')"

# Pipelining: three requests in one write, three responses in order.
out=$(printf 'GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a\r\n\r\nGET /p3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' | it_raw "$f" 10)
check "pipelining: three responses" 3 "$(printf '%s\n' "$out" | grep -c '^HTTP/1.1 200')"
order=$(printf '%s\n' "$out" | grep -o '"path": "/p[123]"' | tr -d '\n')
check "pipelining: in order" '"path": "/p1""path": "/p2""path": "/p3"' "$order"
check_contains "pipelining: closed after Connection: close" "#closed" "$out"

# Content-Length request body.
printf 'hello world' >"$TN_TMP/small"
out=$(tn_curl --data-binary @"$TN_TMP/small" "$base/upload")
check "Content-Length body: length" 11 "$(echo "$out" | json_get body_len)"
check "Content-Length body: content" "hello world" "$(echo "$out" | json_get body)"
check "Content-Length body: origin sees content-length" 11 "$(echo "$out" | json_get headers.content-length)"

# Chunked request body.
head -c 300000 /dev/urandom >"$TN_TMP/up300k"
out=$(tn_curl -H 'Transfer-Encoding: chunked' -H 'Expect:' --data-binary @"$TN_TMP/up300k" "$base/upload")
check "chunked request body: length" 300000 "$(echo "$out" | json_get body_len)"
check "chunked request body: sha256" "$(sha256sum <"$TN_TMP/up300k" | cut -c1-64)" "$(echo "$out" | json_get body_sha256)"

# Chunked response.
tn_curl -D "$TN_TMP/h" -o "$TN_TMP/b" "$base/c?size=200000&chunked=1"
hdr=$(tr -d '\r' <"$TN_TMP/h")
check_contains "chunked response: transfer-encoding chunked" "transfer-encoding: chunked" "$(echo "$hdr" | tr 'A-Z' 'a-z')"
check "chunked response: sha256" "$(echo "$hdr" | sed -n 's/^x-body-sha256: //p')" "$(sha256sum <"$TN_TMP/b" | cut -c1-64)"

# Content-Length response.
tn_curl -D "$TN_TMP/h" -o "$TN_TMP/b" "$base/c?size=200000"
hdr=$(tr -d '\r' <"$TN_TMP/h" | tr 'A-Z' 'a-z')
check_contains "Content-Length response: header kept" "content-length: 200000" "$hdr"
check "Content-Length response: size" 200000 "$(wc -c <"$TN_TMP/b" | tr -d ' ')"

# 100 MB down and up.
TN_CURL_TIMEOUT=120
size=104857600
tn_curl -D "$TN_TMP/h" -o "$TN_TMP/big" "$base/big?size=$size"
check "100 MB download: size" "$size" "$(wc -c <"$TN_TMP/big" | tr -d ' ')"
check "100 MB download: sha256" "$(tr -d '\r' <"$TN_TMP/h" | sed -n 's/^x-body-sha256: //p')" "$(sha256sum <"$TN_TMP/big" | cut -c1-64)"
out=$(tn_curl -H 'Expect:' --data-binary @"$TN_TMP/big" "$base/upload" 2>"$TN_TMP/upload.err")
[ -n "$out" ] || { echo "# upload: $(cat "$TN_TMP/upload.err")"; tail -5 "$TN_TMP/tern.log"; }
check "100 MB upload: length" "$size" "$(echo "$out" | json_get body_len)"
check "100 MB upload: sha256" "$(sha256sum <"$TN_TMP/big" | cut -c1-64)" "$(echo "$out" | json_get body_sha256)"
rm -f "$TN_TMP/big"
TN_CURL_TIMEOUT=10

# Expect: 100-continue (curl waits for the 100 before sending the body).
head -c 2000000 /dev/urandom >"$TN_TMP/up2m"
err=$(curl -sS -v --max-time 20 --expect100-timeout 8 -H 'Expect: 100-continue' --data-binary @"$TN_TMP/up2m" \
    -o "$TN_TMP/b" "$base/upload" 2>&1)
check_contains "Expect: 100-continue: client gets 100 Continue" "HTTP/1.1 100" "$err"
check "Expect: 100-continue: body arrives" "$(sha256sum <"$TN_TMP/up2m" | cut -c1-64)" "$(json_get body_sha256 <"$TN_TMP/b")"

# HEAD: no body, content-length preserved.
out=$(printf 'HEAD /h?size=12345 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' | it_raw "$f" 10 | tr -d '\r')
check_match "HEAD: 200" "^HTTP/1.1 200" "$out"
check_contains "HEAD: content-length preserved" "content-length: 12345" "$(echo "$out" | tr 'A-Z' 'a-z')"
check "HEAD: no body" "" "$(printf '%s\n' "$out" | sed '1,/^$/d' | grep -v '^#closed$')"

# Connection: close honoured.
out=$(printf 'GET /cc HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' | it_raw "$f" 10 | tr -d '\r')
check_match "Connection: close: 200" "^HTTP/1.1 200" "$out"
check_contains "Connection: close: tern closes" "#closed" "$out"
check_contains "Connection: close: response says close" "connection: close" "$(echo "$out" | tr 'A-Z' 'a-z')"

# Hop-by-hop headers are not forwarded.
out=$(tn_curl -H 'Connection: x-foo' -H 'x-foo: 1' -H 'Keep-Alive: timeout=5' -H 'x-bar: 2' "$base/hop")
hdrs=$(echo "$out" | json_get headers)
check_not_contains "hop-by-hop: x-foo (named by Connection) dropped" '"x-foo"' "$hdrs"
check_not_contains "hop-by-hop: keep-alive dropped" '"keep-alive"' "$hdrs"
check_not_contains "hop-by-hop: the client's Connection value not forwarded" 'x-foo' "$(echo "$out" | json_get headers.connection)"
check "hop-by-hop: an end-to-end header is forwarded" 2 "$(echo "$out" | json_get headers.x-bar)"

# Absolute-form request target.
out=$(printf 'GET http://abs.example:%s/path?q=1 HTTP/1.1\r\nHost: abs.example:%s\r\nConnection: close\r\n\r\n' "$f" "$f" | it_raw "$f" 10 | tr -d '\r')
body=$(printf '%s\n' "$out" | sed '1,/^$/d' | grep -v '^#closed$')
check_match "absolute form: 200" "^HTTP/1.1 200" "$out"
check "absolute form: origin sees the path" "/path?q=1" "$(echo "$body" | json_get path)"
check "absolute form: Host from the target" "abs.example:$f" "$(echo "$body" | json_get headers.host)"

# Request trailers: Envoy's HTTP/1 codec drops them unless enable_trailers;
# the body still arrives.
out=$(printf 'POST /tr HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n' | it_raw "$f" 10 | tr -d '\r')
body=$(printf '%s\n' "$out" | sed '1,/^$/d' | grep -v '^#closed$')
check "chunked request with trailers: body" abc "$(echo "$body" | json_get body)"
check "chunked request with trailers: trailers not forwarded" "" "$(echo "$body" | json_get trailers)"

# The origin closing after its response does not end the client's connection.
err=$(curl -sS -v --max-time 10 -o /dev/null -o /dev/null "$base/ca?close_after=1" "$base/cb" 2>&1)
check "origin closes after a response: both requests 200" 2 "$(printf '%s\n' "$err" | grep -c '< HTTP/1.1 200')"
check "origin closes after a response: the client connection is kept" 1 "$(printf '%s\n' "$err" | grep -c 'Connected to')"

# 204 and 304 from the origin: no body.
out=$(printf 'GET /n?status=204 HTTP/1.1\r\nHost: a\r\n\r\nGET /m?status=304 HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' | it_raw "$f" 10 | tr -d '\r')
check_match "204 from the origin" "^HTTP/1.1 204" "$out"
check_match "304 from the origin" "^HTTP/1.1 304" "$out"
check "204 and 304 carry no body: the next response follows" 1 "$(printf '%s\n' "$out" | grep -c '"path": "/after"')"

# Percent-encoding in the path is passed on as sent.
out=$(tn_curl "$base/a%20b/%2Fc?q=%41")
check "percent-encoded path kept" "/a%20b/%2Fc?q=%41" "$(echo "$out" | json_get path)"

# Without use_remote_address, x-forwarded-for is passed on unchanged.
out=$(tn_curl -H 'x-forwarded-for: 1.2.3.4' "http://127.0.0.1:$f2/xff")
check "x-forwarded-for unchanged without use_remote_address" "1.2.3.4" "$(echo "$out" | json_get headers.x-forwarded-for)"

# ---- headers Envoy adds --------------------------------------------------------

out=$(tn_curl -H 'x-forwarded-for: 1.2.3.4' "$base/xff")
check "x-forwarded-for appended (use_remote_address)" "1.2.3.4, 127.0.0.1" "$(echo "$out" | json_get headers.x-forwarded-for)"
out=$(tn_curl "$base/xff")
check "x-forwarded-for set when absent" "127.0.0.1" "$(echo "$out" | json_get headers.x-forwarded-for)"
check "x-forwarded-proto http" http "$(echo "$out" | json_get headers.x-forwarded-proto)"
check_match "x-request-id generated (UUID v4)" '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' \
    "$(echo "$out" | json_get headers.x-request-id)"
out=$(tn_curl -H 'x-request-id: my-id-42' "$base/rid")
check "x-request-id kept when present (internal client)" my-id-42 "$(echo "$out" | json_get headers.x-request-id)"

# Envoy marks internal requests (use_remote_address, loopback client) with
# x-envoy-internal: true, and its router honours the x-envoy-* control
# headers of internal requests.
out=$(tn_curl "$base/internal")
check "x-envoy-internal: true on an internal request" true "$(echo "$out" | json_get headers.x-envoy-internal)"
check "x-envoy-upstream-rq-timeout-ms honoured: 504" 504 \
    "$(http_status "$base/rqt?delay_ms=3000" -H 'x-envoy-upstream-rq-timeout-ms: 500')"
check "x-envoy-retry-on 5xx + x-envoy-max-retries 2: 200" 200 \
    "$(http_status "$base/xr?fail_first=2&key=XR" -H 'x-envoy-retry-on: 5xx' -H 'x-envoy-max-retries: 2')"

hdr=$(tn_curl -D - -o /dev/null "$base/resp" | tr -d '\r' | tr 'A-Z' 'a-z')
check_match "x-envoy-upstream-service-time in the response" '^x-envoy-upstream-service-time: [0-9]+$' "$hdr"
check_match "server: tern" '^server: tern$' "$hdr"
check_match "date present" '^date: [a-z]{3}, [0-9]{2} [a-z]{3} [0-9]{4} [0-9:]{8} gmt$' "$hdr"
hdr=$(tn_curl -D - -o /dev/null "http://127.0.0.1:$f2/resp" | tr -d '\r' | tr 'A-Z' 'a-z')
check_match "server_name: foo -> server: foo" '^server: foo$' "$hdr"
check "via: added to the response" "via: tern-edge" "$(echo "$hdr" | grep '^via:')"
hdr=$(tn_curl -D - -o /dev/null "http://127.0.0.1:$f2/resp?hdr=via:1.1%20origin" | tr -d '\r' | tr 'A-Z' 'a-z')
check "via: appended to the upstream's" "via: 1.1 origin, tern-edge" "$(echo "$hdr" | grep '^via:')"
out=$(tn_curl -H 'Via: 1.1 proxy-a' "http://127.0.0.1:$f2/req")
check "via: appended to the request's" "1.1 proxy-a, tern-edge" "$(echo "$out" | json_get headers.via)"
# An origin's own server header is replaced (Envoy's server_header_transformation OVERWRITE).
hdr=$(tn_curl -D - -o /dev/null "$base/srv?hdr=server:origin" | tr -d '\r' | tr 'A-Z' 'a-z')
check "the origin's server header is overwritten" "server: tern" "$(echo "$hdr" | grep '^server:')"

# ---- bad input -----------------------------------------------------------------

out=$(printf 'GARBAGE\r\n\r\n' | it_raw "$f" 10 | tr -d '\r')
check_match "malformed request: 400" "^HTTP/1.1 400" "$out"
check_contains "malformed request: connection closed" "#closed" "$out"

out=$("$TN_PYTHON" -c 'import sys; sys.stdout.write("GET / HTTP/1.1\r\nHost: a\r\n" + "".join("x-big-%d: %s\r\n" % (i, "v" * 1000) for i in range(62)) + "\r\n")' | it_raw "$f" 10 | tr -d '\r')
check_match "headers over 60 KB: 431" "^HTTP/1.1 431" "$out"
check_contains "headers over 60 KB: connection closed" "#closed" "$out"
out=$("$TN_PYTHON" -c 'import sys; sys.stdout.write("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + "".join("x-big-%d: %s\r\n" % (i, "v" * 1000) for i in range(50)) + "\r\n")' | it_raw "$f" 10 | tr -d '\r')
check_match "headers of 50 KB: accepted" "^HTTP/1.1 200" "$out"

out=$(printf 'POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' | it_raw "$f" 10 | tr -d '\r')
check_match "Content-Length and Transfer-Encoding: 400" "^HTTP/1.1 400" "$out"
check_contains "Content-Length and Transfer-Encoding: closed" "#closed" "$out"

out=$(printf 'POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!' | it_raw "$f" 10 | tr -d '\r')
check_match "two different Content-Length: 400" "^HTTP/1.1 400" "$out"
check_contains "two different Content-Length: closed" "#closed" "$out"

out=$(printf 'GET /nohost HTTP/1.1\r\n\r\n' | it_raw "$f" 10 | tr -d '\r')
check_match "HTTP/1.1 without Host: 400" "^HTTP/1.1 400" "$out"

# Envoy refuses HTTP/1.0 unless http_protocol_options.accept_http_10 is set:
# 426 Upgrade Required.
out=$(printf 'GET /ten HTTP/1.0\r\nHost: a\r\n\r\n' | it_raw "$f" 10 | tr -d '\r')
check_match "HTTP/1.0 without accept_http_10: 426" "^HTTP/1.1 426" "$out"

# A transfer coding other than chunked: Envoy answers 501 Not Implemented.
out=$(printf 'POST /te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n' | it_raw "$f" 10 | tr -d '\r')
check_match "Transfer-Encoding gzip: 501" "^HTTP/1.1 501" "$out"
check_contains "Transfer-Encoding gzip: connection closed" "#closed" "$out"

out=$(printf 'GET / HTTP/1.1\r\nHost: a\r\nx-partial: 1\r\n' | it_raw "$f" 15 | tr -d '\r')
check_contains "request_headers_timeout: partial headers, connection closed" "#closed" "$out"
check_not_contains "request_headers_timeout: no 200" "HTTP/1.1 200" "$out"

# (on the second listener, which has no request_headers_timeout)
out=$(printf 'GET /idle HTTP/1.1\r\nHost: a\r\n\r\n' | it_raw "$f2" 20 | tr -d '\r')
check_match "idle_timeout: the request is answered" "^HTTP/1.1 200" "$out"
check_contains "idle_timeout: the idle connection is closed" "#closed" "$out"

if ! kill -0 "$TN_TERN_PID" 2>/dev/null; then
    tn_fail "tern still running at the end" "it exited"
    tn_show_log
fi
stop_tern
check "tern exits 0 on SIGTERM" 0 "$TN_RC"
it_sanitizers
tn_summary
