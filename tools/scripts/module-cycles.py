#!/usr/bin/env python3
"""Import circles between the modules of each crate (STYLE.md: layers stay
layers; folders are layers and imports run one way).

What counts as an edge: every path a module's code names that leads into
another module of the same crate: `crate::`, `super::` (any depth) and
`self::` paths, the leaves of grouped imports (`use super::{a, b::{c}}`),
names bound by `use` (aliases and `{self, ...}` included) and then used as
the head of a path (`membership::join::join`), and re-exports (`pub use`,
globs included) followed to the module that defines the name. Comments,
string literals and `#[cfg(test)]` modules are left out.

What counts as a circle: for every folder (module) P, its children form a
graph: child A -> child B when anything in A's subtree names anything in
B's subtree. A circle among the children of any P is reported; a module
naming its own ancestors or descendants is not an edge. Applied at the
crate root this is the layer rule; applied inside a folder, the same rule
for its files.

Prints each circle with one path around it and exits 1 if there is one.

Usage: tools/scripts/module-cycles.py [CRATE_DIR ...]   (default: every crate)
       tools/scripts/module-cycles.py --self-test       (plants circles in
       temporary crates and checks each is found, and that a clean crate
       passes)
"""
import collections
import os
import re
import sys
import tempfile

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(src):
    """Source without comments, string/char literals and test modules."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', src[i:i + 8]) and (i == 0 or not re.match(r"\w", src[i - 1])):
            hashes = re.match(r"r(#*)\"", src[i:]).group(1)
            end = src.find('"' + hashes, i + 2 + len(hashes))
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and src[i] != '"':
                i += 2 if src[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:i + 4]) or src.startswith("'\\u{", i):
            i = src.find("'", i + 2) + 1
            out.append("' '")
        else:
            out.append(c)
            i += 1
    src = "".join(out)
    # Drop `#[cfg(test)] mod name { ... }` blocks by matching braces.
    while True:
        hit = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{", src)
        if not hit:
            return src
        depth, j = 1, hit.end()
        while j < len(src) and depth:
            depth += {"{": 1, "}": -1}.get(src[j], 0)
            j += 1
        src = src[: hit.start()] + src[j:]


def use_trees(src):
    """(is_pub, [(segments, bound name; None for a glob)]) for each `use`."""
    for hit in re.finditer(r"(\bpub(?:\s*\([^)]*\))?\s+)?\buse\s+([^;]+);", src):
        tokens = re.findall(IDENT + r"|::|[{},*]", hit.group(2))
        leaves, _ = parse_tree(tokens, 0, [])
        yield bool(hit.group(1)), leaves


def parse_tree(tokens, i, prefix):
    """Leaves of the use tree starting at tokens[i]: (leaves, next index)."""
    segs = list(prefix)
    while i < len(tokens):
        t = tokens[i]
        if t == "::":
            i += 1
        elif t == "{":
            leaves, i = [], i + 1
            while i < len(tokens) and tokens[i] != "}":
                if tokens[i] == ",":
                    i += 1
                    continue
                sub, i = parse_tree(tokens, i, segs)
                leaves += sub
            return leaves, i + 1
        elif t == "*":
            return [(segs, None)], i + 1
        elif t in (",", "}"):
            break
        elif t == "as":
            name = tokens[i + 1]
            return ([] if name == "_" else [(leaf_segs(segs), name)]), i + 2
        else:
            segs.append(t)
            i += 1
    if not segs:
        return [], i
    full = leaf_segs(segs)
    return [(full, segs[-2] if segs[-1] == "self" and len(segs) > 1 else segs[-1])], i


def leaf_segs(segs):
    return segs[:-1] if segs and segs[-1] == "self" else segs


class Crate:
    """One crate root's module tree, its `use` bindings and its items."""

    def __init__(self, root_file):
        self.mods = {}  # module path -> stripped source
        self.load((), root_file)
        self.bindings, self.public, self.globs, self.items = {}, {}, {}, {}
        for m, src in self.mods.items():
            b, p, g = {}, {}, []
            for is_pub, leaves in use_trees(src):
                for segs, name in leaves:
                    if name is None:
                        g.append((is_pub, segs))
                    else:
                        b[name] = segs
                        if is_pub:
                            p[name] = segs
            self.bindings[m], self.public[m], self.globs[m] = b, p, g
            self.items[m] = set(re.findall(
                r"\b(?:fn|struct|enum|trait|type|const|static|union|macro_rules!)\s+(" + IDENT + ")", src))

    def load(self, path, file):
        with open(file, encoding="utf-8") as fh:
            src = strip(fh.read())
        self.mods[path] = src
        base = os.path.dirname(file)
        own = os.path.basename(file)[:-3]
        if own not in ("mod", "lib", "main") and path:
            base = os.path.join(base, own)
        if os.path.basename(os.path.dirname(file)) == "bin" and not path:
            base = os.path.dirname(base)
        for name in re.findall(r"(?m)^\s*(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", src):
            for cand in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
                if os.path.exists(cand):
                    self.load(path + (name,), cand)
                    break

    def absolute(self, m, segs, depth=0):
        """`segs` as named inside module `m`, from the crate root; None when
        it leads outside the crate."""
        if not segs or depth > 16:
            return None
        head = segs[0]
        if head == "crate":
            return list(segs[1:])
        if head in ("super", "self"):
            base, i = list(m), 0
            while i < len(segs) and segs[i] in ("super", "self"):
                if segs[i] == "super":
                    if not base:
                        return None
                    base.pop()
                i += 1
            return base + list(segs[i:])
        if m + (head,) in self.mods:
            return list(m) + list(segs)
        bound = self.bindings[m].get(head)
        if bound is not None and bound != [head]:
            full = self.absolute(m, bound, depth + 1)
            return None if full is None else full + list(segs[1:])
        return None

    def resolve(self, segs, depth=0):
        """The module that defines what the absolute path `segs` names."""
        cur = ()
        for k, seg in enumerate(segs):
            if cur + (seg,) in self.mods:
                cur = cur + (seg,)
                continue
            if depth < 16:
                bound = self.public[cur].get(seg)
                if bound is not None:
                    full = self.absolute(cur, bound)
                    return cur if full is None else self.resolve(full + list(segs[k + 1:]), depth + 1)
                for is_pub, glob in self.globs[cur]:
                    full = self.absolute(cur, glob) if is_pub else None
                    if full is None:
                        continue
                    gm = self.resolve(full, depth + 1)
                    if seg in self.items[gm] or gm + (seg,) in self.mods or seg in self.public[gm]:
                        return self.resolve(list(gm) + list(segs[k:]), depth + 1)
            return cur
        return cur

    def references(self):
        """(from module, to module) for every path into the crate."""
        refs = set()
        for m, src in self.mods.items():
            for _, leaves in use_trees(src):
                for segs, _ in leaves:
                    full = self.absolute(m, segs)
                    if full is not None:
                        refs.add((m, self.resolve(full)))
            code = re.sub(r"\buse\s+[^;]+;", ";", src)
            for hit in re.finditer(r"(?<![A-Za-z0-9_:])(" + IDENT + r")((?:\s*::\s*" + IDENT + r")+)", code):
                segs = [hit.group(1)] + re.findall(IDENT, hit.group(2))
                full = self.absolute(m, segs)
                if full is not None:
                    refs.add((m, self.resolve(full)))
        return refs


def sibling_graphs(refs):
    """For each folder P: child -> children edges among P's children."""
    graphs = collections.defaultdict(lambda: collections.defaultdict(set))
    for a, b in refs:
        k = 0
        while k < min(len(a), len(b)) and a[k] == b[k]:
            k += 1
        if k == len(a) or k == len(b):
            continue  # one is the other's ancestor (or itself)
        graphs[a[:k]][a[k]].add(b[k])
    return graphs


def circles(graph):
    """Strongly connected components of more than one node, each with one
    path around it (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    nodes = set(graph) | {y for xs in graph.values() for y in xs}

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    result = []
    for comp in out:
        members, start = set(comp), comp[0]
        # Shortest way back to start through the component (BFS).
        prev, queue, seen = {}, [start], {start}
        path = None
        while queue and path is None:
            x = queue.pop(0)
            for y in sorted(graph.get(x, ())):
                if y == start:
                    path = [start]
                    while x != start:
                        path.insert(1, x)
                        x = prev[x]
                    break
                if y in members and y not in seen:
                    seen.add(y)
                    prev[y] = x
                    queue.append(y)
        result.append((comp, path + [start]))
    return result


def roots(crate):
    src = os.path.join(crate, "src")
    found = [os.path.join(src, f) for f in ("lib.rs", "main.rs") if os.path.exists(os.path.join(src, f))]
    bins = os.path.join(src, "bin")
    if os.path.isdir(bins):
        found += sorted(os.path.join(bins, f) for f in os.listdir(bins) if f.endswith(".rs"))
    return found


def check(crate, out):
    """Print the circles of every root of `crate`; True if there is one."""
    bad = False
    for root in roots(crate):
        graphs = sibling_graphs(Crate(root).references())
        for folder in sorted(graphs):
            for comp, path in circles(graphs[folder]):
                where = "::".join(("crate",) + folder)
                out.append(f"{os.path.basename(crate)} ({os.path.relpath(root, crate)}): in {where}: "
                           f"{' -> '.join(path)} (circle of {', '.join(comp)})")
                bad = True
    return bad


PLANTED = {
    "grouped import": {
        "lib.rs": "mod a;\nmod b;\n",
        "a.rs": "use super::{b, c};\npub fn f() { b::g() }\n",
        "b.rs": "use crate::{a::f};\npub fn g() { f() }\n",
    },
    "alias and self": {
        "lib.rs": "pub mod top;\npub mod low;\n",
        "top/mod.rs": "pub mod x;\n",
        "top/x.rs": "use crate::low::{self, y as why};\npub fn f() { low::z(); why::h() }\n",
        "low/mod.rs": "pub mod y;\npub fn z() {}\n",
        "low/y.rs": "pub fn h() { super::super::top::x::f() }\n",
    },
    "re-export": {
        "lib.rs": "mod a;\nmod b;\npub use a::Thing;\n",
        "a.rs": "pub struct Thing;\npub fn f() { crate::b::g() }\n",
        "b.rs": "pub fn g() { let _ = crate::Thing; }\n",
    },
    "glob re-export, three long": {
        "lib.rs": "mod a;\nmod b;\nmod c;\n",
        "a.rs": "mod inner;\npub use inner::*;\npub fn f() { crate::b::g() }\n",
        "a/inner.rs": "pub fn deep() {}\n",
        "b.rs": "pub fn g() { crate::c::h() }\n",
        "c.rs": "pub fn h() { crate::a::deep() }\n",
    },
    "inside a folder": {
        "lib.rs": "mod peer;\n",
        "peer/mod.rs": "mod transport;\nmod snapshot;\n",
        "peer/transport.rs": "use super::snapshot;\npub fn t() { snapshot::s() }\n",
        "peer/snapshot.rs": "pub fn s() { super::transport::t() }\n",
    },
}

CLEAN = {
    "lib.rs": "mod a;\nmod b;\n#[cfg(test)]\nmod tests { use crate::a::*; }\n",
    "a.rs": "// crate::b::g\npub fn f() { let _ = \"crate::b::g\"; }\n#[cfg(test)]\nmod tests { fn t() { crate::b::g() } }\n",
    "b.rs": "use super::a;\npub fn g() { a::f() }\n",
}


def plant(dir, files):
    for rel, text in files.items():
        path = os.path.join(dir, "src", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)


def self_test():
    failures = 0
    for name, files in list(PLANTED.items()) + [("clean", CLEAN)]:
        with tempfile.TemporaryDirectory() as dir:
            plant(dir, files)
            out = []
            found = check(dir, out)
            want = name != "clean"
            ok = found == want
            failures += not ok
            print(f"{'ok' if ok else 'FAILED'}: {name}: {'circle found' if found else 'no circle'}"
                  + "".join("\n    " + line for line in out))
    print("self-test " + ("passed" if not failures else f"failed ({failures})"))
    return 1 if failures else 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.normpath(os.path.join(here, "..", ".."))
    crates = sys.argv[1:] or [os.path.join(top, c) for c in (
        "engine", "proto", "server", "tools", "tools/fault", "tools/fault/shim", "tools/fault/record", "tools/testkit", "benches")]
    out, bad = [], False
    for crate in crates:
        bad |= check(crate, out)
    print("\n".join(out) if bad else "no import circles")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
