#!/bin/sh
# bench/xds_push.sh: how long tern takes to apply one big push from a control
# plane, and whether a client sees an error meanwhile.
#
# tern starts with a small snapshot (one route to an EDS cluster) while four
# keep-alive clients send requests; the control plane then serves N clusters
# (STATIC, one endpoint each) and a route configuration of N routes, one per
# cluster. Printed: when the control plane sent, when tern ACKed CDS and RDS,
# when a request to the last cluster was served through it, the clients'
# requests and errors, and tern's memory.
#
#   bench/xds_push.sh [N]          (default 10000; TERN=build/tern)
#
# Ports: ORIGIN_PORT (18101), CP_PORT (18180), PROXY_PORT (18100), ADMIN_PORT (18190).
set -eu
cd "$(dirname "$0")/.."
N=${1:-10000}
TERN=${TERN:-build/tern}
PY=/usr/bin/python3
ORIGIN_PORT=${ORIGIN_PORT:-18101} CP_PORT=${CP_PORT:-18180} PROXY_PORT=${PROXY_PORT:-18100} ADMIN_PORT=${ADMIN_PORT:-18190}
work=$(mktemp -d "${TMPDIR:-/tmp}/tern-xds-push.XXXXXX")
pids=
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$PY" - "$N" "$ORIGIN_PORT" "$work" <<'EOF'
import sys
n, port, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ep = "{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}" % port
eds = "endpoints:\n- {cluster_name: svc, endpoints: [{lb_endpoints: [%s]}]}\n" % ep
with open(work + "/small.yaml", "w") as f:
    f.write("version: small\nroutes:\n- {name: rc1, virtual_hosts: [{name: all, domains: ['*'], "
            "routes: [{match: {prefix: /}, route: {cluster: web}}]}]}\n" + eds)
with open(work + "/big.yaml", "w") as f:
    f.write("version: big\nroutes:\n- name: rc1\n  virtual_hosts:\n  - name: all\n    domains: ['*']\n    routes:\n")
    for i in range(n):
        f.write("    - {match: {prefix: /c%d/}, route: {cluster: c%d}}\n" % (i, i))
    f.write("    - {match: {prefix: /}, route: {cluster: web}}\nclusters:\n")
    for i in range(n):
        f.write("- {name: c%d, type: STATIC, connect_timeout: 1s, load_assignment: {cluster_name: c%d, "
                "endpoints: [{lb_endpoints: [%s]}]}}\n" % (i, i, ep))
    f.write(eds)
EOF
cat >"$work/tern.yaml" <<EOF
node: {id: push-bench, cluster: bench}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $ADMIN_PORT}}}
dynamic_resources:
  ads_config: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}
  cds_config: {ads: {}, resource_api_version: V3}
static_resources:
  listeners:
  - name: front
    address: {socket_address: {address: 127.0.0.1, port_value: $PROXY_PORT}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          rds: {route_config_name: rc1, config_source: {ads: {}, resource_api_version: V3}}
          http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
  clusters:
  - name: web
    type: EDS
    connect_timeout: 1s
    eds_cluster_config: {service_name: svc, eds_config: {ads: {}, resource_api_version: V3}}
  - name: xds_cluster
    type: STATIC
    connect_timeout: 1s
    load_assignment: {cluster_name: xds_cluster, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $CP_PORT}}}}]}]}
EOF
cp "$work/small.yaml" "$work/snap.yaml"
"$PY" tests/origin/origin.py --port "$ORIGIN_PORT" --name origin >/dev/null 2>&1 &
pids="$pids $!"
"$PY" tests/xds/xds_server.py --port "$CP_PORT" --snapshot "$work/snap.yaml" --gen-dir build/xds-gen 2>"$work/cp.log" &
pids="$pids $!"
sleep 2
"$TERN" -c "$work/tern.yaml" --concurrency 2 2>"$work/tern.log" &
tern=$!
pids="$pids $tern"
for i in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PROXY_PORT/x")" = 200 ] && break
    sleep 0.1
done

# four keep-alive clients through the push
"$PY" - "$PROXY_PORT" "$work/stop" >"$work/load" <<'EOF' &
import http.client, os, sys, threading
port, stop = int(sys.argv[1]), sys.argv[2]
counts, lock = [0, 0], threading.Lock()
def run():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while not os.path.exists(stop):
        try:
            c.request("GET", "/load")
            r = c.getresponse()
            r.read()
            bad = r.status != 200
        except Exception:
            bad = True
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        with lock:
            counts[0] += 1
            counts[1] += bad
ts = [threading.Thread(target=run) for _ in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(counts[0], counts[1])
EOF
load=$!
sleep 1
now() { date +%s.%N; }
t0=$(now)
cp "$work/big.yaml" "$work/snap.tmp" && mv "$work/snap.tmp" "$work/snap.yaml"
last=c$((N - 1))
until grep -q "^SEND type=CDS version=big" "$work/cp.log"; do sleep 0.05; done
t_sent=$(now)
until grep -q "^ACK type=CDS version=big" "$work/cp.log"; do sleep 0.05; done
t_cds=$(now)
until grep -q "^ACK type=RDS version=big" "$work/cp.log"; do sleep 0.05; done
t_rds=$(now)
until curl -s "http://127.0.0.1:$ADMIN_PORT/stats?filter=cluster.$last.upstream_rq_total" | grep -q ': [1-9]'; do
    curl -s -o /dev/null "http://127.0.0.1:$PROXY_PORT/$last/x"
    sleep 0.05
done
t_served=$(now)
touch "$work/stop"
wait "$load"
set -- $(cat "$work/load")
rss=$(ps -o rss= -p "$tern")
if grep -q "^NACK" "$work/cp.log"; then grep "^NACK" "$work/cp.log" | cut -c1-300; fi
awk -v n="$N" -v t0="$t0" -v s="$t_sent" -v c="$t_cds" -v r="$t_rds" -v v="$t_served" -v req="$1" -v bad="$2" -v rss="$rss" 'BEGIN {
    printf "%d clusters + %d routes in one push\n", n, n
    printf "  control plane loaded and sent:  %.2f s after the snapshot changed\n", s - t0
    printf "  tern ACKed CDS:                 %.2f s after the send\n", c - s
    printf "  tern ACKed RDS:                 %.2f s after the send\n", r - s
    printf "  request to the last cluster:    %.2f s after the send\n", v - s
    printf "  clients meanwhile:              %d requests, %d errors\n", req, bad
    printf "  tern RSS after:                 %d MiB\n", rss / 1024
}'
[ "$2" = 0 ]
