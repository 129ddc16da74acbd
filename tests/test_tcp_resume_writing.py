"""A stream transport closed, or failing, inside ``protocol.resume_writing()``.

When the write buffer drains, asyncio calls ``resume_writing()`` and then, if the transport is
closing, ``_call_connection_lost(None)`` at once. Up to 3.13 that happens even when
``resume_writing()`` closed the transport (or a write in it failed) and so already scheduled
``connection_lost``: the protocol hears ``connection_lost(None)``, and the scheduled call fails on
the cleared transport (an ``AttributeError`` reported to the exception handler). asyncio 3.14
loses the connection once: ``connection_lost`` gets what the scheduled call carries (``None``
after ``close()``, the write's error after a reset), with no report. Each scenario runs on the
loop under test and on ``ref_loop``, the running Python's asyncio, and they must agree.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from _net_support import make_listener, reset
from _support import PY314, run


async def _resume_writing_scenario(lp, action: str):
    """(protocol events, reported exceptions) when ``resume_writing()`` does ``action``."""
    events: list[object] = []
    lost = lp.create_future()
    with make_listener() as listener:
        peer = socket.create_connection(listener.getsockname())
        sock, _ = listener.accept()
    peer.setblocking(False)

    class Proto(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.transport = transport

        def pause_writing(self) -> None:
            events.append("pause")

        def resume_writing(self) -> None:
            events.append("resume")
            if action == "close":
                self.transport.close()
            else:  # the peer resets the connection, then a write fails
                reset(peer)
                self.transport.write(b"more")

        def connection_lost(self, exc) -> None:
            events.append(("connection_lost", type(exc).__name__ if exc else None))
            if not lost.done():
                lost.set_result(None)

    tr, _ = await lp.connect_accepted_socket(Proto, sock)
    tr.set_write_buffer_limits(high=1, low=0)  # resumed only once the buffer is empty
    try:
        while not events:  # until the socket takes no more: paused
            tr.write(b"x" * (1 << 20))
        assert events == ["pause"]
        while "resume" not in events:
            await asyncio.sleep(0.001)
            try:
                while peer.recv(1 << 20):
                    pass
            except OSError:  # drained (BlockingIOError), or reset by the test
                pass
        await asyncio.wait_for(lost, 5)
        await asyncio.sleep(0.02)  # the scheduled connection_lost, if any, has run
    finally:
        peer.close()
    return events


def _reported(calls: list[dict]) -> list[tuple]:
    out = []
    for ctx in calls:
        exc = ctx.get("exception")
        cause = exc.__context__ if exc is not None else None
        out.append((type(exc).__name__, str(exc), type(cause).__name__, str(cause)))
    calls.clear()
    return out


@pytest.mark.parametrize("action", ["close", "write_after_reset"])
def test_connection_lost_after_resume_writing_matches_asyncio(
    loop, ref_loop, exc_calls, ref_exc_calls, action
):
    mine = run(loop, _resume_writing_scenario(loop, action))
    ref = run(ref_loop, _resume_writing_scenario(ref_loop, action))
    mine_reports, ref_reports = _reported(exc_calls), _reported(ref_exc_calls)
    assert mine == ref
    assert mine_reports == ref_reports
    error = {"close": None, "write_after_reset": "ConnectionResetError"}[action]
    if PY314:
        assert mine == ["pause", "resume", ("connection_lost", error)]
        assert mine_reports == []
    else:
        assert mine == ["pause", "resume", ("connection_lost", None)]
        assert [r[:2] for r in mine_reports] == [
            ("AttributeError", "'NoneType' object has no attribute 'close'")
        ]
