#!/bin/sh
# The cache filter against RFC 9111 and RFC 9213 through the real tern, with
# Envoy's CacheConfig and tern's: an expired entry is revalidated (the origin
# sees If-None-Match / If-Modified-Since and answers 304; the client gets the
# stored body, the 304's Date and no Age), a no-cache response is validated
# rather than fetched whole, unsafe methods invalidate the target URI and a
# same-origin Location / Content-Location (not after an error), "Age: 7200,
# 0" counts as 7200, CDN-Cache-Control (and tern's own targeted fields) wins
# over Cache-Control both ways and reaches the client unchanged, and a 304's
# Content-Type replaces the stored one on the foreground and the background
# (stale-while-revalidate) refresh alike.
#
# The origin is told per request what to answer: query knobs, or the
# X-Origin-Query header where the URL must stay the cached one
# (tests/origin/origin.py); /__last shows what reached it.
#
#   cache_rfc.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

set -- $(free_port 4)
o=$1 fe=$2 ft=$3 fo=$4
start_origin web "$o" || { tn_fail "origin web starts" "see above"; tn_summary; }

# Envoy's config; tern's with a stale window and its own targeted field
# first; tern's with targeted fields off
CFG_ENVOY='{name: envoy.filters.http.cache, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cache.v3.CacheConfig,
  typed_config: {"@type": type.googleapis.com/envoy.extensions.http.cache.simple_http_cache.v3.SimpleHttpCacheConfig}}}'
CFG_TERN='{name: envoy.filters.http.cache, typed_config: {"@type": type.googleapis.com/tern.extensions.filters.http.cache.v1.CacheConfig,
  name: rfc, stale_ttl: 3600s, targeted_cache_control: [edge-cache-control, cdn-cache-control]}}'
CFG_OFF='{name: envoy.filters.http.cache, typed_config: {"@type": type.googleapis.com/tern.extensions.filters.http.cache.v1.CacheConfig,
  name: rfc-off, ignore_targeted_cache_control: true}}'
listener() { # listener NAME PORT FILTER
    printf '{name: %s, address: {socket_address: {address: 127.0.0.1, port_value: %s}}, filter_chains: [{filters: [{name: envoy.filters.network.http_connection_manager, typed_config: {"@type": %s, stat_prefix: %s, route_config: %s, http_filters: [%s, %s]}}]}]}' \
        "$1" "$2" "$IT_HCM_TYPE" "$1" "$(it_rc "$(it_vhost all '"*"' "$(it_route_cluster / web)")")" "$3" "$IT_ROUTER"
}
it_config "$TN_TMP/rfc.yaml" "$(listener env "$fe" "$CFG_ENVOY"), $(listener trn "$ft" "$CFG_TERN"), $(listener off "$fo" "$CFG_OFF")" \
    "$(it_cluster web "127.0.0.1:$o")"
it_start "$TN_TMP/rfc.yaml" "$fe" --concurrency 2
E=http://127.0.0.1:$fe T=http://127.0.0.1:$ft F=http://127.0.0.1:$fo O=http://127.0.0.1:$o

hits_of() { # requests the origin saw for PATH (without query)
    n=$(tn_curl "$O/__count" | json_get "paths.$1")
    echo "${n:-0}"
}
seen() { # seen PATH HEADER: that header of the last request for PATH at the origin
    tn_curl "$O/__last?path=$1" | json_get "headers.$2"
}
get() { # get URL [curl args]: headers to $TN_TMP/h (lower case), body to $TN_TMP/b
    : >"$TN_TMP/b"
    tn_curl -D "$TN_TMP/h.raw" -o "$TN_TMP/b" "$@"
    tr -d '\r' <"$TN_TMP/h.raw" | tr 'A-Z' 'a-z' >"$TN_TMP/h"
}
hdr() { sed -n "s/^$1: //p" "$TN_TMP/h" | head -1; }
has() { grep -c "^$1:" "$TN_TMP/h"; }
status() { sed -n '1s/^http\/1.1 \([0-9]*\).*/\1/p' "$TN_TMP/h"; }
rid() { json_get headers.x-request-id <"$TN_TMP/b"; }
LM='Mon, 01 Jan 2024 00:00:00 GMT'

# --- stored now, used once they are stale ----------------------------------------------------
# max-age 4 and 5.2 s later (Date has whole seconds; a refreshed entry stays fresh for at least 3 s, room for a slow ASan run)
RV="$E/rv?etag=r1&lm=1&date=1&hdr=cache-control:max-age%3D4"
get "$RV"
rv_id=$(rid) rv_date=$(hdr date)
check "Envoy's config: first GET reaches the origin" "200 1" "$(status) $(hits_of /rv)"
TR="$T/trv?etag=t1&date=1&hdr=cache-control:max-age%3D4"
get "$TR"
trv_id=$(rid)
CT="$T/ct?etag=c1&ctype=text/x-old&hdr304=content-type:text/x-new&hdr=cache-control:max-age%3D4"
get "$CT"
check "Content-Type as first sent" text/x-old "$(hdr content-type)"
CB="$T/ctb?etag=b1&ctype=text/x-old&hdr304=content-type:text/x-new&hdr=cache-control:max-age%3D4,%20stale-while-revalidate%3D60"
get "$CB"
sleep 5.2

# --- Envoy's config revalidates an expired entry --------------------------------------------------
get "$RV"
check "Envoy's config, expired: the origin got If-None-Match" '"r1"' "$(seen /rv if-none-match)"
check "Envoy's config, expired: the origin got If-Modified-Since" "$LM" "$(seen /rv if-modified-since)"
check "Envoy's config, expired: the origin's 304 gives the client a 200" 200 "$(status)"
check "Envoy's config, expired: the stored body (the first request's id)" "$rv_id" "$(rid)"
check "Envoy's config, validated: no Age (RFC 9111 5.1)" 0 "$(has age)"
check "Envoy's config, validated: the 304's Date, not the stored one" yes \
    "$([ -n "$(hdr date)" ] && [ "$(hdr date)" != "$rv_date" ] && echo yes || echo "no: $(hdr date) was $rv_date")"
get "$RV"
check "Envoy's config: fresh again after the 304 (no third origin request)" 2 "$(hits_of /rv)"
check_match "Envoy's config: a hit carries Age" '^[0-9]+$' "$(hdr age)"

# --- tern's config: the same, and Content-Type after a 304 -------------------------------------------
get "$TR"
check "tern's config, expired: revalidated (Refresh)" "200 refresh" "$(status) $(hdr x-cache-status)"
check "tern's config, validated: the stored body" "$trv_id" "$(rid)"
check "tern's config, validated: no Age" 0 "$(has age)"
get "$CT"
check "a 304 with Content-Type: Refresh" "200 refresh" "$(status) $(hdr x-cache-status)"
check "a 304 with Content-Type: the 304's Content-Type (foreground)" text/x-new "$(hdr content-type)"
get "$CT"
check "the refreshed entry keeps the 304's Content-Type on later hits" "hit text/x-new" \
    "$(hdr x-cache-status) $(hdr content-type)"
get "$CB"
check "stale-while-revalidate: the stale entry served" "hit text/x-old" "$(hdr x-cache-status) $(hdr content-type)"
n=0
while [ "$(hits_of /ctb)" -lt 2 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
sleep 0.3
get "$CB"
check "background refresh with a 304: the 304's Content-Type" "hit text/x-new" \
    "$(hdr x-cache-status) $(hdr content-type)"

# --- no-cache: stored, and validated on every use ------------------------------------------------------
NC="$E/nc?etag=n1&hdr=cache-control:no-cache"
get "$NC"
nc_id=$(rid)
get "$NC"
check "no-cache (Envoy's config): the second GET is conditional" '"n1"' "$(seen /nc if-none-match)"
check "no-cache: the stored body after the 304" "$nc_id" "$(rid)"
check "no-cache: validated, so no Age" 0 "$(has age)"
get "$T/tnc?etag=n2&hdr=cache-control:no-cache"
get "$T/tnc?etag=n2&hdr=cache-control:no-cache"
check "no-cache (tern's config): validated (Refresh, conditional)" 'refresh "n2"' \
    "$(hdr x-cache-status) $(seen /tnc if-none-match)"

# --- Age: the first member of a list ---------------------------------------------------------------------
get "$T/age2?etag=g1&hdr=age:7200,%200&hdr=cache-control:max-age%3D5000"
get "$T/age2?etag=g1&hdr=age:7200,%200&hdr=cache-control:max-age%3D5000"
check "Age: 7200, 0 with max-age 5000 is stale: revalidated" "refresh 2" "$(hdr x-cache-status) $(hits_of /age2)"
get "$E/age3?hdr=age:7200,%200&hdr=cache-control:max-age%3D3600"
get "$E/age3?hdr=age:7200,%200&hdr=cache-control:max-age%3D3600"
check "Age: 7200, 0 (Envoy's config): stale, the origin asked again" 2 "$(hits_of /age3)"
get "$T/agebad?hdr=age:soon&hdr=cache-control:max-age%3D300"
get "$T/agebad?hdr=age:soon&hdr=cache-control:max-age%3D300"
check "an invalid Age is ignored (RFC 9111 5.1): fresh" "hit 1" "$(hdr x-cache-status) $(hits_of /agebad)"

# --- invalidation after unsafe methods (RFC 9111 4.4) --------------------------------------------------------
GH='X-Origin-Query: hdr=cache-control:max-age%3D300'
stored() { # stored URL: GETs it twice; "hit" when the second came from the cache
    get "$1" -H "$GH"
    get "$1" -H "$GH"
    hdr x-cache-status
}
for m in POST PUT DELETE PATCH MKCOL; do
    check "$m: the entry is cached before" hit "$(stored "$T/inv/$m?q=1")"
    tn_curl -o /dev/null -X "$m" -d x "$T/inv/$m?q=1"
    get "$T/inv/$m?q=1" -H "$GH"
    check "$m with a 200 invalidates the target URI" miss "$(hdr x-cache-status)"
done
stored "$T/inv/opt" >/dev/null
tn_curl -o /dev/null -X OPTIONS "$T/inv/opt"
check "OPTIONS (safe) invalidates nothing" hit "$(get "$T/inv/opt" -H "$GH"; hdr x-cache-status)"
for st in 500 404; do
    stored "$T/inv/err$st" >/dev/null
    tn_curl -o /dev/null -X POST -d x -H "X-Origin-Query: status=$st" "$T/inv/err$st"
    check "POST answered $st invalidates nothing" hit "$(get "$T/inv/err$st" -H "$GH"; hdr x-cache-status)"
done
check "3xx: cached before" hit "$(stored "$T/inv/see")"
tn_curl -o /dev/null -X POST -d x -H 'X-Origin-Query: status=303' "$T/inv/see"
check "POST answered 303 invalidates" miss "$(get "$T/inv/see" -H "$GH"; hdr x-cache-status)"
stored "$T/inv/loc?k=1" >/dev/null
tn_curl -o /dev/null -X POST -d x -H 'X-Origin-Query: status=201&hdr=location:%2Finv%2Floc%3Fk%3D1' "$T/inv/form"
check "Location (same origin, absolute path) invalidated" miss "$(get "$T/inv/loc?k=1" -H "$GH"; hdr x-cache-status)"
stored "$T/inv/dir/sib" >/dev/null
tn_curl -o /dev/null -X PUT -d x -H 'X-Origin-Query: hdr=location:sib' "$T/inv/dir/form"
check "Location (a relative path) invalidated" miss "$(get "$T/inv/dir/sib" -H "$GH"; hdr x-cache-status)"
stored "$T/inv/cl" >/dev/null
tn_curl -o /dev/null -X POST -d x -H "X-Origin-Query: hdr=content-location:http%3A%2F%2F127.0.0.1%3A$ft%2Finv%2Fcl" "$T/inv/form"
check "Content-Location (same origin, absolute URI) invalidated" miss "$(get "$T/inv/cl" -H "$GH"; hdr x-cache-status)"
stored "$T/inv/oth" >/dev/null
tn_curl -o /dev/null -X POST -d x -H 'X-Origin-Query: hdr=location:http%3A%2F%2Fother.example%2Finv%2Foth' "$T/inv/form"
tn_curl -o /dev/null -X POST -d x -H "X-Origin-Query: hdr=content-location:http%3A%2F%2F127.0.0.1%3A$fe%2Finv%2Foth" "$T/inv/form"
check "Location / Content-Location of another origin invalidate nothing" hit \
    "$(get "$T/inv/oth" -H "$GH"; hdr x-cache-status)"
get "$E/inv/env" -H "$GH"
tn_curl -o /dev/null -X DELETE "$E/inv/env"
get "$E/inv/env" -H "$GH"
check "Envoy's config: DELETE invalidates too (GET, DELETE, GET reach the origin)" 3 "$(hits_of /inv/env)"

# --- CDN-Cache-Control (RFC 9213) ------------------------------------------------------------------------------
get "$E/cdn1?hdr=cdn-cache-control:max-age%3D300&hdr=cache-control:no-store"
get "$E/cdn1?hdr=cdn-cache-control:max-age%3D300&hdr=cache-control:no-store"
check "CDN-Cache-Control max-age over Cache-Control no-store: stored" 1 "$(hits_of /cdn1)"
check "CDN-Cache-Control reaches the client unchanged" "max-age=300" "$(hdr cdn-cache-control)"
check "Cache-Control reaches the client unchanged" "no-store" "$(hdr cache-control)"
get "$E/cdn2?hdr=cdn-cache-control:no-store&hdr=cache-control:max-age%3D300"
check "on a miss too: CDN-Cache-Control unchanged" "no-store" "$(hdr cdn-cache-control)"
get "$E/cdn2?hdr=cdn-cache-control:no-store&hdr=cache-control:max-age%3D300"
check "CDN-Cache-Control no-store over Cache-Control max-age: not stored" 2 "$(hits_of /cdn2)"
get "$E/cdn3?hdr=cdn-cache-control:max-age%3D300&hdr=cache-control:max-age%3D0,%20must-revalidate"
get "$E/cdn3?hdr=cdn-cache-control:max-age%3D300&hdr=cache-control:max-age%3D0,%20must-revalidate"
check "CDN-Cache-Control freshness over Cache-Control's (fresh, not revalidated)" 1 "$(hits_of /cdn3)"
get "$E/cdn4?hdr=cdn-cache-control:Max-Age%3D300&hdr=cache-control:no-store"
get "$E/cdn4?hdr=cdn-cache-control:Max-Age%3D300&hdr=cache-control:no-store"
check "an invalid CDN-Cache-Control (not a Dictionary) is ignored: Cache-Control's no-store" 2 "$(hits_of /cdn4)"
get "$T/t1?hdr=edge-cache-control:max-age%3D300&hdr=cdn-cache-control:no-store&hdr=cache-control:no-store"
get "$T/t1?hdr=edge-cache-control:max-age%3D300&hdr=cdn-cache-control:no-store&hdr=cache-control:no-store"
check "tern's targeted_cache_control: the first listed field wins" "hit 1" "$(hdr x-cache-status) $(hits_of /t1)"
get "$T/t2?hdr=edge-cache-control:no-store&hdr=cdn-cache-control:max-age%3D300"
get "$T/t2?hdr=edge-cache-control:no-store&hdr=cdn-cache-control:max-age%3D300"
check "tern's targeted_cache_control: its no-store wins" 2 "$(hits_of /t2)"
get "$T/t3?hdr=cdn-cache-control:max-age%3D300&hdr=cache-control:no-store"
get "$T/t3?hdr=cdn-cache-control:max-age%3D300&hdr=cache-control:no-store"
check "tern's list: the next field (cdn-cache-control) when the first is absent" "hit 1" \
    "$(hdr x-cache-status) $(hits_of /t3)"
get "$F/o1?hdr=cdn-cache-control:max-age%3D300&hdr=cache-control:no-store"
get "$F/o1?hdr=cdn-cache-control:max-age%3D300&hdr=cache-control:no-store"
check "ignore_targeted_cache_control: Cache-Control's no-store counts" 2 "$(hits_of /o1)"
get "$F/o2?hdr=cdn-cache-control:no-store&hdr=cache-control:max-age%3D300"
get "$F/o2?hdr=cdn-cache-control:no-store&hdr=cache-control:max-age%3D300"
check "ignore_targeted_cache_control: Cache-Control's max-age counts" "hit 1" "$(hdr x-cache-status) $(hits_of /o2)"

stop_tern
check "tern exits 0" 0 "$TN_RC"
it_sanitizers
tn_summary
