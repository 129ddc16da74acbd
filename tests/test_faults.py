"""Faults and load: resets, refused connects, half-closes, flushing vs aborting, many connections.

Every OSError the loop raises or passes to connection_lost must carry errno and be the right
subclass. The load tests count file descriptors and tasks before and after; the numbers are
kept modest for a 2-core CI machine.
"""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest
from _net_support import (
    LOCALHOST,
    Proto,
    accept,
    closed_port,
    fd_count,
    make_listener,
    nofile_limit,
    pattern,
    recv_exactly,
    recv_until_eof,
    reset,
)
from _support import run, run_forever_guarded

RESET_ERRORS = (ConnectionResetError, BrokenPipeError)
RESET_ERRNOS = (errno.ECONNRESET, errno.EPIPE)


@pytest.fixture
def listener():
    sock = make_listener()
    yield sock
    sock.close()


async def connect(loop, listener, factory=None):
    factory = factory or (lambda: Proto(loop))
    tr, proto = await loop.create_connection(factory, *listener.getsockname())
    return tr, proto, await accept(loop, listener)


async def fill(tr) -> int:
    """Write until data queues in the transport (the peer is not reading); bytes written."""
    tr.set_write_buffer_limits(high=1 << 30)
    written = 0
    while tr.get_write_buffer_size() == 0:
        tr.write(pattern(1 << 20))
        written += 1 << 20
        assert written < 1 << 30
    return written


# -- resets ----------------------------------------------------------------------------------------


def test_peer_reset_mid_write(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        await fill(tr)
        reset(peer)
        exc = await proto.lost
        for _ in range(5):
            await asyncio.sleep(0.001)
        return tr, proto, exc

    tr, proto, exc = run(loop, main())
    assert isinstance(exc, RESET_ERRORS), repr(exc)
    assert exc.errno in RESET_ERRNOS and exc.strerror
    assert proto.lost_calls == [exc]
    assert tr.is_closing()
    assert tr.get_write_buffer_size() == 0


def test_peer_reset_while_idle(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        await loop.sock_sendall(peer, b"unread")
        reset(peer)
        return tr, proto, await proto.lost

    tr, proto, exc = run(loop, main())
    # The pending data may or may not be delivered before the reset is seen; asyncio passes the
    # error from recv() on, so connection_lost gets ConnectionResetError.
    assert isinstance(exc, ConnectionResetError) and exc.errno == errno.ECONNRESET
    assert proto.lost_calls == [exc]
    assert proto.events[-1] == "lost" and "eof" not in proto.events


def test_writes_after_connection_lost_are_dropped_with_a_warning(loop, listener, caplog):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        await fill(tr)
        reset(peer)
        await proto.lost
        caplog.clear()
        for _ in range(3):
            tr.write(b"x")
        quiet = [r for r in caplog.records if r.name == "asyncio"]
        for _ in range(3):
            tr.write(b"x")
        return quiet

    with caplog.at_level("WARNING", logger="asyncio"):
        quiet = run(loop, main())
    # asyncio counts writes to a lost connection and warns from the fifth on
    # (constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES).
    assert quiet == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert warnings == ["socket.send() raised exception."] * 2


def test_sock_calls_after_reset(loop, listener):
    async def main():
        with socket.socket() as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, listener.getsockname())
            reset(await accept(loop, listener))
            with pytest.raises(ConnectionResetError) as recv_exc:
                await loop.sock_recv(sock, 10)
            with pytest.raises(RESET_ERRORS) as send_exc:
                await loop.sock_sendall(sock, pattern(1 << 20))
            return recv_exc.value, send_exc.value

    recv_exc, send_exc = run(loop, main())
    assert recv_exc.errno == errno.ECONNRESET
    assert send_exc.errno in RESET_ERRNOS


# -- refused and failed connects -------------------------------------------------------------------


def test_connect_refused(loop):
    port = closed_port()
    message = f"[Errno {errno.ECONNREFUSED}] Connect call failed ('{LOCALHOST}', {port})"

    async def main():
        errors = []
        with pytest.raises(ConnectionRefusedError) as info:
            await loop.create_connection(asyncio.Protocol, LOCALHOST, port)
        errors.append(info.value)
        with pytest.raises(ConnectionRefusedError) as info:
            await asyncio.open_connection(LOCALHOST, port)
        errors.append(info.value)
        with socket.socket() as sock:
            sock.setblocking(False)
            with pytest.raises(ConnectionRefusedError) as info:
                await loop.sock_connect(sock, (LOCALHOST, port))
            errors.append(info.value)
        return errors

    for exc in run(loop, main()):
        assert exc.errno == errno.ECONNREFUSED
        assert str(exc) == message


def test_create_server_address_in_use(loop, listener):
    async def main():
        with pytest.raises(OSError) as info:
            await loop.create_server(asyncio.Protocol, *listener.getsockname())
        return info.value

    exc = run(loop, main())
    assert type(exc) is OSError and exc.errno == errno.EADDRINUSE


# -- half-close ------------------------------------------------------------------------------------


async def _half_close(loop, closing_side):
    """One side sends and write_eof()s, the other answers after EOF, then closes."""
    protos = []

    def server_factory():
        protos.append(Proto(loop, keep_open=True))
        return protos[-1]

    server = await loop.create_server(server_factory, LOCALHOST, 0)
    tr, proto = await loop.create_connection(
        lambda: Proto(loop, keep_open=True), *server.sockets[0].getsockname()
    )
    while not protos:
        await asyncio.sleep(0)
    sproto = protos[0]
    await sproto.made
    first, second = (proto, sproto) if closing_side == "client" else (sproto, proto)
    first.transport.write(b"question")
    first.transport.write_eof()
    await second.eof
    assert bytes(second.data) == b"question"
    assert not second.transport.is_closing() and not first.transport.is_closing()
    second.transport.write(b"answer")
    await first.wait_bytes(6)
    second.transport.close()
    await first.eof  # keep_open: both sides now closed for writing, close the first too
    first.transport.close()
    await asyncio.gather(proto.lost, sproto.lost)
    server.close()
    await server.wait_closed()
    return first, second


@pytest.mark.parametrize("closing_side", ["client", "server"])
def test_half_close(loop, closing_side):
    first, second = run(loop, _half_close(loop, closing_side))
    assert first.data == b"answer" and second.data == b"question"
    assert first.events == ["made", "data", "eof", "lost"]
    assert second.events == ["made", "data", "eof", "lost"]
    assert first.lost_calls == second.lost_calls == [None]


# -- closing with queued data ----------------------------------------------------------------------


def test_close_flushes_queued_data(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        written = await fill(tr)
        extra = pattern(32 * 1024 * 1024)  # more than the kernel could take on by itself
        tr.write(extra)
        written += len(extra)
        tr.write(b"THE END")
        tr.close()
        assert tr.is_closing()
        tr.write_eof()  # a no-op once closing
        for _ in range(3):
            await asyncio.sleep(0)
        assert not proto.lost.done()  # connection_lost waits for the buffer to drain
        got = await recv_until_eof(loop, peer)
        await proto.lost
        peer.close()
        return written, got, proto

    written, got, proto = run(loop, main())
    assert len(got) == written + 7 and got.endswith(b"THE END")
    assert proto.lost_calls == [None]


def test_abort_drops_queued_data(loop, listener):
    async def main():
        tr, proto, peer = await connect(loop, listener)
        written = await fill(tr)
        queued = tr.get_write_buffer_size()
        tr.abort()
        assert tr.get_write_buffer_size() == 0
        await proto.lost
        try:
            got = await recv_until_eof(loop, peer)
            received = len(got)
        except ConnectionResetError:
            received = -1
        peer.close()
        return written, queued, received, proto

    written, queued, received, proto = run(loop, main())
    assert queued > 0
    assert received <= written - queued
    assert proto.lost_calls == [None]


# -- flow control under a slow peer ----------------------------------------------------------------


class Producer(Proto):
    """Writes ``total`` bytes in chunks, only while the transport is not paused."""

    def __init__(self, loop, total, chunk):
        super().__init__(loop)
        self.total, self.chunk = total, chunk
        self.sent = 0
        self.paused = False
        self.max_buffer = 0
        self.done = loop.create_future()

    def connection_made(self, transport):
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=256 * 1024)
        self.loop.call_soon(self.produce)

    def produce(self):
        tr = self.transport
        while not self.paused and self.sent < self.total:
            n = min(self.chunk, self.total - self.sent)
            tr.write(pattern(n, seed=self.sent))
            self.sent += n
            self.max_buffer = max(self.max_buffer, tr.get_write_buffer_size())
        if self.sent >= self.total and not self.done.done():
            self.done.set_result(None)

    def pause_writing(self):
        super().pause_writing()
        self.paused = True

    def resume_writing(self):
        super().resume_writing()
        self.paused = False
        self.loop.call_soon(self.produce)


def test_slow_peer_pauses_writing_and_bounds_the_buffer(loop, listener):
    total, chunk = 16 * 1024 * 1024, 64 * 1024

    async def main():
        tr, proto, peer = await connect(loop, listener, lambda: Producer(loop, total, chunk))
        while "pause_writing" not in proto.events:  # the peer does not read yet
            await asyncio.sleep(0.001)
        for _ in range(5):
            await asyncio.sleep(0.001)
            assert tr.get_write_buffer_size() <= 256 * 1024 + chunk
        got = await recv_exactly(loop, peer, total)
        await proto.done
        tr.close()
        await proto.lost
        peer.close()
        return got, proto

    got, proto = run(loop, main(), timeout=20)
    assert proto.max_buffer <= 256 * 1024 + chunk
    assert proto.events.count("pause_writing") == proto.events.count("resume_writing") >= 1
    expected = b"".join(pattern(chunk, seed=i) for i in range(0, total, chunk))
    assert got == expected


# -- load ------------------------------------------------------------------------------------------


class Echo(asyncio.Protocol):
    lost: list[BaseException | None]  # shared by the instances of one test

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.lost.append(exc)


def test_many_concurrent_connections(loop):
    n = 1000 if loop.get_debug() else 2000  # debug mode: see test_open_close_cycles_do_not_leak
    with nofile_limit(2 * n + 512) as ok:
        if not ok:
            pytest.skip("RLIMIT_NOFILE's hard limit is too low")

        async def client(i, port, gate):
            async with gate:  # stagger the connects: a small backlog would drop SYNs
                tr, proto = await loop.create_connection(lambda: Proto(loop), LOCALHOST, port)
            return tr, proto

        async def main():
            lost = []
            factory = type("SharedEcho", (Echo,), {"lost": lost})
            server = await loop.create_server(factory, LOCALHOST, 0, backlog=128)
            port = server.sockets[0].getsockname()[1]
            gate = asyncio.Semaphore(100)
            conns = await asyncio.gather(*(client(i, port, gate) for i in range(n)))
            assert len(conns) == n  # all open at once
            for i, (tr, _) in enumerate(conns):
                tr.write(b"%06d" % i)
            replies = await asyncio.gather(*(p.wait_bytes(6) for _, p in conns))
            assert replies == [b"%06d" % i for i in range(n)]
            for tr, _ in conns:
                tr.close()
            await asyncio.gather(*(p.lost for _, p in conns))
            while len(lost) < n:  # the server sides close on the clients' EOF
                await asyncio.sleep(0.001)
            assert lost == [None] * n
            server.close()
            await server.wait_closed()
            return [p.lost_calls for _, p in conns]

        before = fd_count()
        lost = run(loop, main(), timeout=25)
        assert lost == [[None]] * n
        assert fd_count() == before


def test_open_close_cycles_do_not_leak(loop):
    # Debug mode (the suite's second run) makes every handle and future record a traceback,
    # an order of magnitude slower: there the count is cut to stay well inside the hang guard.
    cycles, workers = (1_000 if loop.get_debug() else 20_000), 20

    class ServerSide(asyncio.Protocol):
        def connection_made(self, transport):
            transport.close()  # the server closes first: TIME_WAIT stays on its side

    async def worker(port, count):
        for _ in range(count):
            tr, proto = await loop.create_connection(lambda: Proto(loop), LOCALHOST, port)
            await proto.lost
            assert proto.lost_calls == [None]

    async def main():
        server = await loop.create_server(ServerSide, LOCALHOST, 0, backlog=128)
        port = server.sockets[0].getsockname()[1]
        await worker(port, 50)  # warm up: executors, caches
        fds, tasks = fd_count(), len(asyncio.all_tasks())
        await asyncio.gather(*(worker(port, cycles // workers) for _ in range(workers)))
        await asyncio.sleep(0)
        result = fds, fd_count(), tasks, len(asyncio.all_tasks())
        server.close()
        await server.wait_closed()
        return result

    fds_before, fds_after, tasks_before, tasks_after = run(loop, main(), timeout=28)
    assert fds_after == fds_before
    assert tasks_after == tasks_before


class _InterruptOnce(asyncio.Protocol):
    """Records what arrives; its first data_received raises KeyboardInterrupt (Ctrl-C)."""

    def __init__(self, log: list, name: str) -> None:
        self.log, self.name, self.armed = log, name, True

    def data_received(self, data: bytes) -> None:
        self.log.append((self.name, data))
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt


def test_keyboard_interrupt_in_data_received_loses_no_read(loop):
    """Two connections readable in one poll, each protocol raising Ctrl-C once: run_forever
    leaves twice, once per protocol, and each connection's bytes are delivered exactly once."""
    log: list = []
    pairs = [socket.socketpair() for _ in range(2)]
    transports = []
    for name, (mine, _) in zip("ab", pairs, strict=True):
        tr, _ = loop.run_until_complete(
            loop.create_connection(lambda name=name: _InterruptOnce(log, name), sock=mine)
        )
        transports.append(tr)
    for name, (_, peer) in zip("ab", pairs, strict=True):
        peer.sendall(name.encode())
    for _ in range(2):
        guard = loop.call_later(5, loop.stop)
        with pytest.raises(KeyboardInterrupt):
            loop.run_forever()
        guard.cancel()
    assert sorted(log) == [("a", b"a"), ("b", b"b")]
    for tr in transports:
        tr.close()
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    for mine, peer in pairs:
        mine.close()
        peer.close()
