"""Unix stream sockets: create_unix_connection / create_unix_server, streams, sock_* on AF_UNIX."""

from __future__ import annotations

import asyncio
import errno
import os
import pathlib
import socket
import sys
import uuid

import pytest
from _net_support import Proto, accept, pattern, recv_exactly, recv_until_eof
from _support import PY313, run

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX")
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="abstract names are Linux-only")


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "s.sock")


class Recorder:
    def __init__(self, loop):
        self.loop = loop
        self.made = asyncio.Queue()

    def __call__(self):
        proto = Proto(self.loop)
        proto.made.add_done_callback(lambda _: self.made.put_nowait(proto))
        return proto


async def exchange(loop, server, recorder, connect_kwargs):
    """Connect a client transport, send both ways, close; returns (client, server) transports."""
    tr, proto = await loop.create_unix_connection(lambda: Proto(loop), **connect_kwargs)
    sproto = await recorder.made.get()
    tr.write(b"from client")
    assert await sproto.wait_bytes(11) == b"from client"
    sproto.transport.write(b"from server")
    assert await proto.wait_bytes(11) == b"from server"
    tr.write_eof()  # Unix stream transports half-close like TCP
    await sproto.eof
    await sproto.lost  # eof_received returned None: the server side closed
    await proto.lost
    assert proto.lost_calls == [None] and sproto.lost_calls == [None]
    return tr, sproto.transport


async def serve(loop, **kwargs):
    recorder = Recorder(loop)
    server = await loop.create_unix_server(recorder, **kwargs)
    return server, recorder


async def close(server):
    server.close()
    await server.wait_closed()


def test_path_round_trip(loop, path):
    async def main():
        server, recorder = await serve(loop, path=path)
        assert server.sockets[0].getsockname() == path
        assert server.sockets[0].family == socket.AF_UNIX
        tr, str_ = await exchange(loop, server, recorder, {"path": path})
        assert isinstance(tr, asyncio.Transport) and isinstance(str_, asyncio.Transport)
        assert tr.get_extra_info("peername") == path
        assert tr.get_extra_info("sockname") == ""
        assert str_.get_extra_info("sockname") == path
        assert tr.get_extra_info("socket").family == socket.AF_UNIX
        assert tr.can_write_eof()
        await close(server)

    run(loop, main())


def test_pathlike_path(loop, path):
    async def main():
        server, recorder = await serve(loop, path=pathlib.Path(path))
        await exchange(loop, server, recorder, {"path": pathlib.Path(path)})
        await close(server)

    run(loop, main())


@linux_only
@pytest.mark.parametrize("kind", [str, bytes])
def test_abstract_name(loop, kind):
    name = "\0ferroloop-test-" + uuid.uuid4().hex
    address = name if kind is str else name.encode()

    async def main():
        server, recorder = await serve(loop, path=address)
        assert server.sockets[0].getsockname() == name.encode()  # Linux reports bytes
        await exchange(loop, server, recorder, {"path": address})
        await close(server)

    run(loop, main())


def test_sock_arguments(loop, path):
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(path)

    async def main():
        server, recorder = await serve(loop, sock=listening)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
        tr, _ = await exchange(loop, server, recorder, {"sock": conn})
        assert conn.fileno() == -1  # the transport owned and closed it
        await close(server)
        assert listening.fileno() == -1

    run(loop, main())


def test_argument_errors(loop, path):
    async def main():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            with pytest.raises(ValueError, match="path and sock can not be specified"):
                await loop.create_unix_connection(asyncio.Protocol, path, sock=sock)
            with pytest.raises(ValueError, match="path and sock can not be specified"):
                await loop.create_unix_server(asyncio.Protocol, path, sock=sock)
        with pytest.raises(ValueError, match="no path and sock were specified"):
            await loop.create_unix_connection(asyncio.Protocol)
        with pytest.raises(ValueError, match="path was not specified, and no sock specified"):
            await loop.create_unix_server(asyncio.Protocol)
        with socket.socket() as tcp:
            with pytest.raises(ValueError, match="A UNIX Domain Stream Socket was expected"):
                await loop.create_unix_connection(asyncio.Protocol, sock=tcp)
            with pytest.raises(ValueError, match="A UNIX Domain Stream Socket was expected"):
                await loop.create_unix_server(asyncio.Protocol, sock=tcp)
        with pytest.raises(ValueError, match="you have to pass server_hostname when using ssl"):
            await loop.create_unix_connection(asyncio.Protocol, path, ssl=True)

    run(loop, main())


def test_connect_errors(loop, path):
    async def main():
        with pytest.raises(FileNotFoundError) as missing:
            await loop.create_unix_connection(asyncio.Protocol, path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
            stale.bind(path)  # a socket file nobody listens on
        with pytest.raises(ConnectionRefusedError) as refused:
            await loop.create_unix_connection(asyncio.Protocol, path)
        return missing.value, refused.value

    missing, refused = run(loop, main())
    assert missing.errno == errno.ENOENT
    assert refused.errno == errno.ECONNREFUSED


def test_stale_socket_file_is_replaced(loop, path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(path)
    os.link(path, path + ".keep")  # keeps the inode in use, so a new file gets another
    inode = os.stat(path).st_ino

    async def main():
        server, recorder = await serve(loop, path=path)
        assert os.stat(path).st_ino != inode
        await exchange(loop, server, recorder, {"path": path})
        await close(server)

    run(loop, main())


def test_path_in_use_by_a_regular_file(loop, path):
    pathlib.Path(path).write_text("not a socket")

    async def main():
        with pytest.raises(OSError) as info:
            await loop.create_unix_server(asyncio.Protocol, path)
        return info.value

    exc = run(loop, main())
    assert exc.errno == errno.EADDRINUSE
    assert str(exc) == f"[Errno {errno.EADDRINUSE}] Address {path!r} is already in use"
    assert pathlib.Path(path).read_text() == "not a socket"


@pytest.mark.parametrize(
    "cleanup", [None, True, False] if PY313 else [None], ids=lambda v: f"cleanup={v}"
)
def test_socket_file_after_close(loop, path, cleanup):
    kwargs = {} if cleanup is None else {"cleanup_socket": cleanup}

    async def main():
        server, _ = await serve(loop, path=path, **kwargs)
        assert os.path.exists(path)
        await close(server)
        return os.path.exists(path)

    removed = PY313 and cleanup is not False  # 3.13 unlinks the file it created by default
    assert run(loop, main()) is not removed


@pytest.mark.skipif(not PY313, reason="cleanup_socket is 3.13+")
def test_cleanup_leaves_a_replaced_file(loop, path):
    async def main():
        server, _ = await serve(loop, path=path)
        os.unlink(path)
        pathlib.Path(path).write_text("someone else's")
        await close(server)

    run(loop, main())
    assert pathlib.Path(path).read_text() == "someone else's"


def test_server_state(loop, path):
    async def main():
        server, recorder = await serve(loop, path=path, start_serving=False)
        assert not server.is_serving()
        assert server.get_loop() is loop
        await server.start_serving()
        assert server.is_serving()
        await exchange(loop, server, recorder, {"path": path})
        async with server:
            pass
        assert not server.is_serving() and server.sockets == ()

    run(loop, main())


def test_streams(loop, path):
    body = pattern(4 * 1024 * 1024)

    async def handler(reader, writer):
        line = await reader.readline()
        writer.write(line.upper())
        size = int(await reader.readexactly(8))
        data = await reader.readexactly(size)
        writer.write(b"%08d" % len(data))
        writer.write(data[-16:])
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_unix_server(handler, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"abc\n")
        assert await reader.readline() == b"ABC\n"
        writer.write(b"%08d" % len(body))
        writer.write(body)
        await writer.drain()
        assert await reader.readexactly(8) == b"%08d" % len(body)
        assert await reader.read() == body[-16:]
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_sock_calls_on_unix_sockets(loop, path):
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(path)
    listening.listen()
    listening.setblocking(False)
    payload = pattern(1024 * 1024)

    async def main():
        with listening, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            accepting = asyncio.ensure_future(accept(loop, listening))
            await loop.sock_connect(sock, path)
            with await accepting as conn:
                reading = asyncio.ensure_future(recv_exactly(loop, conn, len(payload)))
                await loop.sock_sendall(sock, payload)
                assert await reading == payload
                sock.shutdown(socket.SHUT_WR)
                assert await recv_until_eof(loop, conn) == b""

    run(loop, main())
