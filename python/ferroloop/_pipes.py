"""Read and write pipe transports over the native stream core.

``connect_read_pipe`` and ``connect_write_pipe`` (and so a subprocess's pipes)
make these: ``_ferroloop.StreamCore`` over the pipe's descriptor, one way, does
the reads, the writes, the buffering and write flow control; what is here is
asyncio's ``_UnixReadPipeTransport`` / ``_UnixWritePipeTransport`` around it:
the checks of the descriptor, closing, EOF, errors, reprs. The classes derive
from the same asyncio ABCs as those (a read pipe is a ``ReadTransport`` only)
and take the shared parts of ``NativeTransport`` by name.
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from asyncio import futures, transports
from asyncio.log import logger

from ._compat import PY311
from ._ferroloop import StreamCore
from ._transport_base import NativeTransport

_N = NativeTransport


class _PipeBase:
    """What both pipe kinds share (state read from the core, closing)."""

    _kind = "pipe"
    _empty_waiter = None
    _drain_loses_once = False  # asyncio's pipes call connection_lost on drain as before 3.14
    _protocol_connected = True

    _conn_lost = _N._conn_lost
    _closing = _N._closing
    get_protocol = _N.get_protocol
    is_closing = _N.is_closing
    _force_close = _N._force_close
    _call_connection_lost = _N._call_connection_lost

    def _open(self, loop, pipe, protocol, extra, direction, allowed: str) -> None:
        transports.BaseTransport.__init__(self, extra)
        self._extra["pipe"] = pipe
        self._loop = loop
        self._pipe = pipe
        self._fileno = pipe.fileno()
        self._protocol = protocol
        mode = os.fstat(self._fileno).st_mode
        is_char, is_fifo, is_sock = stat.S_ISCHR(mode), stat.S_ISFIFO(mode), stat.S_ISSOCK(mode)
        if not (is_char or is_fifo or is_sock):
            self._pipe = None
            self._fileno = None
            self._protocol = None
            raise ValueError(allowed)
        os.set_blocking(self._fileno, False)
        if direction == "w" and (is_fifo or is_sock):
            direction = "w+"  # asyncio watches those for the reader closing
        self._core = StreamCore(loop, loop._reactor, self, self._fileno, True, direction)
        self._core.set_protocol(protocol, False)
        self._attach_error = None
        try:
            self._core.attach()
        except OSError as exc:  # a device epoll refuses (/dev/null): asyncio fails later
            self._attach_error = exc

    def set_protocol(self, protocol) -> None:
        self._core.set_protocol(protocol, False)
        self._protocol = protocol

    def _release(self) -> None:
        self._pipe.close()
        self._pipe = None

    def __del__(self, _warn=warnings.warn) -> None:
        if self._pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    def _repr(self, polling: bool, bufsize: int | None) -> str:
        info = [self.__class__.__name__]
        if self._pipe is None:
            info.append("closed")
        elif self._core.is_closing():
            info.append("closing")
        info.append(f"fd={self._fileno}")
        if self._pipe is not None and getattr(self._loop, "_selector", None) is not None:
            info.append("polling" if polling else "idle")
            if bufsize is not None:
                info.append(f"bufsize={bufsize}")
        elif self._pipe is not None:
            info.append("open")
        else:
            info.append("closed")
        return "<{}>".format(" ".join(info))


class ReadPipeTransport(_PipeBase, transports.ReadTransport):
    """asyncio's ``_UnixReadPipeTransport``."""

    max_size = 256 * 1024  # the native core's read size, as asyncio's

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None) -> None:
        self._open(loop, pipe, protocol, extra, "r", "Pipe transport is for pipes/sockets only.")
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_reading)  # only once connection_made() ran
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def _start_reading(self) -> None:
        if self._attach_error is not None and self._core.is_reading():
            exc, self._attach_error = self._attach_error, None
            raise exc
        self._core.start_reading()

    def __repr__(self) -> str:
        return self._repr(self._pipe is not None and self._core.is_reading(), None)

    if PY311:  # 3.10's read pipes have no is_reading() of their own (ReadTransport's raises)
        is_reading = _N.is_reading
    pause_reading = _N.pause_reading
    resume_reading = _N.resume_reading

    def close(self) -> None:
        if self._core.begin_close():
            self._loop.call_soon(self._call_connection_lost, None)

    def _read_eof(self) -> None:
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._core.begin_close()
        self._loop.call_soon(self._protocol.eof_received)
        self._loop.call_soon(self._call_connection_lost, None)

    def _fatal_error(self, exc, message="Fatal error on pipe transport") -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
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


class WritePipeTransport(_PipeBase, transports._FlowControlMixin, transports.WriteTransport):
    """asyncio's ``_UnixWritePipeTransport``."""

    _protocol_paused = _N._protocol_paused
    _low_water = _N._low_water
    _high_water = _N._high_water
    get_write_buffer_limits = _N.get_write_buffer_limits
    set_write_buffer_limits = _N.set_write_buffer_limits
    _fatal_error = _N._fatal_error

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None) -> None:
        self._open(
            loop,
            pipe,
            protocol,
            extra,
            "w",
            "Pipe transport is only for pipes, sockets and character devices",
        )
        core = self._core
        self.write = core.write
        self.get_write_buffer_size = core.get_write_buffer_size
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_watching)  # only once connection_made() ran
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def _start_watching(self) -> None:
        self._core.start_reading()  # the news of the reader closing, if it did

    def __repr__(self) -> str:
        polling = self._pipe is not None and self._core.writing
        return self._repr(polling, self._core.get_write_buffer_size())

    def write(self, data) -> None:  # replaced per instance by the core's method
        self._core.write(data)

    def get_write_buffer_size(self) -> int:  # replaced per instance
        return self._core.get_write_buffer_size()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._core.begin_close():
            self._loop.call_soon(self._call_connection_lost, None)

    def close(self) -> None:
        if self._pipe is not None and not self._core.is_closing():
            self.write_eof()

    def abort(self) -> None:
        self._force_close(None)

    def _read_eof(self) -> None:
        """The reader went away: asyncio's ``_read_ready`` of a write pipe."""
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._force_close(BrokenPipeError() if self._core.writing else None)
