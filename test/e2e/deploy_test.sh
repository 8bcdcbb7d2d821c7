#!/usr/bin/env bash
# Static check of deploy/kubernetes (no cluster here): the YAML parses, has the
# Deployment (2 replicas, grpc probes, resources, emptyDir with a sizeLimit that
# fits --max_local_size), Service, ConfigMap and Secret, and agrees with the
# ocicached binary: every flag used exists in `ocicached --help`, every $(VAR)
# comes from the ConfigMap, probes hit the health port, the Service targets
# declared ports. Then ocicached really starts with the manifest's arguments
# (addresses moved to loopback port 0, paths to a temp dir) and the Secret's files.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/daemon_lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
"$OCICACHED_BIN" --help >"$WORK/help.txt" 2>&1

python3 - "$root/deploy/kubernetes" "$WORK/help.txt" "$WORK" <<'PY'
import os, re, shlex, sys
try:
    import yaml
except ImportError:
    print("FAIL yaml-module: python3-yaml is missing (scripts/install-deps.sh --test installs it)")
    sys.exit(0)

kdir, help_path, work = sys.argv[1:4]
def check(name, ok, why=""):
    print(f"PASS {name}" if ok else f"FAIL {name}: {why}")

docs = {}
for f in sorted(os.listdir(kdir)):
    if not f.endswith(".yaml"):
        continue
    try:
        for d in yaml.safe_load_all(open(os.path.join(kdir, f))):
            if d:
                docs.setdefault(d.get("kind"), []).append((f, d))
        check(f"parses-{f}", True)
    except yaml.YAMLError as e:
        check(f"parses-{f}", False, str(e).replace("\n", " "))

kust = docs.get("Kustomization", [(None, {})])[0][1]
for r in kust.get("resources", []):
    check(f"kustomization-lists-{r}", os.path.exists(os.path.join(kdir, r)), "missing file")
for kind in ("Deployment", "Service", "ConfigMap", "Secret"):
    check(f"has-{kind}", len(docs.get(kind, [])) == 1, f"{len(docs.get(kind, []))} found")
    if kind == "Deployment" or kind == "Service":
        pass
if any(len(docs.get(k, [])) != 1 for k in ("Deployment", "Service", "ConfigMap", "Secret")):
    sys.exit(0)
dep = docs["Deployment"][0][1]
svc = docs["Service"][0][1]
cm = docs["ConfigMap"][0][1]
sec = docs["Secret"][0][1]
spec = dep["spec"]
pod = spec["template"]["spec"]
check("replicas-2", spec.get("replicas") == 2, str(spec.get("replicas")))
labels = spec["template"]["metadata"]["labels"]
check("selector-matches-pod", all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()))
check("service-selects-pod", all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()))
c = [x for x in pod["containers"] if x["name"] == "ocicached"]
check("container", len(c) == 1)
c = c[0]

helptext = open(help_path).read()
known = set(re.findall(r"^\s+--([a-z_]+) \(", helptext, re.M))
check("help-lists-flags", len(known) > 20, f"{len(known)} flags in --help")
env = dict(cm.get("data", {}))
for e in c.get("env", []):
    env[e["name"]] = e.get("value", "")
cm_refs = [s["configMapRef"]["name"] for s in c.get("envFrom", []) if "configMapRef" in s]
check("envfrom-configmap", cm["metadata"]["name"] in cm_refs, str(cm_refs))
args = {}
for a in c.get("args", []):
    m = re.fullmatch(r"--([a-z_]+)(?:=(.*))?", a)
    check(f"arg-shape-{a.split('=')[0]}", m is not None, a)
    if not m:
        continue
    flag, val = m.group(1), m.group(2) or ""
    check(f"flag-exists-{flag}", flag in known, "not in ocicached --help")
    def expand(mv):
        name = mv.group(1)
        check(f"var-defined-{name}", name in env, "not in the ConfigMap or env")
        return env.get(name, "")
    args[flag] = re.sub(r"\$\(([A-Z_0-9]+)\)", expand, val)
for var in ("OCICACHE_REPO", "OCICACHE_DIR"):
    check(f"configmap-{var}", env.get(var, "") != "", "unset")

def port_of(addr):
    return int(addr.rsplit(":", 1)[1])
listen = port_of(args.get("listen", "127.0.0.1:9092"))
check("listen-all-interfaces", args.get("listen", "").startswith("0.0.0.0:"), args.get("listen"))
probe_port = port_of(args["health_listen"]) if "health_listen" in args else listen
ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
check("containerport-grpc-is-listen", ports.get("grpc") == listen, f"{ports} vs {listen}")
for kind in ("readinessProbe", "livenessProbe"):
    p = c.get(kind, {})
    check(f"{kind}-is-grpc", "grpc" in p, str(list(p)))
    got = p.get("grpc", {}).get("port")
    if isinstance(got, str):
        got = ports.get(got)
    check(f"{kind}-port-is-health-port", got == probe_port, f"{got} vs {probe_port}")
if "metrics_listen" in args:
    check("containerport-metrics", ports.get("metrics") == port_of(args["metrics_listen"]), str(ports))
if "http_listen" in args:
    check("containerport-http", ports.get("http") == port_of(args["http_listen"]), str(ports))
    check("http-port-not-health-port", port_of(args["http_listen"]) != probe_port)
for sp in svc["spec"]["ports"]:
    t = sp.get("targetPort", sp["port"])
    ok = t in ports if isinstance(t, str) else t in ports.values()
    check(f"service-port-{sp['name']}-targets-container", ok, f"{t} not in {ports}")
svc_grpc = [sp for sp in svc["spec"]["ports"] if sp.get("targetPort") in ("grpc", listen)]
check("service-exposes-grpc", len(svc_grpc) == 1)

res = c.get("resources", {})
for part in ("requests", "limits"):
    check(f"resources-{part}", "cpu" in res.get(part, {}) and "memory" in res.get(part, {}), str(res))

UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
         "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
def quantity(q):  # a Kubernetes quantity in bytes
    m = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi|Ti|K|M|G|T|)", str(q))
    return float(m.group(1)) * UNITS[m.group(2)] if m else None
def ocicache_size(s):  # ocicached's --max_local_size: K/M/G/T are powers of 1024
    m = re.fullmatch(r"([0-9.]+)([KMGT]?)(?:i?B?)", s)
    return float(m.group(1)) * (1024 ** "_KMGT".index(m.group(2) or "_")) if m else None
vols = {v["name"]: v for v in pod.get("volumes", [])}
mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
cache_dir = args.get("dir") or env.get("OCICACHE_DIR", "")
cache_vol = vols.get(mounts.get(cache_dir, ""), {})
check("cache-dir-on-emptydir", "emptyDir" in cache_vol, f"{cache_dir} mounted from {cache_vol}")
limit = quantity(cache_vol.get("emptyDir", {}).get("sizeLimit", ""))
bound = ocicache_size(args.get("max_local_size", ""))
check("max-local-size-set", bound is not None, args.get("max_local_size"))
if limit and bound:
    check("sizelimit-covers-bound", bound <= limit <= 1.5 * bound,
          f"sizeLimit {limit:.0f} B vs --max_local_size {bound:.0f} B")

secret_keys = set(sec.get("stringData", {})) | set(sec.get("data", {}))
for v in vols.values():
    if "secret" in v:
        check(f"volume-{v['name']}-secret-name", v["secret"]["secretName"] == sec["metadata"]["name"])
        for it in v["secret"].get("items", []):
            check(f"secret-has-{it['key']}", it["key"] in secret_keys, str(secret_keys))
def file_in_secret(path):
    for mp, vname in mounts.items():
        v = vols.get(vname, {})
        if "secret" in v and path.startswith(mp.rstrip("/") + "/"):
            rel = path[len(mp.rstrip("/")) + 1:]
            return any(it["path"] == rel for it in v["secret"].get("items", []))
    return False
if "tokens_file" in args:
    check("tokens-file-from-secret", file_in_secret(args["tokens_file"]), args["tokens_file"])
if "docker_config" in args:
    check("docker-config-from-secret", file_in_secret(args["docker_config"].rstrip("/") + "/config.json"))

# Arguments for a local run: loopback port 0, the Secret's files in a temp dir.
os.makedirs(os.path.join(work, "secret"), exist_ok=True)
for k, v in sec.get("stringData", {}).items():
    open(os.path.join(work, "secret", k), "w").write(v)
local = []
for flag, val in args.items():
    if flag.endswith("listen"):
        val = "127.0.0.1:0"
    elif flag in ("tokens_file", "docker_config"):
        val = val.replace("/etc/ocicache/secret", os.path.join(work, "secret"))
    local.append(f"--{flag}={val}")
local.append("--dir=" + os.path.join(work, "cache"))
open(os.path.join(work, "local-args"), "w").write("\n".join(local) + "\n")
PY

# The manifest's arguments start a real ocicached (the registry named in the
# ConfigMap is not reachable here: local tier only, so --repo is left out).
mapfile -t margs <"$WORK/local-args" 2>/dev/null
if ((${#margs[@]})); then
  if start_daemon K "${margs[@]}"; then pass manifest-args-start; else
    fail manifest-args-start "$(tail -3 "$WORK/K.err")"; exit 0; fi
  expect_contains manifest-args-health-port "$(cat "$WORK/K.err")" "health (plaintext, grpc.health.v1 only) on 127.0.0.1:"
  expect_contains manifest-args-metrics "$(cat "$WORK/K.err")" "metrics on http://127.0.0.1:"
  expect_rc manifest-args-token-works 1 env OCICACHE_SERVER_TOKEN=change-me-reader-token-0123456789 \
    "$OCICACHE_BIN" --server "$K" get absent-key
  stop_daemon K && pass manifest-args-sigterm || fail manifest-args-sigterm "exit $?"
else
  fail manifest-args "no arguments extracted"
fi
echo "note: checked statically and against the binary; not applied to a real cluster" >&2
