"""Exception handlers: set/get, what reaches them, and the default handler's log output."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging

import pytest
from _support import PY312, noaddr, run, run_forever_guarded

# -- set / get -----------------------------------------------------------------------------------


def test_default_handler_is_none(loop_factory):
    lp = loop_factory()
    try:
        assert lp.get_exception_handler() is None
    finally:
        lp.close()


def test_set_get_exception_handler(loop):
    def handler(lp, ctx):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


@pytest.mark.parametrize("bad", [1, "handler", object()])
def test_set_exception_handler_rejects_non_callable(loop, bad):
    before = loop.get_exception_handler()
    with pytest.raises(TypeError) as info:
        loop.set_exception_handler(bad)
    assert str(info.value) == f"A callable object or None is expected, got {bad!r}"
    assert loop.get_exception_handler() is before


# -- what reaches the handler --------------------------------------------------------------------


def test_handler_gets_loop_and_the_same_context(loop):
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append((lp, ctx)))
    context = {"message": "hello", "custom": object()}
    loop.call_exception_handler(context)
    assert len(seen) == 1
    assert seen[0][0] is loop
    assert seen[0][1] is context


def _boom():
    raise ZeroDivisionError("in callback")


def test_callback_exception_context(loop, exc_calls):
    h = loop.call_soon(_boom)
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert len(exc_calls) == 1
    ctx = exc_calls.pop()
    expected_keys = {"message", "exception", "handle"}
    if loop.get_debug():
        expected_keys.add("source_traceback")
    assert set(ctx) == expected_keys
    assert ctx["message"].startswith("Exception in callback _boom()")
    assert (
        ctx["message"]
        == f"Exception in callback _boom() at {__file__}:{_boom.__code__.co_firstlineno}"
    )
    assert type(ctx["exception"]) is ZeroDivisionError
    assert ctx["exception"].__traceback__ is not None
    assert ctx["handle"] is h


def test_loop_continues_after_callback_exception(loop, exc_calls):
    out = []
    loop.call_soon(out.append, 1)
    loop.call_soon(_boom)
    loop.call_soon(out.append, 2)
    loop.call_later(0.001, _boom)
    loop.call_later(0.002, out.append, 3)
    loop.call_later(0.003, loop.stop)
    run_forever_guarded(loop)
    assert out == [1, 2, 3]
    assert [type(c["exception"]) for c in exc_calls] == [ZeroDivisionError] * 2
    exc_calls.clear()


def test_timer_exception_context(loop, exc_calls):
    t = loop.call_later(0, _boom)
    loop.call_later(0.001, loop.stop)
    run_forever_guarded(loop)
    assert len(exc_calls) == 1
    ctx = exc_calls.pop()
    assert ctx["handle"] is t
    assert ctx["message"].startswith("Exception in callback _boom()")


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_handler_propagates(loop, exc_type):
    def handler(lp, ctx):
        raise exc_type

    loop.set_exception_handler(handler)
    loop.call_soon(_boom)
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()


_var = contextvars.ContextVar("_var", default="unset")


def test_handler_context_for_callback_errors(loop):
    """3.12+ runs the custom handler in the failing handle's context."""
    ctx = contextvars.copy_context()
    ctx.run(_var.set, "handle-ctx")
    seen = []
    loop.set_exception_handler(lambda lp, c: seen.append(_var.get()))
    loop.call_soon(_boom, context=ctx)
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert seen == ["handle-ctx" if PY312 else "unset"]


def test_task_exception_reaches_handler_with_future(loop, exc_calls):
    async def bad():
        raise ValueError("x")

    task = loop.create_task(bad())
    run(loop, asyncio.sleep(0.001))
    del task
    gc.collect()
    expected = {"exception", "future", "message"}
    if loop.get_debug():
        expected.add("source_traceback")
    assert [set(c) for c in exc_calls] == [expected]
    exc_calls.clear()


# -- default handler output, compared with asyncio -----------------------------------------------


class _Unrepr:
    def __repr__(self):
        return "<custom repr>"


def _log_scenario(lp, caplog):
    """Everything that makes the default handler log; returns the records' text."""
    lp.set_exception_handler(None)
    caplog.clear()
    lp.call_exception_handler({"message": "custom message", "zeta": 1, "alpha": _Unrepr()})
    lp.call_exception_handler({"exception": KeyError("no message")})
    lp.call_exception_handler({})
    lp.default_exception_handler({"message": "direct", "exception": ValueError("v")})
    lp.call_soon(_boom)
    lp.call_soon(lp.stop)
    run_forever_guarded(lp)

    def bad_handler(loop, context):
        raise RuntimeError("handler failed")

    lp.set_exception_handler(bad_handler)
    lp.call_exception_handler({"message": "for the bad handler"})
    lp.set_exception_handler(None)
    out = []
    for rec in caplog.records:
        if rec.name != "asyncio" or rec.levelno < logging.ERROR:
            continue
        exc = rec.exc_info[1] if rec.exc_info else None
        out.append((rec.levelname, noaddr(rec.getMessage()), type(exc).__name__, str(exc)))
    return out


def test_default_handler_logs_like_asyncio(loop, ref_loop, caplog):
    caplog.set_level(logging.DEBUG, logger="asyncio")
    records = {}
    for name, lp in (("loop", loop), ("asyncio", ref_loop)):
        records[name] = _log_scenario(lp, caplog)
    assert records["loop"] == records["asyncio"]
    texts = [r[1] for r in records["asyncio"]]
    assert texts[0] == "custom message\nalpha: <custom repr>\nzeta: 1"
    assert texts[1] == "Unhandled exception in event loop"
    assert texts[2] == "Unhandled exception in event loop"
    assert texts[3] == "direct"
    assert texts[4].startswith("Exception in callback _boom()")
    assert texts[5].startswith("Unhandled error in exception handler\ncontext: {'message': 'for")
    assert [r[2] for r in records["asyncio"]] == [
        "NoneType",
        "KeyError",
        "NoneType",
        "ValueError",
        "ZeroDivisionError",
        "RuntimeError",
    ]


def test_default_handler_in_debug_names_handle_source(loop, ref_loop, caplog):
    caplog.set_level(logging.DEBUG, logger="asyncio")
    loop.set_debug(True)
    ref_loop.set_debug(True)
    records = {}
    for name, lp in (("loop", loop), ("asyncio", ref_loop)):
        records[name] = _log_scenario(lp, caplog)
    assert records["loop"] == records["asyncio"]
    callback_text = records["asyncio"][4][1]
    assert "source_traceback: Object created at (most recent call last):" in callback_text


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
def test_failed_task_reported_at_once(loop, exc_calls, debug):
    """A failed task nobody awaits is reported as soon as it is dropped, in debug mode too
    (no reference cycle through the loop's debug-mode callback runner keeps it alive)."""
    loop.set_debug(debug)

    async def fail():
        return 1 / 0

    async def main():
        loop.create_task(fail())
        await asyncio.sleep(0)
        return [c["message"] for c in exc_calls]

    assert loop.run_until_complete(main()) == ["Task exception was never retrieved"]
    exc_calls.clear()
