#!/bin/sh
# Self-test of lib.sh and tests/origin/origin.py, without tern: starts two
# origins and checks a few of their behaviours with curl directly.
#
#   selftest_lib.sh [SOURCE_DIR]
#
# Not wired into ctest; run it by hand after changing lib.sh or origin.py.

. "$(dirname "$0")/lib.sh"
tn_setup "" "${1:-}"

set -- $(free_port 2)
pa=$1 pb=$2
start_origin alpha "$pa" || { tn_fail "start origin alpha" "see above"; tn_summary; }
start_origin beta "$pb" || { tn_fail "start origin beta" "see above"; tn_summary; }
tn_pass "origins listen on $pa and $pb"
base=http://127.0.0.1:$pa

# JSON echo: method, path, repeated headers, body hash.
out=$(tn_curl -X POST -H 'X-Rep: 1' -H 'X-Rep: 2' --data-binary 'hello' "$base/echo/path?a=b")
check "echo name" alpha "$(echo "$out" | json_get name)"
check "echo method" POST "$(echo "$out" | json_get method)"
check "echo path" "/echo/path?a=b" "$(echo "$out" | json_get path)"
check "echo repeated header" '["1", "2"]' "$(echo "$out" | json_get headers.x-rep)"
check "echo body_len" 5 "$(echo "$out" | json_get body_len)"
check "echo body_sha256" "$(printf hello | sha256sum | cut -c1-64)" "$(echo "$out" | json_get body_sha256)"
check "x-origin header" "x-origin: beta" "$(tn_curl -D - -o /dev/null "http://127.0.0.1:$pb/" | tr -d '\r' | grep -i '^x-origin')"

# ?size=N: deterministic data whose sha matches x-body-sha256, with and
# without chunked encoding.
for q in "size=1000000" "size=1000000&chunked=1" "size=70000&seed=other"; do
    tn_curl -D "$TN_TMP/h" -o "$TN_TMP/b" "$base/data?$q"
    want=$(tr -d '\r' <"$TN_TMP/h" | sed -n 's/^x-body-sha256: //p')
    got=$(sha256sum <"$TN_TMP/b" | cut -c1-64)
    check "?$q sha256" "$want" "$got"
done
check "?size=N is deterministic" "$(tn_curl "$base/?size=5000" | sha256sum)" "$(tn_curl "$base/?size=5000" | sha256sum)"
check_contains "?chunked=1 uses chunked" "transfer-encoding: chunked" "$(tn_curl -D - -o /dev/null "$base/?chunked=1" | tr -d '\r')"

# Chunked upload (curl sends Expect: 100-continue with -T).
head -c 300000 /dev/urandom >"$TN_TMP/up"
out=$(tn_curl -T - -H 'Transfer-Encoding: chunked' "$base/upload" <"$TN_TMP/up")
check "chunked upload body_len" 300000 "$(echo "$out" | json_get body_len)"
check "chunked upload sha256" "$(sha256sum <"$TN_TMP/up" | cut -c1-64)" "$(echo "$out" | json_get body_sha256)"

# Status, headers, failures.
check "?status=418" 418 "$(http_status "$base/?status=418")"
check_contains "?hdr=x-a:b" "x-a: b" "$(tn_curl -D - -o /dev/null "$base/?hdr=x-a:b" | tr -d '\r')"
codes=
for i in 1 2 3 4; do
    codes="$codes $(http_status "$base/retry?fail_first=2&key=selftest")"
done
check "?fail_first=2" " 503 503 200 200" "$codes"
check "?close=1 gets no response" 000 "$(http_status "$base/?close=1")"
tn_curl -o "$TN_TMP/half" "$base/?size=10000&close_mid_body=1" 2>/dev/null
check "?close_mid_body=1 sends half" 5000 "$(wc -c <"$TN_TMP/half" | tr -d ' ')"

# Counters and the log.
origin_reset "$pa"
tn_curl -o /dev/null "$base/x"
tn_curl -o /dev/null "$base/y"
check "/__count after reset" 2 "$(origin_count "$pa")"
check_contains "request log" "[alpha] GET /y Host: 127.0.0.1:$pa" "$(cat "$(origin_log alpha)")"

tn_summary
