"""loop.create_server and asyncio.Server: addresses, socket options, serving, closing.

Where the result depends on the host (which address families exist), the test runs the same
call on a stdlib loop (``ref_loop``) and compares.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import subprocess
import sys

import pytest
from _net_support import LOCALHOST, Proto, ipv6_loopback
from _support import PY313, run

needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
# wait_closed() waits for the connections only since 3.12.1 (see asyncio.Server.wait_closed).
WAIT_CLOSED_WAITS_FOR_CLIENTS = sys.version_info >= (3, 12, 1)


class Recorder:
    """A protocol factory that keeps the protocols it made."""

    def __init__(self, loop):
        self.loop = loop
        self.protos: list[Proto] = []
        self.made = asyncio.Queue()

    def __call__(self):
        proto = Proto(self.loop)
        self.protos.append(proto)
        proto.made.add_done_callback(lambda _: self.made.put_nowait(proto))
        return proto


def addr_of(server, index=0):
    return server.sockets[index].getsockname()[:2]


async def client(loop, addr, family=socket.AF_INET):
    """A raw connected client socket (non-blocking)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, addr)
    except BaseException:
        sock.close()
        raise
    return sock


async def round_trip(loop, server, recorder, index=0):
    """Connect to ``server``, check the server side sees the data, close both ends."""
    addr = server.sockets[index].getsockname()
    with await client(loop, addr, server.sockets[index].family) as sock:
        proto = await recorder.made.get()
        await loop.sock_sendall(sock, b"hi")
        await proto.wait_bytes(2)
        proto.transport.close()
        await proto.lost
        return proto


async def close(server):
    server.close()
    await server.wait_closed()


def families(server):
    return sorted(s.family for s in server.sockets)


# -- addresses -------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", [None, ""], ids=["None", "empty"])
def test_all_interfaces(loop, ref_loop, host):
    async def start(lp):
        return await lp.create_server(asyncio.Protocol, host, 0)

    ref = run(ref_loop, start(ref_loop))
    expected = families(ref)
    run(ref_loop, close(ref))

    async def main():
        recorder = Recorder(loop)
        server = await loop.create_server(recorder, host, 0)
        assert families(server) == expected
        for index, sock in enumerate(server.sockets):
            assert sock.getsockname()[0] in ("0.0.0.0", "::")
            if sock.family == socket.AF_INET6:  # IPV6_V6ONLY so that each family has its own
                assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
                if not ipv6_loopback():
                    continue
            await round_trip(loop, server, recorder, index)
        await close(server)

    run(loop, main())


def test_list_of_hosts(loop):
    hosts = [LOCALHOST, "::1"] if ipv6_loopback() else [LOCALHOST]

    async def main():
        recorder = Recorder(loop)
        server = await loop.create_server(recorder, [*hosts, LOCALHOST], 0)
        # duplicates collapse: one socket per distinct address
        assert sorted(s.getsockname()[0] for s in server.sockets) == sorted(hosts)
        for index in range(len(hosts)):
            await round_trip(loop, server, recorder, index)
        await close(server)

    run(loop, main())


def test_port_zero_and_fixed_port(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, LOCALHOST, 0)
        host, port = addr_of(server)
        assert host == LOCALHOST and port > 0
        await close(server)
        again = await loop.create_server(asyncio.Protocol, LOCALHOST, port)  # SO_REUSEADDR
        assert addr_of(again) == (LOCALHOST, port)
        await close(again)

    run(loop, main())


def test_sock_argument(loop):
    sock = socket.socket()
    sock.bind((LOCALHOST, 0))

    async def main():
        recorder = Recorder(loop)
        server = await loop.create_server(recorder, sock=sock)
        assert sock.gettimeout() == 0.0
        assert server.sockets[0].fileno() == sock.fileno()
        await round_trip(loop, server, recorder)
        await close(server)
        assert sock.fileno() == -1  # closing the server closes the socket

    run(loop, main())


def test_argument_errors(loop):
    async def main():
        with socket.socket() as sock:
            with pytest.raises(ValueError, match="host/port and sock can not be specified"):
                await loop.create_server(asyncio.Protocol, LOCALHOST, 0, sock=sock)
        with pytest.raises(ValueError, match="Neither host/port nor sock were specified"):
            await loop.create_server(asyncio.Protocol)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await loop.create_server(asyncio.Protocol, sock=udp)
        with pytest.raises(TypeError, match="ssl argument must be an SSLContext or None"):
            await loop.create_server(asyncio.Protocol, LOCALHOST, 0, ssl=True)
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await loop.create_server(asyncio.Protocol, LOCALHOST, 0, ssl_handshake_timeout=1)

    run(loop, main())


def test_address_in_use_matches_asyncio(loop, ref_loop):
    with socket.socket() as busy:
        busy.bind((LOCALHOST, 0))
        busy.listen()
        port = busy.getsockname()[1]

        async def attempt(lp):
            with pytest.raises(OSError) as info:
                await lp.create_server(asyncio.Protocol, LOCALHOST, port, reuse_address=False)
            return info.value

        expected = run(ref_loop, attempt(ref_loop))
        exc = run(loop, attempt(loop))
    assert type(exc) is type(expected)
    assert exc.errno == expected.errno == errno.EADDRINUSE
    assert str(exc) == str(expected)


# -- socket options --------------------------------------------------------------------------------


@pytest.mark.parametrize("reuse_address", [None, True, False])
def test_reuse_address(loop, ref_loop, reuse_address):
    async def option(lp):
        server = await lp.create_server(asyncio.Protocol, LOCALHOST, 0, reuse_address=reuse_address)
        value = server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        await close(server)
        return bool(value)

    assert run(loop, option(loop)) == run(ref_loop, option(ref_loop))


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_reuse_port(loop):
    async def main():
        first = await loop.create_server(asyncio.Protocol, LOCALHOST, 0, reuse_port=True)
        assert first.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        port = addr_of(first)[1]
        second = await loop.create_server(asyncio.Protocol, LOCALHOST, port, reuse_port=True)
        assert addr_of(second) == (LOCALHOST, port)
        with pytest.raises(OSError) as info:
            await loop.create_server(asyncio.Protocol, LOCALHOST, port)
        assert info.value.errno == errno.EADDRINUSE
        await close(first)
        await close(second)

    run(loop, main())


def _listen_backlog(sock) -> int:
    # Linux reports a listening socket's backlog as tcp_info.tcpi_sacked (see tcp_get_info).
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("8B6I", info)[13]


@pytest.mark.parametrize("backlog", [None, 7])
def test_backlog(loop, backlog):
    with open("/proc/sys/net/core/somaxconn") as f:
        somaxconn = int(f.read())
    kwargs = {} if backlog is None else {"backlog": backlog}

    async def main():
        server = await loop.create_server(asyncio.Protocol, LOCALHOST, 0, **kwargs)
        value = _listen_backlog(server.sockets[0])
        await close(server)
        return value

    assert run(loop, main()) == min(100 if backlog is None else backlog, somaxconn)


@pytest.mark.skipif(not PY313, reason="keep_alive is 3.13+")
@pytest.mark.parametrize("keep_alive", [True, False])
def test_keep_alive(loop, keep_alive):
    async def main():
        recorder = Recorder(loop)
        server = await loop.create_server(recorder, LOCALHOST, 0, keep_alive=keep_alive)
        listening = server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        with await client(loop, addr_of(server)):
            proto = await recorder.made.get()
            accepted = proto.transport.get_extra_info("socket").getsockopt(
                socket.SOL_SOCKET, socket.SO_KEEPALIVE
            )
            proto.transport.close()
            await proto.lost
        await close(server)
        return bool(listening), bool(accepted)

    assert run(loop, main()) == (keep_alive, keep_alive)


# -- serving ---------------------------------------------------------------------------------------


def test_server_basics(loop):
    async def main():
        recorder = Recorder(loop)
        server = await loop.create_server(recorder, LOCALHOST, 0)
        assert isinstance(server, asyncio.AbstractServer)
        assert server.get_loop() is loop
        assert server.is_serving()
        assert isinstance(server.sockets, tuple) and len(server.sockets) == 1
        sock = server.sockets[0]
        assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
        addr = sock.getsockname()
        proto = await round_trip(loop, server, recorder)
        tr = proto.transport
        assert isinstance(tr, asyncio.Transport)
        assert tr.get_extra_info("sockname") == addr_of(server)
        assert proto.lost_calls == [None]
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        await server.wait_closed()
        server.close()  # idempotent
        with pytest.raises(ConnectionRefusedError):
            await client(loop, addr)

    run(loop, main())


def test_start_serving_false(loop):
    async def main():
        recorder = Recorder(loop)
        server = await loop.create_server(recorder, LOCALHOST, 0, start_serving=False)
        assert not server.is_serving()
        sock = server.sockets[0]
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)  # not listening
        with pytest.raises(ConnectionRefusedError):
            await client(loop, sock.getsockname())
        await server.start_serving()
        assert server.is_serving()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        await server.start_serving()  # no-op when serving
        await round_trip(loop, server, recorder)
        await close(server)

    run(loop, main())


def test_serve_forever_cancelled(loop):
    async def main():
        recorder = Recorder(loop)
        server = await loop.create_server(recorder, LOCALHOST, 0, start_serving=False)
        task = loop.create_task(server.serve_forever())
        await asyncio.sleep(0)
        assert server.is_serving()
        with pytest.raises(RuntimeError, match="already being awaited on serve_forever"):
            await server.serve_forever()
        await round_trip(loop, server, recorder)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
        assert server.sockets == ()
        with pytest.raises(RuntimeError, match="is closed"):
            await server.serve_forever()

    run(loop, main())


def test_serve_forever_ends_when_closed(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, LOCALHOST, 0)
        task = loop.create_task(server.serve_forever())
        await asyncio.sleep(0)
        server.close()
        with pytest.raises(asyncio.CancelledError):
            await task
        await server.wait_closed()

    run(loop, main())


def test_async_with(loop):
    async def main():
        recorder = Recorder(loop)
        server = await loop.create_server(recorder, LOCALHOST, 0, start_serving=False)
        async with server as entered:
            assert entered is server
            await server.start_serving()
            await round_trip(loop, server, recorder)
        assert not server.is_serving()
        assert server.sockets == ()

    run(loop, main())


def test_wait_closed_and_open_connections(loop):
    async def main():
        recorder = Recorder(loop)
        server = await loop.create_server(recorder, LOCALHOST, 0)
        sock = await client(loop, addr_of(server))
        proto = await recorder.made.get()
        server.close()
        waiter = asyncio.ensure_future(server.wait_closed())
        for _ in range(5):
            await asyncio.sleep(0.001)
        waited = not waiter.done()
        proto.transport.write(b"still open")  # closing the server leaves connections alone
        assert await loop.sock_recv(sock, 100) == b"still open"
        proto.transport.close()
        await proto.lost
        await waiter
        sock.close()
        return waited

    assert run(loop, main()) is WAIT_CLOSED_WAITS_FOR_CLIENTS


@pytest.mark.skipif(not PY313, reason="close_clients/abort_clients are 3.13+")
@pytest.mark.parametrize("how", ["close_clients", "abort_clients"])
def test_close_and_abort_clients(loop, how):
    async def main():
        recorder = Recorder(loop)
        server = await loop.create_server(recorder, LOCALHOST, 0)
        socks = [await client(loop, addr_of(server)) for _ in range(3)]
        protos = [await recorder.made.get() for _ in socks]
        protos[0].transport.close()  # one already gone: the others are still closed
        await protos[0].lost
        for proto in protos[1:]:
            proto.transport.write(b"queued")
        server.close()
        getattr(server, how)()
        await asyncio.gather(*(p.lost for p in protos))
        await server.wait_closed()
        received = []
        for sock in socks:
            chunks = b""
            while chunk := await loop.sock_recv(sock, 100):
                chunks += chunk
            received.append(chunks)
            sock.close()
        return [p.lost_calls for p in protos], received

    lost_calls, received = run(loop, main())
    assert lost_calls == [[None]] * 3
    assert received[0] == b""
    assert all(data in (b"queued", b"") for data in received[1:])
    if how == "close_clients":
        assert received[1:] == [b"queued", b"queued"]  # close() flushes first


# A server process for the multi-process test: serves on the port given with reuse_port,
# answering each connection with its pid, until its stdin closes.
_REUSE_PORT_SERVER = """
import asyncio, os, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "ferroloop":
    import ferroloop
    lp = ferroloop.new_event_loop()
else:
    lp = asyncio.SelectorEventLoop()

class Pid(asyncio.Protocol):
    def connection_made(self, transport):
        transport.write(b"%d\\n" % os.getpid())
        transport.close()

server = lp.run_until_complete(lp.create_server(Pid, host, port, reuse_port=True))
lp.add_reader(sys.stdin.fileno(), lp.stop)
print("READY", flush=True)
lp.run_forever()
server.close()
lp.run_until_complete(server.wait_closed())
lp.close()
"""


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_reuse_port_spreads_connections_over_processes(loop_kind):
    """Scaling past one core: several processes serve one port, the kernel spreads clients."""
    if loop_kind == "ferroloop":
        pytest.importorskip("ferroloop")
    # Hold the port (bound, not listening, so it takes no connections) while the servers start.
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((LOCALHOST, 0))
    port = holder.getsockname()[1]
    servers = [
        subprocess.Popen(
            [sys.executable, "-c", _REUSE_PORT_SERVER, loop_kind, LOCALHOST, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in servers:
            assert proc.stdout.readline().strip() == "READY"
        holder.close()
        pids = set()
        # The kernel picks a listener by a hash of the client's address: 64 connections all
        # landing on one of two processes has probability 2**-63.
        for _ in range(64):
            with socket.create_connection((LOCALHOST, port), timeout=10) as client:
                pids.add(int(client.makefile().readline()))
        assert pids == {proc.pid for proc in servers}
    finally:
        holder.close()
        for proc in servers:
            proc.stdin.close()
        for proc in servers:
            assert proc.wait(timeout=30) == 0
