"""The extension crate's layering rules, checked from its source text (run by `make lint`).

Dependencies run one way, from the top of this list down:

    lib -> event_loop -> transports, health -> reactor -> callbacks
        -> capi, errors, gil_cell, pyimports (the foundation) -> ferroloop-core

A top-level module of `crates/ferroloop-py/src` may name (`crate::x`) only modules of a lower
layer; two modules of one layer may not name each other in both directions, and no chain of
imports may lead back to where it started. Submodules of one package (`event_loop/*`) are one
package here: a parent and its children naming each other is how Rust modules work.

Modules not yet moved to the layer the rule gives them are placed by LAYER below. The rule is a
ratchet: the imports that still break it are listed in KNOWN, each to be removed by the change
that fixes it; an import against the rule that is not listed fails the check, and so does a
listed one that no longer exists (the list must shrink as the code does).

The same holds between files: no chain of imports between the crate's files may lead back to
where it started (`callbacks/handles.rs` naming `task_calls` while `task_calls.rs` names
`handles` fails, with the circle's path). A file's imports are every path it writes from
`crate::`, `super::`, `self::` or one of its own child modules (`use` lists expanded), each
resolved to the file that defines what it names, through re-exports (`crate::callbacks::Handle`
is `callbacks/handles.rs`). A module root (`lib.rs`, `x/mod.rs`) may name its own descendants
freely: its `mod` declarations and re-exports of its children, and its calls into them, are how
Rust splits a module among files, so edges from a module down into its own subtree do not count;
every other edge does, a child naming its parent's own items included.

A third rule: `capi/` is the only package that names PyO3's raw C API, as `sys/` is the only
one in the core crate that calls libc. A line outside `capi/` (`//` comments aside) that names
`pyo3::ffi` (or the `pyo3_ffi` crate), imports `ffi` from `pyo3` in a `use` list, or names an
`ffi::` path other than `std::ffi::`/`core::ffi::`/`alloc::ffi::` fails the check, with its
file and line: such code belongs in a wrapper in `capi/`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "crates" / "ferroloop-py" / "src"

# Higher numbers may depend on lower ones.
LAYER = {
    "lib": 6,
    "event_loop": 5,
    "transports": 4,
    "health": 4,
    "reactor": 3,
    "callbacks": 2,
    "capi": 1,
    "errors": 1,
    "gil_cell": 1,
    "pyimports": 1,
    "sockaddr": 1,  # socket addresses between the kernel and Python (transports and sock_*)
}

# Imports that break the rule today: (from, to). Each entry goes when its import does.
KNOWN: set[tuple[str, str]] = set()

_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")

# The package that alone may name PyO3's raw C API.
FFI_HOME = "capi"
_FFI = re.compile(
    r"\bpyo3(?:_ffi\b|::ffi\b)"  # pyo3::ffi, pyo3_ffi
    r"|\bpyo3::\{[^;]*?\bffi\b"  # use pyo3::{ffi, ...}, over several lines too
    r"|(?<!std::)(?<!core::)(?<!alloc::)\bffi::"  # ffi::X, but not std::ffi::CStr
)


def package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def imports() -> dict[tuple[str, str], list[str]]:
    """(from, to) package pairs, with where each is seen."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(SRC.rglob("*.rs")):
        here = package_of(path)
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("//", 1)[0]
            for target in _PATH.findall(code):
                if target != here:
                    found.setdefault((here, target), []).append(f"{path.relative_to(SRC)}:{lineno}")
    return found


def code_of(path: Path) -> str:
    """The file's text with `//` comments (doc comments too) blanked, lines kept in place."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line.split("//", 1)[0] for line in lines)


def ffi_outside_home() -> list[str]:
    """`file:line: text` for each place outside capi/ that names PyO3's ffi."""
    found = []
    for path in sorted(SRC.rglob("*.rs")):
        if package_of(path) == FFI_HOME:
            continue
        code = code_of(path)
        lines = path.read_text(encoding="utf-8").splitlines()
        seen = set()
        for m in _FFI.finditer(code):
            # The line of the `ffi` itself (a `use` list may span lines).
            at = m.end() - (2 if m.group().endswith("::") else 0)
            lineno = code.count("\n", 0, at) + 1
            if lineno not in seen:
                seen.add(lineno)
                found.append(f"{path.relative_to(SRC)}:{lineno}: {lines[lineno - 1].strip()}")
    return found


# ---- The file-level graph ----------------------------------------------------------------

Module = tuple[str, ...]  # ("callbacks", "handles"); () is the crate root

_BLANK = re.compile(
    r"//[^\n]*"
    r"|/\*.*?\*/"
    r'|(?<![A-Za-z0-9_])r(#*)".*?"\1'
    r'|(?<![A-Za-z0-9_])b?"(?:[^"\\]|\\.)*"'
    r"|(?<![A-Za-z0-9_])b?'(?:[^'\\\n]|\\.[^'\n]{0,9})'",
    re.S,
)
_USE = re.compile(r"\buse\s+([^;{}]*(?:\{[^;]*\})?[^;{}]*);")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_INLINE_MOD = re.compile(rf"\bmod\s+({_NAME})\s*\{{")
_CODE_PATH = re.compile(rf"(?<![A-Za-z0-9_:])({_NAME}(?:\s*::\s*{_NAME})+)")


def blank_literals(text: str) -> str:
    """Comments, strings and char literals turned to spaces (newlines kept, so offsets hold)."""
    return _BLANK.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)


def module_of(path: Path, src: Path) -> Module:
    parts = path.relative_to(src).with_suffix("").parts
    if parts == ("lib",):
        return ()
    return parts[:-1] if parts[-1] == "mod" else parts


def expand_use(tree: str) -> list[tuple[list[str], str]]:
    """`a::{b, c::{d as e}, self}` -> ([a, b], b), ([a, c, d], e), ([a], a)."""
    tree = re.sub(r"\s+as\s+", "@", tree.strip())
    tree = re.sub(r"\s+", "", tree).removeprefix("::")
    brace = tree.find("{")
    if brace < 0:
        path, _, alias = tree.partition("@")
        segs = [s for s in path.split("::") if s]
        if segs and segs[-1] == "*":
            return [(segs[:-1], "*")]
        if segs and segs[-1] == "self":
            segs = segs[:-1]
        return [(segs, alias or (segs[-1] if segs else ""))] if segs else []
    prefix = [s for s in tree[:brace].split("::") if s]
    inner = tree[brace + 1 : tree.rindex("}")]
    items, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(inner[start:i])
            start = i + 1
    items.append(inner[start:])
    out = []
    for item in filter(None, items):
        if item == "self":
            out.append((prefix, prefix[-1] if prefix else ""))
            continue
        out += [(prefix + segs, alias) for segs, alias in expand_use(item)]
    return out


class Crate:
    """The crate's modules (files and inline `mod x { }`), their `use` bindings, their paths."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.files: dict[Module, Path] = {}  # file modules
        self.modules: set[Module] = set()  # file and inline modules
        self.bindings: dict[Module, dict[str, tuple[list[str], Module]]] = {}
        # (file, line, the module it is written in, the path or use-tree leaf)
        self.paths: list[tuple[Path, int, Module, list[str]]] = []
        for path in sorted(src.rglob("*.rs")):
            self.files[module_of(path, src)] = path
        self.modules.update(self.files)
        for mod, path in sorted(self.files.items()):
            self._read(mod, path)

    def _read(self, mod: Module, path: Path) -> None:
        code = blank_literals(path.read_text(encoding="utf-8"))
        spans = []  # inline modules: (start, end, name)
        for m in _INLINE_MOD.finditer(code):
            depth, i = 1, m.end()
            while depth and i < len(code):
                depth += {"{": 1, "}": -1}.get(code[i], 0)
                i += 1
            spans.append((m.start(), i, m.group(1)))

        def where(pos: int) -> Module:
            return mod + tuple(name for a, b, name in spans if a <= pos < b)

        self.modules.update(where(a) for a, _, _ in spans)  # a span holds its own `mod`
        for m in _USE.finditer(code):
            here, line = where(m.start()), code.count("\n", 0, m.start()) + 1
            for segs, alias in expand_use(m.group(1)):
                if alias != "*" and alias:
                    self.bindings.setdefault(here, {})[alias] = (segs, here)
                self.paths.append((path, line, here, segs))
        # What the `use` statements said is read; blank them so their lists are not read again.
        code = _USE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), code)
        for m in _CODE_PATH.finditer(code):
            segs = re.sub(r"\s+", "", m.group(1)).split("::")
            here = where(m.start())
            if segs[0] in ("crate", "super", "self") or here + (segs[0],) in self.modules:
                self.paths.append((path, code.count("\n", 0, m.start()) + 1, here, segs))

    def resolve(self, segs: list[str], here: Module, depth: int = 0) -> Module | None:
        """The module whose file defines what `segs`, written in `here`, names (None: outside)."""
        if not segs or depth > 16:
            return None
        first, rest = segs[0], segs[1:]
        if first == "crate":
            cur = ()
        elif first == "self":
            cur = here
        elif first == "super":
            cur = here[:-1]
            while rest and rest[0] == "super":
                cur, rest = cur[:-1], rest[1:]
        elif here + (first,) in self.modules:
            cur = here + (first,)
        elif first in self.bindings.get(here, {}) and self.bindings[here][first][0] != segs:
            bound, at = self.bindings[here][first]
            found = self.resolve(bound, at, depth + 1)
            if found is None or not rest:
                return found
            return self.resolve(["crate", *found, *rest], (), depth + 1)
        else:
            return None  # another crate (std, pyo3, ferroloop_core) or a local item
        for seg in rest:
            if cur + (seg,) in self.modules:
                cur += (seg,)
                continue
            bound = self.bindings.get(cur, {}).get(seg)
            if bound is None:
                return cur  # an item defined in cur's file
            # A name cur imports (a re-export): the file that defines it; an alias of
            # another crate's item lives in cur's file.
            found = self.resolve(*bound, depth + 1)
            return cur if found is None else found
        return cur

    def file_of(self, mod: Module) -> Path:
        while mod not in self.files:
            mod = mod[:-1]
        return self.files[mod]

    def edges(self) -> dict[tuple[Path, Path], list[str]]:
        """(from, to) file pairs, with where each is seen; a module naming its own subtree is
        not an edge (see the module docstring)."""
        found: dict[tuple[Path, Path], list[str]] = {}
        owner = {path: mod for mod, path in self.files.items()}
        for path, line, here, segs in self.paths:
            target = self.resolve(segs, here)
            if target is None:
                continue
            dst = self.file_of(target)
            src_mod = owner[path]
            if dst == path or owner[dst][: len(src_mod)] == src_mod:
                continue
            found.setdefault((path, dst), []).append(f"{path.relative_to(self.src)}:{line}")
        return found


def circle_path(edges: set[tuple[str, str]], comp: list[str]) -> list[str]:
    """One shortest circle through comp[0] inside the component, as a list of nodes."""
    inside = set(comp)
    start = comp[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for a, b in sorted(edges):
                if a != v or b not in inside:
                    continue
                if b == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if b not in prev:
                    prev[b] = v
                    nxt.append(b)
        frontier = nxt
    return comp + comp[:1]


def file_circles(src: Path) -> tuple[int, list[str]]:
    """(how many file edges, one message per circle between files)."""
    found = Crate(src).edges()
    names = {pair: (str(pair[0].relative_to(src)), str(pair[1].relative_to(src))) for pair in found}
    edges = set(names.values())
    where = {names[pair]: places for pair, places in found.items()}
    messages = []
    for comp in cycles(edges):
        path = circle_path(edges, comp)
        steps = [f"{a} ({where[(a, b)][0]})" for a, b in zip(path, path[1:], strict=False)]
        messages.append("import circle between files: " + " -> ".join(steps) + f" -> {path[-1]}")
    return len(edges), messages


def against_rule(pair: tuple[str, str], edges: set[tuple[str, str]]) -> str | None:
    src, dst = pair
    if src not in LAYER or dst not in LAYER:
        missing = src if src not in LAYER else dst
        return f"module {missing!r} has no layer (add it to LAYER in {Path(__file__).name})"
    if LAYER[src] < LAYER[dst]:
        return f"{src} (layer {LAYER[src]}) imports {dst} (layer {LAYER[dst]}), upwards"
    if LAYER[src] == LAYER[dst] and (dst, src) in edges:
        return f"{src} and {dst} import each other"
    return None


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    found = imports()
    edges = set(found)
    errors = []
    for pair in sorted(edges):
        why = against_rule(pair, edges)
        if why and pair not in KNOWN:
            errors.append(f"{why}: {', '.join(found[pair][:3])}")
    for pair in sorted(KNOWN - edges):
        errors.append(f"{pair[0]} -> {pair[1]} no longer exists: remove it from KNOWN")
    allowed = {p for p in edges if not against_rule(p, edges)}
    for comp in cycles(allowed):
        errors.append(f"import circle among {', '.join(comp)}")
    circles = cycles(edges)
    file_edges, file_errors = file_circles(SRC)
    errors += file_errors
    ffi = ffi_outside_home()
    errors += [f"pyo3's ffi outside {FFI_HOME}/ (wrap it in {FFI_HOME}/): {where}" for where in ffi]
    if errors:
        print("layering check failed:", *errors, sep="\n  ")
        return 1
    known = f"{len(KNOWN)} known import(s) against the rule"
    print(
        f"layering: OK ({len(edges)} module imports; {known}; {len(circles)} circle(s);"
        f" {file_edges} file imports, no circle; pyo3::ffi only in {FFI_HOME}/)"
    )
    return 0


# A crate in miniature for `--self-test` (run by `make lint`): file -> text.
_SAMPLE = {
    "lib.rs": "mod p;\nmod q;\n",
    "p/mod.rs": "mod a;\nmod b;\nmod c;\npub(crate) use a::A;\nuse self::c::helper;\n",
    # a names b through a use list; b names A through p's re-export of a::A: a circle.
    "p/a.rs": "use super::{b::{self, B as Bee}, c};\npub struct A;\n",
    "p/b.rs": "pub struct B(crate::p::A);\n",
    # c names its parent's items and a sibling only in comments, strings and its tests.
    "p/c.rs": (
        "// use super::a::A;\n"
        'const S: &str = "crate::p::b::B {";\n'
        "pub fn helper() -> char { '{' }\n"
        "#[cfg(test)]\nmod tests {\n    use super::helper;\n}\n"
    ),
    "q.rs": "fn f() { let _ = crate::p::c::helper(); }\n",
}


def self_test() -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        for name, text in _SAMPLE.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(text, encoding="utf-8")
        pairs = {(str(a.relative_to(src)), str(b.relative_to(src))) for a, b in Crate(src).edges()}
        want = {("p/a.rs", "p/b.rs"), ("p/a.rs", "p/c.rs"), ("p/b.rs", "p/a.rs")}
        want.add(("q.rs", "p/c.rs"))
        _, circles = file_circles(src)
    ok = pairs == want and len(circles) == 1 and "p/a.rs (p/a.rs:1) -> p/b.rs" in circles[0]
    if not ok:
        print(f"self-test failed: edges {sorted(pairs)}, circles {circles}")
        return 1
    print("check_layers self-test: OK")
    return 0


if __name__ == "__main__":
    sys.exit(self_test() if sys.argv[1:] == ["--self-test"] else main())
