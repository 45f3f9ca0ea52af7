#!/bin/sh
# tern's process lifecycle, end to end: two workers serving 200 parallel
# requests; draining on SIGTERM (requests in flight complete, new connections
# are refused, exit 0); a second SIGTERM exits at once; a listener address
# already in use makes tern exit 1 naming the address.
#
#   lifecycle.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

set -- $(free_port 3)
o=$1 f=$2 busy=$3
start_origin web "$o" || { tn_fail "origin starts" "see above"; tn_summary; }

L=$(it_listener front "$f" "$(it_rc "$(it_vhost all '"*"' "$(it_route_cluster / web 'timeout: 30s')")")")
it_config "$TN_TMP/life.yaml" "$L" "$(it_cluster web "127.0.0.1:$o" 'circuit_breakers: {thresholds: [{max_connections: 10000, max_pending_requests: 10000, max_requests: 10000}]},')"

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

# ---- 200 parallel requests on two workers ---------------------------------------

it_start "$TN_TMP/life.yaml" "$f" --concurrency 2
check_contains "tern runs 2 workers" "2 workers" "$(cat "$TN_TMP/tern.log")"
origin_reset "$o"
"$TN_PYTHON" - "$f" >"$TN_TMP/par" <<'EOF'
import sys, threading, urllib.request
port = int(sys.argv[1])
codes = []
lock = threading.Lock()
def one(i):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/par/%d" % (port, i), timeout=60) as r:
            r.read()
            c = r.status
    except Exception as e:
        c = repr(e)
    with lock:
        codes.append(c)
ts = [threading.Thread(target=one, args=(i,)) for i in range(200)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(sum(1 for c in codes if c == 200))
print(sorted(set(str(c) for c in codes if c != 200))[:3])
EOF
check "200 parallel requests: all 200" 200 "$(sed -n 1p "$TN_TMP/par")"
check "200 parallel requests: the origin saw 200" 200 "$(origin_count "$o")"

# ---- drain on SIGTERM -----------------------------------------------------------

# Ten slow requests; SIGTERM once the origin has all of them.
origin_reset "$o"
: >"$(origin_log web)"
pids=
i=0
while [ $i -lt 10 ]; do
    curl -s --max-time 60 -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$f/slow/$i?delay_ms=2000" >"$TN_TMP/slow.$i" &
    pids="$pids $!"
    i=$((i + 1))
done
n=0
while [ $n -lt 200 ] && [ "$(grep -c ' /slow/' "$(origin_log web)")" -lt 10 ]; do
    sleep 0.05
    n=$((n + 1))
done
check "drain: the 10 slow requests reached the origin" 10 "$(grep -c ' /slow/' "$(origin_log web)")"
kill -TERM "$TN_TERN_PID"
if wait_port_closed "$f" 20; then
    if kill -0 "$TN_TERN_PID" 2>/dev/null && ! tn_is_zombie "$TN_TERN_PID"; then
        tn_pass "drain: new connections are refused while tern drains"
    else
        tn_fail "drain: new connections are refused while tern drains" "tern had already exited"
    fi
else
    tn_fail "drain: new connections are refused while tern drains" "127.0.0.1:$f still accepts"
fi
for p in $pids; do wait "$p"; done
ok=$(cat "$TN_TMP"/slow.* | grep -c '^200$')
check "drain: all 10 in-flight requests complete with 200" 10 "$ok"
if exited_within "$TN_TERN_PID" 30; then
    wait "$TN_TERN_PID"
    check "drain: tern exits 0 afterwards" 0 "$?"
else
    tn_fail "drain: tern exits afterwards" "still running 30 s after the requests completed"
    kill -KILL "$TN_TERN_PID"
    wait "$TN_TERN_PID"
fi
forget_tern
check_contains "drain: tern logs the drain" "drain" "$(cat "$TN_TMP/tern.log")"
it_sanitizers

# ---- a second SIGTERM exits at once ---------------------------------------------

it_start "$TN_TMP/life.yaml" "$f" --concurrency 2
: >"$(origin_log web)"
curl -s --max-time 60 -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$f/slower?delay_ms=20000" >"$TN_TMP/slower" 2>/dev/null &
cpid=$!
n=0
while [ $n -lt 200 ] && ! grep -q ' /slower' "$(origin_log web)"; do
    sleep 0.05
    n=$((n + 1))
done
kill -TERM "$TN_TERN_PID"
sleep 0.3
if exited_within "$TN_TERN_PID" 0; then
    tn_fail "second SIGTERM: tern still drains after the first" "it exited on the first signal with a request in flight"
else
    tn_pass "second SIGTERM: tern still drains after the first"
fi
kill -TERM "$TN_TERN_PID" 2>/dev/null
if exited_within "$TN_TERN_PID" 10; then
    tn_pass "second SIGTERM: tern exits at once (long before the 20 s request ends)"
else
    tn_fail "second SIGTERM: tern exits at once" "still running 10 s later"
    kill -KILL "$TN_TERN_PID"
fi
wait "$TN_TERN_PID"
echo "# second SIGTERM: exit status $?"
forget_tern
wait "$cpid"
check_not_contains "second SIGTERM: the in-flight request was cut" 200 "$(cat "$TN_TMP/slower")"

# ---- address in use ---------------------------------------------------------------

tn_spawn "$TN_TMP/holder" "$TN_PYTHON" -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1)
print("ready", flush=True)
time.sleep(120)
' "$busy"
holder=$TN_PID
wait_port "$busy" 10 "$holder" || tn_fail "holder listens" "on $busy"
L=$(it_listener busy "$busy" "$(it_rc "$(it_vhost all '"*"' "$(it_route_direct / 200 x)")")")
it_config "$TN_TMP/busy.yaml" "$L" ""
timeout 20 "$TERN" -c "$TN_TMP/busy.yaml" >"$TN_TMP/busy.out" 2>"$TN_TMP/busy.err" </dev/null
check "address in use: tern exits 1" 1 "$?"
check_contains "address in use: the message names the address" "127.0.0.1:$busy" "$(cat "$TN_TMP/busy.err")"
tn_kill "$holder" KILL

tn_summary
