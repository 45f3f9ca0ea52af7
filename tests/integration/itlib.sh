# itlib.sh - configuration builders and helpers shared by the data-plane
# integration scripts (proxy_http1.sh, router.sh, upstream.sh, lifecycle.sh).
# Source lib.sh first.
#
# Configurations are written in YAML flow style (one Envoy bootstrap per test
# run, ports from free_port, everything on 127.0.0.1):
#
#   L=$(it_listener front "$f" "$(it_rc "$(it_vhost all '"*"' "$(it_route_cluster / web)")")")
#   C=$(it_cluster web "127.0.0.1:$o")
#   it_config "$TN_TMP/a.yaml" "$L" "$C"
#   start_tern --wait "$f" "$TN_TMP/a.yaml" --concurrency 2
#
# Tests that fail because of a tern bug (the test follows Envoy's behaviour)
# say "TERN BUG" in their name, so that they stand out in the output.

IT_HCM_TYPE=type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
IT_ROUTER='{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}'

# it_listener NAME PORT ROUTE_CONFIG [HCM_EXTRA]: HCM_EXTRA is a list of
# "key: value," pairs added to the HttpConnectionManager.
it_listener() {
    printf '{name: %s, address: {socket_address: {address: 127.0.0.1, port_value: %s}}, filter_chains: [{filters: [{name: envoy.filters.network.http_connection_manager, typed_config: {"@type": %s, stat_prefix: %s, %s route_config: %s, http_filters: [%s]}}]}]}' \
        "$1" "$2" "$IT_HCM_TYPE" "$1" "${4:-}" "$3" "$IT_ROUTER"
}

# it_rc VHOSTS [EXTRA]: a route_config with the given (comma-separated)
# virtual hosts and extra route-config fields ("key: value,").
it_rc() {
    printf '{name: rc, %s virtual_hosts: [%s]}' "${2:-}" "$1"
}

# it_vhost NAME DOMAINS ROUTES [EXTRA]: DOMAINS is a flow list body
# ('"*"' or '"a.com", "b.com"').
it_vhost() {
    printf '{name: %s, domains: [%s], %s routes: [%s]}' "$1" "$2" "${4:-}" "$3"
}

# it_route_cluster PREFIX CLUSTER [ROUTE_EXTRA]
it_route_cluster() {
    printf '{match: {prefix: "%s"}, route: {cluster: %s, %s}}' "$1" "$2" "${3:-}"
}

# it_route_direct PREFIX STATUS BODY
it_route_direct() {
    printf '{match: {prefix: "%s"}, direct_response: {status: %s, body: {inline_string: "%s"}}}' "$1" "$2" "$3"
}

# it_cluster NAME "HOST:PORT ..." [EXTRA] [TYPE]: a cluster (STATIC unless
# TYPE says otherwise) with one locality of endpoints; EXTRA is "key: value,".
it_cluster() {
    it_eps=
    for it_ep in $2; do
        it_h=${it_ep%:*} it_p=${it_ep##*:}
        it_eps="$it_eps${it_eps:+, }{endpoint: {address: {socket_address: {address: $it_h, port_value: $it_p}}}}"
    done
    printf '{name: %s, type: %s, connect_timeout: 2s, %s load_assignment: {cluster_name: %s, endpoints: [{lb_endpoints: [%s]}]}}' \
        "$1" "${4:-STATIC}" "${3:-}" "$1" "$it_eps"
}

# it_alog FILE [FORMAT]: an access_log field ("access_log: [...],") for
# HCM_EXTRA, writing FORMAT (default "%RESPONSE_CODE% %RESPONSE_FLAGS%") to FILE.
it_alog() {
    printf 'access_log: [{name: envoy.access_loggers.file, typed_config: {"@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: "%s", log_format: {text_format_source: {inline_string: "%s\\n"}}}}],' \
        "$1" "${2:-%RESPONSE_CODE% %RESPONSE_FLAGS%}"
}

# it_config FILE LISTENERS CLUSTERS: LISTENERS and CLUSTERS are
# comma-separated flow mappings (CLUSTERS may be empty).
it_config() {
    printf '{static_resources: {listeners: [%s], clusters: [%s]}}\n' "$2" "$3" >"$1"
}

# it_start CONFIG PORT [ARGS]: start_tern waiting for PORT; a failure to start
# is reported and ends the script (nothing else can be checked).
it_start() {
    it_cfg=$1 it_port=$2
    shift 2
    if ! start_tern --wait "$it_port" "$it_cfg" "$@"; then
        tn_fail "tern starts with $(basename "$it_cfg")" "see the log above; config: $(cat "$it_cfg")"
        tn_summary
    fi
}

# it_raw PORT [TIMEOUT]: sends stdin (bytes, as is) to 127.0.0.1:PORT in one
# write, then reads until the peer closes or TIMEOUT (default 5) seconds pass
# without data; prints what was read. With IT_RAW_SHUT=1 the write side is
# shut down after sending. Ends with a line "#closed" when the peer closed,
# "#timeout" otherwise.
it_raw() {
    "$TN_PYTHON" -c '
import socket, sys, time
port, timeout = int(sys.argv[1]), float(sys.argv[2])
data = sys.stdin.buffer.read()
s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
s.sendall(data)
if sys.argv[3] == "1":
    s.shutdown(socket.SHUT_WR)
out = b""
how = "#timeout"
try:
    while True:
        b = s.recv(65536)
        if not b:
            how = "#closed"
            break
        out += b
except socket.timeout:
    pass
except ConnectionResetError:
    how = "#closed"
sys.stdout.write(out.decode("latin-1"))
sys.stdout.write("\n" + how + "\n")
' "$1" "${2:-5}" "${IT_RAW_SHUT:-0}"
}

# it_origin_hdr JSON NAME: a request header the origin saw ("" when absent).
it_origin_hdr() {
    printf '%s' "$1" | json_get "headers.$2"
}

# it_stat PORT: how many requests the origin on PORT counted.
it_count() {
    origin_count "$1"
}

# it_sanitizers [LOG]: fails when tern's log (default $TN_TMP/tern.log) holds
# an AddressSanitizer, LeakSanitizer or UBSan report (UBSan does not stop
# the process, so only the log shows it).
it_sanitizers() {
    it_log=${1:-$TN_TMP/tern.log}
    if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$it_log" 2>/dev/null; then
        tn_fail "no sanitizer reports in tern's log" "$(grep -E -m1 -A8 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$it_log" | tr '\n' ' ' | head -c 800)"
    else
        tn_pass "no sanitizer reports in tern's log"
    fi
}
