#!/usr/bin/env bash
# End-to-end: ocicached's Prometheus endpoint after real calls through the CLI,
# over a real registry: latency histograms per method
# (ocicached_call_duration_seconds_bucket/_sum/_count) consistent with the call
# counters, and the hit ratio gauge equal to hits over lookups.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/daemon_lib.sh"
oc() { "$OCICACHE_BIN" --server "$S" "$@"; }

start_registry none REG || { fail registry-start "registryctl did not start"; exit 1; }
start_daemon S --repo "$REG/metrics/cache" --dir "$WORK/dir" --metrics_listen 127.0.0.1:0 \
  || { fail daemon-start "ocicached did not start"; exit 1; }
murl=$(metrics_url S)
[[ -n $murl ]] && pass metrics-url || { fail metrics-url "no 'metrics on' line"; exit 1; }

head -c 100000 /dev/urandom >"$WORK/blob"
# 3 puts, then 3 hits and 2 misses: 5 lookups, hit ratio 0.6.
for k in a b c; do expect_rc "put-$k" 0 oc put "m/$k" --blob "$WORK/blob"; done
for k in a b c; do expect_rc "hit-$k" 0 oc get "m/$k" -o "$WORK/out-$k"; done
for k in x y; do expect_rc "miss-$k" 1 oc get "m/$k"; done

curl -sf "$murl" >"$WORK/metrics" && pass scrape || { fail scrape "curl $murl failed"; exit 1; }
python3 - "$WORK/metrics" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
samples = {}
types = {}
for line in text.splitlines():
    if line.startswith("# TYPE "):
        _, _, name, kind = line.split(" ", 3)
        types[name] = kind
        continue
    if not line or line.startswith("#"):
        continue
    m = re.fullmatch(r'([a-z_]+)(\{[^}]*\})? (\S+)', line)
    if not m:
        print(f"FAIL exposition-syntax: bad line {line!r}")
        continue
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
    samples.setdefault(m.group(1), []).append((labels, float(m.group(3))))

def check(name, ok, why=""):
    print(f"PASS {name}" if ok else f"FAIL {name}: {why}")

def value(name, **want):
    for labels, v in samples.get(name, []):
        if all(labels.get(k) == w for k, w in want.items()):
            return v
    return None

check("histogram-type", types.get("ocicached_call_duration_seconds") == "histogram",
      f"TYPE is {types.get('ocicached_call_duration_seconds')}")
calls = {}
for labels, v in samples.get("ocicached_calls_total", []):
    calls[labels["method"]] = calls.get(labels["method"], 0) + v
for method in ("Entries/Lookup", "Entries/Put", "Blobs/Read", "Blobs/Write"):
    buckets = [(l["le"], v) for l, v in samples.get("ocicached_call_duration_seconds_bucket", [])
               if l.get("method") == method]
    count = value("ocicached_call_duration_seconds_count", method=method)
    total = value("ocicached_call_duration_seconds_sum", method=method)
    check(f"histogram-{method}-present", len(buckets) >= 10 and count is not None and total is not None,
          f"{len(buckets)} buckets, count {count}, sum {total}")
    if not buckets or count is None:
        continue
    les = [float("inf") if le == "+Inf" else float(le) for le, _ in buckets]
    vals = [v for _, v in buckets]
    check(f"histogram-{method}-le-ascending", les == sorted(les) and les[-1] == float("inf"), str(les))
    check(f"histogram-{method}-cumulative", all(a <= b for a, b in zip(vals, vals[1:])), str(vals))
    check(f"histogram-{method}-inf-is-count", vals[-1] == count, f"+Inf {vals[-1]} count {count}")
    check(f"histogram-{method}-count-matches-calls", count == calls.get(method),
          f"histogram {count}, ocicached_calls_total {calls.get(method)}")
    check(f"histogram-{method}-sum-positive", total > 0 and total < 60 * count, f"sum {total}")
lookups = value("ocicached_lookups_total")
hits = value("ocicached_hits_total")
check("lookups-5", lookups == 5, f"lookups {lookups}")
check("hits-3", hits == 3, f"hits {hits}")
check("hit-ratio-type", types.get("ocicached_hit_ratio") == "gauge", str(types.get("ocicached_hit_ratio")))
ratio = value("ocicached_hit_ratio")
check("hit-ratio-0.6", ratio is not None and abs(ratio - 0.6) < 1e-6, f"ratio {ratio}")
PY
stop_daemon S && pass sigterm || fail sigterm "exit $?"
