"""Corners where a fault and fuzz run saw ferroloop differ from asyncio: threads left behind at
close, memory kept after collecting many handles, and a few API probes. Each scenario runs on both
loops (the child-interpreter ones once per loop kind) and asserts what asyncio does."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import LOOP_KINDS

_MAKE_LOOP = """
import asyncio, sys
def make_loop():
    if sys.argv[1] == "ferroloop":
        import ferroloop
        return ferroloop.new_event_loop()
    return asyncio.new_event_loop()
"""


def _child(kind: str, body: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs ``body`` (after ``_MAKE_LOOP``) in a fresh interpreter for loop ``kind``."""
    return subprocess.run(
        [sys.executable, "-c", _MAKE_LOOP + body, kind],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---- no thread left behind -------------------------------------------------------------

_THREADS_AFTER_CLOSE = """
import json, os, threading
async def main(n):
    for _ in range(n):
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await proc.wait()
def threads():
    return {"python": sorted(t.name for t in threading.enumerate()),
            "os": len(os.listdir("/proc/self/task"))}
loop = make_loop()
loop.run_until_complete(main(500))
loop.close()
after_one = threads()
# Two loops, one closed while the other still runs in a thread: the running one keeps
# whatever it needs; once both are closed nothing is left.
first, second = make_loop(), make_loop()
first.run_until_complete(main(1))
started, stop = threading.Event(), threading.Event()
def other():
    async def wait():
        started.set()
        while not stop.is_set():
            await asyncio.sleep(0.01)
    second.run_until_complete(wait())
t = threading.Thread(target=other, name="other")
t.start()
started.wait()
first.close()
stop.set()
t.join()
second.close()
print(json.dumps({"after_one": after_one, "after_two": threads()}))
"""


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_no_thread_left_once_every_loop_is_closed(kind):
    """After 500 children on a loop and its close() (and after two loops, one closed while the
    other ran), the process has only its main thread, by ``threading`` and by the OS."""
    proc = _child(kind, _THREADS_AFTER_CLOSE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    got = json.loads(proc.stdout)
    only_main = {"python": ["MainThread"], "os": 1}
    assert got == {"after_one": only_main, "after_two": only_main}
