# Helpers for test/e2e/bazel_test.sh and bench/bazel_bench.sh (sourced after lib.sh;
# not a test): a nested Bazel 4.2.3 building the sample workspace test/e2e/bazelws
# against ocicached as a REAPI remote cache.
#
# The nested Bazel has its own output user root and output base under $WORK (so it
# never shares a server, an action cache or a lock with the outer build), works on a
# copy of the sample workspace, and is shut down by bzl_shutdown (call it before
# lib.sh's cleanup removes $WORK). It is offline by construction: every repository
# the workspace names is a local_repository, like the main workspace's.

BZL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BZL_TIMEOUT=${BZL_TIMEOUT:-240}  # seconds for one nested bazel command
BZL_WS=$WORK/bazelws
BZL_BASE=$WORK/bzl/base

# TLS (grpcs://) in Debian's Bazel 4.2.3: its server jar carries Netty without the
# JDK ALPN classes ("JDK provider does not support ALPN protocol"), so gRPC over TLS
# needs Netty's OpenSSL provider, netty-tcnative (Debian: libnetty-tcnative-jni, the
# same 2.0.28 as the jar's classes). Netty loads it as libnetty_tcnative.so from
# java.library.path, which Bazel sets to /usr/share/bazel/, while Debian installs
# libnetty-tcnative.so; the library also refuses to run under a symlink of another
# name. So a copy under the expected name goes in $WORK/bzl/jni, added to the path.
BZL_TCNATIVE=$(ls /usr/lib/*/jni/libnetty-tcnative.so 2>/dev/null | head -1)
BZL_STARTUP=()

# bzl_setup: copies the sample workspace to $BZL_WS with absolute paths to the
# main workspace's local repository stand-ins; prepares netty-tcnative for TLS.
bzl_setup() {
  mkdir -p "$WORK/bzl/jni" || return 1
  cp -r "$BZL_ROOT/test/e2e/bazelws" "$BZL_WS" || return 1
  sed -i "s|\"\.\./\.\./\.\./third_party/|\"$BZL_ROOT/third_party/|" "$BZL_WS/WORKSPACE"
  if [[ -n $BZL_TCNATIVE ]]; then
    cp "$BZL_TCNATIVE" "$WORK/bzl/jni/libnetty_tcnative.so" || return 1
    BZL_STARTUP=(--host_jvm_args=-Djava.library.path=/usr/share/bazel/:"$WORK/bzl/jni")
  fi
}

# bzl ARGS...: runs the nested bazel in the copied workspace, bounded in time.
# --max_idle_secs ends a server that a killed script could not shut down.
bzl() {
  (cd "$BZL_WS" && timeout "$BZL_TIMEOUT" bazel --output_user_root="$WORK/bzl/root" \
    --output_base="$BZL_BASE" --max_idle_secs=600 "${BZL_STARTUP[@]}" "$@")
}

# Flags of every build: no convenience symlinks in the workspace, plain output.
BZL_FLAGS=(--symlink_prefix=/ --color=no --curses=no --noshow_progress --remote_timeout=60)

# bzl_build LOG ARGS...: `bazel test //...` (builds every target and runs the test)
# with the given extra flags; output in LOG. Returns bazel's exit code.
bzl_build() {
  local log=$1; shift
  bzl test //... "${BZL_FLAGS[@]}" "$@" >"$log" 2>&1
}

bzl_clean() { bzl clean >"$WORK/bzl/clean.log" 2>&1; }

bzl_shutdown() {
  [[ -d $BZL_BASE ]] || return 0
  bzl shutdown >/dev/null 2>&1
  chmod -R u+w "$WORK/bzl" 2>/dev/null  # Bazel leaves read-only trees behind.
}

# bzl_counts LOG: from Bazel's "INFO: N processes: A remote cache hit, B internal,
# C processwrapper-sandbox." line prints "EXECUTED HITS": the processes that were
# not internal (each ran somewhere or came from the cache) and the remote cache hits.
# Prints nothing if the line is missing.
bzl_counts() {
  python3 - "$1" <<'PY'
import re, sys
line = None
for l in open(sys.argv[1], errors="replace"):
    if re.match(r"INFO: \d+ processes?[:.]", l):
        line = l.strip()
if line is None:
    sys.exit(0)
m = re.match(r"INFO: (\d+) processes?(?:: (.*?))?\.?$", line)
total, kinds = int(m.group(1)), {}
for part in (m.group(2) or "").split(", "):
    if part:
        n, kind = part.split(" ", 1)
        kinds[kind] = kinds.get(kind, 0) + int(n)
print(total - kinds.get("internal", 0), kinds.get("remote cache hit", 0))
PY
}

# bzl_processes_line LOG: Bazel's own summary line, for messages.
bzl_processes_line() { grep -E '^INFO: [0-9]+ process' "$1" | tail -1; }

# bzl_bin: the nested build's bazel-bin directory.
bzl_bin() { echo "$BZL_BASE/execroot/bazelws/bazel-out/k8-fastbuild/bin"; }

# bzl_outputs_digest: one line per output file of the sample (name and SHA-256), so
# two builds' outputs can be compared.
bzl_outputs_digest() {
  (cd "$(bzl_bin)" && sha256sum hello greet_test gen big.bin listing.txt libgreet.a tree_index.txt tree/*) 2>&1
}

# packed_outputs NAME REGISTRY REPO: after a fill, the 8 MiB listing (it
# compresses) is stored packed: the registry holds no blob of its bytes, only a
# zstd frame (docs/FORMAT.md, "Packed CAS blobs"); big.bin (random) is stored
# as it is. A rebuild from an empty tier then shows the frame reads back.
packed_outputs() {
  local name=$1 reg=$2 repo=$3 listing big
  listing=$(sha256sum "$(bzl_bin)/listing.txt" | cut -d' ' -f1)
  big=$(sha256sum "$(bzl_bin)/big.bin" | cut -d' ' -f1)
  local l b
  l=$(curl -s -o /dev/null -I -w '%{http_code}' --max-time 10 "http://$reg/v2/$repo/blobs/sha256:$listing")
  b=$(curl -s -o /dev/null -I -w '%{http_code}' --max-time 10 "http://$reg/v2/$repo/blobs/sha256:$big")
  if [[ $l == 404 && $b == 200 ]]; then pass "$name"
  else fail "$name" "HEAD of listing.txt's blob: $l (want 404: stored packed), big.bin's: $b (want 200)"; fi
  # The CLI writes the blob its mapping entry names, decompressed.
  if [[ -n ${OCICACHE_BIN:-} ]]; then
    local out=$WORK/listing-from-cli.txt got
    "$OCICACHE_BIN" --repo "$reg/$repo" --no-dir --insecure get "cas:sha256:$listing" -o "$out" >/dev/null 2>"$WORK/listing-from-cli.err"
    got=$(sha256sum "$out" 2>/dev/null | cut -d' ' -f1)
    [[ $got == "$listing" ]] && pass "$name-cli-get" \
      || fail "$name-cli-get" "ocicache get of the mapping entry: sha256 ${got:-none} ($(head -2 "$WORK/listing-from-cli.err"))"
  fi
}

# --- checks shared by the Bazel end-to-end scripts (PASS/FAIL lines, lib.sh) ----
# They compare against N (the processes of the first build) and DIGEST0 (its
# outputs), which the script sets after its fill build.

# build NAME ARGS...: `bazel test //...` with ARGS must succeed (PASS/FAIL NAME);
# the log is $WORK/bzl/NAME.log, also in $LOG.
build() {
  local name=$1; shift
  LOG=$WORK/bzl/$name.log
  bzl_build "$LOG" "$@"
  local rc=$?
  if ((rc == 0)); then pass "$name"; return 0; fi
  local why; why=$(grep -E '^(ERROR|FATAL)' "$LOG" | head -3)
  fail "$name" "bazel exited $rc: $(cut -c1-300 <<<"${why:-$(tail -3 "$LOG")}")"
  return 1
}

# counts: EX and HITS of the build in $LOG (see bzl_counts); "?" if Bazel printed
# no processes line.
counts() {
  EX=? HITS=?
  read -r EX HITS < <(bzl_counts "$LOG")
  EX=${EX:-?} HITS=${HITS:-?}
}

# all_hits NAME: in the build of $LOG every executed process (N of them, as in
# the first build) was a remote cache hit.
all_hits() {
  counts
  if [[ $N =~ ^[0-9]+$ && $EX == "$N" && $HITS == "$N" ]]; then pass "$1"; return 0; fi
  fail "$1" "want all $N processes remote cache hits; got \"$(bzl_processes_line "$LOG")\""
}

# same_outputs NAME: the sample's outputs are identical to the first build's.
same_outputs() {
  local now; now=$(bzl_outputs_digest)
  if [[ $now == "$DIGEST0" ]]; then pass "$1"; else fail "$1" "$(diff <(echo "$DIGEST0") <(echo "$now") | head -5)"; fi
}

# registry_files: the registry's stored files (path and size), to see writes.
registry_files() { find "$WORK/reg-REG" -path '*docker/registry*' -type f -printf '%P %s\n' | sort; }

rebuild() { bzl_clean && build "$@"; }

# start_ocicached NAME FLAGS... / stop_ocicached NAME: daemon_lib.sh's start_daemon
# and stop_daemon, with a shorter shutdown grace (Bazel keeps idle connections).
source "$(dirname "${BASH_SOURCE[0]}")/daemon_lib.sh"
start_ocicached() {
  local var=$1; shift
  start_daemon "$var" --shutdown_grace=2s "$@"
}
stop_ocicached() { stop_daemon "$1" 2>/dev/null; }
