#!/usr/bin/env bash
# End-to-end: ocicached, and the ocicache CLI through it (--server): the same
# exit codes and output as direct mode, a tiered server over a real registry,
# and a clean stop on SIGTERM.
source "$(dirname "$0")/lib.sh"
: "${OCICACHED_BIN:?built ocicached binary}"
oc() { "$OCICACHE_BIN" "$@"; }

source "$(dirname "$0")/daemon_lib.sh"  # start_daemon, stop_daemon

# both NAME WANT ARGS...: runs `ocicache ARGS` directly on $WORK/direct and
# through the server $S (on $WORK/served); both must exit WANT. Outputs in
# $D_OUT/$D_ERR and $S_OUT/$S_ERR.
both() {
  local name=$1 want=$2; shift 2
  expect_rc "$name-direct" "$want" oc --dir "$WORK/direct" "$@"
  D_OUT=$OUT D_ERR=$ERR
  expect_rc "$name-server" "$want" oc --server "$S" "$@"
  S_OUT=$OUT S_ERR=$ERR
}

# same NAME A B: the two outputs are identical.
same() {
  if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1" "direct: $(head -c 300 <<<"$2") | server: $(head -c 300 <<<"$3")"; fi
}

start_registry none PLAIN || { fail registry-start "registryctl did not start"; exit 1; }
start_daemon S --dir "$WORK/served" || { fail daemon-start "ocicached did not start"; exit 1; }

# --- the server reports where it listens --------------------------------------
[[ $(head -1 "$WORK/S.out") == "listening on $S" ]] && pass daemon-listening-line \
  || fail daemon-listening-line "$(cat "$WORK/S.out")"
expect_rc help-mentions-server 0 oc --help && expect_contains help-server-flag "$OUT" "--server"
"$OCICACHED_BIN" --help >"$WORK/daemon-help" 2>&1
expect_contains daemon-help "$(cat "$WORK/daemon-help")" "--listen"
expect_rc daemon-bad-arg 2 "$OCICACHED_BIN" stray-argument
expect_rc daemon-bad-batch-parallelism 2 "$OCICACHED_BIN" --dir "$WORK/bp" --batch_parallelism=0 \
  && expect_contains daemon-bad-batch-parallelism-says "$ERR" "--batch_parallelism takes 1 to 256"

# --- the CLI through --server: same exit codes and output as direct -----------
head -c 300000 /dev/urandom >"$WORK/blob1"
echo '{"diffid":"sha256:1111"}' >"$WORK/cfg1.json"
: >"$WORK/empty"
echo 'not json' >"$WORK/bad.json"
blobhex=$(sha256sum "$WORK/blob1" | cut -d' ' -f1)

both put 0 put k1 --config "$WORK/cfg1.json" --blob "$WORK/blob1" --annotation org.ocicache.tool.go=go1.23.4
expect_contains put-server-says "$S_OUT" "stored k1 as tag k.k1 in ocicached $S"
both get 0 get k1
same get-same-output "$D_OUT" "$S_OUT"
both get-output 0 get k1 -o "$WORK/out-k1"
cmp -s "$WORK/blob1" "$WORK/out-k1" && pass get-output-identical || fail get-output-identical "blob differs"
both get-json 0 get k1 --json --no-touch
same get-json-same-config "$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["config"], d["tag"], d["blobs"][0]["digest"])' <<<"$D_OUT")" \
  "$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["config"], d["tag"], d["blobs"][0]["digest"])' <<<"$S_OUT")"
both miss 1 get nope
expect_one_line miss-server-one-line "$S_ERR"
expect_contains miss-server-message "$S_ERR" "miss: nope"
both require-match 0 get k1 --require org.ocicache.tool.go=go1.23.4
both require-mismatch 1 get k1 --require org.ocicache.tool.go=go1.24.0
both stat 0 stat k1
both bad-empty-key 2 get ""
expect_one_line bad-empty-key-server-one-line "$S_ERR"
both bad-config 2 put kbad --config "$WORK/bad.json"
both bad-empty-blob 2 put kempty --blob "$WORK/empty"
both bad-digest 2 blob pull sha256:xyz
both blob-missing 1 blob pull "sha256:$(printf absent | sha256sum | cut -d' ' -f1)"
both blob-stat-missing 1 blob stat "sha256:$(printf absent | sha256sum | cut -d' ' -f1)"
both blob-push 0 blob push "$WORK/blob1"
same blob-push-same-digest "$D_OUT" "$S_OUT"
both blob-stat 0 blob stat "sha256:$blobhex"
same blob-stat-same "$D_OUT" "$S_OUT"
both blob-pull 0 blob pull "sha256:$blobhex" -o "$WORK/out-pull"
cmp -s "$WORK/blob1" "$WORK/out-pull" && pass blob-pull-identical || fail blob-pull-identical "differs"
both leading-dash 0 put --blob "$WORK/blob1" -- -aB/cD_e.f
both ls 0 ls --json
same ls-same-keys "$(python3 -c 'import json,sys; print(sorted(e["key"] for e in json.load(sys.stdin)))' <<<"$D_OUT")" \
  "$(python3 -c 'import json,sys; print(sorted(e["key"] for e in json.load(sys.stdin)))' <<<"$S_OUT")"
both gc-usage 2 gc
both gc-dry-run 0 gc --keep-last 1 --dry-run
same gc-dry-run-same "$D_OUT" "$S_OUT"
both sync-needs-registry 2 sync
both rm 0 rm k1
both rm-missing 1 rm k1
expect_rc stdin-put-direct 0 bash -c "printf 'from stdin' | '$OCICACHE_BIN' --dir '$WORK/direct' put kstdin --blob -"
expect_rc stdin-put-server 0 bash -c "printf 'from stdin' | '$OCICACHE_BIN' --server '$S' put kstdin --blob -"
expect_rc stdin-get 0 oc --server "$S" get kstdin -o -
[[ $OUT == "from stdin" ]] && pass stdin-roundtrip || fail stdin-roundtrip "got '$OUT'"
expect_rc env-server 0 env OCICACHE_SERVER="$S" "$OCICACHE_BIN" get kstdin
both gc-all 0 gc --keep-last 0
same gc-all-deleted "$(grep -c '^deleted ' <<<"$D_OUT")" "$(grep -c '^deleted ' <<<"$S_OUT")"

# --- a server over a registry (tiered) ---------------------------------------------
R=$PLAIN/served/cache
start_daemon T --repo "$R" --dir "$WORK/tiered" || { fail tiered-start "ocicached --repo did not start"; exit 1; }
expect_rc tiered-put 0 oc --server "$T" put t/1 --config "$WORK/cfg1.json" --blob "$WORK/blob1"
# The entry is in the registry: a machine without the server reads it.
expect_rc tiered-in-registry 0 oc --repo "$R" --no-dir get t/1 -o "$WORK/out-t1"
cmp -s "$WORK/blob1" "$WORK/out-t1" && pass tiered-identical || fail tiered-identical "differs"
# Written elsewhere, pulled down by the server's sync.
expect_rc tiered-other-writer 0 oc --repo "$R" --dir "$WORK/elsewhere" put t/2 --blob "$WORK/blob1"
expect_rc tiered-sync-down 0 oc --server "$T" sync --direction down
expect_contains tiered-sync-count "$OUT" "1 entries to dir:$WORK/tiered"
expect_rc tiered-local-after-sync 0 oc --dir "$WORK/tiered" stat t/2
expect_rc tiered-gc 0 oc --server "$T" gc --keep-last 1
expect_contains tiered-gc-says "$OUT" "deleted 1 of 2 entries"
expect_contains tiered-gc-local "$OUT" "local tier:"
expect_rc tiered-mount 0 oc --server "$T" blob mount "sha256:$blobhex" --from "$R" --size 300000

# --- bearer tokens and the metrics endpoint ----------------------------------------------
printf '# scopes\nreader-token-0123456789 read\nwriter-token-0123456789 write\n' >"$WORK/tokens"
start_daemon A --dir "$WORK/authd" --tokens_file "$WORK/tokens" --metrics_listen 127.0.0.1:0 \
  || { fail auth-start "ocicached --tokens_file did not start"; exit 1; }
rd() { env OCICACHE_SERVER_TOKEN=reader-token-0123456789 "$OCICACHE_BIN" --server "$A" "$@"; }
wr() { env OCICACHE_SERVER_TOKEN=writer-token-0123456789 "$OCICACHE_BIN" --server "$A" "$@"; }
expect_rc auth-no-token 3 oc --server "$A" get k1
expect_one_line auth-no-token-one-line "$ERR"
expect_rc auth-reader-miss 1 rd get k1
expect_rc auth-reader-put 3 rd put k1 --blob "$WORK/blob1"
expect_contains auth-reader-put-says "$ERR" "read-only"
expect_rc auth-writer-put 0 wr put k1 --blob "$WORK/blob1"
expect_rc auth-reader-hit 0 rd get k1 -o "$WORK/out-auth"
cmp -s "$WORK/blob1" "$WORK/out-auth" && pass auth-identical || fail auth-identical "differs"
expect_rc auth-reader-gc 3 rd gc --keep-last 0
for _ in $(seq 1 50); do grep -q 'metrics on' "$WORK/A.err" && break; sleep 0.1; done
murl=$(grep -o 'http://[^ ]*/metrics' "$WORK/A.err" | head -1)
metrics=$(curl -s "$murl")
expect_contains metrics-lookups "$metrics" "ocicached_lookups_total 2"
expect_contains metrics-denied "$metrics" 'ocicached_calls_total{method="Blobs/Write",code="PERMISSION_DENIED"} 1'
expect_contains metrics-unauthenticated "$metrics" 'code="UNAUTHENTICATED"} 1'

# --- unreachable server: exit 3, one line ---------------------------------------------
expect_rc unreachable-server 3 timeout 60 "$OCICACHE_BIN" --server 127.0.0.1:1 get k1
expect_one_line unreachable-server-one-line "$ERR"

# --- SIGKILL mid-upload: the CLI resumes once the server is back on its port -----------
start_daemon K --dir "$WORK/killed" || { fail kill-start "ocicached did not start"; exit 1; }
head -c 40000000 /dev/urandom >"$WORK/big"
# A slow producer: 24 MB, a pause (the server is killed and restarted in it), the rest.
( head -c 24000000 "$WORK/big"; sleep 3; tail -c +24000001 "$WORK/big" ) \
  | "$OCICACHE_BIN" --server "$K" put big/1 --blob - >"$WORK/kill-put.out" 2>"$WORK/kill-put.err" &
cli=$!
staged=0
for _ in $(seq 1 100); do
  staged=$(stat -c %s "$WORK"/killed/uploads/*.part 2>/dev/null | head -1)
  [[ ${staged:-0} -ge 16000000 ]] && break
  sleep 0.05
done
kill -KILL "$K_PID"; wait "$K_PID" 2>/dev/null
"$OCICACHED_BIN" --listen="$K" --dir "$WORK/killed" >"$WORK/K2.out" 2>"$WORK/K2.err" &
K2_PID=$!
REG_PIDS+=("$K2_PID")
wait "$cli"; rc=$?
[[ $rc == 0 ]] && pass kill-put-resumed || fail kill-put-resumed "exit $rc: $(cat "$WORK/kill-put.err")"
[[ ${staged:-0} -ge 16000000 ]] && pass kill-put-was-midway || fail kill-put-was-midway "staged ${staged:-0} bytes at the kill"
expect_rc kill-get 0 oc --server "$K" get big/1 -o "$WORK/big-out"
cmp -s "$WORK/big" "$WORK/big-out" && pass kill-get-identical || fail kill-get-identical "differs"
# The restarted server received only the rest: its access log counts the bytes.
resent=$(grep 'Blobs/Write' "$WORK/K2.err" | grep ' OK ' | grep -o '[0-9]*B$' | tr -d B | head -1)
[[ -n $resent && $resent -lt 40000000 ]] && pass "kill-put-not-restarted (staged ${staged} at the kill, ${resent} bytes after)" \
  || fail kill-put-not-restarted "the new server received ${resent:-?} bytes"
kill -TERM "$K2_PID"; wait "$K2_PID"

# --- a blob the repository has is not uploaded again --------------------------------
# The CLI learns a file's digest before sending it, so the store asks the registry
# (one HEAD) instead of uploading: directly, sharded, and through a registry-only
# server. The registry's access log counts the upload PUTs of that one digest.
start_registry none LOGREG --access_log || fail registry-start-logged "registryctl did not start"
head -c 300000 /dev/urandom >"$WORK/once.bin"
oncehex=$(sha256sum "$WORK/once.bin" | cut -d' ' -f1)
uploads_of_once() { grep -c "PUT /v2/$1/blobs/uploads/[^ ]*digest=sha256%3A$oncehex" "$WORK/reg-LOGREG/registry.log"; }
start_daemon O --repo "$LOGREG/once/served" --no_dir || fail daemon-start-once "ocicached did not start"
for way in direct sharded served; do
  case $way in
    direct) put=(oc --repo "$LOGREG/once/direct" --no-dir) repo=once/direct ;;
    sharded) put=(oc --repo "$LOGREG/once/sharded" --shards 4 --no-dir) repo=once/sharded ;;
    served) put=(oc --server "$O") repo=once/served ;;
  esac
  expect_rc "once-$way-put-1" 0 "${put[@]}" put once/1 --blob "$WORK/once.bin"
  expect_rc "once-$way-put-2" 0 "${put[@]}" put once/2 --blob "$WORK/once.bin"
  expect_rc "once-$way-put-3" 0 "${put[@]}" put once/3 --blob "$WORK/once.bin"
  n=$(uploads_of_once "$repo")
  [[ $n == 1 ]] && pass "once-$way-uploaded-once" || fail "once-$way-uploaded-once" "$n uploads of one blob for 3 puts"
  expect_rc "once-$way-get" 0 "${put[@]}" get once/3 -o "$WORK/once-$way.out"
  cmp -s "$WORK/once.bin" "$WORK/once-$way.out" && pass "once-$way-identical" || fail "once-$way-identical" "differs"
done
kill -TERM "$O_PID"; wait "$O_PID"

# --- SIGTERM: stop accepting, drain, exit 0 --------------------------------------------
for d in S T A; do
  pid_var=${d}_PID
  kill -TERM "${!pid_var}"
  wait "${!pid_var}"; rc=$?
  [[ $rc == 0 ]] && pass "sigterm-exit-0-$d" || fail "sigterm-exit-0-$d" "exit $rc; $(tail -3 "$WORK/$d.err")"
  expect_contains "sigterm-log-$d" "$(cat "$WORK/$d.err")" "stopped"
done
expect_contains access-log-line "$(cat "$WORK/S.err")" 'Entries/Put "k1" OK'
