"""``TransportSocket``: what ``get_extra_info("socket")`` returns, without Python frames.

asyncio wraps a transport's socket in ``asyncio.trsock.TransportSocket``, whose members
are Python properties and methods that forward to the socket. Libraries read them on
every request: anyio builds a socket stream's attributes from ``family``,
``getsockname()`` and ``getpeername()`` each time one is asked for, and httpcore checks
``fileno()`` of every pooled connection. ``family`` there converts the socket's number
into an ``AddressFamily`` enum on each read (0.8 µs on 3.11).

This subclass keeps asyncio's class (``isinstance`` holds, the repr is asyncio's) and
answers the same: ``family``, ``type`` and ``proto`` are read once, since a socket's
never change; ``fileno``, ``getsockname`` and ``getpeername`` are the socket's own
methods, so each call still asks the kernel, as asyncio's does (after a reset,
``getpeername()`` raises ``OSError`` here too).
"""

from __future__ import annotations

from asyncio import trsock


class TransportSocket(trsock.TransportSocket):
    __slots__ = ("family", "type", "proto", "fileno", "getsockname", "getpeername")

    def __init__(self, sock) -> None:
        super().__init__(sock)
        self.family = sock.family
        self.type = sock.type
        self.proto = sock.proto
        self.fileno = sock.fileno
        self.getsockname = sock.getsockname
        self.getpeername = sock.getpeername
