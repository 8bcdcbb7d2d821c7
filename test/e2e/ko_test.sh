#!/usr/bin/env bash
# ko's KOCACHE through ocicache, end to end, on two simulated fresh machines
# (separate KOCACHE, OCICACHE_DIR and GOCACHE, one registry). ko itself is not
# installed (no Debian package), so this runs ko's exact sequence of go commands
# through ocicache-go, and test/e2e/kowrite writes the KOCACHE files the way ko's
# pkg/build/cache.go does after building a layer.
#
# Needs OCICACHE_BIN, OCICACHE_GO_BIN and REGISTRYCTL (scripts/test.sh sets them)
# and Go 1.23 (scripts/install-go.sh).
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
: "${OCICACHE_GO_BIN:?built ocicache-go binary}"

GO=${GO:-/usr/lib/go-1.23/bin/go}
[[ -x $GO ]] || GO=$(command -v go || true)
if [[ -z $GO || ! -x $GO ]]; then
  fail go-installed "no Go toolchain (run scripts/install-go.sh)"
  exit 1
fi
export PATH="$(dirname "$GO"):$PATH"   # ocicache-go finds the real go here
export GOPROXY=off GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
unset GOCACHEPROG OCICACHE_GOCACHEPROG OCICACHE_GO KO_VERSION
command -v ko >/dev/null && echo "# note: a ko binary is installed but this test does not drive it"

IP=example.com/komod
PLATFORM=linux/amd64
LAYER_MT=application/vnd.oci.image.layer.v1.tar+gzip

start_registry none REG || { fail registry "did not start"; exit 1; }
export OCICACHE_REPO=$REG/kocache

GOCACHE_BASE=$WORK/gocache-base
(cd "$here/kowrite" && GOCACHE=$GOCACHE_BASE "$GO" build -o "$WORK/kowrite" .) ||
  { fail kowrite-build "cannot build test/e2e/kowrite"; exit 1; }

# machine NAME: a fresh machine's directories; sets KOCACHE, OCICACHE_DIR, GOCACHE, SRC, BIN.
machine() {
  local m=$WORK/$1
  mkdir -p "$m"
  cp -r "$here/komod" "$m/src"
  export KOCACHE=$m/kocache OCICACHE_DIR=$m/ocicache GOCACHE=$m/gocache
  SRC=$m/src
  BIN=$KOCACHE/bin/$IP/$PLATFORM
  mkdir -p "$BIN"
}

# build: ko's `go build` (through KO_GO_PATH = ocicache-go), with ko's default -trimpath.
build() { (cd "$SRC" && "$OCICACHE_GO_BIN" build -trimpath -o "$BIN/out" .); }

# last_lookup FIELD: a field of the wrapper's last lookup-log line.
last_lookup() {
  tail -1 "$KOCACHE/ocicache-go.log" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# ko_layer DIR OUT: the binary's layer as ko builds it (tar with fixed owner,
# mode and mtime, gzip); sets DIFFID, DIGEST, SIZE.
ko_layer() {
  local d=$1/layer
  rm -rf "$d"; mkdir -p "$d/ko-app"
  cp "$2" "$d/ko-app/komod"; chmod 0755 "$d/ko-app/komod"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$d" -cf "$1/layer.tar" ko-app
  gzip -n -c "$1/layer.tar" >"$1/layer.tar.gz"
  DIFFID=sha256:$(sha256sum "$1/layer.tar" | cut -d' ' -f1)
  DIGEST=sha256:$(sha256sum "$1/layer.tar.gz" | cut -d' ' -f1)
  SIZE=$(stat -c %s "$1/layer.tar.gz")
}

# ---- machine 1: a miss, ko builds the layer, `ocicache ko save` ----------------
machine m1
if build; then pass m1-build; else fail m1-build "go build through ocicache-go failed"; fi
want_id=$("$GO" tool buildid "$BIN/out")
expect_rc m1-buildid-rc 0 "$OCICACHE_GO_BIN" tool buildid "$BIN/out"
id1=$OUT
[[ $id1 == "$want_id" ]] && pass m1-buildid-same-as-go || fail m1-buildid-same-as-go "'$id1' != '$want_id'"
[[ ! -e $BIN/buildid-to-diffid && ! -e $BIN/diffid-to-descriptor ]] &&
  pass m1-miss-creates-no-json || fail m1-miss-creates-no-json "$(ls "$BIN")"
[[ $(last_lookup result) == miss ]] && pass m1-lookup-miss || fail m1-lookup-miss "$(tail -1 "$KOCACHE/ocicache-go.log")"
# One lookup = one manifest GET, nothing else (an anonymous registry: the client
# sends no GET /v2/ first), even in a fresh wrapper process.
req=$(last_lookup registryRequests)
[[ $req == 1 ]] && pass m1-miss-one-lookup || fail m1-miss-one-lookup "$req requests (want 1 manifest GET)"
# ko asks for the build id again after building the layer: no second request.
"$OCICACHE_GO_BIN" tool buildid "$BIN/out" >/dev/null
[[ $(last_lookup result) == recent-miss && $(last_lookup registryRequests) == 0 ]] &&
  pass m1-second-call-no-request || fail m1-second-call-no-request "$(tail -1 "$KOCACHE/ocicache-go.log")"

ko_layer "$WORK/m1" "$BIN/out"
"$WORK/kowrite" "$BIN" "$id1" "$DIFFID" "$LAYER_MT" "$SIZE" "$DIGEST" \
  "org.opencontainers.image.title=/ko-app/komod" "dev.example.note=<built & cached>"
m1_btod=$(cat "$BIN/buildid-to-diffid")
m1_dtod=$(cat "$BIN/diffid-to-descriptor")

expect_rc m1-save 0 "$OCICACHE_BIN" ko save
expect_contains m1-save-counts "$OUT" "ko save: 1 saved, 0 already present, 0 skipped incomplete (1 directories)"
expect_contains m1-save-reports-lookups "$OUT" "ocicache-go lookups: 0 hits, 1 misses"
expect_rc m1-save-again 0 "$OCICACHE_BIN" ko save
expect_contains m1-save-idempotent "$OUT" "ko save: 0 saved, 1 already present"
expect_rc m1-entry-in-registry 0 "$OCICACHE_BIN" --no-dir stat -- "$id1"
expect_contains m1-entry-config "$OUT" "\"diffid\":\"$DIFFID\",\"importPath\":\"$IP\",\"platform\":\"$PLATFORM\""

# ---- machine 2: same source, the wrapper hits and writes the files -------------
machine m2
build || fail m2-build "go build failed"
expect_rc m2-buildid-rc 0 "$OCICACHE_GO_BIN" tool buildid "$BIN/out"
[[ $OUT == "$id1" ]] && pass m2-same-build-id || fail m2-same-build-id "'$OUT' != '$id1'"
[[ -z $ERR ]] && pass m2-hit-quiet || fail m2-hit-quiet "stderr: $ERR"
[[ $(last_lookup result) == hit ]] && pass m2-lookup-hit || fail m2-lookup-hit "$(tail -1 "$KOCACHE/ocicache-go.log")"
req=$(last_lookup registryRequests)
[[ $req == 1 ]] && pass m2-hit-one-lookup || fail m2-hit-one-lookup "$req requests (want 1 manifest GET)"
if [[ -f $BIN/buildid-to-diffid && -f $BIN/diffid-to-descriptor ]]; then
  pass m2-json-files-written
  [[ $(cat "$BIN/diffid-to-descriptor") == "$m1_dtod" ]] &&
    pass m2-descriptor-file-byte-identical || fail m2-descriptor-file-byte-identical "$(diff <(echo "$m1_dtod") "$BIN/diffid-to-descriptor")"
  [[ $(cat "$BIN/buildid-to-diffid") == "$m1_btod" ]] &&
    pass m2-buildid-file-byte-identical || fail m2-buildid-file-byte-identical "$(diff <(echo "$m1_btod") "$BIN/buildid-to-diffid")"
  check=$(python3 - "$WORK/m1/kocache/bin/$IP/$PLATFORM" "$BIN" "$id1" <<'PY'
import json, sys
a, b, bid = sys.argv[1:]
ja = [json.load(open(f"{d}/{n}")) for d in (a, b) for n in ("buildid-to-diffid", "diffid-to-descriptor")]
diff = ja[2][bid]
ok = ja[0][bid] == diff and ja[1][diff] == ja[3][diff] and list(ja[1][diff]) == list(ja[3][diff])
print("ok" if ok else f"m1 {ja[0]} {ja[1]} m2 {ja[2]} {ja[3]}")
PY
)
  [[ $check == ok ]] && pass m2-same-diffid-and-descriptor-json || fail m2-same-diffid-and-descriptor-json "$check"
else
  fail m2-json-files-written "$(ls -a "$BIN")"
fi
expect_rc m2-local-now 0 "$OCICACHE_GO_BIN" tool buildid "$BIN/out"
[[ $(last_lookup result) == local && $(last_lookup registryRequests) == 0 ]] &&
  pass m2-second-lookup-is-local || fail m2-second-lookup-is-local "$(tail -1 "$KOCACHE/ocicache-go.log")"
# ko reads stdout and stderr through one pipe: the output must be only the build id.
out=$("$OCICACHE_GO_BIN" tool buildid "$BIN/out" 2>&1)
[[ $out == "$id1" ]] && pass m2-combined-output-is-build-id || fail m2-combined-output-is-build-id "$out"
expect_rc m2-save-reports-hit 0 "$OCICACHE_BIN" ko save
expect_contains m2-save-lookup-summary "$OUT" "ocicache-go lookups: 1 hits, 0 misses, 2 already in KOCACHE"

# ocicache-go starts `ocicache ko lookup BINARY -` on a fresh KOCACHE before go prints
# the build id, and sends the id on its stdin (m2 above went that way). End of input:
# nothing to look up, nothing logged. A malformed id: a usage error.
n_events=$(wc -l <"$KOCACHE/ocicache-go.log")
expect_rc stdin-id-eof 0 "$OCICACHE_BIN" ko lookup -- "$BIN/out" - </dev/null
[[ $(wc -l <"$KOCACHE/ocicache-go.log") == "$n_events" ]] && pass stdin-id-eof-logs-nothing ||
  fail stdin-id-eof-logs-nothing "$(tail -1 "$KOCACHE/ocicache-go.log")"
expect_rc stdin-id-malformed 2 "$OCICACHE_BIN" ko lookup -- "$BIN/out" - <<<"not one id"
expect_contains stdin-id-malformed-says-why "$ERR" "not a build id on stdin"
expect_rc stdin-id-local 0 "$OCICACHE_BIN" ko lookup -- "$BIN/out" - <<<"$id1"
[[ $(last_lookup result) == local ]] && pass stdin-id-logged || fail stdin-id-logged "$(tail -1 "$KOCACHE/ocicache-go.log")"

# ---- ko restore into an empty KOCACHE ------------------------------------------
machine m3
expect_rc m3-restore 0 "$OCICACHE_BIN" ko restore --import-path "$IP"
expect_contains m3-restore-counts "$OUT" "ko restore: 1 restored into 1 directories"
[[ $(cat "$BIN/diffid-to-descriptor" 2>/dev/null) == "$m1_dtod" && $(cat "$BIN/buildid-to-diffid" 2>/dev/null) == "$m1_btod" ]] &&
  pass m3-restore-recreates-files || fail m3-restore-recreates-files "$(ls -a "$BIN")"
expect_rc m3-restore-again 0 "$OCICACHE_BIN" ko restore
expect_contains m3-restore-idempotent "$OUT" "0 restored into 0 directories, 1 already present"
expect_rc m3-restore-other-path 0 "$OCICACHE_BIN" ko restore --kocache "$WORK/m3/other" --import-path example.com/none --json
[[ $(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["selected"], d["restored"])' <<<"$OUT") == "0 0" ]] &&
  pass m3-restore-filter || fail m3-restore-filter "$OUT"

# ---- parallel saves of one KOCACHE ---------------------------------------------
machine m4
for i in $(seq 1 20); do
  d=$KOCACHE/bin/example.com/many$((i % 4))/linux/arm64
  mkdir -p "$d"
  "$WORK/kowrite" "$d" "build$i-aaaaaaaaaaaaaaa/bbbbbbbbbbbbbbbbbbbb/cccccccccccccccccccc/dddddddddddddddddddd" \
    "sha256:$(printf '%064x' "$i")" "$LAYER_MT" "$((1000 + i))" "sha256:$(printf '%064x' $((i + 100)))"
done
export OCICACHE_REPO=$REG/parallel
"$OCICACHE_BIN" ko save >"$WORK/p1.out" 2>"$WORK/p1.err" & p1=$!
"$OCICACHE_BIN" ko save >"$WORK/p2.out" 2>"$WORK/p2.err" & p2=$!
wait $p1; rc1=$?
wait $p2; rc2=$?
if [[ $rc1 == 0 && $rc2 == 0 ]]; then pass parallel-saves-succeed; else
  fail parallel-saves-succeed "rc $rc1 $rc2: $(cat "$WORK/p1.err" "$WORK/p2.err" | head -5)"; fi
n=$("$OCICACHE_BIN" --no-dir ls --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[[ $n == 20 ]] && pass parallel-saves-all-entries || fail parallel-saves-all-entries "$n entries in the registry"
expect_rc parallel-then-idempotent 0 "$OCICACHE_BIN" ko save
expect_contains parallel-then-all-present "$OUT" "0 saved, 20 already present"
export OCICACHE_REPO=$REG/kocache

# ---- invalid JSON in KOCACHE ---------------------------------------------------
machine m5
build >/dev/null
printf '{"broken": ' >"$BIN/buildid-to-diffid"
expect_rc invalid-save-no-crash 0 "$OCICACHE_BIN" ko save
expect_contains invalid-save-warns "$ERR" "buildid-to-diffid: invalid JSON"
[[ $(cat "$BIN/buildid-to-diffid") == '{"broken": ' ]] && pass invalid-left-for-ko || fail invalid-left-for-ko "rewritten"
expect_rc invalid-wrapper-rc 0 "$OCICACHE_GO_BIN" tool buildid "$BIN/out"
[[ $OUT == "$id1" ]] && pass invalid-wrapper-prints-id || fail invalid-wrapper-prints-id "$OUT"
expect_contains invalid-wrapper-warns "$ERR" "invalid JSON"
expect_one_line invalid-wrapper-one-warning-line "$ERR"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$BIN/buildid-to-diffid" 2>/dev/null &&
  pass invalid-replaced-on-hit || fail invalid-replaced-on-hit "$(head -c 200 "$BIN/buildid-to-diffid")"

# ---- registry unreachable ------------------------------------------------------
machine m6
build >/dev/null
OCICACHE_REPO=127.0.0.1:1/nothing expect_rc down-wrapper-exit-0 0 "$OCICACHE_GO_BIN" tool buildid "$BIN/out"
[[ $OUT == "$id1" ]] && pass down-wrapper-prints-id || fail down-wrapper-prints-id "$OUT"
expect_one_line down-wrapper-one-warning-line "$ERR"
expect_contains down-wrapper-warning-says-why "$ERR" "unavailable"
[[ $(last_lookup result) == error ]] && pass down-logged || fail down-logged "$(tail -1 "$KOCACHE/ocicache-go.log")"
[[ ! -e $BIN/buildid-to-diffid ]] && pass down-changes-nothing || fail down-changes-nothing "files written"
out=$(OCICACHE_REPO=127.0.0.1:1/nothing "$OCICACHE_GO_BIN" tool buildid "$BIN/out" 2>&1)
[[ $out == "$id1" ]] && pass down-combined-output-is-build-id || fail down-combined-output-is-build-id "$out"

# ---- everything else passes through --------------------------------------------
expect_rc passthrough-version 0 "$OCICACHE_GO_BIN" version
[[ $OUT == "$("$GO" version)" ]] && pass passthrough-version-output || fail passthrough-version-output "$OUT"
expect_rc passthrough-env 0 "$OCICACHE_GO_BIN" env GOVERSION
[[ $OUT == "$("$GO" env GOVERSION)" ]] && pass passthrough-env-output || fail passthrough-env-output "$OUT"
want_err=$(cd "$SRC" && "$GO" build ./nonexistent 2>&1); want_rc=$?
(cd "$SRC" && expect_rc passthrough-failing-build "$want_rc" "$OCICACHE_GO_BIN" build ./nonexistent)
[[ $want_rc != 0 ]] && pass passthrough-go-fails-too || fail passthrough-go-fails-too "go build ./nonexistent succeeded"
got_err=$(cd "$SRC" && "$OCICACHE_GO_BIN" build ./nonexistent 2>&1)
[[ $got_err == "$want_err" ]] && pass passthrough-failing-build-stderr || fail passthrough-failing-build-stderr "$got_err"
# buildid outside KOCACHE/bin, and without KOCACHE: plain go.
expect_rc passthrough-buildid-elsewhere 0 env -u KOCACHE "$OCICACHE_GO_BIN" tool buildid "$BIN/out"
[[ $OUT == "$id1" ]] && pass passthrough-buildid-elsewhere-output || fail passthrough-buildid-elsewhere-output "$OUT"
expect_rc ocicache-help 0 "$OCICACHE_GO_BIN" --ocicache-help
expect_contains ocicache-help-text "$OUT" "KO_GO_PATH"
"$GO" --help >"$WORK/go-help.out" 2>"$WORK/go-help.err"; want_rc=$?
"$OCICACHE_GO_BIN" --help >"$WORK/wrap-help.out" 2>"$WORK/wrap-help.err"; rc=$?
if [[ $rc == "$want_rc" ]] && cmp -s "$WORK/go-help.out" "$WORK/wrap-help.out" && cmp -s "$WORK/go-help.err" "$WORK/wrap-help.err"; then
  pass go-dash-dash-help-passes-through
else
  fail go-dash-dash-help-passes-through "rc $rc (go: $want_rc) or output differs"
fi
expect_rc go-help-passes-through 0 "$OCICACHE_GO_BIN" help build
expect_contains go-help-text "$OUT" "usage: go build"

# A fake go shows argv, stdin, exit code and the GOCACHEPROG environment.
fake=$WORK/fakego/go
mkdir -p "$(dirname "$fake")"
cat >"$fake" <<'EOF'
#!/bin/sh
if [ "$1" = env ] && [ "$2" = GOVERSION ]; then echo "${FAKE_GOVERSION:-go1.23.5}"; exit 0; fi
if [ "$1" = stdin ]; then cat; exit 42; fi
printf 'GOCACHEPROG=%s\nGOEXPERIMENT=%s\n' "$GOCACHEPROG" "$GOEXPERIMENT"
for a in "$@"; do printf 'arg[%s]\n' "$a"; done
EOF
chmod +x "$fake"
expect_rc fake-argv 0 env OCICACHE_GO="$fake" "$OCICACHE_GO_BIN" build "a b" "" "-x=1"
expect_contains fake-argv-kept "$OUT" $'arg[build]\narg[a b]\narg[]\narg[-x=1]'
expect_contains fake-no-cacheprog-by-default "$OUT" $'GOCACHEPROG=\nGOEXPERIMENT=\n'
out=$(echo "piped input" | OCICACHE_GO="$fake" "$OCICACHE_GO_BIN" stdin); rc=$?
[[ $out == "piped input" && $rc == 42 ]] && pass fake-stdin-and-exit-code || fail fake-stdin-and-exit-code "rc $rc out $out"
expect_rc cacheprog-go123 0 env OCICACHE_GO="$fake" OCICACHE_GOCACHEPROG=1 GOEXPERIMENT=loopvar "$OCICACHE_GO_BIN" build .
expect_contains cacheprog-go123-env "$OUT" $'GOCACHEPROG='"$OCICACHE_BIN"$' gocacheprog\nGOEXPERIMENT=loopvar,cacheprog'
expect_rc cacheprog-go124 0 env OCICACHE_GO="$fake" OCICACHE_GOCACHEPROG=1 FAKE_GOVERSION=go1.24.1 "$OCICACHE_GO_BIN" build .
expect_contains cacheprog-go124-env "$OUT" $'GOCACHEPROG='"$OCICACHE_BIN"$' gocacheprog\nGOEXPERIMENT=\n'
expect_rc cacheprog-preset 0 env OCICACHE_GO="$fake" OCICACHE_GOCACHEPROG=1 GOCACHEPROG=mine "$OCICACHE_GO_BIN" build .
expect_contains cacheprog-preset-kept "$OUT" $'GOCACHEPROG=mine\nGOEXPERIMENT=\n'
expect_rc cacheprog-not-for-vet 0 env OCICACHE_GO="$fake" OCICACHE_GOCACHEPROG=1 "$OCICACHE_GO_BIN" vet .
expect_contains cacheprog-not-for-vet-env "$OUT" $'GOCACHEPROG=\n'
expect_rc self-is-not-go 127 env OCICACHE_GO="$OCICACHE_GO_BIN" "$OCICACHE_GO_BIN" version
expect_contains self-is-not-go-message "$ERR" "is ocicache-go itself"

# ---- help ------------------------------------------------------------------------
expect_rc help-ko 0 "$OCICACHE_BIN" ko --help
expect_rc help-ko-save 0 "$OCICACHE_BIN" ko save --help
expect_contains help-ko-save-text "$OUT" "--kocache DIR"
expect_rc help-ko-restore 0 "$OCICACHE_BIN" ko restore --help
expect_contains help-ko-restore-text "$OUT" "--import-path P"
expect_rc ko-usage-error 2 "$OCICACHE_BIN" ko frobnicate
exit 0
