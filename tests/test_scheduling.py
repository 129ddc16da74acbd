"""call_soon / call_later / call_at / call_soon_threadsafe, handles, clock and ordering."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import re
import threading
import time
from decimal import Decimal
from fractions import Fraction

import pytest
from _support import GUARD_S, PY311, PY312, lineno, noaddr, run, run_forever_guarded

# -- ordering ----------------------------------------------------------------------------------


def test_call_soon_fifo(loop):
    out = []
    for i in range(1000):
        loop.call_soon(out.append, i)
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert out == list(range(1000))


def test_call_soon_passes_args(loop):
    out = []
    loop.call_soon(lambda *a: out.append(a), 1, "two", None)
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert out == [(1, "two", None)]


def test_call_later_order(loop):
    out = []
    delays = [0.03, 0.0, 0.02, -1, 0.01, 0.025]
    handles = [loop.call_later(d, out.append, d) for d in delays]
    loop.call_later(0.04, loop.stop)
    run_forever_guarded(loop)
    # deadline order (== delay order unless the scheduling loop itself stalled for >5 ms)
    assert out == [
        d for d, _ in sorted(zip(delays, handles, strict=True), key=lambda p: p[1].when())
    ]
    assert sorted(out) == sorted(delays)


def test_call_at_order(loop):
    out = []
    base = loop.time()
    offsets = [0.02, 0.005, 0.015, 0.0, 0.01]
    for off in offsets:
        loop.call_at(base + off, out.append, off)
    loop.call_at(base + 0.03, loop.stop)
    run_forever_guarded(loop)
    assert out == sorted(offsets)


def test_call_at_in_the_past_runs(loop):
    out = []
    loop.call_at(loop.time() - 100, out.append, "past")
    loop.call_at(0, out.append, "zero")
    loop.call_soon(loop.call_soon, loop.stop)
    run_forever_guarded(loop)
    assert sorted(out) == ["past", "zero"]


def test_timer_ties_all_run_in_one_iteration(loop, loop_kind):
    """Timers due at the same time all run together, even if one stops the loop.

    asyncio documents the order of equal deadlines as undefined (its heap does not keep
    insertion order); ferroloop promises scheduling order, which is checked for it only.
    """
    out = []
    when = loop.time() + 0.01
    for i in range(20):
        loop.call_at(when, out.append, i)
    loop.call_at(when, loop.stop)
    run_forever_guarded(loop)
    assert sorted(out) == list(range(20))
    if loop_kind == "ferroloop":
        assert out == list(range(20))


def test_callbacks_scheduled_during_iteration_run_next_iteration(loop):
    out = []

    def first():
        out.append("first")
        loop.call_soon(out.append, "soon-from-first")
        loop.call_later(0, out.append, "later0-from-first")
        loop.stop()

    loop.call_soon(first)
    loop.call_soon(out.append, "second")
    run_forever_guarded(loop)
    assert out == ["first", "second"]
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    # ready callbacks queued earlier run before timers that became due in this iteration
    assert out == ["first", "second", "soon-from-first", "later0-from-first"]


def test_call_soon_runs_before_due_timer(loop):
    out = []
    loop.call_later(0, out.append, "timer")
    loop.call_soon(out.append, "soon")
    loop.call_soon(loop.call_soon, loop.stop)
    run_forever_guarded(loop)
    assert out == ["soon", "timer"]


def test_infinite_delay_never_fires(loop):
    out = []
    h = loop.call_later(math.inf, out.append, "inf")
    assert h.when() == math.inf
    loop.call_later(0.01, loop.stop)
    run_forever_guarded(loop)
    assert out == []
    h.cancel()


def _nan_outcome(lp):
    out = []
    h = lp.call_later(math.nan, lambda: (out.append("nan"), lp.stop()))
    when_is_nan = math.isnan(h.when())
    try:
        run_forever_guarded(lp)
    except Exception as exc:  # 3.13's selector refuses a NaN timeout
        h.cancel()
        return type(exc).__name__, when_is_nan
    return out, when_is_nan


def test_nan_delay_matches_asyncio(loop, ref_loop):
    """asyncio accepts NaN; what happens next is version-specific (runs at once up to 3.12,
    ValueError out of run_forever on 3.13), so compare with this Python's asyncio."""
    assert _nan_outcome(loop) == _nan_outcome(ref_loop)


# -- clock -------------------------------------------------------------------------------------


def test_time_is_monotonic_clock(loop):
    for _ in range(100):
        before = time.monotonic()
        now = loop.time()
        after = time.monotonic()
        assert before <= now <= after


def test_call_later_when(loop):
    t0 = loop.time()
    h = loop.call_later(5, print)
    t1 = loop.time()
    assert t0 + 5 <= h.when() <= t1 + 5
    h.cancel()


def test_call_at_when_is_exact(loop):
    when = loop.time() + 12.345678
    h = loop.call_at(when, print)
    assert h.when() == when
    assert type(h.when()) is float
    h.cancel()
    h2 = loop.call_at(10**9, print)
    assert h2.when() == 10**9
    h2.cancel()


def test_timer_fires_no_earlier_than_when(loop):
    fired = []
    h = loop.call_later(0.02, lambda: (fired.append(loop.time()), loop.stop()))
    run_forever_guarded(loop)
    assert fired and fired[0] >= h.when() - time.get_clock_info("monotonic").resolution


# -- threads -----------------------------------------------------------------------------------


def test_call_soon_threadsafe_wakes_sleeping_loop(loop):
    out = []

    def worker():
        time.sleep(0.05)  # let the loop go to sleep with nothing to do
        loop.call_soon_threadsafe(
            lambda: (out.append(threading.current_thread().name), loop.stop())
        )

    thread = threading.Thread(target=worker, name="worker")
    loop.call_soon(thread.start)
    run_forever_guarded(loop)
    thread.join()
    assert out == [threading.main_thread().name]


def test_call_soon_threadsafe_from_many_threads(loop):
    n_threads, per_thread = 8, 2000
    total = n_threads * per_thread
    seen = []
    done = loop.create_future()

    def record(i):
        seen.append(i)
        if len(seen) == total:
            done.set_result(None)

    def worker(k):
        for j in range(per_thread):
            loop.call_soon_threadsafe(record, k * per_thread + j)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        loop.call_soon(t.start)
    run(loop, done)
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(total))
    # each thread's callbacks keep their order
    for k in range(n_threads):
        mine = [i for i in seen if i // per_thread == k]
        assert mine == sorted(mine)


def test_call_soon_threadsafe_handle_cancel(loop):
    out = []
    h = loop.call_soon_threadsafe(out.append, 1)
    h.cancel()
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert out == []
    assert h.cancelled()


THREADSAFE_HANDLE = getattr(asyncio.events, "_ThreadSafeHandle", None)


@pytest.mark.parametrize("ask", ["cancel", "cancelled"])
def test_threadsafe_handle_waits_for_its_running_callback(loop, ask):
    # Where asyncio has _ThreadSafeHandle (3.14), another thread's cancel() or cancelled()
    # returns only once the running callback has returned; before, it does not wait.
    started, finished, seen = threading.Event(), threading.Event(), []

    def callback():
        started.set()
        time.sleep(0.2)  # the GIL is free: the other thread asks meanwhile
        finished.set()

    def other_thread():
        handle = loop.call_soon_threadsafe(callback)
        started.wait(GUARD_S)
        answer = getattr(handle, ask)()
        seen.append((finished.is_set(), answer, handle))
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=other_thread)
    t.start()
    run_forever_guarded(loop)
    t.join(GUARD_S)
    ((done_first, answer, handle),) = seen
    assert answer is (False if ask == "cancelled" else None)
    if THREADSAFE_HANDLE is not None:
        assert done_first
        assert isinstance(handle, THREADSAFE_HANDLE)
        assert handle.cancelled() is (ask == "cancel")


def test_threadsafe_handle_cancelled_from_its_own_callback(loop):
    # The loop's own thread never waits (asyncio's lock is re-entrant).
    handles = []
    loop.call_soon(lambda: handles.append(loop.call_soon_threadsafe(lambda: handles[0].cancel())))
    loop.call_later(0.01, loop.stop)
    run_forever_guarded(loop)
    assert handles[0].cancelled()


# -- handles -----------------------------------------------------------------------------------


def test_handle_cancel(loop):
    out = []
    h1 = loop.call_soon(out.append, 1)
    h2 = loop.call_later(0, out.append, 2)
    h3 = loop.call_at(loop.time(), out.append, 3)
    for h in (h1, h2, h3):
        assert not h.cancelled()
        h.cancel()
        h.cancel()  # idempotent
        assert h.cancelled()
    loop.call_later(0.01, loop.stop)
    run_forever_guarded(loop)
    assert out == []


def test_cancel_after_run_marks_cancelled(loop):
    h = loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()


def test_cancel_from_earlier_callback_in_same_iteration(loop):
    out = []
    later = []
    loop.call_soon(lambda: later[0].cancel())
    later.append(loop.call_soon(out.append, "cancelled"))
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert out == []


def test_timer_handle_comparisons(loop):
    t = loop.time() + 100

    def cb():
        pass

    h1 = loop.call_at(t, cb)
    h2 = loop.call_at(t + 1, cb)
    h1b = loop.call_at(t, cb)
    assert h1 < h2 and h2 > h1 and h1 <= h2 and h2 >= h1
    assert not (h1 > h2) and not (h2 < h1)
    assert h1 != h2
    assert h1 == h1b and h1 <= h1b and h1 >= h1b
    assert hash(h1) == hash(t) == hash(h1b)
    assert len({h1, h1b, h2}) == 2
    h1b.cancel()
    assert h1 != h1b  # cancelled state takes part in equality
    assert h1 != loop.call_at(t, print)  # so does the callback
    assert (h1 == 1) is False and (h1 != 1) is True
    with pytest.raises(TypeError):
        h1 < 1  # noqa: B015
    for h in (h1, h2):
        h.cancel()


def test_handle_equality_is_identity(loop):
    h1 = loop.call_soon(print)
    h2 = loop.call_soon(print)
    assert h1 == h1 and h1 != h2
    assert hash(h1) == hash(h1)
    with pytest.raises(TypeError):
        h1 < h2  # noqa: B015
    timer = loop.call_at(1, print)
    assert h1 != timer and timer != h1
    for h in (h1, h2, timer):
        h.cancel()


def test_handles_are_weakrefable(loop):
    import weakref

    h = loop.call_soon(print)
    t = loop.call_later(10, print)
    assert weakref.ref(h)() is h and weakref.ref(t)() is t
    h.cancel()
    t.cancel()


@pytest.mark.skipif(not PY312, reason="Handle.get_context() added in 3.12")
def test_handle_get_context(loop):
    var = contextvars.ContextVar("var")
    ctx = contextvars.copy_context()
    for h in (
        loop.call_soon(print, context=ctx),
        loop.call_later(1, print, context=ctx),
        loop.call_at(1, print, context=ctx),
        loop.call_soon_threadsafe(print, context=ctx),
    ):
        assert h.get_context() is ctx
        h.cancel()
    token = var.set("outer")
    try:
        h = loop.call_soon(print)
    finally:
        var.reset(token)
    assert type(h.get_context()) is contextvars.Context
    assert h.get_context()[var] == "outer"
    h.cancel()


def _cb(*args):
    pass


class _Obj:
    def meth(self):
        pass


def _make_handles(lp):
    """Handles of every shape, made on one line each so both loops record the same source."""
    return [
        lp.call_soon(_cb),
        lp.call_soon(_cb, 1, "a"),
        lp.call_soon(print),
        lp.call_soon(functools.partial(_cb, 1), 2),
        lp.call_soon(_Obj().meth),
        lp.call_soon(lambda: None),
        lp.call_at(1000.5, _cb, [1] * 100),
        lp.call_at(1e9, _cb),
        lp.call_soon_threadsafe(_cb, "x"),
    ]


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
def test_handle_repr_matches_asyncio(loop, ref_loop, debug):
    loop.set_debug(debug)
    ref_loop.set_debug(debug)
    mine, ref = _make_handles(loop), _make_handles(ref_loop)
    assert [noaddr(repr(h)) for h in mine] == [noaddr(repr(h)) for h in ref]
    for h in mine + ref:
        h.cancel()
    assert [noaddr(repr(h)) for h in mine] == [noaddr(repr(h)) for h in ref]


def test_handle_repr_patterns(loop):
    loop.set_debug(False)
    h, line = loop.call_soon(_cb), _cb.__code__.co_firstlineno
    assert repr(h) == f"<Handle _cb() at {__file__}:{line}>"
    t = loop.call_at(1234.5, _cb)
    assert repr(t) == f"<TimerHandle when=1234.5 _cb() at {__file__}:{line}>"
    p = loop.call_soon(print)
    assert repr(p) == "<Handle print()>"
    h.cancel()
    t.cancel()
    p.cancel()
    assert repr(h) == "<Handle cancelled>"
    assert repr(t) == "<TimerHandle cancelled when=1234.5>"


def test_handle_repr_debug_has_source(loop):
    loop.set_debug(True)
    h, line = loop.call_soon(_cb), lineno()
    assert re.fullmatch(rf"<Handle _cb\(\) at .+ created at {re.escape(__file__)}:{line}>", repr(h))
    h.cancel()
    # in debug mode a cancelled handle keeps its description
    assert re.fullmatch(
        rf"<Handle cancelled _cb\(\) at .+ created at {re.escape(__file__)}:{line}>", repr(h)
    )


# -- contexts ----------------------------------------------------------------------------------

_var = contextvars.ContextVar("_var", default="unset")


def test_context_argument_is_used(loop):
    ctx = contextvars.copy_context()
    ctx.run(_var.set, "in-ctx")
    seen = []

    def cb(tag):
        seen.append((tag, _var.get()))
        _var.set(f"changed-by-{tag}")

    loop.call_soon(cb, "soon", context=ctx)
    loop.call_later(0, cb, "later", context=ctx)
    loop.call_at(loop.time(), cb, "at", context=ctx)
    loop.call_soon_threadsafe(cb, "threadsafe", context=ctx)
    loop.call_later(0.01, loop.stop)
    run_forever_guarded(loop)
    # each callback sees the previous one's change: they all ran in ctx itself
    assert [tag for tag, _ in seen] == ["soon", "threadsafe", "later", "at"]
    assert seen[0] == ("soon", "in-ctx")
    assert ctx[_var].startswith("changed-by-")
    assert _var.get() == "unset"


def test_default_context_is_a_copy(loop):
    seen = []
    token = _var.set("caller")
    try:
        loop.call_soon(lambda: (seen.append(_var.get()), _var.set("callback")))
    finally:
        _var.reset(token)
    loop.call_soon(lambda: seen.append(_var.get()))
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert seen == ["caller", "unset"]
    assert _var.get() == "unset"


# -- BaseException in callbacks ----------------------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_leaves_run_forever_and_rest_runs_later(loop, exc_type):
    out = []

    def boom():
        raise exc_type()

    loop.call_soon(out.append, "a")
    loop.call_soon(boom)
    loop.call_soon(out.append, "c")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert out == ["a"]
    assert not loop.is_running()
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert out == ["a", "c"]


# -- bad input ---------------------------------------------------------------------------------


async def _coro_fn():
    pass


# call_later() delegates to call_at(), so asyncio's messages name call_at() for both.
CHECKED_AS = {"call_later": "call_at"}

SCHEDULERS = {
    "call_soon": lambda lp, cb: lp.call_soon(cb),
    "call_later": lambda lp, cb: lp.call_later(0, cb),
    "call_at": lambda lp, cb: lp.call_at(lp.time(), cb),
    "call_soon_threadsafe": lambda lp, cb: lp.call_soon_threadsafe(cb),
}


@pytest.mark.parametrize("method", list(SCHEDULERS))
def test_non_callable_debug_raises(loop, method):
    loop.set_debug(True)
    name = CHECKED_AS.get(method, method)
    with pytest.raises(TypeError, match=rf"^a callable object was expected by {name}\(\), got 1$"):
        SCHEDULERS[method](loop, 1)


@pytest.mark.parametrize("method", list(SCHEDULERS))
def test_coroutines_debug_raise(loop, method):
    loop.set_debug(True)
    msg = rf"^coroutines cannot be used with {CHECKED_AS.get(method, method)}\(\)$"
    with pytest.raises(TypeError, match=msg):
        SCHEDULERS[method](loop, _coro_fn)
    coro = _coro_fn()
    try:
        with pytest.raises(TypeError, match=msg):
            SCHEDULERS[method](loop, coro)
    finally:
        coro.close()


@pytest.mark.parametrize("method", list(SCHEDULERS))
def test_non_callable_without_debug_fails_when_run(loop, exc_calls, method):
    """Without debug mode asyncio does not check: the error reaches the exception handler."""
    loop.set_debug(False)
    h = SCHEDULERS[method](loop, 1)
    loop.call_later(0.001, loop.stop)
    run_forever_guarded(loop)
    assert len(exc_calls) == 1
    ctx = exc_calls.pop()
    assert ctx["message"] == "Exception in callback 1()"
    assert type(ctx["exception"]) is TypeError
    assert str(ctx["exception"]) == "'int' object is not callable"
    assert ctx["handle"] is h


def test_coroutine_object_without_debug_fails_when_run(loop, exc_calls):
    loop.set_debug(False)
    coro = _coro_fn()
    try:
        loop.call_soon(coro)
        loop.call_soon(loop.stop)
        run_forever_guarded(loop)
    finally:
        coro.close()
    assert len(exc_calls) == 1
    ctx = exc_calls.pop()
    assert ctx["message"] == "Exception in callback _coro_fn()"
    assert str(ctx["exception"]) == "'coroutine' object is not callable"


def test_coroutine_function_without_debug_is_called(loop):
    loop.set_debug(False)
    loop.call_soon(_coro_fn)
    loop.call_soon(loop.stop)
    with pytest.warns(RuntimeWarning, match="coroutine '_coro_fn' was never awaited"):
        run_forever_guarded(loop)


@pytest.mark.skipif(not PY311, reason="3.10 raises from the arithmetic / an assert")
def test_none_delay_and_when(loop):
    with pytest.raises(TypeError, match=r"^delay must not be None$"):
        loop.call_later(None, print)
    with pytest.raises(TypeError, match=r"^when cannot be None$"):
        loop.call_at(None, print)


def test_bad_delay_type(loop):
    with pytest.raises(TypeError):
        loop.call_later("1", print)
    with pytest.raises(TypeError):
        loop.call_later(None, print)


def test_numeric_delay_types(loop):
    out = []
    # The int first: delay 0 is due before a delay of 1 ms set later, however slow the run.
    loop.call_later(False, out.append, "bool")  # an int
    h = loop.call_later(Fraction(1, 1000), out.append, "fraction")
    assert type(h.when()) is float
    with pytest.raises(TypeError):
        loop.call_later(Decimal("0.001"), out.append, "decimal")  # float + Decimal
    loop.call_later(0.01, loop.stop)
    run_forever_guarded(loop)
    assert out == ["bool", "fraction"]


def test_unexpected_keyword_argument(loop):
    for method in (loop.call_soon, loop.call_soon_threadsafe):
        with pytest.raises(TypeError):
            method(print, end="")
    with pytest.raises(TypeError):
        loop.call_later(0, print, end="")
    with pytest.raises(TypeError):
        loop.call_at(0, print, end="")


def _bad_context_outcome(lp, calls):
    try:
        lp.call_soon(print, context="not a context")
    except Exception as exc:  # noqa: BLE001 - compared with asyncio's outcome
        return "raised", type(exc).__name__
    lp.call_soon(lp.stop)
    run_forever_guarded(lp)
    got = [(c["message"], type(c["exception"]).__name__) for c in calls]
    calls.clear()
    return "handler", got


def test_bad_context_matches_asyncio(loop, exc_calls, ref_loop, ref_exc_calls):
    """asyncio does not check context= up front; the callback fails when run."""
    assert _bad_context_outcome(loop, exc_calls) == _bad_context_outcome(ref_loop, ref_exc_calls)


@pytest.mark.parametrize("method", list(SCHEDULERS))
def test_closed_loop(loop, method):
    loop.close()
    with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
        SCHEDULERS[method](loop, print)


# -- volume ------------------------------------------------------------------------------------


def test_many_cancelled_timers(loop):
    """200k timers scheduled and cancelled: none runs and the loop keeps working."""
    loop.set_debug(False)  # debug mode records a stack per handle: 10x slower on either loop
    ran = []
    for _ in range(20):
        handles = [loop.call_later(3600 + i, ran.append, i) for i in range(10_000)]
        for h in handles:
            h.cancel()
        loop.call_soon(loop.stop)
        run_forever_guarded(loop)
    out = []
    loop.call_later(0.001, out.append, "alive")
    loop.call_later(0.002, loop.stop)
    run_forever_guarded(loop)
    assert ran == [] and out == ["alive"]


def test_many_timers_fire_in_order(loop):
    n = 5000
    out = []
    base = loop.time()
    for i in reversed(range(n)):
        loop.call_at(base + i * 1e-6, out.append, i)
    done = loop.create_future()
    loop.call_at(base + 0.01, done.set_result, None)
    run(loop, done, timeout=GUARD_S)
    assert out == list(range(n))
