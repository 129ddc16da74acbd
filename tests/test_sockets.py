"""loop.sock_* on non-blocking sockets: data, addresses, argument checks, cancellation.

sock_sendfile is in test_sendfile.py. Every scenario runs on asyncio and ferroloop; the calls
are wrapped in ``asyncio.ensure_future`` where a task is needed so that the tests hold whether
the loop returns a coroutine (asyncio) or a future.
"""

from __future__ import annotations

import array
import asyncio
import inspect
import select
import socket
import ssl
from asyncio import selector_events

import pytest
from _net_support import (
    LOCALHOST,
    accept,
    closed_port,
    make_listener,
    pattern,
    recv_exactly,
    send_end_and_collect,
)
from _support import PY311, run


@pytest.fixture
def udp_pair():
    socks = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOCALHOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    yield socks
    for sock in socks:
        sock.close()


@pytest.fixture
def listener():
    sock = make_listener()
    yield sock
    sock.close()


needs_recvfrom = pytest.mark.skipif(not PY311, reason="sock_recvfrom*/sock_sendto are 3.11+")


async def _blocked(fut) -> None:
    """Let ``fut`` start and park on the loop, and check that it did not finish."""
    for _ in range(3):
        await asyncio.sleep(0)
    assert not fut.done(), fut


# -- receiving -------------------------------------------------------------------------------------


def test_sock_recv_waits_for_data(loop, pair):
    a, b = pair

    async def main():
        fut = asyncio.ensure_future(loop.sock_recv(a, 100))
        await _blocked(fut)
        b.send(b"hello")
        return await fut

    assert run(loop, main()) == b"hello"


def test_sock_recv_ready_data_limit_and_eof(loop, pair):
    a, b = pair

    async def main():
        b.send(b"0123456789")
        first = await loop.sock_recv(a, 4)
        rest = await loop.sock_recv(a, 100)
        b.close()
        eof = await loop.sock_recv(a, 100)
        return first, rest, eof

    assert run(loop, main()) == (b"0123", b"456789", b"")


def test_sock_recv_sizes(loop, pair):
    # Each result is a bytes object of its own, sized to what came, whatever the limit.
    a, b = pair
    big = pattern(300_000)

    async def main():
        b.send(b"xyz")
        got = [await loop.sock_recv(a, n) for n in (0, 1, 1 << 20)]
        sender = asyncio.ensure_future(loop.sock_sendall(b, big))
        received = b""
        while len(received) < len(big):
            received += await loop.sock_recv(a, 1 << 20)
        await sender
        return got, received

    got, received = run(loop, main())
    assert got == [b"", b"x", b"yz"] and all(type(x) is bytes for x in got)
    assert received == big


def test_sock_recv_into(loop, pair):
    a, b = pair
    buf = bytearray(8)

    async def main():
        fut = asyncio.ensure_future(loop.sock_recv_into(a, buf))
        await _blocked(fut)
        b.send(b"abc")
        n1 = await fut
        b.send(b"defghijkl")
        n2 = await loop.sock_recv_into(a, memoryview(buf)[3:])
        return n1, n2

    assert run(loop, main()) == (3, 5)
    assert buf == b"abcdefgh"


def _typed_buffers():
    """Buffers whose format is not bytes: asyncio's socket calls take their raw bytes."""
    return [
        array.array("b", bytes(8)),
        array.array("i", [0, 0]),
        memoryview(bytearray(8)).cast("I"),
    ]


@pytest.mark.parametrize("which", range(3))
def test_sock_recv_into_any_buffer_format(loop, pair, which):
    a, b = pair

    async def main():
        buf = _typed_buffers()[which]
        b.send(b"12345678")
        n = await loop.sock_recv_into(a, buf)
        return n, bytes(memoryview(buf).cast("B"))

    assert run(loop, main()) == (8, b"12345678")


def test_sock_sendall_typed_buffer(loop, pair):
    # Only a one-byte format: asyncio's sock_sendall compares the bytes sent with len(data),
    # an item count, so with a wider format it never completes.
    a, b = pair
    data = array.array("b", b"typed-buffer")

    async def main():
        assert await loop.sock_sendall(a, data) is None
        return await recv_exactly(loop, b, len(data))

    assert run(loop, main()) == b"typed-buffer"


def test_sock_recv_into_rejects_read_only_buffer(loop, pair):
    a, b = pair

    async def main():
        for buf in (b"abc", memoryview(b"abc")):
            with pytest.raises(TypeError) as err:
                await loop.sock_recv_into(a, buf)
            with pytest.raises(TypeError) as ref:
                a.recv_into(buf)
            assert str(err.value) == str(ref.value)

    run(loop, main())


@needs_recvfrom
def test_sock_recvfrom(loop, udp_pair):
    a, b = udp_pair

    async def main():
        fut = asyncio.ensure_future(loop.sock_recvfrom(a, 100))
        await _blocked(fut)
        b.sendto(b"datagram", a.getsockname())
        return await fut

    assert run(loop, main()) == (b"datagram", b.getsockname())


@needs_recvfrom
def test_sock_recvfrom_into_and_nbytes(loop, udp_pair):
    a, b = udp_pair
    buf = bytearray(16)

    async def main():
        fut = asyncio.ensure_future(loop.sock_recvfrom_into(a, buf))
        await _blocked(fut)
        b.sendto(b"first", a.getsockname())
        whole = await fut
        b.sendto(b"second", a.getsockname())
        cut = await loop.sock_recvfrom_into(a, buf, 3)  # the rest of the datagram is dropped
        return whole, cut

    whole, cut = run(loop, main())
    assert whole == (5, b.getsockname())
    assert cut == (3, b.getsockname())
    assert buf[:5] == b"secst"


@needs_recvfrom
def test_sock_sendto(loop, udp_pair):
    a, b = udp_pair

    async def main():
        sent = await loop.sock_sendto(a, b"to-b", b.getsockname())
        got = await loop.sock_recvfrom(b, 100)
        return sent, got

    assert run(loop, main()) == (4, (b"to-b", a.getsockname()))


# -- sending ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_sock_sendall_large_payload(loop, pair, kind):
    a, b = pair
    payload = pattern(4 * 1024 * 1024 + 3)

    async def main():
        reader = asyncio.ensure_future(recv_exactly(loop, b, len(payload)))
        result = await loop.sock_sendall(a, kind(payload))
        return result, await reader

    result, got = run(loop, main())
    assert result is None
    assert got == payload


def test_sock_sendall_empty(loop, pair):
    a, b = pair
    assert run(loop, loop.sock_sendall(a, b"")) is None
    with pytest.raises(BlockingIOError):
        b.recv(1)


# -- connecting and accepting ----------------------------------------------------------------------


def test_sock_connect_resolves_hostname(loop, listener):
    port = listener.getsockname()[1]

    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            result = await loop.sock_connect(sock, ("localhost", port))
            conn = await accept(loop, listener)
            with conn:
                assert conn.getpeername() == sock.getsockname()
                await loop.sock_sendall(sock, b"ping")
                return result, sock.getpeername(), await recv_exactly(loop, conn, 4)

    assert run(loop, main()) == (None, (LOCALHOST, port), b"ping")


def test_sock_accept_waits_and_returns_nonblocking_socket(loop, listener):
    async def main():
        fut = asyncio.ensure_future(loop.sock_accept(listener))
        await _blocked(fut)
        with socket.socket() as client:
            client.setblocking(False)
            await loop.sock_connect(client, listener.getsockname())
            conn, addr = await fut
            with conn:
                return addr == client.getsockname(), conn.gettimeout(), conn.family

    assert run(loop, main()) == (True, 0.0, socket.AF_INET)


def test_sock_connect_refused(loop):
    port = closed_port()

    async def main():
        with socket.socket() as sock:
            sock.setblocking(False)
            with pytest.raises(ConnectionRefusedError) as info:
                await loop.sock_connect(sock, (LOCALHOST, port))
            return info.value

    exc = run(loop, main())
    assert exc.errno == 111
    assert str(exc) == f"[Errno 111] Connect call failed ('{LOCALHOST}', {port})"


# -- argument checks -------------------------------------------------------------------------------


def _calls(sock):
    addr = (LOCALHOST, 9)
    return {
        "sock_recv": lambda loop: loop.sock_recv(sock, 1),
        "sock_recv_into": lambda loop: loop.sock_recv_into(sock, bytearray(1)),
        "sock_sendall": lambda loop: loop.sock_sendall(sock, b"x"),
        "sock_connect": lambda loop: loop.sock_connect(sock, addr),
        "sock_accept": lambda loop: loop.sock_accept(sock),
        **(
            {
                "sock_recvfrom": lambda loop: loop.sock_recvfrom(sock, 1),
                "sock_recvfrom_into": lambda loop: loop.sock_recvfrom_into(sock, bytearray(1)),
                "sock_sendto": lambda loop: loop.sock_sendto(sock, b"x", addr),
            }
            if PY311
            else {}
        ),
    }


METHODS = list(_calls(None))


@pytest.mark.parametrize("method", METHODS)
def test_blocking_socket_rejected_in_debug_mode(loop, method):
    # asyncio checks sock.gettimeout() only in debug mode (base_events/selector_events).
    loop.set_debug(True)
    with socket.socket() as sock:
        assert sock.gettimeout() is None

        async def main():
            with pytest.raises(ValueError, match="the socket must be non-blocking"):
                await _calls(sock)[method](loop)

        run(loop, main())


@pytest.mark.parametrize("method", METHODS)
def test_ssl_socket_rejected(loop, method):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with ctx.wrap_socket(
        socket.socket(), server_hostname="x", do_handshake_on_connect=False
    ) as sock:
        sock.setblocking(False)

        async def main():
            with pytest.raises(TypeError, match="Socket cannot be of type SSLSocket"):
                await _calls(sock)[method](loop)

        run(loop, main())


# -- cancellation leaves the socket usable ---------------------------------------------------------


async def _cancel(fut) -> None:
    await _blocked(fut)
    fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fut


def test_cancel_sock_recv(loop, pair):
    a, b = pair

    async def main():
        await _cancel(asyncio.ensure_future(loop.sock_recv(a, 100)))
        assert loop.remove_reader(a) is False  # the loop no longer watches the socket
        b.send(b"after")
        return await loop.sock_recv(a, 100)

    assert run(loop, main()) == b"after"


def test_cancel_sock_recv_into(loop, pair):
    a, b = pair
    buf = bytearray(10)

    async def main():
        await _cancel(asyncio.ensure_future(loop.sock_recv_into(a, buf)))
        assert loop.remove_reader(a) is False
        b.send(b"after")
        return await loop.sock_recv_into(a, buf)

    assert run(loop, main()) == 5
    assert buf[:5] == b"after"


@needs_recvfrom
def test_cancel_sock_recvfrom(loop, udp_pair):
    a, b = udp_pair

    async def main():
        await _cancel(asyncio.ensure_future(loop.sock_recvfrom(a, 100)))
        assert loop.remove_reader(a) is False
        b.sendto(b"after", a.getsockname())
        return await loop.sock_recvfrom(a, 100)

    assert run(loop, main()) == (b"after", b.getsockname())


@needs_recvfrom
def test_cancel_sock_recvfrom_into(loop, udp_pair):
    a, b = udp_pair
    buf = bytearray(10)

    async def main():
        await _cancel(asyncio.ensure_future(loop.sock_recvfrom_into(a, buf)))
        assert loop.remove_reader(a) is False
        b.sendto(b"after", a.getsockname())
        return await loop.sock_recvfrom_into(a, buf)

    assert run(loop, main()) == (5, b.getsockname())


def test_cancel_sock_accept(loop, listener):
    async def main():
        await _cancel(asyncio.ensure_future(loop.sock_accept(listener)))
        assert loop.remove_reader(listener) is False
        with socket.socket() as client:
            client.setblocking(False)
            await loop.sock_connect(client, listener.getsockname())
            conn, addr = await loop.sock_accept(listener)
            conn.close()
            return addr == client.getsockname()

    assert run(loop, main())


async def _cancel_queued_before_ready(op, make_ready) -> None:
    """Cancels ``op`` through a callback queued before the poll that finds its socket ready:
    the callback runs first, so nothing is taken from the socket for the cancelled call."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(op)
    await asyncio.sleep(0)  # parked on the socket
    ready = make_ready()
    assert select.select([ready], [], [], 10)[0] == [ready]
    loop.call_soon(task.cancel)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    with pytest.raises(asyncio.CancelledError):
        await task


def test_cancelled_sock_recv_leaves_the_data(loop, pair):
    a, b = pair

    async def main():
        await _cancel_queued_before_ready(loop.sock_recv(a, 100), lambda: b.send(b"kept") and a)
        return await loop.sock_recv(a, 100)

    assert run(loop, main()) == b"kept"


def _asyncio_accept_race_fixed() -> bool:
    """Whether asyncio's accept checks for a cancelled call first (3.14; gh-153761)."""
    source = inspect.getsource(selector_events.BaseSelectorEventLoop._sock_accept)
    return "fut.done()" in source


def test_cancelled_sock_accept_leaves_the_connection(loop, loop_kind, listener):
    if loop_kind == "asyncio" and not _asyncio_accept_race_fixed():
        pytest.skip("this asyncio accepts for the cancelled call and loses the connection")
    client = socket.socket()

    def connect():
        client.connect(listener.getsockname())
        return listener

    async def main():
        await _cancel_queued_before_ready(loop.sock_accept(listener), connect)
        conn, addr = await loop.sock_accept(listener)
        conn.close()
        return addr == client.getsockname()

    with client:
        assert run(loop, main())


def test_cancel_sock_sendall(loop, pair):
    a, b = pair
    payload = pattern(16 * 1024 * 1024)  # far more than a socketpair buffers

    async def main():
        await _cancel(asyncio.ensure_future(loop.sock_sendall(a, payload)))
        assert loop.remove_writer(a) is False
        return await send_end_and_collect(loop, a, b)

    got = run(loop, main())
    sent = len(got) - 3
    assert 0 < sent < len(payload)
    assert got == payload[:sent] + b"END"  # a prefix, never anything out of order


def test_cancel_sock_connect(loop):
    # A listener whose accept queue is full drops SYNs, so a further connect() stays in
    # progress until the queue has room (the SYN is retransmitted).
    listener = make_listener(backlog=0)
    fillers = []

    async def main():
        addr = listener.getsockname()
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            try:
                filler.connect(addr)
            except BlockingIOError:
                pass
        with socket.socket() as sock:
            sock.setblocking(False)
            fut = asyncio.ensure_future(loop.sock_connect(sock, addr))
            await asyncio.sleep(0.05)  # a chance for a SYN to be answered; not a threshold
            if fut.done():
                fut.result()
                pytest.skip("connect() completed at once: the kernel did not drop the SYN")
            await _cancel(fut)
            assert loop.remove_writer(sock) is False
            # Make room; the same socket's connect completes on the SYN retransmission
            # (the kernel answers the in-progress connect() with EALREADY).
            while True:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    break
                conn.close()
            for filler in fillers:
                filler.close()
            fillers.clear()
            assert await loop.sock_connect(sock, addr) is None
            return sock.getpeername()

    try:
        assert run(loop, main(), timeout=20) == listener.getsockname()
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
