#!/usr/bin/env bash
# REAPI remote cache benchmark: wall time of a warm rebuild (after `bazel clean`)
# of the sample workspace test/e2e/bazelws with real Bazel 4.2.3, measured in one
# run on this machine, in three states:
#   disk_cache        --disk_cache on the local disk (the baseline)
#   registry only     --remote_cache=grpc://ocicached, restarted with an empty local
#                     tier before each run: every blob comes from the loopback registry
#   warm local tier   --remote_cache=grpc://ocicached whose local tier already holds
#                     the cache (the registry is only asked for existence, if at all)
#   over a WAN        registry only, with the registry behind the link model of
#                     test/harness/link_proxy.h (one-way delay, a bandwidth cap per
#                     direction): by default 20 ms RTT / 200 Mbit/s and 40 ms RTT /
#                     100 Mbit/s (BENCH_LINKS="10ms:200 20ms:100": one-way delay:Mbit/s)
#   WAN, minimal      the same with --remote_download_minimal (Bazel downloads no
#                     output it does not need: the remote cache answers, the
#                     outputs stay in the cache)
#   WAN, unpacked     registry only over the link, from a second repository filled
#                     by a server with --reapi_zstd_level=0: every CAS blob stored
#                     as it is, so the sample's 8 MiB listing (it compresses) crosses
#                     the link whole instead of as its zstd frame (docs/FORMAT.md,
#                     "Packed CAS blobs"); BENCH_UNPACKED=0 leaves it out
# BENCH_TREE=N makes the sample's tree artifact N files (default 5; the issue's
# 300-file tree: BENCH_TREE=300). BENCH_OCICACHED_FLAGS adds flags to every
# ocicached (e.g. --fill_in_background=false or --recall_keys=0, to compare).
# Every timed rebuild must be all remote cache hits (checked). The states alternate
# within each round, so load changes on the machine hit them alike.
# Goal: remote cache rebuild <= 1.3x the disk_cache rebuild.
#
# Usage: bash bench/bazel_bench.sh [RUNS]   (rounds, median shown; default 3)
# OCICACHED_BIN / REGISTRYCTL name built binaries; otherwise they are built with bazel.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}

if [[ -z ${OCICACHED_BIN:-} || -z ${REGISTRYCTL:-} ]]; then
  bazel build -c opt //cmd/ocicache //cmd/ocicached //test/harness:registryctl //test/harness:linkproxy >/tmp/bazel-bench-build.log 2>&1 ||
    { tail -20 /tmp/bazel-bench-build.log; exit 1; }
  bin=$(bazel info -c opt bazel-bin)
  OCICACHE_BIN=$bin/cmd/ocicache/ocicache
  OCICACHED_BIN=$bin/cmd/ocicached/ocicached
  REGISTRYCTL=$bin/test/harness/registryctl
  LINKPROXY=$bin/test/harness/linkproxy
fi
: "${LINKPROXY:?LINKPROXY names the built //test/harness:linkproxy}"
export OCICACHE_BIN=${OCICACHE_BIN:-unused} OCICACHED_BIN REGISTRYCTL
source test/e2e/lib.sh  # WORK, start_registry, cleanup
source test/e2e/bazel_lib.sh
trap 'bzl_shutdown; cleanup' EXIT

start_registry none REG || exit 1
bzl_setup || exit 1
if [[ -n ${BENCH_TREE:-} ]]; then
  [[ $BENCH_TREE =~ ^[0-9]+$ ]] || { echo "BENCH_TREE must be a number of files" >&2; exit 2; }
  sed -i "s/count = 5,/count = $BENCH_TREE,/" "$BZL_WS/BUILD.bazel"
  grep -q "count = $BENCH_TREE," "$BZL_WS/BUILD.bazel" || { echo "BENCH_TREE: no tree count in the sample" >&2; exit 1; }
fi
read -r -a OCD_FLAGS <<<"${BENCH_OCICACHED_FLAGS:-}"
REPO=$REG/bazel/bench
DC=$WORK/disk-cache
# The access log costs a line per call; a production server would log too, keep it.
start_ocicached D --repo "$REPO" --dir "$WORK/tier-fill" "${OCD_FLAGS[@]}" || exit 1

# Fill both caches in one build (Bazel 4.2.3 writes to --disk_cache and
# --remote_cache together).
bzl_build "$WORK/fill.log" --remote_cache="grpc://$D" --disk_cache="$DC" ||
  { echo "fill build failed:" >&2; tail -20 "$WORK/fill.log" >&2; exit 1; }
read -r N _ < <(bzl_counts "$WORK/fill.log")
[[ -n ${N:-} ]] || { echo "no processes line in the fill build" >&2; exit 1; }

# The unpacked repository: the same build run again (everything executes) into a
# server that stores every blob as it is.
UNPACKED=${BENCH_UNPACKED:-1}
if [[ $UNPACKED == 1 ]]; then
  start_ocicached D0 --repo "$REG/bazel/bench-unpacked" --dir "$WORK/tier-fill-unpacked" \
    "${OCD_FLAGS[@]}" --reapi_zstd_level=0 || exit 1
  bzl_clean || exit 1
  bzl_build "$WORK/fill-unpacked.log" --remote_cache="grpc://$D0" ||
    { echo "unpacked fill build failed:" >&2; tail -20 "$WORK/fill-unpacked.log" >&2; exit 1; }
  stop_ocicached D0
fi

# timed LABEL ARGS...: clean, rebuild with ARGS; prints seconds. Exits if the
# rebuild was not all remote cache hits.
timed() {
  local label=$1; shift
  local log t0 t1 ex hits
  log=$(mktemp "$WORK/run-$label.XXXXXX")
  bzl_clean || { echo "bazel clean failed" >&2; exit 1; }
  t0=$(date +%s.%N)
  bzl_build "$log" "$@" || { echo "build failed ($label):" >&2; tail -20 "$log" >&2; exit 1; }
  t1=$(date +%s.%N)
  read -r ex hits < <(bzl_counts "$log")
  if [[ ${ex:-} != "$N" || ${hits:-} != "$N" ]]; then
    echo "$label: not all $N processes were cache hits: $(bzl_processes_line "$log")" >&2; exit 1
  fi
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}
median() { python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.2f}")' "$@"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

# calls LOG: ocicached's calls in its access log LOG, by method: count and the sum
# of their durations.
calls() {
  python3 - "$1" <<'PY'
import re, sys, collections
n, ms = collections.Counter(), collections.Counter()
for l in open(sys.argv[1], errors="replace"):
    m = re.search(r" ([A-Za-z]+/[A-Za-z]+) .*? ([A-Z_]+) ([0-9.]+)ms ", l)
    if m:
        n[m.group(1)] += 1
        ms[m.group(1)] += float(m.group(3))
print("; ".join(f"{k} {n[k]} calls {ms[k]:.0f} ms" for k in sorted(n)))
PY
}

# registry_requests: ocicached's count of HTTP requests to the registry so far.
registry_requests() {
  local url
  url=$(grep -o 'http://[^ ]*/metrics' "$WORK/D.err" | head -1)
  curl -s --max-time 10 "$url" | awk '$1 == "ocicached_registry_requests_total" {print $2}'
}

# The link models in front of the registry: LINK_ADDR[k] and LINK_NAME[k].
LINK_ADDR=() LINK_NAME=()
for spec in ${BENCH_LINKS:-10ms:200 20ms:100}; do
  delay=${spec%%:*} mbit=${spec##*:}
  "$LINKPROXY" --target="$REG" --delay="$delay" --mbit="$mbit" >"$WORK/link-$spec.out" 2>"$WORK/link-$spec.err" &
  REG_PIDS+=($!)
  for _ in $(seq 1 50); do [[ -s $WORK/link-$spec.out ]] && break; sleep 0.1; done
  LINK_ADDR+=("$(head -1 "$WORK/link-$spec.out")")
  ms=$(python3 -c "import re; v=float(re.match(r'[0-9.]+','$delay').group()); print(int(2*v))")
  LINK_NAME+=("${ms}ms RTT, ${mbit} Mbit/s")
done

# One untimed round first: the nested Bazel's JVM warms up (JIT) on the same work.
timed warm-up-disk --disk_cache="$DC" >/dev/null || exit 1
timed warm-up-remote --remote_cache="grpc://$D" >/dev/null || exit 1

disk=() reg=() tier=()
for i in $(seq "$runs"); do
  disk+=("$(timed disk_cache --disk_cache="$DC")") || exit 1
  stop_ocicached D
  start_ocicached D --repo "$REPO" --dir "$WORK/tier-$i" --metrics_listen=127.0.0.1:0 "${OCD_FLAGS[@]}" || exit 1
  reg+=("$(timed registry-only --remote_cache="grpc://$D")") || exit 1
  cp "$WORK/D.err" "$WORK/registry-only.err"
  reg_requests=$(registry_requests)
  tier+=("$(timed warm-tier --remote_cache="grpc://$D")") || exit 1
  tier_requests=$(($(registry_requests) - reg_requests))
  tail -n +"$(($(wc -l <"$WORK/registry-only.err") + 1))" "$WORK/D.err" >"$WORK/warm-tier.err"
  for k in "${!LINK_ADDR[@]}"; do
    stop_ocicached D
    start_ocicached D --repo "${LINK_ADDR[$k]}/bazel/bench" --dir "$WORK/tier-$i-wan$k" \
      --metrics_listen=127.0.0.1:0 "${OCD_FLAGS[@]}" || exit 1
    t=$(timed "wan$k" --remote_cache="grpc://$D") || exit 1
    eval "wan$k+=(\"\$t\")"
    stop_ocicached D
    start_ocicached D --repo "${LINK_ADDR[$k]}/bazel/bench" --dir "$WORK/tier-$i-wanmin$k" \
      --metrics_listen=127.0.0.1:0 "${OCD_FLAGS[@]}" || exit 1
    t=$(timed "wanmin$k" --remote_cache="grpc://$D" --remote_download_minimal) || exit 1
    eval "wanmin$k+=(\"\$t\")"
    if [[ $UNPACKED == 1 ]]; then
      stop_ocicached D
      start_ocicached D --repo "${LINK_ADDR[$k]}/bazel/bench-unpacked" \
        --dir "$WORK/tier-$i-wanraw$k" "${OCD_FLAGS[@]}" --reapi_zstd_level=0 || exit 1
      t=$(timed "wanraw$k" --remote_cache="grpc://$D") || exit 1
      eval "wanraw$k+=(\"\$t\")"
    fi
  done
done

d=$(median "${disk[@]}") r=$(median "${reg[@]}") t=$(median "${tier[@]}")
echo
echo "bazel clean && bazel test //... of test/e2e/bazelws ($N processes, all cache hits; 32 MiB random output, 8 MiB listing; tree of ${BENCH_TREE:-5} files)"
[[ -n ${BENCH_OCICACHED_FLAGS:-} ]] && echo "ocicached flags: $BENCH_OCICACHED_FLAGS"
echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $runs rounds, median; goal <= 1.30x disk_cache"
printf '%-40s %8s %13s\n' state seconds "x disk_cache"
printf '%-40s %8s %13s\n' "--disk_cache (baseline)" "$d" "1.00"
printf '%-40s %8s %13s\n' "--remote_cache, ocicached, registry only" "$r" "$(ratio "$r" "$d")"
printf '%-40s %8s %13s\n' "--remote_cache, ocicached, warm tier" "$t" "$(ratio "$t" "$d")"
for k in "${!LINK_ADDR[@]}"; do
  eval "w=(\"\${wan$k[@]}\")"
  m=$(median "${w[@]}")
  printf '%-40s %8s %13s\n' "  registry only, ${LINK_NAME[$k]}" "$m" "$(ratio "$m" "$d")"
  eval "w=(\"\${wanmin$k[@]}\")"
  m=$(median "${w[@]}")
  printf '%-40s %8s %13s\n' "    same, --remote_download_minimal" "$m" "$(ratio "$m" "$d")"
  if [[ $UNPACKED == 1 ]]; then
    eval "w=(\"\${wanraw$k[@]}\")"
    m=$(median "${w[@]}")
    printf '%-40s %8s %13s\n' "    same, no blob stored packed" "$m" "$(ratio "$m" "$d")"
  fi
done
echo
echo "runs (s): disk_cache ${disk[*]}; registry only ${reg[*]}; warm tier ${tier[*]}"
echo "ocicached, last registry-only rebuild: $(calls "$WORK/registry-only.err"); $reg_requests registry requests"
echo "ocicached, last warm-tier rebuild: $(calls "$WORK/warm-tier.err"); $tier_requests registry requests"
