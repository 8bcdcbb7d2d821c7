#!/usr/bin/env bash
# Installs Go 1.23 (Debian bookworm-backports, golang-1.23-go) for the GOCACHEPROG
# tests. The backports mirror is the one this machine already uses for bookworm:
# read from its apt sources, never written into the repository. Existing source
# files are left untouched; a new list file is added.
set -euo pipefail
GO=/usr/lib/go-1.23/bin/go
[[ -x $GO ]] && exit 0

uri=""
# deb822 sources (*.sources): the URIs of a stanza whose Suites include bookworm.
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -f $f ]] || continue
  uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ && !/security/ {
          if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s=substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit } }' "$f")
  [[ -n $uri ]] && break
done
# One-line sources (sources.list, *.list).
if [[ -z $uri ]]; then
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk '$1=="deb" && $0 ~ / bookworm / && $0 !~ /security/ { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }')
fi
if [[ -z $uri ]]; then
  echo "install-go: no Debian bookworm mirror found in /etc/apt/sources*" >&2
  exit 1
fi
list=/etc/apt/sources.list.d/ocicache-bookworm-backports.list
if [[ ! -f $list ]]; then
  echo "deb $uri bookworm-backports main" >"$list"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends -t bookworm-backports golang-1.23-go >/dev/null
"$GO" version
