"""TCP: create_connection, connect_accepted_socket, the socket transport API, asyncio streams.

The peer is usually a plain non-blocking socket driven with loop.sock_*, so that what the
transport under test does is observed from outside. Servers have their own file
(test_server.py); faults and load are in test_faults.py; sendfile in test_sendfile.py.

This file is longer than most (~850 lines) on purpose: it is the one place that walks the whole
stream-transport API in asyncio's order, which is what the native transports are checked against.
"""

from __future__ import annotations

import array
import asyncio
import contextvars
import errno
import socket
from asyncio import selector_events

import pytest
from _net_support import (
    LOCALHOST,
    Proto,
    accept,
    closed_port,
    ipv6_loopback,
    make_listener,
    pattern,
    recv_exactly,
    recv_until_eof,
    reset,
)
from _support import PY311, PY312, run

HIGH = 128 * 1024


@pytest.fixture
def listener():
    sock = make_listener()
    yield sock
    sock.close()


async def connect(loop, listener, factory=None, **kwargs):
    """create_connection to ``listener``: (transport, protocol, the accepted peer socket)."""
    factory = factory or (lambda: Proto(loop))
    tr, proto = await loop.create_connection(factory, *listener.getsockname()[:2], **kwargs)
    peer = await accept(loop, listener)
    return tr, proto, peer


async def finish(tr, proto, peer=None):
    """Close the transport, wait for connection_lost, close the peer."""
    tr.close()
    await proto.lost
    if peer is not None:
        peer.close()


async def settle(n: int = 5) -> None:
    """Give the loop a few iterations with I/O polling (only ever makes a check stricter)."""
    for _ in range(n):
        await asyncio.sleep(0.001)


# -- create_connection -----------------------------------------------------------------------------


def test_create_connection_host_port(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        assert proto.events == ["made"]  # connection_made ran before create_connection returned
        assert proto.transport is tr
        assert isinstance(tr, asyncio.Transport)
        assert isinstance(tr, asyncio.ReadTransport) and isinstance(tr, asyncio.WriteTransport)
        assert tr.get_extra_info("peername") == listener.getsockname()
        assert tr.get_extra_info("sockname") == peer.getpeername()
        assert not tr.is_closing()
        await finish(tr, proto, peer)
        assert proto.lost_calls == [None]

    run(loop, main())


def test_create_connection_sock(loop, listener):
    sock = socket.create_connection(listener.getsockname())  # blocking and connected

    async def main():
        tr, proto = await loop.create_connection(lambda: Proto(loop), sock=sock)
        assert sock.gettimeout() == 0.0  # the loop made it non-blocking
        peer = await accept(loop, listener)
        tr.write(b"via sock=")
        assert await recv_exactly(loop, peer, 9) == b"via sock="
        await finish(tr, proto, peer)
        assert sock.fileno() == -1  # the transport closed the socket it was given

    run(loop, main())


def test_create_connection_argument_errors(loop, listener):
    host, port = listener.getsockname()

    async def main():
        factory = asyncio.Protocol
        with socket.socket() as sock:
            with pytest.raises(ValueError, match="can not be specified at the same time"):
                await loop.create_connection(factory, host, port, sock=sock)
        with pytest.raises(ValueError, match="host and port was not specified"):
            await loop.create_connection(factory)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await loop.create_connection(factory, sock=udp)
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await loop.create_connection(factory, host, port, ssl_handshake_timeout=1)
        if PY311:
            with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful"):
                await loop.create_connection(factory, host, port, ssl_shutdown_timeout=1)
        with pytest.raises(ValueError, match="server_hostname is only meaningful"):
            await loop.create_connection(factory, host, port, server_hostname="x")

    run(loop, main())


def test_create_connection_local_addr(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener, local_addr=(LOCALHOST, 0))
        sockname = tr.get_extra_info("sockname")
        assert sockname[0] == LOCALHOST and sockname == peer.getpeername()
        await finish(tr, proto, peer)

        port = closed_port()
        tr, proto, peer = await connect(loop, listener, local_addr=(LOCALHOST, port))
        assert tr.get_extra_info("sockname") == (LOCALHOST, port)
        await finish(tr, proto, peer)

    run(loop, main())


def test_create_connection_local_addr_in_use(loop, ref_loop, listener):
    laddr = listener.getsockname()

    async def attempt(lp):
        with pytest.raises(OSError) as info:
            await lp.create_connection(asyncio.Protocol, *laddr, local_addr=laddr)
        return info.value

    exc = run(loop, attempt(loop))
    expected = run(ref_loop, attempt(ref_loop))  # the wording changed in 3.13
    assert type(exc) is type(expected)
    assert exc.errno == expected.errno == errno.EADDRINUSE
    assert str(exc) == str(expected)
    assert str(exc).startswith(f"[Errno {errno.EADDRINUSE}] error while attempting to bind")


def test_create_connection_family(loop, listener):
    port = listener.getsockname()[1]

    async def main():
        tr, proto = await loop.create_connection(
            lambda: Proto(loop), "localhost", port, family=socket.AF_INET
        )
        peer = await accept(loop, listener)
        assert tr.get_extra_info("socket").family == socket.AF_INET
        assert tr.get_extra_info("peername") == (LOCALHOST, port)
        await finish(tr, proto, peer)

    run(loop, main())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"happy_eyeballs_delay": 0.25},
        {"happy_eyeballs_delay": 0.0, "interleave": 2},
        {"interleave": 1},
    ],
    ids=["delay", "delay-interleave", "interleave"],
)
def test_create_connection_happy_eyeballs(loop, listener, kwargs):
    port = listener.getsockname()[1]

    async def main():
        tr, proto = await loop.create_connection(lambda: Proto(loop), "localhost", port, **kwargs)
        peer = await accept(loop, listener)
        tr.write(b"eyeballs")
        assert await recv_exactly(loop, peer, 8) == b"eyeballs"
        await finish(tr, proto, peer)

        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, LOCALHOST, closed_port(), **kwargs)

    run(loop, main())


@pytest.mark.skipif(not PY312, reason="all_errors is 3.12+")
def test_create_connection_all_errors(loop):
    port = closed_port()

    async def main():
        try:
            await loop.create_connection(asyncio.Protocol, LOCALHOST, port, all_errors=True)
        except Exception as exc:  # noqa: BLE001 - ExceptionGroup is not a name on 3.10
            return exc
        raise AssertionError("create_connection did not fail")

    group = run(loop, main())
    assert type(group).__name__ == "ExceptionGroup"
    assert group.message == "create_connection failed"
    [exc] = group.exceptions
    assert isinstance(exc, ConnectionRefusedError) and exc.errno == errno.ECONNREFUSED


def test_connect_accepted_socket(loop, listener):
    async def main():
        with socket.socket() as client:
            client.setblocking(False)
            await loop.sock_connect(client, listener.getsockname())
            conn, _ = listener.accept()
            tr, proto = await loop.connect_accepted_socket(lambda: Proto(loop), conn)
            assert proto.transport is tr and isinstance(tr, asyncio.Transport)
            assert tr.get_extra_info("peername") == client.getsockname()
            await loop.sock_sendall(client, b"hello")
            await proto.wait_bytes(5)
            tr.write(b"world")
            assert await recv_exactly(loop, client, 5) == b"world"
            await finish(tr, proto)
            assert await recv_until_eof(loop, client) == b""

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await loop.connect_accepted_socket(asyncio.Protocol, udp)

    run(loop, main())


# -- writing ---------------------------------------------------------------------------------------


def test_write_bytes_like_and_writelines(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        tr.write(b"bytes|")
        tr.write(bytearray(b"bytearray|"))
        tr.write(memoryview(b"--memoryview|--")[2:-2])
        tr.write(b"")
        tr.writelines([b"a", bytearray(b"b"), memoryview(b"c")])
        tr.writelines([])
        big = pattern(1024 * 1024)
        tr.write(memoryview(big))
        expected = b"bytes|bytearray|memoryview|abc" + big
        got = await recv_exactly(loop, peer, len(expected))
        await finish(tr, proto, peer)
        return got == expected

    assert run(loop, main())


def test_queued_writes_of_every_kind_arrive_in_order(loop, listener):
    # The peer reads nothing at first, so most of this is queued (ferroloop keeps bytes by
    # reference after a partial send and copies the rest; asyncio 3.12+ keeps views of all).
    async def main():
        tr, proto, peer = await connect(loop, listener)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        tr.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        first = pattern(200_000, seed=1)
        tr.write(first)
        mutable = bytearray(pattern(100_000, seed=2))
        tr.write(mutable)
        view_of = bytearray(pattern(50_000, seed=3))
        tr.write(memoryview(view_of)[1:])
        listed = bytearray(b"listed")
        tr.writelines([pattern(30_000, seed=4), listed])
        expected = first + mutable + view_of[1:] + pattern(30_000, seed=4) + b"listed"
        queued = tr.get_write_buffer_size()
        assert 0 < queued <= len(expected)
        got = await recv_exactly(loop, peer, len(expected))
        await settle()
        left = tr.get_write_buffer_size()
        await finish(tr, proto, peer)
        return got == expected, left

    assert run(loop, main()) == (True, 0)


def test_reads_of_every_size_arrive_whole(loop, listener):
    # Large reads and small ones after them (the transport reads differently after large ones).
    async def main():
        tr, proto, peer = await connect(loop, listener)
        sizes = [300_000, 5, 70_000, 1, 20_000, 3, 1_000_000, 17]
        expected = b""
        for i, size in enumerate(sizes):
            chunk = pattern(size, seed=i)
            expected += chunk
            await loop.sock_sendall(peer, chunk)
            await proto.wait_bytes(len(expected))
        await finish(tr, proto, peer)
        return bytes(proto.data) == expected

    assert run(loop, main())


def _asyncio_write_error(data) -> str:
    """The message of asyncio's own transport for a write of ``data`` (its first check)."""
    with pytest.raises(TypeError) as err:
        selector_events._SelectorSocketTransport.write(None, data)
    return str(err.value)


def test_write_rejects_non_bytes(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        for data in ("str", 123):
            with pytest.raises(TypeError) as err:
                tr.write(data)
            assert str(err.value) == _asyncio_write_error(data)
        with pytest.raises(TypeError):
            tr.writelines(["str"])
        await finish(tr, proto, peer)

    run(loop, main())


def test_write_and_writelines_any_buffer_format(loop, listener):
    # writelines only with one-byte formats: asyncio 3.12+ counts a queued view's len() (its
    # items) as bytes sent, and fails (IndexError) with wider ones.
    async def main():
        tr, proto, peer = await connect(loop, listener)
        ints = array.array("i", [1, 2])
        tr.write(memoryview(ints))
        tr.write(memoryview(bytearray(b"abcd")).cast("I"))
        tr.writelines([array.array("b", b"xy"), memoryview(array.array("b", b"z"))])
        expected = ints.tobytes() + b"abcd" + b"xyz"
        got = await recv_exactly(loop, peer, len(expected))
        await finish(tr, proto, peer)
        return got == expected

    assert run(loop, main())


def test_reading_control_on_a_closed_loop(loop, listener):
    # asyncio: pause_reading only drops the reader (nothing to drop on a closed loop); resuming
    # marks the transport reading, then fails adding the reader.
    async def main():
        return await connect(loop, listener)

    tr, proto, peer = run(loop, main())
    loop.close()
    tr.pause_reading()
    assert not tr.is_reading()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        tr.resume_reading()
    assert tr.is_reading()
    tr.resume_reading()  # reading already: nothing to do
    tr.pause_reading()
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        tr.resume_reading()
    tr.get_extra_info("socket")._sock.close()  # the transport cannot close on a closed loop
    peer.close()


def test_write_eof(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        assert tr.can_write_eof() is True
        tr.write(b"last words")
        tr.write_eof()
        tr.write_eof()  # a no-op the second time
        assert not tr.is_closing()
        assert await recv_until_eof(loop, peer) == b"last words"
        with pytest.raises(RuntimeError, match="Cannot call write\\(\\) after write_eof\\(\\)"):
            tr.write(b"more")
        await loop.sock_sendall(peer, b"still reading")  # the other direction is open
        assert await proto.wait_bytes(13) == b"still reading"
        await finish(tr, proto, peer)
        assert proto.lost_calls == [None]

    run(loop, main())


def test_write_after_close_is_dropped(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        tr.close()
        tr.write(b"dropped")  # no error: the data is discarded
        await proto.lost
        tr.write(b"dropped too")
        assert await recv_until_eof(loop, peer) == b""
        peer.close()

    run(loop, main())


# -- closing ---------------------------------------------------------------------------------------


def test_close(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        tr.write(b"flushed before the FIN")
        tr.close()
        assert tr.is_closing()
        assert not tr.is_reading()
        tr.close()  # idempotent
        assert await recv_until_eof(loop, peer) == b"flushed before the FIN"
        await proto.lost
        await settle()
        assert proto.lost_calls == [None]
        assert proto.events == ["made", "lost"]
        # extra info outlives the connection
        assert tr.get_extra_info("peername") == listener.getsockname()
        peer.close()

    run(loop, main())


def test_abort(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        tr.abort()
        assert tr.is_closing()
        tr.abort()
        tr.close()
        await proto.lost
        await settle()
        assert proto.lost_calls == [None]
        assert await recv_until_eof(loop, peer) == b""
        peer.close()

    run(loop, main())


def test_close_then_abort_calls_connection_lost_once(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        tr.set_write_buffer_limits(high=1 << 30)
        while tr.get_write_buffer_size() == 0:  # the peer is not reading: data queues
            tr.write(pattern(1 << 20))
        tr.close()
        assert not proto.lost.done()
        tr.abort()
        await proto.lost
        await settle()
        assert proto.lost_calls == [None]
        assert tr.get_write_buffer_size() == 0
        peer.close()

    run(loop, main())


# -- extra info ------------------------------------------------------------------------------------


def test_get_extra_info(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        sock = tr.get_extra_info("socket")
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_STREAM
        assert sock.fileno() >= 0
        assert sock.getsockname() == tr.get_extra_info("sockname") == peer.getpeername()
        assert sock.getpeername() == tr.get_extra_info("peername") == peer.getsockname()
        assert tr.get_extra_info("no-such-key") is None
        assert tr.get_extra_info("no-such-key", "default") == "default"
        assert tr.get_extra_info("peercert", 42) == 42
        await finish(tr, proto, peer)

    run(loop, main())


def test_extra_socket_follows_the_socket(loop, listener):
    """get_extra_info("socket") is asyncio's TransportSocket, its answers live ones."""

    async def main():
        tr, proto, peer = await connect(loop, listener)
        sock = tr.get_extra_info("socket")
        raw = sock._sock
        seen = {
            "is_trsock": isinstance(sock, asyncio.trsock.TransportSocket),
            "family": (sock.family, type(sock.family)),
            "type": (sock.type, type(sock.type)),
            "proto": sock.proto == raw.proto,
            "repr": repr(sock) == repr(asyncio.trsock.TransportSocket(raw)),
            "fileno": sock.fileno() == raw.fileno(),
        }
        tr.pause_reading()  # the transport stays open, unaware of the reset
        reset(peer)  # the kernel forgets the peer's address
        with pytest.raises(OSError) as after_reset:
            sock.getpeername()
        seen["errno after reset"] = errno.errorcode[after_reset.value.errno]
        tr.resume_reading()
        await proto.lost
        seen["fileno after close"] = sock.fileno()
        with pytest.raises(OSError):
            sock.getsockname()
        return seen

    assert run(loop, main()) == {
        "is_trsock": True,
        "family": (socket.AF_INET, socket.AddressFamily),
        "type": (socket.SOCK_STREAM, socket.SocketKind),
        "proto": True,
        "repr": True,
        "fileno": True,
        "errno after reset": "ENOTCONN",
        "fileno after close": -1,
    }


def test_tcp_nodelay_on_connected_and_accepted(loop, listener):
    async def main():
        server_protos = []

        def factory():
            server_protos.append(Proto(loop))
            return server_protos[-1]

        server = await loop.create_server(factory, LOCALHOST, 0)
        tr, proto = await loop.create_connection(
            lambda: Proto(loop), *server.sockets[0].getsockname()
        )
        return await _nodelay_both(tr, proto, server_protos, server)

    assert all(run(loop, main()))


async def _nodelay_both(tr, proto, accepted, server):
    """TCP_NODELAY of a client transport and of the server's side of it, then both closed."""
    while not accepted:
        await asyncio.sleep(0)
    server_tr = await accepted[0].made
    values = [
        t.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        for t in (tr, server_tr)
    ]
    await finish(tr, proto)
    await accepted[0].lost
    server.close()
    await server.wait_closed()
    return values


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
def test_tcp_nodelay_ipv6(loop):
    async def main():
        with make_listener(socket.AF_INET6, "::1") as listener6:
            tr, proto, peer = await connect(loop, listener6)
            value = tr.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert tr.get_extra_info("peername")[:2] == ("::1", listener6.getsockname()[1])
            await finish(tr, proto, peer)
            return value

    assert run(loop, main())


def test_tcp_nodelay_on_sockets_made_with_proto_0(loop, loop_kind):
    """A server handed a ``socket.socket()`` (proto 0, as uvicorn --workers and gunicorn make)
    and a connection over one: ferroloop sets TCP_NODELAY on both, as uvloop does; asyncio's
    ``_set_nodelay`` skips proto 0 (docs/differences.md)."""

    async def main():
        accepted = []
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listening.bind((LOCALHOST, 0))
        server = await loop.create_server(lambda: accepted.append(Proto(loop)) or accepted[-1],
                                          sock=listening)  # fmt: skip
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setblocking(False)
        await loop.sock_connect(client, listening.getsockname())
        assert client.proto == 0
        tr, proto = await loop.create_connection(lambda: Proto(loop), sock=client)
        return await _nodelay_both(tr, proto, accepted, server)

    values = run(loop, main())
    assert all(values) if loop_kind == "ferroloop" else not any(values)


# -- reading ---------------------------------------------------------------------------------------


def test_pause_resume_reading(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        assert tr.is_reading()
        tr.pause_reading()
        tr.pause_reading()  # idempotent
        assert not tr.is_reading()
        await loop.sock_sendall(peer, b"held back")
        await settle()
        assert proto.data == b""
        tr.resume_reading()
        tr.resume_reading()
        assert tr.is_reading()
        assert await proto.wait_bytes(9) == b"held back"
        tr.close()
        assert not tr.is_reading()
        tr.resume_reading()  # no effect once closing
        assert not tr.is_reading()
        await proto.lost
        peer.close()

    run(loop, main())


def test_eof_received_true_keeps_half_open(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener, lambda: Proto(loop, keep_open=True))
        await loop.sock_sendall(peer, b"request")
        peer.shutdown(socket.SHUT_WR)
        await proto.eof
        await settle()
        assert not tr.is_closing()
        assert proto.data == b"request"
        tr.write(b"response")
        assert await recv_exactly(loop, peer, 8) == b"response"
        await finish(tr, proto)
        assert await recv_until_eof(loop, peer) == b""
        assert proto.events == ["made", "data", "eof", "lost"]
        assert proto.lost_calls == [None]
        peer.close()

    run(loop, main())


@pytest.mark.parametrize("size", [5, 1024 * 1024], ids=["small", "over-max_size"])
def test_data_and_eof_arriving_together(loop, listener, size):
    # Data and FIN are both queued before the loop first reads: every byte, then eof_received.
    payload = pattern(size)

    async def main():
        tr, proto, peer = await connect(loop, listener)
        tr.pause_reading()
        await loop.sock_sendall(peer, payload)
        peer.shutdown(socket.SHUT_WR)
        await settle()
        tr.resume_reading()
        await proto.lost
        peer.close()
        return proto

    proto = run(loop, main())
    assert proto.data == payload
    assert proto.events[-2:] == ["eof", "lost"]
    assert proto.lost_calls == [None]


@pytest.mark.parametrize("keep_open", [None, False])
def test_eof_received_false_closes(loop, listener, keep_open):
    async def main():
        tr, proto, peer = await connect(loop, listener, lambda: Proto(loop, keep_open=keep_open))
        peer.shutdown(socket.SHUT_WR)
        await proto.lost
        assert tr.is_closing()
        assert proto.events == ["made", "eof", "lost"]
        assert proto.lost_calls == [None]
        assert await recv_until_eof(loop, peer) == b""
        peer.close()

    run(loop, main())


def test_set_protocol_swaps_live(loop, listener):
    class Swapped(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(4)
            self.data = bytearray()
            self.lost = loop.create_future()

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            self.data += self.buf[:nbytes]

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        tr, first, peer = await connect(loop, listener)
        assert tr.get_protocol() is first
        await loop.sock_sendall(peer, b"one")
        await first.wait_bytes(3)
        second = Proto(loop)
        tr.set_protocol(second)
        assert tr.get_protocol() is second
        await loop.sock_sendall(peer, b"two")
        assert await second.wait_bytes(3) == b"two"
        third = Swapped()
        tr.set_protocol(third)
        await loop.sock_sendall(peer, b"three-buffered")
        while len(third.data) < 14:
            await asyncio.sleep(0.001)
        assert third.data == b"three-buffered"
        tr.close()
        assert await third.lost is None
        assert first.data == b"one" and first.events == ["made", "data"]
        assert second.events == ["data"]  # no connection_made for a swapped-in protocol
        peer.close()

    run(loop, main())


def test_protocol_methods_replaced_on_the_instance_take_effect(loop, listener):
    # asyncio looks the protocol's methods up at each call.
    async def main():
        tr, proto, peer = await connect(loop, listener)
        seen = []
        proto.data_received = seen.append
        await loop.sock_sendall(peer, b"replaced")
        while not seen:
            await asyncio.sleep(0.001)
        buffered = Buffered(loop, size=16)
        tr.set_protocol(buffered)
        buffers = []

        def get_buffer(sizehint):
            buffers.append(bytearray(16))
            return buffers[-1]

        buffered.get_buffer = get_buffer
        buffered.buffer_updated = lambda n: seen.append(bytes(buffers[-1][:n]))
        await loop.sock_sendall(peer, b"again")
        while len(seen) < 2:
            await asyncio.sleep(0.001)
        tr.close()
        await buffered.lost
        peer.close()
        return seen, bytes(proto.data), bytes(buffered.data)

    assert run(loop, main()) == ([b"replaced", b"again"], b"", b"")


@pytest.mark.parametrize("replacement", [None, object()])
def test_set_protocol_to_a_non_protocol_fails_when_data_arrives(
    loop, listener, exc_calls, replacement
):
    # asyncio accepts any object; the read then fails calling data_received on it.
    async def main():
        tr, proto, peer = await connect(loop, listener)
        tr.set_protocol(replacement)
        assert tr.get_protocol() is replacement
        await loop.sock_sendall(peer, b"x")
        while len(exc_calls) < 2:
            await asyncio.sleep(0.001)
        assert await recv_until_eof(loop, peer) == b""
        peer.close()
        return tr

    tr = run(loop, main())
    fatal, lost = exc_calls
    exc_calls.clear()
    assert fatal["message"] == "Fatal error: protocol.data_received() call failed."
    assert isinstance(fatal["exception"], AttributeError)
    assert fatal["transport"] is tr and fatal["protocol"] is replacement
    # connection_lost fails the same way, in its callback.
    assert isinstance(lost["exception"], AttributeError)
    assert tr.is_closing()


class Buffered(asyncio.BufferedProtocol):
    def __init__(self, loop, size=7):
        self.size = size
        self.hints = []
        self.data = bytearray()
        self.events = []
        self.lost_calls = []
        self.buf = bytearray(size)
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.events.append("made")

    def get_buffer(self, sizehint):
        self.hints.append(sizehint)
        return memoryview(self.buf)

    def buffer_updated(self, nbytes):
        assert 0 < nbytes <= self.size
        self.data += self.buf[:nbytes]

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_calls.append(exc)
        self.lost.set_result(exc)


def test_buffered_protocol(loop, listener):
    payload = pattern(100_000)

    async def main():
        tr, proto, peer = await connect(loop, listener, lambda: Buffered(loop))
        await loop.sock_sendall(peer, payload)
        peer.shutdown(socket.SHUT_WR)
        await proto.lost
        peer.close()
        return proto

    proto = run(loop, main())
    assert proto.data == payload
    assert proto.events == ["made", "eof", "lost"]
    assert proto.lost_calls == [None]
    assert all(isinstance(h, int) and (h == -1 or h > 0) for h in proto.hints)


@pytest.mark.parametrize(
    "make", [lambda: array.array("i", [0] * 4), lambda: memoryview(bytearray(16)).cast("I")]
)
def test_buffered_protocol_any_buffer_format(loop, listener, make):
    class Typed(Buffered):
        def get_buffer(self, sizehint):
            self.buf = make()
            return self.buf

        def buffer_updated(self, nbytes):
            self.data += memoryview(self.buf).cast("B")[:nbytes]

    payload = pattern(10_000)

    async def main():
        tr, proto, peer = await connect(loop, listener, lambda: Typed(loop, size=16))
        await loop.sock_sendall(peer, payload)
        peer.shutdown(socket.SHUT_WR)
        await proto.lost
        peer.close()
        return proto

    proto = run(loop, main())
    assert proto.data == payload
    assert proto.lost_calls == [None]


def test_buffered_protocol_empty_buffer_is_fatal(loop, listener, exc_calls):
    async def main():
        tr, proto, peer = await connect(loop, listener, lambda: Buffered(loop, size=0))
        await loop.sock_sendall(peer, b"x")
        exc = await proto.lost
        peer.close()
        return tr, proto, exc

    tr, proto, exc = run(loop, main())
    assert isinstance(exc, RuntimeError) and "empty buffer" in str(exc)
    [ctx] = exc_calls
    exc_calls.clear()
    assert ctx["message"] == "Fatal error: protocol.get_buffer() call failed."
    assert ctx["exception"] is exc
    assert ctx["transport"] is tr and ctx["protocol"] is proto
    assert proto.lost_calls == [exc]


@pytest.mark.parametrize("callback", ["data_received", "eof_received"])
def test_protocol_callback_error_is_fatal(loop, listener, exc_calls, callback):
    error = ZeroDivisionError("boom")

    class Failing(Proto):
        def data_received(self, data):
            if callback == "data_received":
                raise error

        def eof_received(self):
            raise error

    async def main():
        tr, proto, peer = await connect(loop, listener, lambda: Failing(loop))
        await loop.sock_sendall(peer, b"x")
        peer.shutdown(socket.SHUT_WR)
        assert await proto.lost is error
        assert tr.is_closing()
        assert await recv_until_eof(loop, peer) == b""
        peer.close()
        return tr, proto

    tr, proto = run(loop, main())
    [ctx] = exc_calls
    exc_calls.clear()
    assert ctx["message"] == f"Fatal error: protocol.{callback}() call failed."
    assert ctx["exception"] is error
    assert ctx["transport"] is tr and ctx["protocol"] is proto
    assert proto.lost_calls == [error]


def _proto_raising(method: str, error: BaseException) -> type:
    """A ``Proto`` whose ``method`` does its usual work, then raises ``error``."""

    def override(self, arg):
        getattr(Proto, method)(self, arg)
        raise error

    return type(f"Failing_{method}", (Proto,), {method: override})


def test_connection_lost_error_after_drain_goes_to_handler(loop, listener, exc_calls):
    # close() with data queued: connection_lost runs once the buffer drains, from the
    # transport's write-ready callback; asyncio's handle reports what it raises.
    error = ZeroDivisionError("lost")
    failing = _proto_raising("connection_lost", error)

    async def main():
        tr, proto, peer = await connect(loop, listener, lambda: failing(loop))
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        tr.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        data = pattern(1024 * 1024)
        tr.write(data)
        assert tr.get_write_buffer_size() > 0
        tr.close()
        got = await recv_until_eof(loop, peer)
        await proto.lost
        await settle()
        peer.close()
        return tr, proto, got == data

    tr, proto, whole = run(loop, main())  # nothing escapes run_until_complete
    assert whole
    [ctx] = exc_calls
    exc_calls.clear()
    assert ctx["exception"] is error
    # asyncio's writer handle was cancelled (the buffer drained) before connection_lost ran.
    assert ctx["message"] == "Exception in callback None()"
    assert proto.lost_calls == [None]


def test_connection_made_error_goes_to_handler(loop, listener, exc_calls):
    error = ZeroDivisionError("made")
    failing = _proto_raising("connection_made", error)

    async def main():
        tr, proto, peer = await connect(loop, listener, lambda: failing(loop))
        await finish(tr, proto, peer)

    run(loop, main())
    [ctx] = exc_calls
    exc_calls.clear()
    assert ctx["exception"] is error


# -- flow control ----------------------------------------------------------------------------------


def test_write_buffer_limits(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        assert tr.get_write_buffer_size() == 0
        tr.set_write_buffer_limits(high=100)
        assert tr.get_write_buffer_limits() == (25, 100)
        tr.set_write_buffer_limits(low=10)
        assert tr.get_write_buffer_limits() == (10, 40)
        tr.set_write_buffer_limits(50, 20)
        assert tr.get_write_buffer_limits() == (20, 50)
        tr.set_write_buffer_limits()
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        with pytest.raises(ValueError, match="must be >= low"):
            tr.set_write_buffer_limits(high=1, low=2)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=-1)
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        await finish(tr, proto, peer)

    run(loop, main())


class WaterMarks(Proto):
    """Records the write buffer size at each pause_writing/resume_writing."""

    def __init__(self, loop):
        super().__init__(loop)
        self.sizes = []

    def pause_writing(self):
        super().pause_writing()
        self.sizes.append(self.transport.get_write_buffer_size())

    def resume_writing(self):
        super().resume_writing()
        self.sizes.append(self.transport.get_write_buffer_size())


def test_pause_and_resume_writing_at_water_marks(loop, listener):
    chunk = pattern(256 * 1024)

    async def main():
        tr, proto, peer = await connect(loop, listener, lambda: WaterMarks(loop))
        tr.set_write_buffer_limits(high=HIGH)
        written = 0
        while "pause_writing" not in proto.events:
            assert written < 256 * 1024 * 1024, "pause_writing never called"
            tr.write(chunk)
            written += len(chunk)
        assert proto.events == ["made", "pause_writing"]
        assert tr.get_write_buffer_size() > HIGH
        got = await recv_exactly(loop, peer, written)
        assert got == chunk * (written // len(chunk))
        while "resume_writing" not in proto.events:
            await asyncio.sleep(0)
        await finish(tr, proto, peer)
        return proto

    proto = run(loop, main())
    assert proto.events == ["made", "pause_writing", "resume_writing", "lost"]
    paused_at, resumed_at = proto.sizes
    assert paused_at > HIGH
    assert resumed_at <= HIGH // 4


def test_set_write_buffer_limits_can_pause_at_once(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener, lambda: WaterMarks(loop))
        tr.set_write_buffer_limits(high=1 << 30)
        while tr.get_write_buffer_size() == 0:
            tr.write(pattern(1 << 20))
        assert "pause_writing" not in proto.events
        tr.set_write_buffer_limits(high=1)  # now over the high mark: pauses straight away
        assert proto.events == ["made", "pause_writing"]
        tr.abort()
        await proto.lost
        peer.close()

    run(loop, main())


def test_write_buffer_limits_keep_the_given_numbers(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        tr.set_write_buffer_limits(high=100.0)
        limits = tr.get_write_buffer_limits()
        tr.set_write_buffer_limits(low=2.5)
        derived = tr.get_write_buffer_limits()
        with pytest.raises(ValueError) as err:
            tr.set_write_buffer_limits(high=3, low=5)
        with pytest.raises(TypeError):
            tr.set_write_buffer_limits(high="x")
        state = (tr._low_water, tr._high_water, tr._protocol_paused)
        await finish(tr, proto, peer)
        return limits, [type(v) for v in limits], derived, str(err.value), state

    assert run(loop, main()) == (
        (25.0, 100.0),
        [float, float],
        (2.5, 10.0),
        "high (3) must be >= low (5) must be >= 0",
        (2.5, 10.0, False),
    )


class FailingWaterMarks(WaterMarks):
    def pause_writing(self):
        super().pause_writing()
        raise ZeroDivisionError("pause")

    def resume_writing(self):
        super().resume_writing()
        raise LookupError("resume")


def test_flow_control_callback_errors_go_to_the_exception_handler(loop, listener, exc_calls):
    async def main():
        tr, proto, peer = await connect(loop, listener, lambda: FailingWaterMarks(loop))
        tr.set_write_buffer_limits(high=1 << 30)
        while tr.get_write_buffer_size() == 0:
            tr.write(pattern(1 << 20))
        written = tr.get_write_buffer_size()
        tr.set_write_buffer_limits(high=1)  # pauses at once; the protocol raises
        paused = tr._protocol_paused
        while "resume_writing" not in proto.events:
            await loop.sock_recv(peer, 1 << 20)
        await finish(tr, proto, peer)
        return written > 0, paused, proto.events

    assert run(loop, main()) == (True, True, ["made", "pause_writing", "resume_writing", "lost"])
    assert [(c["message"], type(c["exception"])) for c in exc_calls] == [
        ("protocol.pause_writing() failed", ZeroDivisionError),
        ("protocol.resume_writing() failed", LookupError),
    ]
    assert all(c["transport"] is not None and c["protocol"] is not None for c in exc_calls)
    exc_calls.clear()


# -- contexts --------------------------------------------------------------------------------------

VAR = contextvars.ContextVar("VAR", default="unset")


class ContextProto(Proto):
    def __init__(self, loop):
        super().__init__(loop)
        self.seen = {"factory": VAR.get()}

    def connection_made(self, transport):
        self.seen["made"] = VAR.get()
        super().connection_made(transport)

    def data_received(self, data):
        self.seen["data"] = VAR.get()
        super().data_received(data)

    def eof_received(self):
        self.seen["eof"] = VAR.get()
        return super().eof_received()

    def connection_lost(self, exc):
        self.seen["lost"] = VAR.get()
        super().connection_lost(exc)


def test_protocol_callbacks_run_in_creation_context(loop):
    async def start_server():
        VAR.set("server")
        protos = []

        def factory():
            protos.append(ContextProto(loop))
            return protos[-1]

        server = await loop.create_server(factory, LOCALHOST, 0)
        VAR.set("changed after create_server")
        return server, protos

    async def client(port):
        VAR.set("client")
        tr, proto = await loop.create_connection(lambda: ContextProto(loop), LOCALHOST, port)
        VAR.set("changed after create_connection")
        return tr, proto

    async def main():
        server, protos = await loop.create_task(start_server())
        tr, proto = await loop.create_task(client(server.sockets[0].getsockname()[1]))
        while not protos:
            await asyncio.sleep(0)
        sproto = protos[0]
        await sproto.made
        tr.write(b"ping")
        await sproto.wait_bytes(4)
        sproto.transport.write(b"pong")
        await proto.wait_bytes(4)
        sproto.transport.write_eof()
        tr.write_eof()
        await asyncio.gather(proto.lost, sproto.lost)  # both close on EOF (eof_received: None)
        server.close()
        await server.wait_closed()
        return proto.seen, sproto.seen

    client_seen, server_seen = run(loop, main())
    keys = ["factory", "made", "data", "eof", "lost"]
    assert client_seen == dict.fromkeys(keys, "client")
    assert server_seen == dict.fromkeys(keys, "server")


# -- asyncio streams -------------------------------------------------------------------------------


async def _echo_handler(reader, writer):
    line = await reader.readline()
    writer.write(line.upper())
    head = await reader.readexactly(5)
    writer.write(head[::-1])
    size = int((await reader.readline()).decode())
    body = await reader.readexactly(size)
    writer.write(b"%d %d\n" % (len(body), sum(body) % 65536))
    await writer.drain()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


def test_streams_round_trip(loop):
    body = pattern(8 * 1024 * 1024)

    async def main():
        server = await asyncio.start_server(_echo_handler, LOCALHOST, 0)
        host, port = server.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(host, port)
        assert writer.get_extra_info("peername") == (host, port)
        assert isinstance(writer.transport, asyncio.Transport)
        writer.write(b"hello line\n")
        assert await reader.readline() == b"HELLO LINE\n"
        writer.write(b"abcde")
        assert await reader.readexactly(5) == b"edcba"
        writer.write(b"%d\n" % len(body))
        writer.write(body)
        await writer.drain()  # waits while the buffer is over the high-water mark
        assert await reader.readline() == b"%d %d\n" % (len(body), sum(body) % 65536)
        writer.write_eof()
        assert await reader.read() == b""
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await reader.readexactly(1)
        assert info.value.partial == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main(), timeout=20)
