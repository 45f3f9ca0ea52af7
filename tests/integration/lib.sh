# lib.sh - helpers for tern's integration tests (POSIX sh; source it).
#
#   . "$(dirname "$0")/lib.sh"
#   tn_setup "$@"                 # [TERN [SOURCE_DIR]], like validate.sh
#   o=$(free_port); f=$(free_port)
#   start_origin web "$o"
#   sed "s/@ORIGIN@/$o/; s/@FRONT@/$f/" "$TN_SRC/tests/integration/x.yaml" >"$TN_TMP/x.yaml"
#   TN_TERN_PORTS=$f start_tern "$TN_TMP/x.yaml" --concurrency 2
#   check "GET / status" 200 "$(http_status "http://127.0.0.1:$f/")"
#   tn_summary                     # "N passed, M failed"; exits 1 on failures
#
# Output follows validate.sh: "ok - NAME" or "not ok - NAME: WHY" per check,
# then "N passed, M failed" (and "K skipped" when some were).
#
# Variables (set by tn_setup unless given in the environment):
#   TERN        the tern binary (tn_setup's first argument wins)
#   TN_SRC      the source tree (second argument, else two levels above the
#               directory of the running script)
#   TN_PYTHON   Debian's python (default /usr/bin/python3)
#   TN_TMP      a fresh directory under ${TMPDIR:-/tmp}; removed at exit
#               unless TN_KEEP=1 (it is kept, and named, when a check failed)
#   TN_TERN_PID the pid of the tern started last
#   TN_TIMEOUT  seconds to wait for ports (default 10)
#
# Functions:
#   tn_setup [TERN [SRC]]          temp dir, counters, cleanup trap
#   free_port [N]                  prints N (default 1) distinct free ports
#   wait_port PORT [TIMEOUT [PID]] waits until 127.0.0.1:PORT accepts; fails
#                                  early when PID (if given) has exited
#   wait_port_closed PORT [TIMEOUT]
#   start_origin NAME PORT [ARGS]  starts tests/origin/origin.py --name NAME
#                                  --port PORT, logging to $(origin_log NAME)
#   origin_log NAME                path of that origin's request log
#   origin_count PORT              requests the origin counted (/__count)
#   origin_reset PORT              zeroes them (/__reset)
#   start_tern CONFIG [ARGS]       "$TERN" -c CONFIG ARGS in the background,
#                                  stderr in $TN_TMP/tern.log, stdout in
#                                  $TN_TMP/tern.out; waits for each port in
#                                  $TN_TERN_PORTS (or "--wait P1,P2" given
#                                  before CONFIG); on failure shows the log
#   stop_tern [SIGNAL]             stops the last tern (TERM by default) and
#                                  waits; its exit status is left in $TN_RC
#   tn_spawn LOGBASE CMD [ARGS]    any background process, killed at exit;
#                                  pid in $TN_PID
#   tn_kill PID [SIGNAL]           signal a started process and reap it
#   check NAME EXPECTED ACTUAL     equality
#   check_contains NAME NEEDLE HAYSTACK      fixed-string containment
#   check_not_contains NAME NEEDLE HAYSTACK
#   check_match NAME REGEX ACTUAL  grep -E
#   tn_pass NAME | tn_fail NAME WHY | tn_skip NAME WHY
#   tn_curl ARGS                   curl -sS with a timeout (TN_CURL_TIMEOUT, 10)
#   http_status URL [CURL ARGS]    prints the status code ("000" on failure)
#   json_get KEY.PATH              reads JSON on stdin, prints the value
#                                  (lists/objects as JSON; "" when missing)
#   tn_show_log [FILE]             prints the tail of tern.log (or FILE)
#   tn_summary                     prints the counts and exits

TN_PYTHON=${TN_PYTHON:-/usr/bin/python3}
TN_TIMEOUT=${TN_TIMEOUT:-10}
TN_CURL_TIMEOUT=${TN_CURL_TIMEOUT:-10}
tn_passed=0
tn_failed=0
tn_skipped=0
TN_PIDS=
TN_TMP=
TN_TERN_PID=

tn_setup() {
    if [ $# -ge 1 ] && [ -n "$1" ]; then
        TERN=$1
    fi
    if [ $# -ge 2 ] && [ -n "$2" ]; then
        TN_SRC=$2
    fi
    if [ -z "${TN_SRC:-}" ]; then
        TN_SRC=$(cd "$(dirname "$0")/../.." && pwd)
    fi
    TN_ORIGIN=${TN_ORIGIN:-$TN_SRC/tests/origin/origin.py}
    TN_TMP=$(mktemp -d "${TMPDIR:-/tmp}/tern-it.XXXXXX") || exit 2
    trap tn_cleanup EXIT
    trap 'exit 2' HUP INT TERM
    export TERN TN_SRC TN_TMP
}

tn_cleanup() {
    tn_rc=$?
    for p in $TN_PIDS; do
        kill -TERM "$p" 2>/dev/null
    done
    # Give them a moment to go, then insist.
    tn_n=0
    while [ $tn_n -lt 20 ]; do
        tn_alive=
        for p in $TN_PIDS; do
            if kill -0 "$p" 2>/dev/null && ! tn_is_zombie "$p"; then
                tn_alive=1
            fi
        done
        [ -z "$tn_alive" ] && break
        sleep 0.1
        tn_n=$((tn_n + 1))
    done
    for p in $TN_PIDS; do
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    TN_PIDS=
    if [ -n "$TN_TMP" ] && [ -d "$TN_TMP" ]; then
        if [ "${TN_KEEP:-0}" = 1 ] || [ "$tn_failed" -gt 0 ]; then
            echo "# kept $TN_TMP" >&2
        else
            rm -rf "$TN_TMP"
        fi
    fi
    return $tn_rc
}

tn_is_zombie() {
    [ -r "/proc/$1/stat" ] || return 1
    case $(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) in
    Z|X) return 0 ;;
    esac
    return 1
}

# ---- results ---------------------------------------------------------------

tn_pass() {
    tn_passed=$((tn_passed + 1))
    echo "ok - $1"
}

tn_fail() {
    tn_failed=$((tn_failed + 1))
    echo "not ok - $1: $2"
}

tn_skip() {
    tn_skipped=$((tn_skipped + 1))
    echo "ok - $1 # SKIP $2"
}

check() {
    if [ "$2" = "$3" ]; then
        tn_pass "$1"
    else
        tn_fail "$1" "expected '$2', got '$3'"
    fi
}

check_contains() {
    case $3 in
    *"$2"*) tn_pass "$1" ;;
    *) tn_fail "$1" "'$2' not found in '$(printf '%s' "$3" | head -c 400)'" ;;
    esac
}

check_not_contains() {
    case $3 in
    *"$2"*) tn_fail "$1" "'$2' unexpectedly found in '$(printf '%s' "$3" | head -c 400)'" ;;
    *) tn_pass "$1" ;;
    esac
}

check_match() {
    if printf '%s\n' "$3" | grep -Eq -- "$2"; then
        tn_pass "$1"
    else
        tn_fail "$1" "/$2/ does not match '$(printf '%s' "$3" | head -c 400)'"
    fi
}

tn_summary() {
    echo "$tn_passed passed, $tn_failed failed"
    if [ "$tn_skipped" -gt 0 ]; then
        echo "$tn_skipped skipped"
    fi
    [ "$tn_failed" -eq 0 ] && exit 0
    exit 1
}

# ---- ports -----------------------------------------------------------------

# free_port [N]: N ports nothing uses, picked at random below the kernel's
# ephemeral range (32768-60999 here), so an outgoing connection of another
# test (or its TIME_WAIT) never holds a port tern is about to listen on.
free_port() {
    "$TN_PYTHON" - "${1:-1}" <<'EOF'
import random, socket, sys
lo, hi = 20000, 32000
try:
    first = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    if first <= lo + 1000:
        lo, hi = 0, 0
    else:
        hi = min(hi, first - 1)
except (OSError, ValueError, IndexError):
    pass
socks, ports = [], []
for _ in range(int(sys.argv[1])):
    for _attempt in range(200):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", random.randint(lo, hi) if hi else 0))
        except OSError:
            s.close()
            continue
        break
    else:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
    socks.append(s)
    ports.append(s.getsockname()[1])
print(" ".join(str(p) for p in ports))
EOF
}

wait_port() {
    "$TN_PYTHON" - "$1" "${2:-$TN_TIMEOUT}" "${3:-0}" <<'EOF'
import socket, sys, time
port, timeout, pid = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
def dead(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True
end = time.monotonic() + timeout
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        sys.exit(0)
    except OSError:
        pass
    if pid and dead(pid):
        sys.exit(3)
    if time.monotonic() >= end:
        sys.exit(1)
    time.sleep(0.02)
EOF
}

wait_port_closed() {
    "$TN_PYTHON" - "$1" "${2:-$TN_TIMEOUT}" <<'EOF'
import socket, sys, time
port, timeout = int(sys.argv[1]), float(sys.argv[2])
end = time.monotonic() + timeout
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        sys.exit(0)
    if time.monotonic() >= end:
        sys.exit(1)
    time.sleep(0.02)
EOF
}

# ---- processes -------------------------------------------------------------

# tn_spawn LOGBASE CMD [ARGS...]: stdout to LOGBASE.out, stderr to LOGBASE.err.
tn_spawn() {
    tn_base=$1
    shift
    "$@" >"$tn_base.out" 2>"$tn_base.err" </dev/null &
    TN_PID=$!
    TN_PIDS="$TN_PIDS $TN_PID"
}

tn_kill() {
    kill "-${2:-TERM}" "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    TN_RC=$?
    tn_new=
    for p in $TN_PIDS; do
        [ "$p" = "$1" ] || tn_new="$tn_new $p"
    done
    TN_PIDS=$tn_new
    return 0
}

origin_log() {
    echo "$TN_TMP/origin-$1.log"
}

start_origin() {
    tn_name=$1 tn_port=$2
    shift 2
    tn_spawn "$TN_TMP/origin-$tn_name" "$TN_PYTHON" "$TN_ORIGIN" \
        --name "$tn_name" --port "$tn_port" --log "$(origin_log "$tn_name")" "$@"
    if ! wait_port "$tn_port" "$TN_TIMEOUT" "$TN_PID"; then
        echo "# origin $tn_name did not listen on 127.0.0.1:$tn_port" >&2
        sed 's/^/# /' "$TN_TMP/origin-$tn_name.err" >&2
        return 1
    fi
    return 0
}

origin_count() {
    curl -sS --max-time "$TN_CURL_TIMEOUT" "http://127.0.0.1:$1/__count" | json_get count
}

origin_reset() {
    curl -sS --max-time "$TN_CURL_TIMEOUT" -o /dev/null "http://127.0.0.1:$1/__reset"
}

tn_show_log() {
    tn_f=${1:-$TN_TMP/tern.log}
    echo "# --- $tn_f (last 40 lines) ---" >&2
    tail -n 40 "$tn_f" 2>/dev/null | sed 's/^/# /' >&2
}

# start_tern [--wait P1,P2] CONFIG [ARGS...]
start_tern() {
    tn_ports=${TN_TERN_PORTS:-}
    if [ "$1" = "--wait" ]; then
        tn_ports=$(echo "$2" | tr ',' ' ')
        shift 2
    fi
    tn_config=$1
    shift
    if [ -z "${TERN:-}" ] || [ ! -x "$TERN" ]; then
        echo "# start_tern: TERN ('${TERN:-}') is not an executable" >&2
        return 1
    fi
    "$TERN" -c "$tn_config" "$@" >"$TN_TMP/tern.out" 2>"$TN_TMP/tern.log" </dev/null &
    TN_TERN_PID=$!
    TN_PIDS="$TN_PIDS $TN_TERN_PID"
    for tn_p in $tn_ports; do
        wait_port "$tn_p" "$TN_TIMEOUT" "$TN_TERN_PID"
        case $? in
        0) ;;
        3)
            wait "$TN_TERN_PID" 2>/dev/null
            echo "# tern exited (status $?) before listening on 127.0.0.1:$tn_p" >&2
            tn_show_log
            return 1
            ;;
        *)
            echo "# tern did not listen on 127.0.0.1:$tn_p within ${TN_TIMEOUT}s" >&2
            tn_show_log
            return 1
            ;;
        esac
    done
    if [ -z "$tn_ports" ]; then
        # Nothing to wait for: at least make sure it did not die at once.
        sleep 0.2
        if ! kill -0 "$TN_TERN_PID" 2>/dev/null || tn_is_zombie "$TN_TERN_PID"; then
            wait "$TN_TERN_PID" 2>/dev/null
            echo "# tern exited (status $?) at start" >&2
            tn_show_log
            return 1
        fi
    fi
    return 0
}

stop_tern() {
    [ -n "$TN_TERN_PID" ] || return 0
    tn_kill "$TN_TERN_PID" "${1:-TERM}"
    TN_TERN_PID=
}

# ---- HTTP ------------------------------------------------------------------

tn_curl() {
    curl -sS --max-time "$TN_CURL_TIMEOUT" "$@"
}

http_status() {
    tn_url=$1
    shift
    curl -s --max-time "$TN_CURL_TIMEOUT" -o /dev/null -w '%{http_code}' "$@" "$tn_url"
}

json_get() {
    "$TN_PYTHON" -c '
import json, sys
try:
    v = json.load(sys.stdin)
    for k in sys.argv[1].split(".") if sys.argv[1] else []:
        v = v[int(k)] if isinstance(v, list) else v[k]
except (ValueError, KeyError, IndexError, TypeError):
    sys.exit(0)
print(v if isinstance(v, str) else json.dumps(v))
' "$1"
}
