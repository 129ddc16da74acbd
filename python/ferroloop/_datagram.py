"""``DatagramTransport``: asyncio's UDP / Unix datagram transport over the native core.

``_ferroloop.DatagramCore`` reads datagrams and calls the protocol, sends, queues
and does write flow control without Python frames; ``sendto`` and the buffer
size are the core's own methods, bound on the instance. What is here is the
set-up and the cold paths, following ``asyncio.selector_events._SelectorDatagramTransport``.

asyncio's datagram transport changed between versions in ways a program can see:
empty datagrams are dropped before 3.13, and 3.13 counts 8 header bytes per queued
datagram (which its drain does not subtract); 3.10 sums the queue for
``get_write_buffer_size()`` where later versions keep a counter that ``abort()`` leaves
as it was; whether it subclasses
``asyncio.DatagramTransport`` (3.12+). They are learnt from the running asyncio,
so the native transport matches it on every version.
"""

from __future__ import annotations

import collections
import sys
import warnings
from asyncio import futures, selector_events, transports
from types import SimpleNamespace

from ._ferroloop import DatagramCore
from ._transport_base import NativeTransport
from ._trsock import TransportSocket

_ASYNCIO = selector_events._SelectorDatagramTransport


def _learn_sendto() -> tuple[bool, int, bool]:
    """What asyncio's ``sendto`` does: (drops empty datagrams, header bytes counted per
    queued datagram, whether the size is kept in a counter rather than summed from the
    queue, as 3.10 does: then a dropped queue keeps its size).

    asyncio's own ``sendto`` runs on a stand-in whose queue is not empty, so it only
    queues: what it counted shows all three.
    """
    stand_in = SimpleNamespace(
        _address=None,
        _conn_lost=0,
        _buffer=collections.deque([(b"x", None)]),
        _buffer_size=0,
        _maybe_pause_protocol=lambda: None,
        _extra={"peername": None},
    )
    try:
        _ASYNCIO.sendto(stand_in, b"", ("127.0.0.1", 9))
        drops_empty = len(stand_in._buffer) == 1
        before = stand_in._buffer_size
        _ASYNCIO.sendto(stand_in, b"abc", ("127.0.0.1", 9))
        counted = stand_in._buffer_size - before
    except Exception:  # noqa: BLE001 - an asyncio we do not know: 3.13's rules
        return False, 8, True
    if counted == 0:  # 3.10: get_write_buffer_size() sums the queue
        return drops_empty, 0, False
    return drops_empty, max(counted - 3, 0), True


def _learn_drop_resets_size() -> bool:
    """Whether asyncio's ``_force_close`` zeroes the queued size with the queue (3.15+).

    Run on a stand-in with one datagram queued; its loop only records."""
    noop = lambda *args, **kwargs: None  # noqa: E731
    stand_in = SimpleNamespace(
        _conn_lost=0,
        _closing=True,
        _buffer=collections.deque([(b"abc", None)]),
        _buffer_size=11,
        _sock_fd=-1,
        _loop=SimpleNamespace(_remove_writer=noop, _remove_reader=noop, call_soon=noop),
        _call_soon=noop,
        _call_connection_lost=noop,
    )
    try:
        _ASYNCIO._force_close(stand_in, None)
    except Exception:  # noqa: BLE001 - an asyncio we do not know: the newest rule
        return True
    return stand_in._buffer_size == 0


_DROPS_EMPTY, _HEADER, _COUNTER = _learn_sendto()
# The native core keeps the size through a dropped queue only where asyncio does.
_COUNTER = _COUNTER and not _learn_drop_resets_size()
_BASES = (
    (NativeTransport, transports.DatagramTransport)
    if issubclass(_ASYNCIO, transports.DatagramTransport)
    else (NativeTransport,)
)


# Reading control of datagram transports came with 3.11; 3.10's raise NotImplementedError.
_READING_CONTROL = sys.version_info >= (3, 11)


class DatagramTransport(*_BASES):  # type: ignore[misc]
    max_size = 256 * 1024  # the native core's largest read, as asyncio's
    _sock = None
    if not _READING_CONTROL:
        pause_reading = transports.ReadTransport.pause_reading
        resume_reading = transports.ReadTransport.resume_reading
        is_reading = transports.ReadTransport.is_reading

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None) -> None:
        super().__init__(loop, extra)
        self._extra["socket"] = TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._address = address
        self._server = None
        core = self._core = DatagramCore(
            loop,
            loop._reactor,
            self,
            sock,
            self._sock_fd,
            sock.family,
            bool(self._extra["peername"]),
            address if address else None,
            _DROPS_EMPTY,
            _HEADER,
            _COUNTER,
        )
        self.set_protocol(protocol)
        # Hot paths, straight to the native core.
        self.sendto = core.sendto
        self.get_write_buffer_size = core.get_write_buffer_size
        if _READING_CONTROL:
            self.is_reading = core.is_reading
        self.is_closing = core.is_closing
        loop._transports[self._sock_fd] = self
        core.attach()
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(core.start_reading)  # only once connection_made() ran
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._core.is_closing():
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._loop is not None and not self._loop.is_closed() and self._sock is not None:
            info.append("read=polling" if self._core.is_reading() else "read=idle")
            state = "polling" if self._core.writing else "idle"
            info.append(f"write=<{state}, bufsize={self._core.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    def sendto(self, data, addr=None) -> None:  # replaced per instance by the core's method
        self._core.sendto(data, addr)

    def __del__(self, _warn=warnings.warn) -> None:
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()

    def _release(self) -> None:
        self._sock.close()
        self._sock = None


def send_closed() -> None:
    """``sendto`` after ``connection_lost``: asyncio's ``self._sock`` is None then.

    Its ``sendto`` fails on that, and reporting the failure fails on ``self._loop``,
    also None: the caller sees that second ``AttributeError``, as here.
    """
    try:
        raise AttributeError("'NoneType' object has no attribute 'sendto'")
    except AttributeError:
        raise AttributeError("'NoneType' object has no attribute 'call_exception_handler'")  # noqa: B904


__all__ = ["DatagramTransport", "send_closed"]
