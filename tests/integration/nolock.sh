#!/bin/sh
# Nothing on the request path takes a lock: tern runs with tools/lockcount
# preloaded (it counts every pthread mutex, rwlock and semaphore wait taken on
# threads named tern-worker-*) and serves thousands of requests — keep-alive
# and new connections, GETs and POST bodies, an access log, a retry — through
# two workers, half of them hits and fills of the shared response cache. A
# lock per request (or per connection) would show as
# thousands; what is allowed is a small constant for starting, flushing the
# access log to the thread pool once a second, and stopping.
#
#   nolock.sh TERN_BINARY SOURCE_DIR LOCKCOUNT_SO

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
lockcount=$3
tn_setup "$1" "$2"

set -- $(free_port 3)
o1=$1 f=$2 adm=$3
start_origin web "$o1" || { tn_fail "origin web starts" "see above"; tn_summary; }

# tern, through a wrapper that preloads the counter (exec keeps the pid)
out=$TN_TMP/locks.txt
cat >"$TN_TMP/tern-counted" <<EOF
#!/bin/sh
LD_PRELOAD=$lockcount LOCKCOUNT_OUT=$out exec $TERN "\$@"
EOF
chmod +x "$TN_TMP/tern-counted"
TERN=$TN_TMP/tern-counted

# the listener's filters: the response cache (shared by both workers), then
# the router
CACHE='{name: envoy.filters.http.cache, typed_config: {"@type": type.googleapis.com/tern.extensions.filters.http.cache.v1.CacheConfig, default_ttl: 60s}}'
RC=$(it_rc "$(it_vhost all '"*"' "$(it_route_cluster / web "retry_policy: {retry_on: 5xx, num_retries: 1},")")")
L=$(printf '{name: front, address: {socket_address: {address: 127.0.0.1, port_value: %s}}, filter_chains: [{filters: [{name: envoy.filters.network.http_connection_manager, typed_config: {"@type": %s, stat_prefix: front, %s route_config: %s, http_filters: [%s, %s]}}]}]}' \
    "$f" "$IT_HCM_TYPE" "$(it_alog "$TN_TMP/access.log")" "$RC" "$CACHE" "$IT_ROUTER")
C=$(it_cluster web "127.0.0.1:$o1")
printf '{admin: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}, static_resources: {listeners: [%s], clusters: [%s]}}\n' \
    "$adm" "$L" "$C" >"$TN_TMP/nolock.yaml"
it_start "$TN_TMP/nolock.yaml" "$f" --concurrency 2

N=4000
"$TN_PYTHON" - "$f" "$N" <<'EOF' >"$TN_TMP/load.out" 2>&1
import http.client, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
ok = [0]
lock = threading.Lock()
def keepalive(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(k):
        if i % 10 == 0:
            c.request("POST", "/post", body=b"x" * 5000)
        else:
            c.request("GET", "/get?i=%d" % (i % 50))  # cached: misses, then hits
        r = c.getresponse(); r.read()
        with lock: ok[0] += r.status == 200
    c.close()
def fresh(k):
    for i in range(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/new", headers={"Connection": "close"})
        r = c.getresponse(); r.read()
        with lock: ok[0] += r.status == 200
        c.close()
ts = [threading.Thread(target=keepalive, args=(n // 5,)) for _ in range(4)] + [threading.Thread(target=fresh, args=(n // 5,))]
for t in ts: t.start()
for t in ts: t.join()
print(ok[0])
EOF
check "all $N requests answered 200" "$N" "$(tail -1 "$TN_TMP/load.out")"
check "one retried request (503 then 200) answered 200" 200 "$(http_status "http://127.0.0.1:$f/r?fail_first=1&key=lk")"

hits=$(tn_curl "http://127.0.0.1:$adm/stats?filter=%5Ehttp.front.cache.hit%24" | sed 's/.*: //')
check "the cache served hits in that load" yes "$([ "${hits:-0}" -gt 1000 ] && echo yes || echo "no: ${hits:-none}")"

stop_tern
check "tern exits 0" 0 "$TN_RC"
if [ ! -s "$out" ]; then
    tn_fail "lockcount wrote its report" "no $out: was the library preloaded?"
    tn_summary
fi
all=$(sed -n 's/^all //p' "$out")
workers=$(sed -n 's/^workers //p' "$out")
echo "# lock report: $(tr '\n' ';' <"$out")" >&2
check "the counter saw locks at all (interposition works)" yes "$([ "${all:-0}" -gt 0 ] && echo yes || echo "no: $all")"
# the bound: far below one per request or per connection
check "worker threads took no lock per request ($workers for $N requests)" yes \
    "$([ "${workers:-999999}" -lt $((N / 40)) ] && echo yes || echo "no: $workers; $(grep site "$out" | tr '\n' ';')")"
tn_summary
