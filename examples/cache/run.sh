#!/bin/sh
# The caching-proxy example, end to end on this machine: tern with the cache
# filter (envoy.yaml) in front of an origin that counts the requests reaching
# it (tests/origin/origin.py), so that every step can show what the cache
# answered by itself. Walks, printing each curl and CHECKING it:
#
#   miss then hit (the origin count does not move; Age, X-Cache-Status,
#   X-Cache-Key, X-Cache-Hits, X-Served-By), a conditional request answered
#   304 from the cache, Cache-Control: no-store not cached, /api/ bypassing
#   the cache (per-route disabled), /static/ kept an hour (per-route
#   ttl_override), purges through the admin API (exact and prefix), through
#   the PURGE method (401 without the key, 200 with it, 404 when nothing,
#   the /prefix** wildcard) and through Kong's /proxy-cache API, a stale
#   entry served while the origin is stopped, GET /cache and
#   /stats?filter=cache; then tern on envoy-plain.yaml (Envoy's own
#   CacheConfig, unchanged) caching by the origin's Cache-Control.
#
#   examples/cache/run.sh
#
# Environment:
#   TERN                     tern binary (default: build/tern)
#   TERN_CACHE_ORIGIN_PORT   the origin, cluster origin  (default 8080)
#   TERN_CACHE_LISTENER_PORT tern's listener             (default 10000)
#   TERN_CACHE_ADMIN_PORT    tern's admin API            (default 9901)
# It runs copies of envoy.yaml and envoy-plain.yaml, in a temporary
# directory, with these ports. Everything listens on 127.0.0.1 only.
#
# Exit status: 0 when every check passed, 1 when one failed, 2 when something
# it needs is missing or a port is taken. Processes it started are stopped on
# exit; the temporary directory is removed, or kept (and named) on failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tern=${TERN:-$root/build/tern}
py=${TN_PYTHON:-/usr/bin/python3}
origin_port=${TERN_CACHE_ORIGIN_PORT:-8080}
listen_port=${TERN_CACHE_LISTENER_PORT:-10000}
admin_port=${TERN_CACHE_ADMIN_PORT:-9901}
for arg in "$@"; do
    case $arg in
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
# check WHAT EXPECTED ACTUAL
check() {
    if [ "$2" = "$3" ]; then
        ok "$1"
    else
        bad "$1: expected '$2', got '$3'"
    fi
}

# ---- what it needs -----------------------------------------------------------
missing=
[ -x "$tern" ] || missing="$missing tern ('$tern': build it, or set TERN)"
[ -x "$py" ] || missing="$missing $py"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
if [ -n "$missing" ]; then
    echo "run.sh: missing:$missing" >&2
    exit 2
fi
for p in "$origin_port" "$listen_port" "$admin_port"; do
    # As a server binds (SO_REUSEADDR): this also finds a port held by a
    # client connection in TIME_WAIT, which a listener cannot take either.
    if ! "$py" -c 'import socket,sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null; then
        echo "run.sh: 127.0.0.1:$p is in use; stop what listens there or choose other ports (TERN_CACHE_*_PORT, see --help)" >&2
        exit 2
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tern-cache.XXXXXX") || exit 2
pids=
cleanup() {
    rc=$?
    trap - EXIT
    for p in $pids; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in $pids; do
        n=0
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

# stop PID: SIGTERM, wait up to 15 s; sets stop_rc (exit status, or "hung").
stop() {
    kill -TERM "$1" 2>/dev/null
    st_n=0
    while alive "$1" && [ $st_n -lt 150 ]; do
        sleep 0.1
        st_n=$((st_n + 1))
    done
    if alive "$1"; then
        stop_rc=hung
        return
    fi
    wait "$1"
    stop_rc=$?
    pids=$(echo " $pids " | sed "s/ $1 / /")
}

# show NAME: the tail of a process's log (on failure).
show() {
    echo "# --- $1.log (last 15 lines) ---"
    tail -n 15 "$tmp/$1.log" 2>/dev/null | sed 's/^/# /'
}

finish() {
    echo
    echo "cache example: $passed passed, $failed failed"
    [ "$failed" -eq 0 ] && exit 0
    exit 1
}

base=http://127.0.0.1:$listen_port
admin=http://127.0.0.1:$admin_port
origin=http://127.0.0.1:$origin_port

# get [curl args] URL: prints the command, keeps the status line and headers
# (lower-cased names) in $tmp/h and the body in $tmp/b.
get() {
    g_cmd='$ curl -si'
    for g_arg in "$@"; do
        case $g_arg in
        *[!A-Za-z0-9_./:=%?-]*) g_cmd="$g_cmd '$g_arg'" ;;
        *) g_cmd="$g_cmd $g_arg" ;;
        esac
    done
    # shown with the default ports, as in README.md
    echo "$g_cmd" | sed "s#127.0.0.1:$listen_port/#127.0.0.1:10000/#g; s#127.0.0.1:$admin_port/#127.0.0.1:9901/#g"
    : >"$tmp/b"
    : >"$tmp/h.raw"
    curl -s --max-time 10 -D "$tmp/h.raw" -o "$tmp/b" "$@"
    tr -d '\r' <"$tmp/h.raw" | sed 's/^\([^:]*\):/\L\1:/' >"$tmp/h"
    # what a reader wants to see: the status and the cache's headers (the
    # origin's Cache-Control and ETag; the admin's own Cache-Control is not)
    case $* in
    *"127.0.0.1:$admin_port/"*) sed -n '1p' "$tmp/h" ;;
    *) sed -n '1p; /^\(age\|x-cache-[a-z]*\|x-served-by\|cache-control\|etag\): /p' "$tmp/h" ;;
    esac | sed 's/^/    /'
    if [ -s "$tmp/b" ] && [ "$(wc -c <"$tmp/b")" -lt 200 ]; then
        sed 's/^/    /' "$tmp/b"
        [ -z "$(tail -c 1 "$tmp/b")" ] || echo
    fi
    return 0
}
hdr() { sed -n "s/^$1: //p" "$tmp/h" | head -1; }
status() { sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' "$tmp/h"; }
body() { tr -d '\n' <"$tmp/b"; }
# json KEY [FILE]: a top-level or dotted field of a JSON document
json() {
    "$py" -c 'import json,sys
try:
    v = json.load(open(sys.argv[2]) if len(sys.argv) > 2 else sys.stdin)
    for k in sys.argv[1].split("."):
        v = v[int(k)] if isinstance(v, list) else v[k]
    print(v)
except Exception:
    print("")' "$@"
}
# reached PATH: how many requests for PATH (without query) reached the origin
reached() {
    n=$(curl -s --max-time 5 "$origin/__count" | json "paths.$1")
    echo "${n:-0}"
}
request_id() { json headers.x-request-id "$tmp/b"; }

# ---- configuration -----------------------------------------------------------
step "configuration (ports: origin $origin_port, listener $listen_port, admin $admin_port)"
for f in envoy.yaml envoy-plain.yaml; do
    sed -e "s/port_value: 8080\$/port_value: $origin_port/" \
        -e "s/port_value: 10000\$/port_value: $listen_port/" \
        -e "s/port_value: 9901\$/port_value: $admin_port/" "$here/$f" >"$tmp/$f"
    for p in "$origin_port" "$listen_port" "$admin_port"; do
        grep -q "port_value: $p\$" "$tmp/$f" || bad "the copy of $f has port $p (did $f's ports change?)"
    done
done
for f in "$here/envoy.yaml" "$here/envoy-plain.yaml" "$tmp/envoy.yaml" "$tmp/envoy-plain.yaml"; do
    if out=$("$tern" --mode validate -c "$f" 2>&1); then
        ok "tern --mode validate: $out"
    else
        bad "tern --mode validate -c $f: $out"
    fi
done
[ "$failed" -eq 0 ] || finish

# ---- processes ---------------------------------------------------------------
start_origin() {
    spawn origin "$py" "$root/tests/origin/origin.py" --name origin --port "$origin_port"
    origin_pid=$last_pid
    if wait_http "$origin/__count" "$origin_pid"; then
        ok "the origin answers on 127.0.0.1:$origin_port"
    else
        bad "the origin answers on 127.0.0.1:$origin_port"
        show origin
        finish
    fi
}
start_tern() { # start_tern CONFIG
    spawn tern "$tern" -c "$tmp/$1" --concurrency 2
    tern_pid=$last_pid
    if wait_http "$admin/ready" "$tern_pid" && wait_http "$base/__count" "$tern_pid"; then
        ok "tern is ready on $1 (listener 127.0.0.1:$listen_port, admin 127.0.0.1:$admin_port)"
    else
        bad "tern is ready on $1"
        show tern
        finish
    fi
}
stop_tern() {
    stop "$tern_pid"
    check "tern exits 0 on SIGTERM" 0 "$stop_rc"
    [ "$stop_rc" = 0 ] || show tern
    if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$tmp/tern.log"; then
        bad "sanitizer report in tern's log: $(grep -E -m1 -A6 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$tmp/tern.log" | tr '\n' ' ' | head -c 600)"
    fi
}

step "starting the origin (tests/origin/origin.py) on 127.0.0.1:$origin_port and tern on envoy.yaml"
start_origin
start_tern envoy.yaml

# ---- 1. miss, then hit -------------------------------------------------------
step "1. the first request is a miss and goes to the origin; the second is a hit and does not"
H='Host: example.com'
get -H "$H" "$base/data/1"
check "first GET /data/1: 200 Miss" "200 Miss" "$(status) $(hdr x-cache-status)"
check "X-Served-By is the filter's name" edge-1 "$(hdr x-served-by)"
key1=$(hdr x-cache-key)
case $key1 in
????????????????????????????????) ok "X-Cache-Key: $key1" ;;
*) bad "X-Cache-Key is 32 hex digits: '$key1'" ;;
esac
first=$(request_id)
check "the origin saw GET /data/1 once" 1 "$(reached /data/1)"
get -H "$H" "$base/data/1"
check "second GET /data/1: 200 Hit" "200 Hit" "$(status) $(hdr x-cache-status)"
check "the origin still saw it once" 1 "$(reached /data/1)"
check "the hit is the stored response (the first request's x-request-id)" "$first" "$(request_id)"
check "X-Cache-Hits: 1" 1 "$(hdr x-cache-hits)"
check "the same X-Cache-Key" "$key1" "$(hdr x-cache-key)"
sleep 1.1
get -H "$H" "$base/data/1"
age=$(hdr age)
case $age in
''|*[!0-9]*) bad "Age is a number of seconds: '$age'" ;;
*) [ "$age" -ge 1 ] && ok "Age grows while in the cache: $age" || bad "Age grows while in the cache: '$age' after 1.1 s" ;;
esac
check "X-Cache-Hits: 2, the origin still at 1" "2 1" "$(hdr x-cache-hits) $(reached /data/1)"

# ---- 2. conditional request --------------------------------------------------
step "2. a client's conditional request is answered 304 by the cache"
E='etag=v1&hdr=cache-control:max-age%3D300'
get "$base/doc?$E"
check "GET /doc (the origin sends ETag \"v1\"): 200 Miss" "200 Miss" "$(status) $(hdr x-cache-status)"
get -H 'If-None-Match: "v1"' "$base/doc?$E"
check "If-None-Match: \"v1\": 304 Hit" "304 Hit" "$(status) $(hdr x-cache-status)"
check "the 304 has no body" 0 "$(wc -c <"$tmp/b" | tr -d ' ')"
get -H 'If-None-Match: "v0"' "$base/doc?$E"
check "If-None-Match: \"v0\" (another version): the whole 200 from the cache" "200 Hit" "$(status) $(hdr x-cache-status)"
check "the origin saw /doc once" 1 "$(reached /doc)"

# ---- 3. no-store -------------------------------------------------------------
step "3. a response with Cache-Control: no-store is not cached"
get "$base/account?hdr=cache-control:no-store"
get "$base/account?hdr=cache-control:no-store"
check "the second GET /account is not a hit" no "$([ "$(hdr x-cache-status)" = Hit ] && echo yes || echo no)"
check "both reached the origin" 2 "$(reached /account)"

# ---- 4. per-route: /api/ disabled ---------------------------------------------
step "4. /api/ has caching disabled by its route (CachePerRoute disabled: true)"
get "$base/api/users?hdr=cache-control:max-age%3D300"
get "$base/api/users?hdr=cache-control:max-age%3D300"
xs=$(hdr x-cache-status)
check "the second GET /api/users passed by the cache: X-Cache-Status Bypass" Bypass "$xs"
check "both reached the origin, though the origin said max-age=300" 2 "$(reached /api/users)"

# ---- 5. per-route: /static/ ttl_override --------------------------------------
step "5. /static/ keeps entries an hour (CachePerRoute ttl_override: 3600s), whatever the origin says"
get "$base/static/app.js?hdr=cache-control:max-age%3D5"
get "$base/static/app.js?hdr=cache-control:max-age%3D5"
check "GET /static/app.js again: Hit" Hit "$(hdr x-cache-status)"
skey=$(hdr x-cache-key)
get "$admin/proxy-cache/$skey"
check "Kong's GET /proxy-cache/<key>: the /static/ entry lives 3600 s (origin said max-age=5)" "200 3600" "$(status) $(json ttl_s "$tmp/b")"
get "$admin/proxy-cache/$key1"
check "... and /data/1, to which the origin gave no freshness, the filter's default_ttl 60 s" "200 60 /data/1 example.com" \
    "$(status) $(json ttl_s "$tmp/b") $(json path "$tmp/b") $(json host "$tmp/b")"

# ---- 6. purge through the admin API --------------------------------------------
step "6. purge through the admin API: POST /purge?hostname=H&path=P (exact), path=P* (prefix)"
get -X POST "$admin/purge?hostname=example.com&path=/data/1"
check "POST /purge?hostname=example.com&path=/data/1" '200 {"purged":1}' "$(status) $(body)"
get -H "$H" "$base/data/1"
check "GET /data/1 after the purge: Miss" Miss "$(hdr x-cache-status)"
check "... so the origin saw it a second time" 2 "$(reached /data/1)"
get -H "$H" "$base/data/2"
get -H "$H" "$base/data/3"
get -X POST "$admin/purge?hostname=example.com&path=/data/*"
check "POST /purge?hostname=example.com&path=/data/* purges /data/1, /data/2, /data/3" '200 {"purged":3}' "$(status) $(body)"
get -H "$H" "$base/data/2"
check "GET /data/2 after the prefix purge: Miss" Miss "$(hdr x-cache-status)"
get -X POST "$admin/purge?hostname=example.com&path=/nothing"
check "POST /purge of what is not cached" '404 {"purged":0}' "$(status) $(body)"

# ---- 7. the PURGE method --------------------------------------------------------
step "7. purge with the PURGE method on the listener (X-Purge-Key, /prefix** wildcard)"
get "$base/news/today"
get "$base/news/today"
check "GET /news/today cached" Hit "$(hdr x-cache-status)"
get -X PURGE "$base/news/today"
check "PURGE without X-Purge-Key: 401" 401 "$(status)"
get -X PURGE -H 'X-Purge-Key: wrong' "$base/news/today"
check "PURGE with a wrong key: 401" 401 "$(status)"
get -X PURGE -H 'X-Purge-Key: s3cret' "$base/news/today"
check "PURGE with the key" '200 {"purged":1}' "$(status) $(body)"
get -X PURGE -H 'X-Purge-Key: s3cret' "$base/news/today"
check "PURGE again: nothing left" '404 {"purged":0}' "$(status) $(body)"
get "$base/news/today"
check "GET /news/today after PURGE: Miss" Miss "$(hdr x-cache-status)"
get "$base/news/sport"
get -X PURGE -H 'X-Purge-Key: s3cret' "$base/news/**"
check "PURGE /news/** purges /news/today and /news/sport" '200 {"purged":2}' "$(status) $(body)"
get "$base/news/sport"
check "GET /news/sport after the wildcard: Miss" Miss "$(hdr x-cache-status)"
check "the PURGE requests never reached the origin: /news/today twice (the first miss, the miss after PURGE)" 2 "$(reached /news/today)"

# ---- 8. Kong's /proxy-cache API -------------------------------------------------
step "8. Kong's proxy-cache API on the admin listener"
get "$base/static/app.js?hdr=cache-control:max-age%3D5"
check "the /static/ entry is still there" Hit "$(hdr x-cache-status)"
get "$admin/proxy-cache/$skey"
check "GET /proxy-cache/<key>: its path" "200 /static/app.js?hdr=cache-control:max-age%3D5" "$(status) $(json path "$tmp/b")"
get -X DELETE "$admin/proxy-cache/$skey"
check "DELETE /proxy-cache/<key>: 204" 204 "$(status)"
get "$admin/proxy-cache/$skey"
check "GET /proxy-cache/<key> once deleted: 404" 404 "$(status)"
get -X DELETE "$admin/proxy-cache/$skey"
check "DELETE /proxy-cache/<key> once deleted: 404" 404 "$(status)"
get -X DELETE "$admin/proxy-cache"
check "DELETE /proxy-cache (everything): 204" 204 "$(status)"
get "$base/doc?$E"
check "GET /doc after emptying the cache: Miss" Miss "$(hdr x-cache-status)"

# ---- 9. stale while the origin is down ---------------------------------------------
step "9. an expired entry is served while the origin is stopped (stale_ttl: 300s)"
get "$base/live?hdr=cache-control:max-age%3D1"
live_id=$(request_id)
echo "    (waiting 2.2 s for max-age=1 to run out, then stopping the origin)"
sleep 2.2
stop "$origin_pid"
check "the origin stopped" 0 "$stop_rc"
get "$base/live?hdr=cache-control:max-age%3D1"
check "GET /live with the origin down: 200 from the cache" "200 Hit" "$(status) $(hdr x-cache-status)"
check "the stale response, older than its max-age" "$live_id yes" "$(request_id) $([ "$(hdr age)" -ge 2 ] 2>/dev/null && echo yes || echo "no: Age '$(hdr age)'")"
get "$base/never-cached"
check "GET /never-cached with the origin down: 503" 503 "$(status)"
start_origin

# ---- 10. totals and stats -------------------------------------------------------------
step "10. the cache's totals (GET /cache) and stats (/stats?filter=cache)"
get "$admin/cache"
check "GET /cache: the store edge-1, 50 MiB" "edge-1 52428800" "$(json 0.name "$tmp/b") $(json 0.max_bytes "$tmp/b")"
check "GET /cache: what was inserted and purged" yes \
    "$("$py" -c 'import json,sys; s=json.load(open(sys.argv[1]))[0]; print("yes" if s["inserts"] >= 10 and s["purged"] >= 8 and s["entries"] >= 1 else "no: %s" % s)' "$tmp/b")"
get "$admin/stats?filter=cache"
sed 's/^/    /' "$tmp/b"
echo "    (bytes and entries are gauges refreshed once a second; GET /cache is current)"
for s in hit miss insert purge stale_served; do
    v=$(sed -n "s/^http\.ingress_http\.cache\.$s: //p" "$tmp/b")
    check "http.ingress_http.cache.$s counted" yes "$([ "${v:-0}" -gt 0 ] 2>/dev/null && echo yes || echo "no: ${v:-absent}")"
done
stop_tern

# ---- 11. Envoy's own CacheConfig -----------------------------------------------------
step "11. envoy-plain.yaml: Envoy's CacheConfig, unchanged: cached by the origin's Cache-Control, Age only"
start_tern envoy-plain.yaml
get "$base/plain?hdr=cache-control:max-age%3D300"
plain_id=$(request_id)
get "$base/plain?hdr=cache-control:max-age%3D300"
check "the second GET /plain came from the cache" "1 $plain_id" "$(reached /plain) $(request_id)"
check "with Age, without X-Cache-Status (as Envoy)" "yes -" \
    "$(case $(hdr age) in ''|*[!0-9]*) echo no ;; *) echo yes ;; esac) $(hdr x-cache-status)-"
get "$base/nottl"
get "$base/nottl"
check "no Cache-Control from the origin and no default_ttl: not cached" 2 "$(reached /nottl)"
stop_tern

finish
