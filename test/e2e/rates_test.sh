#!/usr/bin/env bash
# Registry-friendly maintenance (issue 15): gc and sync under a request budget
# (--registry-budget) stop with exit 3 once it is spent, having sent no more
# requests than it allows, keep what they did, and finish when run again; a rate
# (--registry-rate) spaces requests. The real registry's access log counts what
# was sent.
source "$(dirname "$0")/lib.sh"

start_registry none REG --access_log || { fail registry-start "registryctl did not start"; exit 1; }
LOG=$WORK/reg-REG/registry.log
REPO=$REG/rates/cache
requests() { grep -c '"[A-Z]* /v2/' "$LOG"; }
oc() { "$OCICACHE_BIN" "$@"; }

# 30 entries in the registry, 20 more in a directory only.
for i in $(seq 1 30); do
  head -c $((1000 + i)) /dev/urandom >"$WORK/blob"
  oc --repo "$REPO" --no-dir put "gc/$i" --blob "$WORK/blob" >/dev/null 2>&1 || { fail put "put gc/$i failed"; exit 1; }
done
for i in $(seq 1 20); do
  head -c $((2000 + i)) /dev/urandom >"$WORK/blob"
  oc --dir "$WORK/dir" put "up/$i" --blob "$WORK/blob" >/dev/null 2>&1 || { fail put "put up/$i failed"; exit 1; }
done
pass "filled (30 entries in the registry, 20 in a directory)"
count_registry() { oc --repo "$REPO" --no-dir ls --json | python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin) if e["key"].startswith(sys.argv[1])))' "$1"; }

# --- gc under a budget ------------------------------------------------------------------
before=$(requests)
expect_rc gc-budget-exit-3 3 oc --repo "$REPO" --no-dir --registry-budget 40 gc --older-than 0s
sent=$(($(requests) - before))
expect_contains gc-budget-says-why "$ERR" "budget of 40"
expect_contains gc-budget-says-progress "$ERR" "gc stopped after"
deleted=$(grep -c '^deleted gc/' <<<"$OUT")
((sent <= 40)) && pass "gc-budget-kept ($sent requests sent)" || fail gc-budget-kept "$sent requests for a budget of 40"
((deleted > 0 && deleted < 30)) && pass "gc-budget-partial ($deleted deleted)" || fail gc-budget-partial "$deleted of 30 deleted"
left=$(count_registry gc/)
[[ $left == $((30 - deleted)) ]] && pass "gc-budget-deletions-stay ($left left)" || fail gc-budget-deletions-stay "$left left after $deleted deleted"
expect_rc gc-resumed 0 oc --repo "$REPO" --no-dir gc --older-than 0s
again=$(grep -c '^deleted gc/' <<<"$OUT")
[[ $again == "$left" ]] && pass "gc-resumed-rest ($again more)" || fail gc-resumed-rest "deleted $again, $left were left"
[[ $(count_registry gc/) == 0 ]] && pass gc-resumed-empty || fail gc-resumed-empty "$(count_registry gc/) gc/ entries left"

# --- sync under a budget ----------------------------------------------------------------
before=$(requests)
expect_rc sync-budget-exit-3 3 oc --repo "$REPO" --dir "$WORK/dir" --registry-budget 30 sync --direction up
sent=$(($(requests) - before))
expect_contains sync-budget-says-progress "$ERR" "sync stopped after"
((sent <= 30)) && pass "sync-budget-kept ($sent requests sent)" || fail sync-budget-kept "$sent requests for a budget of 30"
pushed=$(count_registry up/)
((pushed > 0 && pushed < 20)) && pass "sync-budget-partial ($pushed pushed)" || fail sync-budget-partial "$pushed of 20 pushed"
expect_rc sync-resumed 0 oc --repo "$REPO" --dir "$WORK/dir" sync --direction up
expect_contains sync-resumed-rest "$OUT" "copied $((20 - pushed)) entries to"
[[ $(count_registry up/) == 20 ]] && pass sync-resumed-all || fail sync-resumed-all "$(count_registry up/) of 20 in the registry"

# --- a rate spaces requests ---------------------------------------------------------------
before=$(requests)
t0=$(date +%s.%N)
expect_rc ls-rated 0 oc --repo "$REPO" --no-dir --registry-rate 8 ls
t1=$(date +%s.%N)
n=$(($(requests) - before))
# n requests at 8/s: the last starts (n-1)/8 s after the first, at the earliest.
python3 -c "import sys; sys.exit(0 if $n >= 4 and $t1 - $t0 >= ($n - 1) / 8 else 1)" \
  && pass "rate-spaces-requests ($n requests in $(python3 -c "print(f'{$t1 - $t0:.2f}')") s at 8/s)" \
  || fail rate-spaces-requests "$n requests in $(python3 -c "print(f'{$t1 - $t0:.2f}')") s at 8/s"

# --- bad values are usage errors ----------------------------------------------------------
expect_rc rate-bad 2 oc --repo "$REPO" --no-dir --registry-rate fast ls
expect_one_line rate-bad-one-line "$ERR"
expect_rc budget-bad 2 oc --repo "$REPO" --no-dir --registry-budget -1 ls
expect_rc help-mentions-budget 0 oc --help
expect_contains help-budget "$OUT" "--registry-budget"
expect_contains help-rate "$OUT" "--registry-rate"
