#!/bin/sh
# tern driven by a real control plane (tests/xds/xds_server.py) over ADS
# and over each type's own service (api_config_source), state of the world
# and incremental: a listener's routes from RDS and a
# cluster's endpoints from EDS; a route change applied to new requests;
# endpoints added and removed under load without a failed request; an
# invalid resource NACKed with a precise error_detail while traffic flows on
# the last good config; the control plane killed and restarted (tern keeps
# serving, reconnects, re-ACKs); initial_fetch_timeout; the stats.
#
#   xds.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

CP="$TN_SRC/tests/xds/xds_server.py"
GEN=$TN_TMP/gen
[ -d "$(dirname "$TERN")" ] && GEN=$(cd "$(dirname "$TERN")" && pwd)/xds-gen

set -- $(free_port 6)
oa=$1 ob=$2 front=$3 admin=$4 cp=$5 front2=$6
start_origin A "$oa" || { tn_fail "origin A starts" "see above"; tn_summary; }
start_origin B "$ob" || { tn_fail "origin B starts" "see above"; tn_summary; }

# ---- helpers -------------------------------------------------------------------

# snapshot VERSION ROUTE_ACTION "HOST:PORT ...": writes the control plane's
# snapshot atomically (route configuration rc1, assignment svc).
snapshot() {
    sn_eps=
    for sn_ep in $3; do
        sn_eps="$sn_eps${sn_eps:+, }{endpoint: {address: {socket_address: {address: ${sn_ep%:*}, port_value: ${sn_ep##*:}}}}}"
    done
    printf 'version: "%s"\nroutes:\n- {name: rc1, virtual_hosts: [{name: all, domains: ["*"], routes: [%s]}]}\nendpoints:\n- {cluster_name: svc, endpoints: [{lb_endpoints: [%s]}]}\n%s' \
        "$1" "$2" "$sn_eps" "${4:-}" >"$TN_TMP/snap.tmp"
    mv "$TN_TMP/snap.tmp" "$TN_TMP/snap.yaml"
}
# cds_static NAME PORT: a clusters: section with one STATIC cluster (for
# snapshot's 4th argument); cds_eds NAME SERVICE PORT: an EDS cluster and its
# assignment.
cds_static() {
    printf 'clusters:\n- {name: %s, type: STATIC, connect_timeout: 1s, load_assignment: {cluster_name: %s, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]}}\n' \
        "$1" "$1" "$2"
}
TO_DYN='{match: {prefix: "/c"}, route: {cluster: dyn}}'
TO_WEB='{match: {prefix: "/"}, route: {cluster: web}}'
TEAPOT='{match: {prefix: "/"}, direct_response: {status: 418, body: {inline_string: teapot}}}'

start_cp() {
    tn_spawn "$TN_TMP/cp-$1" "$TN_PYTHON" "$CP" --port "$cp" --snapshot "$TN_TMP/snap.yaml" --gen-dir "$GEN"
    CP_PID=$TN_PID
    CP_LOG=$TN_TMP/cp-$1.err
    wait_port "$cp" 30 "$CP_PID" || { tn_fail "control plane starts" "$(tail -5 "$CP_LOG")"; tn_summary; }
}

# bootstrap FILE API LISTENER_PORT RDS_NAME EDS_NAME [FETCH_TIMEOUT [SOURCES]]
# SOURCES: ads (default: one aggregated stream) or types (each type on its
# own service: api_config_source).
bootstrap() {
    bs_to=${6:+initial_fetch_timeout: $6,}
    # incremental runs send the node on each stream's first request only
    bs_grpc="api_type: $2, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]"
    [ "$2" = DELTA_GRPC ] && bs_grpc="$bs_grpc, set_node_on_first_message_only: true"
    if [ "${7:-ads}" = types ]; then
        bs_ads=
        bs_src="api_config_source: {$bs_grpc},"
    else
        bs_ads="ads_config: {$bs_grpc}"
        bs_src="ads: {},"
    fi
    cat >"$1" <<EOF
node: {id: node-$2, cluster: tests}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $admin}}}
dynamic_resources:
  $bs_ads
  cds_config: {$bs_src $bs_to resource_api_version: V3}
static_resources:
  listeners:
  - name: front
    address: {socket_address: {address: 127.0.0.1, port_value: $3}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": $IT_HCM_TYPE
          stat_prefix: front
          rds: {route_config_name: $4, config_source: {$bs_src $bs_to resource_api_version: V3}}
          http_filters: [$IT_ROUTER]
  clusters:
  - name: web
    type: EDS
    connect_timeout: 1s
    eds_cluster_config: {service_name: $5, eds_config: {$bs_src $bs_to resource_api_version: V3}}
  - $(it_cluster xds_cluster "127.0.0.1:$cp")
EOF
}

# who: the origin that answered GET / (A, B), or the status when not 200.
who() {
    wh=$(curl -sS --max-time 5 -w '\n%{http_code}' "http://127.0.0.1:$front/x" 2>/dev/null)
    case $(printf '%s' "$wh" | tail -n1) in
    200) printf '%s' "$wh" | sed '$d' | json_get name ;;
    *) printf '%s' "$wh" | tail -n1 ;;
    esac
}

# wait_until SECONDS CMD...: polls CMD every 0.1 s until it succeeds.
wait_until() {
    wu_n=$(($1 * 10))
    shift
    while [ "$wu_n" -gt 0 ]; do
        "$@" && return 0
        sleep 0.1
        wu_n=$((wu_n - 1))
    done
    return 1
}
is_who() { [ "$(who)" = "$1" ]; }
both_seen() {
    bs_s=
    for bs_i in 1 2 3 4 5 6; do bs_s="$bs_s $(who)"; done
    case $bs_s in *A*) case $bs_s in *B*) return 0 ;; esac ;; esac
    return 1
}
stat() {
    curl -sS --max-time 5 "http://127.0.0.1:$admin/stats" | sed -n "s/^$1: //p"
}
stat_is() { [ "$(stat "$1")" = "$2" ]; }
cp_has() { grep -q "$1" "$CP_LOG"; }

# load SECONDS OUT: keep-alive GETs from 4 clients; OUT gets "total bad".
load() {
    "$TN_PYTHON" - "$front" "$1" >"$2" <<'EOF' &
import http.client, sys, threading, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + secs
counts = [0, 0]
lock = threading.Lock()
def run():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    while time.time() < end:
        try:
            c.request("GET", "/load")
            r = c.getresponse()
            r.read()
            bad = r.status != 200
        except Exception:
            bad = True
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with lock:
            counts[0] += 1
            counts[1] += bad
ts = [threading.Thread(target=run) for _ in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(counts[0], counts[1])
EOF
    LOAD_PID=$!
}

# ---- one run per protocol variant ---------------------------------------------

run() {
    api=$1 mode=$2 sources=${3:-ads}
    snapshot v1 "$TO_WEB" "127.0.0.1:$oa"
    start_cp "$mode"
    bootstrap "$TN_TMP/$mode.yaml" "$api" "$front" rc1 svc "" "$sources"
    it_start "$TN_TMP/$mode.yaml" "$front" --concurrency 2
    if [ "$sources" = types ]; then
        # one stream per type, each on its own service
        for rpc in StreamClusters StreamEndpoints StreamRoutes; do
            [ "$api" = DELTA_GRPC ] && rpc=Delta${rpc#Stream}
            wait_until 5 cp_has "OPEN stream=.* mode=$([ "$api" = GRPC ] && echo sotw || echo delta) node=node-$api rpc=/.*/$rpc\$"
            check "$mode: a stream of its own: $rpc" 0 $?
        done
        cp_has "rpc=StreamAggregatedResources\|rpc=DeltaAggregatedResources"
        check "$mode: no aggregated stream" 1 $?
    fi

    # initial config: routes from RDS, endpoints from EDS
    check "$mode: initial config: served by A" A "$(who)"
    wait_until 5 cp_has "ACK type=RDS version=v1 .*node=node-$api"
    check "$mode: RDS v1 ACKed" 0 $?
    wait_until 5 cp_has "ACK type=EDS version=v1 .*node=node-$api"
    check "$mode: EDS v1 ACKed" 0 $?
    check "$mode: control_plane.connected_state" 1 "$(stat control_plane.connected_state)"
    check "$mode: cluster.web.membership_total" 1 "$(stat cluster.web.membership_total)"
    [ "$(stat cluster.web.update_success)" -ge 1 ] 2>/dev/null
    check "$mode: cluster.web.update_success counts" 0 $?

    # a route change applies to new requests
    snapshot v2 "$TEAPOT" "127.0.0.1:$oa"
    wait_until 10 is_who 418
    check "$mode: route change: new requests get the new route (418)" 0 $?
    dump=$(curl -sS --max-time 5 "http://127.0.0.1:$admin/config_dump?resource=dynamic_route_configs")
    check "$mode: config_dump: dynamic_route_configs has v2" v2 "$(printf '%s' "$dump" | json_get configs.0.version_info)"
    check "$mode: config_dump: the route configuration as accepted" 418 \
        "$(printf '%s' "$dump" | json_get configs.0.route_config.virtual_hosts.0.routes.0.direct_response.status)"
    check_match "$mode: config_dump: last_updated" '^20[0-9-]*T[0-9:.]*Z$' \
        "$(printf '%s' "$dump" | json_get configs.0.last_updated)"
    check "$mode: http.front.rds.rc1.update_success" 2 "$(stat http.front.rds.rc1.update_success)"
    check "$mode: config_dump: an rds listener has no static route configuration" "[]" \
        "$(curl -sS --max-time 5 "http://127.0.0.1:$admin/config_dump?resource=static_route_configs" | json_get configs)"
    snapshot v3 "$TO_WEB" "127.0.0.1:$oa"
    wait_until 10 is_who A
    check "$mode: route change back" 0 $?

    # endpoints added and removed under load: no request fails
    load 7 "$TN_TMP/load-$mode"
    sleep 1
    snapshot v4 "$TO_WEB" "127.0.0.1:$oa 127.0.0.1:$ob"
    wait_until 5 both_seen
    check "$mode: endpoint added: A and B both answer" 0 $?
    snapshot v5 "$TO_WEB" "127.0.0.1:$ob"
    wait_until 5 is_who B
    check "$mode: endpoint A removed: B answers" 0 $?
    sleep 0.5
    snapshot v6 "$TO_WEB" "127.0.0.1:$oa 127.0.0.1:$ob"
    sleep 1
    snapshot v7 "$TO_WEB" "127.0.0.1:$oa"
    wait "$LOAD_PID"
    set -- $(cat "$TN_TMP/load-$mode")
    [ "${1:-0}" -gt 100 ]
    check "$mode: load ran (${1:-0} requests)" 0 $?
    check "$mode: endpoint changes under load: failed requests" 0 "${2:-x}"
    check "$mode: after the changes A alone answers" A "$(who)"

    # an invalid resource is NACKed with the reason; the old config stays
    snapshot v8 '{match: {safe_regex: {regex: "(("}}, route: {cluster: web}}' "127.0.0.1:$oa"
    wait_until 10 cp_has "NACK type=RDS version=v8 .*error=RouteConfiguration 'rc1': virtual_hosts\[0\].routes\[0\].match.safe_regex.regex: invalid regex '(('"
    check "$mode: bad route regex NACKed with the field and reason" 0 $?
    check "$mode: after the NACK the last good routes serve" A "$(who)"
    check "$mode: http.front.rds.rc1.update_rejected" 1 "$(stat http.front.rds.rc1.update_rejected)"
    curl -sS --max-time 5 "http://127.0.0.1:$admin/stats/prometheus" | grep -q \
        '^envoy_http_rds_update_rejected{envoy_http_conn_manager_prefix="front",envoy_rds_route_config="rc1"} 1$'
    check "$mode: Prometheus: envoy_http_rds_update_rejected with Envoy's tags" 0 $?
    snapshot v9 "$TO_WEB" "not.an.ip:80"
    wait_until 10 cp_has "NACK type=EDS version=v9 .*error=ClusterLoadAssignment 'svc': endpoints\[0\].lb_endpoints\[0\].endpoint.address.socket_address.address: 'not.an.ip' is not an IP address"
    check "$mode: bad endpoint NACKed with the field and reason" 0 $?
    check "$mode: after the NACK the last good endpoints serve" A "$(who)"
    wait_until 3 stat_is cluster.web.update_rejected 1
    check "$mode: cluster.web.update_rejected" 1 "$(stat cluster.web.update_rejected)"

    # clusters from CDS: added, changed, rejected, removed
    cwho() {
        cw=$(curl -sS --max-time 5 -w '\n%{http_code}' "http://127.0.0.1:$front/c" 2>/dev/null)
        case $(printf '%s' "$cw" | tail -n1) in
        200) printf '%s' "$cw" | sed '$d' | json_get name ;;
        *) printf '%s' "$cw" | tail -n1 ;;
        esac
    }
    is_cwho() { [ "$(cwho)" = "$1" ]; }
    snapshot v8b "$TO_DYN, $TO_WEB" "127.0.0.1:$oa"
    wait_until 10 is_cwho 503
    check "$mode: a route to a cluster nobody defined: 503" 0 $?
    snapshot v8c "$TO_DYN, $TO_WEB" "127.0.0.1:$oa" "$(cds_static dyn "$ob")"
    wait_until 10 is_cwho B
    check "$mode: CDS: a new cluster serves" 0 $?
    wait_until 5 cp_has "ACK type=CDS version=v8c .*node=node-$api"
    check "$mode: CDS: v8c ACKed" 0 $?
    check "$mode: cluster_manager.cluster_added (2 static, 1 from CDS)" 3 "$(stat cluster_manager.cluster_added)"
    check "$mode: cluster.dyn.upstream_rq_total counts" 1 "$(stat cluster.dyn.upstream_rq_total)"
    dump=$(curl -sS --max-time 5 "http://127.0.0.1:$admin/config_dump?resource=dynamic_active_clusters")
    check "$mode: config_dump: dynamic_active_clusters" "dyn v8c" \
        "$(printf '%s' "$dump" | json_get configs.0.cluster.name) $(printf '%s' "$dump" | json_get configs.0.version_info)"
    snapshot v8d "$TO_DYN, $TO_WEB" "127.0.0.1:$oa" "$(cds_static dyn "$oa")"
    wait_until 10 is_cwho A
    check "$mode: CDS: a changed cluster serves its new endpoints" 0 $?
    check "$mode: cluster_manager.cluster_modified" 1 "$(stat cluster_manager.cluster_modified)"
    snapshot v8e "$TO_DYN, $TO_WEB" "127.0.0.1:$oa" "$(cds_static dyn "$oa" | sed 's/connect_timeout: 1s/connect_timeout: 0s/')"
    wait_until 10 cp_has "NACK type=CDS version=v8e .*error=Cluster 'dyn': connect_timeout: must be greater than 0"
    check "$mode: CDS: a bad cluster NACKed with the field and reason" 0 $?
    check "$mode: CDS: after the NACK the last good cluster serves" A "$(cwho)"
    check "$mode: cluster_manager.cds.update_rejected" 1 "$(stat cluster_manager.cds.update_rejected)"
    snapshot v8f "$TO_DYN, $TO_WEB" "127.0.0.1:$oa"
    wait_until 10 is_cwho 503
    check "$mode: CDS: a removed cluster: new requests get 503" 0 $?
    check "$mode: cluster_manager.cluster_removed" 1 "$(stat cluster_manager.cluster_removed)"
    check "$mode: CDS: the other routes still serve" A "$(who)"

    # the control plane goes away: tern keeps serving; it comes back: tern
    # reconnects, re-subscribes and takes the new config
    tn_kill "$CP_PID" KILL
    wait_until 5 stat_is control_plane.connected_state 0
    check "$mode: control plane killed: connected_state 0" 0 $?
    check "$mode: control plane killed: still served by A" A "$(who)"
    snapshot v10 "$TO_WEB" "127.0.0.1:$ob"
    start_cp "$mode-2"
    wait_until 20 cp_has "ACK type=EDS version=v10 .*node=node-$api"
    check "$mode: control plane restarted: tern reconnects and ACKs" 0 $?
    wait_until 5 is_who B
    check "$mode: control plane restarted: the new endpoints serve" 0 $?
    # every stream is back (each reconnects on its own backoff)
    wait_until 30 stat_is control_plane.connected_state 1
    check "$mode: control plane restarted: connected_state 1" 0 $?
    if [ "$api" = GRPC ]; then
        # state of the world: the new stream said which version tern had
        grep -q "SUBSCRIBE type=RDS" "$CP_LOG"
        check "$mode: re-subscribed to RDS on the new stream" 0 $?
    fi

    stop_tern
    check "$mode: tern exits 0" 0 "$TN_RC"
    tn_kill "$CP_PID"
    # node on every request, or (set_node_on_first_message_only) the first
    nodes=$(sed -n 's/^CLOSE .* requests=\([0-9]*\) with_node=\([0-9]*\)$/\1 \2/p' "$CP_LOG" |
        awk -v first=$([ "$api" = DELTA_GRPC ] && echo 1 || echo 0) '
            { n++; if ($1 < 2 || (first ? $2 != 1 : $2 != $1)) bad++ }
            END { print n + 0, bad + 0 }')
    check "$mode: each stream's requests carry the node as configured (streams, wrong)" \
        "$([ "$sources" = types ] && echo 3 || echo 1) 0" "$nodes"
    it_sanitizers
}

run GRPC sotw
run DELTA_GRPC delta
run GRPC sotw-types types
run DELTA_GRPC delta-types types

# ---- initial_fetch_timeout: resources that never come -------------------------
snapshot v1 "$TO_WEB" "127.0.0.1:$oa"
start_cp fetch
bootstrap "$TN_TMP/fetch.yaml" GRPC "$front2" missing_rc missing_svc 1s
start_tern --wait "$front2" "$TN_TMP/fetch.yaml" --concurrency 1
ready() { [ "$(curl -sS --max-time 5 "http://127.0.0.1:$admin/ready")" = LIVE ]; }
wait_until 10 ready
check "initial_fetch_timeout: tern becomes ready without its resources" 0 $?
check "initial_fetch_timeout: no route configuration: 404" 404 \
    "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$front2/")"
stop_tern
check "initial_fetch_timeout: tern exits 0" 0 "$TN_RC"
it_sanitizers

tn_summary
