#!/usr/bin/env bash
# GOCACHEPROG benchmark: wall time of `go build` of the sample module
# (test/e2e/gomod: 7 packages of its own plus ~170 std packages, net/http included)
# in three states, measured in one run on this machine:
#   cold        no cache at all (empty GOCACHE, no GOCACHEPROG)
#   warm-local  a warm local GOCACHE, no GOCACHEPROG (the best case)
#   fresh-vm    empty GOCACHE and empty local tier, GOCACHEPROG=ocicache with a
#               warm registry on loopback (what a new CI machine sees)
# plus, for reference, the build that fills the registry, and one from a warm local
# tier. Each timed build writes its output into a new directory (no up-to-date
# shortcut; same file name, which the link step's action ID includes).
# Goals: fresh-vm <= 1.5x warm-local, and >= 3x faster than cold.
#
# Usage: bash bench/go_bench.sh [RUNS]   (RUNS of each warm state, median shown; default 3)
# OCICACHE_BIN / REGISTRYCTL name built binaries; otherwise they are built with bazel.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${1:-3}

if [[ -z ${OCICACHE_BIN:-} || -z ${REGISTRYCTL:-} ]]; then
  bazel build -c opt //cmd/ocicache //test/harness:registryctl >/tmp/go-bench-build.log 2>&1 ||
    { tail -20 /tmp/go-bench-build.log; exit 1; }
  bin=$(bazel info -c opt bazel-bin)
  OCICACHE_BIN=$bin/cmd/ocicache/ocicache
  REGISTRYCTL=$bin/test/harness/registryctl
fi
export OCICACHE_BIN REGISTRYCTL
source test/e2e/lib.sh  # WORK, start_registry, cleanup
source test/e2e/go_lib.sh

bash scripts/install-go.sh >/dev/null || exit 1
GO=$(go_cacheprog_tool) || exit 1
start_registry none REG || exit 1
go_env_offline "$WORK"
cp -r test/e2e/gomod "$WORK/src"
cd "$WORK/src" || exit 1

# timed LABEL ENV...: runs one build with the given environment, prints seconds.
# It runs in $(...), a subshell: a counter would not survive it, so every build
# gets a new directory from mktemp (a reused path would let go skip the link as
# up to date, which a fresh machine never can).
timed() {
  local label=$1; shift
  local t0 t1 out
  out=$(mktemp -d "$WORK/out.XXXXXX") || exit 1
  t0=$(date +%s.%N)
  if ! env "$@" "$GO" build -o "$out/sample" ./cmd/sample >"$out/log" 2>&1; then
    echo "build failed ($label):" >&2; tail -20 "$out/log" >&2; exit 1
  fi
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}
median() { python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.2f}")' "$@"; }
prog() { echo "GOCACHEPROG=$OCICACHE_BIN gocacheprog --stats-file $WORK/stats-$1"; }

cold=$(timed cold GOCACHE="$WORK/gc-cold")
warm=()
for i in $(seq "$runs"); do warm+=("$(timed warm-local GOCACHE="$WORK/gc-cold")"); done
fill=$(timed fill "$(prog fill)" OCICACHE_REPO="$REG/go/bench" OCICACHE_DIR="$WORK/oc-fill" GOCACHE="$WORK/gc-fill")
fresh=()
for i in $(seq "$runs"); do
  fresh+=("$(timed fresh-vm "$(prog fresh$i)" OCICACHE_REPO="$REG/go/bench" OCICACHE_DIR="$WORK/oc-fresh$i" GOCACHE="$WORK/gc-fresh$i")")
done
tier=$(timed local-tier "$(prog tier)" OCICACHE_REPO="$REG/go/bench" OCICACHE_DIR="$WORK/oc-fresh1" GOCACHE="$WORK/gc-tier")

w=$(median "${warm[@]}"); f=$(median "${fresh[@]}")
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
stat() { sum_stats "$WORK/stats-$1" "$2"; }
echo
echo "go build of example.com/sample ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)); $runs runs of warm states, median"
printf '%-34s %8s %14s %14s\n' state seconds "x warm-local" "cold / this"
printf '%-34s %8s %14s %14s\n' "cold (no cache)" "$cold" "$(ratio "$cold" "$w")" "1.00"
printf '%-34s %8s %14s %14s\n' "warm local GOCACHE" "$w" "1.00" "$(ratio "$cold" "$w")"
printf '%-34s %8s %14s %14s\n' "fresh VM, registry warm (ocicache)" "$f" "$(ratio "$f" "$w")" "$(ratio "$cold" "$f")"
printf '%-34s %8s %14s %14s\n' "warm local tier (ocicache)" "$tier" "$(ratio "$tier" "$w")" "$(ratio "$cold" "$tier")"
printf '%-34s %8s %14s %14s\n' "filling the registry (ocicache)" "$fill" "$(ratio "$fill" "$w")" "$(ratio "$cold" "$fill")"
echo
echo "fill: $(stat fill puts) puts, $(stat fill uploaded) uploaded; fresh-vm runs: ${fresh[*]} s; warm-local runs: ${warm[*]} s"
echo "fresh-vm run 1: $(stat fresh1 gets) gets, $(stat fresh1 remote_hits) remote hits ($(stat fresh1 prefetched) prefetched), $(stat fresh1 misses) misses;" \
     "registry lookups $(( $(stat fresh1 remote_lookup_us) / 1000 )) ms, downloads $(( $(stat fresh1 fetch_us) / 1000 )) ms in total," \
     "at most $(stat fresh1 max_in_flight) gets in flight"
goal() { python3 -c "import sys; sys.exit(0 if $1 else 1)" && echo "goal met: $2" || echo "goal missed: $2"; }
goal "$f <= 1.5 * $w" "fresh-vm <= 1.5x warm-local"
goal "$cold >= 3 * $f" "fresh-vm >= 3x faster than cold"
