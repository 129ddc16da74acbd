"""Networking for ``ferroloop.Loop``, on top of the native fd watching.

This first version takes asyncio's own implementations from the running
interpreter (sockets, ``sock_*``, DNS through the executor, TCP and Unix
transports, servers, sendfile, UDP set-up), run by the native loop through
``_add_reader``/``_add_writer``. They behave exactly as asyncio's on every
Python version, by construction. Native transports replace them where the
benchmarks say it pays (see docs/coverage.md): stream sockets,
datagrams, pipes and subprocesses have theirs (``_stream``, ``_datagram``,
``_pipes``, ``_subprocess``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import selectors
import socket
import weakref
from asyncio import base_events, selector_events, unix_events
from typing import Any

from . import _fence, _subprocess, _tls
from ._datagram import DatagramTransport
from ._pipes import ReadPipeTransport, WritePipeTransport
from ._stream import SocketTransport
from ._trsock import family_and_type

_Future = asyncio.Future
_BASE = base_events.BaseEventLoop
_SELECTOR = selector_events.BaseSelectorEventLoop
_UNIX = unix_events._UnixSelectorEventLoop
# What _start_serving passes after the backlog (3.10 has no shutdown timeout).
_TLS_TIMEOUTS = ("ssl_handshake_timeout", "ssl_shutdown_timeout")

# Names taken from each asyncio class when the running Python has them.
_BORROWED = {
    _BASE: (
        "create_connection",
        "_connect_sock",
        "create_server",
        "connect_accepted_socket",
        "_create_connection_transport",
        "getaddrinfo",
        "getnameinfo",
        "_getaddrinfo_debug",
        "_ensure_resolved",
        "_create_server_getaddrinfo",
        "sock_sendfile",
        "_sock_sendfile_fallback",
        "_check_sendfile_params",
        "sendfile",
        "_sendfile_fallback",
        "create_datagram_endpoint",
        "connect_read_pipe",
        "connect_write_pipe",
        "subprocess_shell",
        "subprocess_exec",
        "_log_subprocess",
    ),
    _SELECTOR: (
        "_make_socket_transport",
        "_make_datagram_transport",
        "_start_serving",
        "_accept_connection2",
        "_ensure_fd_no_transport",
        "sock_recv",
        "_sock_recv",
        "_sock_read_done",
        "sock_recv_into",
        "_sock_recv_into",
        "sock_recvfrom",
        "_sock_recvfrom",
        "sock_recvfrom_into",
        "_sock_recvfrom_into",
        "sock_sendall",
        "_sock_sendall",
        "sock_sendto",
        "_sock_sendto",
        "_sock_connect",
        "_sock_write_done",
        "_sock_connect_cb",
        "sock_accept",
        "_sock_accept",
        "_sendfile_native",
    ),
    _UNIX: (
        "create_unix_connection",
        "create_unix_server",
        "_sock_sendfile_native",
        "_sock_sendfile_native_impl",
        "_sock_sendfile_update_filepos",
        "_sock_add_cancellation_callback",
        "_child_watcher_callback",
    ),
}


def _context_kwarg(context: Any) -> dict[str, Any]:
    """The ``context=`` of 3.15's transport factories, given only where there is one (earlier
    versions' factories, asyncio's own among them, take no such argument)."""
    return {} if context is None else {"context": context}


def borrowed() -> dict[str, Any]:
    """The asyncio functions this Python version has, by name."""
    out: dict[str, Any] = {}
    for cls, names in _BORROWED.items():
        for name in names:
            if name in cls.__dict__:
                out[name] = cls.__dict__[name]
    return out


class SelectorView:
    """What asyncio's transport reprs read of a loop's selector (``get_key``)."""

    __slots__ = ("_loop",)

    def __init__(self, loop: Any) -> None:
        self._loop = weakref.ref(loop)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        loop = self._loop()
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        events = None if loop is None else loop._fd_events(fd)
        if not events:
            raise KeyError(f"{fileobj!r} is not registered")
        return selectors.SelectorKey(fileobj, fd, events, None)


class NetMixin:
    """The public fd-watching methods and the state asyncio's transports use."""

    def _init_net(self) -> None:
        self._transports = weakref.WeakValueDictionary()
        self._unix_server_sockets: dict[Any, int] = {}

    @property
    def _selector(self) -> SelectorView | None:
        # asyncio drops its selector on close; reprs then say "open"/"closed".
        return None if self.is_closed() else SelectorView(self)

    def add_reader(self, fd, callback, *args) -> None:
        self._ensure_fd_no_transport(fd)
        self._add_reader(fd, callback, *args)

    def remove_reader(self, fd) -> bool:
        self._ensure_fd_no_transport(fd)
        return self._remove_reader(fd)

    def add_writer(self, fd, callback, *args) -> None:
        self._ensure_fd_no_transport(fd)
        self._add_writer(fd, callback, *args)

    def remove_writer(self, fd) -> bool:
        self._ensure_fd_no_transport(fd)
        return self._remove_writer(fd)

    # -- sock_*: native fast paths, asyncio's code when the fd is in other use --

    def _check_sock(self, sock) -> None:
        base_events._check_ssl_socket(sock)
        if self.get_debug() and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    async def sock_recv(self, sock, n):
        """Receive up to n bytes from sock (non-blocking)."""
        self._check_sock(sock)
        if type(n) is int and n >= 0:
            r = self._sock_recv_native(sock, sock.fileno(), n)
            if r is not NotImplemented:
                return (await r) if type(r) is _Future else r
        return await _SELECTOR.sock_recv(self, sock, n)

    async def sock_recv_into(self, sock, buf):
        """Receive into buf from sock (non-blocking); return the byte count."""
        self._check_sock(sock)
        r = self._sock_recv_into_native(sock, sock.fileno(), buf)
        if r is not NotImplemented:
            return (await r) if type(r) is _Future else r
        return await _SELECTOR.sock_recv_into(self, sock, buf)

    async def sock_sendall(self, sock, data):
        """Send all of data to sock (non-blocking)."""
        self._check_sock(sock)
        r = self._sock_sendall_native(sock, sock.fileno(), data)
        if r is not NotImplemented:
            return (await r) if type(r) is _Future else r
        return await _SELECTOR.sock_sendall(self, sock, data)

    async def sock_accept(self, sock):
        """Accept a connection on sock: (conn, address), conn non-blocking."""
        self._check_sock(sock)
        r = self._sock_accept_native(sock)
        if r is not NotImplemented:
            return (await r) if type(r) is _Future else r
        return await _SELECTOR.sock_accept(self, sock)

    async def sock_connect(self, sock, address):
        """Connect sock to a remote socket at address (non-blocking)."""
        self._check_sock(sock)
        family, kind = family_and_type(sock)
        if family == socket.AF_INET or (base_events._HAS_IPv6 and family == socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=family, type=kind, proto=sock.proto, loop=self
            )
            _, _, _, _, address = resolved[0]
        if isinstance(family, int):  # not a stand-in (a mock): its own connect is called
            r = self._sock_connect_native(sock, sock.fileno(), family, address)
            if r is not NotImplemented:
                return (await r) if type(r) is _Future else r
        fut = self.create_future()
        self._sock_connect(fut, sock, address)
        try:
            return await fut
        finally:
            fut = None  # breaks the cycle through an exception's traceback, as asyncio

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return WritePipeTransport(self, pipe, protocol, waiter, extra)

    async def _make_subprocess_transport(
        self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
    ):
        return await _subprocess.make_transport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra, **kwargs
        )

    if hasattr(_SELECTOR, "sock_recvfrom"):  # 3.11+

        async def sock_recvfrom(self, sock, bufsize):
            """Receive a datagram from sock: (data, address)."""
            self._check_sock(sock)
            if type(bufsize) is int and bufsize >= 0:
                r = self._sock_recvfrom_native(sock, sock.fileno(), bufsize)
                if r is not NotImplemented:
                    return (await r) if type(r) is _Future else r
            return await _SELECTOR.sock_recvfrom(self, sock, bufsize)

        async def sock_recvfrom_into(self, sock, buf, nbytes=0):
            """Receive a datagram into buf: (nbytes, address)."""
            self._check_sock(sock)
            n = nbytes or len(buf)
            if type(n) is int and n >= 0:
                r = self._sock_recvfrom_into_native(sock, sock.fileno(), buf, n)
                if r is not NotImplemented:
                    return (await r) if type(r) is _Future else r
            return await _SELECTOR.sock_recvfrom_into(self, sock, buf, nbytes)

        async def sock_sendto(self, sock, data, address):
            """Send a datagram to address; the number of bytes sent."""
            self._check_sock(sock)
            family = sock.family
            if isinstance(family, int):  # not a stand-in (a mock): its own sendto is called
                r = self._sock_sendto_native(sock, sock.fileno(), family, data, address)
                if r is not NotImplemented:
                    return (await r) if type(r) is _Future else r
            return await _SELECTOR.sock_sendto(self, sock, data, address)

    # -- a server's accepted connections: one callback each, not a task --

    def _accept_connection(
        self, protocol_factory, sock, sslcontext=None, server=None, backlog=100, *more
    ):
        # more: asyncio's TLS timeouts (3.10: one; 3.11+: two), then 3.15's server context.
        if self._task_factory is not None or self._debug:
            # A task per connection is observable there (a task factory sees it; debug mode
            # logs each accept): asyncio's own loop.
            return _SELECTOR._accept_connection(
                self, protocol_factory, sock, sslcontext, server, backlog, *more
            )
        timeouts = more[: len(_TLS_TIMEOUTS)]
        context = more[len(_TLS_TIMEOUTS)] if len(more) > len(_TLS_TIMEOUTS) else None
        if sslcontext is None:
            setup = functools.partial(self._accepted, context, self._set_up)
        else:
            tls = functools.partial(self._set_up_tls, sslcontext, timeouts)
            setup = functools.partial(self._accepted, context, tls)
        try:
            self._accept_connections(
                sock.fileno(),
                backlog,
                socket.socket,
                (*family_and_type(sock), sock.proto),
                setup,
                protocol_factory,
                server,
            )
        except OSError:
            # asyncio's loop meets the same error and handles it its way: logged, or on
            # EMFILE and its kind, accepting paused for a while.
            _SELECTOR._accept_connection(
                self, protocol_factory, sock, sslcontext, server, backlog, *more
            )

    # asyncio's _accept_connection2, as callbacks: the set-up, then (TLS) the handshake's end.
    # 3.15 runs each connection in its own copy of the server's context, set-up included.

    def _accepted(self, context, set_up, protocol_factory, conn, extra, server) -> None:
        if context is None:
            set_up(None, protocol_factory, conn, extra, server)
        else:
            context = context.copy()
            context.run(set_up, context, protocol_factory, conn, extra, server)

    def _set_up(self, context, protocol_factory, conn, extra, server) -> None:
        protocol = transport = None
        try:
            protocol = protocol_factory()
            transport = self._make_socket_transport(
                conn, protocol, extra=extra, server=server, **_context_kwarg(context)
            )
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._accept_failed(exc, protocol, transport)

    def _set_up_tls(
        self, sslcontext, timeouts, context, protocol_factory, conn, extra, server
    ) -> None:
        protocol = transport = None
        kwargs = dict(zip(_TLS_TIMEOUTS, timeouts, strict=False), **_context_kwarg(context))
        try:
            protocol = protocol_factory()
            waiter = self.create_future()
            transport = self._make_ssl_transport(
                conn,
                protocol,
                sslcontext,
                waiter=waiter,
                server_side=True,
                extra=extra,
                server=server,
                **kwargs,
            )
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._accept_failed(exc, protocol, transport)
            return
        waiter.add_done_callback(functools.partial(self._handshaken, protocol, transport))

    def _handshaken(self, protocol, transport, waiter) -> None:
        exc = asyncio.CancelledError() if waiter.cancelled() else waiter.exception()
        if exc is not None:
            transport.close()
            self._accept_failed(exc, protocol, transport)

    def _accept_failed(self, exc, protocol, transport) -> None:
        if self._debug:
            context = {
                "message": "Error on transport creation for incoming connection",
                "exception": exc,
            }
            if protocol is not None:
                context["protocol"] = protocol
            if transport is not None:
                context["transport"] = transport
            self.call_exception_handler(context)

    def _make_socket_transport(
        self, sock, protocol, waiter=None, *, extra=None, server=None, context=None
    ):
        return SocketTransport(self, sock, protocol, waiter, extra, server, context)

    _make_ssl_transport = _tls.make_ssl_transport
    start_tls = _tls.start_tls

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    async def _sendfile_native(self, transp, file, offset, count):
        if not isinstance(transp, SocketTransport):
            return await _SELECTOR._sendfile_native(self, transp, file, offset, count)
        del self._transports[transp._sock_fd]
        resume_reading = transp.is_reading()
        transp.pause_reading()
        await transp._make_empty_waiter()
        transp._core.suspend()  # sock_sendfile watches the fd itself meanwhile
        try:
            return await self.sock_sendfile(transp._sock, file, offset, count, fallback=False)
        finally:
            transp._core.resume()
            transp._reset_empty_waiter()
            if resume_reading:
                transp.resume_reading()
            self._transports[transp._sock_fd] = transp

    def _stop_serving(self, sock) -> None:
        # asyncio's Unix loop: stop accepting, then unlink the socket file it
        # created, if it is still the same file (3.13's cleanup_socket).
        path = sock.getsockname() if sock in self._unix_server_sockets else None
        self._remove_reader(sock.fileno())
        sock.close()
        if path is None:
            return
        prev_ino = self._unix_server_sockets.pop(sock)
        try:
            if os.stat(path).st_ino == prev_ino:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            base_events.logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)


# -- the fence: asyncio's code calls these overrides as it calls its own ----------------------

# What may follow the backlog in asyncio's _accept_connection, in order (3.10 has the first
# only, 3.11-3.14 the first two, 3.15 all three); _accept_connection above knows each.
_ACCEPT_HEAD = ["self", "protocol_factory", "sock", "sslcontext", "server", "backlog"]
_ACCEPT_TAIL = [*_TLS_TIMEOUTS, "context"]


def _probe_accept() -> str | None:
    got = _fence.params(_SELECTOR._accept_connection)
    tail = got[len(_ACCEPT_HEAD) :]
    if got[: len(_ACCEPT_HEAD)] != _ACCEPT_HEAD or tail != _ACCEPT_TAIL[: len(tail)]:
        return f"asyncio's _accept_connection is ({', '.join(got)})"
    return None


def _probe_borrowed() -> str | None:
    """Every public method taken from asyncio that this version's AbstractEventLoop has."""
    have = borrowed()
    api = vars(asyncio.AbstractEventLoop)
    gone = [n for names in _BORROWED.values() for n in names if n in api]
    gone = [n for n in gone if n not in have]
    return f"asyncio has no {', '.join(gone)}" if gone else None


async def _no_native_sendfile(self, *args, **kwargs):
    """asyncio's _sendfile_native hands a transport's socket over in ways only its own
    transport allows: where ferroloop's hand-over is off, loop.sendfile() reads and sends."""
    raise asyncio.exceptions.SendfileNotAvailableError(
        "native sendfile is off (see ferroloop.compat())"
    )


_FALLBACKS = {"_sendfile_native": _no_native_sendfile}

_OVERRIDES = (
    (
        "socket_transport",
        "_make_socket_transport",
        "asyncio's socket transport (_SelectorSocketTransport, Python reads and writes)",
        lambda: _fence.takes_all(
            NetMixin._make_socket_transport,
            _SELECTOR._make_socket_transport,
            "_make_socket_transport()",
        ),
    ),
    (
        "native_accept",
        "_accept_connection",
        "asyncio's accept loop (a task per accepted connection)",
        _probe_accept,
    ),
    (
        "native_sendfile_handover",
        "_sendfile_native",
        "asyncio's read-and-send loop for loop.sendfile() (its _sendfile_fallback)",
        lambda: _fence.same_params(
            ["self", "transp", "file", "offset", "count"],
            _SELECTOR._sendfile_native,
            "_sendfile_native()",
        ),
    ),
)

for _name, _method, _fallback, _probe in _OVERRIDES:
    if not _fence.rely(
        _name,
        [f"asyncio.selector_events.BaseSelectorEventLoop.{_method}"],
        f"asyncio's code calls loop.{_method}() with parameters ferroloop's accepts",
        _fallback,
        _probe,
    ):
        setattr(NetMixin, _method, _FALLBACKS.get(_method) or _SELECTOR.__dict__[_method])
del _name, _method, _fallback, _probe

_fence.rely(
    "borrowed_network_methods",
    [f"{cls.__module__}.{cls.__qualname__}.{n}" for cls, ns in _BORROWED.items() for n in ns],
    "the running asyncio's own create_connection, create_server, sock_*, sendfile, DNS, "
    "datagram, pipe and subprocess methods, run on ferroloop as they are",
    None,
    _probe_borrowed,
)
