#!/bin/sh
# Envoy sandbox-style configurations served by the real tern, end to end:
# listeners without a name (tern names them after their address, as Envoy
# names listener stats), enum values in lower case, a single mapping where a
# list is expected, in the bootstrap and in file subscriptions
# (path_config_source, as Envoy's dynamic-config-fs sandbox), and what tern
# refuses from such files (a listener from LDS without a name, a field tern
# lacks) said as such.
#
#   envoy_sandboxes.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

set -- $(free_port 4)
o=$1 f=$2 adm=$3 p2=$4
start_origin web "$o" || { tn_fail "origin web starts" "see above"; tn_summary; }
F=$TN_TMP/files
mkdir -p "$F"

# As Envoy's sandboxes write them: no listener name, lower-case enums,
# `filters:` and `virtual_hosts:` holding one mapping.
cat >"$TN_TMP/sandbox.yaml" <<EOF
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: $adm}}
static_resources:
  listeners:
  - address:
      socket_address: {address: 127.0.0.1, port_value: $f}
    filter_chains:
    - filters:
        name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": $IT_HCM_TYPE
          codec_type: auto
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
              name: backend
              domains: ["*"]
              routes:
                match: {prefix: "/"}
                route: {cluster: service1}
          http_filters:
            name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: service1
    type: static
    lb_policy: round_robin
    connect_timeout: 1s
    load_assignment:
      cluster_name: service1
      endpoints:
        lb_endpoints:
          endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $o}}}
dynamic_resources:
  lds_config: {path_config_source: {path: $F/lds.yaml}}
EOF
# dynamic-config-fs's lds.yaml shape: a named listener, `filters:` as one mapping
lds_listener() {
    cat <<EOF
version_info: "$1"
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  $2
  address: {socket_address: {address: 127.0.0.1, port_value: $p2}}
  filter_chains:
  - filters:
      name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": $IT_HCM_TYPE
        codec_type: AUTO
        stat_prefix: from_file
        $3
        route_config:
          virtual_hosts:
            name: all
            domains: ["*"]
            routes: {match: {prefix: "/"}, route: {cluster: service1}}
        http_filters:
          name: envoy.filters.http.router
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
EOF
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
put() { cat >"$F/.tmp" && mv "$F/.tmp" "$F/$1"; }
lds_listener v1 "name: from_file" "" | put lds.yaml

it_start "$TN_TMP/sandbox.yaml" "$f" --concurrency 2
wait_port "$adm" || tn_fail "admin listens" "not on $adm"
wait_port "$p2" || tn_fail "the listener from lds.yaml listens" "not on $p2"
admin=http://127.0.0.1:$adm
gen=127.0.0.1_$f

check "the unnamed listener serves through the cluster" 200 "$(http_status "http://127.0.0.1:$f/hello")"
check "the origin saw the request" 1 "$(it_count "$o")"
check "the listener from the file subscription (single mappings) serves" 200 "$(http_status "http://127.0.0.1:$p2/x")"
check_contains "/listeners shows the generated name" "$gen::127.0.0.1:$f" "$(tn_curl "$admin/listeners")"
check_contains "/listeners shows the file's listener" "from_file::127.0.0.1:$p2" "$(tn_curl "$admin/listeners")"
out=$(tn_curl "$admin/listeners?format=json")
check "/listeners?format=json names it" "$gen" "$(echo "$out" | "$TN_PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print([l["name"] for l in d["listener_statuses"] if l["local_address"]["socket_address"]["port_value"]=='"$f"'][0])')"
out=$(tn_curl "$admin/config_dump?resource=static_listeners")
check "/config_dump's static listener carries the generated name" "$gen" \
    "$(echo "$out" | "$TN_PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print(d["configs"][0]["listener"]["name"])')"
stats=$(tn_curl "$admin/stats")
check "listener stats are under the same name" yes \
    "$(echo "$stats" | grep -q "^listener\.$(echo "$gen" | sed 's/\./\\./g')\.downstream_cx_total: [1-9]" && echo yes || echo "no")"
check_contains "the start log names the listener" "listener '$gen' listening on 127.0.0.1:$f" "$(cat "$TN_TMP/tern.log")"

# A listener from LDS needs a name (Envoy's rule: xDS resources are named).
lds_listener v2 "" "" | put lds.yaml
wait_until 10 grep -q "name: must not be empty (a listener from LDS is known by its name)" "$TN_TMP/tern.log"
check "a file listener without a name is refused, saying why" 0 $?
check "the file's listener keeps serving after the refusal" 200 "$(http_status "http://127.0.0.1:$p2/x")"
# A field Envoy has and tern lacks, in a file: said so, not "unknown field".
lds_listener v3 "name: from_file" "tracing: {}" | put lds.yaml
wait_until 10 grep -q "typed_config.tracing: envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.tracing is not supported by tern" "$TN_TMP/tern.log"
check "a field tern lacks in a file is named as not supported" 0 $?
# codec_type is already set above: a lower-case one replaces it (an upper-case
# duplicate key is "given more than once" either way)
lds_listener v4 "name: from_file" "" | sed 's/codec_type: AUTO/codec_type: http1/' | put lds.yaml
wait_until 10 grep -q "listener 'from_file' .*(version v4)" "$TN_TMP/tern.log"
check "a lower-case enum in a file is accepted (version v4 taken)" 0 $?
check "the file's listener serves after the update" 200 "$(http_status "http://127.0.0.1:$p2/y")"

stop_tern
check "tern exits 0" 0 "$TN_RC"
it_sanitizers
tn_summary
