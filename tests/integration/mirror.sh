#!/bin/sh
# Request mirroring (request_mirror_policies) through the real tern, against
# real origins: static and cluster_header mirrors, several policies, the
# virtual host's list, the "-shadow" authority, runtime_fraction sampling,
# the shadow's headers and bodies (Content-Length, chunked, 10 MB) as the
# primary sends them, the mirror's answer never reaching the client, and
# isolation: a slow, refusing or black-holed mirror leaves the primary's
# answers and their speed alone, memory stays bounded and sheds are counted;
# x-mirror-cluster from external clients is stripped (internal_only_headers);
# the stats by name in /stats and /stats/prometheus.
#
#   mirror.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

set -- $(free_port 10)
o_web=$1 o_mir=$2 o_mir2=$3 o_slow=$4 p_refused=$5 p_hole=$6 f=$7 edge=$8 adm=$9
start_origin web "$o_web" || { tn_fail "origin web starts" "see above"; tn_summary; }
# The mirror answers 503 with its own body: neither may reach the client.
start_origin mir "$o_mir" --status 503 --json-log "$TN_TMP/mir.json" ||
    { tn_fail "origin mir starts" "see above"; tn_summary; }
start_origin mir2 "$o_mir2" --json-log "$TN_TMP/mir2.json" || { tn_fail "origin mir2 starts" "see above"; tn_summary; }
start_origin slow "$o_slow" --delay-ms 5000 || { tn_fail "origin slow starts" "see above"; tn_summary; }

# A black hole: accepts connections and never reads from them, with a small
# receive buffer so that the shadow's write side backs up.
tn_spawn "$TN_TMP/hole" "$TN_PYTHON" -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(4096)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
' "$p_hole"
wait_port "$p_hole" || tn_fail "black hole listens" "not on $p_hole"

mp() { # mp POLICY...: a request_mirror_policies field
    printf 'request_mirror_policies: [%s],' "$(echo "$@" | sed 's/} {/}, {/g')"
}
rt() { # rt PREFIX CLUSTER ROUTE_EXTRA
    it_route_cluster "$1" "$2" "$3"
}
routes="
    $(rt /static web "$(mp '{cluster: mir}')"),
    $(rt /multi web "$(mp '{cluster: mir}' '{cluster: mir2}')"),
    $(rt /hdr web "$(mp '{cluster_header: x-mirror-cluster}')"),
    $(rt /half web "$(mp '{cluster: mir2, runtime_fraction: {default_value: {numerator: 50, denominator: HUNDRED}}}')"),
    $(rt /zero web "$(mp '{cluster: mir2, runtime_fraction: {default_value: {numerator: 0}}}')"),
    $(rt /nosuffix web "$(mp '{cluster: mir2, disable_shadow_host_suffix_append: true}')"),
    {match: {prefix: /mut}, route: {cluster: web, $(mp '{cluster: mir2}')},
     request_headers_to_add: [{header: {key: x-added, value: by-route}}], request_headers_to_remove: [x-drop]},
    $(rt /slow web "$(mp '{cluster: slow}')"),
    $(rt /refused web "$(mp '{cluster: refused}')"),
    $(rt /hole web "timeout: 2s, $(mp '{cluster: hole}')"),
    $(rt /plain web)"
vh_routes="$(rt /own web "$(mp '{cluster: mir}')"), $(rt / web)"
vhosts="$(it_vhost vh '"vh.test"' "$vh_routes" "$(mp '{cluster: mir2}')"), $(it_vhost all '"*"' "$routes")"
rc=$(it_rc "$vhosts" "internal_only_headers: [x-mirror-cluster],")
# front: the edge, loopback clients are internal (trusted); edge2: not at
# the edge, a request without x-forwarded-for is external.
L="$(it_listener front "$f" "$rc" "use_remote_address: true,"), $(it_listener edge "$edge" "$rc")"
C="$(it_cluster web "127.0.0.1:$o_web"), $(it_cluster mir "127.0.0.1:$o_mir"), $(it_cluster mir2 "127.0.0.1:$o_mir2" 'per_connection_buffer_limit_bytes: 33554432,'),
   $(it_cluster slow "127.0.0.1:$o_slow"), $(it_cluster refused "127.0.0.1:$p_refused"),
   $(it_cluster hole "127.0.0.1:$p_hole" 'per_connection_buffer_limit_bytes: 16384, circuit_breakers: {thresholds: [{max_connections: 8, max_pending_requests: 8, max_requests: 16}]},')"
printf '{admin: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}, static_resources: {listeners: [%s], clusters: [%s]}}\n' \
    "$adm" "$L" "$C" >"$TN_TMP/mirror.yaml"
# mir2 takes the 10 MB bodies: a shadow cannot pause the client, so one whose
# connection is slow to come (a loaded machine) keeps up to its buffer limit
# waiting and is shed past it; 32 MiB lets these wait, the "hole" cluster
# below shows the shedding.
# ASan's quarantine would hide what the memory check looks at.
ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}quarantine_size_mb=16"
export ASAN_OPTIONS
it_start "$TN_TMP/mirror.yaml" "$f" --concurrency 2 -l debug
wait_port "$adm" || tn_fail "admin listens" "not on $adm"
base=http://127.0.0.1:$f
admin=http://127.0.0.1:$adm

stat() { tn_curl "$admin/stats" | sed -n "s/^$1: //p"; }
# seen LOG LINE [SECONDS]: waits for LINE in an origin's log (shadows may
# arrive after the client's answer); 0 when it came.
seen() {
    n=0
    while [ $n -lt $((${3:-5} * 10)) ]; do
        grep -qxF -- "$2" "$(origin_log "$1")" 2>/dev/null && return 0
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}
seen_check() { # seen_check NAME ORIGIN LINE
    if seen "$2" "$3"; then tn_pass "$1"; else tn_fail "$1" "no '$3' in $(origin_log "$2"): $(tail -n 5 "$(origin_log "$2")" | tr '\n' '|')"; fi
}
lines() { grep -cF -- "$2" "$(origin_log "$1")" 2>/dev/null || true; }
wait_lines() { # wait_lines ORIGIN NEEDLE N: waits (5 s at most) for N lines; prints the count
    n=0
    while [ $n -lt 50 ] && [ "$(lines "$1" "$2")" -lt "$3" ]; do sleep 0.1; n=$((n + 1)); done
    lines "$1" "$2"
}
# jrec FILE PATH KEY: KEY of the mirror's JSON record for PATH (waits up to 10 s)
jrec() {
    n=0
    while [ $n -lt 100 ]; do
        v=$("$TN_PYTHON" -c '
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d["path"] == sys.argv[2]:
        v = d
        for k in sys.argv[3].split("."):
            v = v.get(k, "") if isinstance(v, dict) else ""
        print(v if isinstance(v, str) else json.dumps(v, sort_keys=True))
        break
' "$1" "$2" "$3" 2>/dev/null)
        [ -n "$v" ] && { echo "$v"; return; }
        sleep 0.1
        n=$((n + 1))
    done
}

# ---- static mirror, the answer, the authority --------------------------------

resp=$(tn_curl -D "$TN_TMP/h1" -H 'Host: localhost:10000' "$base/static/one")
check "static: the client gets the primary's answer" web "$(echo "$resp" | json_get name)"
check "static: the primary's status, not the mirror's 503" 200 "$(sed -n '1s/^HTTP\/1.1 \([0-9]*\).*/\1/p' "$TN_TMP/h1")"
check_contains "static: x-origin is the primary's" "x-origin: web" "$(tr -d '\r' <"$TN_TMP/h1")"
seen_check "static: the mirror saw it, Host localhost-shadow:10000" mir "[mir] GET /static/one Host: localhost-shadow:10000"
tn_curl -o /dev/null -H 'Host: example.test' "$base/static/noport"
seen_check "-shadow without a port: example.test-shadow" mir "[mir] GET /static/noport Host: example.test-shadow"
tn_curl -o /dev/null -H 'Host: [::1]:8080' "$base/static/v6"
seen_check "-shadow on an IPv6 literal goes after the ]" mir "[mir] GET /static/v6 Host: [::1]-shadow:8080"
tn_curl -o /dev/null -H 'Host: localhost:10000' "$base/nosuffix/a"
seen_check "disable_shadow_host_suffix_append keeps Host" mir2 "[mir2] GET /nosuffix/a Host: localhost:10000"
tn_curl -o /dev/null -I -H 'Host: h.test' "$base/static/head"
seen_check "HEAD is mirrored" mir "[mir] HEAD /static/head Host: h.test-shadow"

# ---- several policies, the virtual host's list, cluster_header -------------------

tn_curl -o /dev/null -H 'Host: m.test' "$base/multi/x"
seen_check "two policies: the first mirror" mir "[mir] GET /multi/x Host: m.test-shadow"
seen_check "two policies: the second mirror" mir2 "[mir2] GET /multi/x Host: m.test-shadow"
tn_curl -o /dev/null -H 'Host: vh.test' "$base/any"
seen_check "the virtual host's policies apply to a route without its own" mir2 "[mir2] GET /any Host: vh.test-shadow"
tn_curl -o /dev/null -H 'Host: vh.test' "$base/own"
seen_check "a route's own list wins over the virtual host's" mir "[mir] GET /own Host: vh.test-shadow"
check "... and the virtual host's is not added to it" 0 "$(lines mir2 'GET /own ')"

nc0=$(stat 'http\.front\.mirror\.no_cluster')
tn_curl -o /dev/null -H 'Host: c.test' -H 'x-mirror-cluster: mir2' "$base/hdr/named"
seen_check "cluster_header names the mirror" mir2 "[mir2] GET /hdr/named Host: c.test-shadow"
out=$(tn_curl -H 'Host: c.test' "$base/hdr/none" | json_get name)
check "cluster_header absent: the request is served" web "$out"
out=$(tn_curl -H 'Host: c.test' -H 'x-mirror-cluster: nosuch' "$base/hdr/unknown" | json_get name)
check "cluster_header naming no cluster: the request is served" web "$out"
sleep 0.5
check "cluster_header absent or unknown: no mirror saw them" 0 "$(($(lines mir /hdr/) + $(lines mir2 /hdr/none) + $(lines mir2 /hdr/unknown)))"
check "mirror.no_cluster counts both" 2 "$(($(stat 'http\.front\.mirror\.no_cluster') - nc0))"
check_contains "a debug line says why" "no mirror: unknown cluster in nosuch" "$(cat "$TN_TMP/tern.log")"

# internal_only_headers: the edge listener takes a request without
# x-forwarded-for as external and strips x-mirror-cluster before the mirror
# reads it.
out=$(tn_curl -H 'Host: c.test' -H 'x-mirror-cluster: mir2' "http://127.0.0.1:$edge/hdr/external" | json_get name)
check "external client naming a mirror: served" web "$out"
tn_curl -o /dev/null -H 'Host: c.test' -H 'x-mirror-cluster: mir2' -H 'x-forwarded-for: 10.1.2.3' "http://127.0.0.1:$edge/hdr/internal"
seen_check "internal client (trusted x-forwarded-for) may name a mirror" mir2 "[mir2] GET /hdr/internal Host: c.test-shadow"
check "external client cannot choose the mirror (internal_only_headers)" 0 "$(lines mir2 /hdr/external)"

# ---- headers and bodies as the primary sends them ----------------------------------

primary=$(tn_curl -H 'Host: h.test' -H 'x-drop: me' -H 'x-keep: yes' -H 'x-request-id: 6f0b1c1e-0000-4000-8000-000000000001' "$base/mut/h")
mh=$(jrec "$TN_TMP/mir2.json" /mut/h headers)
ph=$(echo "$primary" | "$TN_PYTHON" -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["headers"], sort_keys=True))')
strip_host() { "$TN_PYTHON" -c 'import json,sys; d=json.loads(sys.stdin.read()); d.pop("host",None); print(json.dumps(d, sort_keys=True))'; }
check "the mirror's headers are the primary's (after the route's mutations), Host aside" \
    "$(echo "$ph" | strip_host)" "$(echo "$mh" | strip_host)"
check "the route's request_headers_to_add reached the mirror" by-route "$(echo "$mh" | json_get x-added)"
check "the route's request_headers_to_remove applied to the mirror" "" "$(echo "$mh" | json_get x-drop)"

head -c 3000 /dev/urandom >"$TN_TMP/small"
head -c 10485760 /dev/urandom >"$TN_TMP/big"
body_case() { # body_case NAME PATH FILE [CURL ARGS]: client, primary and mirror agree on the body
    bc_name=$1 bc_path=$2 bc_file=$3
    shift 3
    want=$(sha256sum "$bc_file" | cut -d' ' -f1)
    got=$(tn_curl -X POST --data-binary "@$bc_file" "$@" "$base$bc_path" | json_get body_sha256)
    check "$bc_name: the primary got the body" "$want" "$got"
    check "$bc_name: the mirror got the same bytes" "$want" "$(jrec "$TN_TMP/mir2.json" "$bc_path" body_sha256)"
}
body_case "POST with Content-Length" /mut/cl "$TN_TMP/small"
body_case "POST chunked" /mut/chunked "$TN_TMP/small" -H 'Transfer-Encoding: chunked'
body_case "POST 10 MB" /mut/big "$TN_TMP/big"
body_case "POST 10 MB chunked" /mut/bigchunked "$TN_TMP/big" -H 'Transfer-Encoding: chunked'

# The client leaves in the middle of its body: the shadow is reset, not
# left waiting (the mirror never gets a complete request).
"$TN_PYTHON" -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /mut/aborted HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 100000)
time.sleep(0.5)
s.close()
' "$f"
seen_check "aborted upload: the shadow had started" mir2 "[mir2] POST /mut/aborted Host: a.test-shadow"
sleep 1
check "aborted upload: the mirror never got a complete request" 0 "$(grep -c '"path": "/mut/aborted"' "$TN_TMP/mir2.json")"
check "aborted upload: no shadow left in flight" 0 "$(stat 'cluster\.mir2\.upstream_rq_active')"

# CONNECT is a tunnel, not a request to replay.
out=$(printf 'CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n' | it_raw "$f" 2)
sleep 0.3
check "CONNECT is not mirrored" 0 "$(($(lines mir CONNECT) + $(lines mir2 CONNECT)))"

# ---- runtime_fraction --------------------------------------------------------------

before=$(lines mir2 'GET /half')
"$TN_PYTHON" - "$f" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
for i in range(400):
    c.request("GET", "/half/%d" % i, headers={"Host": "f.test"})
    c.getresponse().read()
for i in range(50):
    c.request("GET", "/zero/%d" % i, headers={"Host": "f.test"})
    c.getresponse().read()
EOF
sleep 1
n=$(($(lines mir2 'GET /half') - before))
# Binomial(400, 0.5): mean 200, sigma 10; +-5 sigma.
check "runtime_fraction 50%: 400 requests mirrored 150..250 times (got $n)" yes "$([ "$n" -ge 150 ] && [ "$n" -le 250 ] && echo yes || echo no)"
check "runtime_fraction 0: never mirrored" 0 "$(lines mir2 'GET /zero')"

# ---- isolation: slow, refusing, black-holed mirrors ---------------------------------

# seq_ms PATH N: N sequential requests on one keep-alive connection; prints
# "MS OK" (elapsed milliseconds, answers that were 200 from web).
seq_ms() {
    "$TN_PYTHON" - "$f" "$1" "$2" <<'EOF'
import http.client, json, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
ok = 0
t = time.monotonic()
for i in range(int(sys.argv[3])):
    c.request("GET", "%s/%d" % (sys.argv[2], i), headers={"Host": "iso.test"})
    r = c.getresponse()
    b = r.read()
    if r.status == 200 and json.loads(b)["name"] == "web":
        ok += 1
print(int((time.monotonic() - t) * 1000), ok)
EOF
}
# Compare as a ratio with a floor (the machine is noisy; a primary waiting
# for a 5 s mirror would take 20 x 5 s).
within() { # within MS BASE_MS: MS <= 5 x max(BASE_MS, 200)
    b=$2
    [ "$b" -lt 200 ] && b=200
    [ "$1" -le $((b * 5)) ] && echo yes || echo "no: $1 ms vs $2 ms without mirroring"
}
set -- $(seq_ms /plain 20)
base_ms=$1
check "baseline: 20 answers" 20 "$2"
set -- $(seq_ms /slow 20)
check "slow mirror (5 s): the 20 primary answers are right" 20 "$2"
check "slow mirror: keep-alive requests are not delayed (ratio to no mirror)" yes "$(within "$1" "$base_ms")"
check "slow mirror: it did get the 20 shadows" 20 "$(wait_lines slow 'GET /slow/' 20)"

# Pipelined: the second request's answer does not wait for the first's shadow.
t0=$(date +%s%N)
out=$(printf 'GET /slow/p1 HTTP/1.1\r\nHost: p.test\r\n\r\nGET /slow/p2 HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n' | it_raw "$f" 10)
t1=$(date +%s%N)
check "pipelined behind a slow shadow: both answered" 2 "$(echo "$out" | grep -c '^HTTP/1.1 200')"
check "pipelined behind a slow shadow: not delayed (ratio to no mirror)" yes "$(within $(((t1 - t0) / 1000000)) "$base_ms")"

set -- $(seq_ms /refused 20)
check "refusing mirror: the 20 primary answers are right" 20 "$2"
check "refusing mirror: not delayed (ratio to no mirror)" yes "$(within "$1" "$base_ms")"
sleep 0.5
n=$(stat 'http\.front\.mirror\.failed')
check "refusing mirror: mirror.failed counts the connect failures (>= 20)" yes "$([ "${n:-0}" -ge 20 ] && echo yes || echo "no: $n")"
n=$(stat 'cluster\.refused\.upstream_cx_connect_fail')
check "refusing mirror: the mirror cluster's upstream_cx_connect_fail" yes "$([ "${n:-0}" -ge 1 ] && echo yes || echo "no: $n")"

# The shadows outlive their streams: the slow mirror's answers arrive after
# every client is gone, and count in its cluster.
n=0
while [ $n -lt 100 ] && [ "$(stat 'cluster\.slow\.upstream_rq_completed')" != 22 ]; do sleep 0.1; n=$((n + 1)); done
check "slow mirror: its 22 answers were read after the clients left" 22 "$(stat 'cluster\.slow\.upstream_rq_completed')"
check "slow mirror: ... in its cluster's upstream_rq_2xx" 22 "$(stat 'cluster\.slow\.upstream_rq_2xx')"

# Flood a black hole with 64 KiB uploads: the primary answers them all, the
# shadows are shed (circuit breakers, the write side's watermark), and
# tern's memory stays far below what holding the bodies would take.
rss() { sed -n 's/^VmRSS: *\([0-9]*\) kB/\1/p' "/proc/$TN_TERN_PID/status"; }
flood() { # flood N: N 64 KiB POSTs to /hole on 16 connections; prints how many got 200
    "$TN_PYTHON" - "$f" "$1" <<'EOF'
import http.client, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
body = b"m" * 65536
ok = [0]
lock = threading.Lock()
def run(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(k):
        c.request("POST", "/hole/%d" % i, body=body, headers={"Host": "hole.test"})
        r = c.getresponse()
        r.read()
        if r.status == 200:
            with lock:
                ok[0] += 1
ts = [threading.Thread(target=run, args=(n // 16,)) for _ in range(16)]
for t in ts: t.start()
for t in ts: t.join()
print(ok[0])
EOF
}
check "black hole: warm-up answered" 320 "$(flood 320)"
rss0=$(rss)
d0=$(stat 'http\.front\.mirror\.dropped')
check "black hole: 4000 uploads (250 MiB) all answered by the primary" 4000 "$(flood 4000)"
rss1=$(rss)
grow=$(((rss1 - rss0) / 1024))
check "black hole: memory stays bounded (grew ${grow} MiB of the 250 MiB sent)" yes "$([ "$grow" -lt 64 ] && echo yes || echo no)"
d1=$(stat 'http\.front\.mirror\.dropped')
check "black hole: mirror.dropped counts the shed shadows" yes "$([ $((d1 - d0)) -ge 100 ] && echo yes || echo "no: $((d1 - d0))")"
n=$(stat 'cluster\.hole\.upstream_rq_pending_overflow')
check "black hole: the mirror cluster's circuit breakers counted overflow" yes "$([ "${n:-0}" -ge 1 ] && echo yes || echo "no: $n")"
n=0
while [ $n -lt 60 ] && [ "$(stat 'cluster\.hole\.upstream_rq_active')" != 0 ]; do sleep 0.1; n=$((n + 1)); done
check "black hole: shadows end by their route timeout (none left after it)" 0 "$(stat 'cluster\.hole\.upstream_rq_active')"

# ---- stats -------------------------------------------------------------------------

s=$(tn_curl "$admin/stats")
for name in requests dropped no_cluster failed; do
    check_match "/stats has http.front.mirror.$name" "^http\.front\.mirror\.$name: [0-9]+$" "$(echo "$s" | grep "^http\.front\.mirror\.$name:")"
done
n=$(stat 'http\.front\.mirror\.requests')
check "mirror.requests counts the shadows started (> 200)" yes "$([ "${n:-0}" -gt 200 ] && echo yes || echo "no: $n")"
n=$(stat 'cluster\.mir\.upstream_rq_5xx')
check "the mirror's 503s count in its cluster's upstream_rq_5xx" yes "$([ "${n:-0}" -ge 5 ] && echo yes || echo "no: $n")"
check "... and never in the connection manager's downstream_rq_5xx" 0 "$(stat 'http\.front\.downstream_rq_5xx')"
p=$(tn_curl "$admin/stats/prometheus")
check_contains "prometheus: mirror.requests" 'envoy_http_mirror_requests{envoy_http_conn_manager_prefix="front"}' "$p"
check_contains "prometheus: mirror.dropped" 'envoy_http_mirror_dropped{envoy_http_conn_manager_prefix="front"}' "$p"
check_contains "prometheus: mirror.no_cluster" 'envoy_http_mirror_no_cluster{envoy_http_conn_manager_prefix="front"}' "$p"
check_contains "prometheus: mirror.failed" 'envoy_http_mirror_failed{envoy_http_conn_manager_prefix="front"}' "$p"
check_contains "prometheus: the mirror cluster's upstream_rq_time" 'envoy_cluster_upstream_rq_time_count{envoy_cluster_name="mir"}' "$p"

stop_tern
check "tern exits 0 on SIGTERM with shadows in flight" 0 "$TN_RC"
it_sanitizers
tn_summary
