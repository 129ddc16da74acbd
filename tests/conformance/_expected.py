"""Parse expected_failures.txt: the ferroloop failures we know about, each with its reason.

Grammar, one entry a line (blank lines and lines starting with ``#`` are comments)::

    [GATE,GATE...] TEST_ID  # reason

TEST_ID is ``module.Class.test_name`` and may hold fnmatch wildcards (``*``, ``?``). A GATE is
``py`` with one of ``>= > <= < == !=`` and a version (``py>=3.12``, ``py<3.13``); an entry
applies when all its gates hold for the running interpreter. The ``# reason`` is required:
an entry without one is rejected, so every listed failure says why it is acceptable.
"""

from __future__ import annotations

import operator
import re
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase

_LINE = re.compile(r"^(?:\[(?P<gates>[^\]]*)\]\s*)?(?P<id>[^\s#]+)\s*(?:#\s*(?P<reason>.*))?$")
_GATE = re.compile(r"^py\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<ver>\d+(?:\.\d+)*)$")
_OPS = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}


class ExpectedFileError(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    pattern: str
    reason: str
    lineno: int

    @property
    def module(self) -> str:
        return self.pattern.split(".", 1)[0]

    def matches(self, test_id: str) -> bool:
        return fnmatchcase(test_id, self.pattern)


def _gate_holds(gate: str, version: tuple[int, ...], where: str) -> bool:
    m = _GATE.match(gate.strip())
    if not m:
        raise ExpectedFileError(f"{where}: bad gate {gate!r} (want e.g. py>=3.12)")
    want = tuple(int(p) for p in m.group("ver").split("."))
    return _OPS[m.group("op")](version[: len(want)], want)


def parse(path: str, version: tuple[int, ...] = tuple(sys.version_info[:3])) -> list[Entry]:
    """Entries that apply to ``version``; raises ExpectedFileError on any malformed line."""
    entries: list[Entry] = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path}:{lineno}"
            m = _LINE.match(line)
            if not m:
                raise ExpectedFileError(f"{where}: cannot parse {line!r}")
            reason = (m.group("reason") or "").strip()
            if not reason:
                raise ExpectedFileError(f"{where}: {m.group('id')} has no '# reason'")
            if m.group("id").count(".") < 2:
                raise ExpectedFileError(
                    f"{where}: want module.Class.test_name, got {m.group('id')}"
                )
            gates = [g for g in (m.group("gates") or "").split(",") if g.strip()]
            if all([_gate_holds(g, version, where) for g in gates]):  # check every gate
                entries.append(Entry(m.group("id"), reason, lineno))
    return entries


def lookup(entries: list[Entry], test_id: str) -> Entry | None:
    for entry in entries:
        if entry.matches(test_id):
            return entry
    return None
