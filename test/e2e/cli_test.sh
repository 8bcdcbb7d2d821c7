#!/usr/bin/env bash
# End-to-end: the ocicache CLI against real docker-registry processes (loopback),
# read back by skopeo.
source "$(dirname "$0")/lib.sh"
oc() { "$OCICACHE_BIN" "$@"; }

start_registry none PLAIN || { fail registry-start "registryctl did not start"; exit 1; }
start_registry htpasswd AUTHREG || { fail registry-start-htpasswd "registryctl did not start"; exit 1; }
start_registry token TOKREG --access_log || { fail registry-start-token "registryctl did not start"; exit 1; }

# --- help and usage ---------------------------------------------------------
expect_rc help 0 oc --help && expect_contains help-exit-codes "$OUT" "Exit codes"
for c in get stat put ls rm gc sync status blob demo; do
  expect_rc "help-$c" 0 oc "$c" --help && expect_contains "help-$c-usage" "$OUT" "Usage: ocicache"
done
expect_rc usage-unknown-command 2 oc frobnicate
expect_rc usage-unknown-flag 2 oc --dir "$WORK/d0" get --bogus k
expect_rc usage-missing-key 2 oc --dir "$WORK/d0" get

# --- backlog: puts made while the registry is unreachable ----------------------
# (issue 11, defect 4) The entry waits in DIR/backlog; `status` shows it; the next
# put that reaches a registry pushes it.
DB=$WORK/dbacklog
head -c 5000 /dev/urandom >"$WORK/blob-bk"
expect_rc backlog-put-outage 0 oc --dir "$DB" --repo 127.0.0.1:1/x/cache put bk1 --blob "$WORK/blob-bk"
expect_contains backlog-put-says "$OUT" "waits in the backlog"
expect_rc backlog-status 0 oc --dir "$DB" --repo 127.0.0.1:1/x/cache status
expect_contains backlog-status-one "$OUT" "backlog:  1 entries"
expect_rc backlog-not-yet 1 oc --no-dir --repo "$PLAIN/bk/cache" get bk1
expect_rc backlog-put-back 0 oc --dir "$DB" --repo "$PLAIN/bk/cache" put bk2 --blob "$WORK/blob-bk"
expect_rc backlog-status-json 0 oc --dir "$DB" --repo "$PLAIN/bk/cache" status --json
expect_contains backlog-status-zero "$OUT" '"backlog": 0'
expect_rc backlog-pushed 0 oc --no-dir --repo "$PLAIN/bk/cache" get bk1 -o "$WORK/out-bk"
cmp -s "$WORK/blob-bk" "$WORK/out-bk" && pass backlog-pushed-content || fail backlog-pushed-content "bk1's blob differs"

# --- local directory only ----------------------------------------------------
D1=$WORK/d1
head -c 300000 /dev/urandom >"$WORK/blob1"
echo '{"diffid":"sha256:1111"}' >"$WORK/cfg1.json"
expect_rc local-put 0 oc --dir "$D1" put k1 --config "$WORK/cfg1.json" --blob "$WORK/blob1" --annotation org.ocicache.tool.go=go1.23.4
expect_rc local-get 0 oc --dir "$D1" get k1 && expect_contains local-get-config "$OUT" '"diffid":"sha256:1111"'
expect_rc local-get-output 0 oc --dir "$D1" get k1 -o "$WORK/out1"
# -o into something that is not a regular file (a FIFO here, /dev/null in scripts)
# writes into it; it must not be renamed over and replaced by a file.
mkfifo "$WORK/fifo1"
timeout 30 cat "$WORK/fifo1" >"$WORK/out-fifo" &
catpid=$!
expect_rc local-get-to-fifo 0 timeout 30 "$OCICACHE_BIN" --dir "$D1" get k1 -o "$WORK/fifo1"
wait "$catpid"
if [[ -p $WORK/fifo1 ]] && cmp -s "$WORK/out-fifo" "$WORK/blob1"; then pass local-get-fifo-kept
else fail local-get-fifo-kept "the FIFO was replaced or got other bytes"; fi
cmp -s "$WORK/blob1" "$WORK/out1" && pass local-get-identical || fail local-get-identical "blob differs"
expect_rc local-miss 1 oc --dir "$D1" get nope
expect_one_line local-miss-one-line "$ERR"
expect_rc local-require-match 0 oc --dir "$D1" get k1 --require org.ocicache.tool.go=go1.23.4
expect_rc local-require-mismatch 1 oc --dir "$D1" get k1 --require org.ocicache.tool.go=go1.24.0
expect_rc local-key-leading-dash 0 oc --dir "$D1" put --blob "$WORK/blob1" -- -aB/cD_e.f
expect_rc local-get-leading-dash 0 oc --dir "$D1" stat -- -aB/cD_e.f
expect_rc local-ls-json 0 oc --dir "$D1" ls --json
python3 -c 'import json,sys; d=json.load(sys.stdin); assert sorted(e["key"] for e in d)==["-aB/cD_e.f","k1"], d' <<<"$OUT" \
  && pass local-ls-keys || fail local-ls-keys "$OUT"
expect_rc local-stdin-blob 0 bash -c "printf 'from stdin' | '$OCICACHE_BIN' --dir '$D1' put kstdin --blob -"
expect_rc local-stdin-get 0 oc --dir "$D1" get kstdin -o -
[[ $OUT == "from stdin" ]] && pass local-stdin-roundtrip || fail local-stdin-roundtrip "got '$OUT'"
expect_rc skopeo-oci-layout 0 skopeo inspect --raw "oci:$D1:$(oc --dir "$D1" stat k1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["tag"])')"
expect_contains skopeo-oci-artifact "$OUT" "application/vnd.ocicache.entry.v1"

# --- bad input -----------------------------------------------------------------
expect_rc bad-empty-key 2 oc --dir "$D1" get ""
expect_one_line bad-empty-key-one-line "$ERR"
expect_rc bad-repo-name 2 oc --repo "$PLAIN/Upper/Case" --no-dir get k
python3 -c 'print("{\"x\":\"" + "a"*70000 + "\"}")' >"$WORK/big.json"
expect_rc bad-config-too-big 2 oc --dir "$D1" put kbig --config "$WORK/big.json"
expect_one_line bad-config-too-big-one-line "$ERR"
echo 'not json' >"$WORK/bad.json"
expect_rc bad-config-not-json 2 oc --dir "$D1" put kbad --config "$WORK/bad.json"
: >"$WORK/empty"
expect_rc bad-empty-blob 2 oc --dir "$D1" put kempty --blob "$WORK/empty"
expect_rc bad-digest 2 oc --dir "$D1" blob pull sha256:xyz
expect_rc bad-unknown-registry 3 timeout 60 "$OCICACHE_BIN" --repo 127.0.0.1:1/cache --no-dir get k
expect_one_line bad-unknown-registry-one-line "$ERR"

# Truncated local file: the entry is reported incomplete (a miss, exit 1, one line
# naming the blob), never served; putting it again heals the tier.
blobhex=$(sha256sum "$WORK/blob1" | cut -d' ' -f1)
truncate -s 1000 "$D1/blobs/sha256/$blobhex"
expect_rc local-truncated-detected 1 oc --dir "$D1" get k1 -o "$WORK/out-trunc"
expect_contains local-truncated-message "$ERR" "sha256:$blobhex"
expect_one_line local-truncated-one-line "$ERR"
[[ ! -e $WORK/out-trunc ]] && pass local-truncated-no-output || fail local-truncated-no-output "partial file left"
expect_rc local-truncated-heal 0 oc --dir "$D1" put k1 --config "$WORK/cfg1.json" --blob "$WORK/blob1"
expect_rc local-truncated-healed 0 oc --dir "$D1" get k1 -o "$WORK/out1b"
cmp -s "$WORK/blob1" "$WORK/out1b" && pass local-healed-identical || fail local-healed-identical "differs"
# Same size, other bytes: caught by the digest check while reading (exit 3), no output
# file left, and the bad blob quarantined so the next put heals it.
printf 'XXXX' | dd of="$D1/blobs/sha256/$blobhex" bs=1 seek=10 conv=notrunc 2>/dev/null
expect_rc local-corrupt-detected 3 oc --dir "$D1" get k1 -o "$WORK/out-corrupt"
expect_contains local-corrupt-message "$ERR" "sha256:$blobhex"
expect_one_line local-corrupt-one-line "$ERR"
[[ ! -e $WORK/out-corrupt ]] && pass local-corrupt-no-output || fail local-corrupt-no-output "partial file left"
expect_rc local-corrupt-heal 0 oc --dir "$D1" put k1 --config "$WORK/cfg1.json" --blob "$WORK/blob1"
expect_rc local-corrupt-healed 0 oc --dir "$D1" get k1 -o "$WORK/out1c"
cmp -s "$WORK/blob1" "$WORK/out1c" && pass local-corrupt-healed-identical || fail local-corrupt-healed-identical "differs"

# --- registry, no auth -----------------------------------------------------------
R=$PLAIN/cache/e2e
expect_rc reg-put 0 oc --repo "$R" --dir "$WORK/vm1" put build/1 --config "$WORK/cfg1.json" --blob "$WORK/blob1" --annotation org.ocicache.tool.ko=v0.17
tag=$(oc --dir "$WORK/vm1" stat build/1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["tag"])')
expect_rc skopeo-registry-raw 0 skopeo inspect --raw --tls-verify=false "docker://$R:$tag"
expect_contains skopeo-registry-artifact "$OUT" '"artifactType":"application/vnd.ocicache.entry.v1"'
# A fresh VM: empty directory, the registry answers and fills the local tier.
expect_rc reg-fresh-vm-hit 0 oc --repo "$R" --dir "$WORK/vm2" get build/1 -o "$WORK/out2"
cmp -s "$WORK/blob1" "$WORK/out2" && pass reg-fresh-vm-identical || fail reg-fresh-vm-identical "differs"
expect_rc reg-fill-local 0 oc --dir "$WORK/vm2" get build/1
expect_rc reg-only-ls 0 oc --repo "$R" --no-dir ls
expect_contains reg-only-ls-key "$OUT" "build/1"
expect_rc reg-miss 1 oc --repo "$R" --no-dir get build/none

# Corrupt blob served by the registry: a clear error, no wrong hit, nothing bad kept.
regblob=$(find "$WORK/reg-PLAIN" -path "*blobs/sha256/${blobhex:0:2}/$blobhex/data" | head -1)
if [[ -n $regblob ]]; then
  cp "$regblob" "$WORK/blob1.saved"
  printf 'XXXX' | dd of="$regblob" bs=1 seek=100 conv=notrunc 2>/dev/null
  expect_rc reg-corrupt-blob 3 oc --repo "$R" --dir "$WORK/vm3" get build/1 -o "$WORK/out3"
  expect_contains reg-corrupt-message "$ERR" "sha256:$blobhex"
  expect_one_line reg-corrupt-one-line "$ERR"
  [[ ! -e $WORK/vm3/blobs/sha256/$blobhex ]] && pass reg-corrupt-not-kept || fail reg-corrupt-not-kept "bad blob stored locally"
  cp "$WORK/blob1.saved" "$regblob"
else
  fail reg-corrupt-blob "registry blob file not found"
fi

# Registry outage: the local tier still answers, writes stay local with a warning.
expect_rc reg-outage-put 0 oc --repo 127.0.0.1:1/cache --dir "$WORK/vm1" put offline/1 --blob "$WORK/blob1"
expect_contains reg-outage-warning "$ERR" "unavailable"
expect_contains reg-outage-says-local "$OUT" "locally only"
expect_rc reg-outage-local-hit 0 oc --repo 127.0.0.1:1/cache --dir "$WORK/vm1" get build/1

# rm, gc, sync
expect_rc reg-rm 0 oc --repo "$R" --dir "$WORK/vm1" rm build/1
expect_rc reg-rm-gone 1 oc --repo "$R" --no-dir get build/1
expect_rc reg-rm-missing 1 oc --repo "$R" --no-dir rm build/1
for i in 1 2 3 4; do oc --quiet --repo "$R" --dir "$WORK/vm4" put "gc/$i" --blob "$WORK/blob1" >/dev/null; done
expect_rc gc-dry-run 0 oc --repo "$R" --dir "$WORK/vm4" gc --keep-last 1 --dry-run
expect_contains gc-dry-run-says "$OUT" "would delete 3 of"
expect_rc gc-usage 2 oc --repo "$R" --dir "$WORK/vm4" gc
expect_rc gc-keep-last 0 oc --repo "$R" --dir "$WORK/vm4" gc --keep-last 1
n=$(oc --repo "$R" --no-dir ls --json | python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin) if e["key"].startswith("gc/")))')
[[ $n == 1 ]] && pass gc-kept-one || fail gc-kept-one "$n gc/ entries left"
expect_rc gc-older-than 0 oc --repo "$R" --dir "$WORK/vm4" gc --older-than 1h
for i in 1 2 3; do oc --quiet --dir "$WORK/vm5" put "sync/$i" --blob "$WORK/blob1" >/dev/null; done
expect_rc sync-up 0 oc --repo "$R" --dir "$WORK/vm5" sync --direction up
expect_contains sync-up-count "$OUT" "copied 3 entries to"
expect_rc sync-down 0 oc --repo "$R" --dir "$WORK/vm6" sync --direction down
expect_rc sync-down-hit 0 oc --dir "$WORK/vm6" get sync/2 -o "$WORK/out6"
cmp -s "$WORK/blob1" "$WORK/out6" && pass sync-identical || fail sync-identical "differs"

# Blobs: push, stat, pull, cross-repository mount.
expect_rc blob-push 0 oc --repo "$PLAIN/blobs/one" --no-dir blob push "$WORK/blob1"
[[ $OUT == "sha256:$blobhex" ]] && pass blob-push-digest || fail blob-push-digest "$OUT"
expect_rc blob-stat 0 oc --repo "$PLAIN/blobs/one" --no-dir blob stat "sha256:$blobhex"
expect_rc blob-stat-missing 1 oc --repo "$PLAIN/blobs/two" --no-dir blob stat "sha256:$blobhex"
expect_rc blob-mount 0 oc --repo "$PLAIN/blobs/two" --no-dir blob mount "sha256:$blobhex" --from "$PLAIN/blobs/one" --size 300000
expect_rc blob-mounted 0 oc --repo "$PLAIN/blobs/two" --no-dir blob pull "sha256:$blobhex" -o "$WORK/out7"
cmp -s "$WORK/blob1" "$WORK/out7" && pass blob-mount-identical || fail blob-mount-identical "differs"

# Sharded repository.
for i in 1 2 3 4 5 6; do oc --quiet --repo "$PLAIN/sharded" --shards 4 --no-dir put "s/$i" --blob "$WORK/blob1" >/dev/null || fail shard-put "s/$i"; done
n=$(oc --repo "$PLAIN/sharded" --shards 4 --no-dir ls --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[[ $n == 6 ]] && pass shard-ls-all || fail shard-ls-all "$n entries"
catalog=$(curl -s "http://$PLAIN/v2/_catalog?n=1000")
expect_contains shard-repos "$catalog" '"sharded/0'
expect_rc shard-get 0 oc --repo "$PLAIN/sharded" --shards 4 --no-dir get s/5

# --- htpasswd auth -----------------------------------------------------------------
export OCICACHE_USERNAME=tester OCICACHE_PASSWORD=s3cret
expect_rc basic-put 0 oc --repo "$AUTHREG/team/cache" --no-dir put b/1 --blob "$WORK/blob1"
expect_rc basic-get 0 oc --repo "$AUTHREG/team/cache" --no-dir get b/1
expect_rc skopeo-basic 0 skopeo inspect --raw --tls-verify=false --creds tester:s3cret "docker://$AUTHREG/team/cache:k.bx2f1"
expect_rc token-put 0 oc --repo "$TOKREG/team/cache" --no-dir put t/1 --blob "$WORK/blob1"
expect_rc token-get 0 oc --repo "$TOKREG/team/cache" --no-dir get t/1 -o "$WORK/out8"
cmp -s "$WORK/blob1" "$WORK/out8" && pass token-identical || fail token-identical "differs"
OCICACHE_PASSWORD=wrong expect_rc basic-wrong-password 3 oc --repo "$AUTHREG/team/cache" --no-dir get b/1
expect_one_line basic-wrong-password-one-line "$ERR"
grep -q wrong <<<"$ERR" && fail basic-no-secret-in-error "password printed" || pass basic-no-secret-in-error
OCICACHE_PASSWORD=wrong expect_rc token-wrong-password 3 oc --repo "$TOKREG/team/cache" --no-dir get t/1
# The auth cache: a later process sends its first request with the token the one
# before kept (one registry request for a stat), a process without the cache pays
# the 401 first (and the wrong password above was refused despite the cache).
TOKLOG=$WORK/reg-TOKREG/registry.log
export OCICACHE_AUTH_CACHE=$WORK/authcache
expect_rc token-cache-first 0 oc --repo "$TOKREG/team/cache" --no-dir stat t/1
n0=$(wc -l <"$TOKLOG")
expect_rc token-cache-later 0 oc --repo "$TOKREG/team/cache" --no-dir stat t/1
n1=$(wc -l <"$TOKLOG")
OCICACHE_AUTH_CACHE=off expect_rc token-cache-off 0 oc --repo "$TOKREG/team/cache" --no-dir stat t/1
n2=$(wc -l <"$TOKLOG")
export OCICACHE_AUTH_CACHE=$WORK/auth-cache  # back to lib.sh's
if (( n1 - n0 == 1 && n2 - n1 > 1 )); then pass token-cache-saves-the-401
else fail token-cache-saves-the-401 "registry requests: $((n1 - n0)) with the kept token, $((n2 - n1)) without"; fi
[[ $(stat -c %a "$WORK/authcache") == 700 ]] && pass token-cache-dir-private || fail token-cache-dir-private "mode $(stat -c %a "$WORK/authcache")"
grep -rq s3cret "$WORK/authcache" && fail token-cache-no-password "the password is in the cache" || pass token-cache-no-password
unset OCICACHE_USERNAME OCICACHE_PASSWORD
# Credentials from docker's config.json.
mkdir -p "$WORK/docker"
printf '{"auths":{"%s":{"auth":"%s"}}}' "$AUTHREG" "$(printf tester:s3cret | base64)" >"$WORK/docker/config.json"
expect_rc docker-config-creds 0 env DOCKER_CONFIG="$WORK/docker" "$OCICACHE_BIN" --repo "$AUTHREG/team/cache" --no-dir get b/1

# --- TLS ----------------------------------------------------------------------------
# registryctl --tls: https only, with a test CA in $WORK/reg-NAME/ca.pem. Loopback is
# plain HTTP unless --tls.
start_registry none TLSREG --tls || { fail registry-start-tls "registryctl --tls did not start"; exit 1; }
start_registry htpasswd TLSAUTH --tls || { fail registry-start-tls-htpasswd "registryctl --tls did not start"; exit 1; }
TLSCA=$WORK/reg-TLSREG/ca.pem
expect_contains tls-ca-on-stderr "$(cat "$WORK/reg-TLSREG.err")" "TLS CA $TLSCA"
T=$TLSREG/tls/cache
expect_rc tls-put 0 oc --tls --ca-file "$TLSCA" --repo "$T" --no-dir put tls/1 --blob "$WORK/blob1"
expect_rc tls-get 0 oc --tls --ca-file "$TLSCA" --repo "$T" --no-dir get tls/1 -o "$WORK/out-tls"
cmp -s "$WORK/blob1" "$WORK/out-tls" && pass tls-identical || fail tls-identical "differs"
expect_rc tls-env 0 env OCICACHE_TLS=1 OCICACHE_CA_FILE="$TLSCA" "$OCICACHE_BIN" --repo "$T" --no-dir stat tls/1
# Not trusted without the CA: exit 3, one line that says why.
expect_rc tls-no-ca 3 timeout 60 "$OCICACHE_BIN" --tls --repo "$T" --no-dir get tls/1
expect_one_line tls-no-ca-one-line "$ERR"
expect_contains tls-no-ca-says-certificate "$ERR" "certificate"
# Another CA (the other TLS registry's) does not vouch for this one.
expect_rc tls-wrong-ca 3 timeout 60 "$OCICACHE_BIN" --tls --ca-file "$WORK/reg-TLSAUTH/ca.pem" --repo "$T" --no-dir get tls/1
expect_one_line tls-wrong-ca-one-line "$ERR"
# Plain HTTP (the loopback default) to the TLS port: exit 3 (not a usage error).
expect_rc tls-plain-http 3 timeout 60 "$OCICACHE_BIN" --repo "$T" --no-dir get tls/1
expect_one_line tls-plain-http-one-line "$ERR"
expect_contains tls-plain-http-says-https "$ERR" "HTTPS"
# TLS to the plain registry: exit 3, one line.
expect_rc tls-to-plain-registry 3 timeout 60 "$OCICACHE_BIN" --tls --repo "$PLAIN/cache/e2e" --no-dir get build/1
expect_one_line tls-to-plain-registry-one-line "$ERR"
# Bad options are usage errors.
expect_rc tls-missing-ca-file 2 oc --tls --ca-file "$WORK/no-such-ca.pem" --repo "$T" --no-dir get tls/1
expect_one_line tls-missing-ca-file-one-line "$ERR"
expect_rc tls-and-insecure 2 oc --tls --insecure --repo "$T" --no-dir get tls/1
# An untrusted certificate is a configuration error, not an outage: even with a
# local tier it fails (exit 3, one line) instead of quietly caching locally only.
expect_rc tls-no-ca-local-tier 3 oc --tls --repo "$T" --dir "$WORK/vm-tls" put tls/2 --blob "$WORK/blob1"
expect_contains tls-no-ca-local-message "$ERR" "certificate"
expect_one_line tls-no-ca-local-one-line "$ERR"
# htpasswd over TLS.
TA=$TLSAUTH/team/cache
expect_rc tls-basic-put 0 env OCICACHE_USERNAME=tester OCICACHE_PASSWORD=s3cret "$OCICACHE_BIN" --tls --ca-file "$WORK/reg-TLSAUTH/ca.pem" --repo "$TA" --no-dir put b/1 --blob "$WORK/blob1"
expect_rc tls-basic-get 0 env OCICACHE_USERNAME=tester OCICACHE_PASSWORD=s3cret "$OCICACHE_BIN" --tls --ca-file "$WORK/reg-TLSAUTH/ca.pem" --repo "$TA" --no-dir get b/1
expect_rc tls-basic-wrong-password 3 env OCICACHE_USERNAME=tester OCICACHE_PASSWORD=wrong "$OCICACHE_BIN" --tls --ca-file "$WORK/reg-TLSAUTH/ca.pem" --repo "$TA" --no-dir get b/1
# skopeo (Go's TLS stack) verifies the same certificate with the CA in a cert dir.
mkdir -p "$WORK/tls-certs" && cp "$TLSCA" "$WORK/tls-certs/ca.crt"
tlstag=$(oc --tls --ca-file "$TLSCA" --repo "$T" --no-dir stat tls/1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["tag"])')
expect_rc skopeo-tls-verify 0 timeout 60 skopeo inspect --raw --cert-dir "$WORK/tls-certs" "docker://$T:$tlstag"
expect_contains skopeo-tls-artifact "$OUT" '"artifactType":"application/vnd.ocicache.entry.v1"'
expect_rc skopeo-tls-untrusted 1 timeout 60 skopeo inspect --raw --tls-verify=true "docker://$T:$tlstag"

# --- get -o writes the object an entry holds ---------------------------------------
# Without blobs, the bytes its config holds inline ("data": small HTTP and Go objects).
echo '{"kind":"note","data":"aGVsbG8gaW5saW5l"}' >"$WORK/cfg-inline.json"
expect_rc get-inline-put 0 oc --dir "$WORK/din" put kin --config "$WORK/cfg-inline.json"
expect_rc get-inline-output 0 oc --dir "$WORK/din" get kin -o "$WORK/out-inline"
[[ $(cat "$WORK/out-inline" 2>/dev/null) == "hello inline" ]] && pass get-inline-bytes ||
  fail get-inline-bytes "want \"hello inline\", got: $(head -c 100 "$WORK/out-inline" 2>/dev/null)"
echo '{"kind":"note"}' >"$WORK/cfg-none.json"
expect_rc get-nothing-put 0 oc --dir "$WORK/din" put knone --config "$WORK/cfg-none.json"
expect_rc get-nothing-to-write 2 oc --dir "$WORK/din" get knone -o "$WORK/out-none"
expect_contains get-nothing-message "$ERR" "no blob or inline data"
# An HTTP cache object ocicached stored zstd-compressed comes out decoded.
source "$(dirname "$0")/daemon_lib.sh"
python3 -c 'import sys; sys.stdout.write("export const answer = 42;\n" * 20000)' >"$WORK/text.js"
if start_daemon ZD --dir "$WORK/dz" 2>>"$WORK/zd.err"; then
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -T "$WORK/text.js" "http://$ZD_HTTP/cache/ns/text.js")
  stop_daemon ZD
  [[ $code == 200 ]] && pass get-zstd-object-put || fail get-zstd-object-put "PUT: $code"
  expect_rc get-zstd-object-stat 0 oc --dir "$WORK/dz" stat http:kv:ns:text.js --json
  expect_contains get-zstd-object-stored-compressed "$OUT" '"application/zstd"'
  expect_rc get-zstd-object-output 0 oc --dir "$WORK/dz" get http:kv:ns:text.js -o "$WORK/out-text.js"
  cmp -s "$WORK/text.js" "$WORK/out-text.js" && pass get-zstd-object-decoded ||
    fail get-zstd-object-decoded "got $(stat -c %s "$WORK/out-text.js" 2>/dev/null) bytes, want $(stat -c %s "$WORK/text.js")"
else
  fail get-zstd-object-daemon "ocicached did not start: $(tail -3 "$WORK/zd.err")"
fi

# --- demo ---------------------------------------------------------------------------
expect_rc demo-local 0 oc --dir "$WORK/demo" demo
expect_contains demo-local-ok "$OUT" "ok: 3 puts"
expect_rc demo-registry 0 oc --repo "$PLAIN/demo" --dir "$WORK/demo2" demo
