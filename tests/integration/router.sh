#!/bin/sh
# Routing through tern, end to end: virtual-host domains (exact, *.suffix,
# prefix.*, *, with ports), path matchers (prefix, path, safe_regex,
# path_separated_prefix, case_sensitive), header and query-parameter
# matchers, cluster_header, weighted_clusters, rewrites (prefix, regex, host
# literal, auto host), redirects, direct responses, header mutations at the
# route, virtual-host and route-configuration levels, internal_only_headers.
#
#   router.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

set -- $(free_port 3)
o1=$1 o2=$2 f=$3
start_origin web "$o1" || { tn_fail "origin web starts" "see above"; tn_summary; }
start_origin alt "$o2" || { tn_fail "origin alt starts" "see above"; tn_summary; }

d() { it_route_direct "$@"; }
hm() { # hm PREFIX HEADER_MATCHER BODY: a route on PREFIX with one header matcher
    printf '{match: {prefix: "%s", headers: [%s]}, direct_response: {status: 200, body: {inline_string: "%s"}}}' "$1" "$2" "$3"
}
hdr() { printf '{header: {key: %s, value: "%s"}, append_action: %s}' "$1" "$2" "${3:-APPEND_IF_EXISTS_OR_ADD}"; }

routes="
    {match: {path: /exact}, direct_response: {status: 200, body: {inline_string: path-exact}}},
    {match: {safe_regex: {regex: '/re/[0-9]+'}}, direct_response: {status: 200, body: {inline_string: regex}}},
    {match: {path_separated_prefix: /sep}, direct_response: {status: 200, body: {inline_string: sep}}},
    {match: {prefix: /ci/, case_sensitive: false}, direct_response: {status: 200, body: {inline_string: ci}}},
    $(hm /hdr/exact '{name: x-h, string_match: {exact: a}}' h-exact),
    $(hm /hdr/present '{name: x-h, present_match: true}' h-present),
    $(hm /hdr/invert '{name: x-h, string_match: {exact: a}, invert_match: true}' h-invert),
    $(hm /hdr/prefix '{name: x-h, string_match: {prefix: pre}}' h-prefix),
    $(hm /hdr/regex "{name: x-h, string_match: {safe_regex: {regex: 'v[0-9]+'}}}" h-regex),
    $(d /hdr/ 200 h-fallback),
    {match: {prefix: /q, query_parameters: [{name: k, string_match: {exact: v}}]}, direct_response: {status: 200, body: {inline_string: q-match}}},
    {match: {prefix: /q, query_parameters: [{name: p, present_match: true}]}, direct_response: {status: 200, body: {inline_string: q-present}}},
    $(d /q 200 q-fallback),
    {match: {prefix: /ch}, route: {cluster_header: x-cluster}},
    {match: {prefix: /w}, route: {weighted_clusters: {clusters: [{name: web, weight: 50}, {name: alt, weight: 50}]}}},
    {match: {prefix: /old/}, route: {cluster: web, prefix_rewrite: /new/}},
    {match: {prefix: /rr/}, route: {cluster: web, regex_rewrite: {pattern: {regex: '^/rr/([a-z]+)/(.*)\$'}, substitution: '/\\2/\\1'}}},
    {match: {prefix: /hrl}, route: {cluster: web, host_rewrite_literal: rewritten.test}},
    {match: {prefix: /ahr}, route: {cluster: localweb, auto_host_rewrite: true}},
    {match: {prefix: /r1}, redirect: {https_redirect: true}},
    {match: {prefix: /r2}, redirect: {host_redirect: new.test}},
    {match: {prefix: /r3}, redirect: {path_redirect: /newpath}},
    {match: {prefix: /r4/}, redirect: {prefix_rewrite: /p4/}},
    {match: {prefix: /r5}, redirect: {path_redirect: /p5, response_code: PERMANENT_REDIRECT}},
    {match: {prefix: /r6}, redirect: {path_redirect: /p6, strip_query: true, response_code: FOUND}},
    {match: {prefix: /r7}, redirect: {host_redirect: other.test, port_redirect: 8443, scheme_redirect: https}},
    {match: {prefix: /dr-empty}, direct_response: {status: 204}},
    {match: {prefix: /dr}, direct_response: {status: 418, body: {inline_string: 'short and stout'}}},
    {match: {prefix: /mut}, route: {cluster: web},
     request_headers_to_add: [$(hdr x-route r), $(hdr x-prec route OVERWRITE_IF_EXISTS_OR_ADD)],
     request_headers_to_remove: [x-del-route],
     response_headers_to_add: [$(hdr x-resp-route r), $(hdr x-resp-prec route OVERWRITE_IF_EXISTS_OR_ADD)],
     response_headers_to_remove: [x-o-route]},
    $(it_route_cluster / web)"

vh_r=$(it_vhost routes '"r.test"' "$routes" "
    request_headers_to_add: [$(hdr x-vhost v), $(hdr x-prec vhost OVERWRITE_IF_EXISTS_OR_ADD)],
    request_headers_to_remove: [x-del-vhost],
    response_headers_to_add: [$(hdr x-resp-vhost v), $(hdr x-resp-prec vhost OVERWRITE_IF_EXISTS_OR_ADD)],
    response_headers_to_remove: [x-o-vhost],")
vhosts="$(it_vhost exact '"exact.test"' "$(d / 200 vh-exact)"),
    $(it_vhost suffix '"*.suffix.test"' "$(d / 200 vh-suffix)"),
    $(it_vhost longsuffix '"*.long.suffix.test"' "$(d / 200 vh-longsuffix)"),
    $(it_vhost prefix '"prefix.*"' "$(d / 200 vh-prefix)"),
    $(it_vhost port '"port.test:8080"' "$(d / 200 vh-port)"),
    $vh_r,
    $(it_vhost default '"*"' "$(d / 200 vh-default)")"
rc=$(it_rc "$vhosts" "
    internal_only_headers: [x-internal],
    request_headers_to_add: [$(hdr x-rc c), $(hdr x-prec rc OVERWRITE_IF_EXISTS_OR_ADD)],
    request_headers_to_remove: [x-del-rc],
    response_headers_to_add: [$(hdr x-resp-rc c), $(hdr x-resp-prec rc OVERWRITE_IF_EXISTS_OR_ADD)],
    response_headers_to_remove: [x-o-rc],")
L=$(it_listener front "$f" "$rc" "use_remote_address: true,")
C="$(it_cluster web "127.0.0.1:$o1"), $(it_cluster alt "127.0.0.1:$o2"),
   $(it_cluster localweb "localhost:$o1" "dns_lookup_family: V4_ONLY," STRICT_DNS)"
it_config "$TN_TMP/router.yaml" "$L" "$C"
it_start "$TN_TMP/router.yaml" "$f" --concurrency 2
base=http://127.0.0.1:$f

# body HOST PATH [CURL ARGS]: the response body for PATH with Host HOST.
body() {
    b_host=$1 b_path=$2
    shift 2
    tn_curl -H "Host: $b_host" "$@" "$base$b_path"
}

# ---- domains -------------------------------------------------------------------

check "domain exact" vh-exact "$(body exact.test /)"
check "domain exact, case-insensitive Host" vh-exact "$(body EXACT.Test /)"
check "domain *.suffix" vh-suffix "$(body a.suffix.test /)"
check "domain *.suffix, several labels" vh-suffix "$(body a.b.suffix.test /)"
check "domain *.suffix does not match the bare suffix" vh-default "$(body suffix.test /)"
check "domain: the longest suffix wins" vh-longsuffix "$(body x.long.suffix.test /)"
check "domain prefix.*" vh-prefix "$(body prefix.anything /)"
check "domain with a port matches Host with that port" vh-port "$(body port.test:8080 /)"
check "domain with a port: Host without it goes to *" vh-default "$(body port.test /)"
check "domain exact: Host with a port goes to * (no port stripping)" vh-default "$(body exact.test:1234 /)"
check "domain *" vh-default "$(body unknown.test /)"

# ---- path matchers --------------------------------------------------------------

R=r.test
check "path: exact match" path-exact "$(body $R /exact)"
check "path: /exact?q still matches (query ignored)" path-exact "$(body $R '/exact?q=1')"
check "path: /exact/more is not the path" web "$(body $R /exact/more | json_get name)"
check "safe_regex: full match" regex "$(body $R /re/123)"
check "safe_regex: no partial match" web "$(body $R /re/123x | json_get name)"
check "path_separated_prefix: /sep" sep "$(body $R /sep)"
check "path_separated_prefix: /sep/x" sep "$(body $R /sep/x)"
check "path_separated_prefix: /sep?x" sep "$(body $R '/sep?x=1')"
check "path_separated_prefix: not /sepx" web "$(body $R /sepx | json_get name)"
check "case_sensitive false: /CI/x" ci "$(body $R /CI/x)"
check "case_sensitive false: /ci/x" ci "$(body $R /ci/x)"
check "prefix is case-sensitive by default" web "$(body $R /EXACT | json_get name)"

# ---- header and query matchers --------------------------------------------------

check "header exact: matches" h-exact "$(body $R /hdr/exact -H 'x-h: a')"
check "header exact: other value" h-fallback "$(body $R /hdr/exact -H 'x-h: b')"
check "header exact: absent" h-fallback "$(body $R /hdr/exact)"
check "header present: present" h-present "$(body $R /hdr/present -H 'x-h: anything')"
check "header present: absent" h-fallback "$(body $R /hdr/present)"
check "header invert: other value matches" h-invert "$(body $R /hdr/invert -H 'x-h: b')"
check "header invert: the value does not" h-fallback "$(body $R /hdr/invert -H 'x-h: a')"
check "header prefix: matches" h-prefix "$(body $R /hdr/prefix -H 'x-h: prefixed')"
check "header prefix: no" h-fallback "$(body $R /hdr/prefix -H 'x-h: xpre')"
check "header regex: full match" h-regex "$(body $R /hdr/regex -H 'x-h: v12')"
check "header regex: no partial match" h-fallback "$(body $R /hdr/regex -H 'x-h: v12x')"
check "query_parameters exact: matches" q-match "$(body $R '/q?k=v')"
check "query_parameters exact: among others" q-match "$(body $R '/q?a=1&k=v&b=2')"
check "query_parameters exact: other value" q-fallback "$(body $R '/q?k=w')"
check "query_parameters present" q-present "$(body $R '/q?p=')"
check "query_parameters: none" q-fallback "$(body $R /q)"

# ---- cluster selection ----------------------------------------------------------

check "cluster_header: web" web "$(body $R /ch -H 'x-cluster: web' | json_get name)"
check "cluster_header: alt" alt "$(body $R /ch -H 'x-cluster: alt' | json_get name)"
origin_reset "$o1"
origin_reset "$o2"
i=0
while [ $i -lt 100 ]; do
    echo "http://127.0.0.1:$f/w/$i"
    i=$((i + 1))
done >"$TN_TMP/urls"
curl -s --max-time 60 -H "Host: $R" $(cat "$TN_TMP/urls") >/dev/null
n1=$(origin_count "$o1")
n2=$(origin_count "$o2")
check "weighted_clusters 50/50: all 100 answered" 100 "$((n1 + n2))"
if [ "$n1" -ge 15 ] && [ "$n2" -ge 15 ]; then
    tn_pass "weighted_clusters 50/50: both get traffic (web $n1, alt $n2)"
else
    tn_fail "weighted_clusters 50/50: both get traffic" "web $n1, alt $n2"
fi

# ---- rewrites -------------------------------------------------------------------

out=$(body $R '/old/thing?x=1&y=2')
check "prefix_rewrite: path rewritten, query kept" "/new/thing?x=1&y=2" "$(echo "$out" | json_get path)"
out=$(body $R '/rr/abc/def/g?z=9')
check "regex_rewrite: path rewritten, query kept" "/def/g/abc?z=9" "$(echo "$out" | json_get path)"
out=$(body $R /hrl)
check "host_rewrite_literal" rewritten.test "$(echo "$out" | json_get headers.host)"
out=$(body $R /ahr/x)
check "auto_host_rewrite (STRICT_DNS localhost)" localhost "$(echo "$out" | json_get headers.host)"
check "auto_host_rewrite: the origin answers" web "$(echo "$out" | json_get name)"

# ---- redirects and direct responses ---------------------------------------------

# redir PATH: "STATUS LOCATION"
redir() {
    curl -s --max-time 10 -o /dev/null -H "Host: $R" -w '%{http_code} %{redirect_url}' "$base$1"
}
check "https_redirect" "301 https://r.test/r1/x?a=1" "$(redir '/r1/x?a=1')"
check "host_redirect" "301 http://new.test/r2?a=1" "$(redir '/r2?a=1')"
check "path_redirect keeps the query" "301 http://r.test/newpath?a=1" "$(redir '/r3?a=1')"
check "redirect prefix_rewrite" "301 http://r.test/p4/x/y?a=1" "$(redir '/r4/x/y?a=1')"
check "response_code PERMANENT_REDIRECT" "308 http://r.test/p5" "$(redir /r5)"
check "strip_query, response_code FOUND" "302 http://r.test/p6" "$(redir '/r6?a=1&b=2')"
check "scheme, host and port redirect" "301 https://other.test:8443/r7" "$(redir /r7)"
out=$(curl -s --max-time 10 -H "Host: $R" -w ' %{http_code}' "$base/dr")
check "direct_response: status and body" "short and stout 418" "$out"
check "direct_response 204 without a body" 204 "$(http_status "$base/dr-empty" -H "Host: $R")"

# ---- header mutations -----------------------------------------------------------

tn_curl -D "$TN_TMP/h" -o "$TN_TMP/b" -H "Host: $R" -H 'x-del-route: 1' -H 'x-del-vhost: 1' -H 'x-del-rc: 1' \
    -H 'x-keep: 1' -H 'x-prec: client' \
    "$base/mut?hdr=x-o-route:1&hdr=x-o-vhost:1&hdr=x-o-rc:1&hdr=x-o-keep:1"
out=$(cat "$TN_TMP/b")
rh=$(tr -d '\r' <"$TN_TMP/h" | tr 'A-Z' 'a-z')
check "request_headers_to_add: route" r "$(echo "$out" | json_get headers.x-route)"
check "request_headers_to_add: virtual host" v "$(echo "$out" | json_get headers.x-vhost)"
check "request_headers_to_add: route config" c "$(echo "$out" | json_get headers.x-rc)"
check "request_headers_to_add OVERWRITE_IF_EXISTS_OR_ADD at 3 levels: route config wins (applied last)" rc "$(echo "$out" | json_get headers.x-prec)"
check "request_headers_to_remove: route" "" "$(echo "$out" | json_get headers.x-del-route)"
check "request_headers_to_remove: virtual host" "" "$(echo "$out" | json_get headers.x-del-vhost)"
check "request_headers_to_remove: route config" "" "$(echo "$out" | json_get headers.x-del-rc)"
check "request headers not named are kept" 1 "$(echo "$out" | json_get headers.x-keep)"
check_contains "response_headers_to_add: route" "x-resp-route: r" "$rh"
check_contains "response_headers_to_add: virtual host" "x-resp-vhost: v" "$rh"
check_contains "response_headers_to_add: route config" "x-resp-rc: c" "$rh"
check "response_headers_to_add OVERWRITE_IF_EXISTS_OR_ADD at 3 levels: route config wins" "x-resp-prec: rc" "$(echo "$rh" | grep '^x-resp-prec:')"
check_not_contains "response_headers_to_remove: route" "x-o-route" "$rh"
check_not_contains "response_headers_to_remove: virtual host" "x-o-vhost" "$rh"
check_not_contains "response_headers_to_remove: route config" "x-o-rc" "$rh"
check_contains "response headers not named are kept" "x-o-keep: 1" "$rh"
# Route-config response headers also go on direct responses.
rh=$(tn_curl -D - -o /dev/null -H "Host: exact.test" "$base/" | tr -d '\r' | tr 'A-Z' 'a-z')
check_contains "response_headers_to_add (route config) on a direct response" "x-resp-rc: c" "$rh"

# internal_only_headers: with use_remote_address and a loopback client the
# request is internal (Envoy), so the header is kept.
out=$(body $R /int -H 'x-internal: secret')
check "internal_only_headers kept for an internal (loopback) request" secret "$(echo "$out" | json_get headers.x-internal)"

stop_tern
check "tern exits 0 on SIGTERM" 0 "$TN_RC"
it_sanitizers
tn_summary
