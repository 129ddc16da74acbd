"""connect_read_pipe / connect_write_pipe, on asyncio and ferroloop alike."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from _support import PY311, run


class Recorder(asyncio.Protocol):
    """Records every protocol call in order."""

    def __init__(self) -> None:
        self.events: list = []
        self.transport = None
        self.lost: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.events.append("made")

    def data_received(self, data) -> None:
        self.events.append(("data", data))

    def eof_received(self):
        self.events.append("eof")

    def pause_writing(self) -> None:
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        self.events.append("resume_writing")

    def connection_lost(self, exc) -> None:
        self.events.append(("lost", type(exc).__name__ if exc else None))
        self.lost.set_result(exc)

    def data(self) -> bytes:
        return b"".join(e[1] for e in self.events if isinstance(e, tuple) and e[0] == "data")

    def shape(self) -> list:
        """The events with the data chunks merged (chunking may differ)."""
        out: list = []
        for e in self.events:
            if isinstance(e, tuple) and e[0] == "data":
                if out and out[-1] == "data":
                    continue
                e = "data"
            out.append(e)
        return out


def test_read_pipe_data_then_eof(loop):
    async def main():
        r, w = os.pipe()
        rf = os.fdopen(r, "rb", 0)
        tr, proto = await loop.connect_read_pipe(Recorder, rf)
        assert tr.get_extra_info("pipe") is rf
        assert not tr.is_closing()
        if PY311:
            assert tr.is_reading()
        else:  # 3.10's read pipes leave it to ReadTransport, which raises
            with pytest.raises(NotImplementedError):
                tr.is_reading()
        os.write(w, b"hello ")
        os.write(w, b"world")
        os.close(w)
        await proto.lost
        assert tr.is_closing()
        return proto.shape(), proto.data(), rf.closed

    assert run(loop, main()) == (["made", "data", "eof", ("lost", None)], b"hello world", True)


def test_fifo_both_ways(loop, tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)

    async def main():
        rf = open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb", 0)  # noqa: SIM115
        wf = open(path, "wb", 0)  # noqa: SIM115 - closed by its transport
        tr, proto = await loop.connect_read_pipe(Recorder, rf)
        wtr, wproto = await loop.connect_write_pipe(Recorder, wf)
        wtr.write(b"through ")
        wtr.write(b"a fifo")
        wtr.close()
        await wproto.lost
        await proto.lost
        return proto.shape(), proto.data(), wproto.shape(), rf.closed, wf.closed

    assert run(loop, main()) == (
        ["made", "data", "eof", ("lost", None)],
        b"through a fifo",
        ["made", ("lost", None)],
        True,
        True,
    )


def test_read_pipe_large_stream(loop):
    payload = os.urandom(4 * 1024 * 1024)

    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_read_pipe(Recorder, os.fdopen(r, "rb", 0))
        wtr, wproto = await loop.connect_write_pipe(Recorder, os.fdopen(w, "wb", 0))
        wtr.write(payload)
        wtr.close()
        await wproto.lost
        await proto.lost
        return proto.data() == payload, proto.shape()[-2:]

    assert run(loop, main()) == (True, ["eof", ("lost", None)])


def test_read_pipe_pause_and_resume(loop):
    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_read_pipe(Recorder, os.fdopen(r, "rb", 0))
        tr.pause_reading()
        assert not PY311 or not tr.is_reading()
        os.write(w, b"x")
        for _ in range(5):
            await asyncio.sleep(0)
        paused_seen = proto.data()
        tr.resume_reading()
        assert not PY311 or tr.is_reading()
        os.close(w)
        await proto.lost
        return paused_seen, proto.data()

    assert run(loop, main()) == (b"", b"x")


def test_read_pipe_close_before_eof(loop):
    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_read_pipe(Recorder, os.fdopen(r, "rb", 0))
        tr.close()
        tr.close()
        await proto.lost
        os.close(w)
        return proto.events

    assert run(loop, main()) == ["made", ("lost", None)]


def test_read_pipe_data_received_error_keeps_reading(loop, exc_calls):
    class Failing(Recorder):
        def data_received(self, data):
            super().data_received(data)
            if len(self.events) == 2:
                raise ZeroDivisionError

    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_read_pipe(Failing, os.fdopen(r, "rb", 0))
        os.write(w, b"a")
        while len(proto.events) < 2:
            await asyncio.sleep(0)
        os.write(w, b"b")
        os.close(w)
        await proto.lost
        return proto.data()

    assert run(loop, main()) == b"ab"
    assert len(exc_calls) == 1
    assert isinstance(exc_calls[0]["exception"], ZeroDivisionError)
    assert exc_calls[0]["message"].startswith("Exception in callback ")
    exc_calls.clear()


def test_regular_file_is_refused(loop, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")

    async def main():
        errors = []
        with open(path, "rb") as f:
            with pytest.raises(ValueError) as e1:
                await loop.connect_read_pipe(asyncio.Protocol, f)
        errors.append(str(e1.value))
        with open(path, "wb") as f:
            with pytest.raises(ValueError) as e2:
                await loop.connect_write_pipe(asyncio.BaseProtocol, f)
        errors.append(str(e2.value))
        return errors

    assert run(loop, main()) == [
        "Pipe transport is for pipes/sockets only.",
        "Pipe transport is only for pipes, sockets and character devices",
    ]


def test_write_pipe_writes_and_closes(loop):
    async def main():
        r, w = os.pipe()
        wf = os.fdopen(w, "wb", 0)
        tr, proto = await loop.connect_write_pipe(Recorder, wf)
        assert tr.get_extra_info("pipe") is wf
        assert tr.can_write_eof()
        tr.write(b"abc")
        tr.write(bytearray(b"def"))
        tr.write(memoryview(b"ghi"))
        tr.writelines([b"j", b"k"])
        tr.write(b"")
        size = tr.get_write_buffer_size()
        tr.close()
        assert tr.is_closing()
        tr.write(b"dropped")  # after close: dropped silently, as asyncio
        await proto.lost
        data = os.read(r, 100)
        os.close(r)
        return size, data, proto.events, wf.closed

    assert run(loop, main()) == (0, b"abcdefghijk", ["made", ("lost", None)], True)


def test_write_pipe_rejects_str(loop):
    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_write_pipe(Recorder, os.fdopen(w, "wb", 0))
        with pytest.raises(AssertionError):
            tr.write("text")
        tr.close()
        await proto.lost
        os.close(r)

    run(loop, main())


def test_write_pipe_reader_closed_with_buffer_is_broken_pipe(loop):
    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_write_pipe(Recorder, os.fdopen(w, "wb", 0))
        tr.write(b"x" * (1024 * 1024))  # more than the pipe holds: buffered
        assert tr.get_write_buffer_size() > 0
        os.close(r)
        exc = await proto.lost
        return type(exc).__name__, tr.get_write_buffer_size(), proto.events[:2]

    assert run(loop, main()) == ("BrokenPipeError", 0, ["made", "pause_writing"])


def test_write_pipe_reader_closed_when_idle(loop):
    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_write_pipe(Recorder, os.fdopen(w, "wb", 0))
        tr.write(b"x")
        os.close(r)
        return await proto.lost, proto.events

    assert run(loop, main()) == (None, ["made", ("lost", None)])


def test_write_pipe_flow_control(loop):
    async def main():
        r, w = os.pipe()
        os.set_blocking(r, False)
        tr, proto = await loop.connect_write_pipe(Recorder, os.fdopen(w, "wb", 0))
        tr.set_write_buffer_limits(high=64 * 1024)
        tr.write(b"y" * (512 * 1024))
        paused = proto.events[-1]
        total = 0
        while total < 512 * 1024:
            await asyncio.sleep(0)
            try:
                total += len(os.read(r, 1 << 20))
            except BlockingIOError:
                pass
        tr.close()
        await proto.lost
        os.close(r)
        return paused, proto.events[-2:]

    assert run(loop, main()) == ("pause_writing", ["resume_writing", ("lost", None)])


def test_write_pipe_over_a_socket_sees_the_peer_close(loop):
    async def main():
        a, b = socket.socketpair()
        tr, proto = await loop.connect_write_pipe(Recorder, a)
        tr.write(b"hi")
        got = b.recv(10)
        b.close()
        exc = await proto.lost
        return got, exc, a.fileno()

    assert run(loop, main()) == (b"hi", None, -1)


def test_write_pipe_abort(loop):
    async def main():
        r, w = os.pipe()
        tr, proto = await loop.connect_write_pipe(Recorder, os.fdopen(w, "wb", 0))
        tr.write(b"z" * (1024 * 1024))
        tr.abort()
        exc = await proto.lost
        os.close(r)
        return exc, tr.get_write_buffer_size()

    assert run(loop, main()) == (None, 0)


def test_write_pipe_to_dev_null(loop):
    async def main():
        f = open(os.devnull, "wb", 0)  # noqa: SIM115 - the transport closes it
        tr, proto = await loop.connect_write_pipe(Recorder, f)
        tr.write(b"into the void")
        tr.close()
        await proto.lost
        return proto.events, f.closed

    assert run(loop, main()) == (["made", ("lost", None)], True)


def test_pipe_reprs(loop):
    async def main():
        r, w = os.pipe()
        rtr, rproto = await loop.connect_read_pipe(Recorder, os.fdopen(r, "rb", 0))
        wtr, wproto = await loop.connect_write_pipe(Recorder, os.fdopen(w, "wb", 0))
        reprs = [repr(rtr).split(" ", 1)[1], repr(wtr).split(" ", 1)[1]]
        wtr.close()
        await wproto.lost
        await rproto.lost
        reprs += [repr(rtr).split(" ", 1)[1], repr(wtr).split(" ", 1)[1]]
        return reprs

    reprs = run(loop, main())
    assert reprs[0].startswith("fd=") and reprs[0].endswith(" polling>")
    assert reprs[1].startswith("fd=") and reprs[1].endswith(" idle bufsize=0>")
    for text in reprs[2:]:
        assert text.startswith("closed fd=") and text.endswith(" closed>")
