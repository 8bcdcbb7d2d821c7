#!/usr/bin/env bash
# End-to-end (issue 11, defect 6): ocicached whose local tier's disk fills up
# (a 24 MiB tmpfs). Writes that hit ENOSPC answer UNAVAILABLE ("the server's
# disk is full": retry, or another replica) instead of RESOURCE_EXHAUSTED; the
# health prober evicts the local tier (it is a cache) so writes work again
# without anyone calling rm or gc; a disk filled by something else turns health
# NOT_SERVING until space comes back.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/daemon_lib.sh"
oc() { "$OCICACHE_BIN" --server "$S" "$@"; }

SMALL=$WORK/small
mkdir -p "$SMALL"
if ! mount -t tmpfs -o size=24m tmpfs "$SMALL" 2>"$WORK/mount.err"; then
  fail tmpfs-mount "cannot mount a tmpfs (this test needs root): $(cat "$WORK/mount.err")"
  exit 1
fi
# The daemons first (they hold files on the tmpfs), then the mount, then lib.sh's
# cleanup (which removes $WORK).
trap 'for p in "${REG_PIDS[@]}"; do kill "$p" 2>/dev/null; done; umount -l "$SMALL" 2>/dev/null; cleanup' EXIT
pass tmpfs-mount

# --- A: the prober keeps room by evicting the local tier -----------------------
# The grace (1 s) keeps blobs a Put in progress has written but not yet referenced.
start_daemon S --dir "$SMALL/cache" --local_evict_grace=1s --health_interval=200ms \
  --metrics_listen 127.0.0.1:0 || { fail daemon-start "ocicached did not start"; exit 1; }
# 40 MiB of entries into a 24 MiB disk: each put succeeds (pacing them a little,
# as real builds do, gives the prober its turn).
bad=0
for i in $(seq 1 40); do
  head -c 1048576 /dev/urandom >"$WORK/blob"
  oc put "fill/$i" --blob "$WORK/blob" >/dev/null 2>"$WORK/put.err" || { bad=$i; break; }
  sleep 0.1
done
((bad == 0)) && pass puts-beyond-disk-size || fail puts-beyond-disk-size "put $bad failed: $(head -c 300 "$WORK/put.err")"
grep -q "disk low: .* evicted [1-9]" "$WORK/S.err" && pass eviction-logged \
  || fail eviction-logged "no 'disk low ... evicted' line in the log"
expect_rc evicted-oldest-is-miss 1 oc get fill/1
expect_rc newest-is-hit 0 oc get fill/40
stop_daemon S

# --- B: a write that meets a full disk is UNAVAILABLE, not RESOURCE_EXHAUSTED ----
# (no prober pass during the test: --health_interval=1h)
rm -rf "${SMALL:?}/cache"
start_daemon S --dir "$SMALL/cache" --health_interval=1h \
  || { fail daemon-start-b "ocicached did not start"; exit 1; }
avail=$(df --output=avail -B1 "$SMALL" | tail -1)
head -c "$((avail - 512 * 1024))" /dev/zero >"$SMALL/ballast" 2>/dev/null
head -c 1048576 /dev/urandom >"$WORK/blob"
expect_rc full-put-fails 3 oc put full --blob "$WORK/blob"
expect_contains full-is-unavailable "$ERR" "disk is full"
if grep -qi "RESOURCE_EXHAUSTED\|resource exhausted" <<<"$ERR"; then
  fail full-not-resource-exhausted "$(head -c 300 <<<"$ERR")"
else
  pass full-not-resource-exhausted
fi
grep -q "UNAVAILABLE.*disk is full" "$WORK/S.err" && pass full-logged-unavailable \
  || fail full-logged-unavailable "$(grep -i 'full' "$WORK/S.err" | tail -2)"
stop_daemon S
rm -f "$SMALL/ballast"

# --- C: space taken by something else cannot be evicted: NOT_SERVING until freed ---
rm -rf "${SMALL:?}/cache"
start_daemon S --dir "$SMALL/cache" --health_interval=200ms --metrics_listen 127.0.0.1:0 \
  || { fail daemon-start-c "ocicached did not start"; exit 1; }
murl=$(metrics_url S)
serving() { curl -sf "$murl" | awk '$1 == "ocicached_serving" {print $2}'; }
avail=$(df --output=avail -B1 "$SMALL" | tail -1)
head -c "$((avail - 4096))" /dev/zero >"$SMALL/ballast" 2>/dev/null
state=""
for _ in $(seq 1 50); do state=$(serving); [[ $state == 0 ]] && break; sleep 0.1; done
[[ $state == 0 ]] && pass full-disk-not-serving || fail full-disk-not-serving "ocicached_serving=$state"
grep -q "NOT_SERVING: the local tier's disk is full" "$WORK/S.err" && pass not-serving-says-why \
  || fail not-serving-says-why "$(grep health "$WORK/S.err" | tail -2)"
rm -f "$SMALL/ballast"
for _ in $(seq 1 50); do state=$(serving); [[ $state == 1 ]] && break; sleep 0.1; done
[[ $state == 1 ]] && pass serving-again || fail serving-again "ocicached_serving=$state"
stop_daemon S
