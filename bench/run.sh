#!/bin/bash
# bench/run.sh - load tern, nginx, HAProxy and Varnish the same way with wrk and
# compare throughput, latency and CPU time per request. See bench/README.md.
#
#   bench/run.sh [--install] [--only tern,nginx,haproxy,tern_mirror,nginx_mirror,
#                 tern_cache,nginx_cache,varnish] [--help]
#
# Environment (defaults in brackets):
#   TERN         tern binary [REPO/build/tern]
#   DURATION     wrk run per proxy [10s]     WARMUP   wrk warm-up [2s]
#   CONNECTIONS  wrk connections [50]        THREADS  wrk threads [1]
#   REQ_PATH     request path [/]
#   CACHE_PATH   the cache rows' request path [/cached]
#   PROXY_PORT   proxies' listen port [18000]  ORIGIN_PORT  origin [18001]
#   MIRROR_PORT  the mirror rows' second origin [18002]
#   ORIGIN_WORKERS  nginx origin workers [2]
#   PROXY_CPU    CPU list the proxy is pinned to [0]
#   LOAD_CPU     CPU list wrk and the origin are pinned to [1-(ncpu-1)]
#   NO_PIN=1     do not use taskset
#   KEEP=1       keep the work directory (configs, logs, wrk output)
#   RESULTS=FILE also write the table as tab-separated values to FILE
#
# Each proxy runs with ONE worker (tern --concurrency 1, nginx
# worker_processes 1, HAProxy nbthread 1) and keeps connections to the origin
# alive. The origin is a separate nginx answering `return 200 "hello"`.
# The mirror rows (tern_mirror, nginx_mirror) also copy every request to a
# second origin port of that nginx (tern: request_mirror_policies; nginx: its
# `mirror` directive) and drop the copy's answer.
# The cache rows (tern_cache, nginx_cache, varnish) request CACHE_PATH, which
# the origin answers with Cache-Control: public, max-age=3600, through a
# caching proxy (tern: the cache filter; nginx: proxy_cache; Varnish: varnishd
# with its built-in VCL), so that every measured request is a cache hit; each
# is checked to be one before measuring, and the origin's requests for
# CACHE_PATH are counted around the measured run (expected: none).

set -u

REPO=$(cd "$(dirname "$0")/.." && pwd)
TERN=${TERN:-$REPO/build/tern}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-1}
REQ_PATH=${REQ_PATH:-/}
CACHE_PATH=${CACHE_PATH:-/cached}
PROXY_PORT=${PROXY_PORT:-18000}
ORIGIN_PORT=${ORIGIN_PORT:-18001}
MIRROR_PORT=${MIRROR_PORT:-18002}
ORIGIN_WORKERS=${ORIGIN_WORKERS:-2}
ONLY=tern,nginx,haproxy,tern_mirror,nginx_mirror,tern_cache,nginx_cache,varnish
ROWS=(tern nginx haproxy tern_mirror nginx_mirror tern_cache nginx_cache varnish)

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
}

while [ $# -gt 0 ]; do
    case $1 in
    --install)
        if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
        $SUDO apt-get install -y wrk nginx haproxy varnish || {
            $SUDO apt-get update && $SUDO apt-get install -y wrk nginx haproxy varnish
        } || exit 1
        ;;
    --only) ONLY=$2; shift ;;
    --only=*) ONLY=${1#--only=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "bench: $*" >&2; }

# ---- tools -------------------------------------------------------------------

# nginx lives in /usr/sbin, which a non-root PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
WRK=$(command -v wrk) || { say "wrk is missing (bench/run.sh --install, or apt-get install wrk)"; exit 1; }
NGINX=$(command -v nginx) || NGINX=
HAPROXY=$(command -v haproxy) || HAPROXY=
VARNISHD=$(command -v varnishd) || VARNISHD=
if [ -z "$NGINX" ]; then
    say "nginx is missing: it is also the origin (bench/run.sh --install, or apt-get install nginx)"
    exit 1
fi

NCPU=$(nproc 2>/dev/null || echo 1)
PROXY_CPU=${PROXY_CPU:-0}
if [ "$NCPU" -ge 3 ]; then LOAD_CPU=${LOAD_CPU:-1-$((NCPU - 1))}; else LOAD_CPU=${LOAD_CPU:-1}; fi
PIN_PROXY=() PIN_LOAD=()
if [ "${NO_PIN:-0}" != 1 ] && [ "$NCPU" -ge 2 ] && command -v taskset >/dev/null; then
    PIN_PROXY=(taskset -c "$PROXY_CPU")
    PIN_LOAD=(taskset -c "$LOAD_CPU")
    PIN_NOTE="proxy on cpu $PROXY_CPU, wrk and origin on cpu $LOAD_CPU"
else
    PIN_NOTE="not pinned (${NCPU} cpu, NO_PIN=${NO_PIN:-0})"
fi

CLK_TCK=$(getconf CLK_TCK)

# ---- work dir and cleanup ----------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-bench.XXXXXX") || exit 1
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    PIDS=()
    if [ "${KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# wait_port PORT PID [SECONDS]: 0 once 127.0.0.1:PORT accepts, 1 when PID died
# or the time ran out.
wait_port() {
    local port=$1 pid=$2 tries=$((${3:-10} * 20))
    while [ "$tries" -gt 0 ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
        tries=$((tries - 1))
    done
    return 1
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# stop PID: TERM, wait up to 2 s, KILL.
stop() {
    local p=$1 i
    kill -TERM "$p" 2>/dev/null
    for i in $(seq 20); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    local keep=()
    for i in "${PIDS[@]}"; do [ "$i" = "$p" ] || keep+=("$i"); done
    PIDS=("${keep[@]}")
}

# cpu_ticks PID...: utime+stime (clock ticks) summed over the processes.
cpu_ticks() {
    local total=0 p f
    for p in "$@"; do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        f=${f##*) }   # drop "pid (comm) ", comm may hold spaces
        set -- $f     # now $1 is field 3 (state); utime is field 14 -> $12
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

# user_ticks PID...: utime alone (the rest of the CPU is the kernel's).
user_ticks() {
    local total=0 p f
    for p in "$@"; do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        f=${f##*) }
        set -- $f
        total=$((total + ${12}))
    done
    echo "$total"
}

# The process and its children (nginx: master + worker).
proc_tree() {
    echo "$1" $(pgrep -P "$1" 2>/dev/null)
}

# ---- origin: nginx, return 200 "hello" ---------------------------------------

for port in "$PROXY_PORT" "$ORIGIN_PORT" "$MIRROR_PORT"; do
    port_free "$port" || { say "127.0.0.1:$port is in use (set PROXY_PORT / ORIGIN_PORT)"; exit 1; }
done

# nginx_conf DIR WORKERS BODY: a foreground nginx rooted in DIR.
nginx_conf() {
    local dir=$1 workers=$2 body=$3
    mkdir -p "$dir/logs" "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $workers;
worker_rlimit_nofile 65536;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events {
    worker_connections 16384;
    multi_accept on;
}
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
$body
}
EOF
}

case $CACHE_PATH in
/*[!A-Za-z0-9_./-]*|/) say "CACHE_PATH must be a path other than / of letters, digits and _ . / - ('$CACHE_PATH')"; exit 2 ;;
/*) ;;
*) say "CACHE_PATH must start with / ('$CACHE_PATH')"; exit 2 ;;
esac
# CACHE_PATH is the cache rows' own location: cacheable for an hour, and
# logged, so that run.sh can count the requests that reach the origin while a
# cache row is measured (the other rows' path stays unlogged and uncacheable).
ORIGIN_CACHE_LOG=$WORK/origin/logs/cached.log
nginx_conf "$WORK/origin" "$ORIGIN_WORKERS" "    server {
        listen 127.0.0.1:$ORIGIN_PORT reuseport;
        listen 127.0.0.1:$MIRROR_PORT reuseport;
        default_type text/plain;
        location / { return 200 \"hello\"; }
        location = $CACHE_PATH {
            access_log $ORIGIN_CACHE_LOG;
            add_header Cache-Control \"public, max-age=3600\";
            return 200 \"hello\";
        }
    }"
"${PIN_LOAD[@]}" "$NGINX" -e "$WORK/origin/logs/error.log" -p "$WORK/origin" -c "$WORK/origin/nginx.conf" \
    >"$WORK/origin/stdout" 2>&1 &
ORIGIN_PID=$!
PIDS+=("$ORIGIN_PID")
if ! wait_port "$ORIGIN_PORT" "$ORIGIN_PID"; then
    say "the nginx origin did not start:"
    cat "$WORK/origin/stdout" "$WORK/origin/logs/error.log" >&2
    exit 1
fi
if [ "$(curl -s --max-time 5 "http://127.0.0.1:$ORIGIN_PORT$REQ_PATH")" != hello ]; then
    say "the nginx origin does not answer 'hello' on $REQ_PATH"
    exit 1
fi
case $(curl -s --max-time 5 -D - -o /dev/null "http://127.0.0.1:$ORIGIN_PORT$CACHE_PATH" | tr -d '\r') in
*"Cache-Control: public, max-age=3600"*) ;;
*) say "the nginx origin does not answer $CACHE_PATH with Cache-Control: public, max-age=3600"; exit 1 ;;
esac

# origin_cache_reqs: requests for CACHE_PATH the origin has answered so far.
origin_cache_reqs() {
    if [ -f "$ORIGIN_CACHE_LOG" ]; then wc -l <"$ORIGIN_CACHE_LOG" | tr -d ' '; else echo 0; fi
}

# ---- proxies -----------------------------------------------------------------

# Each start_X sets PROXY_PID and returns non-zero (after saying why) on
# failure; CPU_PIDS lists the processes whose CPU time is counted.

start_tern() {
    local yaml=${1:-tern}
    if [ ! -x "$TERN" ]; then
        say "tern: skipped, $TERN is not an executable (build it: cmake -S . -B build && cmake --build build, or set TERN)"
        return 1
    fi
    sed -e "s/port_value: 18000\$/port_value: $PROXY_PORT/" \
        -e "s/port_value: 18001\$/port_value: $ORIGIN_PORT/" \
        -e "s/port_value: 18002\$/port_value: $MIRROR_PORT/" \
        "$REPO/bench/$yaml.yaml" >"$WORK/tern.yaml"
    "${PIN_PROXY[@]}" "$TERN" -c "$WORK/tern.yaml" --concurrency 1 >"$WORK/tern.out" 2>"$WORK/tern.log" </dev/null &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    if ! wait_port "$PROXY_PORT" "$PROXY_PID"; then
        if kill -0 "$PROXY_PID" 2>/dev/null; then
            say "tern: did not listen on 127.0.0.1:$PROXY_PORT within 10 s; its log:"
        else
            wait "$PROXY_PID"
            say "tern: exited with status $? before listening on 127.0.0.1:$PROXY_PORT; its log:"
        fi
        tail -n 20 "$WORK/tern.log" "$WORK/tern.out" 2>/dev/null | sed 's/^/    /' >&2
        stop "$PROXY_PID"
        return 1
    fi
    CPU_PIDS=("$PROXY_PID")
}

# start_nginx [mirror|cache]: with "mirror", every request is also copied to
# the second origin by nginx's mirror directive (a subrequest whose answer is
# dropped), as tern_mirror does with request_mirror_policies. With "cache",
# responses are cached by proxy_cache (256 MiB, freshness from the origin's
# Cache-Control, as tern_cache and Varnish take it) and X-Cache-Status tells a
# hit from a miss.
start_nginx() {
    local mirror_loc= mirror_up= cache_path= cache_loc=
    if [ "${1:-}" = cache ]; then
        # The worker (nobody, when nginx starts as root) opens the cache files
        # by path: it must be able to pass through the work directory.
        chmod 711 "$WORK"
        cache_path="    proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=bench:10m max_size=256m inactive=1h use_temp_path=off;"
        cache_loc="proxy_cache bench;
            add_header X-Cache-Status \$upstream_cache_status;"
    fi
    if [ "${1:-}" = mirror ]; then
        mirror_up="    upstream mirror {
        server 127.0.0.1:$MIRROR_PORT;
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }"
        mirror_loc="        location = /__mirror {
            internal;
            proxy_pass http://mirror;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }"
    fi
    nginx_conf "$WORK/nginx" 1 "    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
$mirror_up
$cache_path
    server {
        listen 127.0.0.1:$PROXY_PORT;
        location / {
            ${mirror_up:+mirror /__mirror;}
            $cache_loc
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering on;
        }
$mirror_loc
    }"
    "${PIN_PROXY[@]}" "$NGINX" -e "$WORK/nginx/logs/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
        >"$WORK/nginx/stdout" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    if ! wait_port "$PROXY_PORT" "$PROXY_PID"; then
        say "nginx: did not start:"
        cat "$WORK/nginx/stdout" "$WORK/nginx/logs/error.log" >&2
        stop "$PROXY_PID"
        return 1
    fi
    read -r -a CPU_PIDS <<<"$(proc_tree "$PROXY_PID")"
}

start_tern_mirror() {
    start_tern tern-mirror
}

start_nginx_mirror() {
    start_nginx mirror
}

start_tern_cache() {
    start_tern tern-cache
}

start_nginx_cache() {
    start_nginx cache
}

# varnishd in the foreground (-F) with the built-in VCL in front of the origin
# (-b), 256 MiB of malloc storage, its state in the work directory. Run as
# root, varnishd's default jail (unix) drops the worker process to the users
# the Debian package creates (varnish, vcache); without them it is run with
# -j none. Run as another user, varnishd picks no jail by itself. Its CPU time
# is the manager's and the child's (the child serves the requests).
start_varnish() {
    if [ -z "$VARNISHD" ]; then
        say "varnish: skipped, varnishd is not installed (bench/run.sh --install, or apt-get install varnish)"
        return 1
    fi
    local jail=()
    if [ "$(id -u)" -eq 0 ] && ! { id varnish && id vcache; } >/dev/null 2>&1; then
        jail=(-j none)
    fi
    "${PIN_PROXY[@]}" "$VARNISHD" -F "${jail[@]}" -a "127.0.0.1:$PROXY_PORT" -b "127.0.0.1:$ORIGIN_PORT" \
        -s malloc,256m -n "$WORK/varnish" >"$WORK/varnish.log" 2>&1 </dev/null &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    if ! wait_port "$PROXY_PORT" "$PROXY_PID" 30; then
        say "varnish: did not start:"
        tail -n 20 "$WORK/varnish.log" | sed 's/^/    /' >&2
        stop "$PROXY_PID"
        return 1
    fi
    read -r -a CPU_PIDS <<<"$(proc_tree "$PROXY_PID")"
}

start_haproxy() {
    if [ -z "$HAPROXY" ]; then
        say "haproxy: skipped, not installed (bench/run.sh --install)"
        return 1
    fi
    cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend bench
    bind 127.0.0.1:$PROXY_PORT
    default_backend origin
backend origin
    server origin 127.0.0.1:$ORIGIN_PORT
EOF
    "${PIN_PROXY[@]}" "$HAPROXY" -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 </dev/null &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    if ! wait_port "$PROXY_PORT" "$PROXY_PID"; then
        say "haproxy: did not start:"
        cat "$WORK/haproxy.log" >&2
        stop "$PROXY_PID"
        return 1
    fi
    read -r -a CPU_PIDS <<<"$(proc_tree "$PROXY_PID")"
}

# to_ms VALUE: wrk's "412.00us" / "1.20ms" / "1.01s" -> milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) ; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

# seconds DURATION: "10s" / "1m" / "10" -> seconds.
seconds() {
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /m$/) n *= 60; else if (v ~ /h$/) n *= 3600; print n }'
}

# run_wrk OUT ARGS...: wrk in the background, so that a signal reaches the
# trap at once rather than after the run.
run_wrk() {
    local out=$1
    shift
    "${PIN_LOAD[@]}" "$WRK" "$@" >"$out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait "$pid"
    stop "$pid"
}

declare -A RPS P50 P99 CPUS CPUREQ CPUPCT USERREQ ERRS ORIGIN_REQS
RAN=()

is_cache_row() {
    case $1 in *_cache|varnish) return 0 ;; esac
    return 1
}

# header NAME < HEADERS: the first value of header NAME (any case).
header() {
    awk -v n="$1" 'BEGIN { n = tolower(n) }
        { sub(/\r$/, ""); i = index($0, ":")
          if (i > 1 && tolower(substr($0, 1, i - 1)) == n) { v = substr($0, i + 1); sub(/^[ \t]+/, "", v); print v; exit } }'
}

# check_hit NAME URL: a second request for URL (the first filled the cache)
# must come from the cache, as the proxy's own header says.
check_hit() {
    local name=$1 url=$2 size got hit=no
    size=$(curl -s --max-time 5 -D "$WORK/$name.hit.headers" -o "$WORK/$name.hit.body" -w '%{size_header}' "$url")
    case $name in
    tern_cache)
        got="X-Cache-Status: $(header x-cache-status <"$WORK/$name.hit.headers")"
        [ "$got" = "X-Cache-Status: Hit" ] && hit=yes ;;
    nginx_cache)
        got="X-Cache-Status: $(header x-cache-status <"$WORK/$name.hit.headers")"
        [ "$got" = "X-Cache-Status: HIT" ] && hit=yes ;;
    varnish)
        # a hit names two transactions: this request's and the one that
        # fetched the object
        got="X-Varnish: $(header x-varnish <"$WORK/$name.hit.headers")"
        [[ $got =~ ^X-Varnish:\ [0-9]+\ [0-9]+$ ]] && hit=yes ;;
    esac
    if [ "$hit" != yes ] || [ "$(cat "$WORK/$name.hit.body")" != hello ]; then
        say "$name: not benchmarked, the second request for $CACHE_PATH was not a cache hit ($got; body '$(head -c 200 "$WORK/$name.hit.body")'); its headers:"
        sed 's/^/    /' "$WORK/$name.hit.headers" >&2
        return 1
    fi
    say "$name: the second request is a cache hit ($got; response headers $size bytes)"
}

bench_one() {
    local name=$1 out path=$REQ_PATH
    is_cache_row "$name" && path=$CACHE_PATH
    say "$name: starting"
    if ! "start_$name"; then
        return
    fi
    local body url="http://127.0.0.1:$PROXY_PORT$path"
    body=$(curl -s --max-time 5 "$url")
    if [ "$body" != hello ]; then
        say "$name: not benchmarked, a request through it returned '${body:0:200}' instead of 'hello'"
        case $name in
        tern*) tail -n 20 "$WORK/tern.log" 2>/dev/null | sed 's/^/    /' >&2 ;;
        varnish) tail -n 20 "$WORK/varnish.log" 2>/dev/null | sed 's/^/    /' >&2 ;;
        esac
        stop "$PROXY_PID"
        return
    fi
    if is_cache_row "$name" && ! check_hit "$name" "$url"; then
        stop "$PROXY_PID"
        return
    fi
    if [ "$(seconds "$WARMUP")" != 0 ]; then
        run_wrk "$WORK/$name.warmup" -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$url"
    fi
    # The CPU sample covers exactly the wrk run (process list re-read: nginx
    # may have replaced a worker).
    read -r -a CPU_PIDS <<<"$(proc_tree "$PROXY_PID")"
    local t0 t1 u0 u1 o0 o1
    o0=$(origin_cache_reqs)
    t0=$(cpu_ticks "${CPU_PIDS[@]}")
    u0=$(user_ticks "${CPU_PIDS[@]}")
    run_wrk "$WORK/$name.wrk" -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url"
    t1=$(cpu_ticks "${CPU_PIDS[@]}")
    u1=$(user_ticks "${CPU_PIDS[@]}")
    o1=$(origin_cache_reqs)
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then
        say "$name: died during the run"
        case $name in
        tern*) tail -n 20 "$WORK/tern.log" | sed 's/^/    /' >&2 ;;
        varnish) tail -n 20 "$WORK/varnish.log" | sed 's/^/    /' >&2 ;;
        esac
    fi
    if is_cache_row "$name"; then
        ORIGIN_REQS[$name]=$((o1 - o0))
        [ "$((o1 - o0))" -eq 0 ] ||
            say "$name: WARNING: $((o1 - o0)) requests for $CACHE_PATH reached the origin during the measured run: not all were cache hits"
    fi
    stop "$PROXY_PID"
    sleep 0.5

    out=$WORK/$name.wrk
    local reqs rps p50 p99 errs non2xx
    reqs=$(awk '/requests in/ { print $1 }' "$out")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(awk '$1 == "50%" { print $2 }' "$out")
    p99=$(awk '$1 == "99%" { print $2 }' "$out")
    errs=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
    if [ -z "$reqs" ] || [ -z "$rps" ] || [ "$reqs" = 0 ]; then
        say "$name: wrk produced no result:"
        sed 's/^/    /' "$out" >&2
        return
    fi
    errs=$(( ${errs:-0} + ${non2xx:-0} ))
    RAN+=("$name")
    RPS[$name]=$rps
    P50[$name]=$(to_ms "$p50")
    P99[$name]=$(to_ms "$p99")
    ERRS[$name]=$errs
    CPUS[$name]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
    CPUREQ[$name]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    USERREQ[$name]=$(awk -v t=$((u1 - u0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    CPUPCT[$name]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v d="$(seconds "$DURATION")" 'BEGIN { printf "%.0f", t / hz / d * 100 }')
    say "$name: $rps req/s, ${CPUREQ[$name]} cpu us/req"
}

say "wrk -t$THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP) on http://127.0.0.1:$PROXY_PORT$REQ_PATH (cache rows: $CACHE_PATH); origin: nginx x$ORIGIN_WORKERS on :$ORIGIN_PORT; $PIN_NOTE"
for name in ${ONLY//,/ }; do
    case " ${ROWS[*]} " in *" $name "*) ;; *) say "--only: no row '$name' (rows: ${ROWS[*]})" ;; esac
done
for name in "${ROWS[@]}"; do
    case ",$ONLY," in *",$name,"*) bench_one "$name" ;; esac
done

# ---- report ------------------------------------------------------------------

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, one proxy worker, upstream keep-alive; $PIN_NOTE"
printf '%-13s %12s %10s %10s %9s %6s %13s %13s %8s\n' proxy "req/s" "p50 ms" "p99 ms" "cpu s" "cpu%" "cpu us/req" \
    "user us/req" errors
for name in "${RAN[@]}"; do
    printf '%-13s %12s %10s %10s %9s %6s %13s %13s %8s\n' "$name" "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}" \
        "${CPUS[$name]}" "${CPUPCT[$name]}" "${CPUREQ[$name]}" "${USERREQ[$name]}" "${ERRS[$name]}"
done
if [ -n "${RESULTS:-}" ]; then
    {
        printf 'proxy\treq_per_s\tp50_ms\tp99_ms\tcpu_s\tcpu_pct\tcpu_us_per_req\terrors\n'
        for name in "${RAN[@]}"; do
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}" \
                "${CPUS[$name]}" "${CPUPCT[$name]}" "${CPUREQ[$name]}" "${ERRS[$name]}"
        done
    } >"$RESULTS"
fi
if [ ${#RAN[@]} -eq 0 ]; then
    echo "(nothing ran)"
    exit 1
fi
if [ -n "${CPUREQ[tern]:-}" ]; then
    for peer in nginx haproxy; do
        [ -n "${CPUREQ[$peer]:-}" ] || continue
        awk -v a="${CPUREQ[tern]}" -v b="${CPUREQ[$peer]}" -v p="$peer" -v ra="${RPS[tern]}" -v rb="${RPS[$peer]}" \
            'BEGIN { printf "tern/%-8s cpu us/req %.2f   req/s %.2f\n", p, (b > 0 ? a / b : 0), (rb > 0 ? ra / rb : 0) }'
    done
else
    case ",$ONLY," in *",tern,"*) echo "tern: no result (see the messages above), no ratios" ;; esac
fi
if [ -n "${CPUREQ[tern_mirror]:-}" ] && [ -n "${CPUREQ[nginx_mirror]:-}" ]; then
    awk -v a="${CPUREQ[tern_mirror]}" -v b="${CPUREQ[nginx_mirror]}" -v ra="${RPS[tern_mirror]}" -v rb="${RPS[nginx_mirror]}" \
        'BEGIN { printf "tern_mirror/nginx_mirror cpu us/req %.2f   req/s %.2f\n", (b > 0 ? a / b : 0), (rb > 0 ? ra / rb : 0) }'
fi
if [ -n "${CPUREQ[tern_cache]:-}" ]; then
    for peer in nginx_cache varnish; do
        [ -n "${CPUREQ[$peer]:-}" ] || continue
        awk -v a="${CPUREQ[tern_cache]}" -v b="${CPUREQ[$peer]}" -v p="$peer" -v ra="${RPS[tern_cache]}" -v rb="${RPS[$peer]}" \
            'BEGIN { printf "tern_cache/%-11s cpu us/req %.2f   req/s %.2f\n", p, (b > 0 ? a / b : 0), (rb > 0 ? ra / rb : 0) }'
    done
fi
if [ -n "${ORIGIN_REQS[*]+set}" ]; then  # an empty array reads as unset under set -u
    line="origin requests for $CACHE_PATH during the measured run (0: all hits):"
    for name in "${RAN[@]}"; do
        [ -n "${ORIGIN_REQS[$name]:-}" ] && line="$line $name ${ORIGIN_REQS[$name]}"
    done
    echo "$line"
fi
exit 0
