#!/usr/bin/env bash
# End-to-end: real ccache 4.7.5 (Debian's ccache, with gcc/g++) using ocicached's
# HTTP cache endpoint (/cache/<namespace>/...) as its remote storage, the cache
# stored in a real docker-registry on loopback.
#
# The sample test/e2e/ccachews (24 generated units, 22 C and 2 C++, plus main.c:
# 25 translation units) is built once to fill the cache; then everything local is
# wiped (ccache's directory, the objects, ocicached and its --dir) and a fresh
# ocicached on the same registry must give every compile as a ccache remote hit,
# with identical objects. Done from scratch for layout=subdirs, flat and bazel.
# Then tokens (Basic with the token as password, bearer-token, a read-only token
# writing nothing), a few direct HTTP checks of the contract ccache relies on
# (401/403, last write wins, DELETE), and a stopped registry (builds succeed, the
# server keeps answering).
#
# ccache's own client behaviour (what it sends, which answers it honours) is in
# the comments below where a check depends on it: GET hit = any 2xx, anything else
# is a silent miss; a failed PUT counts remote_storage_error and ccache stops using
# the remote for the rest of that compile.
#
# Identical objects: the sample is always built in the same directory ($WORK/ccachews):
# with -g gcc records the working directory in the debug info and ccache hashes it
# (hash_dir), so both builds compile the same bytes under the same keys.
#
# As root, the script runs itself in a network namespace with only loopback.
if [[ -z ${OCICACHE_E2E_NETNS:-} ]] && unshare -n true 2>/dev/null; then
  exec unshare -n env OCICACHE_E2E_NETNS=1 bash -c 'ip link set lo up && exec bash "$0"' "$0"
fi
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/daemon_lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

command -v ccache >/dev/null && command -v gcc >/dev/null && command -v g++ >/dev/null ||
  { fail ccache-installed "ccache, gcc and g++ are needed (apt-get install ccache g++)"; exit 1; }
ver=$(ccache --version | head -1)
[[ $ver == *" 4."* ]] && pass ccache-version || fail ccache-version "want ccache 4.x: $ver"

# Private HOME and ccache configuration: neither ~/.ccache nor /etc/ccache.conf count.
export HOME=$WORK/home CCACHE_DIR=$WORK/ccache CCACHE_CONFIGPATH=$WORK/ccache.conf
mkdir -p "$HOME" && : >"$CCACHE_CONFIGPATH"
unset CCACHE_REMOTE_STORAGE CCACHE_REMOTE_ONLY CCACHE_DISABLE CCACHE_RECACHE CCACHE_READONLY

CWS=$WORK/ccachews
cp -r "$ROOT/test/e2e/ccachews" "$CWS" && (cd "$CWS" && sh gen.sh 24) ||
  { fail ccache-sample "could not generate the sample"; exit 1; }
N=$(make -s -C "$CWS" objects | wc -w)
((N >= 20)) && pass sample-units || fail sample-units "want >= 20 translation units, got $N"

# build NAME REMOTE_STORAGE [EXTRA_CFLAGS]: a clean `make -j2` of the sample with
# ccache (stats zeroed first) and the given remote_storage; PASS/FAIL NAME. Log in
# $LOG, ccache's counters in ST[...] (from --print-stats), seconds in SECS.
declare -A ST
build() {
  local name=$1 remote=$2 extra=${3:-}
  LOG=$WORK/logs/$name.log
  mkdir -p "$WORK/logs"
  make -s -C "$CWS" clean
  ccache -z >/dev/null
  local t0=$SECONDS rc
  CCACHE_REMOTE_STORAGE=$remote timeout 300 make -C "$CWS" -j2 CC="ccache gcc" CXX="ccache g++" \
    EXTRA="$extra" >"$LOG" 2>&1
  rc=$?
  SECS=$((SECONDS - t0))
  ST=()
  while IFS=$'\t' read -r k v; do ST[$k]=$v; done < <(ccache --print-stats 2>/dev/null)
  if ((rc == 0)) && [[ -x $CWS/out/sample ]]; then pass "$name"; return 0; fi
  fail "$name" "make exited $rc: $(tail -3 "$LOG" | tr '\n' ' ' | cut -c1-300)"
  return 1
}

stats_line() {
  local k out=""
  for k in cache_miss direct_cache_hit preprocessed_cache_hit local_storage_hit remote_storage_hit \
    remote_storage_miss remote_storage_read_hit remote_storage_read_miss remote_storage_write \
    remote_storage_error remote_storage_timeout; do
    out+="$k=${ST[$k]:-?} "
  done
  echo "$out"
}

# expect_stats NAME K=V...: ccache's counters of the last build (missing counts as 0).
expect_stats() {
  local name=$1 kv k v bad=""; shift
  for kv in "$@"; do
    k=${kv%%=*} v=${kv#*=}
    [[ ${ST[$k]:-0} == "$v" ]] || bad+="$k=${ST[$k]:-0} (want $v) "
  done
  if [[ -z $bad ]]; then pass "$name"; else fail "$name" "$bad; all: $(stats_line)"; fi
}

# all_misses NAME / all_remote_hits NAME: every one of the N compiles missed
# (and was written to the remote: a result and a manifest each), or came from the
# remote storage (a manifest and a result read each, nothing compiled).
all_misses() {
  expect_stats "$1" cache_miss="$N" remote_storage_hit=0 remote_storage_write=$((2 * N)) remote_storage_error=0
}
all_remote_hits() {
  expect_stats "$1" cache_miss=0 local_storage_hit=0 remote_storage_hit="$N" \
    remote_storage_read_hit=$((2 * N)) remote_storage_error=0
}

digest() { (cd "$CWS/out" && sha256sum ./*.o sample && ./sample); }
same_outputs() {
  local now; now=$(digest 2>&1)
  if [[ -n $DIGEST0 && $now == "$DIGEST0" ]]; then pass "$1"
  else fail "$1" "outputs differ: $(diff <(echo "$DIGEST0") <(echo "$now") | head -4 | tr '\n' ' ')"; fi
}

# wipe: everything local to the client: ccache's directory and the build outputs.
wipe() { rm -rf "$CCACHE_DIR" "$CWS/out"; }

# The registry's content: entry keys and manifests (`ocicache ls`), and its files.
entries() { timeout 60 "$OCICACHE_BIN" --repo "$REPO" --no-dir ls --json 2>&1 | python3 -c '
import json, sys
try:
    for e in json.load(sys.stdin): print(e["key"], e["manifest"])
except Exception as e:
    print("unreadable:", e)' | sort; }
registry_files() { find "$WORK/reg-REG" -path '*docker/registry*' -type f -printf '%P %s\n' | sort; }
snapshot() { echo "entries:"; entries; echo "files:"; registry_files; }
nothing_written() {  # NAME BEFORE
  local after; after=$(snapshot)
  if [[ -n $2 && $2 == "$after" ]]; then pass "$1"
  else fail "$1" "registry changed: $(diff <(echo "$2") <(echo "$after") | head -4 | tr '\n' ' ')"; fi
}

# status_kv HOSTPORT: "requests hits misses" of the key/value protocol (daemon_lib.sh).
status_kv() { http_status "$1" kv; }

# http_code NAME WANT CURL_ARGS...: curl's status code must be WANT (a regex).
http_code() {
  local name=$1 want=$2; shift 2
  local code; code=$(curl -s -o "$WORK/body" -w '%{http_code}' --max-time 10 "$@")
  if [[ $code =~ ^($want)$ ]]; then pass "$name"; else fail "$name" "HTTP $code, want $want: $(head -c 200 "$WORK/body")"; fi
}

start_registry none REG || { fail registry-start "registryctl did not start"; exit 1; }
REG_PID=${REG_PIDS[-1]}
REPO=$REG/ccache/cache
TIMES=()

# --- each layout from scratch: fill, wipe everything local, rebuild from the registry ---
for layout in subdirs flat bazel; do
  wipe
  start_http A1 "$WORK/tier-$layout-1" ||
    { fail "$layout-ocicached-start" "$(tail -3 "$WORK/A1.err")"; continue; }
  url="http://$A1_HTTP/cache/ccache|layout=$layout"
  before=$(entries | wc -l)
  build "$layout-fill" "$url" && all_misses "$layout-fill-all-misses"
  DIGEST0=$(digest 2>&1)
  TIMES+=("$layout-fill=${SECS}s")
  stop_daemon A1
  after=$(entries | wc -l)
  ((after - before >= 2 * N)) && pass "$layout-fill-in-registry" ||
    fail "$layout-fill-in-registry" "want >= $((2 * N)) new entries in $REPO, got $((after - before))"

  wipe
  rm -rf "$WORK/tier-$layout-1"
  start_http A2 "$WORK/tier-$layout-2" ||
    { fail "$layout-ocicached-restart" "$(tail -3 "$WORK/A2.err")"; continue; }
  build "$layout-rebuild" "http://$A2_HTTP/cache/ccache|layout=$layout" && all_remote_hits "$layout-rebuild-all-remote-hits"
  TIMES+=("$layout-rebuild=${SECS}s")
  same_outputs "$layout-rebuild-same-outputs"
  read -r req hits misses < <(status_kv "$A2_HTTP")
  [[ $hits =~ ^[0-9]+$ ]] && ((hits >= 2 * N)) && [[ $misses == 0 ]] && pass "$layout-status-hits" ||
    fail "$layout-status-hits" "/status kv: requests=$req hits=$hits misses=$misses; want hits >= $((2 * N)), misses 0"
  stop_daemon A2
done

# --- the HTTP contract ccache relies on, checked directly; tokens ---------------------
RO=ccache-reader-0123456789
RW=ccache-writer-0123456789
printf '# e2e tokens\n%s read\n%s write\n' "$RO" "$RW" >"$WORK/tokens"
wipe
start_http T "$WORK/tier-tokens" --tokens_file="$WORK/tokens" ||
  { fail ocicached-tokens-start "$(tail -3 "$WORK/T.err")"; exit 1; }
P=http://$T_HTTP/cache/ccache-probe/ab/cdef
printf 'first' >"$WORK/v1"
printf 'second value' >"$WORK/v2"
http_code http-no-token-401 401 "$P"
http_code http-unknown-token-401 401 -H "Authorization: Bearer not-a-token-0123456789" "$P"
http_code http-readonly-put-403 403 -X PUT --data-binary @"$WORK/v1" -H "Authorization: Bearer $RO" "$P"
http_code http-readonly-basic-put-403 403 -X PUT --data-binary @"$WORK/v1" -u "anyone:$RO" "$P"
http_code http-miss-404 404 -H "Authorization: Bearer $RO" "$P"
http_code http-put '200|201|204' -X PUT --data-binary @"$WORK/v1" -H "Content-Type: application/octet-stream" \
  -H "Authorization: Bearer $RW" "$P"
http_code http-get-basic 200 -u "someone:$RW" "$P"
[[ $(cat "$WORK/body") == first ]] && pass http-get-body || fail http-get-body "got $(head -c 100 "$WORK/body")"
# ccache re-PUTs manifests with new content under the same key: the last write wins.
http_code http-overwrite '200|201|204' -X PUT --data-binary @"$WORK/v2" -u "x:$RW" "$P"
http_code http-get-readonly 200 -H "Authorization: Bearer $RO" "$P"
[[ $(cat "$WORK/body") == "second value" ]] && pass http-last-write-wins ||
  fail http-last-write-wins "GET after overwrite: $(head -c 100 "$WORK/body")"
hdr=$(curl -s -I --max-time 10 -H "Authorization: Bearer $RO" "$P" | tr -d '\r')
grep -qi '^content-length: 12$' <<<"$hdr" && pass http-head-length || fail http-head-length "HEAD: $(head -5 <<<"$hdr" | tr '\n' ' ')"
http_code http-delete-readonly-403 403 -X DELETE -H "Authorization: Bearer $RO" "$P"
http_code http-delete '200|202|204' -X DELETE -H "Authorization: Bearer $RW" "$P"
http_code http-deleted-404 404 -H "Authorization: Bearer $RW" "$P"

# Fill with the write token as a Basic password (user:TOKEN@ in the URL).
S1=-DCCACHEWS_SALT=1
build token-fill "http://ccache:$RW@$T_HTTP/cache/ccache" "$S1" && all_misses token-fill-all-misses
DIGEST0=$(digest 2>&1)
# Without a token: GETs answer 401, which ccache takes as misses; its PUTs fail.
wipe
before=$(snapshot)
build no-token "http://$T_HTTP/cache/ccache" "$S1" &&
  expect_stats no-token-all-misses cache_miss="$N" remote_storage_hit=0 remote_storage_write=0
# The read-only token with ccache's read-only=true: every compile a remote hit.
wipe
build readonly "http://$T_HTTP/cache/ccache|bearer-token=$RO|read-only=true" "$S1" &&
  all_remote_hits readonly-all-remote-hits
same_outputs readonly-same-outputs
# The read-only token where ccache tries to write (new keys): 403 on each compile's
# first PUT (ccache counts an error and stops writing for that compile), builds fine.
wipe
build readonly-writes "http://$T_HTTP/cache/ccache|bearer-token=$RO" -DCCACHEWS_SALT=2 &&
  expect_stats readonly-writes-refused cache_miss="$N" remote_storage_hit=0 remote_storage_write=0 \
    remote_storage_error="$N"
nothing_written readonly-nothing-written "$before"
# The same build with the write token does write (so the check above can fail).
wipe
build writer-writes "http://$T_HTTP/cache/ccache|bearer-token=$RW" -DCCACHEWS_SALT=2 &&
  all_misses writer-writes-all
[[ $(snapshot) != "$before" ]] && pass writer-writes-registry || fail writer-writes-registry "registry unchanged"
stop_daemon T

# --- the registry stopped: misses, the server keeps answering ------------------------
wipe
start_http O "$WORK/tier-outage" || { fail ocicached-outage-start "$(tail -3 "$WORK/O.err")"; exit 1; }
kill "$REG_PID" 2>/dev/null
wait "$REG_PID" 2>/dev/null
curl -s --max-time 2 "http://$REG/v2/" >/dev/null && fail registry-stopped "registry still answers" || pass registry-stopped
http_code outage-status 200 "http://$O_HTTP/status"
S3=-DCCACHEWS_SALT=3
build outage-build "http://$O_HTTP/cache/ccache" "$S3" &&
  expect_stats outage-all-misses cache_miss="$N" remote_storage_hit=0
TIMES+=("outage-build=${SECS}s")
# Each compile reads twice and writes twice; a registry that is down must not make
# any of that slow (ccache gives up on a request after 10 s, and counts an error).
((SECS <= 60)) && [[ ${ST[remote_storage_error]:-0} == 0 ]] && pass outage-fast-no-errors ||
  fail outage-fast-no-errors "build took ${SECS}s; $(stats_line)"
http_code outage-status-after 200 "http://$O_HTTP/status"
# What was written during the outage is in the server's local tier: a rebuild with
# an empty ccache directory gets every compile from the server.
wipe
build outage-rebuild "http://$O_HTTP/cache/ccache" "$S3" && all_remote_hits outage-rebuild-local-tier-hits
kill -0 "$O_PID" 2>/dev/null && pass outage-server-alive || fail outage-server-alive "ocicached exited: $(tail -3 "$WORK/O.err")"
stop_daemon O

# No request of the whole run was answered with a server error (access log lines
# 'HTTP kv METHOD "PATH" STATUS ...' in the daemons' logs).
errs=$(cat "$WORK"/*.err 2>/dev/null | grep -E ' HTTP [a-z]+ [A-Z]+ "[^"]*" 5[0-9][0-9] ' | head -3)
[[ -z $errs ]] && pass no-server-errors || fail no-server-errors "$(cut -c1-400 <<<"$errs")"

echo "timings (N=$N units): ${TIMES[*]}"
