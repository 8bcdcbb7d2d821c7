#!/usr/bin/env bash
# End-to-end: ocicached --max_local_size over a real registry. Filling past the
# bound keeps the local tier under it, recently used entries stay local, evicted
# ones are local misses that the registry tier answers and refills.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/daemon_lib.sh"
oc() { "$OCICACHE_BIN" --server "$S" "$@"; }
local_only() { env -u OCICACHE_REPO -u KOCACHE_REPO "$OCICACHE_BIN" --dir "$D" "$@"; }
D=$WORK/tier
MAX=$((2 * 1024 * 1024))
tier_bytes() { find "$D/blobs/sha256" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }

expect_rc bad-size 2 "$OCICACHED_BIN" --dir "$D" --max_local_size=lots
expect_one_line bad-size-one-line "$ERR"
expect_rc size-without-dir 2 "$OCICACHED_BIN" --repo 127.0.0.1:1/x --no_dir --max_local_size=1G

start_registry none REG || { fail registry-start "registryctl did not start"; exit 1; }
start_daemon S --repo "$REG/lru/cache" --dir "$D" --max_local_size=2M --local_evict_grace=0s \
  --metrics_listen 127.0.0.1:0 || { fail daemon-start "ocicached did not start"; exit 1; }

for i in $(seq 0 24); do head -c 102400 /dev/urandom >"$WORK/blob$i"; done
over=0
put() {
  oc put "k$1" --blob "$WORK/blob$1" >/dev/null 2>"$WORK/put.err" || { fail "put-k$1" "$(cat "$WORK/put.err")"; return; }
  local b; b=$(tier_bytes)
  # One entry (100 KiB and its small blobs) may land before the pass that evicts.
  ((b > MAX + 110000)) && over=$((over + 1))
}
for i in $(seq 0 9); do put "$i"; done
sleep 1.2  # last use has a resolution of one second
for i in 0 1 2; do expect_rc "use-k$i" 0 oc get "k$i" -o /dev/null; done
for i in $(seq 10 24); do put "$i"; done
((over == 0)) && pass size-bounded-during-fill || fail size-bounded-during-fill "$over puts left the tier over the bound"
final=$(tier_bytes)
((final <= MAX)) && pass size-bounded-after-fill || fail size-bounded-after-fill "$final bytes > $MAX"
((final >= MAX / 2)) && pass tier-still-used || fail tier-still-used "only $final bytes kept"

# Recently used (0-2) and recently written (20-24) entries are in the local tier.
for i in 0 1 2 20 24; do expect_rc "survives-k$i" 0 local_only stat "k$i"; done
# The least recently used (3) was evicted: a local miss, a hit through the server
# (from the registry, identical bytes), and local again afterwards.
expect_rc evicted-local-miss 1 local_only stat k3
expect_rc evicted-server-hit 0 oc get k3 -o "$WORK/out3"
cmp -s "$WORK/blob3" "$WORK/out3" && pass evicted-refill-identical || fail evicted-refill-identical "differs"
expect_rc evicted-refilled-locally 0 local_only stat k3
metrics=$(curl -s "$(metrics_url S)")
tier=$(grep '^ocicached_local_tier_bytes ' <<<"$metrics" | cut -d' ' -f2)
[[ -n $tier ]] && ((tier <= MAX + 110000)) && pass metrics-tier-bounded || fail metrics-tier-bounded "ocicached_local_tier_bytes=$tier"
stop_daemon S && pass sigterm || fail sigterm "exit $?"
