#!/bin/sh
# The observability example, end to end on this machine: starts an origin
# (tests/origin/origin.py), tern on envoy.yaml and a real Prometheus on
# prometheus.yml, sends traffic (200s and 503s), waits until Prometheus has
# scraped tern a few times, then proves that the Grafana dashboard works
# against tern: every PromQL expression of grafana-dashboard.json (and every
# variable query) is evaluated through Prometheus's HTTP API and must give
# numbers, by the metric and label names the dashboard expects
# (check-dashboard.py). Also: tern validates envoy.yaml, promtool checks
# prometheus.yml and tern's exposition, Prometheus reports the target up, and
# at the end tern exits 0 on SIGTERM with no sanitizer report in its log.
#
#   examples/observability/run.sh [--keep]
#
# --keep (or TERN_OBS_KEEP=1): after the checks, leave everything running,
# traffic included, for a human to look at Prometheus (and Grafana, see
# README.md) until Ctrl-C.
#
# Environment:
#   TERN                      tern binary (default: build/tern)
#   TERN_OBS_ORIGIN_PORT      origin, the cluster service1     (default 8081)
#   TERN_OBS_LISTENER_PORT    tern's listener                  (default 10000)
#   TERN_OBS_ADMIN_PORT       tern's admin API                 (default 9901)
#   TERN_OBS_PROMETHEUS_PORT  Prometheus's web UI and API      (default 9090)
#   TERN_OBS_CONCURRENCY      tern's --concurrency             (default 2)
# It runs copies of envoy.yaml and prometheus.yml, in a temporary directory,
# with these ports. Everything listens on 127.0.0.1 only.
#
# Exit status: 0 when every check passed, 1 when one failed, 2 when something
# it needs is missing or a port is taken. Processes it started are stopped on
# exit; the temporary directory is removed, or kept (and named) on failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tern=${TERN:-$root/build/tern}
py=${TN_PYTHON:-/usr/bin/python3}
origin_port=${TERN_OBS_ORIGIN_PORT:-8081}
listen_port=${TERN_OBS_LISTENER_PORT:-10000}
admin_port=${TERN_OBS_ADMIN_PORT:-9901}
prom_port=${TERN_OBS_PROMETHEUS_PORT:-9090}
concurrency=${TERN_OBS_CONCURRENCY:-2}
keep=${TERN_OBS_KEEP:-0}
for arg in "$@"; do
    case $arg in
    --keep) keep=1 ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

passed=0
failed=0
ok() {
    passed=$((passed + 1))
    echo "ok - $1"
}
bad() {
    failed=$((failed + 1))
    echo "not ok - $1"
}
step() {
    echo
    echo "== $1"
}

# ---- what it needs -----------------------------------------------------------
missing=
[ -x "$tern" ] || missing="$missing tern ('$tern': build it, or set TERN)"
[ -x "$py" ] || missing="$missing $py"
for tool in prometheus promtool curl; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "run.sh: missing:$missing" >&2
    echo "run.sh: Prometheus and promtool come with Debian's package 'prometheus' (tools/install-deps installs it)" >&2
    exit 2
fi
for p in "$origin_port" "$listen_port" "$admin_port" "$prom_port"; do
    # As a server binds (SO_REUSEADDR): this also finds a port held by a
    # client connection in TIME_WAIT, which a listener cannot take either.
    if ! "$py" -c 'import socket,sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null; then
        echo "run.sh: 127.0.0.1:$p is in use; stop what listens there or choose other ports (TERN_OBS_*_PORT, see --help)" >&2
        exit 2
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tern-observability.XXXXXX") || exit 2
pids=
cleanup() {
    rc=$?
    trap - EXIT
    for p in $pids; do
        kill -TERM "$p" 2>/dev/null
    done
    n=0
    for p in $pids; do
        while kill -0 "$p" 2>/dev/null && [ $n -lt 100 ]; do
            sleep 0.1
            n=$((n + 1))
        done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
        echo "# logs kept in $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 2' HUP INT TERM

# spawn NAME CMD...: a background process, logs in $tmp/NAME.log, stopped on exit.
spawn() {
    sp_name=$1
    shift
    "$@" >"$tmp/$sp_name.log" 2>&1 </dev/null &
    pids="$! $pids"
    last_pid=$!
}

# wait_http URL PID [SECONDS]: until URL answers 200, or PID exits.
wait_http() {
    wh_n=0
    while [ $wh_n -lt $((${3:-15} * 10)) ]; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" 2>/dev/null)" = 200 ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
        wh_n=$((wh_n + 1))
    done
    return 1
}

# alive PID: running (not exited, not a zombie waiting to be reaped).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    case $(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) in
    Z|X) return 1 ;;
    esac
    return 0
}

# show NAME: the tail of a process's log (on failure).
show() {
    echo "# --- $1.log (last 15 lines) ---"
    tail -n 15 "$tmp/$1.log" 2>/dev/null | sed 's/^/# /'
}

# promq EXPR: the first value of an instant query ("" when empty or on error).
promq() {
    curl -s --max-time 5 -G "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" |
        "$py" -c 'import json,sys
try:
    r = json.load(sys.stdin)["data"]["result"]
    print(r[0]["value"][1] if r else "")
except Exception:
    print("")'
}

finish() {
    echo
    echo "observability example: $passed passed, $failed failed"
    [ "$failed" -eq 0 ] && exit 0
    exit 1
}

# ---- configuration -----------------------------------------------------------
step "configuration: envoy.yaml and prometheus.yml (ports: origin $origin_port, listener $listen_port, admin $admin_port, Prometheus $prom_port)"
sed -e "s/port_value: 8081\$/port_value: $origin_port/" \
    -e "s/port_value: 10000\$/port_value: $listen_port/" \
    -e "s/port_value: 9901\$/port_value: $admin_port/" "$here/envoy.yaml" >"$tmp/envoy.yaml"
sed -e "s/127\.0\.0\.1:9901\"/127.0.0.1:$admin_port\"/" "$here/prometheus.yml" >"$tmp/prometheus.yml"
for p in "$origin_port" "$listen_port" "$admin_port"; do
    grep -q "port_value: $p\$" "$tmp/envoy.yaml" || bad "the copy of envoy.yaml has port $p (did envoy.yaml's ports change?)"
done
grep -q "\"127.0.0.1:$admin_port\"" "$tmp/prometheus.yml" || bad "the copy of prometheus.yml targets 127.0.0.1:$admin_port (did its target change?)"

for f in "$here/envoy.yaml" "$tmp/envoy.yaml"; do
    if out=$("$tern" --mode validate -c "$f" 2>&1); then
        ok "tern --mode validate: $out"
    else
        bad "tern --mode validate -c $f: $out"
    fi
done
for f in "$here/prometheus.yml" "$tmp/prometheus.yml"; do
    if out=$(promtool check config "$f" 2>&1); then
        ok "promtool check config $f"
    else
        bad "promtool check config $f: $(echo "$out" | tr '\n' ' ')"
    fi
done
[ "$failed" -eq 0 ] || finish

# ---- processes ---------------------------------------------------------------
step "starting the origin (service1) on 127.0.0.1:$origin_port"
spawn origin "$py" "$root/tests/origin/origin.py" --name service1 --port "$origin_port"
origin_pid=$last_pid
if wait_http "http://127.0.0.1:$origin_port/__count" "$origin_pid"; then
    ok "origin answers on 127.0.0.1:$origin_port"
else
    bad "origin answers on 127.0.0.1:$origin_port"
    show origin
    finish
fi

step "starting tern -c envoy.yaml --concurrency $concurrency"
spawn tern "$tern" -c "$tmp/envoy.yaml" --concurrency "$concurrency"
tern_pid=$last_pid
if wait_http "http://127.0.0.1:$admin_port/ready" "$tern_pid" && wait_http "http://127.0.0.1:$listen_port/" "$tern_pid"; then
    ok "tern is ready (admin 127.0.0.1:$admin_port, listener 127.0.0.1:$listen_port)"
else
    bad "tern is ready (admin 127.0.0.1:$admin_port, listener 127.0.0.1:$listen_port)"
    show tern
    finish
fi

step "starting Prometheus on 127.0.0.1:$prom_port (scraping 127.0.0.1:$admin_port/stats/prometheus every 5s)"
spawn prometheus prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prometheus-data" \
    --web.listen-address="127.0.0.1:$prom_port"
prom_pid=$last_pid
if wait_http "http://127.0.0.1:$prom_port/-/ready" "$prom_pid" 30; then
    ok "Prometheus is ready"
else
    bad "Prometheus is ready"
    show prometheus
    finish
fi

# ---- traffic -----------------------------------------------------------------
step "sending traffic through tern: about 20 requests/s, every 5th answered 503 by the origin, some slower, a new connection every 25"
spawn traffic "$py" -c '
import http.client, sys, time
port = int(sys.argv[1])
conn = None
i = 0
while True:
    i += 1
    path = "/api/%d" % (i % 10)
    if i % 5 == 0:
        path += "?status=503"
    elif i % 7 == 0:
        path += "?delay_ms=30"
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        if i % 25 == 0:  # a new connection now and then
            conn.close()
            conn = None
        if i % 100 == 0:
            print("sent", i, flush=True)
    except Exception as e:
        print("request failed:", e, flush=True)
        conn = None
    time.sleep(0.05)
' "$listen_port"
traffic_pid=$last_pid
sleep 1
s200=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$listen_port/hello")
s503=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$listen_port/hello?status=503")
[ "$s200" = 200 ] && ok "GET /hello through tern: 200" || bad "GET /hello through tern: expected 200, got $s200"
[ "$s503" = 503 ] && ok "GET /hello?status=503 through tern: 503" || bad "GET /hello?status=503 through tern: expected 503, got $s503"

step "waiting until Prometheus has scraped tern at least 3 times with traffic in between"
n=0
samples=
while [ $n -lt 60 ]; do
    samples=$(promq 'sum(count_over_time(envoy_http_downstream_rq_total[1m]))')
    grown=$(promq 'sum(increase(envoy_http_downstream_rq_total[1m]))')
    case $samples in
    ''|0|1|2) ;;
    *) case $grown in ''|0) ;; *) break ;; esac ;;
    esac
    sleep 1
    n=$((n + 1))
done
case $samples in
''|0|1|2) bad "Prometheus scraped envoy_http_downstream_rq_total 3 times within 60 s (samples: '${samples}')"; show prometheus; finish ;;
*) ok "Prometheus holds $samples samples of envoy_http_downstream_rq_total, increase over 1m: $grown" ;;
esac

targets=$(curl -s --max-time 5 "http://127.0.0.1:$prom_port/api/v1/targets?state=active")
tstate=$(echo "$targets" | "$py" -c 'import json,sys
t = [t for t in json.load(sys.stdin)["data"]["activeTargets"] if t["labels"].get("job") == "tern"]
print("%s %s" % (t[0]["health"], t[0]["lastError"] or "-") if t else "none")')
[ "$tstate" = "up -" ] && ok "Prometheus's target tern is up, no scrape error" || bad "Prometheus's target tern: '$tstate'"
up=$(promq 'up{job="tern"}')
[ "$up" = 1 ] && ok "up{job=\"tern\"} = 1" || bad "up{job=\"tern\"}: expected 1, got '$up'"

# ---- tern's exposition -------------------------------------------------------
step "promtool check metrics on tern's /stats/prometheus (Envoy's naming lint is expected; format errors fail)"
curl -s --max-time 5 "http://127.0.0.1:$admin_port/stats/prometheus" >"$tmp/exposition.txt"
promtool check metrics <"$tmp/exposition.txt" >"$tmp/promtool-metrics.out" 2>&1
prc=$?
lint=$(grep -c . "$tmp/promtool-metrics.out")
if { [ $prc -eq 0 ] || [ $prc -eq 3 ]; } && ! grep -qi -e 'error while linting' -e 'parsing error' "$tmp/promtool-metrics.out"; then
    ok "promtool check metrics: no errors ($lint lint remarks, exit $prc; $(grep -c '^# TYPE' "$tmp/exposition.txt") metrics)"
else
    bad "promtool check metrics (exit $prc): $(grep -i error "$tmp/promtool-metrics.out" | head -3 | tr '\n' ' ')"
fi

# ---- the dashboard -----------------------------------------------------------
step "evaluating every expression of grafana-dashboard.json through Prometheus's /api/v1/query"
"$py" "$here/check-dashboard.py" --prometheus "http://127.0.0.1:$prom_port" \
    --exposition "$tmp/exposition.txt" --rate-interval 1m \
    --optional envoy_http_cache_hit --optional envoy_http_cache_miss \
    "$here/grafana-dashboard.json" >"$tmp/check-dashboard.out" 2>&1
crc=$?
cat "$tmp/check-dashboard.out" | grep -v '^check-dashboard: ' | sed 's/^/  /'
dpass=$(grep -c '^ok - ' "$tmp/check-dashboard.out")
dfail=$(grep -c '^not ok - ' "$tmp/check-dashboard.out")
if [ $crc -eq 0 ] && [ "$dfail" -eq 0 ] && [ "$dpass" -gt 0 ]; then
    ok "grafana-dashboard.json works against tern ($dpass checks)"
else
    bad "grafana-dashboard.json works against tern: $dfail of $((dpass + dfail)) checks failed (exit $crc)"
fi

if ! kill -0 "$tern_pid" 2>/dev/null; then
    bad "tern is still running after the checks"
    show tern
fi

if [ "$keep" != 1 ]; then
    step "stopping tern (SIGTERM): it drains and exits 0, and its log has no sanitizer report (ASan/UBSan builds)"
    kill -TERM "$traffic_pid" 2>/dev/null
    kill -TERM "$tern_pid" 2>/dev/null
    n=0
    while alive "$tern_pid" && [ $n -lt 150 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    if alive "$tern_pid"; then
        bad "tern exits within 15 s of SIGTERM"
        show tern
    else
        wait "$tern_pid"
        trc=$?
        pids=$(echo " $pids " | sed "s/ $tern_pid / /")
        [ $trc -eq 0 ] && ok "tern exited 0 on SIGTERM" || { bad "tern exited $trc on SIGTERM"; show tern; }
    fi
    if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$tmp/tern.log"; then
        bad "sanitizer report in tern's log: $(grep -E -m1 -A6 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$tmp/tern.log" | tr '\n' ' ' | head -c 600)"
    else
        ok "no sanitizer report in tern's log"
    fi
fi

if [ "$keep" = 1 ]; then
    echo
    echo "observability example: $passed passed, $failed failed; everything keeps running (--keep):"
    echo "  tern         http://127.0.0.1:$listen_port/   (traffic still flowing)"
    echo "  tern admin   http://127.0.0.1:$admin_port/stats/prometheus"
    echo "  Prometheus   http://127.0.0.1:$prom_port/graph?g0.expr=sum(rate(envoy_http_downstream_rq_total%5B1m%5D))%20by%20(envoy_http_conn_manager_prefix)"
    echo "  Grafana      add the data source http://127.0.0.1:$prom_port, import $here/grafana-dashboard.json (README.md)"
    echo "  logs         $tmp"
    echo "Ctrl-C stops them all."
    trap 'echo; finish' HUP INT TERM
    while kill -0 "$tern_pid" 2>/dev/null && kill -0 "$prom_pid" 2>/dev/null; do
        sleep 1
    done
    bad "tern or Prometheus exited while kept running"
fi
finish
