#!/bin/sh
# One big xDS push under load: tern starts on a small snapshot from the real
# control plane (tests/xds/xds_server.py, ADS state of the world: one route
# configuration rc1 whose only route "/" goes to the EDS cluster web, origin
# A), keep-alive clients request through it, and the snapshot is swapped
# (atomic mv) for one with N more clusters (STATIC, one endpoint each, origin
# B) and rc1 with N more routes ("/c<i>/" to cluster c<i>) ahead of "/".
# Checked as a user sees it: tern ACKs CDS and RDS of the new version (the
# control plane's log) and NACKs nothing, cluster_manager.active_clusters
# grows by N, the first, a middle and the last new route are answered by
# origin B through their own cluster, so are 200 random new routes (origin
# B's counts and tern's per-cluster stats say each went where it should),
# and the clients saw no error (non-200, wrong origin, connection failure
# or 10 s timeout) during the whole push. The times measured (snapshot
# written -> control plane sent, sent -> CDS ACK, -> RDS ACK, -> the last
# new route answered) are printed as "# " lines.
#
#   xds_scale.sh TERN_BINARY SOURCE_DIR [N]
#
# N is XDS_SCALE_N from the environment, else the third argument (ctest
# passes 2000 in a sanitizer build), else 10000. XDS_SCALE_TIMEOUT (default
# 150) bounds, in seconds, the push from the snapshot's write to the last new
# route answered (ctest's TIMEOUT is 240). XDS_SCALE_SEED picks the sample
# (default: random, printed). The big snapshot is written as JSON, which
# xds_server.py reads ~10x faster than the same in YAML.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

N=${XDS_SCALE_N:-${3:-10000}}
LIMIT=${XDS_SCALE_TIMEOUT:-150}
SEED=${XDS_SCALE_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
SAMPLE=200
[ "$SAMPLE" -le "$N" ] || SAMPLE=$N
CP="$TN_SRC/tests/xds/xds_server.py"
GEN=$TN_TMP/gen
[ -d "$(dirname "$TERN")" ] && GEN=$(cd "$(dirname "$TERN")" && pwd)/xds-gen
CP_LOG=$TN_TMP/cp.err
NODE=xds-scale

set -- $(free_port 5)
oa=$1 ob=$2 front=$3 admin=$4 cp=$5
echo "# N=$N sample=$SAMPLE seed=$SEED ports: origin A $oa, origin B $ob, front $front, admin $admin, control plane $cp"

# ---- helpers -------------------------------------------------------------------

# show_logs: the tails of tern's and the control plane's logs (lines cut: a
# SEND line names every resource).
show_logs() {
    tn_show_log
    echo "# --- $CP_LOG (last 20 lines, cut at 300 characters) ---" >&2
    tail -n 20 "$CP_LOG" 2>/dev/null | cut -c1-300 | sed 's/^/# /' >&2
}
# die NAME WHY: a failure nothing after it can be checked without.
die() {
    tn_fail "$1" "$2"
    show_logs
    tn_summary
}
now() { date +%s.%N; }
# elapsed FROM TO: seconds between two now()s, two decimals.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
stat() {
    curl -sS --max-time 10 "http://127.0.0.1:$admin/stats?filter=$1" | sed -n "s/^$1: //p"
}
cp_has() { grep -q "$1" "$CP_LOG"; }
# from PATH: the origin that answered GET PATH through tern, or the status.
from() {
    fr=$(curl -sS --max-time 10 -D - -o /dev/null "http://127.0.0.1:$front$1" 2>/dev/null | tr -d '\r')
    case $(printf '%s\n' "$fr" | sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p') in
    200) printf '%s\n' "$fr" | sed -n 's/^x-origin: //ip' ;;
    '') printf 000 ;;
    *) printf '%s\n' "$fr" | sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' ;;
    esac
}
is_from() { [ "$(from "$1")" = "$2" ]; }
active_is() { [ "$(stat cluster_manager.active_clusters)" = "$1" ]; }
# wait_for SECONDS CMD...: polls CMD every 0.05 s until it succeeds;
# wait_until EPOCH CMD...: the same until the time EPOCH (date +%s).
wait_for() {
    wf_end=$(($(date +%s) + $1))
    shift
    wait_until "$wf_end" "$@"
}
wait_until() {
    wf_end=$1
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$wf_end" ] || return 1
        sleep 0.05
    done
}

# ---- the snapshots, the bootstrap ---------------------------------------------

"$TN_PYTHON" - "$N" "$oa" "$ob" "$TN_TMP" <<'EOF' || die "snapshots written" "the generator failed"
import json, sys
n, oa, ob, tmp = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def assignment(name, port):
    return {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
        "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
to_web = {"match": {"prefix": "/"}, "route": {"cluster": "web"}}
def rc(routes):
    return {"name": "rc1", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]}
small = {"version": "small", "routes": [rc([to_web])], "endpoints": [assignment("svc", oa)]}
big = {"version": "big",
       "routes": [rc([{"match": {"prefix": "/c%d/" % i}, "route": {"cluster": "c%d" % i}} for i in range(n)]
                     + [to_web])],
       "clusters": [{"name": "c%d" % i, "type": "STATIC", "connect_timeout": "1s",
                     "load_assignment": assignment("c%d" % i, ob)} for i in range(n)],
       "endpoints": [assignment("svc", oa)]}
for name, doc in (("snap.json", small), ("big.json", big)):
    with open("%s/%s" % (tmp, name), "w") as f:
        json.dump(doc, f)
EOF

cat >"$TN_TMP/tern.yaml" <<EOF
node: {id: $NODE, cluster: tests}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $admin}}}
dynamic_resources:
  ads_config: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}
  cds_config: {ads: {}, resource_api_version: V3}
static_resources:
  listeners:
  - name: front
    address: {socket_address: {address: 127.0.0.1, port_value: $front}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": $IT_HCM_TYPE
          stat_prefix: front
          rds: {route_config_name: rc1, config_source: {ads: {}, resource_api_version: V3}}
          http_filters: [$IT_ROUTER]
  clusters:
  - name: web
    type: EDS
    connect_timeout: 1s
    eds_cluster_config: {service_name: svc, eds_config: {ads: {}, resource_api_version: V3}}
  - $(it_cluster xds_cluster "127.0.0.1:$cp")
EOF

# ---- start: origins, control plane, tern on the small snapshot -----------------

start_origin A "$oa" || die "origin A starts" "see above"
start_origin B "$ob" || die "origin B starts" "see above"
tn_spawn "$TN_TMP/cp" "$TN_PYTHON" "$CP" --port "$cp" --snapshot "$TN_TMP/snap.json" --gen-dir "$GEN"
CP_PID=$TN_PID
wait_port "$cp" 60 "$CP_PID" || die "control plane starts" "$(tail -5 "$CP_LOG")"
it_start "$TN_TMP/tern.yaml" "$front" --concurrency 2

wait_for 20 is_from /x A || die "small snapshot: GET /x answered by origin A" "got '$(from /x)'"
tn_pass "small snapshot: GET /x answered by origin A"
wait_for 10 cp_has "^ACK type=RDS version=small .*node=$NODE " || die "small snapshot: RDS ACKed" "no ACK in the log"
wait_for 10 cp_has "^ACK type=CDS version=small .*node=$NODE " || die "small snapshot: CDS ACKed" "no ACK in the log"
check "small snapshot: /c$((N - 1))/x goes to web (origin A)" A "$(from "/c$((N - 1))/x")"
base=$(stat cluster_manager.active_clusters)
check_match "small snapshot: cluster_manager.active_clusters is a number ($base)" '^[0-9]+$' "$base"

# ---- clients through the push --------------------------------------------------

# Four keep-alive connections sending GET /load (route "/", origin A) until
# $TN_TMP/stop exists; then one line: requests, errors, slowest request (s),
# and the first few errors.
cat >"$TN_TMP/load.py" <<'EOF'
import http.client, os, sys, threading, time
port, stop = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
total, errors, slowest, first = [0], [0], [0.0], []
def connect():
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)
def run():
    c = connect()
    while not os.path.exists(stop):
        t = time.monotonic()
        why = None
        try:
            c.request("GET", "/load")
            r = c.getresponse()
            r.read()
            if r.status != 200:
                why = "status %d" % r.status
            elif r.getheader("x-origin") != "A":
                why = "answered by %r" % r.getheader("x-origin")
        except Exception as e:
            why = "%s: %s" % (type(e).__name__, e)
            c.close()
            c = connect()
        took = time.monotonic() - t
        with lock:
            total[0] += 1
            slowest[0] = max(slowest[0], took)
            if why:
                errors[0] += 1
                if len(first) < 5:
                    first.append(why)
ts = [threading.Thread(target=run) for _ in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(total[0], errors[0], "%.3f" % slowest[0], "; ".join(first) or "-")
EOF
tn_spawn "$TN_TMP/load" "$TN_PYTHON" "$TN_TMP/load.py" "$front" "$TN_TMP/stop"
LOAD_PID=$TN_PID
sleep 1

# ---- the push --------------------------------------------------------------------

t_written=$(now)
deadline=$(($(date +%s) + LIMIT))
cp "$TN_TMP/big.json" "$TN_TMP/snap.tmp" && mv "$TN_TMP/snap.tmp" "$TN_TMP/snap.json"
wait_until "$deadline" cp_has "^SEND type=CDS version=big .*node=$NODE " ||
    die "the control plane sends CDS version big" "not within ${LIMIT}s of the write"
t_sent=$(now)
tn_pass "the control plane loads the big snapshot and sends CDS ($(elapsed "$t_written" "$t_sent") s)"
wait_until "$deadline" cp_has "^N*ACK type=CDS version=big .*node=$NODE " ||
    die "tern answers CDS version big" "no ACK or NACK within ${LIMIT}s of the write"
t_cds=$(now)
wait_until "$deadline" cp_has "^N*ACK type=RDS version=big .*node=$NODE " ||
    die "tern answers RDS version big" "no ACK or NACK within ${LIMIT}s of the write"
t_rds=$(now)
if cp_has "^NACK "; then
    die "no NACK" "$(grep '^NACK ' "$CP_LOG" | head -3 | cut -c1-400)"
fi
tn_pass "no NACK"
cp_has "^ACK type=CDS version=big .*node=$NODE "
check "tern ACKs CDS version big" 0 $?
cp_has "^ACK type=RDS version=big .*node=$NODE "
check "tern ACKs RDS version big" 0 $?
last=/c$((N - 1))/x
wait_until "$deadline" is_from "$last" B || die "the last new route ($last) is answered by origin B" "got '$(from "$last")' ${LIMIT}s after the write"
t_served=$(now)
tn_pass "the last new route ($last) is answered by origin B"
touch "$TN_TMP/stop"

# ---- what tern holds now ---------------------------------------------------------

wait_for 10 active_is $((base + N))
check "cluster_manager.active_clusters grew by $N" $((base + N)) "$(stat cluster_manager.active_clusters)"
mid=$((N / 2))
check "the first new route (/c0/x) is answered by origin B" B "$(from /c0/x)"
check "a middle new route (/c$mid/x) is answered by origin B" B "$(from "/c$mid/x")"
check "the original route (/x) is still answered by origin A" A "$(from /x)"
for c in 0 "$mid" $((N - 1)); do
    v=$(stat "cluster.c$c.upstream_rq_total")
    [ "${v:-0}" -ge 1 ] 2>/dev/null
    check "cluster.c$c.upstream_rq_total counts the request ($v)" 0 $?
done

# $SAMPLE random new routes over one keep-alive connection: each answered
# 200 by origin B with the path sent; origin B saw each path once and tern
# counted one upstream request on each sampled cluster.
origin_reset "$ob"
sample=$("$TN_PYTHON" - "$front" "$admin" "$ob" "$N" "$SAMPLE" "$SEED" <<'EOF'
import http.client, json, random, re, sys
front, admin, ob, n, k, seed = (int(a) for a in sys.argv[1:])
picked = random.Random(seed).sample(range(n), k)
c = http.client.HTTPConnection("127.0.0.1", front, timeout=10)
bad = []
for i in picked:
    path = "/c%d/sample" % i
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        if r.status != 200 or r.getheader("x-origin") != "B" or json.loads(body)["path"] != path:
            bad.append("%s: %d from %s" % (path, r.status, r.getheader("x-origin")))
    except Exception as e:
        bad.append("%s: %s" % (path, e))
        c.close()
        c = http.client.HTTPConnection("127.0.0.1", front, timeout=10)
def get(port, path):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h.request("GET", path)
    return h.getresponse().read().decode()
seen = json.loads(get(ob, "/__count"))["paths"]
want = {"/c%d/sample" % i: 1 for i in picked}
if seen != want:
    extra = sorted(set(seen) ^ set(want))[:5]
    bad.append("origin B's counts differ from the paths sent (e.g. %s)" % extra)
stats = get(admin, "/stats?filter=upstream_rq_total")
counted = {int(m.group(1)) for m in re.finditer(r"^cluster\.c([0-9]+)\.upstream_rq_total: [1-9]", stats, re.M)}
missing = sorted(set(picked) - counted)
if missing:
    bad.append("no upstream request counted on cluster c%d (and %d more)" % (missing[0], len(missing) - 1))
print(len(bad), "; ".join(bad[:5]) or "-")
EOF
)
check "$SAMPLE random new routes answered by origin B through their cluster (seed $SEED)" "0 -" "$sample"

# ---- the clients ---------------------------------------------------------------

wait "$LOAD_PID" 2>/dev/null
set -- $(cat "$TN_TMP/load.out")
requests=${1:-0} errors=${2:-x} slowest=${3:-?}
[ $# -lt 3 ] || shift 3
[ "$requests" -gt 100 ] 2>/dev/null
check "the clients ran through the push ($requests requests, slowest ${slowest}s)" 0 $?
if [ "$errors" = 0 ]; then
    tn_pass "the clients saw no error during the push"
elif [ "$errors" = x ]; then
    tn_fail "the clients saw no error during the push" "the client printed nothing: $(tail -3 "$TN_TMP/load.err")"
else
    tn_fail "the clients saw no error during the push" "$errors errors, the first: $*"
fi

rss=$(ps -o rss= -p "$TN_TERN_PID" 2>/dev/null | tr -d ' ')
echo "# $N clusters + $N routes in one push (tern: $TERN)"
echo "#   control plane loaded and sent:  $(elapsed "$t_written" "$t_sent") s after the snapshot was written"
echo "#   tern ACKed CDS:                 $(elapsed "$t_sent" "$t_cds") s after the send"
echo "#   tern ACKed RDS:                 $(elapsed "$t_sent" "$t_rds") s after the send"
echo "#   the last new route served:      $(elapsed "$t_sent" "$t_served") s after the send"
echo "#   clients meanwhile:              $requests requests, $errors errors, slowest ${slowest} s"
echo "#   tern RSS after:                 $((${rss:-0} / 1024)) MiB"

stop_tern
check "tern exits 0" 0 "$TN_RC"
it_sanitizers
[ "$tn_failed" -eq 0 ] || show_logs
tn_summary
