"""TLS over ferroloop's native stream transports.

The TLS state machine is the running Python's own ``asyncio.sslproto.SSLProtocol``
(handshake, application data, close_notify, timeouts, flow control on both sides,
its errors and log messages), so every Python version behaves as its asyncio does.
What runs per record is native (``_ferroloop.TlsPump``), on 3.11+ where asyncio's
state machine is the one these paths were written against:

* bytes read from the socket go from the loop's read buffer into the incoming
  ``ssl.MemoryBIO`` with one ``write`` per read (no ``bytes`` object, no
  ``get_buffer``/``buffer_updated`` round trip);
* decryption asks OpenSSL only when a whole record is waiting (the pump follows the
  record headers it feeds) or decrypted bytes are pending, so the steady state never
  raises ``SSLWantReadError``; all records of one read reach ``data_received`` as
  one ``bytes``, as asyncio delivers them;
* ``write()`` on the TLS transport encrypts and hands the records to the native
  socket transport without Python frames.

Any other state (handshake, shutdown, paused reading, a ``BufferedProtocol``
application, a write that OpenSSL cannot take now) goes to asyncio's own methods,
through the functions at the end of this module. The pump reads asyncio's state
from the protocol's attributes at each step: asyncio's object stays the one truth.
On 3.10 asyncio's older ``SSLProtocol`` runs unchanged over the native transport.
"""

from __future__ import annotations

import ssl
import types
from asyncio import base_events, selector_events, sslproto
from typing import Any

from . import _fence
from ._compat import PY311
from ._stream import SocketTransport

_FATAL = "Fatal error on SSL protocol"

# What the pump (crates/ferroloop-py/src/transports/tls.rs) and the functions at the end of
# this module read and call on asyncio's SSLProtocol.
_PUMP_ATTRS = (
    "_sslobj", "_incoming", "_outgoing", "_write_backlog", "_app_transport", "_state",
    "_app_reading_paused", "_app_protocol_is_buffer", "_app_protocol",
    "_app_protocol_get_buffer", "_app_protocol_buffer_updated", "_app_writing_paused",
    "_outgoing_high_water", "_ssl_reading_paused", "_incoming_low_water",
    "_incoming_high_water", "_ssl_writing_paused",
)  # fmt: skip
_PUMP_METHODS = (
    "_do_handshake", "_do_read", "_do_flush", "_do_shutdown", "_call_eof_received",
    "_start_shutdown", "_do_write", "_process_outgoing", "_control_ssl_reading",
    "_fatal_error", "_write_appdata", "_control_app_writing", "_set_app_protocol",
)  # fmt: skip
_PUMP_STATES = ("UNWRAPPED", "DO_HANDSHAKE", "WRAPPED", "FLUSHING", "SHUTDOWN")


def _names_in_code(cls: type) -> set[str]:
    """Every name the methods of ``cls`` (and its bases) use: the attributes they set and read."""
    out: set[str] = set()
    for klass in cls.__mro__[:-1]:
        for value in vars(klass).values():
            code = getattr(value, "__code__", None)
            if code is not None:
                out.update(code.co_names)
    return out


def _probe_pump() -> str | None:
    """The SSLProtocol the pump was written against (3.11's rewrite, up to 3.15)."""
    proto = sslproto.SSLProtocol
    problem = _fence.missing(sslproto, ("SSLProtocolState", "_SSLProtocolTransport"))
    problem = problem or _fence.missing(sslproto.SSLProtocolState, _PUMP_STATES)
    problem = problem or _fence.missing(proto, _PUMP_METHODS)
    problem = problem or _fence.missing(sslproto._SSLProtocolTransport, ("write", "writelines"))
    if problem:
        return problem
    gone = [a for a in _PUMP_ATTRS if a not in _names_in_code(proto)]
    if gone:
        return f"asyncio's SSLProtocol no longer uses {', '.join(gone)}"
    if not hasattr(ssl.SSLObject, "_sslobj") and "_sslobj" not in _names_in_code(ssl.SSLObject):
        return "ssl.SSLObject keeps no _sslobj"
    return None


_PUMP = _fence.rely(
    "tls_pump",
    [f"asyncio.sslproto.SSLProtocol.{n}" for n in _PUMP_ATTRS + _PUMP_METHODS]
    + ["asyncio.sslproto.SSLProtocolState", "asyncio.sslproto._SSLProtocolTransport",
       "ssl.SSLObject._sslobj"],
    "asyncio's 3.11+ TLS state machine: these attributes and methods, with the states "
    "UNWRAPPED..SHUTDOWN; the pump reads the state from them at each step",
    "asyncio's SSLProtocol unchanged (every TLS record through its Python methods)",
    _probe_pump,
    applies=PY311,  # 3.10's SSLProtocol is another state machine: it always runs unchanged
)  # fmt: skip

if _PUMP:
    from ._ferroloop import TlsPump

    _State = sslproto.SSLProtocolState
    _AppTransport = sslproto._SSLProtocolTransport

    class SSLProtocol(sslproto.SSLProtocol):
        """asyncio's ``SSLProtocol``, with its per-record work done natively."""

        _pump = None
        # asyncio zero-fills a read buffer of max_size (256 KiB) per connection, for a
        # transport that asks get_buffer(); the native stream feeds the pump instead, and
        # OpenSSL's reads return one record (16 KiB) at most, so 32 KiB serves asyncio's
        # own paths as well and saves a 256 KiB memset per handshake.
        max_size = 32 * 1024

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # The C object under ssl.SSLObject, unless the context makes another kind.
            if type(self._sslobj) is ssl.SSLObject:
                pump = self._pump = TlsPump(
                    self,
                    self._incoming,
                    self._outgoing,
                    self._sslobj._sslobj,
                    self._write_backlog,
                    _State.WRAPPED,
                    self._app_transport,
                )
                self._app_transport.write = pump.write
                self._app_transport.writelines = pump.writelines

        def connection_made(self, transport: Any) -> None:
            if self._pump is not None and isinstance(transport, SocketTransport):
                self._pump.attach(transport._core)
            super().connection_made(transport)

        def connection_lost(self, exc: BaseException | None) -> None:
            if self._pump is not None:
                self._pump.detach()
                if self._app_transport is not None:  # asyncio's write() from now on
                    self._app_transport.__dict__.pop("write", None)
                    self._app_transport.__dict__.pop("writelines", None)
            super().connection_lost(exc)

else:  # 3.10, or an asyncio whose SSLProtocol moved
    SSLProtocol = sslproto.SSLProtocol  # type: ignore[misc,assignment]


def _asyncio_function(func: Any, **replace: Any) -> Any:
    """asyncio's own ``func`` (this Python's version of it), run with some names of its module
    replaced: its steps stay exactly the running asyncio's, with ferroloop's classes."""
    namespace = dict(func.__globals__)
    namespace.update(replace)
    out = types.FunctionType(
        func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__
    )
    out.__kwdefaults__ = func.__kwdefaults__
    out.__qualname__ = func.__qualname__
    out.__doc__ = func.__doc__
    return out


# asyncio.sslproto with ferroloop's SSLProtocol in it, for the functions below.
_sslproto = types.ModuleType(sslproto.__name__)
_sslproto.__dict__.update(sslproto.__dict__)
_sslproto.SSLProtocol = SSLProtocol

_ASYNCIO_MAKE_SSL = selector_events.BaseSelectorEventLoop._make_ssl_transport


def _probe_tls_transport() -> str | None:
    """asyncio's _make_ssl_transport names its transport class and sslproto as globals, and
    calls the class as SocketTransport can be called."""
    names = _ASYNCIO_MAKE_SSL.__code__.co_names
    gone = [n for n in ("sslproto", "_SelectorSocketTransport") if n not in names]
    if gone:
        return f"asyncio's _make_ssl_transport no longer names {', '.join(gone)}"
    return _fence.takes_all(
        SocketTransport.__init__,
        selector_events._SelectorSocketTransport.__init__,
        "_SelectorSocketTransport()",
    )


if _fence.rely(
    "tls_socket_transport",
    ["asyncio.selector_events.BaseSelectorEventLoop._make_ssl_transport",
     "asyncio.selector_events._SelectorSocketTransport.__init__"],
    "asyncio's _make_ssl_transport, run with ferroloop's socket transport and SSLProtocol in "
    "place of the module globals _SelectorSocketTransport and sslproto.SSLProtocol",
    "asyncio's _make_ssl_transport as it is (its selector socket transport under TLS)",
    _probe_tls_transport,
):  # fmt: skip
    # The loop's _make_ssl_transport: asyncio's, over the native socket transport.
    make_ssl_transport = _asyncio_function(
        _ASYNCIO_MAKE_SSL, sslproto=_sslproto, _SelectorSocketTransport=SocketTransport
    )
else:
    make_ssl_transport = _ASYNCIO_MAKE_SSL

# loop.start_tls(): asyncio's (3.14's moves what a StreamReader buffered into the TLS protocol).
start_tls = _asyncio_function(base_events.BaseEventLoop.start_tls, sslproto=_sslproto)


# -- asyncio's paths, called by the pump when a step is not the steady state ------------------


def after_feed(proto: Any) -> None:
    """What ``buffer_updated`` does once the bytes are in the incoming BIO."""
    state = proto._state
    if state == _State.DO_HANDSHAKE:
        proto._do_handshake()
    elif state == _State.WRAPPED:
        proto._do_read()
    elif state == _State.FLUSHING:
        proto._do_flush()
    elif state == _State.SHUTDOWN:
        proto._do_shutdown()


def finish_read(proto: Any, close_notify: bool) -> None:
    """The rest of asyncio's ``_do_read`` after the records were decrypted and delivered."""
    try:
        if close_notify:
            proto._call_eof_received()
            proto._start_shutdown()
        if proto._write_backlog:
            proto._do_write()
        else:
            proto._process_outgoing()
        proto._control_ssl_reading()
    except Exception as ex:
        proto._fatal_error(ex, _FATAL)


def fatal(proto: Any, exc: BaseException) -> None:
    """An error of a step the pump ran: asyncio's ``_fatal_error``."""
    proto._fatal_error(exc, _FATAL)


def write_slow(app_transport: Any, data: Any) -> None:
    """``write()`` by asyncio's own transport method (checks, cold states)."""
    _AppTransport.write(app_transport, data)


def writelines_slow(app_transport: Any, list_of_data: Any) -> None:
    """``writelines()`` by asyncio's own transport method."""
    _AppTransport.writelines(app_transport, list_of_data)


def write_rest(proto: Any, data: Any, count: int) -> None:
    """OpenSSL took ``count`` bytes of ``data`` (none: it wants to read first): asyncio's
    ``_write_appdata`` for the rest."""
    proto._write_appdata((data[count:] if count else data,))


def control_app_writing(proto: Any) -> None:
    proto._control_app_writing()


def schedule_read(proto: Any) -> None:
    """A ``BufferedProtocol`` application's buffer filled: read on in a later callback."""
    proto._loop.call_soon(proto._do_read)
