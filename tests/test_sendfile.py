"""loop.sock_sendfile and loop.sendfile: the os.sendfile path, the read/send fallback, checks."""

from __future__ import annotations

import asyncio
import io
import socket

import pytest
from _net_support import (
    Proto,
    accept,
    make_listener,
    pattern,
    recv_exactly,
    recv_until_eof,
    send_end_and_collect,
)
from _support import run

SIZE = 3 * 1024 * 1024 + 17
DATA = pattern(SIZE)

# (offset, count) and the slice of DATA that should arrive
CASES = [
    pytest.param(0, None, id="whole"),
    pytest.param(1000, None, id="offset"),
    pytest.param(0, 4096, id="count"),
    pytest.param(12345, 1024 * 1024, id="offset-count"),
    pytest.param(SIZE - 10, 1000, id="count-past-end"),
    pytest.param(SIZE + 10, None, id="offset-past-end"),
]


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    with open(path, "rb") as f:
        yield f


def expected_slice(offset, count):
    return DATA[offset:] if count is None else DATA[offset : offset + count]


async def _sock_sendfile(loop, pair, file, offset, count, **kwargs):
    a, b = pair
    reading = asyncio.ensure_future(recv_until_eof(loop, b))
    sent = await loop.sock_sendfile(a, file, offset, count, **kwargs)
    a.shutdown(socket.SHUT_WR)
    return sent, await reading


# -- sock_sendfile ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "count"), CASES)
def test_sock_sendfile_real_file(loop, pair, data_file, offset, count):
    sent, got = run(loop, _sock_sendfile(loop, pair, data_file, offset, count, fallback=False))
    expected = expected_slice(offset, count)
    assert got == expected
    assert sent == len(expected)
    if sent:  # asyncio leaves the file position after what it sent
        assert data_file.tell() == offset + sent


@pytest.mark.parametrize(("offset", "count"), CASES)
def test_sock_sendfile_fallback(loop, pair, offset, count):
    file = io.BytesIO(DATA)  # no fileno(): os.sendfile cannot be used

    sent, got = run(loop, _sock_sendfile(loop, pair, file, offset, count))
    expected = expected_slice(offset, count)
    assert got == expected
    assert sent == len(expected)
    if sent:
        assert file.tell() == offset + sent


def test_sock_sendfile_empty_file(loop, pair, tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with open(path, "rb") as f:
        assert run(loop, _sock_sendfile(loop, pair, f, 0, None)) == (0, b"")


def test_sock_sendfile_no_fallback(loop, pair):
    async def main():
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sock_sendfile(pair[0], io.BytesIO(b"x"), fallback=False)

    run(loop, main())


def test_sock_sendfile_argument_checks(loop, pair, data_file, tmp_path):
    a, _ = pair
    text_path = tmp_path / "text.txt"
    text_path.write_text("text")

    async def main():
        with open(text_path) as text:
            with pytest.raises(ValueError, match="file should be opened in binary mode"):
                await loop.sock_sendfile(a, text)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.setblocking(False)
            with pytest.raises(ValueError, match="only SOCK_STREAM type sockets are supported"):
                await loop.sock_sendfile(udp, data_file)
        for count in (0, -1):
            with pytest.raises(ValueError, match="count must be a positive integer"):
                await loop.sock_sendfile(a, data_file, 0, count)
        with pytest.raises(TypeError, match="count must be a positive integer"):
            await loop.sock_sendfile(a, data_file, 0, 1.5)
        with pytest.raises(ValueError, match="offset must be a non-negative integer"):
            await loop.sock_sendfile(a, data_file, -1)
        with pytest.raises(TypeError, match="offset must be a non-negative integer"):
            await loop.sock_sendfile(a, data_file, "0")

    run(loop, main())


def test_sock_sendfile_blocking_socket_in_debug_mode(loop, data_file):
    loop.set_debug(True)
    a, b = socket.socketpair()
    with a, b:

        async def main():
            with pytest.raises(ValueError, match="the socket must be non-blocking"):
                await loop.sock_sendfile(a, data_file)

        run(loop, main())


def test_sock_sendfile_over_tcp(loop, data_file):
    async def main():
        with make_listener() as listener, socket.socket() as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, listener.getsockname())
            with await accept(loop, listener) as peer:
                reading = asyncio.ensure_future(recv_exactly(loop, peer, SIZE))
                sent = await loop.sock_sendfile(sock, data_file)
                return sent, await reading

    assert run(loop, main()) == (SIZE, DATA)


# -- loop.sendfile on a transport ------------------------------------------------------------------


async def _transport_sendfile(loop, file, offset, count, **kwargs):
    with make_listener() as listener:
        tr, proto = await loop.create_connection(lambda: Proto(loop), *listener.getsockname())
        peer = await accept(loop, listener)
    with peer:
        reading = asyncio.ensure_future(recv_until_eof(loop, peer))
        tr.write(b"<head>")  # queued data goes out before the file
        sent = await loop.sendfile(tr, file, offset, count, **kwargs)
        assert tr.is_reading()  # reading resumes after the transfer
        assert not tr.is_closing()
        tr.write(b"<tail>")
        await loop.sock_sendall(peer, b"reply")
        await proto.wait_bytes(5)
        tr.close()
        await proto.lost
        return sent, await reading, proto


@pytest.mark.parametrize(("offset", "count"), CASES)
def test_sendfile_transport(loop, data_file, offset, count):
    sent, got, proto = run(loop, _transport_sendfile(loop, data_file, offset, count))
    expected = expected_slice(offset, count)
    assert sent == len(expected)
    assert got == b"<head>" + expected + b"<tail>"
    assert proto.data == b"reply" and proto.lost_calls == [None]
    if sent:
        assert data_file.tell() == offset + sent


@pytest.mark.parametrize(("offset", "count"), CASES[:4])
def test_sendfile_transport_fallback(loop, offset, count):
    file = io.BytesIO(DATA)
    sent, got, _ = run(loop, _transport_sendfile(loop, file, offset, count))
    expected = expected_slice(offset, count)
    assert sent == len(expected)
    assert got == b"<head>" + expected + b"<tail>"
    assert file.tell() == offset + sent


def test_sendfile_transport_no_fallback(loop):
    async def main():
        with make_listener() as listener:
            tr, proto = await loop.create_connection(lambda: Proto(loop), *listener.getsockname())
            peer = await accept(loop, listener)
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sendfile(tr, io.BytesIO(b"x"), fallback=False)
        assert tr.is_reading()  # the transport is left as it was
        tr.write(b"ok")
        assert await recv_exactly(loop, peer, 2) == b"ok"
        tr.close()
        await proto.lost
        peer.close()

    run(loop, main())


def test_sendfile_closing_transport(loop, data_file):
    async def main():
        with make_listener() as listener:
            tr, proto = await loop.create_connection(lambda: Proto(loop), *listener.getsockname())
            peer = await accept(loop, listener)
        tr.close()
        with pytest.raises(RuntimeError, match="Transport is closing"):
            await loop.sendfile(tr, data_file)
        await proto.lost
        peer.close()

    run(loop, main())


def test_cancel_sock_sendfile_leaves_socket_usable(loop, pair, tmp_path):
    a, b = pair
    path = tmp_path / "big.bin"
    big = pattern(32 * 1024 * 1024)  # far more than a socketpair buffers
    path.write_bytes(big)

    async def main():
        with open(path, "rb") as f:
            fut = asyncio.ensure_future(loop.sock_sendfile(a, f))
            for _ in range(3):
                await asyncio.sleep(0)
            assert not fut.done()
            fut.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fut
        assert loop.remove_writer(a) is False
        return await send_end_and_collect(loop, a, b)

    got = run(loop, main())
    sent = len(got) - 3
    assert 0 < sent < len(big)
    assert got == big[:sent] + b"END"
