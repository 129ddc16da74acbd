"""Debug mode: switching it, what turns it on, what it adds (sources, slow callbacks, checks)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import threading

import pytest
from _support import lineno, noaddr, run, run_forever_guarded

# -- switching -----------------------------------------------------------------------------------


def test_set_get_debug(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


@pytest.mark.parametrize("value", [1, 0, None, "yes", 2.5])
def test_set_debug_keeps_any_value(loop, value):
    # asyncio stores what it is given and only tests its truth.
    loop.set_debug(value)
    assert loop.get_debug() is value
    assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"


@pytest.mark.parametrize("value", [1, 0.25, "x", None])
def test_slow_callback_duration_keeps_the_value_given(loop, value):
    assert loop.slow_callback_duration == 0.1
    loop.set_debug(False)
    loop.slow_callback_duration = value
    assert loop.slow_callback_duration is value
    assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"  # unused out of debug mode


def test_slow_callback_duration_not_a_number_fails_in_debug(loop, ref_loop):
    # asyncio compares it with each callback's duration in debug mode.
    results = []
    for lp in (loop, ref_loop):
        lp.slow_callback_duration = "x"
        lp.set_debug(True)
        with pytest.raises(TypeError) as err:
            lp.run_until_complete(asyncio.sleep(0))
        results.append(str(err.value))
        lp.set_debug(False)
        lp.slow_callback_duration = 0.1
        assert lp.run_until_complete(asyncio.sleep(0, "again")) == "again"
    assert results[0] == results[1]


def test_default_follows_environment(loop_factory):
    lp = loop_factory()
    try:
        expected = sys.flags.dev_mode or (
            not sys.flags.ignore_environment and bool(os.environ.get("PYTHONASYNCIODEBUG"))
        )
        assert lp.get_debug() == expected
    finally:
        lp.close()


_SCRIPT = """
import asyncio, sys
if sys.argv[1] == "ferroloop":
    import ferroloop
    lp = ferroloop.new_event_loop()
else:
    lp = asyncio.SelectorEventLoop()
print(lp.get_debug())
lp.close()
"""


@pytest.mark.parametrize(
    ("flags", "env_value", "expected"),
    [
        ([], None, "False"),
        ([], "", "False"),
        ([], "1", "True"),
        (["-X", "dev"], None, "True"),
        (["-E"], "1", "False"),
    ],
    ids=["unset", "empty", "env", "devmode", "ignore-env"],
)
def test_debug_from_environment_subprocess(loop_kind, flags, env_value, expected):
    if loop_kind == "ferroloop":
        pytest.importorskip("ferroloop")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE")}
    if env_value is not None:
        env["PYTHONASYNCIODEBUG"] = env_value
    proc = subprocess.run(
        [sys.executable, *flags, "-c", _SCRIPT, loop_kind],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_coroutine_origin_tracking_while_running(loop):
    before = sys.get_coroutine_origin_tracking_depth()

    async def depth():
        return sys.get_coroutine_origin_tracking_depth()

    loop.set_debug(True)
    assert run(loop, depth()) == 10  # asyncio.constants.DEBUG_STACK_DEPTH
    assert sys.get_coroutine_origin_tracking_depth() == before
    loop.set_debug(False)
    assert run(loop, depth()) == before


# -- sources -------------------------------------------------------------------------------------


def _cb():
    pass


def test_handle_records_where_it_was_created(loop):
    loop.set_debug(True)
    made = [
        (loop.call_soon(_cb), lineno()),
        (loop.call_later(10, _cb), lineno()),
        (loop.call_at(loop.time() + 10, _cb), lineno()),
        (loop.call_soon_threadsafe(_cb), lineno()),
    ]
    for h, line in made:
        assert repr(h).endswith(f" created at {__file__}:{line}>"), repr(h)
        h.cancel()


def test_no_source_without_debug(loop):
    loop.set_debug(False)
    h = loop.call_soon(_cb)
    assert "created at" not in repr(h)
    h.cancel()


def test_task_records_where_it_was_created(loop):
    loop.set_debug(True)

    async def main():
        pass

    task, line = loop.create_task(main()), lineno()
    try:
        assert repr(task).endswith(f" created at {__file__}:{line}>")
    finally:
        run(loop, task)


def _source_log(lp, caplog, method):
    lp.set_exception_handler(None)
    caplog.clear()

    def boom():
        raise ValueError("boom")

    schedule = {
        "call_soon": lambda: lp.call_soon(boom),
        "call_later": lambda: lp.call_later(0, boom),
        "call_at": lambda: lp.call_at(lp.time(), boom),
        "call_soon_threadsafe": lambda: lp.call_soon_threadsafe(boom),
    }[method]
    schedule()
    lp.call_later(0.001, lp.stop)
    run_forever_guarded(lp)
    return [
        re.sub(r"when=[0-9.]+", "when=?", noaddr(r.getMessage()))
        for r in caplog.records
        if r.levelno >= logging.ERROR
    ]


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at", "call_soon_threadsafe"])
def test_source_traceback_in_log_matches_asyncio(loop, ref_loop, caplog, method):
    """The 'Object created at' stack has the frames asyncio shows (its depth limit included)."""
    caplog.set_level(logging.DEBUG, logger="asyncio")
    loop.set_debug(True)
    ref_loop.set_debug(True)
    logs = {}
    for name, lp in (("loop", loop), ("asyncio", ref_loop)):
        logs[name] = _source_log(lp, caplog, method)
    assert len(logs["asyncio"]) == 1
    assert "Object created at (most recent call last):" in logs["asyncio"][0]
    assert logs["loop"] == logs["asyncio"]


# -- slow callbacks ------------------------------------------------------------------------------


def _slow_cb():
    pass


def test_slow_callback_is_logged(loop, caplog):
    caplog.set_level(logging.WARNING, logger="asyncio")
    loop.set_debug(True)
    assert loop.slow_callback_duration == 0.1
    loop.slow_callback_duration = 0.0  # every callback counts as slow: no timing involved
    _, line = loop.call_soon(_slow_cb), lineno()
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    pattern = (
        rf"Executing <Handle _slow_cb\(\) at {re.escape(__file__)}:\d+ "
        rf"created at {re.escape(__file__)}:{line}> took \d+\.\d{{3}} seconds"
    )
    assert [m for m in messages if re.fullmatch(pattern, m)], messages
    assert all(
        r.levelno == logging.WARNING for r in caplog.records if "Executing" in r.getMessage()
    )


def test_slow_task_step_names_the_task(loop, caplog):
    caplog.set_level(logging.WARNING, logger="asyncio")
    loop.set_debug(True)
    loop.slow_callback_duration = 0.0

    async def slowtask():
        await asyncio.sleep(0)

    run(loop, loop.create_task(slowtask(), name="slowtask"))
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert [
        m
        for m in messages
        if m.startswith("Executing <Task ") and "name='slowtask'" in m and "slowtask()" in m
    ], messages


def test_no_slow_callback_log_without_debug(loop, caplog):
    caplog.set_level(logging.DEBUG, logger="asyncio")
    loop.set_debug(False)
    loop.slow_callback_duration = 0.0
    loop.call_soon(_slow_cb)
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert not [r for r in caplog.records if "Executing" in r.getMessage()]


def test_close_is_logged_in_debug(loop, caplog):
    caplog.set_level(logging.DEBUG, logger="asyncio")
    loop.set_debug(True)
    text = repr(loop)
    loop.close()
    assert f"Close {text}" in caplog.text  # formatted when emitted (the record holds the loop)


# -- thread checks -------------------------------------------------------------------------------


def test_non_threadsafe_call_from_other_thread_raises(loop):
    loop.set_debug(True)
    errors = {}

    def worker():
        for name, call in (
            ("call_soon", lambda: loop.call_soon(_cb)),
            ("call_later", lambda: loop.call_later(0, _cb)),
            ("call_at", lambda: loop.call_at(loop.time(), _cb)),
        ):
            try:
                call()
            except RuntimeError as exc:
                errors[name] = str(exc)
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=worker)
    loop.call_soon(thread.start)
    run_forever_guarded(loop)
    thread.join()
    msg = "Non-thread-safe operation invoked on an event loop other than the current one"
    assert errors == {"call_soon": msg, "call_later": msg, "call_at": msg}


def test_other_thread_may_schedule_while_loop_not_running(loop):
    loop.set_debug(True)
    out = []
    thread = threading.Thread(target=lambda: loop.call_soon(out.append, "from thread"))
    thread.start()
    thread.join()
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert out == ["from thread"]
