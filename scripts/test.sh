#!/usr/bin/env bash
# Runs every test: the Bazel unit and integration tests, then the end-to-end
# scripts in test/e2e/. Installs what it needs first. Ends with one line
# "N passed, N failed" counting every test case it ran, and exits non-zero on any
# failure.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/install-deps.sh --test || { echo "0 passed, 1 failed"; exit 1; }
# Go 1.23 for the ko and GOCACHEPROG end-to-end tests.
scripts/install-go.sh || { echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
failures=()

# 1. Bazel tests. Each gtest case counts once (read from the JUnit XML Bazel keeps);
#    a target that failed to build or crashed without XML counts as one failure.
bazel test //... --keep_going --test_summary=short 2>&1 | tee /tmp/ocicache-bazel-test.log | grep -E '(PASSED|FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD)( in|$)|^ERROR' || true
bazel_rc=${PIPESTATUS[0]}
testlogs=$(bazel info bazel-testlogs 2>/dev/null)
mapfile -t targets < <(bazel query 'tests(//...)' 2>/dev/null)
for t in "${targets[@]}"; do
  rel=${t#//}; rel=${rel/://}
  xml="$testlogs/$rel/test.xml"
  if grep -qE "^$t +(\(cached\) )?PASSED" /tmp/ocicache-bazel-test.log && [[ -f $xml ]]; then
    read -r n f < <(python3 - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cases = root.iter("testcase")
n = f = 0
for c in cases:
    if c.get("status") == "notrun" or c.find("skipped") is not None:
        continue
    n += 1
    if c.find("failure") is not None or c.find("error") is not None:
        f += 1
print(max(n, 1), f)
PY
)
    passed=$((passed + n - f)); failed=$((failed + f))
    ((f)) && failures+=("$t")
  else
    failed=$((failed + 1)); failures+=("$t")
  fi
done
# What each failed target said, so a failure on a CI machine can be diagnosed
# from this output alone.
for t in "${failures[@]}"; do
  rel=${t#//}; rel=${rel/://}
  log="$testlogs/$rel/test.log"
  [[ -f $log ]] || continue
  echo "--- $t"
  grep -E -B2 -A8 '(Failure|FAILED|Check failed|Timeout|terminate called|Sanitizer)' "$log" | head -80
done
if ((bazel_rc != 0)) && ((${#failures[@]} == 0)); then
  failed=$((failed + 1)); failures+=("bazel test exited $bazel_rc")
fi

# 2. End-to-end scripts: each prints "PASS name" / "FAIL name" lines.
if bazel build //cmd/... //test/harness:registryctl //test/chaos:chaos_load >/tmp/ocicache-bazel-build.log 2>&1; then
  # Copies, so nothing that rebuilds meanwhile changes what the scripts run.
  bindir=$(mktemp -d /tmp/ocicache-bin.XXXXXX)
  bazel_bin=$(bazel info bazel-bin 2>/dev/null)
  cp "$bazel_bin/cmd/ocicache/ocicache" "$bazel_bin/cmd/ocicache-go/ocicache-go" \
     "$bazel_bin/cmd/ocicached/ocicached" "$bazel_bin/test/harness/registryctl" \
     "$bazel_bin/test/chaos/chaos_load" "$bindir/"
  export OCICACHE_BIN="$bindir/ocicache"
  export OCICACHE_GO_BIN="$bindir/ocicache-go"
  export OCICACHED_BIN="$bindir/ocicached"
  export REGISTRYCTL="$bindir/registryctl"
  export CHAOS_LOAD_BIN="$bindir/chaos_load"
  for s in test/e2e/*_test.sh; do
    echo "== $s"
    out=$(bash "$s" 2>&1); rc=$?
    echo "$out" | grep -E '^(PASS|FAIL) ' || true
    p=$(grep -c '^PASS ' <<<"$out"); f=$(grep -c '^FAIL ' <<<"$out")
    if ((rc != 0 && f == 0)); then
      f=1; echo "$out" | tail -20
    fi
    ((f)) && { failures+=("$s"); echo "$out" | grep -A5 '^FAIL ' | head -40; }
    passed=$((passed + p)); failed=$((failed + f))
  done
else
  tail -30 /tmp/ocicache-bazel-build.log
  failed=$((failed + 1)); failures+=("e2e build")
fi

((${#failures[@]})) && printf 'failed: %s\n' "${failures[@]}"
echo "$passed passed, $failed failed"
((failed == 0))
