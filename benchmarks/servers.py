"""The servers under test in the network benchmarks, each on a loop chosen by name.

One server per process, as benchmarks/net.py runs them::

    python benchmarks/servers.py proto --loop ferroloop --cpu 0    # prints "READY <port> <pid>"
    python benchmarks/servers.py unix --loop uvloop --unix /tmp/echo.sock

Kinds: ``proto`` (TCP echo with an asyncio.Protocol), ``streams`` (TCP echo with asyncio
streams), ``sock`` (TCP echo with loop.sock_accept / sock_recv / sock_sendall), ``unix`` (Unix
socket echo with a Protocol), ``udp`` (UDP echo with a DatagramProtocol) and ``http``
(HTTP/1.1 keep-alive with httptools, one fixed small response); ``https`` is that server and
``tls`` the Protocol echo, over TLS (the stdlib ``ssl`` module, a throwaway certificate).
Each listens on 127.0.0.1 (port chosen by the system) or on ``--unix PATH``, prints one
READY line once it accepts, and serves until it is killed. It dies with its parent.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

from loops import factory

HOST = "127.0.0.1"
CHUNK = 65536
PR_SET_PDEATHSIG = 1
_TASKS: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones


class EchoProtocol(asyncio.Protocol):
    """Writes back whatever it receives."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def proto(loop: asyncio.AbstractEventLoop, unix: str | None) -> str:
    server = await loop.create_server(EchoProtocol, HOST, 0)
    return str(server.sockets[0].getsockname()[1])


class EchoDatagramProtocol(asyncio.DatagramProtocol):
    """Sends every datagram back to where it came from."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.transport.sendto(data, addr)


async def udp(loop: asyncio.AbstractEventLoop, unix: str | None) -> str:
    transport, _ = await loop.create_datagram_endpoint(EchoDatagramProtocol, local_addr=(HOST, 0))
    return str(transport.get_extra_info("sockname")[1])


async def unix(loop: asyncio.AbstractEventLoop, unix: str | None) -> str:
    if unix is None:
        raise SystemExit("the unix server needs --unix PATH")
    await loop.create_unix_server(EchoProtocol, unix)
    return unix


async def _stream_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass  # the client went away mid-echo: nothing to report in a benchmark
    finally:
        writer.close()


async def streams(loop: asyncio.AbstractEventLoop, unix: str | None) -> str:
    server = await asyncio.start_server(_stream_echo, HOST, 0)
    return str(server.sockets[0].getsockname()[1])


async def _sock_echo(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
    with conn:
        try:
            while data := await loop.sock_recv(conn, CHUNK):
                await loop.sock_sendall(conn, data)
        except OSError:
            pass


async def _sock_accept_forever(loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
    while True:
        conn, _ = await loop.sock_accept(listener)
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as transports do
        task = loop.create_task(_sock_echo(loop, conn))
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)


async def sock(loop: asyncio.AbstractEventLoop, unix: str | None) -> str:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(128)
    listener.setblocking(False)
    _TASKS.add(loop.create_task(_sock_accept_forever(loop, listener)))
    return str(listener.getsockname()[1])


RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"


class HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive: every request, whatever its path, gets RESPONSE."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import httptools

        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.error = httptools.HttpParserError

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except self.error:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()

    def on_message_complete(self) -> None:  # called by the parser
        self.transport.write(RESPONSE)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def http(loop: asyncio.AbstractEventLoop, unix: str | None) -> str:
    import httptools  # noqa: F401  # fail at start-up, not on the first connection

    server = await loop.create_server(HttpProtocol, HOST, 0)
    return str(server.sockets[0].getsockname()[1])


def tls_context():
    """A server context with a throwaway certificate for 127.0.0.1 (``trustme``)."""
    import ssl

    import trustme

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert(HOST).configure_cert(ctx)
    return ctx


async def https(loop: asyncio.AbstractEventLoop, unix: str | None) -> str:
    import httptools  # noqa: F401

    server = await loop.create_server(HttpProtocol, HOST, 0, ssl=tls_context())
    return str(server.sockets[0].getsockname()[1])


async def tls(loop: asyncio.AbstractEventLoop, unix: str | None) -> str:
    server = await loop.create_server(EchoProtocol, HOST, 0, ssl=tls_context())
    return str(server.sockets[0].getsockname()[1])


SERVERS: dict[str, Callable[[asyncio.AbstractEventLoop, str | None], Awaitable[str]]] = {
    "proto": proto,
    "streams": streams,
    "sock": sock,
    "unix": unix,
    "udp": udp,
    "http": http,
    "https": https,
    "tls": tls,
}


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the parent exits, so no server outlives a killed run."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's own clean-up has to do


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=list(SERVERS))
    parser.add_argument("--loop", default="asyncio")
    parser.add_argument("--unix", metavar="PATH", help="socket path of the unix server")
    parser.add_argument("--cpu", type=int, help="pin the server to this CPU")
    args = parser.parse_args(argv)
    _die_with_parent()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    loop = factory(args.loop)()
    asyncio.set_event_loop(loop)
    address = loop.run_until_complete(SERVERS[args.kind](loop, args.unix))
    print(f"READY {address} {os.getpid()}", flush=True)
    loop.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
