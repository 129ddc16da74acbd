"""The native module's private names are the ones docs/architecture.md lists, and each is used.

The boundary between the Python layer and the Rust extension is documented as a table ("The
boundary between Python and Rust"). A private name added to or removed from the native `Loop`
or module without the table following fails here, and so does a listed name of ferroloop's own
that nothing calls any more.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ferroloop_native = pytest.importorskip("ferroloop._ferroloop")

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "python" / "ferroloop"


def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## The boundary between Python and Rust")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _table_rows() -> list[tuple[str, set[str]]]:
    """(group, names) per table row; a row with an empty group continues the one above."""
    rows = []
    group = ""
    for line in _section().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("group", "---"):
            continue
        group = cells[0] or group
        rows.append((group, set(re.findall(r"`(_[a-z_]+)`", cells[1]))))
    return rows


def _private(names) -> set[str]:
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_loop_private_names_are_the_documented_ones():
    documented = set().union(*(names for _, names in _table_rows()))
    assert _private(vars(ferroloop_native.Loop)) == documented


def test_module_private_functions_are_documented():
    section = _section()
    items = vars(ferroloop_native).items()
    functions = _private(n for n, v in items if callable(v) and not isinstance(v, type))
    missing = {f for f in functions if f"`{f}`" not in section}
    assert not missing


def test_internal_interface_is_used_by_the_python_layer():
    source = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.glob("*.py"))
    own = set()
    for group, names in _table_rows():
        if group == "the loop's internal interface":
            own |= names
    generic = {n for n in own if n.endswith("_generic")}  # used from Rust (fast.rs)
    unused = {n for n in own - generic if not re.search(rf"\b{n}\b", source)}
    assert not unused
