"""Small helpers shared by the test files (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import re
import sys
import threading

PY311 = sys.version_info >= (3, 11)
PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)
PY314 = sys.version_info >= (3, 14)

# Generous hang guard for one scenario; never a timing assertion.
GUARD_S = 10.0

_ADDR = re.compile(r"0x[0-9a-fA-F]+")


def run(loop, coro, timeout: float = GUARD_S):
    """Run ``coro`` to completion on ``loop``, failing instead of hanging."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def run_forever_guarded(loop, timeout: float = GUARD_S) -> None:
    """``loop.run_forever()`` that asserts it was stopped by the test, not by the guard.

    The guard is a thread (not a timer on the loop) so that it does not change what the loop
    has scheduled; it uses call_soon_threadsafe, which wakes the loop.
    """
    fired = threading.Event()
    done = threading.Event()

    def guard():
        if not done.wait(timeout):
            fired.set()
            loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=guard, daemon=True)
    thread.start()
    try:
        loop.run_forever()
    finally:
        done.set()
        thread.join()
    assert not fired.is_set(), f"run_forever() was only stopped by the {timeout}s hang guard"


def lineno() -> int:
    """The caller's current line number (use on the same line as the call under test)."""
    return sys._getframe(1).f_lineno


def noaddr(text: str) -> str:
    """``text`` with memory addresses replaced, so two runs can be compared."""
    return _ADDR.sub("0x?", text)
