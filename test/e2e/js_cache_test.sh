#!/usr/bin/env bash
# End-to-end: the JavaScript monorepo tools Turborepo (npm `turbo`) and Nx (npm
# `nx`) use ocicached's HTTP cache endpoint as their remote cache, with the cache
# stored in a real docker-registry on loopback.
#
# Both tools, at pinned versions, are installed from the npm registry into a copy
# of the sample workspace test/e2e/jsws (packages a <- b <- c, each `build` writing
# dist/ with node alone). For each tool: a first build fills the cache; then
# everything local goes (the tool's caches, dist/, ocicached and its --dir) and a
# build against a fresh ocicached over the same registry must get every task from
# the remote cache, with byte-identical outputs; then unknown and read-only
# tokens (builds still work, nothing is written), a stopped registry (builds work
# as misses, the server still answers) and a restarted one (the cache is intact).
#
# What the tools send is described in the comments of the checks; turbo signs its
# artifacts (turbo.json remoteCache.signature), so a hit also proves the server
# returns the x-artifact-tag it was given.
#
# npm needs the network; everything after the install needs only loopback: where
# the script may create a network namespace (as root), it runs the rest in one
# that has only loopback.
TURBO_VERSION=2.11.13  # turbo 2.x: /v8/artifacts API with signed, zstd artifacts
NX_VERSION=24.0.7      # the free self-hosted HTTP cache (NX_SELF_HOSTED_REMOTE_CACHE_*)
BUILD_TIMEOUT=${JS_BUILD_TIMEOUT:-180}  # seconds for one turbo or nx build

source "$(dirname "$0")/lib.sh"
: "${OCICACHED_BIN:?built ocicached binary}"
HERE=$(cd "$(dirname "$0")" && pwd)

# --- outside the namespace: install the tools, then run the rest -------------------------
if [[ -z ${OCICACHE_E2E_JSWS:-} ]]; then
  command -v node >/dev/null && command -v npm >/dev/null ||
    { fail npm-install "node and npm are needed (Debian: nodejs, npm)"; exit 1; }
  cp -r "$HERE/jsws" "$WORK/jsws" || { fail npm-install "could not copy test/e2e/jsws"; exit 1; }
  # Into the workspace copy (devDependencies, exact versions; also links the
  # workspace packages under node_modules/@jsws and writes package-lock.json).
  # The versions are exact, so npm's cache may answer without asking the registry
  # (--prefer-offline); few, short retries: without a network npm would otherwise retry
  # for many minutes.
  (cd "$WORK/jsws" && timeout 300 npm install --prefer-offline --no-audit --no-fund --save-dev --save-exact \
     --fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000 --fetch-timeout=60000 \
     "turbo@$TURBO_VERSION" "nx@$NX_VERSION") >"$WORK/npm.log" 2>&1
  rc=$?
  if ((rc != 0)); then
    ((rc == 124)) && echo "npm install: timed out after 300 s" >>"$WORK/npm.log"
    fail npm-install "npm could not install turbo@$TURBO_VERSION and nx@$NX_VERSION (npm registry unreachable?): $(grep -m3 -iE 'err|timed out' "$WORK/npm.log" | tr '\n' ' ' | cut -c1-400)"
    exit 1
  fi
  v_turbo=$("$WORK/jsws/node_modules/.bin/turbo" --version 2>/dev/null)
  v_nx=$(node -p 'require(process.argv[1]).version' "$WORK/jsws/node_modules/nx/package.json" 2>/dev/null)
  if [[ $v_turbo == "$TURBO_VERSION" && $v_nx == "$NX_VERSION" ]]; then
    pass npm-install
  else
    fail npm-install "installed turbo \"$v_turbo\" and nx \"$v_nx\", want $TURBO_VERSION and $NX_VERSION"
    exit 1
  fi
  export OCICACHE_E2E_JSWS=$WORK/jsws
  if unshare -n true 2>/dev/null; then
    unshare -n env OCICACHE_E2E_NETNS=1 bash -c 'ip link set lo up && exec bash "$0"' "$0"
  else
    echo "js_cache_test: no network namespace (not root?): the tools could reach the network" >&2
    bash "$0"
  fi
  exit $?
fi

# --- inside: loopback only ----------------------------------------------------------------
source "$(dirname "$0")/daemon_lib.sh"
JSWS=$OCICACHE_E2E_JSWS
if [[ -n ${OCICACHE_E2E_NETNS:-} ]]; then
  links=$(ip -o link show | awk -F': ' '{printf "%s ", $2}')
  [[ $links == "lo " ]] && pass network-loopback-only || fail network-loopback-only "interfaces: $links"
fi

# No telemetry, update checks, daemons, cloud or terminal UI; nothing from the caller's
# environment that would point the tools elsewhere; their config dirs under $WORK.
for v in $(env | grep -oE '^(TURBO|NX|NX_CLOUD|VERCEL)_[A-Za-z0-9_]*'); do unset "$v"; done
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1 TURBO_NO_UPDATE_NOTIFIER=1 TURBO_UI=false
export NX_DAEMON=false NX_NO_CLOUD=true NX_TUI=false NX_VERBOSE_LOGGING=false
export NO_COLOR=1 FORCE_COLOR=0
export XDG_CONFIG_HOME=$WORK/xdg/config XDG_CACHE_HOME=$WORK/xdg/cache XDG_DATA_HOME=$WORK/xdg/data
# turbo signs artifacts (turbo.json "remoteCache": {"signature": true}) with this key.
export TURBO_REMOTE_CACHE_SIGNATURE_KEY=ocicache-e2e-signature-key-0123456789abcdef
TEAM=e2e-team  # turbo sends it as ?slug=e2e-team

RW=js-writer-0123456789abcdef
RO=js-reader-0123456789abcdef
printf '# e2e tokens\n%s write\n%s read\n' "$RW" "$RO" >"$WORK/tokens"

# start_http NAME FLAGS...: ocicached with its HTTP endpoint on a free loopback port;
# sets ${NAME}_URL to http://127.0.0.1:PORT. Log in $WORK/NAME.err.
start_http() {
  local var=$1; shift
  rm -f "$WORK/$var.http"
  start_daemon "$var" --http_listen=127.0.0.1:0 --http_port_file="$WORK/$var.http" \
    --tokens_file="$WORK/tokens" "$@" || return 1
  for _ in $(seq 1 100); do
    [[ -s $WORK/$var.http ]] && break
    sleep 0.1
  done
  [[ -s $WORK/$var.http ]] || { echo "no $WORK/$var.http" >>"$WORK/$var.err"; return 1; }
  printf -v "${var}_URL" 'http://127.0.0.1:%s' "$(cat "$WORK/$var.http")"
}

# wipe_local: every cache and output the tools keep in the workspace.
wipe_local() {
  rm -rf "$JSWS/.turbo" "$JSWS/node_modules/.cache" "$JSWS/.nx" "$JSWS"/packages/*/dist \
    "$JSWS"/packages/*/.turbo
}

# outputs_digest: SHA-256 of every file under packages/*/dist.
outputs_digest() {
  (cd "$JSWS" && find packages -path '*/dist/*' -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

# build NAME URL TOKEN [VAR=VALUE...]: one build of every package with $TOOL against the
# HTTP cache at URL (no token if TOKEN is empty; extra environment VAR=VALUE). Output
# in $LOG; sets RC, SECS and the counts of tally.
build() {
  local name=$1 url=$2 token=$3; shift 3
  local -a envs cmd
  LOG=$WORK/$name.log
  if [[ $TOOL == turbo ]]; then
    envs=(TURBO_API="$url")
    [[ " $* " == *" TURBO_TEAMID="* ]] || envs+=(TURBO_TEAM="$TEAM")
    [[ -n $token ]] && envs+=(TURBO_TOKEN="$token")
    cmd=(node_modules/.bin/turbo run build --summarize)
  else
    envs=(NX_SELF_HOSTED_REMOTE_CACHE_SERVER="$url")
    [[ -n $token ]] && envs+=(NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN="$token")
    cmd=(node_modules/.bin/nx run-many -t build --outputStyle=stream)
  fi
  rm -rf "$JSWS/.turbo/runs" "$JSWS/.nx/cache/run.json"
  local t0=$SECONDS
  (cd "$JSWS" && env "${envs[@]}" "$@" timeout "$BUILD_TIMEOUT" "${cmd[@]}") >"$LOG" 2>&1
  RC=$? SECS=$((SECONDS - t0))
  sed -i 's/\x1b\[[0-9;]*[A-Za-z]//g' "$LOG"  # colours (nx colours its output under CI=true)
  tally
  return $RC
}

# tally: from the build in $LOG, TASKS, REMOTE (remote cache hits) and MISSES (executed)
# as the tool's run record says (turbo: --summarize's .turbo/runs/*.json; nx:
# .nx/cache/run.json), and TEXT_REMOTE and TEXT_MISSES as its output says ("?" if absent).
tally() {
  TASKS=? REMOTE=? MISSES=?
  local f q
  if [[ $TOOL == turbo ]]; then
    f=$(ls -t "$JSWS"/.turbo/runs/*.json 2>/dev/null | head -1)
    q='[(.tasks|length), ([.tasks[]|select(.cache.status=="HIT" and .cache.source=="REMOTE")]|length),
        ([.tasks[]|select(.cache.status=="MISS")]|length)] | @tsv'
    TEXT_REMOTE=$(grep -c 'cache hit, replaying logs' "$LOG")
    TEXT_MISSES=$(grep -c 'cache miss, executing' "$LOG")
  else
    f=$JSWS/.nx/cache/run.json
    q='[(.tasks|length), ([.tasks[]|select(.cacheStatus=="remote-cache-hit")]|length),
        ([.tasks[]|select(.cacheStatus=="cache-miss")]|length)] | @tsv'
    TEXT_REMOTE=$(grep -cE '^> nx run \S+ +\[remote cache\]' "$LOG")
    TEXT_MISSES=$(grep -cE '^> nx run \S+ *$' "$LOG")
  fi
  [[ -f $f ]] && read -r TASKS REMOTE MISSES < <(jq -r "$q" "$f" 2>/dev/null)
  TASKS=${TASKS:-?} REMOTE=${REMOTE:-?} MISSES=${MISSES:-?}
}

# why: what the last build did, for a FAIL line.
why() {
  echo "rc $RC, $SECS s; run record: $TASKS tasks, $REMOTE remote hits, $MISSES misses; output: $TEXT_REMOTE remote hits, $TEXT_MISSES executed; log: $(grep -iE 'warn|error|unauthor|misconfig|fail|cache' "$LOG" | head -6 | tr '\n' '|' | cut -c1-500)"
}

# built NAME: the last build succeeded.
built() { ((RC == 0)) && pass "$1" || fail "$1" "$(why)"; }

# all_remote NAME: every task of the last build came from the remote cache, by the tool's
# record and by its output.
all_remote() {
  local ok=1
  ((RC == 0)) && [[ $TASKS == 3 && $REMOTE == 3 && $TEXT_REMOTE == 3 ]] || ok=0
  if [[ $TOOL == turbo ]]; then
    grep -q 'FULL TURBO' "$LOG" || ok=0
  else
    grep -q 'from the cache instead of running the command for 3 out of 3 tasks' "$LOG" || ok=0
  fi
  ((ok)) && pass "$1" || fail "$1" "want all 3 tasks remote cache hits: $(why)"
}

# all_missed NAME: every task of the last build ran (nothing came from a cache).
all_missed() {
  ((RC == 0)) && [[ $TASKS == 3 && $MISSES == 3 && $TEXT_MISSES == 3 && $REMOTE == 0 ]] &&
    pass "$1" || fail "$1" "want all 3 tasks executed: $(why)"
}

# same_outputs NAME: the outputs are byte-identical to the first build's.
same_outputs() {
  local now; now=$(outputs_digest)
  if [[ -n $now && $now == "$DIGEST0" ]]; then pass "$1"
  else fail "$1" "$(diff <(echo "$DIGEST0") <(echo "$now") | head -4 | tr '\n' ' ')"; fi
}

# status NAME: GET /status of the server NAME (JSON, or empty).
status() {
  local url=${1}_URL
  curl -s --max-time 10 -H "Authorization: Bearer $RW" "${!url}/status"
}

# stat_of JSON PROTOCOL FIELD: .protocols.PROTOCOL.FIELD of a /status reply.
stat_of() { jq -r ".protocols.$2.$3 // empty" <<<"$1" 2>/dev/null; }

# registry_files: the registry's stored files (path and size), to see writes.
registry_files() {
  find "$WORK/reg-$REGVAR" -path '*docker/registry*' -type f -printf '%P %s\n' 2>/dev/null | sort
}

# catalog: the registry's repositories (JSON).
catalog() { curl -s --max-time 10 "http://${!REGVAR}/v2/_catalog?n=1000"; }

# stored_forms: "zstd=N plain=M" (entries of js/$TOOL whose object blob is stored
# zstd-compressed, and as sent), read from the registry's manifests.
stored_forms() {
  local r tag types zstd=0 plain=0
  for r in $(catalog | jq -r '.repositories[]?' 2>/dev/null | grep -E "^js/$TOOL(/|\$)"); do
    for tag in $(curl -s --max-time 10 "http://${!REGVAR}/v2/$r/tags/list" | jq -r '.tags[]?' | grep -E '^[kh]\.'); do
      types=$(curl -s --max-time 10 -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://${!REGVAR}/v2/$r/manifests/$tag" | jq -r '.layers[]?.mediaType')
      grep -qx 'application/zstd' <<<"$types" && zstd=$((zstd + 1))
      grep -qx 'application/octet-stream' <<<"$types" && plain=$((plain + 1))
    done
  done
  echo "zstd=$zstd plain=$plain"
}

# entries: "REPOSITORY KEY" of every entry in js/$TOOL and the repositories under it,
# as `ocicache ls` lists them.
entries() {
  local r
  for r in $(catalog | jq -r '.repositories[]?' 2>/dev/null | grep -E "^js/$TOOL(/|\$)"); do
    "$OCICACHE_BIN" --repo "${!REGVAR}/$r" --no-dir ls --json 2>/dev/null |
      jq -r --arg r "$r" '.[]? | "\($r) \(.key)"' 2>/dev/null
  done
}

# settled_registry_files: registry_files once two looks a second apart agree (at most 15 s),
# so writes still under way when a check starts do not count as its own.
settled_registry_files() {
  local a b
  a=$(registry_files)
  for _ in $(seq 1 15); do
    sleep 1
    b=$(registry_files)
    [[ $a == "$b" ]] && break
    a=$b
  done
  echo "$b"
}

# restore_sources: the sample's sources as shipped (undoes change_c).
restore_sources() { cp "$HERE/jsws/packages/c/src/index.js" "$JSWS/packages/c/src/index.js"; }

# change_c SALT: package c's source changes; a and b do not.
change_c() { echo "// salt $1" >>"$JSWS/packages/c/src/index.js"; }

# --- one tool against ocicached ----------------------------------------------------------
# run_tool TOOL: every check for turbo or nx; names start with TOOL-.
run_tool() {
  TOOL=$1
  local t=$1
  REGVAR=REG_$t
  start_registry none "$REGVAR" 2>>"$WORK/registry-start.err" ||
    { fail "$t-registry-start" "registryctl did not start: $(tail -3 "$WORK/registry-start.err" | tr '\n' ' ')"; return 1; }
  local reg_pid=${REG_PIDS[-1]}
  REPO=${!REGVAR}/js/$t
  wipe_local
  restore_sources

  # --- fill ---
  start_http D1 --repo "$REPO" --dir "$WORK/$t-dir1" ||
    { fail "$t-ocicached-start" "$(tail -3 "$WORK/D1.err")"; return 1; }
  build "$t-fill" "$D1_URL" "$RW"
  built "$t-fill" && all_missed "$t-fill-all-executed"
  DIGEST0=$(outputs_digest)
  [[ $(grep -cE '^[0-9a-f]{64}  ' <<<"$DIGEST0") == 10 ]] && pass "$t-fill-outputs" ||
    fail "$t-fill-outputs" "want 10 files under packages/*/dist: $DIGEST0"
  local cat n
  for _ in $(seq 1 50); do
    n=$(entries | grep -c .)
    ((n >= 3)) && break
    sleep 0.2
  done
  cat=$(catalog)
  grep -qE "\"js/$t(/[^\"]*)?\"" <<<"$cat" && pass "$t-fill-in-registry" ||
    fail "$t-fill-in-registry" "no repository js/$t in the registry: $(head -c 300 <<<"$cat")"
  ((n >= 3)) && pass "$t-fill-entries" ||
    fail "$t-fill-entries" "ocicache ls shows $n entries under ${!REGVAR}/js/$t, want >= 3"
  # How the artifacts are stored (docs/FORMAT.md, "HTTP cache objects"): the
  # server compresses an object only when its first bytes compress, and both
  # tools compress their own artifacts (turbo: zstd'd tars; nx: gzip'd tars,
  # package a's too, though it holds a 64 KiB text bundle), so every one is
  # stored as sent. Objects up to 16 KiB live in their manifest, not counted.
  local forms; forms=$(stored_forms)
  [[ $forms =~ zstd=0\  && $forms =~ plain=([1-9][0-9]*) ]] && pass "$t-fill-stored-as-sent" ||
    fail "$t-fill-stored-as-sent" "want $t's artifacts stored as sent, none as application/zstd, got: $forms"
  local st; st=$(status D1)
  [[ $(stat_of "$st" "$t" misses) -ge 3 && $(stat_of "$st" "$t" requests) -ge 6 ]] 2>/dev/null &&
    pass "$t-fill-status" || fail "$t-fill-status" "want >= 3 $t misses, >= 6 requests in /status: $(head -c 400 <<<"$st")"

  if [[ $t == turbo ]]; then
    # What turbo checks before a run, and HEAD (which this turbo does not send).
    local hash; hash=$(jq -r '.tasks[0].hash' "$(ls -t "$JSWS"/.turbo/runs/*.json | head -1)" 2>/dev/null)
    expect_contains turbo-status-enabled \
      "$(curl -s --max-time 10 -H "Authorization: Bearer $RO" "$D1_URL/v8/artifacts/status?slug=$TEAM")" '"enabled"'
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -I -H "Authorization: Bearer $RO" \
      "$D1_URL/v8/artifacts/$hash?slug=$TEAM")
    [[ $code == 200 ]] && pass turbo-head-hit || fail turbo-head-hit "HEAD /v8/artifacts/$hash: $code, want 200"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -I -H "Authorization: Bearer $RO" \
      "$D1_URL/v8/artifacts/0123456789abcdef?slug=$TEAM")
    [[ $code == 404 ]] && pass turbo-head-miss || fail turbo-head-miss "HEAD of an unknown hash: $code, want 404"
  else
    # Nx never overwrites: a second PUT of a stored hash is 409 (nx takes it as "stored").
    local hash code
    hash=$(jq -r '.tasks[0].hash' "$JSWS/.nx/cache/run.json" 2>/dev/null)
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X PUT --data-binary 'other bytes' \
      -H 'Content-Type: application/octet-stream' -H "Authorization: Bearer $RW" "$D1_URL/v1/cache/$hash")
    [[ $code == 409 ]] && pass nx-put-existing-409 || fail nx-put-existing-409 "PUT /v1/cache/$hash again: $code, want 409"
  fi
  stop_daemon D1 2>/dev/null
  rm -rf "$WORK/$t-dir1"

  # --- nothing local: a fresh ocicached (empty --dir) over the same registry ---
  start_http D2 --repo "$REPO" --dir "$WORK/$t-dir2" ||
    { fail "$t-ocicached-restart" "$(tail -3 "$WORK/D2.err")"; return 1; }
  wipe_local
  build "$t-rebuild" "$D2_URL" "$RW"
  all_remote "$t-rebuild-all-remote-hits"
  same_outputs "$t-rebuild-same-outputs"
  st=$(status D2)
  [[ $(stat_of "$st" "$t" hits) -ge 3 ]] 2>/dev/null && pass "$t-rebuild-status-hits" ||
    fail "$t-rebuild-status-hits" "want >= 3 $t hits in /status: $(head -c 400 <<<"$st")"
  if [[ $t == turbo ]]; then
    # x-artifact-duration comes back with the hit: turbo reports it as time saved.
    local saved
    saved=$(jq -r '[.tasks[]|select((.cache.timeSaved // 0) > 0)]|length' "$(ls -t "$JSWS"/.turbo/runs/*.json | head -1)" 2>/dev/null)
    [[ $saved == 3 ]] && pass turbo-duration-returned ||
      fail turbo-duration-returned "$saved of 3 hits have a timeSaved (x-artifact-duration not returned?)"
    # The team (teamId or slug) is a namespace: another team misses, then hits.
    wipe_local
    build turbo-other-team "$D2_URL" "$RW" TURBO_TEAMID=team_other
    all_missed turbo-other-team-misses
    wipe_local
    build turbo-other-team-again "$D2_URL" "$RW" TURBO_TEAMID=team_other
    all_remote turbo-other-team-hits
    same_outputs turbo-other-team-same-outputs
  fi

  # --- tokens ---
  wipe_local
  build "$t-unknown-token" "$D2_URL" not-a-known-token-0123456789
  if [[ $t == turbo ]]; then
    # turbo goes on without the remote cache (GET /v8/artifacts/status answered 401).
    all_missed turbo-unknown-token-builds
    expect_contains turbo-unknown-token-says "$(cat "$LOG")" "Authentication failed"
  else
    # nx stops the run on a 401, and says "Unauthorized" only for a text/plain 401.
    ((RC != 0)) && pass nx-unknown-token-refused || fail nx-unknown-token-refused "nx exited 0: $(why)"
    if grep -q 'Unauthorized' "$LOG" && ! grep -q 'Misconfigured' "$LOG"; then pass nx-unknown-token-unauthorized
    else fail nx-unknown-token-unauthorized "want nx to say Unauthorized (a 401 with Content-Type text/plain): $(grep -m2 -iE 'unauthor|misconfig' "$LOG" | tr '\n' ' ')"; fi
    wipe_local
    build nx-no-token "$D2_URL" ""
    ((RC != 0)) && grep -q 'Unauthorized' "$LOG" && pass nx-no-token-refused ||
      fail nx-no-token-refused "want nx to stop with Unauthorized: $(why)"
  fi

  # A read-only token: hits for a and b, c changed so it misses, runs locally, and its
  # upload is refused (403) without failing the build; the registry is unchanged.
  wipe_local
  change_c 1
  local before before_e after
  before=$(settled_registry_files) before_e=$(entries | sort)
  build "$t-readonly" "$D2_URL" "$RO"
  ((RC == 0)) && [[ $REMOTE == 2 && $MISSES == 1 ]] && pass "$t-readonly-builds" ||
    fail "$t-readonly-builds" "want 2 remote hits and 1 miss: $(why)"
  [[ -s $JSWS/packages/c/dist/data.bin ]] && pass "$t-readonly-outputs" || fail "$t-readonly-outputs" "no packages/c/dist/data.bin"
  if [[ $t == turbo ]]; then
    # turbo reads a 403 body as {"error": {"code", "message"}}; else it warns "unable to parse".
    if grep -q 'Remote cache rejected an upload with 403' "$LOG" && ! grep -q 'unable to parse' "$LOG"; then
      pass turbo-readonly-403-understood
    else
      fail turbo-readonly-403-understood "$(grep -m2 -iE 'warn' "$LOG" | tr '\n' ' ' | cut -c1-400)"
    fi
  fi
  after=$(settled_registry_files)
  [[ -n $before && $before == "$after" ]] && pass "$t-readonly-nothing-written" ||
    fail "$t-readonly-nothing-written" "$(diff <(echo "$before") <(echo "$after") | head -5 | tr '\n' ' ')"
  local after_e; after_e=$(entries | sort)
  [[ -n $before_e && $after_e == "$before_e" ]] && pass "$t-readonly-no-new-entries" ||
    fail "$t-readonly-no-new-entries" "ocicache ls before and after: $(diff <(echo "$before_e") <(echo "$after_e") | head -4 | tr '\n' ' ')"
  # The same build with the write token uploads (so the checks above can fail).
  wipe_local
  build "$t-writer" "$D2_URL" "$RW"
  ((RC == 0)) && [[ $REMOTE == 2 && $MISSES == 1 ]] && pass "$t-writer-builds" ||
    fail "$t-writer-builds" "want 2 remote hits and 1 miss: $(why)"
  for _ in $(seq 1 50); do [[ $(registry_files) != "$after" ]] && break; sleep 0.2; done
  [[ $(registry_files) != "$after" ]] && pass "$t-writer-uploads" || fail "$t-writer-uploads" "registry unchanged"
  restore_sources
  stop_daemon D2 2>/dev/null

  # --- the registry stops: builds go on as misses, the server keeps answering ---
  # Stopped before the fresh server starts: a server that starts while the
  # registry is up prefetches the namespaces the last one used (recall's
  # index), and would then rightly answer this build from its local tier.
  kill -TERM "$reg_pid" 2>/dev/null
  wait "$reg_pid" 2>/dev/null
  curl -s --max-time 2 "http://${!REGVAR}/v2/" >/dev/null && fail "$t-registry-stopped" "registry still answers" ||
    pass "$t-registry-stopped"
  start_http D3 --repo "$REPO" --dir "$WORK/$t-dir3" ||
    { fail "$t-ocicached-outage-start" "$(tail -3 "$WORK/D3.err")"; return 1; }
  wipe_local
  build "$t-outage" "$D3_URL" "$RW"
  all_missed "$t-outage-builds"
  same_outputs "$t-outage-same-outputs"
  ((SECS <= 60)) && pass "$t-outage-fast" || fail "$t-outage-fast" "the build took $SECS s"
  if [[ $t == turbo ]]; then
    # Misses (404), not errors: turbo would warn and pause its remote cache on 5xx.
    ! grep -qiE 'temporarily unavailable|failed to contact remote cache' "$LOG" && pass turbo-outage-quiet ||
      fail turbo-outage-quiet "$(grep -m2 -iE 'temporarily unavailable|failed to contact' "$LOG" | tr '\n' ' ')"
  fi
  local code
  code=$(curl -s -o "$WORK/status.json" -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $RW" "$D3_URL/status")
  [[ $code == 200 ]] && jq -e .protocols >/dev/null 2>&1 <"$WORK/status.json" && pass "$t-outage-server-answers" ||
    fail "$t-outage-server-answers" "GET /status: $code $(head -c 200 "$WORK/status.json")"
  stop_daemon D3 2>/dev/null

  # --- the registry back (same storage, new port): the cache is intact ---
  start_registry none "$REGVAR" 2>>"$WORK/registry-start.err" ||
    { fail "$t-registry-restart" "registryctl did not start: $(tail -3 "$WORK/registry-start.err" | tr '\n' ' ')"; return 1; }
  reg_pid=${REG_PIDS[-1]}
  REPO=${!REGVAR}/js/$t
  start_http D4 --repo "$REPO" --dir "$WORK/$t-dir4" ||
    { fail "$t-ocicached-recovery-start" "$(tail -3 "$WORK/D4.err")"; return 1; }
  wipe_local
  build "$t-recovered" "$D4_URL" "$RW"
  all_remote "$t-recovered-all-remote-hits"
  same_outputs "$t-recovered-same-outputs"
  stop_daemon D4 2>/dev/null
  kill -TERM "$reg_pid" 2>/dev/null
  wait "$reg_pid" 2>/dev/null
  wipe_local
}

run_tool turbo
run_tool nx
