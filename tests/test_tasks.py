"""Futures and tasks on the loop: create_future/create_task, task factories, asyncio helpers."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import re

import pytest
from _support import PY311, PY312, PY314, noaddr, run

# -- create_future / create_task -----------------------------------------------------------------


def test_create_future_is_asyncio_future(loop):
    fut = loop.create_future()
    assert type(fut) is asyncio.Future
    assert fut.get_loop() is loop
    assert not fut.done()
    fut.cancel()


def test_create_task_is_asyncio_task(loop):
    async def main():
        return "result"

    task = loop.create_task(main())
    assert type(task) is asyncio.Task
    assert task.get_loop() is loop
    assert run(loop, task) == "result"


def test_create_task_names(loop):
    async def main():
        pass

    default = loop.create_task(main())
    named = loop.create_task(main(), name="worker")
    numbered = loop.create_task(main(), name=123)
    assert default.get_name().startswith("Task-")
    assert int(default.get_name()[len("Task-") :]) > 0
    assert named.get_name() == "worker"
    assert numbered.get_name() == "123"
    run(loop, asyncio.gather(default, named, numbered))


def test_create_task_rejects_non_coroutine(loop):
    with pytest.raises(TypeError, match="a coroutine was expected, got 1"):
        loop.create_task(1)


def test_create_task_on_closed_loop(loop):
    async def main():
        pass

    loop.close()
    coro = main()
    try:
        with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
            loop.create_task(coro)
    finally:
        coro.close()


_var = contextvars.ContextVar("_var", default="unset")


@pytest.mark.skipif(not PY311, reason="create_task(context=) added in 3.11")
def test_create_task_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(_var.set, "ctx")

    async def main():
        seen = _var.get()
        await asyncio.sleep(0)
        _var.set("changed")
        return seen

    assert run(loop, loop.create_task(main(), context=ctx)) == "ctx"
    assert ctx[_var] == "changed"
    assert _var.get() == "unset"


def test_task_default_context_is_copy(loop):
    async def main():
        _var.set("task")
        return _var.get()

    token = _var.set("caller")
    try:
        task = loop.create_task(main())
    finally:
        _var.reset(token)
    assert run(loop, task) == "task"
    assert _var.get() == "unset"


# -- task factories ------------------------------------------------------------------------------


def test_set_task_factory_validation(loop):
    assert loop.get_task_factory() is None
    with pytest.raises(TypeError, match=r"^task factory must be a callable or None$"):
        loop.set_task_factory(1)
    assert loop.get_task_factory() is None


def _factory_scenario(lp):
    """What a custom factory receives and what the task ends up named, for both loops."""
    calls = []

    class MyTask(asyncio.Task):
        pass

    def factory(loop, coro, **kwargs):
        calls.append((loop is lp, sorted(kwargs)))
        return MyTask(coro, loop=loop, **kwargs)

    async def main():
        return asyncio.current_task()

    lp.set_task_factory(factory)
    assert lp.get_task_factory() is factory
    tasks = [lp.create_task(main()), lp.create_task(main(), name="named")]
    if PY311:
        tasks.append(lp.create_task(main(), context=contextvars.copy_context()))
        tasks.append(lp.create_task(main(), name="both", context=contextvars.copy_context()))
    results = lp.run_until_complete(asyncio.gather(*tasks))
    names = [t.get_name() if t.get_name() in ("named", "both", "None") else "Task-N" for t in tasks]
    lp.set_task_factory(None)
    assert lp.get_task_factory() is None
    return {
        "calls": calls,
        "types": [type(t).__name__ for t in tasks],
        "current_is_task": [r is t for r, t in zip(results, tasks, strict=True)],
        "names": names,
    }


def test_custom_task_factory_matches_asyncio(loop, ref_loop):
    mine, ref = _factory_scenario(loop), _factory_scenario(ref_loop)
    assert mine == ref
    assert mine["types"][0] == "MyTask"


def test_asyncio_create_task_uses_factory(loop):
    used = []

    def factory(lp, coro, **kwargs):
        used.append(kwargs)
        return asyncio.Task(coro, loop=lp, **kwargs)

    async def child():
        return 1

    async def main():
        return await asyncio.create_task(child())

    loop.set_task_factory(factory)
    assert run(loop, main()) == 1
    assert len(used) >= 2  # the main task and the child


@pytest.mark.skipif(not PY312, reason="eager tasks added in 3.12")
def test_eager_task_factory(loop):
    loop.set_task_factory(asyncio.eager_task_factory)
    assert loop.get_task_factory() is asyncio.eager_task_factory
    order = []

    async def quick():
        order.append("quick ran")
        return asyncio.current_task()

    async def slow():
        order.append("slow started")
        await asyncio.sleep(0)
        order.append("slow finished")
        return "slow"

    async def main():
        t1 = loop.create_task(quick(), name="eager-quick")
        order.append("after quick")
        assert t1.done() and t1.result() is t1
        t2 = asyncio.create_task(slow())
        order.append("after slow")
        assert not t2.done()
        return t1.get_name(), await t2

    assert run(loop, main()) == ("eager-quick", "slow")
    assert order == ["quick ran", "after quick", "slow started", "after slow", "slow finished"]


@pytest.mark.skipif(not PY312, reason="eager tasks added in 3.12")
def test_eager_task_factory_context(loop):
    loop.set_task_factory(asyncio.eager_task_factory)
    ctx = contextvars.copy_context()
    ctx.run(_var.set, "eager-ctx")

    async def read():
        return _var.get()

    async def main():
        return loop.create_task(read(), context=ctx).result()

    assert run(loop, main()) == "eager-ctx"


@pytest.mark.skipif(not PY312, reason="eager tasks added in 3.12")
def test_create_eager_task_factory_custom_class(loop):
    class MyTask(asyncio.Task):
        pass

    loop.set_task_factory(asyncio.create_eager_task_factory(MyTask))

    async def quick():
        return 5

    async def main():
        t = loop.create_task(quick())
        return type(t), t.done(), await t

    assert run(loop, main()) == (MyTask, True, 5)


# -- asyncio helpers running on the loop ---------------------------------------------------------


def test_gather(loop):
    async def item(i):
        await asyncio.sleep(0.001 * (5 - i))
        return i

    async def bad():
        raise ValueError("bad")

    async def main():
        ok = await asyncio.gather(*(item(i) for i in range(5)))
        mixed = await asyncio.gather(item(1), bad(), return_exceptions=True)
        return ok, mixed

    ok, mixed = run(loop, main())
    assert ok == [0, 1, 2, 3, 4]
    assert mixed[0] == 1 and type(mixed[1]) is ValueError


def test_current_task_and_all_tasks(loop):
    async def sleeper(fut):
        await fut

    async def main():
        me = asyncio.current_task()
        fut = loop.create_future()
        other = loop.create_task(sleeper(fut))
        await asyncio.sleep(0)
        tasks = asyncio.all_tasks()
        fut.set_result(None)
        await other
        return me, other, tasks

    task = loop.create_task(main())
    me, other, tasks = loop.run_until_complete(task)  # no wait_for(): it adds a task on 3.11
    assert me is task
    assert tasks == {task, other}
    assert asyncio.all_tasks(loop) == set()


def test_task_cancel(loop):
    seen = []

    async def victim():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError as exc:
            seen.append(exc.args)
            raise

    async def main():
        t = loop.create_task(victim())
        await asyncio.sleep(0)
        t.cancel("stop it")
        with pytest.raises(asyncio.CancelledError):
            await t
        return t.cancelled()

    assert run(loop, main()) is True
    assert seen == [("stop it",)]


async def _sleep_until_cancelled(cancelled: list) -> None:
    """Sleeps long; records its cancellation in ``cancelled`` and lets it propagate."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        cancelled.append(True)
        raise


@pytest.mark.skipif(not PY311, reason="TaskGroup added in 3.11")
def test_task_group(loop):
    cancelled = []

    async def ok(i):
        await asyncio.sleep(0)
        return i

    async def fail():
        await asyncio.sleep(0.001)
        raise ValueError("in group")

    async def main():
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(ok(i)) for i in range(3)]
        results = [t.result() for t in tasks]
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_sleep_until_cancelled(cancelled))
                tg.create_task(fail())
        except ExceptionGroup as eg:  # noqa: F821 - builtin on 3.11+ (the test skips on 3.10)
            errors = [str(e) for e in eg.exceptions]
        return results, errors

    assert run(loop, main()) == ([0, 1, 2], ["in group"])
    assert cancelled == [True]


def test_wait_for_timeout(loop):
    cancelled = []

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_sleep_until_cancelled(cancelled), 0.01)
        return await asyncio.wait_for(asyncio.sleep(0, "fast"), 10)

    assert run(loop, main()) == "fast"
    assert cancelled == [True]


@pytest.mark.skipif(not PY311, reason="asyncio.timeout added in 3.11")
def test_timeout_context_manager(loop):
    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01) as cm:
                await asyncio.sleep(10)
        assert cm.expired()
        async with asyncio.timeout_at(loop.time() + 10) as cm2:
            await asyncio.sleep(0)
        assert not cm2.expired()
        return cm.when() is not None

    assert run(loop, main()) is True


def test_sleep_result_and_order(loop):
    out = []

    async def sleeper(d):
        await asyncio.sleep(d)
        out.append(d)

    async def main():
        await asyncio.gather(*(sleeper(d) for d in (0.03, 0.01, 0.02, 0)))
        return await asyncio.sleep(0.001, result="value")

    assert run(loop, main()) == "value"
    assert out[0] == 0  # sleep(0) only yields once
    assert sorted(out) == [0, 0.01, 0.02, 0.03]


# -- errors that reach the exception handler -----------------------------------------------------


def test_unretrieved_task_exception_is_reported(loop, exc_calls):
    async def bad():
        raise ValueError("never retrieved")

    task = loop.create_task(bad())
    run(loop, asyncio.sleep(0.001))
    assert task.done()
    del task
    gc.collect()
    assert len(exc_calls) == 1
    ctx = exc_calls.pop()
    assert ctx["message"] == "Task exception was never retrieved"
    assert type(ctx["exception"]) is ValueError
    assert type(ctx["future"]) is asyncio.Task


def test_unretrieved_future_exception_is_reported(loop, exc_calls):
    fut = loop.create_future()
    fut.set_exception(KeyError("k"))
    del fut
    gc.collect()
    assert [c["message"] for c in exc_calls] == ["Future exception was never retrieved"]
    exc_calls.clear()


def test_pending_task_destroyed_is_reported(loop, exc_calls):
    async def waiter(fut):
        await fut

    fut = loop.create_future()
    task = loop.create_task(waiter(fut))
    run(loop, asyncio.sleep(0))
    assert not task.done()
    del task, fut
    gc.collect()
    assert [c["message"] for c in exc_calls] == ["Task was destroyed but it is pending!"]
    exc_calls.clear()


# -- the C Task's own callbacks ------------------------------------------------------------------


def _finished_task_step():
    """A step callable of a finished C Task, as the Task hands it to ``loop.call_soon``."""
    calls = []

    class StandIn:
        def get_debug(self):
            return False

        def call_soon(self, callback, *args, context=None):
            calls.append((callback, args, context))

    async def nothing():
        pass

    stand_in = StandIn()
    task = asyncio.Task(nothing(), loop=stand_in)
    ((step, args, context),) = calls
    # 3.14's C Task steps only on the loop registered as running.
    asyncio.events._set_running_loop(stand_in)
    try:
        step(*args)  # the task finishes
    finally:
        asyncio.events._set_running_loop(None)
    assert task.done()
    return step, context


def test_stale_task_step_is_reported_like_any_callback(loop, exc_calls, ref_loop, ref_exc_calls):
    # A step of a task that is done raises InvalidStateError (3.14: RuntimeError, the task's
    # loop not running): the exception handler gets it with a handle naming the callback, as
    # for any callback, and the loop goes on.
    for lp in (loop, ref_loop):
        step, context = _finished_task_step()
        lp.call_soon(step, context=context)
        assert run(lp, asyncio.sleep(0, "after")) == "after"
    ((mine,), (theirs,)) = (exc_calls, ref_exc_calls)
    assert type(mine["exception"]) is (RuntimeError if PY314 else asyncio.InvalidStateError)
    assert noaddr(mine["message"]) == noaddr(theirs["message"])
    unnamed = [re.sub(r"Task-\d+", "Task-?", noaddr(str(c["exception"]))) for c in (mine, theirs)]
    assert unnamed[0] == unnamed[1]
    assert noaddr(repr(mine["handle"])) == noaddr(repr(theirs["handle"]))
    assert sorted(mine) == sorted(theirs)
    exc_calls.clear()
    ref_exc_calls.clear()


def test_task_callbacks_are_queued_without_a_handle(loop, loop_kind, exc_calls):
    # ferroloop queues the C Task's own steps and wake-ups without a handle (the Task drops it
    # unread); docs/differences.md. In debug mode they get one, as elsewhere.
    if loop_kind != "ferroloop":
        pytest.skip("ferroloop's own difference")
    import ferroloop._loop

    assert ferroloop._loop.TASK_CALLBACKS_REGISTERED
    loop.set_debug(False)  # the suite also runs with PYTHONASYNCIODEBUG=1
    step, context = _finished_task_step()
    assert loop.call_soon(step, context=context) is None
    loop.call_soon(loop.stop)
    loop.set_debug(True)
    handle = loop.call_soon(step, context=context)
    assert handle is not None and not handle.cancelled()
    handle.cancel()
    loop.set_debug(False)
    loop.run_forever()  # runs the stale step queued without a handle, then stops
    stale = RuntimeError if PY314 else asyncio.InvalidStateError  # as in the test above
    assert [type(c["exception"]) for c in exc_calls] == [stale]
    assert type(exc_calls.pop()["handle"]).__name__ == "Handle"
    assert run(loop, asyncio.sleep(0, "still runs")) == "still runs"


@pytest.mark.skipif(not PY314, reason="create_task passes any keyword on to Task from 3.14")
def test_create_task_passes_keywords_on(loop):
    # 3.14: create_task(coro, **kwargs) hands every keyword to Task, or to the task factory.
    seen = []

    async def quick():
        return "done"

    def factory(lp, coro, **kwargs):
        seen.append(sorted(kwargs))
        return asyncio.Task(coro, loop=lp, **kwargs)

    async def main():
        eager = loop.create_task(quick(), eager_start=True, name="eager")
        assert eager.done()  # ran to completion inside create_task
        lazy = loop.create_task(quick(), eager_start=False)
        assert not lazy.done()
        loop.set_task_factory(factory)
        made = loop.create_task(quick(), name="made", eager_start=True)
        loop.set_task_factory(None)
        coro = quick()
        with pytest.raises(TypeError):
            loop.create_task(coro, no_such_keyword=1)
        coro.close()
        return eager.result(), await lazy, made.get_name(), made.done()

    assert run(loop, main()) == ("done", "done", "made", True)
    assert seen == [["eager_start", "name"]]
