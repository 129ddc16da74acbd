"""What every native transport shares on the Python side.

A native type cannot subclass ``asyncio.Transport``, so each native transport
is a small Python class around a native core (``self._core``), which does the
I/O, the buffering, write flow control and the protocol calls on the hot path.
``NativeTransport`` is their base: the Transport API the core answers directly,
flow control (whose state is the core's), and the cold paths, which follow
``asyncio.selector_events._SelectorTransport`` line by line: closing, errors,
``connection_lost``.

The module-level functions below are what the core calls back (through the
extension's registry of Python functions): end of stream, fatal errors, a failed
or completed flush. A kind of transport adds its own resource handling in
``_release`` (closing its socket or pipe) and its own reads and writes.
"""

from __future__ import annotations

from asyncio import base_events, protocols, transports
from typing import Any

logger = base_events.logger


class NativeTransport(transports._FlowControlMixin, transports.Transport):
    """The base of the transports whose I/O is native (see the module doc).

    A ``_FlowControlMixin`` for asyncio's checks (``loop.sendfile()``'s fallback
    requires one), whose state the core holds instead: the mixin's own
    ``__init__`` is skipped, and its attributes are read from the core.
    """

    _core: Any
    _kind = "socket"  # in asyncio's messages: "Fatal write error on socket transport"
    # asyncio 3.14's socket transport: a drained buffer loses the connection only if nothing
    # (close() or an error, in resume_writing()) has scheduled connection_lost already.
    _drain_loses_once = False

    def __init__(self, loop, extra=None) -> None:
        transports.Transport.__init__(self, extra)
        self._loop = loop
        self._protocol = None
        self._protocol_connected = False
        self._empty_waiter = None

    # -- state read by asyncio code ---------------------------------------------

    @property
    def _conn_lost(self) -> int:
        return self._core.conn_lost

    @property
    def _closing(self) -> bool:
        return self._core.is_closing()

    @property
    def _paused(self) -> bool:
        return not self._core.is_reading() and not self._core.is_closing()

    @property
    def _protocol_paused(self) -> bool:
        return self._core.protocol_paused

    @property
    def _low_water(self):
        return self._core.get_write_buffer_limits()[0]

    @property
    def _high_water(self):
        return self._core.get_write_buffer_limits()[1]

    # -- the Transport API --------------------------------------------------------

    def set_protocol(self, protocol) -> None:
        self._core.set_protocol(protocol, isinstance(protocol, protocols.BufferedProtocol))
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self):
        return self._protocol

    def get_write_buffer_size(self) -> int:  # replaced per instance by the core's method
        return self._core.get_write_buffer_size()

    def get_write_buffer_limits(self):
        return self._core.get_write_buffer_limits()

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self._core.set_write_buffer_limits(high, low)

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

    def close(self) -> None:
        empty = self._core.begin_close()
        if empty:
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    # -- closing ------------------------------------------------------------------

    def _fatal_error(self, exc, message="Fatal error on transport") -> None:
        """asyncio's ``_fatal_error``: OS errors are logged in debug mode only."""
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

    def _read_eof(self) -> None:
        """End of stream: asyncio's ``_read_ready__on_eof``."""
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

    def _force_close(self, exc) -> None:
        if self._core.force_close():
            self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            self._core.detach()
            self._release()
            self._protocol = None
            self._loop = None
            if self._empty_waiter is not None:
                self._empty_waiter.set_exception(ConnectionError("Connection is closed by peer"))

    def _release(self) -> None:
        """Closes what the transport owns, after ``connection_lost``."""
        raise NotImplementedError

    def _shutdown_write(self) -> None:
        """Ends the write side once the buffer drained after ``write_eof()``."""
        raise NotImplementedError


# -- what the native core calls (cold paths) ---------------------------------------


def on_eof(transport: NativeTransport) -> None:
    """End of stream (for a write pipe: its reader went away)."""
    transport._read_eof()


def fatal_error(transport: NativeTransport, exc, message="Fatal error on transport") -> None:
    """asyncio's ``_fatal_error`` of the transport's kind."""
    transport._fatal_error(exc, message)


def write_failed(transport: NativeTransport, exc: BaseException) -> None:
    """A flush failed: the fatal error, and ``loop.sendfile()``'s waiter."""
    transport._fatal_error(exc, f"Fatal write error on {transport._kind} transport")
    if transport._empty_waiter is not None:
        transport._empty_waiter.set_exception(exc)


def write_drained(transport: NativeTransport) -> None:
    """The buffer drained while closing, after ``write_eof()``, or for sendfile."""
    if transport._empty_waiter is not None:
        transport._empty_waiter.set_result(None)
    core = transport._core
    once = transport._drain_loses_once
    if core.is_closing() and not (once and core.conn_lost):
        if once:
            core.force_close()  # counts the loss (nothing is buffered)
        transport._call_connection_lost(None)
    elif core.eof:
        transport._shutdown_write()
