"""Per-task accounting: step counts and times per task, opt-in (ferroloop only).

asyncio has no such API, so these tests use ferroloop loops directly. They
assert counts, names and which tasks are listed; no assertion depends on how
fast the machine is.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time
import weakref

import ferroloop.health as fh
import pytest


@pytest.fixture
def tracking():
    before = fh.track_tasks()
    fh.track_tasks(True)
    yield
    fh.track_tasks(before)


async def _yields(n):
    for _ in range(n):
        await asyncio.sleep(0)


def _by_name(records):
    return {r.name: r for r in records}


def test_steps_are_counted_per_task(hloop, tracking):
    async def main():
        a = asyncio.create_task(_yields(3), name="three")
        b = asyncio.create_task(_yields(7), name="seven")
        await asyncio.gather(a, b)
        return fh.top_tasks(hloop, 10)

    got = _by_name(hloop.run_until_complete(main()))
    # A coroutine that yields n times takes n + 1 steps.
    assert got["three"].steps == 4 and got["seven"].steps == 8
    assert got["three"].coro == "_yields" and got["three"].done
    for r in got.values():
        assert isinstance(r, fh.TaskRecord)
        assert r.total >= r.max_step >= 0


def test_busiest_task_comes_first_and_n_limits(hloop, tracking):
    async def busy():
        for _ in range(5):
            time.sleep(0.002)
            await asyncio.sleep(0)

    async def main():
        tasks = [asyncio.create_task(_yields(1), name=f"idle{i}") for i in range(5)]
        tasks.append(asyncio.create_task(busy(), name="busy"))
        await asyncio.gather(*tasks)
        return fh.top_tasks(hloop, 3), fh.top_tasks(hloop, 100)

    top3, every = hloop.run_until_complete(main())
    assert len(top3) == 3 and top3[0].name == "busy"
    assert [r.total for r in every] == sorted((r.total for r in every), reverse=True)


def test_off_counts_nothing(hloop):
    assert fh.track_tasks(False) is False
    hloop.run_until_complete(_yields(3))
    assert fh.top_tasks(hloop) == []


def test_dead_tasks_are_not_kept_alive(hloop, tracking):
    refs = []

    async def main():
        for _ in range(50):
            t = asyncio.create_task(_yields(1))
            refs.append(weakref.ref(t))
            await t

    hloop.run_until_complete(main())
    gc.collect()
    assert all(r() is None for r in refs)
    names = {r.name for r in fh.top_tasks(hloop, 1000)}
    assert len(names) <= 1  # at most the main task, while run_until_complete keeps it


def test_many_short_lived_tasks_leave_only_live_ones(hloop, tracking):
    async def main():
        for _ in range(5):
            await asyncio.gather(*(asyncio.create_task(_yields(1)) for _ in range(1500)))
        keep = asyncio.create_task(_yields(1), name="kept")
        await keep
        gc.collect()
        return keep, fh.top_tasks(hloop, 100_000)

    keep, rows = hloop.run_until_complete(main())
    assert "kept" in {r.name for r in rows}
    assert len(rows) < 10


def test_debug_mode_and_python_tasks_are_counted(hloop, tracking):
    hloop.set_debug(True)
    hloop.set_task_factory(
        lambda loop, coro, **kw: asyncio.tasks._PyTask(coro, loop=loop, **kw)  # type: ignore[attr-defined]
    )

    async def main():
        t = hloop.create_task(_yields(2), name="py")
        await t
        return fh.top_tasks(hloop)

    got = _by_name(hloop.run_until_complete(main()))
    assert got["py"].steps == 3


def test_c_task_in_debug_mode_is_counted(hloop, tracking):
    hloop.set_debug(True)

    async def main():
        await asyncio.create_task(_yields(2), name="c")
        return fh.top_tasks(hloop)

    assert _by_name(hloop.run_until_complete(main()))["c"].steps == 3


def test_hooks_and_tracking_together(hloop, tracking):
    seen = []
    fh.set_hooks(on_callback=lambda loop, what, s: seen.append(what))
    try:
        hloop.run_until_complete(asyncio.ensure_future(_yields(2), loop=hloop))
    finally:
        fh.set_hooks()
    assert seen
    assert sum(r.steps for r in fh.top_tasks(hloop)) >= 3


@pytest.mark.parametrize("bad", [0, -1, 10**9])
def test_bad_counts_raise_value_error(hloop, bad):
    with pytest.raises(ValueError, match="between 1 and"):
        fh.top_tasks(hloop, bad)


@pytest.mark.parametrize("bad", [1.5, float("nan"), True, "3", None])
def test_bad_count_types_raise_type_error(hloop, bad):
    with pytest.raises(TypeError):
        fh.top_tasks(hloop, bad)


def test_bad_arguments():
    with pytest.raises(TypeError):
        fh.track_tasks("yes")  # type: ignore[arg-type]
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match="ferroloop loop"):
            fh.top_tasks(other)
    finally:
        other.close()


def test_close_forgets_tasks(hloop, tracking):
    async def main():
        t = asyncio.create_task(_yields(1), name="t")
        await t
        return t

    t = hloop.run_until_complete(main())
    assert fh.top_tasks(hloop)
    hloop.close()
    assert fh.top_tasks(hloop) == []
    del t


def test_env_var_turns_tracking_on():
    code = "import ferroloop.health as h; print(h.track_tasks())"
    env = {**os.environ, "FERROLOOP_TRACK_TASKS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr
    env["FERROLOOP_TRACK_TASKS"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_step_time_covers_the_step(hloop, tracking):
    async def sleeper():
        time.sleep(0.05)
        await asyncio.sleep(0)

    async def main():
        await asyncio.create_task(sleeper(), name="sleeper")
        return _by_name(fh.top_tasks(hloop))["sleeper"]

    r = hloop.run_until_complete(main())
    assert r.steps == 2 and r.total >= r.max_step >= 0.05


def test_time_between_runs_is_not_counted_with_tracking_on(hloop, tracking):
    walls = []
    for _ in range(2):
        t0 = time.monotonic()
        hloop.run_until_complete(_yields(50))
        walls.append(time.monotonic() - t0)
        time.sleep(0.1)  # stopped: neither idle nor active
    snap = hloop.health()
    assert snap.idle + snap.active <= sum(walls)
    assert snap.callbacks >= 100


def test_a_look_alike_step_method_is_not_listed(hloop, tracking):
    class NotATask:
        def __step(self):
            pass

    obj = NotATask()
    hloop.call_soon(obj._NotATask__step)
    hloop.run_until_complete(asyncio.sleep(0))
    assert all(r.name != "NotATask" for r in fh.top_tasks(hloop))
    del obj


def test_switching_tracking_off_and_on_keeps_the_loop_times_right(hloop):
    walls = []
    try:
        for on in (True, False, True, False, True):
            fh.track_tasks(on)
            t0 = time.monotonic()
            hloop.run_until_complete(_yields(20))
            walls.append(time.monotonic() - t0)
            time.sleep(0.05)  # stopped: neither idle nor active
    finally:
        fh.track_tasks(False)
    snap = hloop.health()
    assert snap.idle + snap.active <= sum(walls)


def test_switching_inside_a_step(hloop):
    async def switcher():
        fh.track_tasks(False)
        await asyncio.sleep(0)
        fh.track_tasks(True)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    fh.track_tasks(True)
    task = asyncio.ensure_future(switcher(), loop=hloop)
    try:
        hloop.run_until_complete(task)
    finally:
        fh.track_tasks(False)
    assert fh.top_tasks(hloop)[0].steps >= 2  # steps run while on: the first, the last two
