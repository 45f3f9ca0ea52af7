#!/bin/sh
# Runs Envoy's route-mirror sandbox with tern: starts tern on envoy.yaml (the
# front listener on 127.0.0.1:10000, a public edge in front of it on
# 127.0.0.1:10001, the four services as extra listeners on
# 127.0.0.1:8081-8084, each logging its requests to tern's stdout), then walks
# the sandbox's steps with curl and checks the answers and the service logs:
# /service/1 reaches service1 and service1-mirror (Host: localhost-shadow:10000),
# /service/2 reaches service2-mirror only when x-mirror-cluster names it, and
# never when the header names no cluster or came through the public edge.
# Stops tern on exit. Exits 0 when every step worked, 1 otherwise.
#
#   TERN=path/to/tern examples/route-mirror/run.sh     (default: build/tern)
set -u
here=$(cd "$(dirname "$0")" && pwd)
tern=${TERN:-$here/../../build/tern}
front=http://127.0.0.1:10000

if [ ! -x "$tern" ]; then
    echo "run.sh: '$tern' is not an executable (build tern first, or set TERN)" >&2
    exit 2
fi
for p in 10000 10001 8081 8082 8083 8084 9901; do
    if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$p/" 2>/dev/null; then
        echo "run.sh: 127.0.0.1:$p is already in use; stop whatever listens there first" >&2
        exit 2
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/route-mirror.XXXXXX") || exit 2
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null
        n=0
        while kill -0 "$pid" 2>/dev/null && [ $n -lt 50 ]; do
            sleep 0.1
            n=$((n + 1))
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 2' HUP INT TERM

failed=0
ok() { echo "ok - $1"; }
bad() {
    echo "FAILED - $1"
    failed=$((failed + 1))
}

"$tern" --mode validate -c "$here/envoy.yaml" || exit 1

echo "starting tern -c $here/envoy.yaml"
"$tern" -c "$here/envoy.yaml" >"$tmp/stdout" 2>"$tmp/stderr" </dev/null &
pid=$!
n=0
until curl -s -o /dev/null --max-time 1 "$front/" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "run.sh: tern exited at start:" >&2
        cat "$tmp/stderr" >&2
        pid=
        exit 1
    fi
    n=$((n + 1))
    if [ $n -gt 100 ]; then
        echo "run.sh: tern does not listen on 127.0.0.1:10000 after 10 s" >&2
        cat "$tmp/stderr" >&2
        exit 1
    fi
    sleep 0.1
done
echo "tern listens on 127.0.0.1:10000"

# (curl goes to 127.0.0.1:10000 with "Host: localhost:10000", which is what
# http://localhost:10000 sends, whatever localhost resolves to first.)

# logged LINE: waits (up to 5 s) for LINE in tern's stdout (access logs may
# be flushed on a timer).
logged() {
    n=0
    while [ $n -lt 50 ]; do
        grep -qF -- "$1" "$tmp/stdout" && return 0
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}

# absent LINE: LINE is not in tern's stdout a second after the request's own
# lines were (a shadow would have been logged by then).
absent() {
    sleep 1
    ! grep -qF -- "$1" "$tmp/stdout"
}

# step NAME PATH WANT [HEADER [BASE]]
step() {
    name=$1 path=$2 want=$3 hdr=${4:-} url=${5:-$front}
    shown=http://localhost:${url##*:}
    echo
    if [ -n "$hdr" ]; then
        echo "\$ curl -s -H '$hdr' $shown$path"
        got=$(curl -s --max-time 10 -H 'Host: localhost:10000' -H "$hdr" "$url$path")
    else
        echo "\$ curl -s $shown$path"
        got=$(curl -s --max-time 10 -H 'Host: localhost:10000' "$url$path")
    fi
    echo "$got"
    if [ "$got" = "$want" ]; then
        ok "$name answers \"$want\""
    else
        bad "$name: expected \"$want\", got \"$got\""
    fi
}

step "service 1" /service/1 "Hello from behind Envoy (service 1)!"
if logged "[service1] GET /service/1 Host: localhost:10000"; then
    ok "tern's log shows [service1] GET /service/1 Host: localhost:10000"
else
    bad "no '[service1] GET /service/1 Host: localhost:10000' in tern's stdout"
fi

step "service 2" /service/2 "Hello from behind Envoy (service 2)!" 'x-mirror-cluster: service2-mirror'
if logged "[service2] GET /service/2 Host: localhost:10000"; then
    ok "tern's log shows [service2] GET /service/2 Host: localhost:10000"
else
    bad "no '[service2] GET /service/2 Host: localhost:10000' in tern's stdout"
fi

if logged "[service1-mirror] GET /service/1 Host: localhost-shadow:10000"; then
    ok "mirror: [service1-mirror] saw GET /service/1 Host: localhost-shadow:10000"
else
    bad "mirror: no '[service1-mirror] GET /service/1 Host: localhost-shadow:10000' in tern's stdout"
fi
if logged "[service2-mirror] GET /service/2 Host: localhost-shadow:10000"; then
    ok "mirror: [service2-mirror] saw GET /service/2 Host: localhost-shadow:10000 (x-mirror-cluster)"
else
    bad "mirror: service2-mirror did not see /service/2 although x-mirror-cluster named it"
fi

# unmirrored NAME PATH [HEADER [BASE]]: service 2 answers and logs PATH, its
# mirror does not.
unmirrored() {
    step "$1" "$2" "Hello from behind Envoy (service 2)!" "${3:-}" "${4:-}"
    if logged "[service2] GET $2 Host: localhost:10000"; then
        ok "tern's log shows [service2] GET $2"
    else
        bad "no '[service2] GET $2 Host: localhost:10000' in tern's stdout"
    fi
    if absent "[service2-mirror] GET $2 "; then
        ok "mirror: service2-mirror did not see $2"
    else
        bad "mirror: service2-mirror saw $2"
    fi
}
unmirrored "service 2 without x-mirror-cluster" "/service/2?case=no-header"
unmirrored "service 2 naming no cluster" "/service/2?case=unknown" 'x-mirror-cluster: no-such-cluster'
unmirrored "service 2 through the public edge" "/service/2?case=edge" 'x-mirror-cluster: service2-mirror' \
    http://127.0.0.1:10001

stats=$(curl -s --max-time 5 http://127.0.0.1:9901/stats)
echo
echo "\$ curl -s http://localhost:9901/stats  (the mirror's)"
echo "$stats" | grep -E '^http\.ingress_http\.mirror\.|^cluster\.service[12]-mirror\.upstream_rq_(total|2xx):' | sed 's/^/  /'
case $stats in
*"http.ingress_http.mirror.requests: 2"*) ok "stats: http.ingress_http.mirror.requests is 2" ;;
*) bad "stats: http.ingress_http.mirror.requests is not 2" ;;
esac
case $stats in
*"http.ingress_http.mirror.no_cluster: 3"*) ok "stats: http.ingress_http.mirror.no_cluster is 3 (no header, unknown, stripped at the edge)" ;;
*) bad "stats: http.ingress_http.mirror.no_cluster is not 3" ;;
esac

echo
echo "tern's stdout (the services' access logs):"
sed 's/^/  /' "$tmp/stdout"
echo
if [ "$failed" -gt 0 ]; then
    echo "route-mirror sandbox: $failed step(s) failed"
    echo "tern's stderr:"
    tail -n 20 "$tmp/stderr" | sed 's/^/  /'
    exit 1
fi
echo "route-mirror sandbox: every step worked"
