#!/usr/bin/env python3
"""Checks the build graph against the allowed imports in docs/ARCHITECTURE.md.

Usage: check_layers.py ARCHITECTURE.md QUERY.xml [--extra-edge FROM_LABEL TO_LABEL]

QUERY.xml is `bazel query 'kind("cc_library|cc_binary", //pkg/... + //cmd/...)'
--output=xml`. Every non-test rule's deps are mapped to packages ("pkg/cache",
"cmd/ocicached", "api", "third_party"); a dep on another package that the rule's
package may not import is a violation. --extra-edge adds a dependency that is not
in the graph, to show that the check catches it. Prints one line per violation and
exits 1 if there is any.
"""
import re
import sys
import xml.etree.ElementTree as ET


def allowed_graph(doc_path):
    """The ```layers block: lines "pkg/x: pkg/y pkg/z" (a package and what it may import)."""
    text = open(doc_path).read()
    m = re.search(r"```layers\n(.*?)```", text, re.S)
    if not m:
        sys.exit(f"{doc_path}: no ```layers block")
    graph = {}
    for line in m.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        pkg, _, deps = line.partition(":")
        graph[pkg.strip()] = set(deps.split())
    return graph


def package_of(label):
    # //pkg/cache:breaker -> pkg/cache; //api/ocicache/v1:x -> api; //third_party:absl -> third_party
    path = label.lstrip("/").split(":", 1)[0]
    top = path.split("/", 1)[0]
    if top in ("api", "third_party", "bazel"):
        return top
    parts = path.split("/")
    return "/".join(parts[:2])


def rules(xml_path):
    root = ET.parse(xml_path).getroot()
    for rule in root.iter("rule"):
        name = rule.get("name")
        testonly = any(b.get("name") == "testonly" and b.get("value") == "true"
                       for b in rule.iter("boolean"))
        deps = []
        for lst in rule.iter("list"):
            if lst.get("name") == "deps":
                deps += [l.get("value") for l in lst.iter("label")]
        yield name, testonly, deps


def main(argv):
    doc, query = argv[1], argv[2]
    extra = []
    if len(argv) == 6 and argv[3] == "--extra-edge":
        extra.append((argv[4], argv[5]))
    graph = allowed_graph(doc)
    edges = []
    for name, testonly, deps in rules(query):
        if testonly:
            continue
        edges += [(name, d) for d in deps]
    edges += extra
    bad = []
    for src, dst in edges:
        sp, dp = package_of(src), package_of(dst)
        if sp == dp or dp == "third_party":
            continue
        if sp not in graph:
            bad.append(f"{src}: package {sp} is not in the layers block of {doc}")
            continue
        if dp not in graph[sp]:
            bad.append(f"{src} -> {dst}: {sp} may not import {dp}")
    for b in sorted(set(bad)):
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
