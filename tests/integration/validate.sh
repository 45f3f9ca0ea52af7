#!/bin/sh
# Integration checks for `tern --mode validate` and the command line.
#
#   validate.sh TERN_BINARY SOURCE_DIR
#
# - examples/route-mirror/envoy.yaml and every file in tests/configs/good must
#   validate: exit 0 and exactly "configuration 'FILE' OK" on stdout;
# - every file in tests/configs/bad must be refused: exit 1, with stderr
#   holding (as a fixed string) the text after "# expect: " on its first line;
# - the flags: --version, --help, unknown options, --mode, --config-yaml alone
#   and merged over -c, --log-level, --component-log-level, --concurrency.
#
# Prints "ok - NAME" or "not ok - NAME: WHY" per case, then "N passed, M failed";
# exits 1 if any case failed.

if [ $# -ne 2 ]; then
    echo "usage: $0 TERN_BINARY SOURCE_DIR" >&2
    exit 2
fi
TERN=$1
SRC=$2
GOOD=$SRC/tests/configs/good
BAD=$SRC/tests/configs/bad

if [ ! -x "$TERN" ]; then
    echo "$0: '$TERN' is not an executable" >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tern-validate.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM

passed=0
failed=0
rc=0

pass() {
    passed=$((passed + 1))
    echo "ok - $1"
}

fail() {
    failed=$((failed + 1))
    echo "not ok - $1: $2"
}

# Runs tern with the given arguments; leaves the exit status in $rc and the
# output in $tmp/out and $tmp/err.
run() {
    "$TERN" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}

# The first line of stderr (or stdout when stderr is empty), for messages.
said() {
    if [ -s "$tmp/err" ]; then
        sed -n 1p "$tmp/err"
    else
        sed -n 1p "$tmp/out"
    fi
}

# expect_ok NAME FILE: FILE validates with the exact OK line.
expect_ok() {
    run --mode validate -c "$2"
    if [ "$rc" -ne 0 ]; then
        fail "$1" "exit $rc, expected 0 ($(said))"
    elif [ "$(cat "$tmp/out")" != "configuration '$2' OK" ]; then
        fail "$1" "stdout is '$(cat "$tmp/out")', expected \"configuration '$2' OK\""
    else
        pass "$1"
    fi
}

# expect_status NAME STATUS FILE_TO_GREP TEXT [ARGS...]: tern ARGS exits with
# STATUS and FILE_TO_GREP (out or err) contains TEXT (skipped when empty).
expect_status() {
    name=$1 status=$2 stream=$3 text=$4
    shift 4
    run "$@"
    if [ "$rc" -ne "$status" ]; then
        fail "$name" "exit $rc, expected $status ($(said))"
    elif [ -n "$text" ] && ! grep -qF -e "$text" "$tmp/$stream"; then
        fail "$name" "std$stream lacks '$text' ($(said))"
    else
        pass "$name"
    fi
}

# ---- configurations that must validate ----------------------------------

expect_ok "examples/route-mirror/envoy.yaml" "$SRC/examples/route-mirror/envoy.yaml"

n_good=0
for f in "$GOOD"/*; do
    [ -f "$f" ] || continue
    n_good=$((n_good + 1))
    expect_ok "good/${f##*/}" "$f"
done
if [ "$n_good" -eq 0 ]; then
    fail "good configurations" "no files in $GOOD"
fi

# ---- configurations that must be refused --------------------------------

n_bad=0
for f in "$BAD"/*; do
    [ -f "$f" ] || continue
    n_bad=$((n_bad + 1))
    name="bad/${f##*/}"
    first=
    IFS= read -r first <"$f"
    case $first in
    "# expect: "?*) want=${first#"# expect: "} ;;
    *)
        fail "$name" "the first line is not '# expect: <text>'"
        continue
        ;;
    esac
    run --mode validate -c "$f"
    if [ "$rc" -ne 1 ]; then
        fail "$name" "exit $rc, expected 1 ($(said))"
    elif ! grep -qF -e "$want" "$tmp/err"; then
        fail "$name" "stderr lacks '$want'; it says: $(said)"
    else
        pass "$name"
    fi
done
if [ "$n_bad" -eq 0 ]; then
    fail "bad configurations" "no files in $BAD"
fi

# ---- the command line ----------------------------------------------------

good=$GOOD/front-proxy.yaml

expect_status "--version" 0 out "tern version" --version
expect_status "--help" 0 out "usage: tern" --help
expect_status "--bogus is an unknown option" 1 err "unknown option '--bogus'" --bogus -c "$good"
expect_status "--bogus prints the usage" 1 err "usage: tern" --bogus -c "$good"
expect_status "-c without a value" 1 err "needs a value" -c
expect_status "no -c and no --config-yaml" 1 err "a configuration is required" --mode validate
expect_status "--mode bogus" 1 err "--mode: 'bogus' is not one of serve, validate" --mode bogus -c "$good"
expect_status "a stray argument" 1 err "unexpected argument 'extra'" --mode validate -c "$good" extra
expect_status "a missing file" 1 err "cannot open '$tmp/nonexistent.yaml'" --mode validate -c "$tmp/nonexistent.yaml"

# A whole bootstrap given inline.
inline='{static_resources: {listeners: [{name: inline, address: {socket_address: {address: 127.0.0.1, port_value: 10000}},
  filter_chains: [{filters: [{name: envoy.filters.network.http_connection_manager, typed_config: {
    "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager,
    stat_prefix: inline,
    route_config: {virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}]},
    http_filters: [{name: envoy.filters.http.router,
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]}}]}]}]},
  admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}}'
run --mode validate --config-yaml "$inline"
if [ "$rc" -eq 0 ] && [ "$(cat "$tmp/out")" = "configuration '--config-yaml' OK" ]; then
    pass "--config-yaml alone"
else
    fail "--config-yaml alone" "exit $rc: $(said)"
fi
expect_status "--config-yaml alone, invalid" 1 err "admin.bogus: unknown field" --mode validate --config-yaml 'admin: {bogus: 1}'

# --config-yaml merged over -c: bad/unknown-cluster.yaml routes to cluster
# 'extra', which only the overlay defines (repeated fields append).
extra='static_resources: {clusters: [{name: extra, type: STATIC, connect_timeout: 1s,
  load_assignment: {cluster_name: extra, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8089}}}}]}]}}]}'
merge_base=$BAD/unknown-cluster.yaml
expect_status "-c alone lacks cluster 'extra'" 1 err "unknown cluster 'extra'" --mode validate -c "$merge_base"
run --mode validate -c "$merge_base" --config-yaml "$extra"
if [ "$rc" -eq 0 ] && [ "$(cat "$tmp/out")" = "configuration '$merge_base' OK" ]; then
    pass "-c plus --config-yaml adding cluster 'extra'"
else
    fail "-c plus --config-yaml adding cluster 'extra'" "exit $rc: $(said)"
fi
# A set scalar in the overlay replaces the file's: the admin port moves from
# 19100 onto the front listener's 10100, which tern then refuses.
expect_status "--config-yaml replaces the admin address" 1 err "admin.address: the admin address 127.0.0.1:10100" \
    --mode validate -c "$good" --config-yaml 'admin: {address: {socket_address: {address: 127.0.0.1, port_value: 10100}}}'

expect_status "-l debug" 0 out "configuration '$good' OK" -l debug --mode validate -c "$good"
expect_status "--log-level warning" 0 out "configuration '$good' OK" --log-level warning --mode validate -c "$good"
expect_status "-l bogus" 1 err "--log-level: unknown level 'bogus'" -l bogus --mode validate -c "$good"
expect_status "--component-log-level upstream:debug,config:trace" 0 out "configuration '$good' OK" \
    --component-log-level upstream:debug,config:trace --mode validate -c "$good"
expect_status "--component-log-level nosuch:debug" 1 err "unknown log component 'nosuch'" \
    --component-log-level nosuch:debug --mode validate -c "$good"
expect_status "--concurrency 0" 1 err "--concurrency: '0' is not an integer >= 1" --concurrency 0 --mode validate -c "$good"
expect_status "--concurrency 2" 0 out "configuration '$good' OK" --concurrency 2 --mode validate -c "$good"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
