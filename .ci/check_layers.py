"""The extension crate's layering rule, checked from its `crate::` paths (run by `make lint`).

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
    if errors:
        print("layering check failed:", *errors, sep="\n  ")
        return 1
    known = f"{len(KNOWN)} known import(s) against the rule"
    print(f"layering: OK ({len(edges)} module imports; {known}; {len(circles)} circle(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
