#!/usr/bin/env bash
# End-to-end: real Bazel 4.2.3 with --remote_cache=http://... (bazel-remote's
# HTTP protocol) against ocicached's HTTP cache endpoint, the cache stored in a
# real docker-registry on loopback.
#
# The sample workspace (test/e2e/bazelws) fills the cache over HTTP; after
# `bazel clean` and with a fresh ocicached whose local tier is empty (a fresh
# VM), every process must be a remote cache hit with identical outputs. The
# actions written over HTTP must be hits over gRPC (REAPI), and the other way
# round for an instance prefix. Then --remote_download_minimal, a read-only
# token in the URL (Bazel sends Basic auth with the URL-safe base64 alphabet),
# and a stopped registry (builds succeed as misses).
if [[ -z ${OCICACHE_E2E_NETNS:-} ]] && unshare -n true 2>/dev/null; then
  exec unshare -n env OCICACHE_E2E_NETNS=1 bash -c 'ip link set lo up && exec bash "$0"' "$0"
fi
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bazel_lib.sh"
: "${OCICACHED_BIN:?built ocicached binary}"
trap 'bzl_shutdown; cleanup' EXIT

start_registry none REG || { fail registry-start "registryctl did not start"; exit 1; }
bzl_setup || { fail bazel-workspace "could not copy the sample workspace"; exit 1; }
REPO=$REG/bazel/http

# --- fill over HTTP, rebuild from a fresh server (empty local tier) -----------------
start_ocicached D1 --repo "$REPO" --dir "$WORK/tier1" || { fail ocicached-start "$(tail -3 "$WORK/D1.err")"; exit 1; }
[[ $D1_HTTP =~ ^127\.0\.0\.1:[0-9]+$ ]] && pass http-port-file || fail http-port-file "got \"$D1_HTTP\""
build http-fill --remote_cache="http://$D1_HTTP" || { tail -30 "$LOG"; exit 1; }
counts
N=$EX
if [[ $N =~ ^[0-9]+$ ]] && ((N >= 10)) && [[ $HITS == 0 ]]; then pass http-fill-all-executed
else fail http-fill-all-executed "want >=10 processes, none from the empty cache: $(bzl_processes_line "$LOG")"; fi
DIGEST0=$(bzl_outputs_digest)
[[ $(grep -cE '^[0-9a-f]{64}  ' <<<"$DIGEST0") == 12 ]] && pass http-fill-outputs || fail http-fill-outputs "$DIGEST0"
grep -q 'HTTP bazel PUT "/ac/' "$WORK/D1.err" && pass http-fill-wrote-ac \
  || fail http-fill-wrote-ac "no /ac/ PUT in the access log"
packed_outputs http-fill-listing-packed "$REG" bazel/http
stop_ocicached D1

start_ocicached D2 --repo "$REPO" --dir "$WORK/tier2" || { fail ocicached-restart "$(tail -3 "$WORK/D2.err")"; exit 1; }
rebuild http-fresh-vm --remote_cache="http://$D2_HTTP" && all_hits http-fresh-vm-all-hits
same_outputs http-fresh-vm-same-outputs
[[ $("$(bzl_bin)/hello" 2>&1) == "hello, world" ]] && pass http-binary-runs \
  || fail http-binary-runs "hello from the cache: $("$(bzl_bin)/hello" 2>&1 | head -2)"

# --- written over HTTP, a hit over gRPC; and the other way, with an instance --------
rebuild http-to-grpc --remote_cache="grpc://$D2" && all_hits http-to-grpc-all-hits
same_outputs http-to-grpc-same-outputs
rebuild grpc-instance-fill --remote_cache="grpc://$D2" --remote_instance_name=team/y
counts
[[ $EX == "$N" && $HITS == 0 ]] && pass grpc-instance-separate \
  || fail grpc-instance-separate "want $N misses in a new instance: $(bzl_processes_line "$LOG")"
rebuild grpc-to-http --remote_cache="http://$D2_HTTP/team/y" && all_hits grpc-to-http-all-hits
same_outputs grpc-to-http-same-outputs

# --- minimal download over HTTP -------------------------------------------------------
rebuild http-minimal --remote_cache="http://$D2_HTTP" --remote_download_minimal &&
  all_hits http-minimal-all-hits
[[ ! -e $(bzl_bin)/big.bin ]] && pass http-minimal-not-downloaded \
  || fail http-minimal-not-downloaded "big.bin was downloaded"
stop_ocicached D2

# --- tokens in the URL: Basic auth, URL-safe base64 ----------------------------------
# '?' and '>' make the standard and URL-safe alphabets differ in the encoding.
RO='reader??>>reader??>>'
RW='writer??>>writer??>>'
printf '%s read\n%s write\n' "$RO" "$RW" >"$WORK/tokens"
start_ocicached D3 --repo "$REPO" --dir "$WORK/tier3" --tokens_file "$WORK/tokens" ||
  { fail ocicached-tokens-start "$(tail -3 "$WORK/D3.err")"; exit 1; }
enc() { python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
before=$(registry_files)
rebuild http-readonly --remote_cache="http://ci:$(enc "$RO")@$D3_HTTP" && all_hits http-readonly-all-hits
same_outputs http-readonly-same-outputs
build http-readonly-miss --remote_cache="http://ci:$(enc "$RO")@$D3_HTTP" --copt=-DOCICACHE_E2E_SALT=7
counts
[[ $EX =~ ^[0-9]+$ ]] && ((EX > HITS)) && pass http-readonly-miss-ran-locally \
  || fail http-readonly-miss-ran-locally "$(bzl_processes_line "$LOG")"
grep -q ' 403 ' "$WORK/D3.err" && pass http-readonly-writes-refused \
  || fail http-readonly-writes-refused "no 403 in the access log"
after=$(registry_files)
[[ -n $before && $before == "$after" ]] && pass http-readonly-nothing-written \
  || fail http-readonly-nothing-written "$(diff <(echo "$before") <(echo "$after") | head -5)"
build http-writer-miss --remote_cache="http://ci:$(enc "$RW")@$D3_HTTP" --copt=-DOCICACHE_E2E_SALT=8
[[ $(registry_files) != "$after" ]] && pass http-writer-uploads || fail http-writer-uploads "registry unchanged"
rebuild http-no-token --remote_cache="http://$D3_HTTP" --copt=-DOCICACHE_E2E_SALT=8
counts
[[ $HITS == 0 ]] && pass http-no-token-no-hits || fail http-no-token-no-hits "$(bzl_processes_line "$LOG")"
stop_ocicached D3

# --- the registry stopped: builds succeed as misses, nothing corrupted ---------------
start_ocicached D4 --repo "$REPO" --dir "$WORK/tier4" || { fail ocicached-outage-start "$(tail -3 "$WORK/D4.err")"; exit 1; }
kill "${REG_PIDS[0]}" 2>/dev/null; wait "${REG_PIDS[0]}" 2>/dev/null
curl -s --max-time 2 "http://$REG/v2/" >/dev/null && fail registry-stopped "registry still answers" || pass registry-stopped
t0=$(date +%s)
rebuild http-registry-down --remote_cache="http://$D4_HTTP" --copt=-DOCICACHE_E2E_SALT=9
counts
[[ $EX =~ ^[0-9]+$ ]] && ((EX >= N)) && pass http-registry-down-built \
  || fail http-registry-down-built "$(bzl_processes_line "$LOG")"
grep -qE '^(WARNING|ERROR).*(Remote Cache|remote cache)' "$LOG" && \
  echo "note: bazel warned: $(grep -E 'Remote Cache|remote cache' "$LOG" | head -1 | cut -c1-200)"
# What the outage build stored locally is served back (the local tier).
rebuild http-registry-down-rebuild --remote_cache="http://$D4_HTTP" --copt=-DOCICACHE_E2E_SALT=9 &&
  all_hits http-registry-down-local-hits
echo "registry-down builds took $(( $(date +%s) - t0 )) s"
stop_ocicached D4
