#!/usr/bin/env bash
# End-to-end: real Gradle 4.4.1 (Debian's gradle, on the installed JDK) using
# ocicached's HTTP cache endpoint (/cache/gradle/) as its HttpBuildCache, the cache
# stored in a real docker-registry on loopback.
#
# The sample test/e2e/gradlews (projects lib and app, app depending on lib, JUnit 4
# tests from Debian's jar) is built once to fill the cache; then everything local
# is wiped (the workspace with its build outputs and .gradle, GRADLE_USER_HOME,
# ocicached and its --dir) and a fresh ocicached on the same registry must give
# every cacheable task (compileJava, compileTestJava, test of both projects) as
# FROM-CACHE, with identical classes, jars and test results. Then tokens (Basic
# credentials with the token as password, in the credentials block and in the URL;
# a read-only token writes nothing) and a stopped registry (builds succeed, the
# server keeps answering).
#
# Offline: Gradle 4.4.1 turns the remote build cache off under --offline ("Remote
# build cache is disabled when running with --offline."), so the builds run without
# it; the sample declares no repositories and no plugins beyond Gradle's own, and,
# as root, the script runs itself in a network namespace with only loopback, so any
# download would fail the build.
#
# Gradle's client behaviour the checks depend on: GET <url><32 hex key>, 2xx = hit,
# 404 = miss; any other answer (401, 403, 413, 5xx, a refused connection) prints
# "Could not load/store entry ..." and turns the remote cache off for the rest of
# the build ("The remote build cache was disabled during the build due to errors.").
if [[ -z ${OCICACHE_E2E_NETNS:-} ]] && unshare -n true 2>/dev/null; then
  exec unshare -n env OCICACHE_E2E_NETNS=1 bash -c 'ip link set lo up && exec bash "$0"' "$0"
fi
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/daemon_lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GRADLE_TIMEOUT=${GRADLE_TIMEOUT:-300}  # seconds for one build

if [[ -n ${OCICACHE_E2E_NETNS:-} ]]; then
  links=$(ip -o link show | awk -F': ' '{printf "%s ", $2}')
  [[ $links == "lo " ]] && pass network-loopback-only || fail network-loopback-only "interfaces: $links"
else
  echo "gradle_test: no network namespace (not root?): Gradle could reach the network" >&2
fi

command -v gradle >/dev/null && command -v java >/dev/null ||
  { fail gradle-installed "gradle and a JDK are needed (apt-get install gradle)"; exit 1; }
ver=$(gradle --version 2>/dev/null | grep -m1 '^Gradle ')
[[ $ver == "Gradle 4.4.1" ]] && pass gradle-version || fail gradle-version "want Gradle 4.4.1: ${ver:-none}"
JUNIT=/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar
[[ -f /usr/share/java/junit4.jar && -f /usr/share/java/hamcrest-core.jar ]] ||
  { fail junit-jars "Debian's junit4 jars are missing (apt-get install junit4)"; exit 1; }

# Private HOME and Gradle user home; Java takes user.home from the password
# database, not $HOME, so it is set explicitly.
export HOME=$WORK/home GRADLE_USER_HOME=$WORK/gradle-home
export GRADLE_OPTS="-Duser.home=$HOME"
unset JAVA_TOOL_OPTIONS _JAVA_OPTIONS OCICACHE_GRADLE_URL OCICACHE_GRADLE_USER OCICACHE_GRADLE_PASSWORD OCICACHE_GRADLE_PUSH
GWS=$WORK/gradlews

# wipe: everything local to the client: a fresh copy of the workspace (no build/,
# no .gradle/), no Gradle user home, an empty HOME.
wipe() {
  rm -rf "$GWS" "$GRADLE_USER_HOME" "$HOME" && mkdir -p "$HOME" &&
    cp -r "$ROOT/test/e2e/gradlews" "$GWS"
}

# build NAME ARGS...: `gradle build` in the workspace with the build cache and the
# extra ARGS (-Docicache.cache.url=... and so on); PASS/FAIL NAME. Log in $LOG,
# seconds in SECS, each task's outcome in TASK[:proj:task] (EXECUTED when Gradle
# printed no outcome, else FROM-CACHE, UP-TO-DATE, NO-SOURCE, ...).
declare -A TASK
build() {
  local name=$1; shift
  LOG=$WORK/logs/$name.log
  mkdir -p "$WORK/logs"
  local t0=$SECONDS rc
  (cd "$GWS" && timeout "$GRADLE_TIMEOUT" gradle --no-daemon --console=plain --build-cache \
    -Docicache.junit="$JUNIT" "$@" build) >"$LOG" 2>&1
  rc=$?
  SECS=$((SECONDS - t0))
  TASK=()
  # The test worker's JDK warning may follow a task name on the same line.
  local t o
  while read -r t o; do TASK[$t]=${o:-EXECUTED}; done < <(sed -n 's/WARNING:.*//; /^:[A-Za-z]/p' "$LOG")
  if ((rc == 0)); then pass "$name"; return 0; fi
  fail "$name" "gradle exited $rc: $(grep -m3 -E 'FAILURE|wrong|rror' "$LOG" | tr '\n' ' ' | cut -c1-300)"
  return 1
}

CACHEABLE=(:lib:compileJava :lib:compileTestJava :lib:test :app:compileJava :app:compileTestJava :app:test)
outcomes() { local t out=""; for t in "${CACHEABLE[@]}"; do out+="$t=${TASK[$t]:-absent} "; done; echo "$out"; }

# all_outcome NAME OUTCOME: every cacheable task of the last build had OUTCOME.
all_outcome() {
  local t bad=""
  for t in "${CACHEABLE[@]}"; do [[ ${TASK[$t]:-} == "$2" ]] || bad=1; done
  if [[ -z $bad ]]; then pass "$1"; else fail "$1" "want all $2: $(outcomes)"; fi
}
# no_cache_errors NAME: Gradle reported no remote cache error and used no network.
no_cache_errors() {
  local errs; errs=$(grep -E 'Could not (load|store) entry|build cache was disabled|^Download ' "$LOG" | head -3)
  if [[ -z $errs ]]; then pass "$1"; else fail "$1" "$(cut -c1-400 <<<"$errs")"; fi
}

# digest: the classes, jars and test results, and what the app prints.
digest() {
  (cd "$GWS" && find lib/build app/build \( -name '*.class' -o -name '*.jar' -o -path '*test-results*.xml' \) \
     -type f -print0 | sort -z | xargs -0 sha256sum &&
   timeout 30 java -cp app/build/libs/app-1.0.jar:lib/build/libs/lib-1.0.jar ocicache.e2e.app.Main)
}
same_outputs() {
  local now; now=$(digest 2>&1)
  if [[ -n $DIGEST0 && $now == "$DIGEST0" ]]; then pass "$1"
  else fail "$1" "outputs differ: $(diff <(echo "$DIGEST0") <(echo "$now") | head -4 | tr '\n' ' ')"; fi
}

# The registry's content: entry keys and manifests (`ocicache ls`), and its files.
entries() { timeout 60 "$OCICACHE_BIN" --repo "$REPO" --no-dir ls --json 2>&1 | python3 -c '
import json, sys
try:
    for e in json.load(sys.stdin): print(e["key"], e["manifest"])
except Exception as e:
    print("unreadable:", e)' | sort; }
registry_files() { find "$WORK/reg-REG" -path '*docker/registry*' -type f -printf '%P %s\n' | sort; }
snapshot() { echo "entries:"; entries; echo "files:"; registry_files; }
nothing_written() {  # NAME BEFORE
  local after; after=$(snapshot)
  if [[ $2 == "$after" ]]; then pass "$1"
  else fail "$1" "registry changed: $(diff <(echo "$2") <(echo "$after") | head -4 | tr '\n' ' ')"; fi
}

# status_kv HOSTPORT: "requests hits misses" of the key/value protocol (daemon_lib.sh).
status_kv() { http_status "$1" kv; }

start_registry none REG || { fail registry-start "registryctl did not start"; exit 1; }
REG_PID=${REG_PIDS[-1]}
REPO=$REG/gradle/cache
TIMES=()
N=${#CACHEABLE[@]}

# --- fill, wipe everything local, rebuild from the registry through a fresh server ---
wipe || { fail gradle-workspace "could not copy the sample"; exit 1; }
start_http A1 "$WORK/tier1" || { fail ocicached-start "$(tail -3 "$WORK/A1.err")"; exit 1; }
before=$(entries | wc -l)
build fill -Docicache.cache.url="http://$A1_HTTP/cache/gradle/" || { tail -30 "$LOG"; exit 1; }
TIMES+=("fill=${SECS}s")
all_outcome fill-all-executed EXECUTED
no_cache_errors fill-no-cache-errors
DIGEST0=$(digest 2>&1)
[[ $(grep -c '^[0-9a-f]\{64\}  ' <<<"$DIGEST0") -ge 9 && $DIGEST0 == *"hello, world "* ]] &&
  pass fill-outputs || fail fill-outputs "$(head -c 400 <<<"$DIGEST0")"
stop_daemon A1
after=$(entries | wc -l)
((after - before >= N)) && pass fill-in-registry ||
  fail fill-in-registry "want >= $N new entries in $REPO, got $((after - before))"

wipe
rm -rf "$WORK/tier1"
start_http A2 "$WORK/tier2" || { fail ocicached-restart "$(tail -3 "$WORK/A2.err")"; exit 1; }
build rebuild -Docicache.cache.url="http://$A2_HTTP/cache/gradle/"
TIMES+=("rebuild=${SECS}s")
all_outcome rebuild-all-from-cache FROM-CACHE
no_cache_errors rebuild-no-cache-errors
same_outputs rebuild-same-outputs
read -r req hits misses < <(status_kv "$A2_HTTP")
[[ $hits =~ ^[0-9]+$ ]] && ((hits >= N)) && [[ $misses == 0 ]] && pass status-hits ||
  fail status-hits "/status kv: requests=$req hits=$hits misses=$misses; want hits >= $N, misses 0"
stop_daemon A2

# --- tokens ------------------------------------------------------------------------------
RO=gradle-reader-0123456789
RW=gradle-writer-0123456789
printf '# e2e tokens\n%s read\n%s write\n' "$RO" "$RW" >"$WORK/tokens"
start_http T "$WORK/tier-tokens" --tokens_file="$WORK/tokens" ||
  { fail ocicached-tokens-start "$(tail -3 "$WORK/T.err")"; exit 1; }
TURL=http://$T_HTTP/cache/gradle/
# Without credentials: 401 on the first GET turns the remote cache off; the build works.
wipe
before=$(snapshot)
build no-token -Docicache.cache.url="$TURL" -Docicache.salt=1
all_outcome no-token-all-executed EXECUTED
expect_contains no-token-401 "$(cat "$LOG")" "response status 401"
nothing_written no-token-nothing-written "$before"
# The write token as the Basic password fills the cache.
wipe
build token-fill -Docicache.cache.url="$TURL" -Docicache.cache.user=gradle \
  -Docicache.cache.password="$RW" -Docicache.salt=1
all_outcome token-fill-all-executed EXECUTED
no_cache_errors token-fill-no-cache-errors
DIGEST0=$(digest 2>&1)
[[ $(snapshot) != "$before" ]] && pass token-fill-writes || fail token-fill-writes "registry unchanged"
# The read-only token with push = false: every cacheable task from the cache.
wipe
before=$(snapshot)
build readonly -Docicache.cache.url="$TURL" -Docicache.cache.user=reader \
  -Docicache.cache.password="$RO" -Docicache.cache.push=false -Docicache.salt=1
all_outcome readonly-all-from-cache FROM-CACHE
no_cache_errors readonly-no-cache-errors
same_outputs readonly-same-outputs
# The read-only token in the URL's user info (Gradle sends it as Basic).
wipe
build readonly-url -Docicache.cache.url="http://reader:$RO@$T_HTTP/cache/gradle/" \
  -Docicache.cache.push=false -Docicache.salt=1
all_outcome readonly-url-all-from-cache FROM-CACHE
same_outputs readonly-url-same-outputs
# The read-only token pushing new entries: 403, Gradle stops using the cache, the
# build works, nothing reaches the registry.
wipe
build readonly-push -Docicache.cache.url="$TURL" -Docicache.cache.user=reader \
  -Docicache.cache.password="$RO" -Docicache.salt=2
all_outcome readonly-push-all-executed EXECUTED
expect_contains readonly-push-403 "$(cat "$LOG")" "response status 403"
nothing_written readonly-nothing-written "$before"
stop_daemon T

# --- the registry stopped: misses, the server keeps answering ------------------------
start_http O "$WORK/tier-outage" || { fail ocicached-outage-start "$(tail -3 "$WORK/O.err")"; exit 1; }
kill "$REG_PID" 2>/dev/null
wait "$REG_PID" 2>/dev/null
curl -s --max-time 2 "http://$REG/v2/" >/dev/null && fail registry-stopped "registry still answers" || pass registry-stopped
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$O_HTTP/status")
[[ $code == 200 ]] && pass outage-status || fail outage-status "GET /status: HTTP $code"
wipe
build outage-build -Docicache.cache.url="http://$O_HTTP/cache/gradle/" -Docicache.salt=3
TIMES+=("outage-build=${SECS}s")
all_outcome outage-all-executed EXECUTED
# Misses must be plain 404s and stores must not fail, or Gradle turns the cache off.
no_cache_errors outage-no-cache-errors
((SECS <= 120)) && pass outage-fast || fail outage-fast "build took ${SECS}s"
# What was stored during the outage is in the server's local tier.
wipe
build outage-rebuild -Docicache.cache.url="http://$O_HTTP/cache/gradle/" -Docicache.salt=3
all_outcome outage-rebuild-local-tier-from-cache FROM-CACHE
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$O_HTTP/status")
[[ $code == 200 ]] && kill -0 "$O_PID" 2>/dev/null && pass outage-server-alive ||
  fail outage-server-alive "GET /status: HTTP $code; $(tail -3 "$WORK/O.err")"
stop_daemon O

# No request of the whole run was answered with a server error (access log lines
# 'HTTP kv METHOD "PATH" STATUS ...' in the daemons' logs).
errs=$(cat "$WORK"/*.err 2>/dev/null | grep -E ' HTTP [a-z]+ [A-Z]+ "[^"]*" 5[0-9][0-9] ' | head -3)
[[ -z $errs ]] && pass no-server-errors || fail no-server-errors "$(cut -c1-400 <<<"$errs")"

echo "timings ($N cacheable tasks): ${TIMES[*]}"
