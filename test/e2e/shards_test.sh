#!/usr/bin/env bash
# Shard sizing and re-sharding against the real registry (issue 15):
# `ocicache shards` counts entries per repository with one tag list each and
# names the shard count a per-repository limit needs; `ocicache reshard` moves a
# repository from one count to another without losing an entry, also when a
# request budget interrupts it (run again, it goes on).
source "$(dirname "$0")/lib.sh"

start_registry none REG || { fail registry-start "registryctl did not start"; exit 1; }
REPO=$REG/shards/cache
oc() { "$OCICACHE_BIN" --repo "$REPO" --no-dir "$@"; }
N=40
for i in $(seq 1 $N); do
  head -c $((500 + i)) /dev/urandom >"$WORK/blob.$i"
  oc put "k/$i" --blob "$WORK/blob.$i" >/dev/null 2>&1 || { fail put "put k/$i failed"; exit 1; }
done
pass "filled ($N entries, unsharded)"
count() { "$OCICACHE_BIN" --repo "$REPO" --no-dir "$@" ls --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
# all_identical SHARDS: every entry read back with that shard count is what was put.
all_identical() {
  local bad=0
  for i in $(seq 1 $N); do
    oc --shards "$1" get "k/$i" -o "$WORK/out" >/dev/null 2>&1 && cmp -s "$WORK/blob.$i" "$WORK/out" || bad=$((bad + 1))
  done
  echo "$bad"
}

# --- sizing --------------------------------------------------------------------------
expect_rc shards-count 0 oc shards --limit 20
expect_contains shards-total "$OUT" "$N entries in 1 repository, the fullest $N (200% of a limit of 20)"
expect_contains shards-advice "$OUT" "$N entries need --shards 7 (unsharded now): ocicache reshard --to-shards 7"
expect_rc shards-ecr 0 oc shards --entries 100000
expect_contains shards-ecr-advice "$OUT" "100000 entries need --shards 14"
expect_rc shards-too-many 0 oc shards --entries 100000000
expect_contains shards-too-many-says "$OUT" "more than 256 shards"
expect_rc shards-json 0 oc shards --json
python3 -c 'import json,sys; j=json.loads(sys.argv[1]); sys.exit(0 if j["entries"] == 40 and j["needed"] == 1 else 1)' "$OUT" \
  && pass shards-json-fields || fail shards-json-fields "$OUT"

# --- dry run moves nothing ------------------------------------------------------------
expect_rc reshard-dry 0 oc reshard --to-shards 4 --dry-run
expect_contains reshard-dry-says "$OUT" "would move"
[[ $(count) == "$N" ]] && pass reshard-dry-nothing-moved || fail reshard-dry-nothing-moved "$(count) unsharded entries left"

# --- 0 -> 4 shards, interrupted by a budget, then finished ---------------------------------
expect_rc reshard-budget-exit-3 3 oc --registry-budget 90 reshard --to-shards 4
expect_contains reshard-budget-says "$ERR" "nothing is lost"
moved=$(grep -c '^moved k/' <<<"$OUT")
left=$(count); now=$(count --shards 4)
((moved > 0 && moved < N)) && pass "reshard-budget-partial ($moved moved)" || fail reshard-budget-partial "$moved moved"
# An entry between its copy and its delete is in both layouts; none is in neither.
((left + now >= N)) && pass "reshard-budget-nothing-lost ($left old + $now new)" || fail reshard-budget-nothing-lost "$left old + $now new < $N"
expect_rc reshard-resumed 0 oc reshard --to-shards 4
[[ $(count) == 0 && $(count --shards 4) == "$N" ]] && pass reshard-resumed-all-moved \
  || fail reshard-resumed-all-moved "$(count) unsharded, $(count --shards 4) in 4 shards"
bad=$(all_identical 4)
[[ $bad == 0 ]] && pass reshard-4-identical || fail reshard-4-identical "$bad of $N entries missing or different"

# --- 4 -> 16 -------------------------------------------------------------------------
expect_rc reshard-16 0 oc --shards 4 reshard --to-shards 16
expect_contains reshard-16-says "$OUT" "of $N entries to --shards 16"
[[ $(count --shards 16) == "$N" ]] && pass reshard-16-all || fail reshard-16-all "$(count --shards 16) in 16 shards"
bad=$(all_identical 16)
[[ $bad == 0 ]] && pass reshard-16-identical || fail reshard-16-identical "$bad of $N entries missing or different"
expect_rc shards-16 0 oc --quiet --shards 16 shards
expect_contains shards-16-total "$OUT" "$N entries in 16 repositories"

# --- bad input ------------------------------------------------------------------------
expect_rc reshard-no-count 2 oc reshard
expect_rc reshard-same 2 oc --shards 16 reshard --to-shards 16
expect_one_line reshard-same-one-line "$ERR"
expect_rc shards-bad-limit 2 oc shards --limit 0
