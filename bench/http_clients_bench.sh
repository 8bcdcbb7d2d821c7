# Part of bench/http_bench.sh (sourced with --clients; not run alone): real
# clients rebuilding from ocicached's HTTP endpoint on a fresh VM (empty local
# caches, a fresh ocicached with an empty local tier over a loopback registry)
# against the same rebuild from their warm local cache. Goal: at most 1.5x.
#
#   ccache  the test/e2e/ccachews sample (25 units), `make -j2` after `make clean`;
#           also with recall off (--recall_keys=0: each object a registry GET on
#           the build's path), against a shared server whose tier is warm, against
#           nginx as the remote (ccache's own cost of a remote hit), and with
#           LINKPROXY set, with the registry at 20 ms RTT with and without recall
#   turbo   the test/e2e/jsws workspace (3 packages), `turbo run build`
#
# Uses WORK, runs, start_daemon, start_registry, median and ratio from the caller.

start_registry none REG || { echo "registry did not start" >&2; exit 1; }
REPO=$REG/bench/http

# fresh_server NAME: a new ocicached on REPO with an empty local tier.
fresh_server() {
  local name=$1; shift
  rm -rf "$WORK/tier-$name"
  start_daemon "$name" --repo "$REPO" --dir "$WORK/tier-$name" --access_log=false "$@" || exit 1
}

# --- ccache ---------------------------------------------------------------------------
declare -a c_local c_remote c_remote_off c_warm c_nginx c_wan c_wan_off
if command -v ccache >/dev/null && command -v gcc >/dev/null; then
  export CCACHE_DIR=$WORK/ccache CCACHE_CONFIGPATH=$WORK/ccache.conf
  : >"$CCACHE_CONFIGPATH"
  CWS=$WORK/ccachews
  cp -r test/e2e/ccachews "$CWS" && (cd "$CWS" && sh gen.sh 24 >/dev/null) || exit 1
  cbuild() {  # cbuild [REMOTE]: seconds of a clean -j2 build with ccache
    make -s -C "$CWS" clean
    CCACHE_REMOTE_STORAGE=${1:-} seconds make -s -C "$CWS" -j2 CC="ccache gcc" CXX="ccache g++"
  }
  fresh_server CF
  cbuild "http://$CF_HTTP/cache/ccache" >/dev/null  # fills both the local ccache and the remote
  stop_daemon CF
  for r in $(seq 1 "$runs"); do
    ccache -z >/dev/null
    c_local+=("$(cbuild)")
    # Every compile must be a local hit for the baseline to mean anything.
    misses=$(ccache --print-stats | awk '$1=="cache_miss" {print $2}')
    [[ $misses == 0 ]] || { echo "ccache local rebuild: $misses misses" >&2; exit 1; }
    cp -r "$CCACHE_DIR" "$WORK/ccache-warm"
    rm -rf "$CCACHE_DIR"
    fresh_server CR
    ccache -z >/dev/null
    c_remote+=("$(cbuild "http://$CR_HTTP/cache/ccache")")
    hits=$(ccache --print-stats | awk '$1=="remote_storage_hit" {print $2}')
    [[ $hits == 25 ]] || { echo "ccache remote rebuild: $hits of 25 compiles were remote hits" >&2; exit 1; }
    # The same client-side fresh VM against a shared ocicached whose local
    # tier is warm (this server, now): no registry request.
    rm -rf "$CCACHE_DIR"
    ccache -z >/dev/null
    c_warm+=("$(cbuild "http://$CR_HTTP/cache/ccache")")
    hits=$(ccache --print-stats | awk '$1=="remote_storage_hit" {print $2}')
    [[ $hits == 25 ]] || { echo "ccache warm-server rebuild: $hits of 25 remote hits" >&2; exit 1; }
    stop_daemon CR
    # The fresh VM again with recall off: every object is a registry GET on
    # the build's path.
    rm -rf "$CCACHE_DIR"
    fresh_server CO --recall_keys=0
    ccache -z >/dev/null
    c_remote_off+=("$(cbuild "http://$CO_HTTP/cache/ccache")")
    hits=$(ccache --print-stats | awk '$1=="remote_storage_hit" {print $2}')
    [[ $hits == 25 ]] || { echo "ccache remote rebuild, no recall: $hits of 25 remote hits" >&2; exit 1; }
    stop_daemon CO
    # The field's plain baseline: ccache's http storage on nginx (GET static
    # files, WebDAV PUT), filled once, fresh client.
    if ((r == 1)); then
      rm -rf "$CCACHE_DIR"
      cbuild "http://127.0.0.1:$NPORT/put/ccache" >/dev/null
    fi
    rm -rf "$CCACHE_DIR"
    ccache -z >/dev/null
    c_nginx+=("$(cbuild "http://127.0.0.1:$NPORT/put/ccache")")
    hits=$(ccache --print-stats | awk '$1=="remote_storage_hit" {print $2}')
    [[ $hits == 25 ]] || { echo "ccache nginx rebuild: $hits of 25 remote hits" >&2; exit 1; }
    rm -rf "$CCACHE_DIR" && mv "$WORK/ccache-warm" "$CCACHE_DIR"
  done
  # Over a WAN: the registry behind the link model, a fresh VM each time, with
  # the recall list the servers above saved, and with recall off.
  if [[ -n ${LINKPROXY:-} ]]; then
    "$LINKPROXY" --target="$REG" --delay=10ms --mbit=200 >"$WORK/link.out" 2>"$WORK/link.err" &
    REG_PIDS+=($!)
    for _ in $(seq 1 50); do [[ -s $WORK/link.out ]] && break; sleep 0.1; done
    LINK=$(head -1 "$WORK/link.out")
    cp -r "$CCACHE_DIR" "$WORK/ccache-warm"
    for r in $(seq 1 "$runs"); do
      for mode in recall off; do
        rm -rf "$CCACHE_DIR" "$WORK/tier-CW"
        flags=()
        [[ $mode == off ]] && flags=(--recall_keys=0)
        start_daemon CW --repo "$LINK/bench/http" --dir "$WORK/tier-CW" --access_log=false "${flags[@]}" || exit 1
        ccache -z >/dev/null
        t=$(cbuild "http://$CW_HTTP/cache/ccache")
        hits=$(ccache --print-stats | awk '$1=="remote_storage_hit" {print $2}')
        [[ $hits == 25 ]] || { echo "ccache WAN rebuild ($mode): $hits of 25 remote hits" >&2; exit 1; }
        stop_daemon CW
        if [[ $mode == recall ]]; then c_wan+=("$t"); else c_wan_off+=("$t"); fi
      done
    done
    rm -rf "$CCACHE_DIR" && mv "$WORK/ccache-warm" "$CCACHE_DIR"
  fi
else
  echo "ccache or gcc missing: skipping the ccache rows" >&2
fi

# --- turbo ------------------------------------------------------------------------------
declare -a t_local t_remote t_warm
TURBO_VERSION=$(sed -n 's/^TURBO_VERSION=\([0-9.]*\).*/\1/p' test/e2e/js_cache_test.sh | head -1)
JWS=$WORK/jsws
cp -r test/e2e/jsws "$JWS"
if [[ -n $TURBO_VERSION ]] && command -v npm >/dev/null &&
   (cd "$JWS" && timeout 300 npm install --silent --no-audit --no-fund --save-dev --save-exact \
      "turbo@$TURBO_VERSION" >/dev/null 2>&1); then
  TURBO=$JWS/node_modules/.bin/turbo
  export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1 TURBO_NO_UPDATE_NOTIFIER=1 TURBO_UI=false
  export TURBO_REMOTE_CACHE_SIGNATURE_KEY=ocicache-bench-signature-key-0123456789abcdef
  tclean() { rm -rf "$JWS/.turbo" "$JWS/node_modules/.cache" "$JWS"/packages/*/dist; }
  tbuild() {  # tbuild [API]: seconds of `turbo run build`, remote cache at API if given
    if [[ -n ${1:-} ]]; then
      (cd "$JWS" && TURBO_API=$1 TURBO_TOKEN=bench-token TURBO_TEAM=bench seconds "$TURBO" run build)
    else
      (cd "$JWS" && seconds "$TURBO" run build)
    fi
  }
  tclean
  fresh_server TF
  tbuild "http://$TF_HTTP" >/dev/null  # fills the local and the remote cache
  stop_daemon TF
  local_cache=$WORK/turbo-local
  cp -r "$JWS/.turbo" "$local_cache"
  for r in $(seq 1 "$runs"); do
    rm -rf "$JWS"/packages/*/dist
    t_local+=("$(tbuild)")
    tclean
    fresh_server TR
    t_remote+=("$(tbuild "http://$TR_HTTP")")
    hits=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["protocols"]["turbo"]["hits"])' \
      <(curl -s "http://$TR_HTTP/status"))
    [[ $hits == 3 ]] || { echo "turbo remote rebuild: $hits of 3 tasks were remote hits" >&2; exit 1; }
    tclean
    t_warm+=("$(tbuild "http://$TR_HTTP")")  # the same server, its local tier warm now
    hits=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["protocols"]["turbo"]["hits"])' \
      <(curl -s "http://$TR_HTTP/status"))
    [[ $hits == 6 ]] || { echo "turbo warm-server rebuild: $((hits - 3)) of 3 remote hits" >&2; exit 1; }
    stop_daemon TR
    rm -rf "$JWS/.turbo" && cp -r "$local_cache" "$JWS/.turbo"
  done
else
  echo "turbo could not be installed from the npm registry: skipping the turbo rows" >&2
fi

echo
echo "Rebuilds on a fresh VM from ocicached (registry on loopback) vs the client's warm local cache, $runs rounds (median)"
printf '%-34s %14s %14s %8s %8s\n' "rebuild" "remote, s" "local, s" "ratio" "goal"
if ((${#c_local[@]})); then
  mc_l=$(median "${c_local[@]}"); mc_r=$(median "${c_remote[@]}")
  mc_w=$(median "${c_warm[@]}") mc_o=$(median "${c_remote_off[@]}")
  printf '%-34s %14s %14s %8s %8s\n' "ccache, 25 units, make -j2" "$mc_r" "$mc_l" "$(ratio "$mc_r" "$mc_l")" "<=1.5"
  printf '%-34s %14s %14s %8s %8s\n' "  same, --recall_keys=0" "$mc_o" "$mc_l" "$(ratio "$mc_o" "$mc_l")" ""
  mc_n=$(median "${c_nginx[@]}")
  printf '%-34s %14s %14s %8s %8s\n' "  same, shared server warm" "$mc_w" "$mc_l" "$(ratio "$mc_w" "$mc_l")" ""
  printf '%-34s %14s %14s %8s %8s\n' "  same, nginx as the remote" "$mc_n" "$mc_l" "$(ratio "$mc_n" "$mc_l")" ""
  if ((${#c_wan[@]})); then
    mc_wan=$(median "${c_wan[@]}"); mc_wo=$(median "${c_wan_off[@]}")
    printf '%-34s %14s %14s %8s %8s\n' "  registry at 20 ms RTT, recall" "$mc_wan" "$mc_l" "$(ratio "$mc_wan" "$mc_l")" ""
    printf '%-34s %14s %14s %8s %8s\n' "  same, --recall_keys=0" "$mc_wo" "$mc_l" "$(ratio "$mc_wo" "$mc_l")" ""
  fi
fi
if ((${#t_local[@]})); then
  mt_l=$(median "${t_local[@]}"); mt_r=$(median "${t_remote[@]}")
  mt_w=$(median "${t_warm[@]}")
  printf '%-34s %14s %14s %8s %8s\n' "turbo run build, 3 packages" "$mt_r" "$mt_l" "$(ratio "$mt_r" "$mt_l")" "<=1.5"
  printf '%-34s %14s %14s %8s %8s\n' "  same, shared server warm" "$mt_w" "$mt_l" "$(ratio "$mt_w" "$mt_l")" ""
fi
