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

A second rule: `capi/` is the only package that names PyO3's raw C API, as `sys/` is the only
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
    ffi = ffi_outside_home()
    errors += [f"pyo3's ffi outside {FFI_HOME}/ (wrap it in {FFI_HOME}/): {where}" for where in ffi]
    if errors:
        print("layering check failed:", *errors, sep="\n  ")
        return 1
    known = f"{len(KNOWN)} known import(s) against the rule"
    print(
        f"layering: OK ({len(edges)} module imports; {known}; {len(circles)} circle(s);"
        f" pyo3::ffi only in {FFI_HOME}/)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
