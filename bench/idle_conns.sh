#!/bin/sh
# Memory of idle keep-alive connections: N clients (default 10,000) each send
# one request through tern and stay connected; prints tern's RSS before, while
# they are held and after they close, and the cost of one idle connection.
#
#   bench/idle_conns.sh [N]          (TERN=build/tern by default)
set -eu
cd "$(dirname "$0")/.."
n=${1:-10000}
tern=${TERN:-build/tern}
ulimit -n $((n + 1024))
tmp=$(mktemp -d)
trap 'kill $opid $tpid 2>/dev/null; rm -rf "$tmp"' EXIT
set -- $("${PYTHON:-/usr/bin/python3}" -c 'import socket
ss=[socket.socket() for _ in range(3)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))')
origin=$1 front=$2 admin=$3
sed "s/port_value: 18000/port_value: $front/; s/port_value: 18001/port_value: $origin/; s/port_value: 18901/port_value: $admin/" \
    bench/tern.yaml >"$tmp/tern.yaml"
"${PYTHON:-/usr/bin/python3}" tests/origin/origin.py --port "$origin" --name origin >"$tmp/origin.log" 2>&1 &
opid=$!
"$tern" -c "$tmp/tern.yaml" --concurrency 1 -l warning --component-log-level pool:debug 2>"$tmp/tern.log" &
tpid=$!
"${PYTHON:-/usr/bin/python3}" - "$front" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close(); break
    except OSError:
        time.sleep(0.1)
PY
# a few requests first, so the pools, blocks and buffers of one request exist
for i in 1 2 3 4 5; do curl -s -o /dev/null "http://127.0.0.1:$front/"; done
"${PYTHON:-/usr/bin/python3}" bench/idle_conns.py "$tpid" "$front" "$n" || {
    echo "tern's log:" >&2
    tail -20 "$tmp/tern.log" >&2
    exit 1
}
