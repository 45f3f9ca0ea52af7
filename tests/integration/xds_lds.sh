#!/bin/sh
# Listeners from a control plane (LDS), over ADS (state of the world and
# incremental) and over the listener service's own stream: a listener
# accepts once its routes have come; listeners added, changed (the old one
# drains: a request in flight on it finishes, its connection then closes)
# and removed (drains too); a listener whose routes have not come warms
# while the old version serves; a bad listener and one whose port is taken
# are NACKed with the field and reason while the others serve; the stats
# and /config_dump's dynamic_listeners.
#
# With no control plane at start, tern is ready once initial_fetch_timeout
# has passed and takes the listeners when it comes up.
#
# Then the same resources from files (path_config_source): listeners,
# clusters, routes and endpoints read at start and again when a file is
# replaced; a file that does not parse changes nothing.
#
#   xds_lds.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

CP="$TN_SRC/tests/xds/xds_server.py"
GEN=$TN_TMP/gen
[ -d "$(dirname "$TERN")" ] && GEN=$(cd "$(dirname "$TERN")" && pwd)/xds-gen

set -- $(free_port 6)
oa=$1 ob=$2 p1=$3 p2=$4 admin=$5 cp=$6
start_origin A "$oa" || { tn_fail "origin A starts" "see above"; tn_summary; }
start_origin B "$ob" || { tn_fail "origin B starts" "see above"; tn_summary; }

# ---- helpers -------------------------------------------------------------------

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
stat() { curl -sS --max-time 5 "http://127.0.0.1:$admin/stats" | sed -n "s/^$1: //p"; }
stat_is() { [ "$(stat "$1")" = "$2" ]; }
stat_ge() { [ "$(stat "$1")" -ge "$2" ] 2>/dev/null; }
cp_has() { grep -q "$1" "$CP_LOG"; }
log_has() { grep -q "$1" "$TN_TMP/tern.log"; }
# who PORT [PATH]: the origin that answered (A, B), the body of a direct
# response, or the status; 000 when nothing accepts.
who() {
    wh=$(curl -sS --max-time 5 -w '\n%{http_code}' "http://127.0.0.1:$1${2:-/x}" 2>/dev/null)
    case $(printf '%s' "$wh" | tail -n1) in
    200) printf '%s' "$wh" | sed '$d' | json_get name ;;
    418) printf '%s' "$wh" | sed '$d' ;;
    *) printf '%s' "$wh" | tail -n1 ;;
    esac
}
is_who() { [ "$(who "$1")" = "$2" ]; }
dump() { curl -sS --max-time 5 "http://127.0.0.1:$admin/config_dump?resource=dynamic_listeners"; }

# listener NAME PORT RDS_NAME [FILTERS]: a Listener whose routes come from RDS
# at $RDS_SRC; FILTERS ("filter, ") go before the router.
listener() {
    printf '\n- {name: %s, address: {socket_address: {address: 127.0.0.1, port_value: %s}}, filter_chains: [{filters: [{name: envoy.filters.network.http_connection_manager, typed_config: {"@type": %s, stat_prefix: %s, rds: {route_config_name: %s, config_source: {%s resource_api_version: V3}}, http_filters: [%s%s]}}]}]}' \
        "$1" "$2" "$IT_HCM_TYPE" "$1" "$3" "$RDS_SRC" "${4:-}" "$IT_ROUTER"
}
# the response cache, which a listener from LDS brings up at run time
CACHE='{name: envoy.filters.http.cache, typed_config: {"@type": type.googleapis.com/tern.extensions.filters.http.cache.v1.CacheConfig, name: lds-cache, max_size_bytes: 1048576, default_ttl: 60s, typed_config: {"@type": type.googleapis.com/envoy.extensions.http.cache.simple_http_cache.v3.SimpleHttpCacheConfig}}}, '
cache_status() { curl -sS --max-time 5 -o /dev/null -D - "http://127.0.0.1:$1/cached" | tr -d '\r' | sed -n 's/^x-cache-status: //Ip'; }
# route NAME ROUTE: a RouteConfiguration of one route.
route() {
    printf '\n- {name: %s, virtual_hosts: [{name: all, domains: ["*"], routes: [%s]}]}' "$1" "$2"
}
TO_A='{match: {prefix: "/"}, route: {cluster: web_a}}'
TO_B='{match: {prefix: "/"}, route: {cluster: web_b}}'
TEAPOT='{match: {prefix: "/"}, direct_response: {status: 418, body: {inline_string: teapot}}}'
CLUSTERS="clusters:
- $(it_cluster web_a "127.0.0.1:$oa")
- $(it_cluster web_b "127.0.0.1:$ob")"

# snapshot VERSION LISTENERS ROUTES: the control plane's snapshot, atomically.
snapshot() {
    printf 'version: "%s"\nlisteners:%s\nroutes:%s\n%s\n' "$1" "$2" "$3" "$CLUSTERS" >"$TN_TMP/snap.tmp"
    mv "$TN_TMP/snap.tmp" "$TN_TMP/snap.yaml"
}

start_cp() {
    tn_spawn "$TN_TMP/cp-$1" "$TN_PYTHON" "$CP" --port "$cp" --snapshot "$TN_TMP/snap.yaml" --gen-dir "$GEN"
    CP_PID=$TN_PID
    CP_LOG=$TN_TMP/cp-$1.err
    wait_port "$cp" 30 "$CP_PID" || { tn_fail "control plane starts" "$(tail -5 "$CP_LOG")"; tn_summary; }
}

# slow PORT OUT: a request the origin answers after 2.5 s (time enough for the change to land while it is in flight), on a connection
# that then stays open if tern lets it; OUT gets "STATUS CONNECTION-HEADER
# CLOSED-AFTER" (closed-after: 1 when tern closed the connection after the
# response).
slow() {
    "$TN_PYTHON" - "$1" >"$2" <<'EOF' &
import http.client, socket, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request("GET", "/slow?delay_ms=2500")
r = c.getresponse()
r.read()
closed = 1  # http.client drops the socket itself after "Connection: close"
try:
    c.sock.settimeout(3)
    closed = 1 if c.sock.recv(1) == b"" else 0
except socket.timeout:
    closed = 0
except (OSError, AttributeError):
    closed = 1
print(r.status, (r.getheader("connection") or "-").lower(), closed)
EOF
    SLOW_PID=$!
}

# ---- over a control plane ---------------------------------------------------------

run() {
    api=$1 mode=$2 sources=$3
    grpc="api_type: $api, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]"
    if [ "$sources" = types ]; then
        ads= RDS_SRC="api_config_source: {$grpc},"
    else
        ads="ads_config: {$grpc}" RDS_SRC="ads: {},"
    fi
    cat >"$TN_TMP/$mode.yaml" <<EOF
node: {id: lds-$mode, cluster: tests}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $admin}}}
dynamic_resources:
  $ads
  lds_config: {$RDS_SRC resource_api_version: V3}
  cds_config: {$RDS_SRC resource_api_version: V3}
static_resources:
  clusters:
  - $(it_cluster xds_cluster "127.0.0.1:$cp")
EOF
    snapshot v1 "$(listener l1 "$p1" rc1)" "$(route rc1 "$TO_A")"
    start_cp "$mode"
    it_start "$TN_TMP/$mode.yaml" "$p1" --concurrency 2 --drain-time-s 4

    # the first listener: it accepts once its routes have come
    check "$mode: a listener from LDS serves" A "$(who "$p1")"
    wait_until 5 cp_has "ACK type=LDS version=v1 .*node=lds-$mode"
    check "$mode: LDS v1 ACKed" 0 $?
    check "$mode: ready" LIVE "$(curl -sS --max-time 5 "http://127.0.0.1:$admin/ready")"
    d=$(dump)
    check "$mode: config_dump: dynamic_listeners[0]" "l1 v1 $p1" "$(printf '%s' "$d" | json_get configs.0.name) $(printf '%s' "$d" | json_get configs.0.active_state.version_info) $(printf '%s' "$d" | json_get configs.0.active_state.listener.address.socket_address.port_value)"
    check "$mode: listener_manager.total_listeners_active" 1 "$(stat listener_manager.total_listeners_active)"
    check "$mode: listener_manager.lds.update_success" 1 "$(stat listener_manager.lds.update_success)"
    check "$mode: listener_manager.lds.version_text (a text readout)" '"v1"' "$(stat listener_manager.lds.version_text)"
    check "$mode: cluster_manager.cds.version_text" '"v1"' "$(stat cluster_manager.cds.version_text)"
    check_contains "$mode: /listeners names it" "l1::127.0.0.1:$p1" \
        "$(curl -sS --max-time 5 "http://127.0.0.1:$admin/listeners")"
    check "$mode: the listener's own stats" 1 "$(stat http.l1.downstream_rq_2xx)"

    # a second listener
    snapshot v2 "$(listener l1 "$p1" rc1)$(listener l2 "$p2" rc2 "$CACHE")" "$(route rc1 "$TO_A")$(route rc2 "$TO_B")"
    wait_until 10 is_who "$p2" B
    check "$mode: an added listener serves" 0 $?
    check "$mode: the first one still serves" A "$(who "$p1")"
    check "$mode: listener_manager.listener_added" 2 "$(stat listener_manager.listener_added)"
    check "$mode: a listener from LDS with the cache filter: first GET" Miss "$(cache_status "$p2")"
    check "$mode: a listener from LDS with the cache filter: second GET" Hit "$(cache_status "$p2")"

    # a changed listener: new connections get the new one; a request in
    # flight on the old one finishes and its connection then closes (drain)
    slow "$p1" "$TN_TMP/slow-$mode"
    sleep 0.5
    snapshot v3 "$(listener l1 "$p1" rc3)$(listener l2 "$p2" rc2 "$CACHE")" "$(route rc1 "$TO_A")$(route rc2 "$TO_B")$(route rc3 "$TEAPOT")"
    wait_until 10 is_who "$p1" teapot
    check "$mode: a changed listener: new requests get its new routes" 0 $?
    wait "$SLOW_PID"
    check "$mode: a changed listener: the request in flight finishes, then its connection closes" "200 close 1" \
        "$(cat "$TN_TMP/slow-$mode")"
    check "$mode: listener_manager.listener_modified" 1 "$(stat listener_manager.listener_modified)"
    check "$mode: a route configuration named by LDS has its stats" 1 "$(stat http.l1.rds.rc3.update_success)"

    # a change whose routes have not come: it warms, the old version serves
    snapshot v4 "$(listener l1 "$p1" rc4)$(listener l2 "$p2" rc2 "$CACHE")" "$(route rc1 "$TO_A")$(route rc2 "$TO_B")$(route rc3 "$TEAPOT")"
    wait_until 10 cp_has "ACK type=LDS version=v4 "
    check "$mode: LDS v4 ACKed" 0 $?
    # (incremental: the control plane says rc4 is removed, which tern, as
    # Envoy, ignores: the listener still warms)
    wait_until 5 stat_is listener_manager.total_listeners_warming 1
    check "$mode: listener_manager.total_listeners_warming" 0 $?
    check "$mode: while the new version warms the old one serves" teapot "$(who "$p1")"
    d=$(dump)
    check "$mode: config_dump: warming_state and active_state" "v4 rc4 v3" \
        "$(printf '%s' "$d" | "$TN_PYTHON" -c '
import json, sys
for c in json.load(sys.stdin)["configs"]:
    if c["name"] == "l1":
        w = c["warming_state"]
        hcm = w["listener"]["filter_chains"][0]["filters"][0]["typed_config"]
        print(w["version_info"], hcm["rds"]["route_config_name"], c["active_state"]["version_info"])
')"
    snapshot v5 "$(listener l1 "$p1" rc4)$(listener l2 "$p2" rc2 "$CACHE")" "$(route rc2 "$TO_B")$(route rc4 "$TO_B")"
    wait_until 10 is_who "$p1" B
    check "$mode: its routes come: the new version serves" 0 $?
    wait_until 5 cp_has "SUBSCRIBE type=RDS wildcard=0 names=rc2,rc4 "
    check "$mode: route configurations no listener names are unsubscribed" 0 $?

    # NACKs: a listener that does not compile, one whose port is taken
    snapshot v6 "$(listener l1 "$p1" rc4)$(listener l2 "$p2" rc2 "$CACHE")$(listener l3 "$p2" rc2 | sed 's/l3, address/l3, listener_filters: [{name: envoy.filters.listener.tls_inspector}], address/')" \
        "$(route rc2 "$TO_B")$(route rc4 "$TO_B")"
    wait_until 10 cp_has "NACK type=LDS version=v6 .*error=Listener 'l3': listener_filters: listener filters are not supported by tern yet"
    check "$mode: a bad listener is NACKed, naming it" 0 $?
    check "$mode: config_dump: the rejected listener's error_state" \
        "l3 Listener 'l3': listener_filters: listener filters are not supported by tern yet" \
        "$(dump | "$TN_PYTHON" -c '
import json, sys
for c in json.load(sys.stdin)["configs"]:
    if "error_state" in c:
        e = c["error_state"]
        print(e["failed_configuration"]["name"], e["details"])
')"
    snapshot v7 "$(listener l1 "$p1" rc4)$(listener l2 "$p2" rc2 "$CACHE")$(listener l3 "$oa" rc2)" \
        "$(route rc2 "$TO_B")$(route rc4 "$TO_B")"
    wait_until 10 cp_has "NACK type=LDS version=v7 .*error=Listener 'l3': address: cannot listen on 127.0.0.1:$oa: Address already in use"
    check "$mode: a listener on a port in use is NACKed with the reason" 0 $?
    check "$mode: after the NACKs l1 serves" B "$(who "$p1")"
    check "$mode: after the NACKs l2 serves" B "$(who "$p2")"
    check "$mode: listener_manager.lds.update_rejected" 2 "$(stat listener_manager.lds.update_rejected)"

    # a removed listener: it stops accepting; a request in flight finishes
    slow "$p2" "$TN_TMP/slow2-$mode"
    sleep 0.5
    snapshot v8 "$(listener l1 "$p1" rc4)" "$(route rc4 "$TO_B")"
    wait_until 10 is_who "$p2" 000
    check "$mode: a removed listener no longer accepts" 0 $?
    wait "$SLOW_PID"
    check "$mode: a removed listener: the request in flight finishes" "200 close 1" "$(cat "$TN_TMP/slow2-$mode")"
    check "$mode: listener_manager.listener_removed" 1 "$(stat listener_manager.listener_removed)"
    check "$mode: the remaining listener serves" B "$(who "$p1")"
    check "$mode: config_dump: an accepted update clears error_state" "l1" \
        "$(dump | "$TN_PYTHON" -c '
import json, sys
print(" ".join(c["name"] + ("!" if "error_state" in c else "") for c in json.load(sys.stdin)["configs"]))
')"
    wait_until 8 stat_is listener_manager.total_listeners_draining 0
    check "$mode: drains end after --drain-time-s" 0 $?

    # the control plane restarts: listeners keep serving, then take news
    tn_kill "$CP_PID" KILL
    check "$mode: control plane gone: still serving" B "$(who "$p1")"
    wait_until 5 stat_ge listener_manager.lds.update_failure 1
    check "$mode: listener_manager.lds.update_failure counts the stream's end" 0 $?
    snapshot v9 "$(listener l1 "$p1" rc4)" "$(route rc4 "$TO_A")"
    start_cp "$mode-2"
    wait_until 30 is_who "$p1" A
    check "$mode: control plane back: the new routes serve" 0 $?

    stop_tern
    check "$mode: tern exits 0" 0 "$TN_RC"
    tn_kill "$CP_PID"
    it_sanitizers
}

run GRPC sotw ads
run DELTA_GRPC delta ads
run GRPC sotw-types types
run DELTA_GRPC delta-types types

# ---- no control plane at start: initial_fetch_timeout ---------------------------
# tern becomes ready without its listeners and clusters once the timeout has
# passed, and takes them when the control plane comes up
RDS_SRC="ads: {},"
cat >"$TN_TMP/late.yaml" <<EOF
node: {id: lds-late, cluster: tests}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $admin}}}
dynamic_resources:
  ads_config: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}
  lds_config: {ads: {}, initial_fetch_timeout: 1s}
  cds_config: {ads: {}, initial_fetch_timeout: 1s}
static_resources:
  clusters:
  - $(it_cluster xds_cluster "127.0.0.1:$cp")
EOF
start_tern --wait "$admin" "$TN_TMP/late.yaml" --concurrency 1
ready() { [ "$(curl -sS --max-time 5 "http://127.0.0.1:$admin/ready")" = LIVE ]; }
wait_until 10 ready
check "late: no control plane: ready once initial_fetch_timeout has passed" 0 $?
check "late: no listener yet" 000 "$(who "$p1")"
snapshot v1 "$(listener l1 "$p1" rc1)" "$(route rc1 "$TO_A")"
start_cp late
wait_until 30 is_who "$p1" A
check "late: the control plane comes up: its listener serves" 0 $?
stop_tern
check "late: tern exits 0" 0 "$TN_RC"
tn_kill "$CP_PID"
it_sanitizers

# ---- from files (path_config_source) --------------------------------------------
F=$TN_TMP/files
mkdir -p "$F"
# put FILE TYPE VERSION RESOURCES: a DiscoveryResponse, atomically.
put() {
    printf 'version_info: "%s"\nresources:\n' "$3" >"$F/.tmp"
    printf '%s\n' "$4" | sed -n 's/^- {/- {"@type": type.googleapis.com\/'"$2"', /p' >>"$F/.tmp"
    mv "$F/.tmp" "$F/$1"
}
RDS_SRC="path_config_source: {path: $F/rds.yaml},"
eds() {
    printf '\n- {cluster_name: svc, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]}' "$1"
}
put lds.yaml envoy.config.listener.v3.Listener f1 "$(listener l1 "$p1" rc1)"
put cds.yaml envoy.config.cluster.v3.Cluster f1 \
    "
- {name: web_a, type: EDS, connect_timeout: 1s, eds_cluster_config: {service_name: svc, eds_config: {path_config_source: {path: $F/eds.yaml}}}}"
put eds.yaml envoy.config.endpoint.v3.ClusterLoadAssignment f1 "$(eds "$oa")"
put rds.yaml envoy.config.route.v3.RouteConfiguration f1 "$(route rc1 "$TO_A")"
cat >"$TN_TMP/files.yaml" <<EOF
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $admin}}}
dynamic_resources:
  lds_config: {path_config_source: {path: $F/lds.yaml}}
  cds_config: {path_config_source: {path: $F/cds.yaml}}
EOF
it_start "$TN_TMP/files.yaml" "$p1" --concurrency 2 --drain-time-s 1
check "files: listener, cluster, endpoints and routes from files serve" A "$(who "$p1")"
put eds.yaml envoy.config.endpoint.v3.ClusterLoadAssignment f2 "$(eds "$ob")"
wait_until 10 is_who "$p1" B
check "files: the endpoints file replaced: the new endpoint serves" 0 $?
put rds.yaml envoy.config.route.v3.RouteConfiguration f3 "$(route rc1 "$TEAPOT")"
wait_until 10 is_who "$p1" teapot
check "files: the routes file replaced: the new route serves" 0 $?
put lds.yaml envoy.config.listener.v3.Listener f4 "$(listener l1 "$p1" rc1)$(listener l2 "$p2" rc1)"
wait_until 10 is_who "$p2" teapot
check "files: the listeners file replaced: the added listener serves" 0 $?
printf 'version_info: "f5"\nresources: [unclosed\n' >"$F/.tmp" && mv "$F/.tmp" "$F/lds.yaml"
wait_until 10 log_has "lds.yaml: line [0-9]*: YAML syntax error"
check "files: a file that does not parse is logged, naming it" 0 $?
check "files: listener_manager.lds.update_failure" 1 "$(stat listener_manager.lds.update_failure)"
check "files: after it, both listeners still serve" "teapot teapot" "$(who "$p1") $(who "$p2")"
put cds.yaml envoy.config.cluster.v3.Cluster f6 \
    "
- {name: web_a, type: EDS, connect_timeout: 0s, eds_cluster_config: {service_name: svc, eds_config: {path_config_source: {path: $F/eds.yaml}}}}"
wait_until 10 log_has "Cluster 'web_a': connect_timeout: must be greater than 0"
check "files: a rejected cluster is logged with the field and reason" 0 $?
put rds.yaml envoy.config.route.v3.RouteConfiguration f7 "$(route rc1 "$TO_A")"
wait_until 10 is_who "$p1" B
check "files: after it, the cluster as it was serves" 0 $?
put lds.yaml envoy.config.listener.v3.Listener f8 "$(listener l2 "$p2" rc1)"
wait_until 10 is_who "$p1" 000
check "files: a listener gone from the file stops accepting" 0 $?
check "files: the other one serves" B "$(who "$p2")"
check "files: listener_manager.listener_removed" 1 "$(stat listener_manager.listener_removed)"
stop_tern
check "files: tern exits 0" 0 "$TN_RC"
it_sanitizers

tn_summary
