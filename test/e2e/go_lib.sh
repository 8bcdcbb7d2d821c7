# Go helpers for test/e2e/go_test.sh and bench/go_bench.sh (sourced; not a test).
#
# Go 1.21-1.23 honour GOCACHEPROG only in a go command built with the cacheprog
# experiment: `goexperiment.CacheProg` is a compile-time constant of cmd/go, so
# GOEXPERIMENT=cacheprog at build time of *user* code is not enough, and Debian's
# /usr/lib/go-1.23/bin/go ignores GOCACHEPROG. go_cacheprog_tool builds cmd/go from
# the installed GOROOT with the build tag that experiment sets (-tags
# goexperiment.cacheprog: same version string as the installed compiler, which the
# compiler checks) and caches it by version.

GO_STOCK=${GO_STOCK:-/usr/lib/go-1.23/bin/go}

# go_cacheprog_tool: prints the path of a cacheprog-enabled go, building it once.
go_cacheprog_tool() {
  local ver dir
  ver=$("$GO_STOCK" env GOVERSION) || return 1
  dir=${OCICACHE_GO_TOOL_DIR:-/var/cache/ocicache-test}/go-cacheprog-$ver
  if [[ ! -x $dir/go ]]; then
    mkdir -p "$dir" || return 1
    local tmp; tmp=$(mktemp -d "$dir/build.XXXXXX")
    GOTOOLCHAIN=local GOFLAGS= GOCACHE="$tmp/cache" GOENV=off \
      "$GO_STOCK" build -tags goexperiment.cacheprog -o "$tmp/go" cmd/go >&2 || { rm -rf "$tmp"; return 1; }
    mv "$tmp/go" "$dir/go" && rm -rf "$tmp"
  fi
  echo "$dir/go"
}

# go_env_offline WORKDIR: a reproducible, offline go environment (exported).
go_env_offline() {
  GOROOT=$("$GO_STOCK" env GOROOT) && export GOROOT
  export GOFLAGS="-mod=mod -trimpath -buildvcs=false"
  export GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GOENV=off GOTELEMETRY=off
  export GOPATH=$1/gopath GOMODCACHE=$1/gopath/pkg/mod
  unset GOCACHEPROG GOEXPERIMENT GOCACHE
}

# sum_stats FILE FIELD: sums FIELD over the JSON lines of a --stats-file.
sum_stats() {
  python3 -c 'import json,sys; print(sum(json.loads(l).get(sys.argv[2],0) for l in open(sys.argv[1]) if l.strip()))' "$1" "$2" 2>/dev/null || echo 0
}
