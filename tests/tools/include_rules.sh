#!/bin/sh
# The house's rules, read from the #include lines (docs/architecture.md):
#  1. nothing under dataplane/ includes a filter's own header: not cache/,
#     not mirror/, not a filter's file under filters/ (the registry and API,
#     filters/filter.h, and the route table, filters/route.h and
#     filters/route_match.h, are the connection manager's configuration);
#  2. filters/, cache/ and mirror/ include none of the configuration
#     sources (xds/): they see compiled configuration and the protobuf
#     machinery (api/pb/), never a source;
#  3. xds/ and api/pb/ include no compiler of runtime objects (the server's
#     config, listener and xDS compilers, clusters, route tables);
#  4. dataplane/core/ includes nothing above it (only core/ and the API).
# Prints "ok - RULE" or "not ok - RULE: the offending lines", then the counts.
#
#   include_rules.sh SOURCE_DIR
set -u
cd "${1:-$(dirname "$0")/../..}" || exit 1
pass=0 fail=0
rule() { # rule NAME OFFENDING_LINES
    if [ -z "$2" ]; then
        echo "ok - $1"
        pass=$((pass + 1))
    else
        echo "not ok - $1:"
        echo "$2" | sed 's/^/#   /'
        fail=$((fail + 1))
    fi
}
incl() { # incl DIRS...: every #include "..." line of their .c/.h files
    find "$@" -name '*.[ch]' -exec grep -Hn '^#include "' {} + 2>/dev/null
}

[ -d dataplane/core ] && [ -d xds ] && [ -d filters ] || { echo "not ok - run from the source tree"; exit 1; }

rule "dataplane/ includes no filter's own header" \
    "$(incl dataplane | grep -E '#include "(cache|mirror)/|#include "filters/' |
        grep -vE '#include "filters/(filter|route|route_match)\.h"')"
rule "filters/, cache/ and mirror/ include no configuration source (xds/)" \
    "$(incl filters cache mirror | grep '#include "xds/')"
rule "xds/ and api/pb/ include no compiler of runtime objects" \
    "$(incl xds api/pb | grep -E '#include "(dataplane/(server|upstream|http|admin|stats|accesslog)/|filters/|cache/|mirror/)' |
        grep -v '#include "dataplane/server/source\.h"')"
rule "dataplane/core/ includes only core/ and the API" \
    "$(incl dataplane/core | grep -vE '#include "(dataplane/core/|envoy/|google/)')"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
