#!/usr/bin/env bash
# The main job on its embedded default: a local cache directory, no registry.
# Installs build dependencies, builds, and runs `ocicache demo` against
# ${OCICACHE_DIR:-~/.cache/ocicache}. Pass --repo REGISTRY/REPO (and other global
# flags) to include a registry.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
bazel build //cmd/ocicache >/tmp/ocicache-build.log 2>&1 || { tail -40 /tmp/ocicache-build.log; exit 1; }
exec bazel-bin/cmd/ocicache/ocicache "$@" demo
