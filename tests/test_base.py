"""Loop lifecycle: run_forever / run_until_complete / stop / close, and what they set up."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import re
import sys
import threading

import pytest
from _support import PY312, PY313, run, run_forever_guarded

# -- run_forever / stop ------------------------------------------------------------------------


def test_stop_before_run_runs_one_iteration(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.call_soon(lambda: loop.call_soon(out.append, "next"))
    loop.stop()
    loop.run_forever()
    assert out == [1]
    # The callback scheduled during that iteration runs on the next run.
    loop.stop()
    loop.run_forever()
    assert out == [1, "next"]


def test_stop_inside_callback_finishes_the_batch(loop):
    out = []
    loop.call_soon(out.append, "a")
    loop.call_soon(loop.stop)
    loop.call_soon(out.append, "b")
    run_forever_guarded(loop)
    assert out == ["a", "b"]
    assert not loop.is_running()


def test_run_forever_can_run_again(loop):
    for _ in range(3):
        loop.call_soon(loop.stop)
        run_forever_guarded(loop)
        assert not loop.is_running()
        assert not loop.is_closed()


def test_is_running_inside_and_outside(loop):
    seen = []

    def cb():
        seen.append(loop.is_running())
        loop.stop()

    assert not loop.is_running()
    loop.call_soon(cb)
    run_forever_guarded(loop)
    assert seen == [True]
    assert not loop.is_running()


# Each nested attempt gets its own run: on 3.13.0 a refused nested run_forever() also resets the
# outer loop's running state (CPython gh-130145, fixed later), which no test should depend on.


@pytest.mark.parametrize("method", ["run_forever", "run_until_complete"])
def test_run_while_running(loop, method):
    errors = []

    def cb():
        try:
            if method == "run_forever":
                loop.run_forever()
            else:
                loop.run_until_complete(fut)
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    fut = loop.create_future()
    loop.call_soon(cb)
    run_forever_guarded(loop)
    assert errors == ["This event loop is already running"]


def test_run_while_another_loop_is_running(loop, ref_loop):
    """Each loop refuses to run inside the other (asyncio checks the thread's running loop)."""
    errors = []

    def attempt(outer, inner):
        def cb():
            try:
                inner.run_forever()
            except RuntimeError as exc:
                errors.append(str(exc))
            outer.stop()

        outer.call_soon(cb)
        run_forever_guarded(outer)

    attempt(loop, ref_loop)
    attempt(ref_loop, loop)
    assert errors == ["Cannot run the event loop while another loop is running"] * 2


# -- run_until_complete ------------------------------------------------------------------------


def test_run_until_complete_coroutine(loop):
    async def main(x):
        await asyncio.sleep(0)
        return x * 2

    assert loop.run_until_complete(main(21)) == 42


def test_run_until_complete_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "done")
    assert loop.run_until_complete(fut) == "done"


def test_run_until_complete_task_and_awaitable(loop):
    class Awaitable:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "awaited"

    async def main():
        return "task"

    assert loop.run_until_complete(loop.create_task(main())) == "task"
    assert loop.run_until_complete(Awaitable()) == "awaited"


def test_run_until_complete_raises_exception(loop):
    async def main():
        await asyncio.sleep(0)
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError, match="boom"):
        loop.run_until_complete(main())


def test_run_until_complete_cancelled_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.cancel)
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(fut)


def test_run_until_complete_other_loops_future(loop, ref_loop):
    with pytest.raises(ValueError, match="The future belongs to a different loop"):
        loop.run_until_complete(ref_loop.create_future())
    with pytest.raises(ValueError, match="The future belongs to a different loop"):
        ref_loop.run_until_complete(loop.create_future())


def test_run_until_complete_not_awaitable(loop):
    with pytest.raises(TypeError, match="An asyncio.Future, a coroutine or an awaitable"):
        loop.run_until_complete(42)


def test_run_until_complete_stops_when_future_done(loop):
    """Other callbacks keep the loop busy; it still returns once the future is done."""
    ticks = []

    def spin():
        ticks.append(1)
        loop.call_soon(spin)

    loop.call_soon(spin)
    fut = loop.create_future()
    loop.call_later(0.01, fut.set_result, "ok")
    assert run(loop, asyncio.shield(fut)) == "ok"
    assert not loop.is_running()
    assert ticks


def test_run_until_complete_done_future_runs_one_iteration(loop):
    out = []
    fut = loop.create_future()
    fut.set_result("already")
    loop.call_soon(out.append, 1)
    assert loop.run_until_complete(fut) == "already"
    assert out == [1]


def test_stop_before_run_until_complete(loop):
    async def one_step():
        return "finished in the first iteration"

    loop.stop()
    assert loop.run_until_complete(one_step()) == "finished in the first iteration"
    fut = loop.create_future()
    loop.stop()
    with pytest.raises(RuntimeError, match=r"^Event loop stopped before Future completed\.$"):
        loop.run_until_complete(fut)
    fut.cancel()


def test_is_running_seen_from_other_thread(loop):
    seen = []

    def worker():
        seen.append(loop.is_running())
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=worker)
    loop.call_soon(thread.start)
    run_forever_guarded(loop)
    thread.join()
    assert seen == [True]
    assert not loop.is_running()


def test_run_until_complete_stopped_before_done(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match=r"^Event loop stopped before Future completed\.$"):
        loop.run_until_complete(fut)
    fut.cancel()


def test_run_until_complete_base_exception_leaves_loop(loop):
    async def main():
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(main())
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_a_task_loses_no_queued_step(loop, ref_loop, exc_type):
    # Task steps and wake-ups queued behind the one that raises stay queued, in order.
    def scenario(lp):
        order = []

        async def worker(i):
            for step in range(3):
                order.append((i, step))
                await asyncio.sleep(0)

        async def interrupter():
            await asyncio.sleep(0)
            order.append("raise")
            raise exc_type

        workers = [lp.create_task(worker(i)) for i in range(3)]
        bad = lp.create_task(interrupter())
        with pytest.raises(exc_type):
            lp.run_until_complete(bad)
        assert isinstance(bad.exception(), exc_type)
        lp.run_until_complete(asyncio.gather(*workers))
        return order

    order = scenario(loop)
    assert order == scenario(ref_loop)
    assert sorted(x for x in order if x != "raise") == [(i, s) for i in range(3) for s in range(3)]


# -- close -------------------------------------------------------------------------------------


def test_close_and_is_closed(loop):
    assert not loop.is_closed()
    loop.close()
    assert loop.is_closed()
    loop.close()  # idempotent
    assert loop.is_closed()


def _open_fds() -> list[str]:
    return sorted(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_close_releases_descriptors_at_once(loop_factory):
    # asyncio's close() closes its selector and self-pipe there and then, not when the loop
    # object goes away (the test keeps it alive).
    gc.collect()
    before = _open_fds()
    lp = loop_factory()
    try:
        assert lp.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
        assert len(_open_fds()) > len(before)
    finally:
        lp.close()
    assert _open_fds() == before
    # The closed loop stays safe to use: it refuses, or answers as asyncio's does.
    with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
        lp.call_soon_threadsafe(print)
    with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
        lp.add_reader(0, print)
    assert lp.remove_reader(0) is False and lp.remove_writer(0) is False
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
        lp.run_until_complete(coro)
    coro.close()
    lp.close()
    assert _open_fds() == before


def test_closed_loop_refuses_to_run(loop):
    loop.close()
    with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
        loop.run_forever()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
        loop.run_until_complete(coro)
    coro.close()


def test_cannot_close_running_loop(loop):
    errors = []

    def cb():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(cb)
    run_forever_guarded(loop)
    assert errors == ["Cannot close a running event loop"]
    assert not loop.is_closed()


def test_close_drops_pending_callbacks(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.call_later(0, out.append, 2)
    loop.close()
    assert out == []


class RecordingExecutor(concurrent.futures.ThreadPoolExecutor):
    def __init__(self):
        super().__init__(max_workers=1)
        self.shutdowns = []

    def shutdown(self, wait=True, *, cancel_futures=False):
        self.shutdowns.append(wait)
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


def test_close_shuts_down_default_executor_without_waiting(loop):
    executor = RecordingExecutor()
    loop.set_default_executor(executor)
    assert run(loop, loop.run_in_executor(None, sum, [1, 2])) == 3
    loop.close()
    assert executor.shutdowns == [False]
    executor.shutdown(wait=True)


def test_repr(loop):
    name = type(loop).__name__
    debug = loop.get_debug()
    assert repr(loop) == f"<{name} running=False closed=False debug={debug}>"
    seen = []
    loop.call_soon(lambda: (seen.append(repr(loop)), loop.stop()))
    run_forever_guarded(loop)
    assert seen == [f"<{name} running=True closed=False debug={debug}>"]
    loop.close()
    assert repr(loop) == f"<{name} running=False closed=True debug={debug}>"


# -- what a running loop sets up ----------------------------------------------------------------


def test_get_running_loop_and_current_task(loop):
    seen = {}

    def callback():
        seen["cb_loop"] = asyncio.get_running_loop()
        seen["cb_task"] = asyncio.current_task()
        seen["cb_event_loop"] = asyncio.get_event_loop()

    async def main():
        loop.call_soon(callback)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return asyncio.get_running_loop(), asyncio.current_task()

    task = loop.create_task(main())
    running, current = run(loop, task)
    assert running is loop
    assert current is task
    assert seen == {"cb_loop": loop, "cb_task": None, "cb_event_loop": loop}
    with pytest.raises(RuntimeError, match="no running event loop"):
        asyncio.get_running_loop()
    assert asyncio.current_task(loop) is None


def test_running_loop_reset_after_exception(loop):
    def cb():
        raise SystemExit(3)

    loop.call_soon(cb)
    with pytest.raises(SystemExit):
        loop.run_forever()
    with pytest.raises(RuntimeError, match="no running event loop"):
        asyncio.get_running_loop()
    assert not loop.is_running()


def test_asyncgen_hooks_installed_and_restored(loop):
    before = sys.get_asyncgen_hooks()

    async def main():
        return sys.get_asyncgen_hooks()

    inside = run(loop, main())
    assert inside.firstiter is not None and inside.finalizer is not None
    assert inside != before
    assert sys.get_asyncgen_hooks() == before


async def _agen(log, fail=False):
    try:
        yield 1
        yield 2
    finally:
        log.append("closed")
        if fail:
            raise ValueError("bad aclose")


def test_shutdown_asyncgens_closes_unfinished(loop):
    log = []
    gen = _agen(log)

    async def first():
        return await gen.__anext__()

    assert run(loop, first()) == 1
    assert log == []
    run(loop, loop.shutdown_asyncgens())
    assert log == ["closed"]


def test_shutdown_asyncgens_error_goes_to_handler(loop, exc_calls):
    log = []
    gen = _agen(log, fail=True)

    async def first():
        return await gen.__anext__()

    run(loop, first())
    run(loop, loop.shutdown_asyncgens())
    assert log == ["closed"]
    assert len(exc_calls) == 1
    ctx = exc_calls.pop()
    assert ctx["message"] == (f"an error occurred during closing of asynchronous generator {gen!r}")
    assert type(ctx["exception"]) is ValueError
    assert ctx["asyncgen"] is gen


def test_asyncgen_after_shutdown_warns(loop):
    run(loop, loop.shutdown_asyncgens())
    gen = _agen([])

    async def first():
        return await gen.__anext__()

    with pytest.warns(ResourceWarning, match=r"was scheduled after loop\.shutdown_asyncgens\(\)"):
        run(loop, first())
    run(loop, gen.aclose())


def test_asyncgen_finalizer_closes_dropped_generator(loop):
    log = []

    async def main():
        gen = _agen(log)
        await gen.__anext__()
        del gen  # the finalizer hook schedules aclose() on the loop
        for _ in range(50):
            if log:
                break
            await asyncio.sleep(0)
        return list(log)

    assert run(loop, main()) == ["closed"]


# -- default executor shutdown ------------------------------------------------------------------


def test_shutdown_default_executor(loop):
    assert run(loop, loop.run_in_executor(None, pow, 2, 10)) == 1024
    run(loop, loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, pow, 2, 3)


def test_shutdown_default_executor_without_executor(loop):
    run(loop, loop.shutdown_default_executor())
    run(loop, loop.shutdown_default_executor())


@pytest.mark.skipif(not PY312, reason="timeout= added in 3.12")
def test_shutdown_default_executor_timeout_accepted(loop):
    assert run(loop, loop.run_in_executor(None, abs, -1)) == 1
    run(loop, loop.shutdown_default_executor(timeout=5))


@pytest.mark.skipif(PY312, reason="3.12+ accepts timeout=")
def test_shutdown_default_executor_no_timeout_before_312(loop):
    with pytest.raises(TypeError):
        loop.shutdown_default_executor(timeout=5)


@pytest.mark.skipif(not PY313, reason="3.13 stops waiting after timeout (3.12 awaits the join)")
def test_shutdown_default_executor_timeout_warns(loop):
    release = threading.Event()
    started = threading.Event()

    def blocker():
        started.set()
        release.wait(10)

    blocked = loop.run_in_executor(None, blocker)
    assert started.wait(10)
    try:
        with pytest.warns(
            RuntimeWarning, match=r"did not finishing joining its threads within 0\.01"
        ):
            run(loop, loop.shutdown_default_executor(timeout=0.01))
    finally:
        release.set()
    run(loop, blocked)


# -- garbage -----------------------------------------------------------------------------------


def test_unclosed_loop_resource_warning(loop_factory):
    lp = loop_factory()
    text = repr(lp)
    with pytest.warns(ResourceWarning, match=re.escape(f"unclosed event loop {text}")):
        del lp
        gc.collect()
