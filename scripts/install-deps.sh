#!/usr/bin/env bash
# Installs what ocicache needs to build and test on Debian 12, as root, from
# Debian's own packages. Idempotent: packages already present are not fetched again.
#   scripts/install-deps.sh          build dependencies (Bazel, gRPC, Abseil, curl, ...)
#   scripts/install-deps.sh --test   also the test peers (docker-registry, skopeo, htpasswd,
#                                    openssl for test certificates, netty-tcnative for Bazel
#                                    over TLS: see test/e2e/bazel_lib.sh; iproute2 for an
#                                    offline network namespace; haproxy for the chaos test)
set -euo pipefail

want=(bazel-bootstrap bazel-rules-java default-jdk-headless g++ pkg-config
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
      libabsl-dev libcurl4-openssl-dev libssl-dev nlohmann-json3-dev
      libgtest-dev libgmock-dev libmicrohttpd-dev libzstd-dev)
if [[ "${1:-}" == "--test" ]]; then
  want+=(docker-registry skopeo apache2-utils curl python3 python3-yaml openssl
        libnetty-tcnative-jni iproute2 haproxy ccache gradle make)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
