#!/usr/bin/env bash
# End-to-end chaos test (issue 11): two ocicached replicas over one real
# registry, behind a real haproxy (HTTP/2 both sides, round robin), under 16
# bounded clients (test/chaos:chaos_load, every read verified) for about a
# minute while the script moves through phases, each named in a file the
# clients read before every call:
#   steady (10 s), registry-paused (the registry process SIGSTOPped 15 s),
#   replica-killed (replica B SIGKILLed, restarted 5 s later on its port and
#   directory; haproxy routes around it), disk-full (replica A's tmpfs filled
#   to ENOSPC for 10 s), recovered (the rest).
# Then: no call failed other than a miss or a clean UNAVAILABLE on a retry-safe
# call (UNAVAILABLE on a write or put only as "not accepted"), no wrong content,
# and once both replicas report an empty backlog
# (ocicached_registry_backlog_entries 0), every accepted put is in the
# registry with the content put (read from the registry itself with the CLI).
# Prints the load's figures (calls and p50/p99 per phase, outcomes by code) and
# the replicas' RSS, fds and threads before and after. Needs root (tmpfs) and
# haproxy (scripts/install-deps.sh --test).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/daemon_lib.sh"
: "${CHAOS_LOAD_BIN:?built test/chaos:chaos_load binary}"

MNT=$WORK/tmpfs-a
REGISTRY_PID=
chaos_cleanup() {
  [[ -n $REGISTRY_PID ]] && kill -CONT "$REGISTRY_PID" 2>/dev/null
  for p in "${REG_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  mountpoint -q "$MNT" && umount "$MNT"
  # CHAOS_KEEP=DIR keeps the replicas' and the proxy's logs for a post-mortem.
  if [[ -n ${CHAOS_KEEP:-} ]]; then
    mkdir -p "$CHAOS_KEEP" && cp "$WORK"/*.err "$WORK"/*.log "$WORK"/accepted "$CHAOS_KEEP"/ 2>/dev/null
  fi
  cleanup
}
trap chaos_cleanup EXIT

# figures PID: "RSS_KIB FDS THREADS" of a live process.
figures() {
  local rss threads fds
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null)
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$1/status" 2>/dev/null)
  fds=$(ls "/proc/$1/fd" 2>/dev/null | wc -l)
  echo "${rss:-?} $fds ${threads:-?}"
}
set_phase() { printf '%s\n' "$1" >"$WORK/phase.tmp" && mv "$WORK/phase.tmp" "$WORK/phase"; echo "phase $1 at +$((SECONDS - T0)) s"; }
until_t() { while ((SECONDS - T0 < $1)); do sleep 0.2; done; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

command -v haproxy >/dev/null || { fail haproxy-installed "no haproxy (scripts/install-deps.sh --test installs it)"; exit 1; }
start_registry none REG || { fail registry-start "registryctl did not start"; exit 1; }
REGISTRY_PID=$(pgrep -P "${REG_PIDS[0]}" | head -1)
[[ -n $REGISTRY_PID ]] || { fail registry-process "no child process of registryctl ${REG_PIDS[0]}"; exit 1; }
REPO=$REG/chaos/cache

# Replica A's directory on a small tmpfs, so that it can be filled.
mkdir -p "$MNT"
if mount -t tmpfs -o size=128m ocicache-chaos "$MNT" 2>"$WORK/mount.err"; then
  pass tmpfs-mounted
else
  fail tmpfs-mounted "mount -t tmpfs on $MNT failed (root needed): $(cat "$WORK/mount.err")"; exit 1
fi
A_FLAGS=(--repo "$REPO" --dir "$MNT/dir" --metrics_listen 127.0.0.1:0)
B_FLAGS=(--repo "$REPO" --dir "$WORK/dir-b" --metrics_listen 127.0.0.1:0)
start_daemon A "${A_FLAGS[@]}" || { fail replica-a-start "ocicached A did not start"; exit 1; }
start_daemon B "${B_FLAGS[@]}" || { fail replica-b-start "ocicached B did not start"; exit 1; }
A_METRICS=$(metrics_url A)
[[ -n $A_METRICS && -n $(metrics_url B) ]] || { fail metrics-url "no 'metrics on' line"; exit 1; }

# haproxy: gRPC is HTTP/2 end to end; each call (an h2 stream) is balanced on
# its own. A failed connect is retried on the other server; a server that stops
# accepting connections is out of the rotation within a second.
PROXY=127.0.0.1:$(free_port)
cat >"$WORK/haproxy.cfg" <<EOF
global
  maxconn 2000
  log stdout format raw local0
defaults
  mode http
  log global
  log-format "%ST %tsc %s %HU"
  timeout connect 1s
  timeout client 5m
  timeout server 5m
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response
frontend grpc
  bind $PROXY proto h2
  default_backend replicas
backend replicas
  balance roundrobin
  server a $A proto h2 check inter 500ms fall 1 rise 2
  server b $B proto h2 check inter 500ms fall 1 rise 2
EOF
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
REG_PIDS+=("$HAPROXY_PID")
head -c 5000 /dev/urandom >"$WORK/probe"
for _ in $(seq 1 50); do
  "$OCICACHE_BIN" --server "$PROXY" put chaos-probe --blob "$WORK/probe" >/dev/null 2>&1 && break
  sleep 0.1
done
expect_rc proxy-routes 0 "$OCICACHE_BIN" --server "$PROXY" get chaos-probe -o "$WORK/probe.out" \
  || { cat "$WORK/haproxy.log"; exit 1; }
cmp -s "$WORK/probe" "$WORK/probe.out" && pass proxy-identical || fail proxy-identical "differs"

declare -A BEFORE AFTER  # "RSS FDS THREADS" of a (start, end), b (start, kill), b2 (restart, end)
BEFORE[a]=$(figures "$A_PID")
BEFORE[b]=$(figures "$B_PID")

echo "set up in $SECONDS s"
# --- the run -------------------------------------------------------------------------
T0=$SECONDS
set_phase steady
"$CHAOS_LOAD_BIN" --server "$PROXY" --clients 16 --duration 60 --max_calls 5000 --grace 30 \
  --phase_file "$WORK/phase" --accepted "$WORK/accepted" >"$WORK/load.out" 2>"$WORK/load.err" &
LOAD_PID=$!
REG_PIDS+=("$LOAD_PID")

until_t 10
set_phase registry-paused
kill -STOP "$REGISTRY_PID"
sleep 0.2
[[ $(awk '{print $3}' "/proc/$REGISTRY_PID/stat") == T ]] && pass registry-paused \
  || fail registry-paused "registry $REGISTRY_PID not stopped"
until_t 25
kill -CONT "$REGISTRY_PID"

set_phase replica-killed
AFTER[b]=$(figures "$B_PID")
kill -KILL "$B_PID"; wait "$B_PID" 2>/dev/null
sleep 5
"$OCICACHED_BIN" --listen="$B" --port_file="$WORK/B2.port" --shutdown_grace=3s "${B_FLAGS[@]}" \
  >"$WORK/B2.out" 2>"$WORK/B2.err" &
B2_PID=$!
REG_PIDS+=("$B2_PID")
for _ in $(seq 1 100); do [[ -s $WORK/B2.port ]] && break; sleep 0.1; done
BEFORE[b2]=$(figures "$B2_PID")
[[ -s $WORK/B2.port ]] && echo "replica B restarted on $B at +$((SECONDS - T0)) s" \
  || fail replica-restarted "ocicached B did not start again on $B: $(tail -3 "$WORK/B2.err")"
until_t 35

set_phase disk-full
used=$(($(df -k --output=used "$MNT" | tail -1) / 1024))
dd if=/dev/zero of="$MNT/fill" bs=1M 2>"$WORK/dd.err"
grep -q 'No space left' "$WORK/dd.err" \
  && pass "disk-filled (replica A's tier used $used MiB of 128, dd added $(($(stat -c %s "$MNT/fill") >> 20)) MiB)" \
  || fail disk-filled "dd did not reach ENOSPC: $(tail -1 "$WORK/dd.err")"
until_t 45
rm -f "$MNT/fill"

set_phase recovered
wait "$LOAD_PID"; load_rc=$?
echo "load ended at +$((SECONDS - T0)) s, exit $load_rc"
cat "$WORK/load.out"
tail -5 "$WORK/load.err"

# --- acceptance ------------------------------------------------------------------------
errors=$(awk '/^errors:/ {print $2}' "$WORK/load.out")
wrong=$(awk '/^wrong content:/ {print $3}' "$WORK/load.out")
[[ $load_rc == 0 || $load_rc == 1 ]] && [[ -n $errors && -n $wrong ]] && pass load-ran \
  || fail load-ran "chaos_load exit $load_rc: $(tail -3 "$WORK/load.err")"
# The failed calls' rows go on the FAIL line itself, so that a CI log that shows only
# FAIL lines still says which phase, op and code failed and with what message.
failed_rows=$(awk '/^misses of own keys/ {t=1; next} t && /^$/ {exit} t && $2 == "error"' "$WORK/load.out" \
  | sed 's/  */ /g' | head -4 | paste -sd';')
[[ $errors == 0 ]] && pass no-errors || fail no-errors "${errors:-?} calls failed: ${failed_rows:-(table above)}"
[[ $wrong == 0 ]] && pass no-wrong-content || fail no-wrong-content "${wrong:-?} wrong answers (WRONG lines above)"

# Replica B came back and haproxy sends it calls again.
b2_calls=$(grep -cE ' (Entries|Blobs)/' "$WORK/B2.err" 2>/dev/null)
kill -0 "$B2_PID" 2>/dev/null && ((b2_calls > 0)) && pass "replica-restarted ($b2_calls calls served after the restart)" \
  || fail replica-restarted "restarted B alive: $(kill -0 "$B2_PID" 2>/dev/null && echo yes || echo no), calls served ${b2_calls:-0}"

# Wait for both replicas to have pushed what they stored while the registry was away.
B_METRICS=$(metrics_url B2)
backlog() { curl -sf "$1" | awk '$1 == "ocicached_registry_backlog_entries" {print $2}'; }
drained=no
for _ in $(seq 1 90); do
  ba=$(backlog "$A_METRICS"); bb=$(backlog "$B_METRICS")
  if [[ -z $ba || -z $bb ]]; then
    fail backlog-drained "metric ocicached_registry_backlog_entries missing from $([[ -z $ba ]] && echo "A's ")$([[ -z $bb ]] && echo "B's ")/metrics"
    drained=missing; break
  fi
  [[ $ba == 0 && $bb == 0 ]] && { drained=yes; break; }
  sleep 1
done
case $drained in
  yes) pass "backlog-drained (+$((SECONDS - T0)) s)" ;;
  no) fail backlog-drained "backlog still A=$ba B=$bb after 90 s" ;;
esac

# Every accepted put, read back from the registry (not through the replicas) with
# the CLI, four at a time; then the bytes are compared with the digests recorded.
V=$WORK/verify
mkdir -p "$V"
accepted=$(grep -c . "$WORK/accepted" 2>/dev/null)
echo "registry check of ${accepted:-0} accepted puts from +$((SECONDS - T0)) s"
awk '{print NR, $1}' "$WORK/accepted" 2>/dev/null >"$V/numbered"
workers=()
for w in 0 1 2 3; do
  awk -v w=$w 'NR % 4 == w' "$V/numbered" | while read -r n key; do
    "$OCICACHE_BIN" --repo "$REPO" --no-dir get --no-touch -o "$V/$n.blob" -- "$key" \
      >"$V/$n.config" 2>"$V/$n.err" || touch "$V/$n.missing"
  done &
  workers+=($!)
done
wait "${workers[@]}"
python3 - "$WORK/accepted" "$V" >"$WORK/verify.out" <<'PY'
import hashlib, os, sys
for n, line in enumerate(open(sys.argv[1]), 1):
    key, config_digest, blob_digest, _ = line.split()
    base = os.path.join(sys.argv[2], str(n))
    if os.path.exists(base + ".missing"):
        print(f"MISSING {key}: {open(base + '.err').read().strip()[:200]}")
        continue
    blob = "sha256:" + hashlib.sha256(open(base + ".blob", "rb").read()).hexdigest()
    config = open(base + ".config", "rb").read()  # the CLI prints the config and a newline
    config = "sha256:" + hashlib.sha256(config[:-1] if config.endswith(b"\n") else config).hexdigest()
    if blob != blob_digest:
        print(f"WRONG {key}: blob {blob}, put {blob_digest}")
    elif config != config_digest:
        print(f"WRONG {key}: config {config}, put {config_digest}")
    else:
        print(f"OK {key}")
PY
ok=$(grep -c '^OK ' "$WORK/verify.out")
echo "registry check done at +$((SECONDS - T0)) s: ${accepted:-0} accepted puts, $ok in the registry" \
  "with their content, $(grep -c '^MISSING ' "$WORK/verify.out") missing, $(grep -c '^WRONG ' "$WORK/verify.out") wrong"
grep -v '^OK ' "$WORK/verify.out" | head -5
((accepted > 0)) && [[ $ok == "$accepted" ]] && pass "puts-in-registry ($ok of $accepted checked)" \
  || fail puts-in-registry "$((${accepted:-0} - ok)) of ${accepted:-0} accepted puts not in the registry as put (lines above)"

# --- figures ----------------------------------------------------------------------------
AFTER[a]=$(figures "$A_PID")
AFTER[b2]=$(figures "$B2_PID")
printf '\n%-28s %9s %9s %6s %6s %6s %6s\n' "replica (from -> to)" rss-kib rss-kib fds fds thr thr
for r in a b b2; do
  read -r rb fb tb <<<"${BEFORE[$r]}"; read -r ra fa ta <<<"${AFTER[$r]}"
  case $r in a) name="A (start -> end)" ;; b) name="B (start -> SIGKILL)" ;; b2) name="B again (restart -> end)" ;; esac
  printf '%-28s %9s %9s %6s %6s %6s %6s\n' "$name" "$rb" "$ra" "$fb" "$fa" "$tb" "$ta"
done
p99s=$(awk '/^phase/ {t=1; next} t && NF == 10 && $1 != "total" {printf "%s%s %s", s, $1, $9; s=", "} /^total/ {exit}' "$WORK/load.out")
calls=$(awk '/^total/ {print $2}' "$WORK/load.out")
if [[ -n $calls && -n ${AFTER[a]} ]]; then
  pass "figures-printed (calls ${calls}, errors ${errors:-?}; p99 ms: ${p99s}; rss-KiB/fds/threads A ${BEFORE[a]// //} -> ${AFTER[a]// //}, B ${BEFORE[b]// //} -> ${AFTER[b]// //}, B restarted ${BEFORE[b2]// //} -> ${AFTER[b2]// //})"
else
  fail figures-printed "no load table or replica figures"
fi
sed -n 's|^\([0-9-]* [^ ]* [^ ]*\) .*/ocicache\.v1\.|\1 |p' "$WORK/haproxy.log" >"$WORK/proxy.calls"
echo "proxy: $(grep -c . "$WORK/proxy.calls") calls; not \"200 ----\" (HTTP status, termination state, server, method):"
grep -v '^200 ----' "$WORK/proxy.calls" | sort | uniq -c | sort -rn | head -10
echo "proxy's view of the replicas:"
grep -o 'Server replicas/.*' "$WORK/haproxy.log" | cut -c1-150 | awk '!seen[$0]++ {print "  " $0}'
echo "replica health changes:"
grep -h 'health:' "$WORK/A.err" | sed 's/^/  A: /'
grep -h 'health:' "$WORK/B.err" "$WORK/B2.err" | sed 's/^/  B: /'
echo "done in $SECONDS s"
