"""Shared fixtures: every behaviour test runs on stdlib asyncio (the oracle) and on ferroloop.

* ``loop``: a fresh loop of each kind (ids ``asyncio`` / ``ferroloop``). Its exception handler
  records every context; at teardown the test fails if any call was left unread. Tests that
  expect calls take ``exc_calls`` and empty it (``exc_calls.clear()`` / ``exc_calls.pop()``).
* ``ref_loop``: an extra stdlib loop with the same debug setting, for tests that compare what
  the loop under test does with what asyncio does in the same scenario (handle reprs, log text,
  version-specific quirks), so that the oracle is the running Python's own asyncio.
* ``loop_factory``: the loop class/factory itself, for tests that make loops themselves
  (``asyncio.Runner(loop_factory=...)``, loops in threads, gc tests).

The ferroloop parameter skips, naming the import error, when ``import ferroloop`` fails.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import signal
import socket
import sys
import threading

import pytest

try:
    import ferroloop
except Exception as exc:  # noqa: BLE001 - any import failure means "not built yet"
    ferroloop = None
    FERROLOOP_MISSING = f"ferroloop is not importable ({type(exc).__name__}: {exc})"
else:
    FERROLOOP_MISSING = ""

LOOP_KINDS = ["asyncio", "ferroloop"]

# A test that has not finished after HANG_GUARD_S seconds is failed from a SIGALRM handler (the
# exception is a SystemExit subclass so that neither loop swallows it in Handle._run); after
# HARD_HANG_S faulthandler dumps every thread and ends the run, so a wedged loop cannot stall CI.
HANG_GUARD_S = 30
HARD_HANG_S = 90


class HangGuardTimeout(SystemExit):
    """Raised in the main thread when a test hangs (see HANG_GUARD_S)."""


def stdlib_loop() -> asyncio.AbstractEventLoop:
    """The oracle: what ``asyncio.new_event_loop()`` gives under the default policy on Unix.

    Named directly so that a test that changes the policy cannot change the oracle.
    """
    return asyncio.SelectorEventLoop()


def _factory_for(kind: str):
    if kind == "asyncio":
        return stdlib_loop
    if ferroloop is None:
        pytest.skip(FERROLOOP_MISSING)
    return ferroloop.new_event_loop


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request) -> str:
    return request.param


@pytest.fixture
def loop_factory(loop_kind):
    """A zero-argument callable returning a new loop of the parametrised kind."""
    return _factory_for(loop_kind)


class _Recorder:
    """Exception handler that records contexts instead of logging them."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, loop, context) -> None:
        self.calls.append(context)


def _describe(calls: list[dict]) -> str:
    lines = []
    for ctx in calls:
        exc = ctx.get("exception")
        lines.append(f"  message={ctx.get('message')!r} exception={exc!r} keys={sorted(ctx)}")
    return "\n".join(lines)


def _make_checked_loop(factory):
    lp = factory()
    recorder = _Recorder()
    lp.set_exception_handler(recorder)
    return lp, recorder


def _finish_checked_loop(lp, recorder, what: str) -> None:
    problems = []
    if lp.is_running():
        problems.append(f"{what} is still running at teardown")
    else:
        # Let futures/tasks that died unretrieved report while the handler is still ours.
        gc.collect()
        lp.close()
    if recorder.calls:
        problems.append(
            f"unexpected call_exception_handler calls on {what}:\n{_describe(recorder.calls)}"
        )
        recorder.calls.clear()
    asyncio.set_event_loop(None)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def hloop():
    """A ferroloop loop alone (the health tests: a feature asyncio does not have)."""
    if ferroloop is None:
        pytest.skip(FERROLOOP_MISSING)
    loop = ferroloop.new_event_loop()
    yield loop
    if not loop.is_closed():
        loop.close()


@pytest.fixture
def _loop_and_recorder(loop_factory):
    lp, recorder = _make_checked_loop(loop_factory)
    yield lp, recorder
    _finish_checked_loop(lp, recorder, f"the loop under test ({type(lp).__name__})")


@pytest.fixture
def loop(_loop_and_recorder):
    """A new loop of each kind; fails the test on unread exception-handler calls."""
    return _loop_and_recorder[0]


@pytest.fixture
def exc_calls(_loop_and_recorder) -> list[dict]:
    """The contexts given to ``loop``'s exception handler; a test must empty it when done."""
    return _loop_and_recorder[1].calls


@pytest.fixture
def _ref_and_recorder(loop):
    lp, recorder = _make_checked_loop(stdlib_loop)
    lp.set_debug(loop.get_debug())
    yield lp, recorder
    _finish_checked_loop(lp, recorder, "the reference asyncio loop")


@pytest.fixture
def ref_loop(_ref_and_recorder):
    """A stdlib loop with ``loop``'s debug setting, to compare behaviour with in one test."""
    return _ref_and_recorder[0]


@pytest.fixture
def ref_exc_calls(_ref_and_recorder) -> list[dict]:
    """Like ``exc_calls``, for ``ref_loop``."""
    return _ref_and_recorder[1].calls


@pytest.fixture(autouse=True)
def _hang_guard(request):
    """Fail a hanging test instead of stalling the run (see HANG_GUARD_S)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or "conformance" in request.node.path.parts  # that suite has its own time limits
    ):
        yield
        return

    def on_alarm(signum, frame):
        raise HangGuardTimeout(f"test still running after {HANG_GUARD_S}s: hang guard fired")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_GUARD_S)
    faulthandler.dump_traceback_later(HARD_HANG_S, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pytest_report_header(config):
    where = FERROLOOP_MISSING or f"ferroloop {ferroloop.__version__} from {ferroloop.__file__}"
    return [f"loops: asyncio (stdlib {sys.version.split()[0]}), {where}"]


@pytest.fixture
def pair():
    """A connected, non-blocking socket pair, closed afterwards."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()
