#!/bin/sh
# Access logs through the real tern: a file log in Envoy's default format, a
# JSON log every line of which must parse, operators that read the request,
# the response and the upstream, and log rotation by POST /reopen_logs and by
# SIGUSR1 (the renamed file keeps the old lines, the path gets the new ones).
#
#   accesslog.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

set -- $(free_port 3)
o1=$1 f=$2 adm=$3
start_origin web "$o1" || { tn_fail "origin web starts" "see above"; tn_summary; }
txt=$TN_TMP/access.log
json=$TN_TMP/access.json
LOGS="access_log: [
  {name: envoy.access_loggers.file, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: \"$txt\"}},
  {name: envoy.access_loggers.file, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: \"$json\",
   log_format: {json_format: {code: \"%RESPONSE_CODE%\", method: \"%REQ(:METHOD)%\", path: \"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%\",
     ua: \"%REQ(USER-AGENT):6%\", flags: \"%RESPONSE_FLAGS%\", upstream: \"%UPSTREAM_HOST%\", cluster: \"%UPSTREAM_CLUSTER%\",
     bytes: \"%BYTES_SENT%\", dur: \"%DURATION%\", route: \"%ROUTE_NAME%\", resp: \"%RESP(X-ORIGIN)%\", start: \"%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%\",
     remote: \"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%\", proto: \"%PROTOCOL%\"}}}}],"
L=$(it_listener front "$f" "$(it_rc "$(it_vhost all '"*"' "{name: r1, match: {prefix: /}, route: {cluster: web}}")")" "$LOGS")
C=$(it_cluster web "127.0.0.1:$o1")
printf '{admin: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}, static_resources: {listeners: [%s], clusters: [%s]}}\n' \
    "$adm" "$L" "$C" >"$TN_TMP/alog.yaml"
# one worker: lines of one writer keep their order (across workers they need not)
it_start "$TN_TMP/alog.yaml" "$f" --concurrency 1
wait_port "$adm" || tn_fail "admin listens" "not on $adm"
base=http://127.0.0.1:$f

# wait_lines FILE N: until FILE has N lines (writers flush within a second).
wait_lines() {
    wl_n=0
    while [ $wl_n -lt 50 ]; do
        [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ] && return 0
        sleep 0.1
        wl_n=$((wl_n + 1))
    done
    return 1
}

tn_curl -o /dev/null -A 'curl-test/1' "$base/one?x=1"
tn_curl -o /dev/null "$base/two?status=503"
wait_lines "$txt" 2 || tn_fail "the text log has 2 lines" "$(cat "$txt" 2>/dev/null)"
wait_lines "$json" 2 || tn_fail "the JSON log has 2 lines" "$(cat "$json" 2>/dev/null)"
check_match "default format line" \
    "^\\[[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z\\] \"GET /one\\?x=1 HTTP/1.1\" 200 - 0 [0-9]+ [0-9]+ [0-9]+ \"-\" \"curl-test/1\" \"[0-9a-f-]{36}\" \"127.0.0.1:$f\" \"127.0.0.1:$o1\"\$" \
    "$(sed -n 1p "$txt")"
check_match "default format: the 503" '" 503 - 0 ' "$(sed -n 2p "$txt")"
py='import json,sys
for line in sys.stdin:
    d=json.loads(line)
    print(d["code"], d["method"], d["path"], d["ua"], d["flags"], d["upstream"], d["cluster"], d["route"], d["resp"], d["remote"], d["proto"], type(d["bytes"]).__name__)'
out=$("$TN_PYTHON" -c "$py" <"$json" 2>&1)
check "JSON log line 1 parses with the operators' values" "200 GET /one?x=1 curl-t - 127.0.0.1:$o1 web r1 web 127.0.0.1 HTTP/1.1 int" "$(echo "$out" | sed -n 1p)"
check "JSON log line 2" "503 GET /two?status=503" "$(echo "$out" | sed -n 2p | cut -d' ' -f1-3)"
check_match "JSON START_TIME with %3f" '"start": ?"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z"' "$(sed -n 1p "$json")"

# Rotation: rename, reopen, the new lines go to a new file at the path.
mv "$txt" "$txt.1"
check "POST /reopen_logs" 200 "$(http_status "http://127.0.0.1:$adm/reopen_logs" -X POST)"
tn_curl -o /dev/null "$base/three"
wait_lines "$txt" 1 || tn_fail "after /reopen_logs the path gets a new file" "no $txt"
check "after /reopen_logs the new file has the new line" 1 "$(grep -c 'GET /three' "$txt" 2>/dev/null)"
check "the renamed file keeps the old lines only" 2 "$(wc -l <"$txt.1" | tr -d ' ')"
mv "$txt" "$txt.2"
kill -USR1 "$TN_TERN_PID"
sleep 0.3
tn_curl -o /dev/null "$base/four"
wait_lines "$txt" 1 || tn_fail "after SIGUSR1 the path gets a new file" "no $txt"
check "after SIGUSR1 the new file has the new line" 1 "$(grep -c 'GET /four' "$txt" 2>/dev/null)"

stop_tern
check "tern exits 0" 0 "$TN_RC"
it_sanitizers
tn_summary
