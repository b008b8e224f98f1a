#!/usr/bin/env python3
"""The layers check: the graph of which top-level module of src/ names which
(`use crate::x`, `crate::x::...`, `use crate::{x, y}`), with comments and
`#[cfg(test)]` modules left out. Modules must only point down: any cycle in
the graph fails the check, naming the modules in it and the edges that close it.

Usage: scripts/layers.py [SRC_DIR] [--dot]
  --dot   also print the graph, one `a -> b` edge per line (for Graphviz)
Exit status: 0 without a cycle, 1 with one."""
import os
import re
import sys

ENTRY_POINTS = {"main", "lib"}


def without_comments_and_tests(code):
    code = re.sub(r"/\*.*?\*/", "", code, flags=re.S)
    code = re.sub(r"//[^\n]*", "", code)
    kept, pos = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*(\{|;)", code):
        if m.start() < pos:
            continue
        kept.append(code[pos:m.start()])
        if m.group(1) == ";":
            pos = m.end()
            continue
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        pos = i
    kept.append(code[pos:])
    return "".join(kept)


def test_only_files(src):
    """Files declared as `#[cfg(test)] mod x;`: test code, not part of the graph."""
    skip = set()
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            here = root if f in ("mod.rs", "lib.rs", "main.rs") else os.path.join(root, f[:-3])
            text = open(path, encoding="utf-8", errors="replace").read()
            for name in re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text):
                skip.add(os.path.normpath(os.path.join(here, name + ".rs")))
                skip.add(os.path.normpath(os.path.join(here, name, "mod.rs")))
    return skip


def graph(src):
    skip = test_only_files(src)
    edges = {}
    for root, _, files in os.walk(src):
        for f in sorted(files):
            path = os.path.normpath(os.path.join(root, f))
            if not f.endswith(".rs") or path in skip:
                continue
            top = os.path.relpath(path, src).split(os.sep)[0].removesuffix(".rs")
            if top in ENTRY_POINTS:
                continue
            code = without_comments_and_tests(open(path, encoding="utf-8", errors="replace").read())
            names = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", code))
            for group in re.findall(r"\bcrate::\{([^}]*)\}", code):
                names |= set(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
            edges.setdefault(top, set()).update(n for n in names if n != top)
    return edges


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    nodes = sorted(set(edges) | {b for bs in edges.values() for b in bs})
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    edges = graph(src)
    if "--dot" in argv:
        print("digraph modules {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f"  {a} -> {b};")
        print("}")
    found = cycles(edges)
    count = sum(len(b) for b in edges.values())
    if not found:
        print(f"layers: {len(edges)} modules, {count} imports, no cycle", file=sys.stderr)
        return 0
    for component in found:
        inside = set(component)
        closing = [f"{a} -> {b}" for a in component for b in sorted(edges.get(a, ())) if b in inside]
        print(
            f"layers: a cycle between {' <-> '.join(component)}; a lower module must not import a higher one "
            f"(imports inside the cycle: {', '.join(closing)})",
            file=sys.stderr,
        )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
