#!/usr/bin/env bash
# End-to-end: real Bazel 4.2.3 (Debian's bazel-bootstrap) as a REAPI client of
# ocicached, with the cache stored in a real docker-registry on loopback.
#
# The sample workspace test/e2e/bazelws (C++ library, binary and test, a 32 MiB
# generated file, a tree artifact) is built with --remote_cache; after `bazel clean`
# a rebuild must get every executed process from the remote cache, with identical
# outputs. Then the same from a restarted ocicached whose local tier is empty (only
# the registry holds the cache), with --remote_instance_name, with
# --remote_download_minimal, with a read-only token (and nothing written), and over
# TLS and mutual TLS.
#
# The nested Bazel must not need the network: where the script may create a
# network namespace (as root), it runs itself in one that has only loopback, so
# any download would fail the build.
if [[ -z ${OCICACHE_E2E_NETNS:-} ]] && unshare -n true 2>/dev/null; then
  exec unshare -n env OCICACHE_E2E_NETNS=1 bash -c 'ip link set lo up && exec bash "$0"' "$0"
fi
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bazel_lib.sh"
: "${OCICACHED_BIN:?built ocicached binary}"
trap 'bzl_shutdown; cleanup' EXIT

if [[ -n ${OCICACHE_E2E_NETNS:-} ]]; then
  links=$(ip -o link show | awk -F': ' '{printf "%s ", $2}')
  [[ $links == "lo " ]] && pass network-loopback-only || fail network-loopback-only "interfaces: $links"
else
  echo "bazel_test: no network namespace (not root?): the nested Bazel could reach the network" >&2
fi

# build_fails NAME TEXT ARGS...: the build must fail, saying TEXT (PASS/FAIL NAME);
# log in $LOG.
build_fails() {
  local name=$1 text=$2; shift 2
  LOG=$WORK/bzl/$name.log
  if bzl_build "$LOG" "$@"; then fail "$name" "bazel succeeded"; return 1; fi
  expect_contains "$name" "$(cat "$LOG")" "$text"
}

start_registry none REG || { fail registry-start "registryctl did not start"; exit 1; }
bzl_setup || { fail bazel-workspace "could not copy the sample workspace"; exit 1; }
REPO=$REG/bazel/cache

# --- fill the cache, then rebuild from it -----------------------------------------
start_ocicached D1 --repo "$REPO" --dir "$WORK/tier1" || { fail ocicached-start "$(tail -3 "$WORK/D1.err")"; exit 1; }
build fill --remote_cache="grpc://$D1" || { tail -30 "$LOG"; exit 1; }
counts
N=$EX
if [[ $N =~ ^[0-9]+$ ]] && ((N >= 10)) && [[ $HITS == 0 ]]; then pass fill-all-executed
else fail fill-all-executed "want >=10 processes, none from the empty cache: $(bzl_processes_line "$LOG")"; fi
DIGEST0=$(bzl_outputs_digest)
[[ $(grep -cE '^[0-9a-f]{64}  ' <<<"$DIGEST0") == 12 ]] && pass fill-outputs || fail fill-outputs "$DIGEST0"
[[ $(stat -c %s "$(bzl_bin)/big.bin") == 33554432 ]] && pass fill-large-output \
  || fail fill-large-output "big.bin is not 32 MiB"
catalog=$(curl -s --max-time 10 "http://$REG/v2/_catalog")
expect_contains fill-in-registry "$catalog" '"bazel/cache"'
packed_outputs fill-listing-packed "$REG" bazel/cache

rebuild rebuild --remote_cache="grpc://$D1" && all_hits rebuild-all-hits
same_outputs rebuild-same-outputs
[[ $("$(bzl_bin)/hello" 2>&1) == "hello, world" ]] && pass rebuild-binary-runs \
  || fail rebuild-binary-runs "hello from the cache: $("$(bzl_bin)/hello" 2>&1 | head -2)"

# --- a restarted server with an empty local tier: only the registry has the cache ---
stop_ocicached D1
start_ocicached D2 --repo "$REPO" --dir "$WORK/tier2" || { fail ocicached-restart "$(tail -3 "$WORK/D2.err")"; exit 1; }
rebuild empty-tier --remote_cache="grpc://$D2" && all_hits empty-tier-all-hits
same_outputs empty-tier-same-outputs

# --- an instance name is its own repository: REPO/team/x ---------------------------
rebuild instance-fill --remote_cache="grpc://$D2" --remote_instance_name=team/x
counts
[[ $EX == "$N" && $HITS == 0 ]] && pass instance-separate \
  || fail instance-separate "want $N misses in a new instance: $(bzl_processes_line "$LOG")"
catalog=$(curl -s --max-time 10 "http://$REG/v2/_catalog")
expect_contains instance-repository "$catalog" '"bazel/cache/team/x"'
rebuild instance-rebuild --remote_cache="grpc://$D2" --remote_instance_name=team/x &&
  all_hits instance-all-hits
same_outputs instance-same-outputs

# --- --remote_download_minimal: hits without downloading the outputs ----------------
rebuild minimal --remote_cache="grpc://$D2" --remote_download_minimal && all_hits minimal-all-hits
[[ ! -e $(bzl_bin)/big.bin ]] && pass minimal-not-downloaded \
  || fail minimal-not-downloaded "big.bin was downloaded"
stop_ocicached D2

# --- tokens: read-only clients hit and write nothing ---------------------------------
RO=bazel-reader-0123456789
RW=bazel-writer-0123456789
printf '# e2e tokens\n%s read\n%s write\n' "$RO" "$RW" >"$WORK/tokens"
start_ocicached D3 --repo "$REPO" --dir "$WORK/tier3" --tokens_file "$WORK/tokens" ||
  { fail ocicached-tokens-start "$(tail -3 "$WORK/D3.err")"; exit 1; }
bzl_clean
build_fails token-required UNAUTHENTICATED --remote_cache="grpc://$D3" --remote_retries=0
# update_enabled=false in the capabilities: Bazel refuses to upload with a read token.
build_fails readonly-refuses-upload "not authorized to write" --remote_cache="grpc://$D3" \
  --remote_header="authorization=Bearer $RO"
before=$(registry_files)
build readonly --remote_cache="grpc://$D3" --remote_header="authorization=Bearer $RO" \
  --noremote_upload_local_results && all_hits readonly-all-hits
same_outputs readonly-same-outputs
# A changed compiler flag: misses, run locally, and nothing reaches the registry.
build readonly-miss --remote_cache="grpc://$D3" --remote_header="authorization=Bearer $RO" \
  --noremote_upload_local_results --copt=-DOCICACHE_E2E_SALT=1
counts
[[ $EX =~ ^[0-9]+$ ]] && ((EX > HITS)) && pass readonly-miss-ran-locally \
  || fail readonly-miss-ran-locally "$(bzl_processes_line "$LOG")"
after=$(registry_files)
[[ -n $before && $before == "$after" ]] && pass readonly-nothing-written \
  || fail readonly-nothing-written "$(diff <(echo "$before") <(echo "$after") | head -5)"
# The same kind of build with the write token does upload (so the check above can fail).
build writer-miss --remote_cache="grpc://$D3" --remote_header="authorization=Bearer $RW" \
  --copt=-DOCICACHE_E2E_SALT=2
[[ $(registry_files) != "$after" ]] && pass writer-uploads || fail writer-uploads "registry unchanged"
stop_ocicached D3

# --- TLS, then mutual TLS ------------------------------------------------------------------
# A test CA, a server certificate for 127.0.0.1 and a client certificate.
tls=$WORK/tls
mkdir -p "$tls"
mkcert() {  # mkcert NAME CN EXT: key NAME.key (PKCS#8) and NAME.pem signed by the CA
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$tls/$1.key" \
    -subj "/CN=$2" -out "$tls/$1.csr" 2>/dev/null &&
  openssl x509 -req -in "$tls/$1.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -out "$tls/$1.pem" -extfile <(printf '%s\n' "$3") 2>/dev/null
}
if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
     -subj "/CN=ocicache e2e CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null &&
   mkcert server 127.0.0.1 "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth" &&
   mkcert client bazel-e2e "extendedKeyUsage=clientAuth"; then
  pass tls-certificates
else
  fail tls-certificates "openssl could not make the test certificates"
fi
if start_ocicached D4 --repo "$REPO" --dir "$WORK/tier4" --tls_cert "$tls/server.pem" --tls_key "$tls/server.key"; then
  pass ocicached-tls-start
  rebuild tls --remote_cache="grpcs://$D4" --tls_certificate="$tls/ca.pem" && all_hits tls-all-hits
  same_outputs tls-same-outputs
  build_fails tls-plaintext-refused "Failed to query remote execution capabilities" \
    --remote_cache="grpc://$D4" --remote_retries=0
  expect_contains tls-plaintext-server-says "$(cat "$WORK/D4.err")" "wrong version number"
  stop_ocicached D4
else
  fail ocicached-tls-start "$(tail -3 "$WORK/D4.err")"
fi
if start_ocicached D5 --repo "$REPO" --dir "$WORK/tier5" --tls_cert "$tls/server.pem" \
     --tls_key "$tls/server.key" --tls_client_ca "$tls/ca.pem"; then
  pass ocicached-mtls-start
  rebuild mtls --remote_cache="grpcs://$D5" --tls_certificate="$tls/ca.pem" \
    --tls_client_certificate="$tls/client.pem" --tls_client_key="$tls/client.key" && all_hits mtls-all-hits
  bzl_clean
  build_fails mtls-needs-client-cert "Failed to query remote execution capabilities" \
    --remote_cache="grpcs://$D5" --tls_certificate="$tls/ca.pem" --remote_retries=0
  expect_contains mtls-server-says "$(cat "$WORK/D5.err")" "peer did not return a certificate"
  stop_ocicached D5
else
  fail ocicached-mtls-start "$(tail -3 "$WORK/D5.err")"
fi
