#!/usr/bin/env bash
# Stored form of HTTP cache objects (docs/FORMAT.md, "HTTP cache objects"):
# what zstd storage costs and saves for a plain tar sent to /cache/, against
# the same object stored as sent (--http_zstd_level=0), measured in one run.
#
# The object: a tar of the first OBJ_MIB MiB of /usr/include's files (C
# headers, about what a plain tar of sources or JavaScript holds), and, as the
# control, the same number of random bytes (which the server stores as sent
# at every level: the row shows what the 16 KiB compression test costs).
#
# For each object and level, per round:
#   PUT        through a server whose registry is on loopback
#   GET local  from that server's local tier (zstd: decoded in the process;
#              as sent: sendfile(2))
#   GET fresh  through a new server with an empty local tier whose registry is
#              behind the link model (test/harness/link_proxy.h; 20 ms RTT,
#              200 Mbit/s): a fresh CI machine's first read
# (recall off in both servers, so no prefetch runs beside the timed GETs)
# and the bytes the registry stores. Figures are medians of RUNS rounds; the
# ratio is zstd's time over as-sent's (below 1: zstd is faster).
#
# Usage: bash bench/http_zstd_bench.sh [RUNS]   (default 3)
# OCICACHED_BIN / REGISTRYCTL / LINKPROXY name built binaries; otherwise they are
# built with bazel -c opt.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
OBJ_MIB=${OBJ_MIB:-32}
if [[ -z ${OCICACHED_BIN:-} || -z ${REGISTRYCTL:-} || -z ${LINKPROXY:-} ]]; then
  bazel build -c opt //cmd/ocicached //test/harness:registryctl //test/harness:linkproxy \
    >/tmp/http-zstd-bench-build.log 2>&1 || { tail -20 /tmp/http-zstd-bench-build.log; exit 1; }
  bin=$(bazel info -c opt bazel-bin)
  OCICACHED_BIN=$bin/cmd/ocicached/ocicached
  REGISTRYCTL=$bin/test/harness/registryctl
  LINKPROXY=$bin/test/harness/linkproxy
fi
export OCICACHE_BIN=${OCICACHE_BIN:-unused} OCICACHED_BIN REGISTRYCTL
source test/e2e/lib.sh  # WORK, start_registry, cleanup
source test/e2e/daemon_lib.sh
trap cleanup EXIT

# --- the objects ------------------------------------------------------------------
(cd /usr/include && find . -type f | LC_ALL=C sort | head -c 100000000 | tr '\n' '\0' |
  xargs -0 tar -cf - 2>/dev/null) | head -c $((OBJ_MIB << 20)) >"$WORK/text.tar"
head -c $((OBJ_MIB << 20)) /dev/urandom >"$WORK/random.bin"
for o in text.tar random.bin; do
  [[ $(stat -c %s "$WORK/$o") == $((OBJ_MIB << 20)) ]] || { echo "could not make $OBJ_MIB MiB of $o" >&2; exit 1; }
done

start_registry none REG || { echo "registry did not start" >&2; exit 1; }
"$LINKPROXY" --target="$REG" --delay=10ms --mbit=200 >"$WORK/link.out" 2>"$WORK/link.err" &
REG_PIDS+=($!)
for _ in $(seq 1 50); do [[ -s $WORK/link.out ]] && break; sleep 0.1; done
LINK=$(head -1 "$WORK/link.out")
[[ -n $LINK ]] || { echo "linkproxy did not start: $(cat "$WORK/link.err")" >&2; exit 1; }

seconds() {  # seconds CMD...: wall time of CMD, which must succeed
  local t0 t1
  t0=$(date +%s.%N)
  "$@" || { echo "failed: $*" >&2; exit 1; }
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1-$t0:.3f}')"
}
put() { curl -sf -o /dev/null -T "$2" "http://$1"; }
get() { curl -sf -o "$WORK/got" "http://$1" && cmp -s "$WORK/got" "$2"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { python3 -c "a,b=float('$1'),float('$2'); print(f'{a/b:.2f}' if b>0 else 'n/a')"; }

# stored_bytes REPO KEY: the size of the object's blob in the registry.
stored_bytes() {
  local tag
  tag=$(python3 -c "
import sys
k = sys.argv[1]
print('k.' + ''.join(c if (c.isalnum() and c.isascii() and c != 'x') else 'x%02x' % ord(c) for c in k))" "$2")
  curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/$1/manifests/$tag" |
    jq -r '[.layers[] | select(.annotations["org.ocicache.entry.role"] == "blob") | .size] | add'
}

declare -A put_s get_local get_fresh stored
for r in $(seq 1 "$runs"); do
  for level in 3 0; do
    repo=bench/zstd/l$level-r$r
    rm -rf "$WORK/tier-W"
    start_daemon W --repo "$REG/$repo" --dir "$WORK/tier-W" --access_log=false \
      --http_zstd_level=$level --http_max_body_size=1G --recall_keys=0 || exit 1
    for o in text.tar random.bin; do
      k="$o $level"
      put_s[$k]+=" $(seconds put "$W_HTTP/cache/bench/$o" "$WORK/$o")"
      get_local[$k]+=" $(seconds get "$W_HTTP/cache/bench/$o" "$WORK/$o")"
      stored[$k]=$(stored_bytes "$repo" "http:kv:bench:$o")
    done
    stop_daemon W
    rm -rf "$WORK/tier-F"
    start_daemon F --repo "$LINK/$repo" --dir "$WORK/tier-F" --access_log=false --recall_keys=0 || exit 1
    for o in text.tar random.bin; do
      get_fresh["$o $level"]+=" $(seconds get "$F_HTTP/cache/bench/$o" "$WORK/$o")"
    done
    stop_daemon F
  done
done

echo
echo "HTTP objects of $OBJ_MIB MiB, stored as zstd (level 3) vs as sent (level 0); $runs rounds (median), $(nproc) cores"
printf '%-12s %-22s %12s %12s %8s\n' "object" "measure" "zstd" "as sent" "ratio"
for o in text.tar random.bin; do
  a="$o 3"; b="$o 0"
  printf '%-12s %-22s %12s %12s %8s\n' "$o" "registry bytes" "${stored[$a]}" "${stored[$b]}" "$(ratio "${stored[$a]}" "${stored[$b]}")"
  for m in put_s get_local get_fresh; do
    declare -n tbl=$m
    # shellcheck disable=SC2086
    za=$(median ${tbl[$a]}); zb=$(median ${tbl[$b]})
    case $m in
      put_s) label="PUT s (loopback)" ;;
      get_local) label="GET s, local tier" ;;
      get_fresh) label="GET s, fresh, 20 ms" ;;
    esac
    printf '%-12s %-22s %12s %12s %8s\n' "" "$label" "$za" "$zb" "$(ratio "$za" "$zb")"
    unset -n tbl
  done
done
