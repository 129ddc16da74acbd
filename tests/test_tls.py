"""TLS on the stdlib ssl module: create_connection/create_server with ssl=, streams, start_tls,
BufferedProtocol applications, flow control, errors and faults, and real OpenSSL peers.

Certificates come from ``trustme`` (a throwaway CA per test session). Where asyncio's outcome
depends on the version or on OpenSSL (which error a broken handshake gives), the test runs the
same scenario on the running Python's asyncio and compares (``ref_loop``).
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import socket
import ssl
import subprocess
import sys

import pytest
from _net_support import LOCALHOST, Proto, fd_count, make_listener, pattern
from _support import PY311, run

trustme = pytest.importorskip("trustme")


ACCEPT_ERROR = "Error on transport creation for incoming connection"


@pytest.fixture(autouse=True)
def _accept_errors_in_debug_mode(request):
    """In debug mode asyncio reports a server-side handshake that failed (the tests' clients
    make many) to the exception handler; both loops do, and those reports are expected."""
    if "loop" not in request.fixturenames:
        yield
        return
    calls, loop = request.getfixturevalue("exc_calls"), request.getfixturevalue("loop")
    yield
    if loop.get_debug():
        calls[:] = [c for c in calls if c.get("message") != ACCEPT_ERROR]


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", LOCALHOST).configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


class Echo(asyncio.Protocol):
    """Echoes every byte; records whether it was paused."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False


async def echo_server(loop, server_ctx, factory=Echo, **kw):
    return await loop.create_server(factory, LOCALHOST, 0, ssl=server_ctx, **kw)


def port_of(server) -> int:
    return server.sockets[0].getsockname()[1]


def made_recorder(made: list):
    """A protocol class whose connection_made appends the transport to ``made``."""

    class App(asyncio.Protocol):
        def connection_made(self, transport):
            made.append(transport)

    return App


async def tls_client(loop, server, client_ctx, proto=None):
    """A TLS connection to ``server`` with a recording protocol: (transport, protocol)."""
    proto = Proto(loop) if proto is None else proto
    tr, _ = await loop.create_connection(
        lambda: proto, LOCALHOST, port_of(server), ssl=client_ctx, server_hostname="localhost"
    )
    return tr, proto


async def stop(server) -> None:
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("size", [1, 1024, 64 * 1024, 1024 * 1024 + 7])
def test_echo_protocol(loop, server_ctx, client_ctx, size):
    async def main():
        server = await echo_server(loop, server_ctx)
        tr, proto = await tls_client(loop, server, client_ctx)
        data = pattern(size)
        # Split writes of odd sizes, and a writelines.
        a, b = min(3, size), min(1000, size)
        c = max(b, size // 2)
        tr.write(data[:a])
        tr.writelines([data[a:b], bytearray(data[b:c])])
        tr.write(memoryview(data)[c:])
        got = await proto.wait_bytes(size)
        assert got == data
        tr.close()
        await proto.lost
        assert proto.lost_calls == [None]
        await stop(server)

    run(loop, main())


def test_extra_info(loop, server_ctx, client_ctx):
    async def main():
        server = await echo_server(loop, server_ctx)
        tr, _ = await loop.create_connection(
            asyncio.Protocol,
            LOCALHOST,
            port_of(server),
            ssl=client_ctx,
            server_hostname="localhost",
        )
        obj = tr.get_extra_info("ssl_object")
        assert isinstance(obj, ssl.SSLObject)
        assert tr.get_extra_info("sslcontext") is client_ctx
        assert tr.get_extra_info("peercert")["subjectAltName"]
        assert tr.get_extra_info("cipher")[0]
        assert tr.get_extra_info("compression") is None
        assert tr.get_extra_info("peername")[1] == port_of(server)
        assert tr.get_extra_info("sockname")[0] == LOCALHOST
        assert tr.get_extra_info("socket") is not None
        assert not tr.can_write_eof()
        with pytest.raises(NotImplementedError):
            tr.write_eof()
        with pytest.raises(TypeError, match="bytes-like"):
            tr.write("text")
        tr.close()
        await stop(server)

    run(loop, main())


def test_streams_echo_and_start_tls(loop, server_ctx, client_ctx):
    async def handle(reader, writer):
        line = await reader.readline()
        if line == b"STARTTLS\n" and PY311:
            writer.write(b"OK\n")
            await writer.drain()
            await writer.start_tls(server_ctx)
        while data := await reader.read(65536):
            writer.write(data.upper())
            await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, LOCALHOST, 0)
        reader, writer = await asyncio.open_connection(LOCALHOST, port_of(server))
        if PY311:
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"OK\n"
            await writer.start_tls(client_ctx, server_hostname="localhost")
            assert writer.get_extra_info("ssl_object") is not None
        else:
            writer.write(b"PLAIN\n")
        writer.write(b"hello tls " * 1000)
        writer.write_eof() if not PY311 else None
        got = await reader.readexactly(10000)
        assert got == b"HELLO TLS " * 1000
        writer.close()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())


def test_streams_ssl_server(loop, server_ctx, client_ctx):
    async def handle(reader, writer):
        data = await reader.readexactly(300_000)
        writer.write(data[::-1])
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, LOCALHOST, 0, ssl=server_ctx)
        reader, writer = await asyncio.open_connection(
            LOCALHOST, port_of(server), ssl=client_ctx, server_hostname="localhost"
        )
        data = pattern(300_000)
        writer.write(data)
        assert await reader.readexactly(300_000) == data[::-1]
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())


class Buffered(asyncio.BufferedProtocol):
    def __init__(self, loop):
        self.buf = memoryview(bytearray(1000))  # less than one record: many get_buffer calls
        self.data = bytearray()
        self.done = loop.create_future()
        self.want = 0

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.data += self.buf[:nbytes]
        if len(self.data) >= self.want and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_exception(AssertionError(f"lost early: {exc!r}"))


def test_buffered_protocol_application(loop, server_ctx, client_ctx):
    async def main():
        server = await echo_server(loop, server_ctx)
        proto = Buffered(loop)
        proto.want = 200_000
        tr, _ = await loop.create_connection(
            lambda: proto, LOCALHOST, port_of(server), ssl=client_ctx, server_hostname="localhost"
        )
        data = pattern(200_000)
        tr.write(data)
        await proto.done
        assert bytes(proto.data) == data
        tr.close()
        await stop(server)

    run(loop, main())


def test_pause_reading_holds_data(loop, server_ctx, client_ctx):
    async def main():
        server = await echo_server(loop, server_ctx)
        tr, proto = await tls_client(loop, server, client_ctx)
        tr.write(b"one")
        await proto.wait_bytes(3)
        tr.pause_reading()
        assert not tr.is_reading()
        tr.write(b"two")
        await asyncio.sleep(0.1)
        assert bytes(proto.data) == b"one"
        tr.resume_reading()
        assert await proto.wait_bytes(6) == b"onetwo"
        tr.close()
        await proto.lost
        await stop(server)

    run(loop, main())


def test_write_flow_control_against_a_stalled_peer(loop, server_ctx, client_ctx):
    """64 MiB offered to a peer that stops reading: the writer is paused, nothing is lost."""
    total = 64 * 1024 * 1024
    chunk = pattern(1024 * 1024)

    class Sink(asyncio.Protocol):
        def __init__(self):
            self.n = 0
            self.done = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport
            transport.pause_reading()  # stall
            loop.call_later(0.3, transport.resume_reading)

        def data_received(self, data):
            self.n += len(data)
            if self.n >= total and not self.done.done():
                self.done.set_result(None)

    async def main():
        sink = Sink()
        server = await loop.create_server(lambda: sink, LOCALHOST, 0, ssl=server_ctx)
        tr, proto = await tls_client(loop, server, client_ctx)
        resumed = None
        for _ in range(total // len(chunk)):
            tr.write(chunk)
            if "pause_writing" in proto.events and resumed is None:
                resumed = loop.create_future()
            while proto.events and proto.events[-1] == "pause_writing":
                await asyncio.sleep(0.01)
        await sink.done
        assert sink.n == total
        assert "pause_writing" in proto.events
        assert proto.events.count("pause_writing") == proto.events.count("resume_writing")
        tr.close()
        await stop(server)

    run(loop, main(), timeout=60)


def test_bad_certificate(loop, server_ctx):
    async def main():
        server = await echo_server(loop, server_ctx)
        ctx = ssl.create_default_context()  # does not trust the test CA
        with pytest.raises(ssl.SSLCertVerificationError):
            await loop.create_connection(
                asyncio.Protocol, LOCALHOST, port_of(server), ssl=ctx, server_hostname="localhost"
            )
        await stop(server)

    run(loop, main())


def test_wrong_hostname(loop, server_ctx, client_ctx):
    async def main():
        server = await echo_server(loop, server_ctx)
        with pytest.raises(ssl.SSLCertVerificationError):
            await loop.create_connection(
                asyncio.Protocol,
                LOCALHOST,
                port_of(server),
                ssl=client_ctx,
                server_hostname="other.example",
            )
        await stop(server)

    run(loop, main())


async def _client_against(loop, script, client_ctx, timeout=None):
    """Connect a TLS client to a raw peer running ``script(sock)``; what the client got."""
    listener = make_listener()
    port = listener.getsockname()[1]

    async def peer():
        conn, _ = await loop.sock_accept(listener)
        try:
            await script(conn)
        finally:
            conn.close()

    task = loop.create_task(peer())
    kw = {"ssl_handshake_timeout": timeout} if timeout else {}
    try:
        await loop.create_connection(
            asyncio.Protocol, LOCALHOST, port, ssl=client_ctx, server_hostname="localhost", **kw
        )
        outcome = "connected"
    except (OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
        outcome = type(exc)
    await task
    listener.close()
    return outcome


def _same_on_asyncio(ref_loop, loop, make):
    """``make(loop)`` run on the loop under test and on asyncio gives the same result."""
    got = run(loop, make(loop))
    want = run(ref_loop, make(ref_loop))
    assert got == want
    return got


def test_peer_closes_mid_handshake(loop, ref_loop, client_ctx):
    async def script(conn):
        await asyncio.get_running_loop().sock_recv(conn, 1024)  # the ClientHello

    got = _same_on_asyncio(ref_loop, loop, lambda lp: _client_against(lp, script, client_ctx))
    assert got is ConnectionResetError


def test_peer_answers_garbage(loop, ref_loop, client_ctx):
    async def script(conn):
        lp = asyncio.get_running_loop()
        await lp.sock_recv(conn, 1024)
        await lp.sock_sendall(conn, b"HTTP/1.1 400 Bad Request\r\n\r\n" * 10)
        await asyncio.sleep(0.05)

    got = _same_on_asyncio(ref_loop, loop, lambda lp: _client_against(lp, script, client_ctx))
    assert issubclass(got, ssl.SSLError)


def test_handshake_timeout(loop, ref_loop, client_ctx):
    async def script(conn):
        await asyncio.sleep(0.5)  # never answers the ClientHello in time

    got = _same_on_asyncio(
        ref_loop, loop, lambda lp: _client_against(lp, script, client_ctx, timeout=0.1)
    )
    assert got in (ConnectionAbortedError, TimeoutError, asyncio.TimeoutError)


def test_plaintext_client_never_gets_data(loop, server_ctx):
    """A client speaking plain HTTP to a TLS server: the handshake fails, the app sees nothing."""
    made = []
    App = made_recorder(made)

    async def main():
        server = await loop.create_server(App, LOCALHOST, 0, ssl=server_ctx)
        sock = socket.create_connection((LOCALHOST, port_of(server)))
        sock.setblocking(False)
        await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while chunk := await loop.sock_recv(sock, 4096):
            got += chunk
        sock.close()
        assert b"HTTP" not in got
        assert made == []
        await stop(server)

    run(loop, main())


def test_peer_vanishes_without_close_notify(loop, server_ctx, client_ctx):
    lost = []

    class App(Echo):
        def connection_lost(self, exc):
            lost.append(exc)

    async def main():
        server = await echo_server(loop, server_ctx, factory=App)
        tr, proto = await tls_client(loop, server, client_ctx)
        tr.write(b"ping")
        await proto.wait_bytes(4)
        tr.abort()  # no close_notify
        await proto.lost
        for _ in range(100):
            if lost:
                break
            await asyncio.sleep(0.01)
        assert len(lost) == 1
        await stop(server)

    run(loop, main())


def test_many_handshakes_leave_nothing_behind(loop, server_ctx, client_ctx):
    """300 full handshakes (20 at a time, each with an echo and an orderly close): no
    descriptor and no Python object is left per connection."""

    async def once(port):
        reader, writer = await asyncio.open_connection(
            LOCALHOST, port, ssl=client_ctx, server_hostname="localhost"
        )
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        writer.close()
        await writer.wait_closed()

    async def rounds(port, n):
        for _ in range(n):
            await asyncio.gather(*(once(port) for _ in range(20)))
        await asyncio.sleep(0.05)
        gc.collect()

    async def main():
        server = await echo_server(loop, server_ctx)
        port = port_of(server)
        await rounds(port, 2)
        fds, objects = fd_count(), len(gc.get_objects())
        await rounds(port, 15)
        assert fd_count() <= fds
        if not loop.get_debug():  # debug mode's creation tracebacks fill the line cache
            assert len(gc.get_objects()) - objects < 100  # a leak per connection: >= 300
        await stop(server)

    run(loop, main(), timeout=60)


# -- real OpenSSL peers ----------------------------------------------------------------------

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")


@pytest.fixture(scope="module")
def cert_files(ca, tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    leaf = ca.issue_cert("localhost", LOCALHOST)
    cert, key, cafile = d / "cert.pem", d / "key.pem", d / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    ca.cert_pem.write_to_path(str(cafile))
    return str(cert), str(key), str(cafile)


@needs_openssl
def test_client_against_openssl_s_server(loop, client_ctx, cert_files):
    cert, key, _ = cert_files
    port = make_listener().getsockname()[1]  # a free port (closed when collected)
    srv = subprocess.Popen(
        [
            OPENSSL,
            "s_server",
            "-quiet",
            "-rev",
            "-accept",
            f"{LOCALHOST}:{port}",
            "-cert",
            cert,
            "-key",
            key,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def main():
        for _ in range(200):
            try:
                reader, writer = await asyncio.open_connection(
                    LOCALHOST, port, ssl=client_ctx, server_hostname="localhost"
                )
                break
            except OSError:
                await asyncio.sleep(0.02)
        else:
            pytest.fail("openssl s_server did not start")
        writer.write(b"hello ferroloop\n")
        line = await reader.readline()
        while line.strip() == b"" or line.startswith(b"CONNECTION"):
            line = await reader.readline()
        assert line.strip() == b"poolorref olleh"
        writer.close()

    try:
        run(loop, main())
    finally:
        srv.kill()
        srv.wait()


@needs_openssl
def test_server_against_openssl_s_client(loop, server_ctx, cert_files):
    _, _, cafile = cert_files

    async def main():
        server = await echo_server(loop, server_ctx)
        proc = await asyncio.create_subprocess_exec(
            OPENSSL,
            "s_client",
            "-quiet",
            "-connect",
            f"{LOCALHOST}:{port_of(server)}",
            "-CAfile",
            cafile,
            "-verify_return_error",
            "-servername",
            "localhost",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        proc.stdin.write(b"echo me\n")
        await proc.stdin.drain()
        line = await proc.stdout.readline()
        assert line == b"echo me\n"
        proc.stdin.close()
        proc.kill()
        await proc.wait()
        await stop(server)

    if sys.version_info < (3, 11) and loop.__class__.__module__.startswith("asyncio"):
        pass
    run(loop, main())


def test_buffered_application_sees_close_notify(loop, server_ctx, client_ctx):
    """The server sends, then closes with close_notify: a BufferedProtocol client gets every
    byte, then eof_received, then connection_lost(None)."""

    class Sender(asyncio.Protocol):
        def connection_made(self, transport):
            transport.write(pattern(100_000))
            transport.close()

    class Client(Buffered):
        def __init__(self, loop):
            super().__init__(loop)
            self.events = []
            self.lost = loop.create_future()

        def eof_received(self):
            self.events.append(("eof", len(self.data)))

        def connection_lost(self, exc):
            self.events.append(("lost", exc))
            self.lost.set_result(None)

    async def main():
        server = await loop.create_server(Sender, LOCALHOST, 0, ssl=server_ctx)
        proto = Client(loop)
        await loop.create_connection(
            lambda: proto, LOCALHOST, port_of(server), ssl=client_ctx, server_hostname="localhost"
        )
        await proto.lost
        assert bytes(proto.data) == pattern(100_000)
        # 3.10's TLS protocol (the older one) does not pass close_notify on as eof_received.
        eof = [("eof", 100_000)] if PY311 else []
        assert proto.events == [*eof, ("lost", None)]
        await stop(server)

    run(loop, main())


# -- what users reported against other loops --------------------------------------------------


class Exact(asyncio.BufferedProtocol):
    """Reads exactly ``want`` plaintext bytes (never a byte more), then calls ``then``."""

    def __init__(self, loop, want, then):
        self.loop, self.left, self.then = loop, want, then
        self.buf = bytearray(65536)
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return memoryview(self.buf)[: min(self.left, len(self.buf))]

    def buffer_updated(self, nbytes):
        self.left -= nbytes
        if self.left == 0:
            self.transport.pause_reading()
            self.then(self)

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(exc)


class LateEcho(asyncio.Protocol):
    """An echo for loop.start_tls(), which does not call connection_made: the transport is
    given once start_tls() returns; what came before it is echoed then."""

    transport = None

    def __init__(self):
        self.early = b""

    def attach(self, transport):
        self.transport = transport
        if self.early:
            transport.write(self.early)

    def data_received(self, data):
        if self.transport is None:
            self.early += data
        else:
            self.transport.write(data)


def _upgrade_server(loop, server_ctx, results):
    """A peer that reads b"STARTTLS\\n", waits with its reading paused while the client's
    ClientHello is already on the socket, then upgrades and echoes one line over TLS."""

    def then(proto):
        async def upgrade():
            await asyncio.sleep(0.1)  # the ClientHello arrives while nothing reads
            tr = await loop.start_tls(proto.transport, echo, server_ctx, server_side=True)
            echo.attach(tr)
            results.append(tr)

        echo = LateEcho()
        loop.create_task(upgrade())

    return lambda: Exact(loop, len(b"STARTTLS\n"), then)


def test_start_tls_keeps_bytes_that_arrived_before_it(loop, server_ctx, client_ctx):
    if not PY311:
        pytest.skip("StreamWriter.start_tls is 3.11+")
    results = []

    async def main():
        server = await loop.create_server(_upgrade_server(loop, server_ctx, results), LOCALHOST, 0)
        reader, writer = await asyncio.open_connection(LOCALHOST, port_of(server))
        writer.write(b"STARTTLS\n")
        # No reply awaited: the ClientHello follows at once.
        await writer.start_tls(client_ctx, server_hostname="localhost")
        writer.write(b"over tls\n")
        assert await reader.readline() == b"over tls\n"
        assert len(results) == 1
        writer.close()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())


def test_start_tls_while_writing_is_paused(loop, ref_loop, server_ctx, client_ctx):
    """The client's transport is paused for writing (its peer reads nothing yet) when it
    upgrades: the plaintext goes first, then the handshake; both loops end the same way."""
    plain = pattern(4 * 1024 * 1024)

    async def scenario(lp):
        calls = []
        lp.set_exception_handler(lambda _lp, ctx: calls.append(ctx["message"]))
        upgraded = []

        def then(proto):
            async def upgrade():
                echo = LateEcho()
                tr = await lp.start_tls(proto.transport, echo, server_ctx, server_side=True)
                echo.attach(tr)
                upgraded.append(tr)

            lp.create_task(upgrade())

        server = await lp.create_server(lambda: Exact(lp, len(plain), then), LOCALHOST, 0)
        proto = Proto(lp)
        tr, _ = await lp.create_connection(lambda: proto, LOCALHOST, port_of(server))
        tr.write(plain)
        paused = "pause_writing" in proto.events
        tls_proto = Proto(lp)
        tls_tr = await lp.start_tls(tr, tls_proto, client_ctx, server_hostname="localhost")
        tls_tr.write(b"after")
        got = await tls_proto.wait_bytes(5)
        tls_tr.close()
        await tls_proto.lost
        await stop(server)
        lp.set_exception_handler(None)
        return paused, got, len(upgraded), calls

    if not PY311:
        pytest.skip("asyncio's older TLS protocol; covered by the 3.11+ runs")
    got = run(loop, scenario(loop))
    want = run(ref_loop, scenario(ref_loop))
    assert got == want
    assert got[:3] == (True, b"after", 1)


def test_close_drains_then_shuts_down_promptly(loop, server_ctx, client_ctx):
    """A server writes 8 MiB and closes: the client gets all of it, then close_notify; neither
    side waits for the shutdown timeout (30 s by default, more than this test's guard)."""
    size = 8 * 1024 * 1024
    lost = []

    class Sender(asyncio.Protocol):
        def connection_made(self, transport):
            transport.write(pattern(size))
            transport.close()

        def connection_lost(self, exc):
            lost.append(exc)

    async def main():
        server = await loop.create_server(Sender, LOCALHOST, 0, ssl=server_ctx)
        proto = Proto(loop)
        await loop.create_connection(
            lambda: proto, LOCALHOST, port_of(server), ssl=client_ctx, server_hostname="localhost"
        )
        await proto.lost
        assert len(proto.data) == size
        assert proto.lost_calls == [None]
        while not lost:
            await asyncio.sleep(0.01)
        assert lost == [None]
        await stop(server)

    run(loop, main(), timeout=20)


def test_debug_mode_close_right_after_connecting(loop, server_ctx, client_ctx):
    loop.set_debug(True)

    async def main():
        server = await echo_server(loop, server_ctx)
        for _ in range(5):
            proto = Proto(loop)
            tr, _ = await loop.create_connection(
                lambda p=proto: p, LOCALHOST, port_of(server), ssl=client_ctx,
                server_hostname="localhost",
            )  # fmt: skip
            tr.close()
            await proto.lost
        await stop(server)

    run(loop, main())


def test_peer_reset_mid_handshake_is_not_reported(loop, server_ctx):
    """Clients that reset during the handshake: the server logs at debug level only (asyncio
    gives OSError and SSLError there to the logger, not the exception handler)."""
    made = []
    App = made_recorder(made)

    async def main():
        server = await loop.create_server(App, LOCALHOST, 0, ssl=server_ctx)
        for _ in range(5):
            sock = socket.create_connection((LOCALHOST, port_of(server)))
            sock.setblocking(False)
            await loop.sock_sendall(sock, b"\x16\x03\x01\x00\x05hello")  # a broken ClientHello
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            sock.close()  # RST
        await asyncio.sleep(0.1)
        assert made == []
        await stop(server)

    run(loop, main())


def test_sendfile_over_tls_falls_back(loop, server_ctx, client_ctx, tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(pattern(300_000))

    async def main():
        server = await echo_server(loop, server_ctx)
        tr, proto = await tls_client(loop, server, client_ctx)
        with open(path, "rb") as f:
            sent = await loop.sendfile(tr, f)
        assert sent == 300_000
        assert await proto.wait_bytes(300_000) == pattern(300_000)
        tr.close()
        await proto.lost
        await stop(server)

    run(loop, main())


def test_unix_socket_and_accepted_socket(loop, server_ctx, client_ctx, tmp_path):
    path = str(tmp_path / "tls.sock")

    async def main():
        server = await loop.create_unix_server(Echo, path, ssl=server_ctx)
        proto = Proto(loop)
        tr, _ = await loop.create_unix_connection(
            lambda: proto, path, ssl=client_ctx, server_hostname="localhost"
        )
        tr.write(b"unix")
        assert await proto.wait_bytes(4) == b"unix"
        tr.close()
        await proto.lost
        await stop(server)

        # connect_accepted_socket with ssl: a socket accepted by the caller.
        listener = make_listener()
        port = listener.getsockname()[1]
        accepted = loop.create_task(loop.sock_accept(listener))
        proto2 = Proto(loop)
        connecting = loop.create_task(loop.create_connection(
            lambda: proto2, LOCALHOST, port, ssl=client_ctx, server_hostname="localhost"
        ))  # fmt: skip
        conn, _ = await accepted
        await loop.connect_accepted_socket(Echo, conn, ssl=server_ctx)
        tr2, _ = await connecting
        tr2.write(b"accepted")
        assert await proto2.wait_bytes(8) == b"accepted"
        tr2.close()
        await proto2.lost
        listener.close()

    run(loop, main())


def test_writelines_of_text_is_a_fatal_error(loop, exc_calls, server_ctx, client_ctx):
    async def main():
        server = await echo_server(loop, server_ctx)
        tr, proto = await tls_client(loop, server, client_ctx)
        tr.writelines((b"fine", bytearray(b"also fine")))
        assert await proto.wait_bytes(13) == b"finealso fine"
        if not PY311:  # the older TLS transport joins the items first
            with pytest.raises(TypeError):
                tr.writelines([b"a", "text"])
            tr.close()
        else:
            tr.writelines([b"a", "text"])
        await proto.lost
        await stop(server)

    run(loop, main())
    if not PY311:
        return
    ctx = exc_calls.pop()
    assert ctx["message"] == "Fatal error on SSL protocol"
    assert isinstance(ctx["exception"], TypeError)
    assert not exc_calls


def test_server_handshake_timeout_closes_silent_clients(loop, server_ctx):
    """Clients that connect and never send a ClientHello: the server gives up after its
    handshake timeout, closes the socket (quietly: an OSError is only debug-logged) and keeps
    no descriptor."""
    made = []
    App = made_recorder(made)

    async def main():
        server = await loop.create_server(
            App, LOCALHOST, 0, ssl=server_ctx, ssl_handshake_timeout=0.1
        )
        before = fd_count()
        socks = []
        for _ in range(5):
            sock = socket.create_connection((LOCALHOST, port_of(server)))
            sock.setblocking(False)
            socks.append(sock)
        for sock in socks:
            try:
                assert await loop.sock_recv(sock, 1024) == b""
            except ConnectionResetError:
                pass
            sock.close()
        await asyncio.sleep(0.05)
        assert made == []
        assert fd_count() <= before
        await stop(server)

    run(loop, main())


def test_tls_inside_tls(loop, server_ctx, client_ctx):
    """start_tls on a TLS transport: the inner connection runs over the outer one."""
    if not PY311:
        pytest.skip("StreamWriter.start_tls is 3.11+")

    # The server answers before it starts the inner TLS, as STARTTLS protocols do: a
    # ClientHello sent at once could reach the server's StreamReader with the line before it,
    # where start_tls before 3.14 (gh-142352) loses it, on any loop.
    async def handle(reader, writer):
        assert await reader.readline() == b"INNER\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, LOCALHOST, 0, ssl=server_ctx)
        reader, writer = await asyncio.open_connection(
            LOCALHOST, port_of(server), ssl=client_ctx, server_hostname="localhost"
        )
        writer.write(b"INNER\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(client_ctx, server_hostname="localhost")
        writer.write(b"nested\n")
        assert await reader.readline() == b"NESTED\n"
        writer.close()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())
