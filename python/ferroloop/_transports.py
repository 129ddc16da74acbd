"""``SocketTransport``: asyncio's TCP/Unix stream transport over a native core.

A native type cannot subclass ``asyncio.Transport``, so this small class is the
transport users see, and ``_ferroloop.StreamCore`` does the work: it reads and
calls the protocol, sends, buffers and accounts for flow control, all without
Python frames. The hot methods (``write``, ``writelines``, reading control,
buffer size) are the core's own methods, bound on the instance, so a call to
``transport.write`` goes straight to Rust. What stays here is cold and follows
``asyncio.selector_events._SelectorTransport`` line by line: closing, errors,
``connection_lost``, extra info, the sendfile hand-over.
"""

from __future__ import annotations

import inspect
import socket
import warnings
from asyncio import base_events, constants, futures, protocols, transports, trsock
from typing import Any

from ._compat import PY312
from ._ferroloop import StreamCore

logger = base_events.logger
# asyncio.Server counts its transports; 3.13 passes the transport itself.
_ATTACH_TAKES_TRANSPORT = len(inspect.signature(base_events.Server._attach).parameters) > 1


class SocketTransport(transports._FlowControlMixin, transports.Transport):
    max_size = 256 * 1024  # the native core's read size, as asyncio's
    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    _sock = None

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None) -> None:
        super().__init__(extra, loop)
        self._extra["socket"] = trsock.TransportSocket(sock)
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
        self._empty_waiter = None
        core = self._core = StreamCore(loop, self, self._sock_fd)
        self._protocol_connected = False
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
        base_events._set_nodelay(sock)
        core.attach()
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(core.start_reading)  # only once connection_made() ran
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    # -- state read by asyncio code -------------------------------------------

    @property
    def _conn_lost(self) -> int:
        return self._core.conn_lost

    @property
    def _closing(self) -> bool:
        return self._core.is_closing()

    @property
    def _eof(self) -> bool:
        return self._core.eof

    @property
    def _paused(self) -> bool:
        return not self._core.is_reading() and not self._core.is_closing()

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

    # -- the Transport API --------------------------------------------------------

    def set_protocol(self, protocol) -> None:
        self._core.set_protocol(protocol, isinstance(protocol, protocols.BufferedProtocol))
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self):
        return self._protocol

    def write(self, data) -> None:  # replaced per instance by the core's method
        self._core.write(data)

    def writelines(self, list_of_data) -> None:
        if self._core.eof:
            raise RuntimeError(
                "Cannot call writelines() after write_eof()"
                if PY312
                else "Cannot call write() after write_eof()"
            )
        if self._empty_waiter is not None:
            raise RuntimeError("unable to writelines; sendfile is in progress")
        self._core.writelines(list_of_data)

    def get_write_buffer_size(self) -> int:  # replaced per instance
        return self._core.get_write_buffer_size()

    def is_reading(self) -> bool:  # replaced per instance
        return self._core.is_reading()

    def is_closing(self) -> bool:  # replaced per instance
        return self._core.is_closing()

    def pause_reading(self) -> None:
        if self._core.pause_reading() and self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._core.resume_reading() and self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        now = self._core.begin_eof()
        if now:
            self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        empty = self._core.begin_close()
        if empty:
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def __del__(self, _warn=warnings.warn) -> None:
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()
            if self._server is not None:
                if _ATTACH_TAKES_TRANSPORT:
                    self._server._detach(self)
                else:
                    self._server._detach()

    # -- called by the core (cold paths) ------------------------------------------

    def _read_ready__on_eof(self) -> None:
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open:
            self._core.stop_reading()
        else:
            self.close()

    def _write_failed(self, exc: BaseException) -> None:
        self._fatal_error(exc, "Fatal write error on socket transport")
        if self._empty_waiter is not None:
            self._empty_waiter.set_exception(exc)

    def _write_drained(self) -> None:
        if self._empty_waiter is not None:
            self._empty_waiter.set_result(None)
        if self._core.is_closing():
            self._call_connection_lost(None)
        elif self._core.eof:
            self._sock.shutdown(socket.SHUT_WR)

    def _fatal_error(self, exc, message="Fatal error on transport") -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

    def _force_close(self, exc) -> None:
        if self._core.force_close():
            self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            self._core.detach()
            self._sock.close()
            self._sock = None
            self._protocol = None
            self._loop = None
            server = self._server
            if server is not None:
                if _ATTACH_TAKES_TRANSPORT:
                    server._detach(self)
                else:
                    server._detach()
                self._server = None
            if self._empty_waiter is not None:
                self._empty_waiter.set_exception(ConnectionError("Connection is closed by peer"))

    # -- loop.sendfile() ------------------------------------------------------------

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
