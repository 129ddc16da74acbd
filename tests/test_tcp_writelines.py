"""``transport.writelines()`` of a stream socket: what each Python's asyncio accepts, and that a
rejected call leaves nothing behind.

asyncio 3.10/3.11 write ``b"".join(list_of_data)``; 3.12 and 3.13 take every item as a
``memoryview`` before queueing any; 3.14 skips falsy items (``None``, empty buffers). Each scenario
runs on the loop under test and on ``ref_loop``, the running Python's asyncio, and the two must
agree: the error, what stays buffered, and what the peer receives after a following ``write()``.
"""

from __future__ import annotations

import array
import asyncio
import logging
import socket
import sys

import pytest
from _support import PY314, run

PY315 = sys.version_info >= (3, 15)


def _drain(sock: socket.socket) -> bytes:
    got = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return got
        if not chunk:
            return got
        got += chunk


async def _writelines_then_write(lp, items):
    """(error, buffered after the call, what the peer received after ``write(b"NEXT;")``)."""
    a, b = socket.socketpair()
    b.setblocking(False)
    tr, _ = await lp.connect_accepted_socket(asyncio.Protocol, a)
    try:
        try:
            tr.writelines(items)
        except Exception as exc:  # noqa: BLE001 - the error is what is compared
            err = (type(exc), str(exc))
        else:
            err = None
        buffered = tr.get_write_buffer_size()
        tr.write(b"NEXT;")
        await asyncio.sleep(0.05)
        return err, buffered, _drain(b)
    finally:
        tr.abort()
        await asyncio.sleep(0)
        b.close()


CASES = {
    "none_item": [b"HEADER;", None],
    "none_in_the_middle": [b"a", None, b"c"],
    "none": None,
    "int_item": [b"a", 5],
    "str_item": [b"a", "text"],
    "bytes_itself": b"abc",
    "empty_list": [],
    "empty_items": [b"", b"x", bytearray()],
    "buffers": [bytearray(b"x"), memoryview(b"yz"), array.array("B", b"w")],
    "generator": (bytes([c]) for c in b"gen"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_writelines_matches_asyncio(loop, ref_loop, loop_kind, case):
    def items():
        value = CASES[case]
        if case == "generator":  # one generator per run
            return (bytes([c]) for c in b"gen")
        return value

    mine = run(loop, _writelines_then_write(loop, items()))
    ref = run(ref_loop, _writelines_then_write(ref_loop, items()))
    assert mine[0] == ref[0]
    if ref[0] is not None and ref[1] and loop_kind == "ferroloop":
        # asyncio 3.15 queues the items before a bad one and then raises; with nothing sent
        # they stay queued, and so does every later write. ferroloop queues nothing.
        assert PY315
        assert mine[1:] == (0, b"NEXT;")
    else:
        assert mine[1:] == ref[1:]


def test_rejected_writelines_leaves_the_transport_sending(loop):
    err, buffered, got = run(loop, _writelines_then_write(loop, [b"HEADER;", None]))
    if PY314:  # None is skipped
        assert (err, buffered, got) == (None, 0, b"HEADER;NEXT;")
    else:
        assert err is not None
        assert err[0] is TypeError
        assert (buffered, got) == (0, b"NEXT;")


def test_rejected_writelines_message(loop):
    err, _, _ = run(loop, _writelines_then_write(loop, [b"HEADER;", 7]))
    if sys.version_info >= (3, 12):
        assert err == (TypeError, "memoryview: a bytes-like object is required, not 'int'")
    else:
        assert err == (TypeError, "sequence item 1: expected a bytes-like object, int found")


def test_writelines_after_a_full_socket_keeps_order(loop, loop_kind):
    async def main():
        a, b = socket.socketpair()
        b.setblocking(False)
        tr, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        big = b"x" * (4 << 20)
        tr.write(big)  # more than the socket takes: the rest is queued
        assert tr.get_write_buffer_size() > 0
        with pytest.raises(TypeError):
            tr.writelines([b"bad", object()])
        tr.writelines([b"A", b"B"])
        got = b""
        while len(got) < len(big) + 2:
            await asyncio.sleep(0.001)
            got += _drain(b)
        tr.close()
        await asyncio.sleep(0)
        b.close()
        return got

    got = run(loop, main())
    # asyncio 3.15 keeps the items before the rejected one (README: differences).
    kept = b"bad" if PY315 and loop_kind == "asyncio" else b""
    assert got == b"x" * (4 << 20) + kept + b"AB"


def test_writelines_over_the_high_water_mark_pauses_as_asyncio(loop, ref_loop):
    async def paused_by_writelines(lp) -> list[str]:
        events: list[str] = []

        class Proto(asyncio.Protocol):
            def pause_writing(self) -> None:
                events.append("pause")

            def resume_writing(self) -> None:
                events.append("resume")

        a, b = socket.socketpair()
        tr, _ = await lp.connect_accepted_socket(Proto, a)
        tr.set_write_buffer_limits(high=1)
        tr.writelines([b"x" * (4 << 20), b"y"])  # more than the socket takes
        seen = list(events)
        tr.abort()
        await asyncio.sleep(0)
        b.close()
        return seen

    mine = run(loop, paused_by_writelines(loop))
    ref = run(ref_loop, paused_by_writelines(ref_loop))
    assert mine == ref
    # 3.12 and 3.13 queue without pausing; 3.10/3.11 write(), and 3.14, pause.
    assert mine == ([] if sys.version_info[:2] in ((3, 12), (3, 13)) else ["pause"])


@pytest.mark.skipif(
    sys.version_info[:2] in ((3, 12), (3, 13)),
    reason="asyncio 3.12/3.13 queue the data and then fail on the lost transport's loop",
)
def test_writelines_after_connection_lost_warns_from_the_fifth(loop, ref_loop, caplog):
    async def warned_calls(lp) -> list[bool]:
        a, b = socket.socketpair()
        tr, _ = await lp.connect_accepted_socket(asyncio.Protocol, a)
        tr.abort()
        await asyncio.sleep(0.01)
        warned = []
        for _ in range(7):
            caplog.clear()
            tr.writelines([b"x", b"y"])
            warned.append(
                [r.getMessage() for r in caplog.records] == ["socket.send() raised exception."]
            )
        b.close()
        return warned

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        mine = run(loop, warned_calls(loop))
        ref = run(ref_loop, warned_calls(ref_loop))
    assert mine == ref == [False] * 4 + [True] * 3
