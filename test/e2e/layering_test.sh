#!/usr/bin/env bash
# The build graph keeps to the layers of docs/ARCHITECTURE.md: no package imports
# one above it (scripts/check_layers.py over `bazel query`). Then the same check
# with one deliberately wrong edge added must fail, so the check itself is known
# to work.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
work=$(mktemp -d /tmp/ocicache-layers.XXXXXX)
trap 'rm -rf "$work"' EXIT
if ! bazel query 'kind("cc_library|cc_binary", //pkg/... + //cmd/...)' --output=xml \
    >"$work/graph.xml" 2>"$work/query.err"; then
  echo "FAIL layering-query: $(tail -3 "$work/query.err")"
  exit 0
fi
if out=$(python3 scripts/check_layers.py docs/ARCHITECTURE.md "$work/graph.xml"); then
  echo "PASS layering-graph"
else
  echo "FAIL layering-graph: $out"
fi
# A low layer importing the server: the check must reject it.
if out=$(python3 scripts/check_layers.py docs/ARCHITECTURE.md "$work/graph.xml" \
    --extra-edge //pkg/cache:breaker //pkg/server:server); then
  echo "FAIL layering-catches-wrong-edge: //pkg/cache -> //pkg/server was accepted"
elif grep -q "pkg/cache may not import pkg/server" <<<"$out"; then
  echo "PASS layering-catches-wrong-edge"
else
  echo "FAIL layering-catches-wrong-edge: unexpected output: $out"
fi
