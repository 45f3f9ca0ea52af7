#!/bin/sh
# Runs Envoy's route-mirror sandbox with tern. Today tern validates the
# configuration (listeners, routes, mirror policies, the four clusters); the
# data plane that serves it is the next issue, after which this script starts
# tern and walks the sandbox's steps with curl.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tern=${TERN:-$here/../../build/tern}
"$tern" --mode validate -c "$here/envoy.yaml"
