#!/bin/sh
# Strict HTTP/1.1 request parsing and header policies, end to end, with exact
# bytes on a raw socket (tests/tools/rawreq.py): what a client sees and what
# the origin receives (origin.py --raw-headers reports the header lines as
# they arrived: order, duplicates, case and spacing).
#
#   - malformed heads and chunked bodies (space before the colon or in a
#     name, bare CR, obs-fold, a bad chunk end): 400, nothing reaches the
#     origin, and tern keeps serving the next connection;
#   - internal_only_headers, a route's request_headers_to_remove, the
#     x-envoy-* headers of an external client and x-forwarded-for, against
#     spaced, case-changed and duplicated spellings;
#   - Host (duplicates, bad characters), absolute-form targets (the Host comes
#     from the target; userinfo is refused), CONNECT (403 when not configured);
#   - transfer codings (501 for codings other than chunked), duplicated
#     Transfer-Encoding / Content-Length, Content-Length with
#     Transfer-Encoding;
#   - max_headers_count (431 above it; 100 by default) and
#     max_request_headers_kb (431; the whole head counts: request line,
#     names, ": ", values and CRLFs);
#   - SIGHUP: tern keeps running and serving, a request in flight completes.
#
# An "external" client: every client here is on 127.0.0.1, which Envoy's
# default internal_address_config counts as internal; like Envoy
# (ConnectionManagerUtility::mutateRequestHeaders: internal only with a single
# XFF address, i.e. when the request carried no x-forwarded-for), a request
# that arrives with an x-forwarded-for is external, so the external cases
# send one.
#
#   h1_strict.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

RAWREQ=$TN_SRC/tests/tools/rawreq.py

set -- $(free_port 4)
o=$1 f=$2 f20=$3 f8k=$4
start_origin web "$o" --raw-headers || { tn_fail "origin starts" "see above"; tn_summary; }

route='{match: {prefix: "/"}, route: {cluster: web}, request_headers_to_remove: [x-debug-bypass]}'
rc=$(it_rc "$(it_vhost all '"*"' "$route")" "internal_only_headers: [x-internal-user],")
# f: defaults (100 headers, 60 KiB); f20: 20 headers; f8k: 8 KiB (and room
# for 1000 headers, so that the size is what counts there).
L1=$(it_listener front "$f" "$rc" "use_remote_address: true,")
L2=$(it_listener count20 "$f20" "$rc" "use_remote_address: true, common_http_protocol_options: {max_headers_count: 20},")
L3=$(it_listener kb8 "$f8k" "$rc" "use_remote_address: true, max_request_headers_kb: 8, common_http_protocol_options: {max_headers_count: 1000},")
it_config "$TN_TMP/strict.yaml" "$L1, $L2, $L3" "$(it_cluster web "127.0.0.1:$o")"
it_start "$TN_TMP/strict.yaml" "$f" --concurrency 2
wait_port "$f20" || tn_fail "listener count20" "not listening on $f20"
wait_port "$f8k" || tn_fail "listener kb8" "not listening on $f8k"

# raw PORT [rawreq.py ARGS]: stdin's bytes to 127.0.0.1:PORT.
raw() {
    raw_port=$1
    shift
    "$TN_PYTHON" "$RAWREQ" "$raw_port" "$@"
}

# rawh NAME: the values of the header lines named NAME (any case, any spacing)
# in the origin's JSON document on stdin, in order, joined by "|".
rawh() {
    "$TN_PYTHON" -c '
import json, sys
try:
    d = json.loads(sys.stdin.read())
except ValueError:
    print("<no origin document>")
    sys.exit(0)
n = sys.argv[1].lower()
print("|".join(l.partition(":")[2].strip() for l in d.get("raw_headers", [])
               if l.partition(":")[0].strip().lower() == n))
' "$1"
}

# origin_seen: requests the origin counted plus those it refused as malformed
# (a head forwarded with "X-Foo : bar" would be one of those).
origin_seen() {
    tn_curl "http://127.0.0.1:$o/__count" | "$TN_PYTHON" -c '
import json, sys
try:
    d = json.load(sys.stdin)
    print(d["count"] + d["bad"])
except (ValueError, KeyError):
    print("?")
'
}

NEXT='GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'

# reject_file NAME STATUS PORT FILE: the request in FILE gets STATUS from tern
# itself (no x-origin header), the origin receives nothing, and a normal
# request on a new connection is then answered.
reject_file() {
    rj_before=$(origin_seen)
    rj_out=$(raw "$3" -f "$4" -t 3)
    check "$1: $2" "$2" "$(printf '%s\n' "$rj_out" | sed -n 1p)"
    check "$1: answered by tern (no x-origin)" 0 "$(printf '%s\n' "$rj_out" | tr -d '\r' | grep -ci '^x-origin:')"
    check "$1: the origin receives nothing" "$rj_before" "$(origin_seen)"
    check "$1: the next connection is served" 200 "$(printf "$NEXT" | raw "$3" --status -t 3)"
}

# reject NAME STATUS PORT FORMAT: the same with printf FORMAT's bytes.
reject() {
    printf "$4" >"$TN_TMP/req"
    reject_file "$1" "$2" "$3" "$TN_TMP/req"
}

# fwd PORT FORMAT: sends printf FORMAT's bytes; $st is the status, $doc the
# origin's JSON document (the response body).
fwd() {
    printf "$2" >"$TN_TMP/req"
    raw "$1" -f "$TN_TMP/req" -t 3 --status --body >"$TN_TMP/resp"
    st=$(sed -n 1p "$TN_TMP/resp")
    doc=$(sed 1d "$TN_TMP/resp")
}

# gen FILE PYTHON-EXPR: writes the bytes of a Python expression (latin-1 str).
gen() {
    "$TN_PYTHON" -c 'import sys; open(sys.argv[1], "wb").write(eval(sys.argv[2]).encode("latin-1"))' "$1" "$2"
}

# ---- the origin reports raw header lines ---------------------------------------

fwd "$f" 'GET /raw HTTP/1.1\r\nHost: x\r\nX-Dup: 1\r\nX-Dup: 2\r\nConnection: close\r\n\r\n'
check "baseline: 200" 200 "$st"
check "baseline: the origin reports duplicates in order" "1|2" "$(echo "$doc" | rawh x-dup)"

# ---- parser --------------------------------------------------------------------

reject "space before the colon" 400 "$f" 'GET /p1 HTTP/1.1\r\nHost: x\r\nX-Foo : bar\r\n\r\n'
reject "space in a header name" 400 "$f" 'GET /p2 HTTP/1.1\r\nHost: x\r\nX Foo: bar\r\n\r\n'
reject "Transfer Encoding (space in the name)" 400 "$f" 'POST /p3 HTTP/1.1\r\nHost: x\r\nTransfer Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'
reject "Content-Length with a space before the colon" 400 "$f" 'POST /p4 HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello'
reject "chunk data not followed by CRLF" 400 "$f" 'POST /p5 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n'
reject "chunk-size line ending in CR and another byte" 400 "$f" 'POST /p6 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\rXhello\r\n0\r\n\r\n'

# CR + other byte where the head's last CRLF should be: a second request
# smuggled behind it must not be seen.
before=$(origin_seen)
printf 'GET /a HTTP/1.1\r\nHost: x\r\n\rZGET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n' >"$TN_TMP/req"
out=$(raw "$f" -f "$TN_TMP/req" -t 2 -n 0)
check "bare CR ending the head: one 400" "400" "$(printf '%s\n' "$out" | sed -n 1p)"
check "bare CR ending the head: the origin receives nothing" "$before" "$(origin_seen)"
paths=$(tn_curl "http://127.0.0.1:$o/__count" | json_get paths)
check_not_contains "bare CR ending the head: the origin never sees /SMUGGLED" '"/SMUGGLED"' "$paths"
check_not_contains "bare CR ending the head: the origin never sees /a" '"/a"' "$paths"
check "bare CR ending the head: the next connection is served" 200 "$(printf "$NEXT" | raw "$f" --status -t 3)"

reject "bare CR inside a header value" 400 "$f" 'GET /p7 HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n'
reject "obs-fold" 400 "$f" 'GET /p8 HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n'

# ---- header policies -------------------------------------------------------------

XFF='X-Forwarded-For: 203.0.113.7\r\n'   # makes the client external (see above)

reject "X-Internal-User with a space before the colon" 400 "$f" 'GET /h1 HTTP/1.1\r\nHost: x\r\nX-Internal-User : admin\r\n\r\n'
fwd "$f" "GET /h2 HTTP/1.1\r\nHost: x\r\n${XFF}x-INTERNAL-user: admin\r\nConnection: close\r\n\r\n"
check "x-INTERNAL-user from an external client: 200" 200 "$st"
check "x-INTERNAL-user from an external client: removed" "" "$(echo "$doc" | rawh x-internal-user)"
fwd "$f" "GET /h3 HTTP/1.1\r\nHost: x\r\n${XFF}X-Internal-User: admin\r\nX-Internal-User: root\r\nConnection: close\r\n\r\n"
check "two X-Internal-User lines: 200" 200 "$st"
check "two X-Internal-User lines: neither reaches the origin" "" "$(echo "$doc" | rawh x-internal-user)"

reject "X-Debug-Bypass with a space before the colon" 400 "$f" 'GET /h4 HTTP/1.1\r\nHost: x\r\nX-Debug-Bypass : 1\r\n\r\n'
fwd "$f" 'GET /h5 HTTP/1.1\r\nHost: x\r\nX-DEBUG-BYPASS: 1\r\nConnection: close\r\n\r\n'
check "X-DEBUG-BYPASS: 200" 200 "$st"
check "X-DEBUG-BYPASS: removed (request_headers_to_remove)" "" "$(echo "$doc" | rawh x-debug-bypass)"
fwd "$f" 'GET /h6 HTTP/1.1\r\nHost: x\r\nX-Debug-Bypass: 1\r\nx-debug-bypass: 2\r\nConnection: close\r\n\r\n'
check "two X-Debug-Bypass lines: 200" 200 "$st"
check "two X-Debug-Bypass lines: both removed" "" "$(echo "$doc" | rawh x-debug-bypass)"

reject "X-Envoy-Internal with a space before the colon" 400 "$f" 'GET /h7 HTTP/1.1\r\nHost: x\r\nX-Envoy-Internal : true\r\n\r\n'
fwd "$f" "GET /h8 HTTP/1.1\r\nHost: x\r\n${XFF}x-envoy-internal: true\r\nx-envoy-retry-on: 5xx\r\nX-Envoy-Max-Retries: 3\r\nConnection: close\r\n\r\n"
check "x-envoy-* from an external client: 200" 200 "$st"
check "x-envoy-internal: true from an external client: not forwarded" "" "$(echo "$doc" | rawh x-envoy-internal)"
check "x-envoy-retry-on from an external client: stripped" "" "$(echo "$doc" | rawh x-envoy-retry-on)"
check "x-envoy-max-retries from an external client: stripped" "" "$(echo "$doc" | rawh x-envoy-max-retries)"
# (honoured, a 1 ms timeout would answer 504 before the origin's 300 ms)
fwd "$f" "GET /h8b?delay_ms=300 HTTP/1.1\r\nHost: x\r\n${XFF}x-envoy-upstream-rq-timeout-ms: 1\r\nConnection: close\r\n\r\n"
check "x-envoy-upstream-rq-timeout-ms from an external client: not honoured (200)" 200 "$st"
check "x-envoy-upstream-rq-timeout-ms from an external client: stripped" "" "$(echo "$doc" | rawh x-envoy-upstream-rq-timeout-ms)"

fwd "$f" 'GET /h9 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\nConnection: close\r\n\r\n'
check "X-Forwarded-For: 200" 200 "$st"
check "X-Forwarded-For: one line, the client's address appended" "1.2.3.4, 127.0.0.1" "$(echo "$doc" | rawh x-forwarded-for)"
reject "X-Forwarded-For with a space before the colon" 400 "$f" 'GET /h10 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For : 1.2.3.4\r\n\r\n'

# ---- Host and request targets ------------------------------------------------------

reject "two identical Host lines" 400 "$f" 'GET /t1 HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n'
reject "two different Host lines" 400 "$f" 'GET /t2 HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n'

fwd "$f" 'GET http://other.example/p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
check "absolute form, another Host: 200" 200 "$st"
check "absolute form, another Host: the origin gets one Host, the target's" "other.example" "$(echo "$doc" | rawh host)"
check "absolute form, another Host: path /p" "/p" "$(echo "$doc" | json_get path)"
fwd "$f" 'GET http://other.example?id=X HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n'
check "absolute form without a path: 200" 200 "$st"
check "absolute form without a path: the origin gets /?id=X" "/?id=X" "$(echo "$doc" | json_get path)"

reject "Host with a space" 400 "$f" 'GET /t3 HTTP/1.1\r\nHost: a b\r\n\r\n'
reject "Host with a slash" 400 "$f" 'GET /t4 HTTP/1.1\r\nHost: a/b\r\n\r\n'
reject "Host with an @" 400 "$f" 'GET /t5 HTTP/1.1\r\nHost: user@a\r\n\r\n'
reject "Host with a control character" 400 "$f" 'GET /t6 HTTP/1.1\r\nHost: a\001b\r\n\r\n'
reject "CONNECT (not configured)" 403 "$f" 'CONNECT host:443 HTTP/1.1\r\nHost: host:443\r\n\r\n'
reject "userinfo in an absolute target" 400 "$f" 'GET http://user:pw@other.example/ HTTP/1.1\r\nHost: other.example\r\n\r\n'

# ---- transfer codings and counts --------------------------------------------------

reject "Transfer-Encoding: gzip, chunked" 501 "$f" 'POST /c1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'
reject "Transfer-Encoding: identity, chunked" 501 "$f" 'POST /c2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'
reject "Transfer-Encoding: gzip" 501 "$f" 'POST /c3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n'
reject "two Transfer-Encoding: chunked lines" 400 "$f" 'POST /c4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'
reject "Content-Length with Transfer-Encoding" 400 "$f" 'POST /c5 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'
reject "two identical Content-Length lines" 400 "$f" 'POST /c6 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello'
reject "two different Content-Length lines" 400 "$f" 'POST /c7 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'

# N header lines in all, Host and Connection included.
nheaders() {
    gen "$TN_TMP/req" "'GET /n HTTP/1.1\r\nHost: x\r\nConnection: close\r\n' + ''.join('x-h-%05d: v\r\n' % i for i in range($1 - 2)) + '\r\n'"
}
nheaders 21
reject_file "21 headers, max_headers_count 20" 431 "$f20" "$TN_TMP/req"
nheaders 20
check "20 headers, max_headers_count 20: 200" 200 "$(raw "$f20" -f "$TN_TMP/req" --status -t 3)"
nheaders 101
reject_file "101 headers, default max_headers_count (100)" 431 "$f" "$TN_TMP/req"
nheaders 100
check "100 headers, default max_headers_count: 200" 200 "$(raw "$f" -f "$TN_TMP/req" --status -t 3)"
nheaders 10000
reject_file "10,000 headers" 431 "$f" "$TN_TMP/req"

# The head size, on the 8 KiB listener.
gen "$TN_TMP/req" "'GET /k1 HTTP/1.1\r\nHost: x\r\nx-big: ' + 'v' * 9216 + '\r\n\r\n'"
reject_file "8 KiB listener: one 9 KiB header" 431 "$f8k" "$TN_TMP/req"
# 400 lines "x-h-NNNNN: vvvvvvvvvvv\r\n": names and values 8000 bytes, the
# lines 9600.
gen "$TN_TMP/req" "'GET /k2 HTTP/1.1\r\nHost: x\r\n' + ''.join('x-h-%05d: %s\r\n' % (i, 'v' * 11) for i in range(400)) + '\r\n'"
reject_file "8 KiB listener: 400 headers of 20 bytes (9600 bytes of lines)" 431 "$f8k" "$TN_TMP/req"
gen "$TN_TMP/req" "'GET /k3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nx-big: ' + 'v' * 7168 + '\r\n\r\n'"
check "8 KiB listener: one 7 KiB header: 200" 200 "$(raw "$f8k" -f "$TN_TMP/req" --status -t 3)"
gen "$TN_TMP/req" "'GET /k4 HTTP/1.1\r\nHost: x\r\n' + ''.join('x-h-%05d: vvvv\r\n' % i for i in range(163840 // 16)) + '\r\n'"
reject_file "default listener: 160 KB of small headers" 431 "$f" "$TN_TMP/req"

# ---- signals ---------------------------------------------------------------------

: >"$(origin_log web)"
log_lines=$(wc -l <"$TN_TMP/tern.log")
printf 'GET /slow?delay_ms=1500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >"$TN_TMP/slow"
raw "$f" -f "$TN_TMP/slow" --status -t 10 >"$TN_TMP/slow.out" &
slow_pid=$!
n=0
while [ $n -lt 50 ] && ! grep -q '/slow' "$(origin_log web)"; do
    sleep 0.1
    n=$((n + 1))
done
kill -HUP "$TN_TERN_PID"
wait "$slow_pid"
check "SIGHUP: the request in flight completes with 200" 200 "$(cat "$TN_TMP/slow.out")"
sleep 0.2
if kill -0 "$TN_TERN_PID" 2>/dev/null && ! tn_is_zombie "$TN_TERN_PID"; then
    tn_pass "SIGHUP: tern keeps running"
else
    tn_fail "SIGHUP: tern keeps running" "it exited"
fi
check "SIGHUP: a new request is served" 200 "$(printf "$NEXT" | raw "$f" --status -t 3)"
check_match "SIGHUP: tern logs a line about it" '[Hh][Uu][Pp]|[Hh]angup' "$(sed "1,${log_lines}d" "$TN_TMP/tern.log")"

if kill -0 "$TN_TERN_PID" 2>/dev/null && ! tn_is_zombie "$TN_TERN_PID"; then
    stop_tern
    check "tern exits 0 on SIGTERM" 0 "$TN_RC"
fi
it_sanitizers
tn_summary
