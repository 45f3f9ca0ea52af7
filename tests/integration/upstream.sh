#!/bin/sh
# Upstream behaviour through tern, end to end: local replies with their
# status, body and access-log response flags (NR, NC, UH, UF, UC, UT, UO),
# retries (5xx, retriable status codes, connect failure to another host,
# per-try timeouts, retry limit: URX), an upstream dying mid-response, load
# balancing (round robin, ring hash), outlier detection and active health
# checks.
#
#   upstream.sh TERN_BINARY SOURCE_DIR
#
# Outlier detection needs one host that fails every request while the others
# answer. origin.py has no "always fail" mode (fail_first is per origin and
# key, so every host would fail alike), so the failing host is a second
# listener of the same tern whose only route is a direct_response 500;
# the front listener's access log shows which requests got its 500.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

set -- $(free_port 7)
o1=$1 o2=$2 o3=$3 f=$4 bad=$5 closed=$6 hcf=$7
start_origin web "$o1" || { tn_fail "origin web starts" "see above"; tn_summary; }
start_origin alt "$o2" || { tn_fail "origin alt starts" "see above"; tn_summary; }
start_origin third "$o3" || { tn_fail "origin third starts" "see above"; tn_summary; }
alog=$TN_TMP/access.log

rt() { it_route_cluster "$@"; }
routes="
    $(rt /nc/ nosuch-placeholder '' | sed 's/cluster: nosuch-placeholder,/cluster_header: x-cluster,/'),
    $(rt /uh/ nohosts),
    $(rt /uf/ closed),
    $(rt /uc/ web),
    $(rt /ut/ web 'timeout: 1s'),
    $(rt /uo/ cb),
    $(rt /retry/ web 'retry_policy: {retry_on: 5xx, num_retries: 2},'),
    $(rt /rsc/ web 'retry_policy: {retry_on: retriable-status-codes, retriable_status_codes: [503, 418], num_retries: 2},'),
    $(rt /rcf/ halfdead 'retry_policy: {retry_on: connect-failure, num_retries: 1},'),
    $(rt /ptt/ web 'timeout: 20s, retry_policy: {retry_on: 5xx, num_retries: 2, per_try_timeout: 0.5s},'),
    $(rt /mid/ web),
    $(rt /rr/ rr3),
    $(rt /rh/ ring 'hash_policy: [{header: {header_name: x-user}}],'),
    $(rt /od/ od),
    $(rt /hc/ hc),
    $(rt /ok/ web)"
L=$(it_listener front "$f" "$(it_rc "$(it_vhost all '"*"' "$routes")")" "$(it_alog "$alog" '%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%')")
LB=$(it_listener bad "$bad" "$(it_rc "$(it_vhost all '"*"' "$(it_route_direct / 500 bad-host)")")")
hc='health_checks: [{timeout: 1s, interval: 0.2s, unhealthy_threshold: 1, healthy_threshold: 1, http_health_check: {path: /__count}}],'
C="$(it_cluster web "127.0.0.1:$o1"),
   $(it_cluster nohosts "nonexistent.invalid:80" 'dns_lookup_family: V4_ONLY,' STRICT_DNS),
   $(it_cluster closed "127.0.0.1:$closed"),
   $(it_cluster cb "127.0.0.1:$o3" 'circuit_breakers: {thresholds: [{max_connections: 1, max_pending_requests: 1, max_requests: 1}]},'),
   $(it_cluster halfdead "127.0.0.1:$closed 127.0.0.1:$o2" 'lb_policy: ROUND_ROBIN,'),
   $(it_cluster rr3 "127.0.0.1:$o1 127.0.0.1:$o2 127.0.0.1:$o3" 'lb_policy: ROUND_ROBIN,'),
   $(it_cluster ring "127.0.0.1:$o1 127.0.0.1:$o2 127.0.0.1:$o3" 'lb_policy: RING_HASH,'),
   $(it_cluster od "127.0.0.1:$bad 127.0.0.1:$o2 127.0.0.1:$o3" 'lb_policy: ROUND_ROBIN, outlier_detection: {consecutive_5xx: 3, interval: 1s, base_ejection_time: 60s, max_ejection_percent: 50},'),
   $(it_cluster hc "127.0.0.1:$hcf 127.0.0.1:$o1 127.0.0.1:$o2" "lb_policy: ROUND_ROBIN, $hc")"
it_config "$TN_TMP/upstream.yaml" "$L, $LB" "$C"
it_start "$TN_TMP/upstream.yaml" "$f" --concurrency 2
wait_port "$bad" || tn_fail "the bad-host listener" "not listening on $bad"
base=http://127.0.0.1:$f

# flags PATH: the "CODE FLAGS" the access log has for PATH (the last line).
# The log is written when the stream ends; give it a moment.
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

# req PATH [CURL ARGS]: "STATUS BODY" (body on one line, trimmed to 200 bytes)
req() {
    rq_p=$1
    shift
    rq_b=$(curl -s --max-time 20 -o "$TN_TMP/rb" -w '%{http_code}' "$@" "$base$rq_p")
    echo "$rq_b $(tr -d '\r\n' <"$TN_TMP/rb" | head -c 200)"
}

# ---- local replies and response flags ------------------------------------------

out=$(req /nothing)
check "no route: 404" 404 "${out%% *}"
check "no route: flag NR" "404 NR" "$(flags /nothing)"

out=$(req /nc/x -H 'x-cluster: nosuch')
check "unknown cluster (cluster_header): 503" 503 "${out%% *}"
check "unknown cluster: flag NC" "503 NC" "$(flags /nc/x)"
out=$(req /nc/y)
check "cluster_header absent: 503" 503 "${out%% *}"

out=$(req /uh/x)
check "no healthy upstream (no hosts): 503" 503 "${out%% *}"
check_contains "no healthy upstream: body" "no healthy upstream" "$out"
check "no healthy upstream: flag UH" "503 UH" "$(flags /uh/x)"

out=$(req /uf/x)
check "connect failure: 503" 503 "${out%% *}"
check_contains "connect failure: body" "connection failure" "$out"
check "connect failure: flag UF" "503 UF" "$(flags /uf/x)"

out=$(req '/uc/x?close=1')
check "reset before headers: 503" 503 "${out%% *}"
check_contains "reset before headers: body" "upstream connect error or disconnect/reset before headers" "$out"
check "reset before headers: flag UC" "503 UC" "$(flags '/uc/x?close=1')"

out=$(req '/ut/x?delay_ms=3000')
check "route timeout: 504" 504 "${out%% *}"
check_contains "route timeout: body" "upstream request timeout" "$out"
check "route timeout: flag UT" "504 UT" "$(flags '/ut/x?delay_ms=3000')"

# Circuit breakers: 8 slow requests at once on a cluster allowing 1
# connection, 1 request and 1 pending request.
i=0
while [ $i -lt 8 ]; do
    curl -s --max-time 30 -o /dev/null -w '%{http_code}\n' "$base/uo/$i?delay_ms=1500" >"$TN_TMP/uo.$i" &
    pids="${pids:-} $!"
    i=$((i + 1))
done
for p in $pids; do wait "$p"; done
codes=$(cat "$TN_TMP"/uo.* | sort | uniq -c | tr -s ' ' | tr '\n' ';')
check_contains "circuit breaker: some requests get 200" " 200;" " $codes"
check_contains "circuit breaker: some requests get 503" " 503;" " $codes"
sleep 0.3
check_match "circuit breaker: 503s flagged UO" "^/uo/[0-7]\\?delay_ms=1500 503 UO$" "$(cat "$alog")"

# ---- retries ----------------------------------------------------------------------

origin_reset "$o1"
out=$(req '/retry/a?fail_first=2&key=K1')
check "retry 5xx: 200 after two failures" 200 "${out%% *}"
check "retry 5xx: the origin saw 3 attempts" 3 "$(tn_curl "http://127.0.0.1:$o1/__count" | json_get paths./retry/a)"

out=$(req '/retry/b?fail_first=5&key=K2')
check "retries exhausted: the last 503 is returned" 503 "${out%% *}"
check "retries exhausted: 3 attempts" 3 "$(tn_curl "http://127.0.0.1:$o1/__count" | json_get paths./retry/b)"
check "retries exhausted: flag URX" "503 URX" "$(flags '/retry/b?fail_first=5&key=K2')"

out=$(tn_curl --data-binary 'hello retry' "$base/retry/post?fail_first=1&key=K6")
check "retry re-sends the request body" "hello retry" "$(echo "$out" | json_get body)"

out=$(req '/rsc/a?fail_first=1&key=K3')
check "retriable-status-codes 503: retried, 200" 200 "${out%% *}"
check "retriable-status-codes 503: 2 attempts" 2 "$(tn_curl "http://127.0.0.1:$o1/__count" | json_get paths./rsc/a)"
out=$(req '/rsc/b?status=418')
check "retriable-status-codes 418: retried until exhausted" 418 "${out%% *}"
check "retriable-status-codes 418: 3 attempts" 3 "$(tn_curl "http://127.0.0.1:$o1/__count" | json_get paths./rsc/b)"
out=$(req '/rsc/c?status=500')
check "retriable-status-codes: 500 is not listed, no retry" 500 "${out%% *}"
check "retriable-status-codes: 500 tried once" 1 "$(tn_curl "http://127.0.0.1:$o1/__count" | json_get paths./rsc/c)"

ok=0
i=0
while [ $i -lt 6 ]; do
    [ "$(http_status "$base/rcf/$i")" = 200 ] && ok=$((ok + 1))
    i=$((i + 1))
done
check "connect-failure retry lands on the live host: 6 of 6 get 200" 6 "$ok"

out=$(req '/ptt/a?delay_ms=3000')
check "per_try_timeout: every try times out, 504" 504 "${out%% *}"
check_contains "per_try_timeout: body" "upstream request timeout" "$out"
check "per_try_timeout: 3 tries reached the origin" 3 "$(tn_curl "http://127.0.0.1:$o1/__count" | json_get paths./ptt/a)"
check_match "per_try_timeout: flag UT" "^504 .*UT" "$(flags '/ptt/a?delay_ms=3000')"

# ---- upstream dies mid-response ---------------------------------------------------

curl -s --max-time 20 -o "$TN_TMP/mid" "$base/mid/x?size=1000000&close_mid_body=1"
check "upstream closes mid-body: curl sees a partial transfer (exit 18)" 18 "$?"
size=$(wc -c <"$TN_TMP/mid" | tr -d ' ')
if [ "$size" -lt 1000000 ]; then
    tn_pass "upstream closes mid-body: fewer bytes than announced ($size)"
else
    tn_fail "upstream closes mid-body: fewer bytes than announced" "$size"
fi
curl -s --max-time 20 -o /dev/null "$base/mid/y?size=1000000&chunked=1&close_mid_body=1"
check "upstream closes mid-body (chunked): curl sees a partial transfer (exit 18)" 18 "$?"
check "tern still serves after that" 200 "$(http_status "$base/ok/after")"

# A client giving up during a slow response does not disturb tern.
curl -s --max-time 1 -o /dev/null "$base/ok/slow?delay_ms=3000"
check "client gives up during a slow response (curl timeout 28)" 28 "$?"
check "tern still serves after a client gave up" 200 "$(http_status "$base/ok/after-abort")"

# ---- load balancing --------------------------------------------------------------

origin_reset "$o1"
origin_reset "$o2"
origin_reset "$o3"
urls=
i=0
while [ $i -lt 30 ]; do
    urls="$urls $base/rr/$i"
    i=$((i + 1))
done
curl -s --max-time 60 $urls >/dev/null
n1=$(origin_count "$o1") n2=$(origin_count "$o2") n3=$(origin_count "$o3")
check "round robin: 30 answered" 30 "$((n1 + n2 + n3))"
if [ "$n1" -ge 7 ] && [ "$n1" -le 13 ] && [ "$n2" -ge 7 ] && [ "$n2" -le 13 ] && [ "$n3" -ge 7 ] && [ "$n3" -le 13 ]; then
    tn_pass "round robin: about 1/3 each ($n1, $n2, $n3)"
else
    tn_fail "round robin: about 1/3 each" "$n1, $n2, $n3"
fi

consistent=0
seen=
for u in alice bob carol dave erin frank; do
    names=
    i=0
    while [ $i -lt 5 ]; do
        names="$names $(tn_curl -H "x-user: $u" "$base/rh/$i" | json_get name)"
        i=$((i + 1))
    done
    set -- $names
    [ "$(printf '%s\n' $names | sort -u | wc -l)" -eq 1 ] && [ -n "$1" ] && consistent=$((consistent + 1))
    seen="$seen $1"
done
check "ring hash: the same x-user always reaches the same origin (6 users)" 6 "$consistent"
spread=$(printf '%s\n' $seen | sort -u | wc -l)
if [ "$spread" -ge 2 ]; then
    tn_pass "ring hash: users spread over $spread origins"
else
    tn_fail "ring hash: users spread over several origins" "all on$seen"
fi

# Outlier detection: consecutive_5xx 3 on a host that always answers 500.
urls=
i=0
while [ $i -lt 20 ]; do
    urls="$urls $base/od/a$i"
    i=$((i + 1))
done
curl -s --max-time 60 $urls >/dev/null
flags /od/a19 >/dev/null # waits for the access log to show the batch
before=$(grep -c '^/od/a[0-9]* 500 ' "$alog")
if [ "$before" -ge 3 ]; then
    tn_pass "outlier detection: the failing host answered 500 first ($before times)"
else
    tn_fail "outlier detection: the failing host answered 500 first" "$before times: $(grep '^/od/a' "$alog" | tr '\n' ';')"
fi
ok=0
i=0
while [ $i -lt 12 ]; do
    [ "$(http_status "$base/od/b$i")" = 200 ] && ok=$((ok + 1))
    i=$((i + 1))
done
check "outlier detection: after ejection 12 of 12 get 200" 12 "$ok"
check_contains "outlier detection: tern logs the ejection" "ejecting host 127.0.0.1:$bad" "$(cat "$TN_TMP/tern.log")"

# Active health checks: one host on a closed port goes unhealthy; wait (up to
# 20 s) until 12 requests in a row succeed.
ok=0
n=0
while [ $n -lt 20 ]; do
    ok=0
    i=0
    while [ $i -lt 12 ]; do
        [ "$(http_status "$base/hc/$i")" = 200 ] && ok=$((ok + 1))
        i=$((i + 1))
    done
    [ $ok -eq 12 ] && break
    sleep 1
    n=$((n + 1))
done
check "active health check: the closed-port host is avoided, 12 of 12 get 200" 12 "$ok"
check_contains "active health check: the origin is probed on /__count" "GET /__count" "$(cat "$(origin_log web)")"

if kill -0 "$TN_TERN_PID" 2>/dev/null; then
    tn_pass "tern is still running"
else
    tn_fail "tern is still running" "it exited"
    tn_show_log
fi
stop_tern
check "tern exits 0 on SIGTERM" 0 "$TN_RC"
it_sanitizers
tn_summary
