"""run_in_executor and the default executor."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest
from _support import PY311, run


def test_run_in_default_executor(loop):
    main_thread = threading.get_ident()

    def work(a, b):
        return a + b, threading.get_ident()

    fut = loop.run_in_executor(None, work, 2, 3)
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    result, thread = run(loop, fut)
    assert result == 5
    assert thread != main_thread


def test_run_in_executor_exception(loop):
    def fail():
        raise KeyError("from executor")

    with pytest.raises(KeyError, match="from executor"):
        run(loop, loop.run_in_executor(None, fail))


def test_run_in_custom_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="custom-pool"
    ) as executor:
        name = run(loop, loop.run_in_executor(executor, lambda: threading.current_thread().name))
    assert name.startswith("custom-pool")


def test_default_executor_is_reused(loop):
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mine")
    loop.set_default_executor(executor)
    try:
        names = run(
            loop,
            asyncio.gather(
                *(
                    loop.run_in_executor(None, lambda: threading.current_thread().name)
                    for _ in range(3)
                )
            ),
        )
        assert all(n.startswith("mine") for n in names)
    finally:
        executor.shutdown(wait=True)


def test_many_executor_jobs(loop):
    async def main():
        return await asyncio.gather(*(loop.run_in_executor(None, pow, i, 2) for i in range(200)))

    assert run(loop, main()) == [i * i for i in range(200)]


def test_cancel_executor_future(loop):
    release = threading.Event()
    started = threading.Event()

    def blocker():
        started.set()
        release.wait(10)
        return "finished"

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        first = loop.run_in_executor(executor, blocker)
        queued = loop.run_in_executor(executor, lambda: "never")
        assert started.wait(10)
        queued.cancel()
        release.set()
        assert run(loop, first) == "finished"
        run(loop, asyncio.sleep(0.01))
        assert queued.cancelled()


class _NotAThreadPool(concurrent.futures.Executor):
    def submit(self, fn, *args, **kwargs):
        fut = concurrent.futures.Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


@pytest.mark.skipif(not PY311, reason="3.10 only warns (DeprecationWarning)")
def test_set_default_executor_type_check(loop):
    with pytest.raises(TypeError, match=r"^executor must be ThreadPoolExecutor instance$"):
        loop.set_default_executor(_NotAThreadPool())
    with pytest.raises(TypeError, match=r"^executor must be ThreadPoolExecutor instance$"):
        loop.set_default_executor(None)


@pytest.mark.skipif(PY311, reason="3.11+ raises TypeError")
def test_set_default_executor_type_check_warns_310(loop):
    with pytest.warns(DeprecationWarning, match="not an instance of ThreadPoolExecutor"):
        loop.set_default_executor(_NotAThreadPool())
    assert run(loop, loop.run_in_executor(None, abs, -3)) == 3


def test_shutdown_default_executor_then_custom_still_works(loop):
    run(loop, loop.run_in_executor(None, abs, -1))
    run(loop, loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match=r"^Executor shutdown has been called$"):
        loop.run_in_executor(None, abs, -1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        assert run(loop, loop.run_in_executor(executor, abs, -2)) == 2


def test_shutdown_default_executor_waits_for_jobs(loop):
    done = []
    started = threading.Event()

    def job():
        started.set()
        threading.Event().wait(0.05)
        done.append(True)

    fut = loop.run_in_executor(None, job)
    assert started.wait(10)
    run(loop, loop.shutdown_default_executor())
    assert done == [True]
    run(loop, fut)


def test_shutdown_executor_closed(loop):
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    executor.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        loop.run_in_executor(executor, abs, -1)


def test_run_in_executor_on_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
        loop.run_in_executor(None, abs, -1)


async def _coro_fn():
    pass


def test_run_in_executor_coroutine_function_debug(loop):
    loop.set_debug(True)
    with pytest.raises(TypeError, match=r"^coroutines cannot be used with run_in_executor\(\)$"):
        loop.run_in_executor(None, _coro_fn)
    with pytest.raises(TypeError, match=r"^a callable object was expected by run_in_executor\(\)"):
        loop.run_in_executor(None, 1)


def test_run_in_executor_non_callable_without_debug(loop):
    loop.set_debug(False)
    with pytest.raises(TypeError, match="'int' object is not callable"):
        run(loop, loop.run_in_executor(None, 1))
