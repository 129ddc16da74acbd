"""Helpers shared by the networking tests (test_sockets, test_tcp, test_unix, test_server, ...).

Everything here drives the loop under test only through public asyncio API, so that the same
test observes asyncio and ferroloop alike whichever implementation (asyncio's borrowed code or
native transports) is behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import socket
import struct

LOCALHOST = "127.0.0.1"


class Proto(asyncio.Protocol):
    """A protocol that records every callback, with awaitable milestones.

    ``events`` lists callback names in order; ``lost_calls`` every argument given to
    connection_lost (a test asserts it has exactly one element); ``data`` all bytes received.
    ``keep_open`` is what eof_received returns.
    """

    def __init__(self, loop, *, keep_open=None):
        self.loop = loop
        self.keep_open = keep_open
        self.transport = None
        self.events: list[str] = []
        self.data = bytearray()
        self.lost_calls: list[BaseException | None] = []
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self._data_waiter = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        self.made.set_result(transport)

    def data_received(self, data):
        assert isinstance(data, bytes), type(data)
        self.events.append("data")
        self.data += data
        self._wake()

    def eof_received(self):
        self.events.append("eof")
        if not self.eof.done():
            self.eof.set_result(None)
        self._wake()
        return self.keep_open

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_calls.append(exc)
        if not self.lost.done():
            self.lost.set_result(exc)
        self._wake()

    def pause_writing(self):
        self.events.append("pause_writing")

    def resume_writing(self):
        self.events.append("resume_writing")

    def _wake(self):
        if self._data_waiter is not None and not self._data_waiter.done():
            self._data_waiter.set_result(None)

    async def wait_bytes(self, n: int) -> bytes:
        """Wait until at least ``n`` bytes arrived (fails if the connection ends first)."""
        while len(self.data) < n:
            assert not self.lost.done(), f"lost after {len(self.data)} of {n} bytes"
            self._data_waiter = self.loop.create_future()
            await self._data_waiter
        return bytes(self.data)


def make_listener(family=socket.AF_INET, host=LOCALHOST, backlog=100) -> socket.socket:
    """A non-blocking listening TCP socket on an ephemeral port."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def closed_port(host=LOCALHOST) -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


async def accept(loop, listener) -> socket.socket:
    """The next connection on ``listener`` as a non-blocking socket."""
    conn, _ = await loop.sock_accept(listener)
    conn.setblocking(False)
    return conn


async def recv_until_eof(loop, sock) -> bytes:
    chunks = bytearray()
    while True:
        data = await loop.sock_recv(sock, 1 << 16)
        if not data:
            return bytes(chunks)
        chunks += data


async def recv_exactly(loop, sock, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        data = await loop.sock_recv(sock, n - len(chunks))
        assert data, f"EOF after {len(chunks)} of {n} bytes"
        chunks += data
    return bytes(chunks)


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that are not all alike, so reordering or loss shows in a comparison."""
    block = bytes((seed + i) % 251 for i in range(251))
    return (block * (n // len(block) + 1))[:n]


def fd_count() -> int:
    """Open file descriptors, after collecting garbage (sockets left by earlier tests)."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


@contextlib.contextmanager
def nofile_limit(needed: int):
    """Raise RLIMIT_NOFILE's soft limit to ``needed`` for the block; None if impossible."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        yield True
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        yield False
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield True
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def ipv6_loopback() -> bool:
    """Whether ``::1`` can be bound here (IPv6 is often off in containers)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def scoped_ipv6() -> tuple[str, str, int] | None:
    """An IPv6 address that needs a scope id and can be bound: (address, ifname, ifindex).

    Tries ``::1%lo`` first, then the link-local addresses in /proc/net/if_inet6.
    """
    if not socket.has_ipv6:
        return None
    candidates = [("::1", "lo")]
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                hexaddr, _, _, scope, _, ifname = line.split()
                if int(scope, 16) == 0x20:  # IPV6_ADDR_LINKLOCAL
                    addr = ":".join(hexaddr[i : i + 4] for i in range(0, 32, 4))
                    candidates.append(
                        (
                            socket.inet_ntop(
                                socket.AF_INET6, socket.inet_pton(socket.AF_INET6, addr)
                            ),
                            ifname,
                        )
                    )
    except OSError:
        pass
    for addr, ifname in candidates:
        try:
            index = socket.if_nametoindex(ifname)
            info = socket.getaddrinfo(f"{addr}%{ifname}", 0, socket.AF_INET6, socket.SOCK_STREAM)
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
                sock.bind(info[0][4])
        except OSError:
            continue
        return addr, ifname, index
    return None


async def send_end_and_collect(loop, a, b) -> bytes:
    """After a cancelled ``sock_sendall`` on ``a``: send ``b"END"`` and read ``b`` until it
    arrives; returns everything read, for checking nothing came out of order."""
    sender = asyncio.ensure_future(loop.sock_sendall(a, b"END"))
    got = bytearray()
    while not got.endswith(b"END"):
        data = await loop.sock_recv(b, 1 << 20)
        assert data
        got += data
    await sender
    return bytes(got)


def tls_contexts():
    """(server, client) SSL contexts of a fresh CA (trustme), for ``localhost``; skips the
    test when trustme is not installed."""
    import ssl

    import pytest

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client
