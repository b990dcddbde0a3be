#!/usr/bin/env python3
"""Report import cycles between slipway's source files.

    scripts/import-cycles.py            # cycles between files under src/
    scripts/import-cycles.py --modules  # cycles between top-level modules
                                        # (host, remote, protocol, fleet, ...)
    scripts/import-cycles.py --edges    # also print every file's imports

The code layering (`docs/architecture.md`) says a lower layer never imports
a higher one and no two files import each other. This script checks the
second half mechanically, and `--modules` the first: it reads every `.rs`
file under `src/` (the library; `main.rs` is the binary), collects the
paths it names -- `use crate::…`, `use super::…`, `use self::…`, a child
module named in a `use`, and `crate::x::y` / `super::x` written inline in
code -- resolves each to the file that defines it, and reports every
strongly connected group of files (a cycle) with one loop through it.

Resolution is textual, not a compiler's: the longest module prefix of a path
that is a file wins, and a name that a `mod.rs` only re-exports (`pub use
child::Name`) is followed to the child that defines it, so a facade
`mod.rs` does not make its children look circular. Comments and string
literals are ignored. Exit status: 0 without cycles, 1 with cycles.
"""

import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_path(rel):
    """`host/serve.rs` -> ("host", "serve"); `host/mod.rs` -> ("host",)."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod" or parts == ["lib"]:
        parts = parts[:-1]
    return tuple(parts)


def strip(text):
    """The code without comments, string and char literals (same line count)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not re.match(r"\w", text[i - 1:i] or " "):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + 2 + len(hashes))
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\(x..|u\{[0-9a-fA-F]+\})'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\(x..|u\{[0-9a-fA-F]+\})'", text[i:i + 12])
            out.append("' '")
            i += m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand(tree):
    """`a::{b, c::{d, e as f}, self}` -> ["a::b", "a::c::d", "a::c::e", "a"]."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+" + IDENT, "", tree))
    depth, start = 0, None
    for k, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = k
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix = tree[:start]
                inner, rest = tree[start + 1:k], tree[k + 1:]
                parts, d, s = [], 0, 0
                for m, c2 in enumerate(inner + ","):
                    if c2 == "{":
                        d += 1
                    elif c2 == "}":
                        d -= 1
                    elif c2 == "," and d == 0:
                        if inner[s:m]:
                            parts.append(inner[s:m])
                        s = m + 1
                out = []
                for p in parts:
                    for e in expand(p + rest):
                        out.append(prefix.rstrip(":") if e == "self" else prefix + e)
                return out
    return [tree]


class Crate:
    def __init__(self, root):
        self.root = root
        self.files = {}  # module path -> relative file name
        for dirpath, _, names in os.walk(root):
            for name in names:
                if name.endswith(".rs") and name != "main.rs":
                    rel = os.path.relpath(os.path.join(dirpath, name), root)
                    self.files[module_path(rel)] = rel
        self.code = {}
        for mod, rel in self.files.items():
            with open(os.path.join(root, rel), encoding="utf-8") as f:
                self.code[mod] = strip(f.read())
        # What each file re-exports (`pub use`), to see through facades.
        self.reexports = {mod: self.uses(mod, public_only=True) for mod in self.files}

    def uses(self, mod, public_only=False):
        """(line, absolute path) of every `use` in the file of `mod`."""
        code = self.code[mod]
        vis = r"pub(\([^)]*\))?\s+" if public_only else r"(pub(\([^)]*\))?\s+)?"
        found = []
        for m in re.finditer(r"(?m)^[ \t]*" + vis + r"use\s+([^;]+);", code):
            line = code.count("\n", 0, m.start()) + 1
            inner = self.inline_module(mod, m.start())
            for p in expand(m.group(m.lastindex)):
                absolute = self.absolute(mod + inner, p)
                if absolute is not None:
                    found.append((line, absolute, p.split("::")[-1]))
        return found

    def inline_module(self, mod, offset):
        """The inline `mod x { … }` path around `offset` in `mod`'s file."""
        code = self.code[mod]
        stack, depth = [], 0
        for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{|[{}]", code[:offset]):
            tok = m.group(0)
            if tok.startswith("mod"):
                depth += 1
                stack.append((m.group(1), depth))
            elif tok == "{":
                depth += 1
            else:
                if stack and stack[-1][1] == depth:
                    stack.pop()
                depth -= 1
        return tuple(name for name, _ in stack)

    def absolute(self, here, path):
        """The absolute module path of `path` written in module `here`."""
        segs = path.split("::")
        if segs[0] == "crate":
            return tuple(segs[1:])
        if segs[0] in ("super", "self"):
            cur = list(here)
            while segs and segs[0] in ("super", "self"):
                if segs.pop(0) == "super":
                    if not cur:
                        return None
                    cur.pop()
            return tuple(cur + segs)
        # A child module of the file (`use session::HostSession;` in a mod.rs).
        if here + (segs[0],) in self.files:
            return here + tuple(segs)
        return None  # std, an extern crate, or a local item

    def resolve(self, path, depth=0):
        """The file defining `path` (absolute), following re-exports."""
        for k in range(len(path), -1, -1):
            mod = path[:k]
            if mod in self.files:
                rest = path[k:]
                if rest and depth < 8:
                    for _, target, name in self.reexports[mod]:
                        if name == rest[0] and target != mod + rest[:1]:
                            return self.resolve(target + rest[1:], depth + 1)
                return mod
        return None

    def imports(self, mod):
        """{imported file module: first line} for the file of `mod`."""
        found = {}
        for line, path, _ in self.uses(mod):
            found.setdefault(self.resolve(path), line)
        code = self.code[mod]
        for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::" + IDENT + ")+)", code):
            if re.match(r"[ \t]*(pub(\([^)]*\))?\s+)?use\s", code[code.rfind("\n", 0, m.start()) + 1:m.start()]):
                continue
            line = code.count("\n", 0, m.start()) + 1
            inner = self.inline_module(mod, m.start())
            absolute = self.absolute(mod + inner, m.group(1))
            if absolute is not None:
                found.setdefault(self.resolve(absolute), line)
        found.pop(None, None)
        found.pop(mod, None)
        return found


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

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
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def loop_through(graph, comp):
    """One shortest loop from the first node of `comp` back to itself."""
    start, members = comp[0], set(comp)
    prev, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return list(reversed(path)) + [start]
                if w in members and w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def main():
    args = set(sys.argv[1:])
    if args - {"--modules", "--edges"}:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    crate = Crate(ROOT)
    graph, lines = defaultdict(set), {}
    for mod in sorted(crate.files):
        src = crate.files[mod]
        for target, line in sorted(crate.imports(mod).items()):
            a, b = src, crate.files[target]
            if "--modules" in args:
                a, b = mod[:1] or ("lib",), target[:1] or ("lib",)
                a, b = a[0], b[0]
                if a == b:
                    continue
            graph[a].add(b)
            graph.setdefault(b, set())
            lines.setdefault((a, b), f"{src}:{line}")
    if "--edges" in args:
        for a in sorted(graph):
            print(f"{a} -> {', '.join(sorted(graph[a])) or '(nothing)'}")
        print()
    found = cycles(graph)
    unit = "modules" if "--modules" in args else "files"
    if not found:
        print(f"no import cycles between {len(graph)} {unit}")
        return 0
    print(f"{len(found)} import cycle(s) between {unit}:")
    for comp in found:
        loop = loop_through(graph, comp)
        print(f"  {' -> '.join(loop)}")
        for a, b in zip(loop, loop[1:]):
            print(f"      {a} -> {b}  ({lines[(a, b)]})")
        if len(comp) > len(loop) - 1:
            print(f"    (the group also holds: {', '.join(sorted(set(comp) - set(loop)))})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
