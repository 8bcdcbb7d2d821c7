#!/usr/bin/env bash
# End-to-end: `go build` of a sample module (test/e2e/gomod, with a dependency
# module wired by a replace directive: no network) through
# GOCACHEPROG="ocicache gocacheprog", against a real docker-registry.
#   1. cold build on an empty tier: every put lands in the registry;
#   2. every local directory deleted, build again: >= 95% of gets hit from the
#      registry and the binary is byte-identical;
#   3. the registry unreachable: the build still succeeds;
#   4. through ocicached (OCICACHE_SERVER): a fresh machine hits, puts land;
#   plus the helper's --help and its handling of a broken request stream.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/go_lib.sh"
here=$(cd "$(dirname "$0")" && pwd)

if ! bash "$here/../../scripts/install-go.sh" >"$WORK/install-go.log" 2>&1; then
  fail go-install "scripts/install-go.sh failed: $(tail -3 "$WORK/install-go.log")"
  exit 1
fi
GO=$(go_cacheprog_tool 2>"$WORK/go-tool.log") || { fail go-cacheprog-tool "$(tail -5 "$WORK/go-tool.log")"; exit 1; }
pass go-cacheprog-tool
start_registry none REG || { fail registry-start "registryctl did not start"; exit 1; }

go_env_offline "$WORK"
cp -r "$here/gomod" "$WORK/src"
cd "$WORK/src" || exit 1

# gobuild NAME OCICACHE_DIR GOCACHE REPO OUT [PKG]: one build through the helper
# (OUT empty: build without writing a result).
gobuild() {
  local name=$1 odir=$2 gcache=$3 repo=$4 out=$5 pkg=${6:-./cmd/sample}
  local -a o=()
  [[ -n $out ]] && o=(-o "$out")
  expect_rc "$name" 0 env GOCACHEPROG="$OCICACHE_BIN gocacheprog --stats --stats-file $WORK/$name.stats" \
    GOEXPERIMENT=cacheprog OCICACHE_REPO="$repo" OCICACHE_DIR="$odir" GOCACHE="$gcache" \
    timeout 600 "$GO" build "${o[@]}" "$pkg"
}

# --- the helper alone ------------------------------------------------------------
expect_rc go-help 0 "$OCICACHE_BIN" gocacheprog --help
expect_contains go-help-gocacheprog "$OUT" 'GOCACHEPROG="ocicache gocacheprog"'
expect_contains go-help-experiment "$OUT" "GOEXPERIMENT=cacheprog"
expect_contains go-help-stats "$OUT" "upload failures"
expect_contains go-help-tag-list "$OUT" "--no-tag-list"
expect_rc go-bad-stream 2 bash -c "printf 'not json\n' | '$OCICACHE_BIN' --dir '$WORK/bad' gocacheprog"
expect_one_line go-bad-stream-one-line "$ERR"
expect_contains go-bad-stream-hello "$OUT" '"KnownCommands":["get","put","close"]'
expect_rc go-eof-clean 0 bash -c "'$OCICACHE_BIN' --dir '$WORK/bad' gocacheprog </dev/null"
expect_rc go-no-dir 2 "$OCICACHE_BIN" --repo "$REG/go/x" --no-dir gocacheprog

# --- 1. cold build, empty tier -------------------------------------------------------
REPO=$REG/go/cache
# Outputs keep one name (the link step's action depends on it), in new directories.
mkdir -p "$WORK"/b{1,2,3}
gobuild go-build-cold "$WORK/oc1" "$WORK/gc1" "$REPO" "$WORK/b1/sample"
# The helper's warning lines (go shows them on stderr), for the FAIL lines below:
# a CI log keeps only those.
said() { grep -m4 'ocicache gocacheprog:' <<<"$ERR" | cut -c1-300 | paste -sd'|'; }
COLD_SAID=$(said)
out=$("$WORK/b1/sample" 2>&1)
expect_contains go-build-cold-runs "$out" "== SAMPLE =="
S1=$WORK/go-build-cold.stats
puts=$(sum_stats "$S1" puts); uploaded=$(sum_stats "$S1" uploaded)
failures=$(sum_stats "$S1" upload_failures); errors=$(sum_stats "$S1" errors)
echo "cold build: gets $(sum_stats "$S1" gets), misses $(sum_stats "$S1" misses), puts $puts, uploaded $uploaded"
# The repository is new: the tag list read at start answers every miss, no lookup.
misses=$(sum_stats "$S1" misses); absent=$(sum_stats "$S1" known_absent)
if ((misses > 100 && absent == misses)); then
  pass go-cold-misses-from-the-tag-list
else
  fail go-cold-misses-from-the-tag-list "misses $misses, answered from the tag list $absent; the helper said: ${COLD_SAID:-nothing}"
fi
if ((puts > 100 && uploaded == puts && failures == 0 && errors == 0)); then
  pass go-cold-all-uploaded
else
  fail go-cold-all-uploaded "puts $puts uploaded $uploaded failures $failures errors $errors; the helper said: ${COLD_SAID:-nothing}"
fi
# Every entry of the local tier is in the registry.
# (The registry also holds the session list entry, "gocacheprog.session.*".)
keys() { python3 -c 'import json,sys; print("\n".join(sorted(e["key"] for e in json.load(sys.stdin) if not e["key"].startswith("gocacheprog.session."))))'; }
"$OCICACHE_BIN" --dir "$WORK/oc1" ls --json | keys >"$WORK/local.keys"
"$OCICACHE_BIN" --repo "$REPO" --no-dir ls --json | keys >"$WORK/remote.keys"
nlocal=$(grep -c . "$WORK/local.keys"); nremote=$(grep -c . "$WORK/remote.keys")
if ((nlocal > 100)) && cmp -s "$WORK/local.keys" "$WORK/remote.keys"; then
  pass go-registry-has-every-entry
else
  fail go-registry-has-every-entry "local $nlocal entries, registry $nremote: $(diff "$WORK/local.keys" "$WORK/remote.keys" | head -3)"
fi
echo "entries: local $nlocal, registry $nremote"
"$OCICACHE_BIN" --repo "$REPO" --no-dir ls --json | grep -q '"gocacheprog.session.' \
  && pass go-session-list-written || fail go-session-list-written "no gocacheprog.session.* entry"
# Objects over 16 KiB that compress (compiled packages) are in the registry as
# zstd frames: of the 8 largest entries, count those whose config says so and
# check that `ocicache get -o` writes each one's object (its OutputID).
big=$("$OCICACHE_BIN" --dir "$WORK/oc1" ls --json | python3 -c '
import json, sys
es = [e for e in json.load(sys.stdin) if not e["key"].startswith("gocacheprog.session.")]
print("\n".join(e["key"] for e in sorted(es, key=lambda e: -e["size"])[:8]))')
framed=0 framed_ok=0
for k in $big; do
  "$OCICACHE_BIN" --repo "$REPO" --no-dir get --no-touch --json -- "$k" >"$WORK/entry.json" 2>/dev/null || continue
  read -r enc out < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["config"]; print(c.get("encoding","-"), c["outputID"])' "$WORK/entry.json")
  [[ $enc == zstd ]] || continue
  framed=$((framed + 1))
  "$OCICACHE_BIN" --repo "$REPO" --no-dir get --no-touch -o "$WORK/object" -- "$k" >/dev/null 2>&1 &&
    [[ sha256:$(sha256sum "$WORK/object" | cut -d' ' -f1) == "$out" ]] && framed_ok=$((framed_ok + 1))
done
if ((framed >= 4 && framed_ok == framed)); then
  pass go-large-objects-as-zstd-frames
else
  fail go-large-objects-as-zstd-frames "of the 8 largest entries $framed are zstd frames (want >= 4), $framed_ok decode to their OutputID"
fi

# The session list names the large objects the cold build uploaded (their frames)
# instead of packing them again; the pack holds the rest.
refs=$(sum_stats "$S1" pack_refs)
slist=$("$OCICACHE_BIN" --repo "$REPO" --no-dir ls --json | python3 -c '
import json, sys
print(next(e["key"] for e in json.load(sys.stdin) if e["key"].startswith("gocacheprog.session.")))')
"$OCICACHE_BIN" --repo "$REPO" --no-dir get --no-touch --json -- "$slist" >"$WORK/session.json" 2>/dev/null
named=$(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))["config"]
print(len(c.get("packRefs", [])) if c.get("packEncoding") == "zstd-refs" else 0)' "$WORK/session.json" 2>/dev/null)
if ((refs >= 10 && named == refs)); then
  pass "go-session-pack-names-stored-objects ($refs named)"
else
  fail go-session-pack-names-stored-objects "pack_refs $refs, the list names ${named:-?} (want >= 10, equal)"
fi

# --- 2. fresh machine: no local directories, warm registry ---------------------------
# (Same paths, as on a new machine: go's link action depends on where its inputs are.)
rm -rf "$WORK/oc1" "$WORK/gc1"
gobuild go-build-fresh "$WORK/oc1" "$WORK/gc1" "$REPO" "$WORK/b2/sample"
grep 'ocicache gocacheprog' <<<"$ERR" | head -5
S2=$WORK/go-build-fresh.stats
gets=$(sum_stats "$S2" gets); rhits=$(sum_stats "$S2" remote_hits); misses=$(sum_stats "$S2" misses)
echo "fresh build: gets $gets, remote hits $rhits ($(sum_stats "$S2" prefetched) prefetched from the session list of $(sum_stats "$S2" session_listed)), misses $misses"
if ((gets > 100 && rhits * 100 >= gets * 95)); then
  pass go-fresh-remote-hits
else
  fail go-fresh-remote-hits "gets $gets remote hits $rhits (want >= 95%); the helper said: $(said)"
fi
if cmp -s "$WORK/b1/sample" "$WORK/b2/sample"; then pass go-fresh-identical-binary; else fail go-fresh-identical-binary "binaries differ"; fi
reads=$(sum_stats "$S2" packs_read)
((reads == 1)) && pass go-fresh-reads-the-pack || fail go-fresh-reads-the-pack "packs_read $reads (want 1)"
((errors + $(sum_stats "$S2" errors) == 0)) && pass go-no-err-responses || fail go-no-err-responses "Err responses sent"

# Another checkout of the module at another path (another runner): its session list
# is the same (keyed by module, not path), so the fresh build prefetches from it; and
# from a subdirectory never built before, the module's latest list (the fallback).
cp -r "$here/gomod" "$WORK/src-other"
cd "$WORK/src-other" || exit 1
gobuild go-build-other-checkout "$WORK/oc-other" "$WORK/gc-other" "$REPO" "$WORK/b2/other"
listed=$(sum_stats "$WORK/go-build-other-checkout.stats" session_listed)
rh=$(sum_stats "$WORK/go-build-other-checkout.stats" remote_hits)
((listed > 100 && rh > 100)) && pass "go-other-checkout-session ($listed listed, $rh remote hits)" \
  || fail go-other-checkout-session "session_listed $listed, remote hits $rh (want > 100 each)"
cd "$WORK/src-other/cmd/sample" || exit 1
gobuild go-build-subdir "$WORK/oc-subdir" "$WORK/gc-subdir" "$REPO" "$WORK/b2/subdir" .
listed=$(sum_stats "$WORK/go-build-subdir.stats" session_listed)
((listed > 100)) && pass "go-subdir-module-session ($listed listed)" \
  || fail go-subdir-module-session "session_listed $listed (want > 100: the module's latest list)"
cd "$WORK/src" || exit 1

# The directory it filled serves a build alone (no registry).
rm -rf "$WORK/gc1"
gobuild go-build-local-only "$WORK/oc1" "$WORK/gc1" "" "$WORK/b3/sample"
S3=$WORK/go-build-local-only.stats
gets=$(sum_stats "$S3" gets); lhits=$(sum_stats "$S3" local_hits)
((gets > 100 && lhits * 100 >= gets * 95)) && pass go-local-tier-hits || fail go-local-tier-hits "gets $gets local hits $lhits"
cmp -s "$WORK/b1/sample" "$WORK/b3/sample" && pass go-local-identical-binary || fail go-local-identical-binary "binaries differ"

# --- 3. registry unreachable: the build still succeeds (misses, warnings) ----------------
gobuild go-build-unreachable "$WORK/oc4" "$WORK/gc4" "127.0.0.1:1/x" "" ./internal/textstats
expect_contains go-unreachable-warns "$ERR" "unavailable"
S4=$WORK/go-build-unreachable.stats
((($(sum_stats "$S4" errors) == 0) && ($(sum_stats "$S4" gets) > 0))) && pass go-unreachable-no-errors \
  || fail go-unreachable-no-errors "$(cat "$S4" 2>/dev/null)"

# --- 4. through ocicached: a fresh machine reads the same cache via --server ---------
# The server holds the registry credentials and tiers; the machine only its DiskPath.
if [[ -n ${OCICACHED_BIN:-} ]]; then
  source "$here/daemon_lib.sh"
  if start_daemon GOSRV --repo "$REPO" --dir "$WORK/srv-dir" --access_log=false; then
    rm -rf "$WORK/oc1" "$WORK/gc1"
    mkdir -p "$WORK/b5"
    expect_rc go-build-server 0 env GOCACHEPROG="$OCICACHE_BIN gocacheprog --stats --stats-file $WORK/go-build-server.stats" \
      GOEXPERIMENT=cacheprog OCICACHE_SERVER="$GOSRV" OCICACHE_REPO= OCICACHE_DIR="$WORK/oc1" GOCACHE="$WORK/gc1" \
      timeout 600 "$GO" build -o "$WORK/b5/sample" ./cmd/sample
    S5=$WORK/go-build-server.stats
    gets=$(sum_stats "$S5" gets); rhits=$(sum_stats "$S5" remote_hits)
    echo "through ocicached: gets $gets, remote hits $rhits, errors $(sum_stats "$S5" errors)"
    ((gets > 100 && rhits * 100 >= gets * 95)) && pass go-server-remote-hits \
      || fail go-server-remote-hits "gets $gets remote hits $rhits (want >= 95%)"
    cmp -s "$WORK/b1/sample" "$WORK/b5/sample" && pass go-server-identical-binary \
      || fail go-server-identical-binary "binaries differ"
    # A put through the server lands in the registry: build a package not built before.
    expect_rc go-server-put 0 env GOCACHEPROG="$OCICACHE_BIN gocacheprog --stats --stats-file $WORK/go-server-put.stats" \
      GOEXPERIMENT=cacheprog OCICACHE_SERVER="$GOSRV" OCICACHE_REPO= OCICACHE_DIR="$WORK/oc1" GOCACHE="$WORK/gc1" \
      timeout 600 "$GO" vet ./...
    S6=$WORK/go-server-put.stats
    puts=$(sum_stats "$S6" puts); uploaded=$(sum_stats "$S6" uploaded)
    ((puts > 0 && uploaded == puts && $(sum_stats "$S6" upload_failures) == 0)) && pass go-server-puts-uploaded \
      || fail go-server-puts-uploaded "puts $puts uploaded $uploaded"
    stop_daemon GOSRV
  else
    fail go-server-start "ocicached did not start"
  fi
fi
