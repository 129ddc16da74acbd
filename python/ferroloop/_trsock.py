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

import _socket
import socket
from asyncio import trsock

_raw_family = _socket.socket.family.__get__
_raw_type = _socket.socket.type.__get__


def family_and_type(sock) -> tuple[int, int]:
    """A socket's family and type as ints (socket.socket's properties convert them to
    enums at each read); a stand-in object's own attributes otherwise."""
    if isinstance(sock, _socket.socket):
        return _raw_family(sock), _raw_type(sock)
    return sock.family, sock.type


# ...and as those properties return them: the enum member, or the int when there is none.
_FAMILIES = {int(m): m for m in socket.AddressFamily}
_KINDS = {int(m): m for m in socket.SocketKind}


class TransportSocket(trsock.TransportSocket):
    __slots__ = ("family", "type", "proto", "fileno", "getsockname", "getpeername")

    def __init__(self, sock) -> None:
        super().__init__(sock)
        family, kind = family_and_type(sock)
        self.family = _FAMILIES.get(family, family)
        self.type = _KINDS.get(kind, kind)
        self.proto = sock.proto
        self.fileno = sock.fileno
        self.getsockname = sock.getsockname
        self.getpeername = sock.getpeername
