"""add_signal_handler / remove_signal_handler, and SIGINT without a handler."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time

import pytest
from _support import PY311, run, run_forever_guarded


@pytest.fixture(autouse=True)
def _restore_signals():
    """Every test leaves SIGUSR1/SIGUSR2/SIGINT and the wakeup fd as it found them."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)}
    if saved[signal.SIGINT] is signal.SIG_IGN:
        # Started as a background job, which ignores SIGINT: Python then leaves it ignored.
        # Give each test the handler an interactive start installs.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    wakeup_before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_before)
    yield  # runs after the loop fixture's teardown (autouse fixtures are set up first)
    problems = []
    if saved[signal.SIGINT] is signal.SIG_IGN and signal.getsignal(signal.SIGINT) is (
        signal.default_int_handler
    ):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig, handler in saved.items():
        if signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)
            problems.append(f"{sig!r} handler was left changed")
    wakeup_after = signal.set_wakeup_fd(wakeup_before)
    if wakeup_after != wakeup_before:
        problems.append(f"signal wakeup fd left as {wakeup_after} (was {wakeup_before})")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def _kill_later(sig, delay=0.05, target_main=False):
    """Send ``sig`` to this process (or the main thread) from a thread after ``delay``."""

    def fire():
        time.sleep(delay)
        if target_main:
            signal.pthread_kill(threading.main_thread().ident, sig)
        else:
            os.kill(os.getpid(), sig)

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    return thread


def test_signal_handler_called_with_args(loop):
    got = []
    fut = loop.create_future()

    def handler(*args):
        got.append(args)
        fut.set_result(None)

    loop.add_signal_handler(signal.SIGUSR1, handler, "a", 1)
    assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    run(loop, fut)
    assert got == [("a", 1)]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_signal_wakes_sleeping_loop(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, lambda: (got.append("sig"), loop.stop()))
    thread = None

    def start():
        nonlocal thread
        thread = _kill_later(signal.SIGUSR1)

    loop.call_soon(start)
    run_forever_guarded(loop)
    thread.join()
    assert got == ["sig"]
    loop.remove_signal_handler(signal.SIGUSR1)


def test_signal_handler_replaced(loop):
    got = []
    fut = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR2, got.append, "old")
    loop.add_signal_handler(signal.SIGUSR2, lambda: (got.append("new"), fut.set_result(None)))
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR2)
    run(loop, fut)
    assert got == ["new"]
    assert loop.remove_signal_handler(signal.SIGUSR2) is True


def test_signal_handler_error_goes_to_handler(loop, exc_calls):
    fut = loop.create_future()

    def handler():
        loop.call_soon(fut.set_result, None)
        raise ValueError("in signal handler")

    loop.add_signal_handler(signal.SIGUSR1, handler)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    run(loop, fut)
    assert len(exc_calls) == 1
    ctx = exc_calls.pop()
    assert type(ctx["exception"]) is ValueError
    assert ctx["message"].startswith("Exception in callback ")
    loop.remove_signal_handler(signal.SIGUSR1)


def test_remove_returns_bool(loop):
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    loop.add_signal_handler(signal.SIGUSR1, print)
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert loop.remove_signal_handler(signal.SIGKILL) is False


def test_remove_sigint_restores_default_int_handler(loop):
    loop.add_signal_handler(signal.SIGINT, print)
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert loop.remove_signal_handler(signal.SIGINT) is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_close_removes_signal_handlers(loop_factory):
    lp = loop_factory()
    lp.add_signal_handler(signal.SIGUSR1, print)
    lp.add_signal_handler(signal.SIGUSR2, print)
    lp.close()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
    assert lp.remove_signal_handler(signal.SIGUSR1) is False


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["add_signal_handler", "remove_signal_handler"])
@pytest.mark.parametrize(
    ("sig", "exc", "message"),
    [
        (0, ValueError, "invalid signal number 0"),
        (65, ValueError, "invalid signal number 65"),
        (-1, ValueError, "invalid signal number -1"),
        ("x", TypeError, "sig must be an int, not 'x'"),
        (None, TypeError, "sig must be an int, not None"),
        (1.0, TypeError, "sig must be an int, not 1.0"),
    ],
)
def test_invalid_signal(loop, method, sig, exc, message):
    args = (sig, print) if method == "add_signal_handler" else (sig,)
    with pytest.raises(exc) as info:
        getattr(loop, method)(*args)
    assert str(info.value) == message


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_uncatchable_signal(loop, sig):
    with pytest.raises(RuntimeError) as info:
        loop.add_signal_handler(sig, print)
    assert str(info.value) == f"sig {int(sig)} cannot be caught"
    assert loop.remove_signal_handler(sig) is False


async def _coro_fn():
    pass


def test_coroutine_callback_rejected(loop):
    msg = r"^coroutines cannot be used with add_signal_handler\(\)$"
    with pytest.raises(TypeError, match=msg):
        loop.add_signal_handler(signal.SIGUSR1, _coro_fn)
    coro = _coro_fn()
    try:
        with pytest.raises(TypeError, match=msg):
            loop.add_signal_handler(signal.SIGUSR1, coro)
    finally:
        coro.close()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
        loop.add_signal_handler(signal.SIGUSR1, print)
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_not_main_thread(loop_factory, loop):
    """set_wakeup_fd() only works in the main thread: asyncio turns that into RuntimeError."""
    results = []

    def worker():
        for lp in (loop, None):
            own = lp is None
            if own:
                lp = loop_factory()
            try:
                lp.add_signal_handler(signal.SIGUSR1, print)
            except BaseException as exc:  # noqa: BLE001 - recorded and checked below
                results.append((type(exc), str(exc)))
            else:
                results.append(None)
            finally:
                if own:
                    lp.close()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert len(results) == 2
    for kind, message in results:
        assert kind is RuntimeError
        assert "main thread" in message
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


# -- SIGINT ----------------------------------------------------------------------------------------


def test_sigint_without_handler_interrupts_sleeping_loop(loop):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    guard_fired = []
    guard = loop.call_later(10, lambda: (guard_fired.append(True), loop.stop()))
    thread = None

    def start():
        nonlocal thread
        thread = _kill_later(signal.SIGINT, target_main=True)

    loop.call_soon(start)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    thread.join()
    guard.cancel()
    assert guard_fired == []
    assert not loop.is_running()
    # the loop is still usable
    assert run(loop, asyncio.sleep(0, "ok")) == "ok"


def test_sigint_with_handler_runs_handler(loop):
    got = []
    loop.add_signal_handler(signal.SIGINT, lambda: (got.append("int"), loop.stop()))
    thread = None

    def start():
        nonlocal thread
        thread = _kill_later(signal.SIGINT, target_main=True)

    loop.call_soon(start)
    run_forever_guarded(loop)
    thread.join()
    assert got == ["int"]
    assert loop.remove_signal_handler(signal.SIGINT) is True


@pytest.mark.skipif(not PY311, reason="asyncio.Runner added in 3.11")
def test_runner_cancels_main_task_on_sigint(loop_factory):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    seen = []

    async def main():
        _kill_later(signal.SIGINT, target_main=True)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        with pytest.raises(KeyboardInterrupt):
            runner.run(main())
        seen.append(type(runner.get_loop()).__name__)
    assert seen[0] == "cancelled"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.skipif(sys.platform != "linux", reason="Linux signal numbers")
def test_realtime_signal(loop):
    sig = signal.SIGRTMIN
    fut = loop.create_future()
    saved = signal.getsignal(sig)
    loop.add_signal_handler(sig, fut.set_result, "rt")
    loop.call_soon(os.kill, os.getpid(), sig)
    assert run(loop, fut) == "rt"
    assert loop.remove_signal_handler(sig) is True
    assert signal.getsignal(sig) is signal.SIG_DFL
    signal.signal(sig, saved)
