"""ferroloop.testing: a loop on a virtual clock (ferroloop only; asyncio has none).

The oracle here is the schedule itself: on a virtual clock every timer fires at exactly its
deadline, in the order a real loop (asyncio's or ferroloop's) fires the same schedule.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from _support import PY311

ferroloop = pytest.importorskip("ferroloop", reason="ferroloop is not importable (not built yet?)")
from ferroloop import testing  # noqa: E402


def test_an_hour_a_timeout_and_ten_thousand_timers():
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(3600)
        after_sleep = loop.time() - t0
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(100), 30)
        after_timeout = loop.time() - t0
        fired = []
        for i in range(10_000):
            loop.call_later(i * 0.001, lambda i=i: fired.append((i, loop.time())))
        await asyncio.sleep(10)
        return t0, after_sleep, after_timeout, fired

    real0 = time.monotonic()
    t0, after_sleep, after_timeout, fired = testing.run(main())
    assert after_sleep == 3600
    assert after_timeout == 3630
    assert [i for i, _ in fired] == list(range(10_000))
    base = t0 + 3630
    assert all(when == pytest.approx(base + i * 0.001, abs=1e-6) for i, when in fired)
    assert time.monotonic() - real0 < 600  # it did not wait for real


def test_starts_at_the_given_time():
    loop = testing.new_event_loop(start=42.0)
    try:
        assert loop.time() == 42.0
        assert loop.run_until_complete(asyncio.sleep(8, result="x")) == "x"
        assert loop.time() == 50.0
        assert isinstance(loop, ferroloop.Loop)
        assert loop.autojump is True
        assert loop.autojump_threshold == 0.0
    finally:
        loop.close()


def test_default_start():
    loop = testing.new_event_loop()
    try:
        assert loop.time() == testing.START
    finally:
        loop.close()


def test_advance_by_hand():
    loop = testing.new_event_loop(autojump=False, start=0.0)
    fired = []
    try:
        loop.call_later(10, lambda: fired.append(("a", loop.time())))
        loop.call_later(3, lambda: fired.append(("b", loop.time())))
        loop.call_at(7, lambda: fired.append(("c", loop.time())))

        async def step(seconds):
            loop.advance(seconds)
            await asyncio.sleep(0)
            await asyncio.sleep(0)

        loop.run_until_complete(step(2))
        assert fired == []
        loop.run_until_complete(step(6))  # 8: b and c are due, in deadline order
        assert fired == [("b", 8.0), ("c", 8.0)]
        assert loop.jump_to(5) == 8.0  # never backwards
        with pytest.raises(ValueError):
            loop.advance(-1)
        loop.run_until_complete(step(100))
        assert fired[-1] == ("a", 108.0)
    finally:
        loop.close()


def test_advance_from_another_thread_wakes_the_loop():
    loop = testing.new_event_loop(autojump=False, start=0.0)

    async def main():
        threading.Timer(0.05, loop.advance, (60,)).start()
        await asyncio.sleep(60)
        return loop.time()

    try:
        assert loop.run_until_complete(main()) == 60.0
    finally:
        loop.close()


def test_autojump_can_be_switched():
    loop = testing.new_event_loop(autojump=False, start=0.0)
    try:
        loop.autojump = True
        loop.autojump_threshold = 0.001
        assert (loop.autojump, loop.autojump_threshold) == (True, 0.001)
        loop.run_until_complete(asyncio.sleep(5))
        assert loop.time() == 5.0
        with pytest.raises(ValueError):
            loop.autojump_threshold = -1
    finally:
        loop.close()


def test_real_loop_has_no_virtual_clock():
    loop = ferroloop.new_event_loop()
    try:
        assert loop._virtual_clock() is None
        with pytest.raises(RuntimeError):
            loop._virtual_clock_move(seconds=1)
    finally:
        loop.close()


def test_io_keeps_working_and_is_seen_before_a_jump():
    """A reply that is ready when the loop would jump is read first: no timeout fires."""

    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=a)
        got = []

        def echo():
            data = b.recv(100)
            b.send(data.upper())

        loop.add_reader(b.fileno(), echo)
        for word in (b"one", b"two", b"three"):
            writer.write(word)
            got.append(await asyncio.wait_for(reader.read(100), 5))
        loop.remove_reader(b.fileno())
        writer.close()
        await writer.wait_closed()
        b.close()
        return got, loop.time()

    got, now = testing.run(main(), start=0.0)
    assert got == [b"ONE", b"TWO", b"THREE"]
    assert now == 0.0  # nothing had to wait: the clock never moved


def test_threshold_waits_for_a_thread():
    """With a threshold, a reply from a thread arrives before a virtual timeout fires."""

    async def main():
        loop = asyncio.get_running_loop()
        result = await asyncio.wait_for(loop.run_in_executor(None, time.sleep, 0.05), 10)
        return result, loop.time()

    assert testing.run(main(), start=0.0, autojump_threshold=0.5) == (None, 0.0)


@pytest.mark.skipif(not PY311, reason="asyncio.timeout and TaskGroup are 3.11+")
def test_timeouts_and_task_groups_follow_the_clock():
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        results = []

        async def worker(n):
            await asyncio.sleep(n)
            results.append((n, loop.time() - t0))

        async with asyncio.TaskGroup() as tg:
            for n in (30, 10, 20):
                tg.create_task(worker(n))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(15):
                await asyncio.sleep(3600)
        cond = asyncio.Condition()
        async with cond:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(cond.wait(), 5)
        return results, loop.time() - t0

    assert testing.run(main()) == ([(10, 10.0), (20, 20.0), (30, 30.0)], 50.0)


def _schedule(seed: int, n: int = 120):
    """A random schedule of timers (call_at, relative to the start), cancellations of later
    timers from inside callbacks, and tasks that sleep until given offsets. Offsets are whole
    milliseconds, all distinct, so the deadline order is the firing order."""
    rnd = random.Random(seed)
    offsets = rnd.sample(range(1, 400), n)
    plan = []
    for i, off in enumerate(offsets):
        kind = rnd.choice(("timer", "timer", "cancel", "task"))
        plan.append((i, kind, off / 1000, rnd.randrange(n)))
    return plan


async def _run_schedule(plan):
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    log = []
    handles = {}

    def fire(i, kind, target):
        log.append((i, round(loop.time() - t0, 6)))
        if kind == "cancel" and target in handles:
            handles[target].cancel()

    async def sleeper(i, off):
        await asyncio.sleep(off / 2)
        await asyncio.sleep(max(0.0, t0 + off - loop.time()))
        log.append((i, round(loop.time() - t0, 6)))

    tasks = []
    for i, kind, off, target in plan:
        if kind == "task":
            tasks.append(asyncio.ensure_future(sleeper(i, off)))
        else:
            handles[i] = loop.call_at(t0 + off, fire, i, kind, target)
    await asyncio.sleep(0.45)
    await asyncio.gather(*tasks)
    return log


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_schedule_same_order_as_real_time(loop, seed):
    """Property: the same schedule fires in the same order on a real loop (asyncio's and
    ferroloop's) as on the virtual clock, and on the virtual clock at exactly its times."""
    plan = _schedule(seed)
    virtual = testing.run(_run_schedule(plan), start=0.0)
    real = loop.run_until_complete(_run_schedule(plan))
    # Timer callbacks fire in deadline order on every loop. A task resumes one step after its
    # timer, so a late real loop may run a later timer first: tasks are compared as a set.
    timers = {i for i, kind, _, _ in plan if kind != "task"}
    assert [i for i, _ in virtual if i in timers] == [i for i, _ in real if i in timers]
    assert sorted(i for i, _ in virtual) == sorted(i for i, _ in real)
    planned = {i: off for i, _, off, _ in plan}
    for i, when in virtual:  # on the virtual clock, each at exactly its time
        assert when == pytest.approx(planned[i], abs=1e-6)
    assert testing.run(_run_schedule(plan), start=0.0) == virtual  # deterministic


def test_health_and_debug_keep_real_time(caplog):
    """A callback that moves the virtual clock by an hour is not slow in real time."""
    loop = testing.new_event_loop(start=0.0, autojump=False)
    loop.set_debug(True)
    loop.slow_callback_duration = 0.5
    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            loop.call_soon(loop.advance, 3600)
            loop.run_until_complete(asyncio.sleep(0))
        assert loop.time() == 3600.0
        assert not [r for r in caplog.records if "took" in r.getMessage()]
        assert abs(time.monotonic() - loop.time()) > 1  # the clocks differ
    finally:
        loop.close()


# -- the pytest plugin ------------------------------------------------------------------------

_PLUGIN_TESTS = """
import asyncio
import pytest

@pytest.mark.virtual_time(start=0.0)
async def test_marked_coroutine():
    await asyncio.sleep(3600)
    assert asyncio.get_running_loop().time() == 3600.0

@pytest.mark.virtual_time(start=5.0, autojump=False)
def test_virtual_loop_fixture(virtual_loop):
    virtual_loop.call_later(10, virtual_loop.stop)
    virtual_loop.advance(10)
    virtual_loop.run_forever()
    assert virtual_loop.time() == 15.0

def test_factory_fixture(virtual_time_loop_factory):
    with asyncio.Runner(loop_factory=virtual_time_loop_factory) as runner:
        runner.run(asyncio.sleep(30))
        assert runner.get_loop().time() >= 30.0
"""

_ASYNCIO_TESTS = """
import asyncio
import pytest
from ferroloop.testing import START

@pytest.mark.asyncio
@pytest.mark.virtual_time
async def test_on_pytest_asyncio():
    await asyncio.wait_for(asyncio.sleep(10), 60)
    assert asyncio.get_running_loop().time() == START + 10

@pytest.mark.asyncio
async def test_unmarked_is_real():
    assert abs(asyncio.get_running_loop().time() - __import__("time").monotonic()) < 5
"""

_ANYIO_TESTS = """
import anyio
import pytest
import ferroloop.testing

@pytest.fixture
def anyio_backend():
    return ("asyncio", {"loop_factory": ferroloop.testing.loop_factory(start=0.0)})

@pytest.mark.anyio
async def test_on_anyio():
    with anyio.move_on_after(30):
        await anyio.sleep(3600)
    assert anyio.current_time() == 30.0
"""


def _pytest_in(tmp_path, files: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(not PY311, reason="asyncio.Runner is 3.11+")
def test_pytest_plugin(tmp_path):
    proc = _pytest_in(tmp_path, {"test_plugin.py": _PLUGIN_TESTS})
    assert "3 passed" in proc.stdout, proc.stdout + proc.stderr


def test_pytest_asyncio(tmp_path):
    pytest_asyncio = pytest.importorskip("pytest_asyncio")
    version = tuple(int(x) for x in pytest_asyncio.__version__.split(".")[:2])
    if version < (1, 4):
        pytest.skip("pytest-asyncio's loop-factory hook is 1.4+")
    conftest = "from ferroloop.testing import pytest_asyncio_loop_factories  # noqa: F401\n"
    proc = _pytest_in(
        tmp_path,
        {"conftest.py": conftest, "test_pa.py": _ASYNCIO_TESTS},
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    assert "2 passed" in proc.stdout, proc.stdout + proc.stderr


def test_anyio(tmp_path):
    pytest.importorskip("anyio")
    proc = _pytest_in(tmp_path, {"test_any.py": _ANYIO_TESTS})
    assert "1 passed" in proc.stdout, proc.stdout + proc.stderr


def test_plugin_is_inert(tmp_path):
    """Loaded but unused, the plugin changes nothing (no fixture, no loop)."""
    plain = "def test_x(request):\n    assert 'virtual_loop' not in request.fixturenames\n"
    proc = _pytest_in(tmp_path, {"test_plain.py": plain})
    assert "1 passed" in proc.stdout, proc.stdout + proc.stderr
