# Shared helpers for end-to-end scripts. Each check prints "PASS name" or
# "FAIL name" (with what went wrong); scripts/test.sh counts those lines.
set -u
: "${OCICACHE_BIN:?built ocicache binary}"
: "${REGISTRYCTL:?built registryctl binary}"
WORK=$(mktemp -d /tmp/ocicache-e2e.XXXXXX)
# Each script keeps registry challenges and tokens to itself: test registries
# come and go on random loopback ports, and one script's must not greet the
# next registry on a reused port (a script that tests the default sets its own).
export OCICACHE_AUTH_CACHE=$WORK/auth-cache
REG_PIDS=()
cleanup() {
  for p in "${REG_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }

# start_registry AUTH NAME [FLAGS]: starts registryctl (root $WORK/reg-NAME, with extra
# registryctl FLAGS, split on spaces, e.g. "--tls"), sets $NAME to "127.0.0.1:PORT".
# With --tls the registry's test CA is $WORK/reg-NAME/ca.pem.
start_registry() {
  local auth=$1 var=$2 out=$WORK/reg-$2.out
  local -a extra=()
  [[ -n ${3:-} ]] && read -r -a extra <<<"$3"
  "$REGISTRYCTL" --auth="$auth" --dir="$WORK/reg-$var" "${extra[@]}" >"$out" 2>"$WORK/reg-$var.err" &
  local pid=$!
  REG_PIDS+=($pid)
  # registryctl prints the host once docker-registry answers, or exits saying
  # why (it bounds the registry's start itself, at 10 s): wait for one of the
  # two, not for a clock of our own that could run out first on a busy machine
  # (60 s at most, should registryctl itself hang).
  for _ in $(seq 1 600); do
    [[ -s $out ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  local host; host=$(head -1 "$out")
  if [[ -z $host ]]; then
    cat "$WORK/reg-$var.err" >&2
    kill -0 "$pid" 2>/dev/null && echo "registryctl still running after 60 s" >&2
    tail -5 "$WORK/reg-$var/registry.log" >&2 2>/dev/null
    return 1
  fi
  printf -v "$var" '%s' "$host"
}

# expect_rc NAME WANT CMD...: runs CMD (output in $OUT, stderr in $ERR), checks the exit code.
expect_rc() {
  local name=$1 want=$2; shift 2
  OUT=$("$@" 2>"$WORK/stderr"); local rc=$?
  ERR=$(cat "$WORK/stderr")
  if [[ $rc == "$want" ]]; then pass "$name"; return 0; fi
  fail "$name" "exit $rc, want $want; stderr: $(head -c 600 <<<"$ERR")"
  return 1
}

# expect_contains NAME HAYSTACK NEEDLE
expect_contains() {
  if grep -qF -- "$3" <<<"$2"; then pass "$1"; else fail "$1" "missing \"$3\" in: $(head -c 400 <<<"$2")"; fi
}

# expect_one_line NAME TEXT: an error must be one clear line.
expect_one_line() {
  local n; n=$(grep -c . <<<"$2")
  if [[ $n == 1 ]]; then pass "$1"; else fail "$1" "$n lines: $2"; fi
}
