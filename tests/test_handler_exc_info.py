"""The exception handler runs inside the failed callback's ``except`` block.

asyncio reports a callback's exception from inside ``except BaseException as exc:`` (in
``Handle._run``, a transport's ``_fatal_error`` or its flow-control calls), so a handler sees the
exception in ``sys.exc_info()`` (``logging.exception`` logs its traceback), and an exception the
handler raises is chained to it ("During handling of the above exception ..."). Each scenario
below makes one callback of a kind fail and runs on both loops.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading

import pytest
from _net_support import LOCALHOST
from _support import run


class Boom(Exception):
    """The failure every scenario raises."""


def _raise(*args) -> None:
    raise Boom("boom")


async def _settle(loop, seconds: float = 0.02) -> None:
    await asyncio.sleep(seconds)


async def via_call_soon(loop) -> None:
    loop.call_soon(_raise)
    await _settle(loop)


async def via_timer(loop) -> None:
    loop.call_later(0.001, _raise)
    await _settle(loop, 0.05)


async def via_threadsafe(loop) -> None:
    thread = threading.Thread(target=loop.call_soon_threadsafe, args=(_raise,))
    thread.start()
    thread.join()
    await _settle(loop)


async def via_done_callback(loop) -> None:
    fut = loop.create_future()
    fut.add_done_callback(_raise)
    fut.set_result(None)
    await _settle(loop)


async def via_reader(loop) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)

    def on_readable() -> None:
        loop.remove_reader(a.fileno())
        raise Boom("boom")

    try:
        loop.add_reader(a.fileno(), on_readable)
        b.send(b"x")
        await _settle(loop, 0.05)
    finally:
        loop.remove_reader(a.fileno())
        a.close()
        b.close()


class _Failing(asyncio.Protocol):
    def __init__(self, loop, fail: str) -> None:
        self.fail = fail
        self.lost = loop.create_future()

    def data_received(self, data) -> None:
        if self.fail == "data_received":
            raise Boom("boom")

    def pause_writing(self) -> None:
        if self.fail == "pause_writing":
            raise Boom("boom")

    def connection_lost(self, exc) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def via_data_received(loop) -> None:
    a, b = socket.socketpair()
    try:
        tr, proto = await loop.connect_accepted_socket(lambda: _Failing(loop, "data_received"), a)
        b.send(b"x")
        await asyncio.wait_for(proto.lost, 5)
    finally:
        b.close()


async def via_pause_writing(loop) -> None:
    a, b = socket.socketpair()
    try:
        tr, proto = await loop.connect_accepted_socket(lambda: _Failing(loop, "pause_writing"), a)
        tr.set_write_buffer_limits(high=1)
        tr.write(b"x" * (8 << 20))  # more than the socket takes: buffered, over the mark
        tr.abort()
        await asyncio.wait_for(proto.lost, 5)
    finally:
        b.close()


async def via_datagram_received(loop) -> None:
    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr) -> None:
            raise Boom("boom")

    tr, _ = await loop.create_datagram_endpoint(Proto, local_addr=(LOCALHOST, 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(b"x", tr.get_extra_info("sockname"))
        await _settle(loop, 0.05)
    tr.close()
    await _settle(loop, 0)


SCENARIOS = {
    "call_soon": via_call_soon,
    "timer": via_timer,
    "call_soon_threadsafe": via_threadsafe,
    "done_callback": via_done_callback,
    "add_reader": via_reader,
    "data_received": via_data_received,
    "pause_writing": via_pause_writing,
    "datagram_received": via_datagram_received,
}


@pytest.fixture
def restore_handler(loop):
    before = loop.get_exception_handler()
    yield
    loop.set_exception_handler(before)


@pytest.mark.usefixtures("restore_handler")
@pytest.mark.parametrize("kind", list(SCENARIOS))
def test_handler_sees_the_exception_in_exc_info(loop, kind):
    seen = []

    def handler(lp, context) -> None:
        seen.append((sys.exc_info(), context.get("exception")))

    loop.set_exception_handler(handler)
    run(loop, SCENARIOS[kind](loop))
    assert seen, "the handler was not called"
    (typ, value, tb), reported = seen[0]
    assert isinstance(reported, Boom)
    assert typ is Boom
    assert value is reported
    assert tb is reported.__traceback__
    # Left as it was once the report is over.
    assert sys.exc_info() == (None, None, None)
    assert run(loop, _exc_info_in_a_callback(loop)) == (None, None, None)


async def _exc_info_in_a_callback(loop):
    fut = loop.create_future()
    loop.call_soon(lambda: fut.set_result(sys.exc_info()))
    return await fut


@pytest.mark.usefixtures("restore_handler")
@pytest.mark.parametrize("kind", list(SCENARIOS))
def test_handler_error_is_chained_to_the_callback_error(loop, kind, caplog):
    def handler(lp, context) -> None:
        raise RuntimeError("handler failed")

    loop.set_exception_handler(handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run(loop, SCENARIOS[kind](loop))
    records = [
        r
        for r in caplog.records
        if r.getMessage().startswith("Unhandled error in exception handler")
    ]
    assert records
    err = records[0].exc_info[1]
    assert isinstance(err, RuntimeError)
    assert isinstance(err.__context__, Boom)


@pytest.mark.usefixtures("restore_handler")
def test_logging_exception_in_handler_logs_the_traceback(loop, caplog):
    logger = logging.getLogger("test_handler_exc_info")
    loop.set_exception_handler(
        lambda lp, ctx: logger.exception("handler: %s", sys.exc_info()[0].__name__)
    )
    with caplog.at_level(logging.ERROR, logger="test_handler_exc_info"):
        loop.call_soon(lambda: {}["k"])
        run(loop, _settle(loop))
    [record] = [r for r in caplog.records if r.name == "test_handler_exc_info"]
    assert record.getMessage() == "handler: KeyError"
    assert "KeyError: 'k'" in record.exc_text
