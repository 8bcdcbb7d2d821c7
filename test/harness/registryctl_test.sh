#!/bin/bash
# End-to-end test of registryctl: prints host:port, serves /v2/, keeps --dir, stops on
# SIGTERM without leaving the registry behind, rejects a bad --auth, and serves https
# with --tls.
set -u
ctl=./test/harness/registryctl
dir="${TEST_TMPDIR:-/tmp}/registryctl-$$"
out="${TEST_TMPDIR:-/tmp}/registryctl-$$.out"
passed=0
failed=0
check() {  # check NAME CONDITION...
  local name=$1
  shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}
matches() { [[ "$1" =~ $2 ]]; }

"$ctl" --auth=htpasswd --dir="$dir" >"$out" 2>"$out.err" &
pid=$!
for _ in $(seq 150); do  # Up to 15 s for the address line.
  [ -s "$out" ] && break
  sleep 0.1
done
hostport=$(head -n1 "$out")
check "prints 127.0.0.1:PORT (got '$hostport')" matches "$hostport" '^127\.0\.0\.1:[0-9]+$'

# GET /v2/ over bash's /dev/tcp: htpasswd mode must challenge with 401.
status=""
if exec 3<>"/dev/tcp/${hostport%:*}/${hostport#*:}"; then
  printf 'GET /v2/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$hostport" >&3
  status=$(timeout 5 head -n1 <&3 | tr -d '\r')
  exec 3<&-
fi
check "GET /v2/ answers 401 (got '$status')" matches "$status" '^HTTP/1\.[01] 401 '

child=$(cat /proc/"$pid"/task/*/children 2>/dev/null | tr -s ' ' '\n' | head -n1)
check "registry child is running" test -n "$child" -a -d "/proc/${child:-none}"

kill -TERM "$pid"
for _ in $(seq 100); do  # Up to 10 s to stop.
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
wait "$pid"
rc=$?
check "exits 0 on SIGTERM (rc=$rc)" test "$rc" -eq 0
check "registry child is gone" test ! -d "/proc/${child:-none}"
check "--dir is kept" test -f "$dir/config.yml" -a -d "$dir/storage"

"$ctl" --auth=bogus >/dev/null 2>"$out.err"
rc=$?
check "rejects --auth=bogus with 2 (rc=$rc)" test "$rc" -eq 2

# --tls: https with the CA in DIR/ca.pem, named on stderr.
tdir="${TEST_TMPDIR:-/tmp}/registryctl-tls-$$"
"$ctl" --auth=none --tls --dir="$tdir" >"$out.tls" 2>"$out.tls.err" &
pid=$!
for _ in $(seq 150); do
  [ -s "$out.tls" ] && break
  sleep 0.1
done
hostport=$(head -n1 "$out.tls")
check "--tls prints 127.0.0.1:PORT (got '$hostport')" matches "$hostport" '^127\.0\.0\.1:[0-9]+$'
check "--tls writes DIR/ca.pem" grep -q 'BEGIN CERTIFICATE' "$tdir/ca.pem"
check "--tls names the CA on stderr" grep -qF "TLS CA $tdir/ca.pem" "$out.tls.err"
if command -v curl >/dev/null; then
  code=$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --cacert "$tdir/ca.pem" "https://$hostport/v2/")
  check "--tls serves https trusted by ca.pem (got '$code')" test "$code" = 200
  curl -s -o /dev/null --noproxy '*' "https://$hostport/v2/"
  rc=$?
  check "--tls: untrusted without ca.pem (curl rc=$rc)" test "$rc" -eq 60
fi
kill -TERM "$pid"
wait "$pid"
rc=$?
check "--tls exits 0 on SIGTERM (rc=$rc)" test "$rc" -eq 0

if [ "$failed" -ne 0 ]; then cat "$out.err" "$out.tls.err" "$dir/registry.log" "$tdir/registry.log" 2>/dev/null; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
