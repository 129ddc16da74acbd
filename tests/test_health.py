"""Loop health: snapshots, deltas and blame for a blocked loop (ferroloop only).

asyncio has no health API, so these tests use ferroloop loops directly. They
assert structure, counters that only grow, and what the reports name; no
assertion depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import threading
import time

import ferroloop
import ferroloop.health as fh
import pytest


@pytest.fixture
def reports():
    got: list[fh.BlockReport] = []
    fh.on_block(got.append)
    yield got
    fh.on_block(None)
    fh.set_block_threshold(fh.DEFAULT_BLOCK_THRESHOLD)


def _sleep_blocking(seconds):
    time.sleep(seconds)  # the line blame must name


SLEEP_LINE = f"{__file__}:{_sleep_blocking.__code__.co_firstlineno + 1}"


def test_snapshot_structure(hloop):
    snap = hloop.health()
    assert isinstance(snap, fh.HealthSnapshot)
    for lag in (snap.timer_lag, snap.ready_wait):
        assert isinstance(lag, fh.LagStats)
        assert lag.count == 0 and lag.p50 == lag.p99 == lag.max == 0.0
    assert snap.iterations == snap.callbacks == snap.io_events == 0
    assert snap.utilization == 0.0
    assert snap.recording is True
    assert ferroloop.health(hloop) == snap or ferroloop.health(hloop).iterations == 0


def test_counters_grow_and_lag_is_recorded(hloop):
    async def main():
        for _ in range(5):
            await asyncio.sleep(0.001)
        hloop.call_soon(lambda: None)
        await asyncio.sleep(0)
        return hloop.health()

    first = hloop.health()
    during = hloop.run_until_complete(main())
    after = hloop.health()
    assert during.ready_depth >= 0 and after.ready_depth == 0
    assert after.timers_pending == 0
    for name in ("iterations", "callbacks", "io_events"):
        assert getattr(first, name) <= getattr(during, name) <= getattr(after, name)
    assert after.timer_lag.count >= 5
    lag = after.timer_lag
    assert 0.0 <= lag.p50 <= lag.p90 <= lag.p99 <= lag.max
    assert after.ready_wait.count >= 1
    assert after.idle > 0.0 and after.active > 0.0
    assert 0.0 < after.utilization < 1.0


def test_delta_covers_only_the_window(hloop):
    hloop.run_until_complete(asyncio.sleep(0.001))
    s1 = hloop.health()
    hloop.run_until_complete(asyncio.sleep(0.001))
    s2 = hloop.health()
    d = s2 - s1
    assert d == s2.since(s1)
    assert d.iterations == s2.iterations - s1.iterations > 0
    assert d.callbacks == s2.callbacks - s1.callbacks > 0
    assert d.timer_lag.count == s2.timer_lag.count - s1.timer_lag.count >= 1
    assert math.isclose(d.idle + d.active, (s2.idle + s2.active) - (s1.idle + s1.active))
    assert (s2 - s2).timer_lag.count == 0


def test_callback_only_iterations_are_sampled(hloop):
    """A stretch of iterations that neither poll nor have timers (a sleep(0) loop) counts every
    iteration and callback, and measures the ready wait of a sample of its batches."""

    async def spin(n):
        for _ in range(n):
            await asyncio.sleep(0)

    hloop.run_until_complete(spin(10))
    s1 = hloop.health()
    hloop.run_until_complete(spin(3200))
    d = hloop.health() - s1
    assert d.iterations >= 3200 and d.callbacks >= 3200
    assert 3200 // 32 <= d.ready_wait.count < 3200  # about one batch in 16
    assert 0.0 <= d.ready_wait.p50 <= d.ready_wait.max < 1.0
    assert d.active > 0.0


def test_fds_watched_counts_readers(hloop):
    r, w = os.pipe()
    try:
        hloop.add_reader(r, lambda: None)
        assert hloop.health().fds_watched == 1
        hloop.remove_reader(r)
        assert hloop.health().fds_watched == 0
    finally:
        os.close(r)
        os.close(w)


def test_health_needs_a_ferroloop_loop():
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError):
            ferroloop.health(loop)
    finally:
        loop.close()


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf"), float("-inf")])
def test_bad_thresholds_raise(bad):
    with pytest.raises(ValueError, match="block threshold"):
        fh.set_block_threshold(bad)
    assert fh.get_block_threshold() == fh.DEFAULT_BLOCK_THRESHOLD


def test_threshold_per_loop(hloop, reports):
    fh.set_block_threshold(0.25, hloop)
    assert fh.get_block_threshold(hloop) == 0.25
    assert fh.get_block_threshold() == fh.DEFAULT_BLOCK_THRESHOLD
    with pytest.raises(TypeError):
        fh.set_block_threshold("1")


def test_blocking_sleep_is_blamed_with_file_and_line(hloop, reports, caplog):
    fh.set_block_threshold(0.1)
    caplog.set_level(logging.INFO, logger="ferroloop.health")

    async def main():
        await asyncio.sleep(0)
        _sleep_blocking(0.5)

    hloop.run_until_complete(hloop.create_task(main(), name="sleeper"))
    blocked = [r for r in reports if r.kind == "blocked"]
    recovered = [r for r in reports if r.kind == "recovered"]
    assert len(blocked) == 1 and len(recovered) == 1
    report = blocked[0]
    assert report.sampled and report.location == SLEEP_LINE
    assert SLEEP_LINE.split(":")[0] in report.stack
    assert report.task == "sleeper"
    assert report.coroutines and report.coroutines[0].startswith("test_blocking_sleep_is_blamed")
    assert report.loop is hloop
    assert recovered[0].seconds >= report.seconds > 0
    text = caplog.text
    assert SLEEP_LINE in text
    assert "recovered" in text


def _gil_hog(n):
    sum(range(n))  # one C call that never releases the GIL


def test_call_holding_the_gil_is_reported_when_it_returns(hloop, reports):
    fh.set_block_threshold(0.1)
    n = 1_000_000
    t0 = time.perf_counter()
    _gil_hog(n)
    n = int(n * 0.5 / max(time.perf_counter() - t0, 1e-6))  # about half a second

    async def main():
        await asyncio.sleep(0.05)
        hloop.call_soon(_gil_hog, n)
        await asyncio.sleep(0.01)

    hloop.run_until_complete(main())
    assert [r.kind for r in reports] == ["blocked", "recovered"]
    assert all("_gil_hog" in (r.handle or r.stack) for r in reports)
    assert reports[1].seconds >= 0.1


def test_threshold_zero_turns_blame_off(hloop, reports):
    fh.set_block_threshold(0)
    hloop.call_soon(_sleep_blocking, 0.3)
    hloop.run_until_complete(asyncio.sleep(0))
    assert reports == []


def test_raising_callback_is_logged_and_dropped(hloop, caplog):
    calls = []

    def bad(report):
        calls.append(report)
        raise RuntimeError("boom")

    fh.on_block(bad)
    fh.set_block_threshold(0.1)
    try:
        caplog.set_level(logging.INFO, logger="ferroloop.health")
        hloop.call_soon(_sleep_blocking, 0.4)
        hloop.run_until_complete(asyncio.sleep(0))
    finally:
        fh.on_block(None)
        fh.set_block_threshold(fh.DEFAULT_BLOCK_THRESHOLD)
    assert len(calls) == 1
    assert "boom" in caplog.text


def test_close_after_block_does_not_hang_and_watchdog_stops(reports):
    loop = ferroloop.new_event_loop()
    done = threading.Event()

    def run():
        loop.call_soon(_sleep_blocking, 0.3)
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        done.set()

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert done.is_set()
    watchdog = fh._thread
    if watchdog is not None:
        watchdog.join(10)
        assert not watchdog.is_alive()
    assert any(r.kind == "blocked" for r in reports)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_starts_clean(hloop):
    hloop.run_until_complete(asyncio.sleep(0))
    assert fh._watches
    pid = os.fork()
    if pid == 0:  # the child: no watched loops, no watchdog, and a loop still works
        code = 1
        try:
            ok = not fh._watches and fh._thread is None
            child = ferroloop.new_event_loop()
            child.run_until_complete(asyncio.sleep(0))
            ok = ok and child.health().iterations > 0
            child.close()
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_module_is_callable():
    assert callable(ferroloop.health)
    assert ferroloop.health is sys.modules["ferroloop.health"]


def test_hooks_see_each_callback_and_slow_ones(hloop):
    seen, slow = [], []
    fh.set_hooks(
        on_callback=lambda loop, what, s: seen.append((loop, what, s)),
        on_slow_callback=lambda loop, what, s: slow.append(what),
        slow_callback_duration=0.05,
    )
    try:
        hloop.call_soon(_sleep_blocking, 0.1)
        hloop.call_soon(hloop.stop)
        hloop.run_forever()
    finally:
        fh.set_hooks()
    assert len(seen) >= 2 and all(loop is hloop and s >= 0 for loop, _, s in seen)
    assert len(slow) == 1 and "_sleep_blocking" in repr(slow[0])
    before = len(seen)
    hloop.run_until_complete(asyncio.sleep(0))
    assert len(seen) == before  # removed: no more calls


def test_raising_hook_is_logged_and_removed(hloop, caplog):
    calls = []

    def bad(loop, what, seconds):
        calls.append(what)
        raise RuntimeError("hook boom")

    fh.set_hooks(on_callback=bad)
    try:
        hloop.run_until_complete(asyncio.sleep(0))
    finally:
        fh.set_hooks()
    assert len(calls) == 1
    assert "hook boom" in caplog.text
    with pytest.raises(ValueError):
        fh.set_hooks(on_callback=bad, slow_callback_duration=-1)


def _read_from_thread(loop, after):
    """Starts a thread that takes ``loop``'s snapshot ``after`` seconds from now."""
    got = []
    t = threading.Thread(target=lambda: (time.sleep(after), got.append(fh.health(loop))))
    t.start()
    return t, got


def test_snapshot_from_another_thread_counts_the_poll_in_progress_as_idle(hloop):
    async def main():
        before = hloop.health()
        t, got = _read_from_thread(hloop, 1.5)
        await asyncio.sleep(2)
        t.join()
        return before, got[0], hloop.health()

    before, during, after = hloop.run_until_complete(main())
    assert during.utilization < 0.05
    window = during - before
    assert window.utilization < 0.05 and window.idle > 1.0
    # Later readings go on from it: the totals never go back.
    assert after.idle >= during.idle and after.active >= during.active
    assert (after - during).idle > 0.3
    text = fh.prometheus(hloop)
    idle = next(line for line in text.splitlines() if line.startswith("ferroloop_idle_seconds"))
    assert float(idle.rsplit(" ", 1)[1]) >= during.idle


def test_snapshot_from_another_thread_sees_a_blocking_callback_and_a_late_timer(hloop):
    async def main():
        hloop.call_later(0.2, lambda: None)
        before = hloop.health()
        t, got = _read_from_thread(hloop, 1.5)
        _sleep_blocking(2)
        t.join()
        await asyncio.sleep(0.01)  # the late timer runs meanwhile
        return before, got[0], hloop.health()

    before, during, after = hloop.run_until_complete(main())
    window = during - before
    assert window.utilization > 0.95 and window.active > 1.0
    assert during.timer_overdue > 1.0  # due at 0.2 s, not run at 1.5 s
    assert window.timer_overdue == during.timer_overdue  # a current value
    assert after.timer_overdue == 0.0
    assert after.timer_lag.max > 1.5  # and recorded once it ran


def test_timer_overdue_counts_a_timer_queued_behind_a_blocking_callback(hloop):
    got = []

    def block():
        t, seen = _read_from_thread(hloop, 0.6)
        _sleep_blocking(0.8)
        t.join()
        got.extend(seen)

    async def main():
        hloop.call_later(0.05, block)
        hloop.call_later(0.06, lambda: None)  # moved to the ready queue with it
        await asyncio.sleep(1.2)

    hloop.run_until_complete(main())
    assert got[0].timer_overdue > 0.4


_FORK_IN_LOOP = """
import asyncio, os, sys, threading
async def main():
    await asyncio.sleep(0.05)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    await asyncio.sleep(0.05)
    print(sorted(t.name for t in threading.enumerate() if t.name.startswith("ferroloop")))
if sys.argv[1] == "ferroloop":
    import ferroloop
    ferroloop.run(main())
else:
    asyncio.run(main())
"""


@pytest.mark.parametrize("kind", ["asyncio", "ferroloop"])
def test_fork_from_a_running_loop_is_single_threaded(kind):
    """3.12+ warns when a process with several threads forks: the health watchdog's threads
    end before os.fork() and start again in the parent, so a program that forks from a
    coroutine forks as on asyncio (no warning), and keeps its watchdog."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", _FORK_IN_LOOP, kind],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    expected = "['ferroloop-health']" if kind == "ferroloop" else "[]"
    assert proc.stdout.strip() == expected


def test_no_watchdog_thread_while_no_loop_runs():
    """Between runs (and once every loop is closed) ferroloop keeps no thread of its own:
    the watchdog ends when the last running loop stops and starts again with the next run."""
    lp = ferroloop.new_event_loop()
    try:
        names = []

        async def main():
            names.append([t.name for t in threading.enumerate()])

        lp.run_until_complete(main())
        assert "ferroloop-health" in names[0]
        for _ in range(500):
            if all(t.name != "ferroloop-health" for t in threading.enumerate()):
                break
            time.sleep(0.01)
        assert all(t.name != "ferroloop-health" for t in threading.enumerate())
        names.clear()
        lp.run_until_complete(main())
        assert "ferroloop-health" in names[0]
    finally:
        lp.close()
