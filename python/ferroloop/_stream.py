"""``SocketTransport``: asyncio's TCP/Unix stream transport over the native core.

``_ferroloop.StreamCore`` reads and calls the protocol, sends, buffers and does
write flow control without Python frames; the hot methods (``write``, reading
control, buffer size) are the core's own methods, bound on the instance, so a
call to ``transport.write`` goes straight to Rust. What is here is what a socket
adds to ``NativeTransport``: extra info, ``TCP_NODELAY``, the server's count of
connections, ``write_eof()`` by ``shutdown``, and the ``loop.sendfile()``
hand-over. It follows ``asyncio.selector_events._SelectorSocketTransport``.
"""

from __future__ import annotations

import inspect
import socket
import warnings
from asyncio import base_events, constants, futures
from typing import Any

from ._compat import PY312, PY314
from ._ferroloop import StreamCore
from ._transport_base import NativeTransport
from ._trsock import TransportSocket, family_and_type

# asyncio.Server counts its transports; 3.13 passes the transport itself.
_ATTACH_TAKES_TRANSPORT = len(inspect.signature(base_events.Server._attach).parameters) > 1


def _set_nodelay(sock) -> None:
    """TCP_NODELAY on every TCP stream socket, as uvloop does.

    asyncio's ``base_events._set_nodelay`` skips sockets whose ``proto`` is 0, which is what
    ``socket.socket()`` makes and what its accepted sockets inherit: servers handed a bound
    socket (``uvicorn --workers``/``--fd``, gunicorn's workers, ``create_server(sock=...)``)
    then answer a response written in two pieces 40 ms late (Nagle's algorithm waiting for
    the client's delayed ACK).
    """
    # proto 0 on an AF_INET/AF_INET6 stream socket is TCP: the kernel's default protocol.
    family, kind = family_and_type(sock)
    tcp = family in _TCP_FAMILIES and kind == socket.SOCK_STREAM
    if tcp and sock.proto in (0, socket.IPPROTO_TCP):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


_TCP_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})


class SocketTransport(NativeTransport):
    max_size = 256 * 1024  # the native core's read size, as asyncio's
    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    _sock = None
    _drain_loses_once = PY314

    def __init__(
        self, loop, sock, protocol, waiter=None, extra=None, server=None, context=None
    ) -> None:
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
        # 3.15 hands the context the protocol's callbacks run in (None: a copy of this one).
        core = self._core = StreamCore(loop, loop._reactor, self, self._sock_fd, context=context)
        self.set_protocol(protocol)
        self._server = server
        # Hot paths, straight to the native core.
        self.write = core.write
        self.get_write_buffer_size = core.get_write_buffer_size
        self.is_reading = core.is_reading
        self.is_closing = core.is_closing
        if server is not None:
            if _ATTACH_TAKES_TRANSPORT:
                server._attach(self)
            else:
                server._attach()
        loop._transports[self._sock_fd] = self
        _set_nodelay(sock)
        core.attach()
        loop.call_soon(self._protocol.connection_made, self, context=context)
        loop.call_soon(core.start_reading, context=context)  # only once connection_made() ran
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None, context=context)

    @property
    def _eof(self) -> bool:
        return self._core.eof

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

    # -- the Transport API (what a socket adds) -------------------------------------

    def write(self, data) -> None:  # replaced per instance by the core's method
        self._core.write(data)

    if PY312:

        def writelines(self, list_of_data) -> None:
            """asyncio 3.12+'s: the items are queued together and sent at once (3.14 skips
            falsy items); the core takes every item before it queues one."""
            if self._core.eof:
                raise RuntimeError("Cannot call writelines() after write_eof()")
            if self._empty_waiter is not None:
                raise RuntimeError("unable to writelines; sendfile is in progress")
            if not list_of_data:
                return
            self._core.writelines(list_of_data, PY314)  # 3.14 rules (see the core)

    else:

        def writelines(self, list_of_data) -> None:
            """asyncio 3.10/3.11's (``WriteTransport.writelines``): one write of the items
            joined, so a bad item is ``bytes.join``'s error and nothing is written."""
            self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        now = self._core.begin_eof()
        if now:
            self._sock.shutdown(socket.SHUT_WR)

    def __del__(self, _warn=warnings.warn) -> None:
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()
            # 3.13 detaches here (its server keeps a set of transports); before, asyncio's
            # transport does not, and a transport whose _attach failed (the server closed
            # meanwhile) must not detach from a count it never joined.
            if self._server is not None and _ATTACH_TAKES_TRANSPORT:
                self._server._detach(self)

    # -- closing --------------------------------------------------------------------

    def _release(self) -> None:
        self._sock.close()
        self._sock = None
        server = self._server
        if server is not None:
            if _ATTACH_TAKES_TRANSPORT:
                server._detach(self)
            else:
                server._detach()
            self._server = None

    def _shutdown_write(self) -> None:
        self._sock.shutdown(socket.SHUT_WR)

    # -- loop.sendfile() --------------------------------------------------------------

    def _make_empty_waiter(self) -> Any:
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        self._core.set_sendfile(True)
        if not self._core.writing:
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None
        self._core.set_sendfile(False)
