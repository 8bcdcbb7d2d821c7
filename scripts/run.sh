#!/usr/bin/env bash
# The main job: installs build dependencies, builds, and runs ocicached in the
# foreground on its embedded default (127.0.0.1:9092, serving
# ${OCICACHE_DIR:-~/.cache/ocicache}; no registry) until Ctrl-C or SIGTERM.
#   scripts/run.sh                      the server; extra ocicached flags pass through
#                                       (e.g. --repo REGISTRY/REPO, --listen 0.0.0.0:9092)
#   scripts/run.sh --demo [FLAGS]       starts ocicached on a free port, runs a put/get
#                                       round trip and `ocicache demo` through it with
#                                       `ocicache --server`, and stops it
set -euo pipefail
cd "$(dirname "$0")/.."
demo=0
if [[ ${1:-} == --demo ]]; then
  demo=1
  shift
fi
scripts/install-deps.sh
bazel build //cmd/ocicached //cmd/ocicache >/tmp/ocicache-build.log 2>&1 || { tail -40 /tmp/ocicache-build.log; exit 1; }
ocicached=$PWD/bazel-bin/cmd/ocicached/ocicached
ocicache=$PWD/bazel-bin/cmd/ocicache/ocicache

if ((demo == 0)); then
  listen=127.0.0.1:9092
  for a in "$@"; do
    case $a in --listen=*) listen=${a#--listen=} ;; esac
  done
  prev=""
  for a in "$@"; do
    [[ $prev == --listen ]] && listen=$a
    prev=$a
  done
  cat >&2 <<MSG
Starting ocicached on $listen (Ctrl-C or SIGTERM stops it). From another shell:
  $ocicache --server $listen put KEY --blob FILE
  $ocicache --server $listen get KEY -o OUT      # exit 1 on a miss
  $ocicache --server $listen ls
  grpcurl -plaintext $listen list                # reflection is on
  grpcurl -plaintext $listen grpc.health.v1.Health/Check
MSG
  exec "$ocicached" "$@"
fi

# --demo: the server on a free port, a round trip through it, then stop it.
work=$(mktemp -d /tmp/ocicache-demo.XXXXXX)
pid=""
cleanup() {
  if [[ -n $pid ]]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
"$ocicached" --listen=127.0.0.1:0 --port_file="$work/port" --shutdown_grace=2s "$@" 2>"$work/server.log" &
pid=$!
for _ in $(seq 1 100); do
  [[ -s $work/port ]] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [[ ! -s $work/port ]]; then
  echo "demo: ocicached did not start:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
server=127.0.0.1:$(cat "$work/port")
echo "demo: ocicached listening on $server"
head -c 1048576 /dev/urandom >"$work/blob"
key="demo/run.sh/$(date +%s)-$$"
"$ocicache" --server "$server" put "$key" --blob "$work/blob" --annotation org.ocicache.demo=run.sh
"$ocicache" --server "$server" get "$key" -o "$work/out" >/dev/null
if cmp -s "$work/blob" "$work/out"; then
  echo "demo: put/get round trip through $server: 1 MiB identical"
else
  echo "demo: the blob read back differs" >&2
  exit 1
fi
"$ocicache" --server "$server" demo
"$ocicache" --server "$server" rm "$key" >/dev/null
kill -TERM "$pid"
wait "$pid"
pid=""
echo "demo: ocicached stopped cleanly; its log:"
sed 's/^/  /' "$work/server.log" | tail -8
