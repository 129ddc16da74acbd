"""Reference cycles through the loop and its handles are collected by the cyclic gc.

Each test builds a cycle that plain reference counting cannot free, drops every outside
reference, runs gc.collect() and checks a weak reference died: a native object that holds Python
objects without taking part in gc (no tp_traverse/tp_clear) keeps the whole cycle alive.
"""

from __future__ import annotations

import contextvars
import gc
import signal
import socket
import sys
import weakref

from _support import run_forever_guarded


class Payload:
    def method(self, *args):
        pass


def _collected(ref) -> bool:
    for _ in range(3):
        gc.collect()
        if ref() is None:
            return True
    return False


def test_callback_cycle_through_handle(loop):
    obj = Payload()
    obj.handle = loop.call_soon(obj.method)  # obj -> handle -> bound method -> obj
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    ref = weakref.ref(obj)
    del obj
    assert _collected(ref)


def test_callback_cycle_through_timer_handle(loop):
    obj = Payload()
    obj.handle = loop.call_later(0, obj.method)
    loop.call_later(0.001, loop.stop)
    run_forever_guarded(loop)
    ref = weakref.ref(obj)
    del obj
    assert _collected(ref)


def test_cycle_through_handle_args(loop):
    obj = Payload()
    obj.handle = loop.call_soon(id, obj)  # obj -> handle -> args -> obj
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    ref = weakref.ref(obj)
    del obj
    assert _collected(ref)


def test_cycle_through_handle_context(loop):
    var = contextvars.ContextVar("var")
    obj = Payload()
    ctx = contextvars.copy_context()
    ctx.run(var.set, obj)
    obj.handle = loop.call_soon(id, 1, context=ctx)  # obj -> handle -> ctx -> obj
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    ref = weakref.ref(obj)
    del obj, ctx
    assert _collected(ref)


_VAR = contextvars.ContextVar("gc_var")


def test_cycle_through_copied_context_set_by_the_callback(loop):
    """No context= given: the handle's own copy, escaping only through the handle."""
    obj = Payload()
    obj.handle = loop.call_soon(_VAR.set, obj)  # runs in the copy: copy -> obj -> handle -> copy
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert _VAR.get(None) is None  # the copy, not the caller's context, got the value
    ref = weakref.ref(obj)
    del obj
    assert _collected(ref)


def test_cycle_through_copied_context_taken_from_the_handle(loop):
    handle = loop.call_soon(id, 1)
    ctx = handle._context  # get_context() is 3.12+ in asyncio
    obj = Payload()
    obj.ctx = ctx
    ctx.run(_VAR.set, obj)  # ctx -> obj -> ctx, taken while the handle is queued
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    ref = weakref.ref(obj)
    del obj, ctx, handle
    assert _collected(ref)
    assert _VAR.get(None) is None


def test_copied_context_outlives_its_handle(loop):
    """The context taken from a handle stays usable after the handle ran and died."""
    handle = loop.call_soon(_VAR.set, "inside")
    ctx = handle._context
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    del handle
    gc.collect()
    assert ctx[_VAR] == "inside"
    assert ctx.run(_VAR.get) == "inside"


def test_pending_cycle_freed_by_close(loop_factory):
    lp = loop_factory()
    obj = Payload()
    obj.soon = lp.call_soon(obj.method)
    obj.later = lp.call_later(3600, obj.method)
    obj.loop = lp  # obj -> loop -> queues -> handles -> obj
    lp.close()
    refs = [weakref.ref(obj), weakref.ref(lp)]
    del obj, lp
    assert all(_collected(r) for r in refs)


def test_closed_loop_is_collectable(loop_factory):
    lp = loop_factory()
    lp.call_soon(lp.stop)
    lp.run_forever()
    lp.close()
    ref = weakref.ref(lp)
    del lp
    assert _collected(ref)


def test_loop_handle_cycle(loop_factory):
    lp = loop_factory()
    lp.handle = lp.call_soon(lp.stop)  # loop -> handle -> loop.stop -> loop
    lp.run_forever()
    lp.close()
    ref = weakref.ref(lp)
    del lp
    assert _collected(ref)


def test_exception_handler_and_task_factory_cycles(loop_factory):
    lp = loop_factory()
    lp.set_exception_handler(lambda loop, ctx, keep=lp: None)
    lp.set_task_factory(lambda loop, coro, keep=lp: None)
    lp.close()
    ref = weakref.ref(lp)
    del lp
    assert _collected(ref)


def test_reader_released_by_remove_and_close(loop_factory):
    lp = loop_factory()
    a, b = socket.socketpair()
    try:
        removed, closed = Payload(), Payload()
        removed.loop = closed.loop = lp
        lp.add_reader(a, removed.method)
        lp.add_writer(b, closed.method)
        assert lp.remove_reader(a) is True
        lp.close()
        refs = [weakref.ref(removed), weakref.ref(closed), weakref.ref(lp)]
        del removed, closed, lp
        assert [_collected(r) for r in refs] == [True, True, True]
    finally:
        a.close()
        b.close()


def test_signal_handler_released_by_close(loop_factory):
    lp = loop_factory()
    obj = Payload()
    obj.loop = lp
    lp.add_signal_handler(signal.SIGUSR1, obj.method)
    lp.close()
    refs = [weakref.ref(obj), weakref.ref(lp)]
    del obj, lp
    assert [_collected(r) for r in refs] == [True, True]


def test_cancelled_handle_drops_callback(loop):
    obj = Payload()
    h = loop.call_later(3600, obj.method)
    h.cancel()
    ref = weakref.ref(obj)
    del obj
    assert _collected(ref)
    del h


def test_handle_escaping_through_exception_handler(loop, exc_calls):
    """A handle nobody kept when it was scheduled, that escapes while it runs (the exception
    handler's context holds it), still takes part in gc afterwards."""

    class Owner:
        def boom(self):
            raise RuntimeError("boom")

    obj = Owner()
    loop.call_soon(obj.boom)  # the returned handle is dropped at once
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    context = exc_calls.pop()
    assert not exc_calls
    obj.context = context  # obj -> context -> handle -> obj.boom -> obj
    ref = weakref.ref(obj)
    del obj, context
    assert _collected(ref)


def test_unclosed_loop_with_pending_cycles_is_collected(loop_factory):
    """An abandoned, unclosed loop whose queues hold the only path back to it is collected."""
    import warnings

    lp = loop_factory()
    obj = Payload()
    obj.loop = lp
    lp.call_soon(obj.method)  # loop -> ready queue -> handle -> obj -> loop
    lp.call_later(3600, obj.method)  # and through the timer heap
    refs = [weakref.ref(obj), weakref.ref(lp)]
    del obj, lp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        assert all(_collected(r) for r in refs)


def test_unclosed_loop_with_queued_task_steps_is_collected(loop_factory):
    """A task's queued step and wake-up (held without handles by ferroloop) keep no cycle alive."""
    import asyncio
    import warnings

    lp = loop_factory()
    lp.set_exception_handler(lambda loop, context: None)  # "Task was destroyed but it is pending!"

    async def waits(loop, fut):  # the frame refers back to the loop
        await fut

    fut = lp.create_future()
    woken = lp.create_task(waits(lp, fut))
    lp.run_until_complete(asyncio.sleep(0))  # woken now waits on fut
    fut.set_result(None)  # queues woken's wake-up
    stepping = lp.create_task(waits(lp, lp.create_future()))  # queues its first step
    refs = [weakref.ref(x) for x in (lp, fut, woken, stepping)]
    del lp, fut, woken, stepping
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the unclosed loop
        warnings.simplefilter("ignore", RuntimeWarning)  # the coroutine that never started
        assert all(_collected(r) for r in refs)


def test_transport_protocol_cycle_is_collected(loop_factory):
    """An open connection dropped without close(): transport <-> protocol (and the native core)
    form a cycle that the collector frees once the loop is closed."""
    import asyncio
    import warnings

    lp = loop_factory()

    class Proto(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport  # protocol -> transport -> protocol

    async def main(lp):
        server = await lp.create_server(Proto, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, protocol = await lp.create_connection(Proto, "127.0.0.1", port)
        server.close()
        return weakref.ref(transport), weakref.ref(protocol)

    refs = lp.run_until_complete(main(lp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        lp.close()
        del lp
        assert all(_collected(r) for r in refs)


def test_datagram_transport_protocol_cycle_is_collected(loop_factory):
    """A datagram endpoint dropped without close(), after it received a datagram (so its
    native core holds a peer address): the cycle is freed once the loop is closed."""
    import asyncio
    import warnings

    lp = loop_factory()

    class Proto(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport
            self.got = asyncio.get_running_loop().create_future()

        def datagram_received(self, data, addr):
            self.got.set_result(addr)

    async def main(lp):
        transport, protocol = await lp.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", transport.get_extra_info("sockname"))
            await protocol.got
        return weakref.ref(transport), weakref.ref(protocol)

    refs = lp.run_until_complete(main(lp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        lp.close()
        del lp
        assert all(_collected(r) for r in refs)


def _churn_handles(loop, rounds: int = 3, batch: int = 5000) -> None:
    for _ in range(rounds):
        for _ in range(batch):
            loop.call_soon(int)
        for _ in range(batch // 10):
            loop.call_later(0, int).cancel()
            loop.call_at(0, int)
        loop.call_soon(loop.stop)
        run_forever_guarded(loop)


def test_handle_reuse_keeps_type_references_balanced(loop):
    # Released handles are kept for reuse; each live one holds one reference
    # to its type, and a reused one must not take a second.
    plain, timer = type(loop.call_soon(int)), type(loop.call_later(0, int))
    _churn_handles(loop)
    before = sys.getrefcount(plain), sys.getrefcount(timer)
    _churn_handles(loop)
    assert (sys.getrefcount(plain), sys.getrefcount(timer)) == before


def test_weak_reference_to_a_released_handle_stays_dead(loop):
    refs = [weakref.ref(loop.call_soon(int)), weakref.ref(loop.call_later(0, int))]
    _churn_handles(loop, rounds=1)
    assert [r() for r in refs] == [None, None]
    _churn_handles(loop, rounds=1)  # their memory is reused by new handles
    assert [r() for r in refs] == [None, None]
