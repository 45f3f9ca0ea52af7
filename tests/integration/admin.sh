#!/bin/sh
# The admin API through the real tern: endpoints, methods and formats as
# Envoy's, stats moving under real traffic by Envoy's names, the Prometheus
# exposition (checked by promtool and scraped by a real Prometheus when the
# Debian package is installed), and /quitquitquit.
#
#   admin.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

set -- $(free_port 4)
o1=$1 f=$2 adm=$3 prom=$4
start_origin web "$o1" || { tn_fail "origin web starts" "see above"; tn_summary; }
L=$(it_listener front "$f" "$(it_rc "$(it_vhost all '"*"' "$(it_route_cluster / service1)")")")
C=$(it_cluster service1 "127.0.0.1:$o1")
printf '{admin: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}, static_resources: {listeners: [%s], clusters: [%s]}}\n' \
    "$adm" "$L" "$C" >"$TN_TMP/admin.yaml"
it_start "$TN_TMP/admin.yaml" "$f" --concurrency 2
wait_port "$adm" || tn_fail "admin listens" "not on $adm"
base=http://127.0.0.1:$f
admin=http://127.0.0.1:$adm

check "GET /ready: 200" 200 "$(http_status "$admin/ready")"
check "GET /ready: LIVE" LIVE "$(tn_curl "$admin/ready" | tr -d '\n')"

# Traffic: 5 good requests, 2 answered 503 by the origin.
for i in 1 2 3 4 5; do tn_curl -o /dev/null "$base/ok$i"; done
for i in 1 2; do tn_curl -o /dev/null "$base/bad?status=503"; done
sleep 1.5 # main-thread gauges refresh every second
stats=$(tn_curl "$admin/stats")
stat() { echo "$stats" | sed -n "s/^$1: //p"; }
check "http.ingress downstream_rq_total" 7 "$(stat 'http\.front\.downstream_rq_total')"
check "http downstream_rq_2xx" 5 "$(stat 'http\.front\.downstream_rq_2xx')"
check "http downstream_rq_5xx" 2 "$(stat 'http\.front\.downstream_rq_5xx')"
check "http downstream_rq_completed" 7 "$(stat 'http\.front\.downstream_rq_completed')"
check "cluster upstream_rq_total" 7 "$(stat 'cluster\.service1\.upstream_rq_total')"
check "cluster upstream_rq_5xx" 2 "$(stat 'cluster\.service1\.upstream_rq_5xx')"
check "cluster upstream_cx_total: keep-alive reuse (at most one per worker)" 1 \
    "$([ "$(stat 'cluster\.service1\.upstream_cx_total')" -le 2 ] && echo 1 || echo 0)"
check "cluster membership_total" 1 "$(stat 'cluster\.service1\.membership_total')"
check "cluster membership_healthy" 1 "$(stat 'cluster\.service1\.membership_healthy')"
# (at least: the test harness' port probes are connections too)
n=$(stat "listener\.127\.0\.0\.1_$f\.downstream_cx_total")
check "listener downstream_cx_total counts every connection (>= 7)" yes "$([ "${n:-0}" -ge 7 ] && echo yes || echo "no: $n")"
check "server.live" 1 "$(stat 'server\.live')"
check "server.concurrency" 2 "$(stat 'server\.concurrency')"
check "cluster_manager.active_clusters" 1 "$(stat 'cluster_manager\.active_clusters')"
m=$(stat 'server\.memory_allocated')
check "server.memory_allocated is set" yes "$([ "${m:-0}" -gt 100000 ] && echo yes || echo "no: $m")"

out=$(tn_curl "$admin/stats?filter=upstream_rq_total")
check "?filter keeps only matching stats" "cluster.service1.upstream_rq_total: 7" "$out"
check "?filter with a bad regex: 400" 400 "$(http_status "$admin/stats?filter=(")"
out=$(tn_curl "$admin/stats?format=json")
check "?format=json parses and has the counter" 7 "$(echo "$out" | "$TN_PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print([s["value"] for s in d["stats"] if s.get("name")=="cluster.service1.upstream_rq_total"][0])')"
check_not_contains "?usedonly leaves out stats never written" "upstream_rq_pending_overflow" "$(tn_curl "$admin/stats?usedonly")"

p=$(tn_curl "$admin/stats/prometheus")
check_contains "prometheus: counter by Envoy's name and tag" 'envoy_cluster_upstream_rq_total{envoy_cluster_name="service1"} 7' "$p"
check_contains "prometheus: response code class tag" 'envoy_http_downstream_rq_xx{envoy_response_code_class="5",envoy_http_conn_manager_prefix="front"} 2' "$p"
check_contains "prometheus: TYPE line" '# TYPE envoy_cluster_upstream_rq_total counter' "$p"
check_contains "prometheus: histogram count" 'envoy_cluster_upstream_rq_time_count{envoy_cluster_name="service1"} 7' "$p"
check_contains "prometheus: histogram +Inf bucket" 'envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="service1",le="+Inf"} 7' "$p"
check "prometheus: one TYPE line per metric name" 0 \
    "$(echo "$p" | grep '^# TYPE' | awk '{print $3}' | sort | uniq -d | wc -l | tr -d ' ')"
if command -v promtool >/dev/null 2>&1; then
    echo "$p" | promtool check metrics >"$TN_TMP/promtool.out" 2>&1
    # Lint about Envoy's naming (counters without _total, gauges with it, no
    # HELP text, units) is expected, as with Envoy itself; a format error
    # reads "error while linting: text format parsing error ...".
    check "promtool check metrics: no format errors" "" \
        "$(grep -i -e 'parsing error' -e 'error while linting' "$TN_TMP/promtool.out" | head -3)"
    check "promtool check metrics: it linted the output" yes \
        "$(grep -q 'no help text' "$TN_TMP/promtool.out" && echo yes || echo no)"
else
    tn_skip "promtool check metrics" "promtool (Debian package prometheus) is not installed"
fi

check "POST /reset_counters" 200 "$(http_status "$admin/reset_counters" -X POST)"
check "counters read 0 after a reset" 0 "$(tn_curl "$admin/stats" | sed -n 's/^cluster\.service1\.upstream_rq_total: //p')"

check "GET of a mutating endpoint: 405" 405 "$(http_status "$admin/quitquitquit")"
check "unknown path: 404" 404 "$(http_status "$admin/nosuch")"
check "POST /logging?upstream=debug" 200 "$(http_status "$admin/logging?upstream=debug" -X POST)"
check "POST /logging with an unknown level: 400" 400 "$(http_status "$admin/logging?level=loud" -X POST)"
check_contains "GET /clusters shows the host" "service1::127.0.0.1:$o1::health_flags::healthy" "$(tn_curl "$admin/clusters")"
check_contains "GET /listeners" "front::127.0.0.1:$f" "$(tn_curl "$admin/listeners")"
check "GET /config_dump is JSON with the cluster" service1 \
    "$(tn_curl "$admin/config_dump" | "$TN_PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print([c for c in d["configs"] if c["@type"].endswith("ClustersConfigDump")][0]["static_clusters"][0]["cluster"]["name"])')"
check_contains "GET /server_info has the version" '"version"' "$(tn_curl "$admin/server_info")"

# A real Prometheus scrapes tern when it is installed.
if command -v prometheus >/dev/null 2>&1; then
    cat >"$TN_TMP/prometheus.yml" <<YML
global: {scrape_interval: 1s}
scrape_configs:
- job_name: tern
  metrics_path: /stats/prometheus
  static_configs: [{targets: ["127.0.0.1:$adm"]}]
YML
    tn_spawn "$TN_TMP/prometheus" prometheus --config.file="$TN_TMP/prometheus.yml" --storage.tsdb.path="$TN_TMP/prom-data" \
        --web.listen-address="127.0.0.1:$prom"
    wait_port "$prom" 30 || tn_fail "prometheus starts" "$(tail -5 "$TN_TMP/prometheus.err" 2>/dev/null)"
    for i in 1 2 3; do tn_curl -o /dev/null "$base/after-reset$i"; done
    got=
    n=0
    while [ $n -lt 30 ] && [ -z "$got" ]; do
        sleep 1
        got=$(tn_curl "http://127.0.0.1:$prom/api/v1/query?query=envoy_cluster_upstream_rq_total" |
            "$TN_PYTHON" -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null)
        n=$((n + 1))
    done
    check "Prometheus scraped envoy_cluster_upstream_rq_total" 3 "$got"
else
    tn_skip "a real Prometheus scrapes tern" "prometheus (Debian package) is not installed"
fi

out=$(tn_curl -X POST "$admin/quitquitquit")
check "POST /quitquitquit answers OK" OK "$(echo "$out" | tr -d '\n')"
wait_port_closed "$f" 10 || tn_fail "tern exits after /quitquitquit" "port $f still open"
stop_tern
it_sanitizers
tn_summary
