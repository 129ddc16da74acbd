"""``python -m asyncio ps`` and ``pstree`` (3.14) on a running program, on both loops.

The tools read the C Tasks of another process from its memory; the oracle is what they show
for the same program run by asyncio.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
from _support import PY314

pytestmark = pytest.mark.skipif(not PY314, reason="python -m asyncio ps/pstree are 3.14+")

_PROGRAM = textwrap.dedent("""
    import asyncio, sys

    async def leaf(ev):
        await ev.wait()

    async def parent(ev):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(leaf(ev), name="leaf-task")

    async def main():
        ev = asyncio.Event()
        task = asyncio.create_task(parent(ev), name="parent-task")
        await asyncio.sleep(0.01)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        ev.set()
        await task

    if sys.argv[1] == "ferroloop":
        import ferroloop
        ferroloop.run(main())
    else:
        asyncio.run(main())
""")


def _tool_outputs(kind: str) -> dict[str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _PROGRAM, kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        out = {}
        for tool in ("ps", "pstree"):
            res = subprocess.run(
                [sys.executable, "-m", "asyncio", tool, str(proc.pid)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if res.returncode != 0 and "ermission" in res.stderr:
                pytest.skip(f"cannot read another process's memory here: {res.stderr.strip()}")
            assert res.returncode == 0, res.stderr
            out[tool] = res.stdout
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(60) == 0
        return out
    finally:
        proc.kill()
        proc.wait()


def _rows(table: str) -> list[str]:
    """The ps table without thread and task ids (which differ between runs)."""
    rows = []
    for line in table.splitlines()[2:]:
        line = re.sub(r"0x[0-9a-f]+", "ID", line)
        rows.append(" ".join(line.split()[1:]))
    return sorted(rows)


def test_ps_and_pstree_show_the_tasks_as_on_asyncio():
    mine, ref = _tool_outputs("ferroloop"), _tool_outputs("asyncio")
    assert _rows(mine["ps"]) == _rows(ref["ps"])
    assert "leaf-task" in mine["ps"] and "parent-task" in mine["ps"]
    assert mine["pstree"] == ref["pstree"]
