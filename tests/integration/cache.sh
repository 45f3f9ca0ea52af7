#!/bin/sh
# The cache filter through the real tern, against an origin that counts what
# reaches it: miss then hit (the origin count does not move, the body is the
# first response's), Age, X-Cache-Status/Key/Hits, X-Served-By, HEAD from a
# cached GET, a client's conditional answered 304, no-store/private/
# Set-Cookie/Authorization not cached, Vary, single ranges (206, 416),
# revalidation with the origin's 304 (Refresh), only-if-cached, coalescing
# of concurrent misses, stale served when the origin is down, purges (admin
# /purge, PURGE with its key and wildcard, Kong's /proxy-cache API), the
# size bound under a flood of unique URLs, a 10 MB entry, the stats.
#
#   cache.sh TERN_BINARY SOURCE_DIR

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/itlib.sh"
tn_setup "$@"

set -- $(free_port 4)
o1=$1 f=$2 adm=$3 f2=$4
start_origin web "$o1" || { tn_fail "origin web starts" "see above"; tn_summary; }
web_pid=$TN_PID

CACHE='{name: envoy.filters.http.cache, typed_config: {"@type": type.googleapis.com/tern.extensions.filters.http.cache.v1.CacheConfig,
  name: edge-1, max_size_bytes: 16777216, max_entry_bytes: 12582912, stale_ttl: 3600s, default_ttl: 300s,
  vary_headers: [], allowed_vary_headers: [{exact: accept-encoding}],
  purge: {key: s3cret, allow_wildcard: true}}}'
# a second listener with Envoy's plain CacheConfig: Age only, no status headers
ENVOY_CACHE='{name: envoy.filters.http.cache, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cache.v3.CacheConfig,
  typed_config: {"@type": type.googleapis.com/envoy.extensions.http.cache.simple_http_cache.v3.SimpleHttpCacheConfig}}}'
listener() { # listener NAME PORT FILTER
    printf '{name: %s, address: {socket_address: {address: 127.0.0.1, port_value: %s}}, filter_chains: [{filters: [{name: envoy.filters.network.http_connection_manager, typed_config: {"@type": %s, stat_prefix: %s, route_config: %s, http_filters: [%s, %s]}}]}]}' \
        "$1" "$2" "$IT_HCM_TYPE" "$1" "$(it_rc "$(it_vhost all '"*"' "$(it_route_cluster / web "retry_policy: {retry_on: connect-failure, num_retries: 0},")")")" "$3" "$IT_ROUTER"
}
C=$(it_cluster web "127.0.0.1:$o1")
printf '{admin: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}, static_resources: {listeners: [%s, %s], clusters: [%s]}}\n' \
    "$adm" "$(listener front "$f" "$CACHE")" "$(listener plain "$f2" "$ENVOY_CACHE")" "$C" >"$TN_TMP/cache.yaml"
it_start "$TN_TMP/cache.yaml" "$f" --concurrency 2
base=http://127.0.0.1:$f
A=http://127.0.0.1:$adm

hits_of() { # hits_of PATH: requests the origin saw for PATH (without query)
    n=$(tn_curl "http://127.0.0.1:$o1/__count" | json_get "paths.$1")
    echo "${n:-0}"
}
get() { # get URL [curl args]: headers to $TN_TMP/h (lower case), body to $TN_TMP/b
    rm -f "$TN_TMP/b"
    : >"$TN_TMP/b"
    tn_curl -D "$TN_TMP/h.raw" -o "$TN_TMP/b" "$@"
    tr -d '\r' <"$TN_TMP/h.raw" | tr 'A-Z' 'a-z' >"$TN_TMP/h"
}
hdr() { sed -n "s/^$1: //p" "$TN_TMP/h" | head -1; }
status() { sed -n '1s/^http\/1.1 \([0-9]*\).*/\1/p' "$TN_TMP/h"; }

# --- miss, then hit ------------------------------------------------------------------
CC='hdr=cache-control:max-age%3D300'
get "$base/a?$CC"
check "first GET: 200" 200 "$(status)"
check "first GET: X-Cache-Status Miss" miss "$(hdr x-cache-status)"
check "X-Served-By is the configured name" edge-1 "$(hdr x-served-by)"
key1=$(hdr x-cache-key)
check_match "X-Cache-Key is 32 hex digits" '^[0-9a-f]{32}$' "$key1"
first=$(json_get headers.x-request-id <"$TN_TMP/b")
get "$base/a?$CC"
cp "$TN_TMP/b" "$TN_TMP/b.a"
check "second GET: Hit" hit "$(hdr x-cache-status)"
check "the hit is the stored body (the first request's id)" "$first" "$(json_get headers.x-request-id <"$TN_TMP/b")"
check "the origin saw one request" 1 "$(hits_of /a)"
check "X-Cache-Hits counts" 1 "$(hdr x-cache-hits)"
check "the same key" "$key1" "$(hdr x-cache-key)"
check_match "Age is a number" '^[0-9]+$' "$(hdr age)"
sleep 2.1
get "$base/a?$CC"
check "Age grows with time in cache" yes "$([ "$(hdr age)" -ge 2 ] && echo yes || echo "no: $(hdr age)")"
check "X-Cache-Hits: 2" 2 "$(hdr x-cache-hits)"
get -I "$base/a?$CC"
check "HEAD answered from the cached GET" "200 hit" "$(status) $(hdr x-cache-status)"
check "HEAD has the stored Content-Length" "$(wc -c <"$TN_TMP/b.a" | tr -d ' ')" "$(hdr content-length)"
check "HEAD did not reach the origin" 1 "$(hits_of /a)"
check "another query string is another entry" miss "$(get "$base/a?$CC&x=1"; hdr x-cache-status)"

# --- conditional requests from the client -------------------------------------------------
E='etag=v1&hdr=cache-control:max-age%3D300'
get "$base/e?$E"
get "$base/e?$E" -H 'If-None-Match: "v1"'
check "If-None-Match matching the stored ETag: 304 from the cache" "304 hit" "$(status) $(hdr x-cache-status)"
check "the 304 has no body" 0 "$(wc -c <"$TN_TMP/b" | tr -d ' ')"
get "$base/e?$E" -H 'If-None-Match: "other"'
check "a different ETag: 200" 200 "$(status)"
get "$base/lm?lm=1&hdr=cache-control:max-age%3D300"
get "$base/lm?lm=1&hdr=cache-control:max-age%3D300" -H 'If-Modified-Since: Tue, 02 Jan 2024 00:00:00 GMT'
check "If-Modified-Since after Last-Modified: 304" 304 "$(status)"
get "$base/lm?lm=1&hdr=cache-control:max-age%3D300" -H 'If-Modified-Since: Sun, 31 Dec 2023 00:00:00 GMT'
check "If-Modified-Since before Last-Modified: 200" 200 "$(status)"
check "conditionals never reached the origin" "1 1" "$(hits_of /e) $(hits_of /lm)"

# --- ranges -------------------------------------------------------------------------------------
get "$base/r?size=1000&$CC"
get "$base/r?size=1000&$CC" -H 'Range: bytes=10-19'
check "Range from a cached entry: 206" 206 "$(status)"
check "Content-Range" "bytes 10-19/1000" "$(hdr content-range)"
check "ten bytes" 10 "$(wc -c <"$TN_TMP/b" | tr -d ' ')"
get "$base/r?size=1000&$CC" -H 'Range: bytes=-5'
check "suffix range" "206 bytes 995-999/1000" "$(status) $(hdr content-range)"
get "$base/r?size=1000&$CC" -H 'Range: bytes=5000-'
check "unsatisfiable range: 416" "416 bytes */1000" "$(status) $(hdr content-range)"
get "$base/r?size=1000&$CC" -H 'Range: bytes=1-2,5-6'
check "several ranges: the whole body" "200 1000" "$(status) $(wc -c <"$TN_TMP/b" | tr -d ' ')"

# --- what is not stored --------------------------------------------------------------------------
for d in no-store private; do
    get "$base/ns-$d?hdr=cache-control:$d"
    get "$base/ns-$d?hdr=cache-control:$d"
    check "Cache-Control: $d is not stored" 2 "$(hits_of "/ns-$d")"
done
get "http://127.0.0.1:$f2/nf"
get "http://127.0.0.1:$f2/nf"
check "no freshness and no default_ttl (Envoy's config): not stored" 2 "$(hits_of /nf)"
get "$base/dt"
get "$base/dt"
check "no freshness, default_ttl 300s: stored" "1 hit" "$(hits_of /dt) $(hdr x-cache-status)"
get "$base/ck?$CC&hdr=set-cookie:s%3D1"
get "$base/ck?$CC&hdr=set-cookie:s%3D1"
check "Set-Cookie responses are not stored" 2 "$(hits_of /ck)"
get "$base/auth?$CC" -H 'Authorization: Basic eDp5'
get "$base/auth?$CC" -H 'Authorization: Basic eDp5'
check "Authorization without public: not stored" 2 "$(hits_of /auth)"
get "$base/a?$CC" -H 'Cache-Control: no-cache'
check "a client's no-cache revalidates (Refresh)" refresh "$(hdr x-cache-status)"
before=$(hits_of /a)
tn_curl -o /dev/null -X POST -d x "$base/a?$CC"
check "POST is not cached (bypass)" $((before + 1)) "$(hits_of /a)"
get "$base/a?$CC"
check "the POST's 200 invalidated the GET's entry (RFC 9111 4.4)" miss "$(hdr x-cache-status)"
get "$base/oic-none" -H 'Cache-Control: only-if-cached'
check "only-if-cached with nothing stored: 504" 504 "$(status)"
check "only-if-cached never goes upstream" 0 "$(hits_of /oic-none)"

# --- Vary -----------------------------------------------------------------------------------------
V="$CC&hdr=vary:accept-encoding"
get "$base/v?$V" -H 'Accept-Encoding: gzip'
get "$base/v?$V" -H 'Accept-Encoding: gzip'
check "Vary: the same request value hits" hit "$(hdr x-cache-status)"
get "$base/v?$V" -H 'Accept-Encoding: br'
check "Vary: another value misses" miss "$(hdr x-cache-status)"
get "$base/v?$V"
check "Vary: no value is a third variant" miss "$(hdr x-cache-status)"
get "$base/v?$V" -H 'Accept-Encoding: br'
check "Vary: each variant kept" hit "$(hdr x-cache-status)"
get "$base/vu?$CC&hdr=vary:user-agent"
get "$base/vu?$CC&hdr=vary:user-agent"
check "Vary on a header not allowed: not stored" 2 "$(hits_of /vu)"

# --- revalidation ------------------------------------------------------------------------------------
# max-age 3: Date has whole seconds, so a 1 s entry may already be stale
# when the next request comes
R='etag=r1&hdr=cache-control:max-age%3D3'
get "$base/rv?$R"
rv_id=$(json_get headers.x-request-id <"$TN_TMP/b")
sleep 4.2
get "$base/rv?$R"
check "stale entry revalidated: Refresh" "200 refresh" "$(status) $(hdr x-cache-status)"
check "the origin saw the revalidation" 2 "$(hits_of /rv)"
check "the origin answered 304: the stored body came back" "$rv_id" "$(json_get headers.x-request-id <"$TN_TMP/b")"
get "$base/rv?$R"
check "after the refresh: fresh again (Hit)" hit "$(hdr x-cache-status)"

# --- stale-while-revalidate ---------------------------------------------------------------------------
W='etag=w1&hdr=cache-control:max-age%3D3,%20stale-while-revalidate%3D60'
get "$base/swr?$W"
sleep 4.2
"$TN_PYTHON" - "$f" "/swr?$W" <<'EOF' >"$TN_TMP/swr.out" 2>&1
import http.client, sys, threading
port, path = int(sys.argv[1]), sys.argv[2]
seen = []
def one():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request("GET", path)
    r = c.getresponse(); r.read(); seen.append((r.status, r.getheader("x-cache-status")))
ts = [threading.Thread(target=one) for _ in range(10)]
for t in ts: t.start()
for t in ts: t.join()
print(sum(1 for s in seen if s == (200, "Hit")))
EOF
check "stale-while-revalidate: 10 concurrent requests all served the stale entry at once" 10 "$(tail -1 "$TN_TMP/swr.out")"
n=0
while [ "$(hits_of /swr)" -lt 2 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
sleep 0.2
check "stale-while-revalidate: one background revalidation reached the origin" 2 "$(hits_of /swr)"
get "$base/swr?$W"
check "after the background refresh: fresh (Age 0 or 1)" yes "$([ "$(hdr age)" -le 1 ] && echo yes || echo "no: age $(hdr age)")"

# --- coalescing -------------------------------------------------------------------------------------
"$TN_PYTHON" - "$f" <<'EOF' >"$TN_TMP/coal.out" 2>&1
import http.client, sys, threading
port = int(sys.argv[1])
codes = []
def one():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request("GET", "/coal?delay_ms=800&hdr=cache-control:max-age%3D300")
    r = c.getresponse(); r.read(); codes.append(r.status)
ts = [threading.Thread(target=one) for _ in range(50)]
for t in ts: t.start()
for t in ts: t.join()
print(sum(1 for c in codes if c == 200))
EOF
check "50 concurrent misses: all 200" 50 "$(tail -1 "$TN_TMP/coal.out")"
check "50 concurrent misses: one origin request" 1 "$(hits_of /coal)"

# --- purge ------------------------------------------------------------------------------------------------
get "$base/p/one"
get "$base/p/two"
get "$base/p/three"
get "$base/q/one?x=1"
check "admin POST /purge of one URL" '200 {"purged":1}' \
    "$(tn_curl -w '%{http_code} ' -o "$TN_TMP/pb" -X POST "$A/purge?hostname=127.0.0.1:$f&path=/p/one"; tr -d '\n' <"$TN_TMP/pb")"
check "admin POST /purge: a path with its query" 200 "$(http_status "$A/purge?path=/q/one%3Fx%3D1" -X POST)"
check "admin POST /purge: another host purges nothing" 404 "$(http_status "$A/purge?hostname=example.com&path=/p/two" -X POST)"
get "$base/p/one"
check "after the purge: a miss" miss "$(hdr x-cache-status)"
check "purging nothing: 404" 404 "$(http_status "$A/purge?path=/nothing" -X POST)"
check "GET /purge: 405" 405 "$(http_status "$A/purge?path=/p/one")"
check "/purge without path: 400" 400 "$(http_status "$A/purge" -X POST)"
check "PURGE without the key: 401" 401 "$(http_status "$base/p/two" -X PURGE)"
check "PURGE with a wrong key: 401" 401 "$(http_status "$base/p/two" -X PURGE -H 'X-Purge-Key: nope')"
check "PURGE with X-Purge-Method: POST purges nothing" 404 "$(http_status "$base/p/two" -X PURGE -H 'X-Purge-Key: s3cret' -H 'X-Purge-Method: POST')"
check "PURGE with the key: 200" 200 "$(http_status "$base/p/two" -X PURGE -H 'X-Purge-Key: s3cret')"
check "PURGE again: 404" 404 "$(http_status "$base/p/two" -X PURGE -H 'X-Purge-Key: s3cret')"
get "$base/p/two"
check "after PURGE: a miss" miss "$(hdr x-cache-status)"
check "PURGE /p/** (wildcard): 200" 200 "$(http_status "$base/p/**" -X PURGE -H 'X-Purge-Key: s3cret')"
get "$base/p/three"
check "wildcard purged /p/three" miss "$(hdr x-cache-status)"
get "$base/k?$CC"
get "$base/k?$CC"
k=$(hdr x-cache-key)
check "Kong: GET /proxy-cache/<key>" 200 "$(http_status "$A/proxy-cache/$k")"
check "Kong: the entry's path" "/k?$CC" "$(tn_curl "$A/proxy-cache/$k" | json_get path)"
check "Kong: DELETE /proxy-cache/<key>" 204 "$(http_status "$A/proxy-cache/$k" -X DELETE)"
check "Kong: gone" 404 "$(http_status "$A/proxy-cache/$k")"
check "Kong: DELETE unknown key" 404 "$(http_status "$A/proxy-cache/0123456789abcdef0123456789abcdef" -X DELETE)"
check "Kong: DELETE /proxy-cache" 204 "$(http_status "$A/proxy-cache" -X DELETE)"
get "$base/a?$CC"
check "after DELETE /proxy-cache: everything misses" miss "$(hdr x-cache-status)"

# --- a purge racing a fill: the fill must not bring back what was purged ---------------------------
tn_curl -o /dev/null "$base/race?delay_ms=1500" &
race_pid=$!
sleep 0.5
tn_curl -s -o /dev/null -X POST "$A/purge?path=/race*"
wait $race_pid
get "$base/race?delay_ms=1500"
check "a fill that raced a purge did not store (the next request is a miss)" miss "$(hdr x-cache-status)"
get "$base/race?delay_ms=1500"
check "the next fill stores as usual" hit "$(hdr x-cache-status)"

# --- Envoy's plain config: Age only ----------------------------------------------------------------------
get "http://127.0.0.1:$f2/plain?$CC"
get "http://127.0.0.1:$f2/plain?$CC"
check "Envoy's CacheConfig: served from cache" 1 "$(hits_of /plain)"
check "Envoy's CacheConfig: no X-Cache-Status" "" "$(hdr x-cache-status)"
check_match "Envoy's CacheConfig: Age" '^[0-9]+$' "$(hdr age)"

# --- 10 MB entry ----------------------------------------------------------------------------------------
tn_curl -o "$TN_TMP/big1" "$base/big?size=10485760&$CC"
tn_curl -D "$TN_TMP/bh" -o "$TN_TMP/big2" "$base/big?size=10485760&$CC"
check "10 MB: the second came from the cache" "x-cache-status: hit" "$(tr -d '\r' <"$TN_TMP/bh" | tr 'A-Z' 'a-z' | grep x-cache-status)"
check "10 MB: the same bytes" "$(sha256sum <"$TN_TMP/big1" | cut -c1-64)" "$(sha256sum <"$TN_TMP/big2" | cut -c1-64)"

# --- the size bound: a flood of unique URLs into 2 MiB ----------------------------------------------------
"$TN_PYTHON" - "$f" <<'EOF' >"$TN_TMP/flood.out" 2>&1
import http.client, sys
port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
ok = 0
for i in range(600):
    c.request("GET", "/flood/%d?size=40000&hdr=cache-control:max-age%%3D300" % i)
    r = c.getresponse(); r.read(); ok += r.status == 200
print(ok)
EOF
check "flood: every request answered" 600 "$(tail -1 "$TN_TMP/flood.out")"
sleep 0.5
tot=$(tn_curl "$A/cache")
check "the store stays within max_size_bytes" yes "$(echo "$tot" | "$TN_PYTHON" -c 'import json,sys; s=[x for x in json.load(sys.stdin) if x["name"]=="edge-1"][0]; print("yes" if s["bytes"] <= s["max_bytes"] == 16777216 else "no: %s" % s)')"
check "evictions happened" yes "$(echo "$tot" | "$TN_PYTHON" -c 'import json,sys; s=[x for x in json.load(sys.stdin) if x["name"]=="edge-1"][0]; print("yes" if s["evictions"] > 0 else "no: %s" % s)')"
get "$base/flood/0?size=40000&$CC"
check "the least recently used URL was evicted" miss "$(hdr x-cache-status)"
# five more URLs into the full store, paced: an insert finding the store full
# is refused while the main thread makes room (the bound holds), so a flood's
# last inserts may all have met that on a loaded machine; these must stay
for i in 1000 1001 1002 1003 1004; do
    get "$base/flood/$i?size=40000&$CC"
    sleep 0.3
done
recent=0
for i in 1000 1001 1002 1003 1004; do
    get "$base/flood/$i?size=40000&$CC"
    [ "$(hdr x-cache-status)" = hit ] && recent=$((recent + 1))
done
check "the most recent URLs are still cached (at least 4 of the last 5)" yes "$([ $recent -ge 4 ] && echo yes || echo "no: $recent")"

# --- stale when the origin is down -----------------------------------------------------------------------
get "$base/st?hdr=cache-control:max-age%3D1"
st_first="$(status) $(hdr x-cache-status) $(tn_curl "$A/cache" | tr -d '\n')"
sleep 2.2
tn_kill "$web_pid"
wait_port_closed "$o1" 2>/dev/null || sleep 0.3
get "$base/st?hdr=cache-control:max-age%3D1"
[ "$(status) $(hdr x-cache-status)" = "200 hit" ] ||
    echo "# when stored: $st_first; now: $(tn_curl "$A/cache"); $(tn_curl "$A/stats?filter=cache")" >&2
check "origin down: the stale entry is served" "200 hit" "$(status) $(hdr x-cache-status)"
get "$base/never-cached"
check "origin down, nothing stored: 503" 503 "$(status)"

# --- stats ----------------------------------------------------------------------------------------------------
st=$(tn_curl "$A/stats?filter=%5Ehttp%5C.front%5C.cache%5C.")
for s in hit miss refresh bypass insert purge coalesced stale_served; do
    v=$(echo "$st" | sed -n "s/^http\.front\.cache\.$s: //p")
    check "stat http.front.cache.$s moved" yes "$([ "${v:-0}" -gt 0 ] && echo yes || echo "no: ${v:-absent}")"
done
check_contains "Prometheus: envoy_http_cache_hit" 'envoy_http_cache_hit{envoy_http_conn_manager_prefix="front"}' "$(tn_curl "$A/stats/prometheus")"

stop_tern
check "tern exits 0" 0 "$TN_RC"
it_sanitizers
tn_summary
