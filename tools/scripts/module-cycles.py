#!/usr/bin/env python3
"""Import circles between the modules of each crate (STYLE.md: layers stay
layers). A module's edges are the `super::x` and `crate::x::y` paths its
code names (comments and inline test modules left out), resolved to the
longest module path that exists; a parent and its own children do not count.
Prints each circle and exits 1 if there is one.

Usage: tools/scripts/module-cycles.py [CRATE_DIR ...]   (default: every crate)
"""
import collections
import os
import re
import sys


def module_path(root, path):
    parts = os.path.relpath(path, root)[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def edges_of(crate):
    root = os.path.join(crate, "src")
    files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".rs")]
    mods = {module_path(root, f): f for f in files}
    edges = set()
    for m, f in mods.items():
        with open(f, encoding="utf-8") as fh:
            src = fh.read()
        src = src.split("#[cfg(test)]\nmod tests")[0]
        src = "\n".join(l for l in src.split("\n") if not l.strip().startswith("//"))
        for hit in re.finditer(r"\b(super|crate)((?:::[a-z_][a-z0-9_]*)+)", src):
            kind, path = hit.group(1), hit.group(2).split("::")[1:]
            full = (list(m[:-1]) if kind == "super" else []) + path
            target = next((tuple(full[:i]) for i in range(len(full), 0, -1) if tuple(full[:i]) in mods), None)
            if target is None or target == m:
                continue
            if target[: len(m)] == m or m[: len(target)] == target:
                continue
            edges.add((m, target))
    return edges


def cycles(edges):
    graph = collections.defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    found = set()
    for a, b in edges:
        seen, stack = {b}, [b]
        while stack:
            x = stack.pop()
            if x == a:
                found.add(tuple(sorted(("::".join(a), "::".join(b)))))
                break
            for y in graph[x] - seen:
                seen.add(y)
                stack.append(y)
    return sorted(found)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.normpath(os.path.join(here, "..", ".."))
    crates = sys.argv[1:] or [os.path.join(top, c) for c in ("engine", "proto", "server", "tools", "benches")]
    bad = False
    for crate in crates:
        if not os.path.isdir(os.path.join(crate, "src")):
            continue
        found = cycles(edges_of(crate))
        for a, b in found:
            print(f"{os.path.basename(crate)}: {a} <-> {b} import each other (directly or through others)")
        bad |= bool(found)
    if not bad:
        print("no import circles")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
