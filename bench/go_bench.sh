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
# Goals: fresh-vm <= 1.5x warm-local (the median, and each run), and >= 3x faster than cold.
#
# Then the same across modelled networks (test/harness/link_proxy.h: a loopback
# proxy with a one-way delay and one bandwidth cap per direction; BENCH_LINKS,
# default "10ms:200 20ms:100" = 20 ms RTT at 200 Mbit/s and 40 ms RTT at 100; "none": loopback only):
#   fresh-vm         as above, the registry behind the link
#   other checkout   fresh-vm from another directory of the same module (another
#                    runner's path: the session list is keyed by module, not path)
#   filling          the first build, filling an empty repository across the link
# Goals at 20 ms / 200 Mbit (issue 14): fresh-vm <= 2x warm-local, other checkout
# <= 3x, filling <= 1.3x cold.
#
# Usage: bash bench/go_bench.sh [RUNS]   (RUNS of each warm state, median shown; default 3)
# OCICACHE_BIN / REGISTRYCTL / LINKPROXY name built binaries; otherwise they are built
# with bazel.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${1:-3}

if [[ -z ${OCICACHE_BIN:-} || -z ${REGISTRYCTL:-} || -z ${LINKPROXY:-} ]]; then
  bazel build -c opt //cmd/ocicache //test/harness:registryctl //test/harness:linkproxy \
    >/tmp/go-bench-build.log 2>&1 || { tail -20 /tmp/go-bench-build.log; exit 1; }
  bin=$(bazel info -c opt bazel-bin)
  OCICACHE_BIN=$bin/cmd/ocicache/ocicache
  REGISTRYCTL=$bin/test/harness/registryctl
  LINKPROXY=$bin/test/harness/linkproxy
fi
export OCICACHE_BIN REGISTRYCTL
source test/e2e/lib.sh  # WORK, start_registry, cleanup
source test/e2e/go_lib.sh

bash scripts/install-go.sh >/dev/null || exit 1
GO=$(go_cacheprog_tool) || exit 1
start_registry none REG "--access_log" || exit 1
# Requests the registry logged so far (one line each), to count those of the fill.
registry_requests() { grep -cE '"(GET|HEAD|PUT|POST|PATCH|DELETE) /v2/' "$WORK/reg-REG/registry.log" 2>/dev/null || echo 0; }
# The registry runs on this machine, sharing its cores with the build: its CPU
# time during the filling builds is printed (a real registry runs elsewhere).
REGISTRY_PID=$(pgrep -P "${REG_PIDS[0]}" | head -1)
registry_cpu() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$REGISTRY_PID/stat" 2>/dev/null || echo 0; }
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
  # Each build starts with no dirty pages: none pays for the writeback of the
  # files an earlier build wrote (a fresh VM has none).
  sync
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
cpu0=$(registry_cpu)
req0=$(registry_requests)
fill=$(timed fill "$(prog fill)" OCICACHE_REPO="$REG/go/bench" OCICACHE_DIR="$WORK/oc-fill" GOCACHE="$WORK/gc-fill")
fill_registry_cpu=$(python3 -c "print(f'{$(registry_cpu) - $cpu0:.1f}')")
fill_requests=$(( $(registry_requests) - req0 ))
fresh=() fresh_diag=()
for i in $(seq "$runs"); do
  c0=$(registry_cpu) d0=$(awk '/^Dirty:/{print int($2/1024)}' /proc/meminfo)
  fresh+=("$(timed fresh-vm "$(prog fresh$i)" OCICACHE_REPO="$REG/go/bench" OCICACHE_DIR="$WORK/oc-fresh$i" GOCACHE="$WORK/gc-fresh$i")")
  fresh_diag+=("$(python3 -c "print(f'{$(registry_cpu) - $c0:.2f}')")s/${d0}MB")
done
tier=$(timed local-tier "$(prog tier)" OCICACHE_REPO="$REG/go/bench" OCICACHE_DIR="$WORK/oc-fresh1" GOCACHE="$WORK/gc-tier")

# Another checkout of the module (a second runner's path), filled nowhere yet.
cp -r "$root/test/e2e/gomod" "$WORK/src-other"

# Across the link models: LINK_ADDR[k], LINK_NAME[k]; per link, fresh-vm runs, one
# from the other checkout, and a filling build into a repository of its own.
LINK_ADDR=() LINK_NAME=() WAN_FRESH=() WAN_OTHER=() WAN_FILL=() WAN_FILL_CPU=()
links=${BENCH_LINKS:-10ms:200 20ms:100}
[[ $links == none ]] && links=""
for spec in $links; do
  delay=${spec%%:*} mbit=${spec##*:}
  k=${#LINK_ADDR[@]}
  "$LINKPROXY" --target="$REG" --delay="$delay" --mbit="$mbit" >"$WORK/link-$k.out" 2>"$WORK/link-$k.err" &
  REG_PIDS+=($!)
  for _ in $(seq 1 50); do [[ -s $WORK/link-$k.out ]] && break; sleep 0.1; done
  LINK_ADDR+=("$(head -1 "$WORK/link-$k.out")")
  LINK_NAME+=("$(python3 -c "import re; v=float(re.match(r'[0-9.]+','$delay').group()); print(int(2*v))") ms RTT, $mbit Mbit/s")
  link=${LINK_ADDR[$k]}
  runs_k=()
  for i in $(seq "$runs"); do
    runs_k+=("$(timed "wan$k-fresh" "$(prog "wan$k-fresh$i")" OCICACHE_REPO="$link/go/bench" \
      OCICACHE_DIR="$WORK/oc-wan$k-fresh$i" GOCACHE="$WORK/gc-wan$k-fresh$i")")
  done
  WAN_FRESH+=("$(median "${runs_k[@]}")")
  WAN_OTHER+=("$(cd "$WORK/src-other" && timed "wan$k-other" "$(prog "wan$k-other")" \
    OCICACHE_REPO="$link/go/bench" OCICACHE_DIR="$WORK/oc-wan$k-other" GOCACHE="$WORK/gc-wan$k-other")")
  cpu0=$(registry_cpu)
  WAN_FILL+=("$(timed "wan$k-fill" "$(prog "wan$k-fill")" OCICACHE_REPO="$link/go/wanfill$k" \
    OCICACHE_DIR="$WORK/oc-wan$k-fill" GOCACHE="$WORK/gc-wan$k-fill")")
  WAN_FILL_CPU+=("$(python3 -c "print(f'{$(registry_cpu) - $cpu0:.1f}')")")
done

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
for k in "${!LINK_ADDR[@]}"; do
  printf '%-34s %8s %14s %14s\n' "fresh VM, ${LINK_NAME[$k]}" "${WAN_FRESH[$k]}" "$(ratio "${WAN_FRESH[$k]}" "$w")" "$(ratio "$cold" "${WAN_FRESH[$k]}")"
  printf '%-34s %8s %14s %14s\n' "  other checkout, same link" "${WAN_OTHER[$k]}" "$(ratio "${WAN_OTHER[$k]}" "$w")" "$(ratio "$cold" "${WAN_OTHER[$k]}")"
  printf '%-34s %8s %14s %14s\n' "  filling, same link" "${WAN_FILL[$k]}" "$(ratio "${WAN_FILL[$k]}" "$w")" "$(ratio "$cold" "${WAN_FILL[$k]}")"
done
echo
for k in "${!LINK_ADDR[@]}"; do
  echo "${LINK_NAME[$k]}: fresh run 1 $(stat "wan$k-fresh1" remote_hits) remote hits ($(stat "wan$k-fresh1" prefetched) prefetched), $(stat "wan$k-fresh1" misses) misses;" \
       "other checkout $(stat "wan$k-other" remote_hits) remote hits, $(stat "wan$k-other" misses) misses, $(stat "wan$k-other" session_listed) listed;" \
       "filling $(stat "wan$k-fill" uploaded) uploaded, registry CPU ${WAN_FILL_CPU[$k]} s, pack $(stat "wan$k-fill" pack_bytes_written) bytes" \
       "naming $(stat "wan$k-fill" pack_refs) stored objects, close $(( $(stat "wan$k-fill" close_us) / 1000 )) ms"
done
echo "fill: $(stat fill puts) puts, $(stat fill uploaded) uploaded, $fill_requests registry requests, registry CPU ${fill_registry_cpu} s (on these $(nproc) cores: a real registry runs elsewhere); fresh-vm runs: ${fresh[*]} s; warm-local runs: ${warm[*]} s"
echo "fresh-vm run 1: $(stat fresh1 gets) gets, $(stat fresh1 remote_hits) remote hits ($(stat fresh1 prefetched) prefetched), $(stat fresh1 misses) misses;" \
     "registry lookups $(( $(stat fresh1 remote_lookup_us) / 1000 )) ms, downloads $(( $(stat fresh1 fetch_us) / 1000 )) ms in total," \
     "at most $(stat fresh1 max_in_flight) gets in flight"
goal() { python3 -c "import sys; sys.exit(0 if $1 else 1)" && echo "goal met: $2" || echo "goal missed: $2"; }
echo "fresh-vm runs, registry CPU during each / dirty MB before each: ${fresh_diag[*]}"
echo "fresh-vm runs, downloads/lookups/close (ms), uploaded, pack bytes written: $(for i in $(seq "$runs"); do printf '%s/%s/%s %s %s; ' $(( $(stat "fresh$i" fetch_us) / 1000 )) $(( $(stat "fresh$i" remote_lookup_us) / 1000 )) $(( $(stat "fresh$i" close_us) / 1000 )) "$(stat "fresh$i" uploaded)" "$(stat "fresh$i" pack_bytes_written)"; done)"
goal "$f <= 1.5 * $w" "fresh-vm <= 1.5x warm-local"
fmax=$(printf '%s\n' "${fresh[@]}" | sort -g | tail -1)
goal "$fmax <= 1.5 * $w" "fresh-vm <= 1.5x warm-local in each of $runs runs (slowest $fmax)"
goal "$cold >= 3 * $f" "fresh-vm >= 3x faster than cold"
if ((${#LINK_ADDR[@]} > 0)); then
  goal "${WAN_FRESH[0]} <= 2 * $w" "fresh-vm at ${LINK_NAME[0]} <= 2x warm-local"
  goal "${WAN_OTHER[0]} <= 3 * $w" "other checkout at ${LINK_NAME[0]} <= 3x warm-local"
  goal "${WAN_FILL[0]} <= 1.3 * $cold" "filling at ${LINK_NAME[0]} <= 1.3x cold"
fi
