#!/bin/sh
# Compile api/ and the matching upstream Envoy protos (from the npm package
# @grpc/grpc-js-xds, fetched into the build tree, never committed) and compare.
# usage: wire_compat.sh SRC_DIR WORK_DIR
set -eu
src=$1 work=$2
mkdir -p "$work"
deps=$work/node_modules/@grpc/grpc-js-xds/deps
if [ ! -d "$deps/envoy-api" ]; then
    (cd "$work" && npm install --no-audit --no-fund --silent @grpc/grpc-js-xds >/dev/null)
fi
cd "$src/api"
ours=$(find . -name '*.proto' ! -path './tern/*' | sed 's|^\./||' | sort)
protoc -I . -I /usr/include --include_imports --descriptor_set_out="$work/ours.pb" $ours
# The same files upstream (our files sit at Envoy's paths).
stripped=$work/upstream-stripped
if [ ! -d "$stripped" ]; then
    for d in envoy-api xds; do
        /usr/bin/python3 "$src/tests/api/strip_options.py" "$deps/$d" "$stripped/$d.tmp"
    done
    mv "$stripped/envoy-api.tmp" "$stripped/envoy-api" 2>/dev/null || true
    mv "$stripped/xds.tmp" "$stripped/xds"
fi
protoc -I "$stripped/envoy-api" -I "$stripped/xds" -I "$deps/googleapis" \
    -I "$deps/protoc-gen-validate" -I /usr/include \
    --include_imports --descriptor_set_out="$work/upstream.pb" $ours
/usr/bin/python3 "$src/tests/api/wire_compat.py" "$work/ours.pb" "$work/upstream.pb"
