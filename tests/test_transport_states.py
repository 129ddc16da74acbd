"""Every transport method, in every state, with good and bad arguments, against asyncio.

A table of calls: transport kind (TCP stream, Unix stream, UDP, write pipe, read pipe, TLS) x
state (open, closing, lost) x method and arguments. Each case makes a fresh transport on the
loop under test and on a stdlib loop of the same Python (``ref_loop``, the oracle), drives it
into the state, makes the call and lets the loop run; what a program can observe must be the
same: the exception raised (type and message), the transport's state after (closing, write
buffer size), the bytes the peer received, the protocol's callbacks and what reached the
exception handler. A rejected call must leave the transport exactly as before.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import pytest
from _net_support import LOCALHOST, tls_contexts
from _support import run

PY311 = sys.version_info >= (3, 11)

# -- the calls ---------------------------------------------------------------------------------

WRITE_ARGS = [
    ("write", (b"ok",)),
    ("write", (b"",)),
    ("write", (bytearray(b"ba"),)),
    ("write", (memoryview(b"mv"),)),
    ("write", (None,)),
    ("write", ("text",)),
    ("write", (7,)),
    ("writelines", ([b"a", b"b"],)),
    ("writelines", ([],)),
    ("writelines", ([b"x", None, b"y"],)),
    ("writelines", (None,)),
    ("writelines", ("ab",)),
    ("set_write_buffer_limits", ()),
    ("set_write_buffer_limits", (10, 5)),
    ("set_write_buffer_limits", (1, 2)),
    ("set_write_buffer_limits", (-1,)),
    ("get_write_buffer_limits", ()),
    ("get_write_buffer_size", ()),
    ("can_write_eof", ()),
    ("write_eof", ()),
    ("abort", ()),
    ("close", ()),
    ("is_closing", ()),
]
READ_ARGS = [
    ("pause_reading", ()),
    ("resume_reading", ()),
    ("is_reading", ()),
]
DATAGRAM_ARGS = [
    ("sendto", (b"dg",)),
    ("sendto", (b"",)),
    ("sendto", (None,)),
    ("sendto", ("text",)),
    ("sendto", (bytearray(b"ba"),)),
    ("set_write_buffer_limits", (10, 5)),
    ("set_write_buffer_limits", (1, 2)),
    ("get_write_buffer_size", ()),
    ("abort", ()),
    ("close", ()),
    ("is_closing", ()),
]

KINDS = {
    "tcp": WRITE_ARGS + READ_ARGS,
    "unix": WRITE_ARGS + READ_ARGS,
    "udp": DATAGRAM_ARGS + (READ_ARGS if PY311 else []),
    "write_pipe": [c for c in WRITE_ARGS if c[0] not in ("set_write_buffer_limits",)]
    + [("set_write_buffer_limits", (10, 5))],
    "read_pipe": READ_ARGS + [("close", ()), ("is_closing", ())],
    "tls": [c for c in WRITE_ARGS if c[0] != "write_eof"] + READ_ARGS,
}
STATES = ("open", "closing", "lost")


def _cases():
    for kind, calls in KINDS.items():
        for state in STATES:
            for i, (method, args) in enumerate(calls):
                yield pytest.param(kind, state, method, args, id=f"{kind}-{state}-{method}-{i}")


# -- the scenario ------------------------------------------------------------------------------


class Recorder(asyncio.BaseProtocol):
    def __init__(self):
        self.events = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        self.events.append("data")

    def datagram_received(self, data, addr):
        self.events.append("datagram")

    def error_received(self, exc):
        self.events.append(f"error_received {type(exc).__name__}")

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append(f"lost {type(exc).__name__ if exc else None}")

    def pause_writing(self):
        self.events.append("pause_writing")

    def resume_writing(self):
        self.events.append("resume_writing")

    def pause_reading(self):
        self.events.append("pause_reading")


class Sink(asyncio.Protocol):
    """The TLS server's side: collects what the client sent."""

    def __init__(self, got):
        self.got = got

    def data_received(self, data):
        self.got += data


async def _make(loop, kind):
    """(transport, protocol, read_peer(), cleanup()): read_peer returns what the peer got."""
    proto = Recorder()
    if kind in ("tcp", "unix"):
        a, b = socket.socketpair() if kind == "unix" else _tcp_pair()
        b.setblocking(False)
        tr, _ = await loop.create_connection(lambda: proto, sock=a)

        def peer():
            return _drain(b)

        return tr, proto, peer, b.close
    if kind == "udp":
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b.bind((LOCALHOST, 0))
        b.setblocking(False)
        tr, _ = await loop.create_datagram_endpoint(lambda: proto, remote_addr=b.getsockname())

        def peer():
            out = b""
            while True:
                try:
                    out += b.recv(65536) + b"|"
                except OSError:
                    return out

        return tr, proto, peer, b.close
    if kind == "write_pipe":
        r, w = os.pipe()
        os.set_blocking(r, False)
        tr, _ = await loop.connect_write_pipe(lambda: proto, os.fdopen(w, "wb", buffering=0))

        def peer():
            out = b""
            while True:
                try:
                    chunk = os.read(r, 65536)
                except BlockingIOError:
                    return out
                if not chunk:
                    return out + b"<eof>"
                out += chunk

        return tr, proto, peer, lambda: os.close(r)
    if kind == "read_pipe":
        r, w = os.pipe()
        tr, _ = await loop.connect_read_pipe(lambda: proto, os.fdopen(r, "rb", buffering=0))
        return tr, proto, lambda: b"", lambda: os.close(w)
    if kind == "tls":
        server_ctx, client_ctx = tls_contexts()
        got = bytearray()
        server = await loop.create_server(lambda: Sink(got), LOCALHOST, 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        tr, _ = await loop.create_connection(
            lambda: proto, LOCALHOST, port, ssl=client_ctx, server_hostname="localhost"
        )

        def peer():
            return bytes(got)

        def cleanup():
            server.close()

        return tr, proto, peer, cleanup
    raise AssertionError(kind)


def _tcp_pair():
    with socket.create_server((LOCALHOST, 0)) as listener:
        a = socket.create_connection(listener.getsockname())
        b, _ = listener.accept()
    return a, b


def _drain(sock):
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return out
        except OSError as exc:
            return out + f"<{type(exc).__name__}>".encode()
        if not chunk:
            return out + b"<eof>"
        out += chunk


async def _settle(loop, n=8):
    for _ in range(n):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)


def _describe(value):
    if isinstance(value, (bool, int, type(None))):
        return value
    if isinstance(value, tuple):
        return tuple(_describe(v) for v in value)
    return type(value).__name__


def _observe(read):
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - asyncio's own transports raise some here
        return f"raised {type(exc).__name__}"


# asyncio's own errors that ferroloop does not repeat (README, "Differences from asyncio"):
# a pipe transport aborted after close() runs its connection_lost twice and reports the
# second one's AttributeError.
_ASYNCIO_OWN = {"_UnixWritePipeTransport._call_connection_lost("}


def _own_errors_removed(handled):
    return [h for h in handled if not any(name in (h[0] or "") for name in _ASYNCIO_OWN)]


async def _scenario(loop, kind, state, method, args):
    handled = []
    loop.set_exception_handler(
        lambda lp, ctx: handled.append((ctx.get("message"), type(ctx.get("exception")).__name__))
    )
    tr, proto, peer, cleanup = await _make(loop, kind)
    try:
        await _settle(loop)
        if state != "open":
            tr.close()
        if state == "lost":
            await _settle(loop)
        try:
            result = ("ok", _describe(getattr(tr, method)(*args)))
        except Exception as exc:  # noqa: BLE001 - the exception is what is compared
            result = ("raised", type(exc).__name__, str(exc))
        after = (_observe(tr.is_closing),)
        if hasattr(tr, "get_write_buffer_size") and kind != "read_pipe":
            after += (_observe(tr.get_write_buffer_size),)
        await _settle(loop)
        sent = peer()
        if not _observe(tr.is_closing):
            tr.close()
        await _settle(loop)
        return {
            "result": result,
            "after": after,
            "peer": sent,
            "events": proto.events,
            "handled": _own_errors_removed(handled),
        }
    finally:
        cleanup()
        await _settle(loop, 2)


# Calls where asyncio raises an AttributeError from its own code (its transport's loop is
# already None); ferroloop's transport does nothing, as the method's documentation says.
_ASYNCIO_RAISES_OWN = {("write_pipe", "lost", "abort")}


@pytest.mark.parametrize(("kind", "state", "method", "args"), list(_cases()))
def test_call_in_state_as_asyncio(loop, ref_loop, kind, state, method, args):
    if type(loop) is type(ref_loop):
        pytest.skip("asyncio is the oracle here")
    got = run(loop, _scenario(loop, kind, state, method, args))
    want = run(ref_loop, _scenario(ref_loop, kind, state, method, args))
    if (kind, state, method) in _ASYNCIO_RAISES_OWN and want["result"][:2] == (
        "raised",
        "AttributeError",
    ):
        assert got["result"] == ("ok", None)
        got["result"] = want["result"]
    assert got == want


# -- subprocess transports ------------------------------------------------------------------------

SUBPROCESS_CALLS = [
    ("get_returncode", ()),
    ("get_pid", ()),
    ("get_pipe_transport", (0,)),
    ("get_pipe_transport", (7,)),
    ("send_signal", (0,)),
    ("terminate", ()),
    ("kill", ()),
    ("close", ()),
    ("is_closing", ()),
]


class SubprocessRecorder(asyncio.SubprocessProtocol):
    def __init__(self, loop):
        self.events = []
        self.exited = loop.create_future()

    def pipe_data_received(self, fd, data):
        self.events.append(f"data {fd}")

    def pipe_connection_lost(self, fd, exc):
        self.events.append(f"pipe lost {fd}")

    def process_exited(self):
        self.events.append("exited")
        self.exited.set_result(None)

    def connection_lost(self, exc):
        self.events.append("lost")


async def _subprocess_scenario(loop, state, method, args):
    proto = SubprocessRecorder(loop)
    tr, _ = await loop.subprocess_exec(
        lambda: proto, sys.executable, "-c", "print('x')", stdin=None, stderr=None
    )
    if state in ("exited", "closed"):
        await proto.exited
        await _settle(loop)
    if state == "closed":
        tr.close()
        await _settle(loop)
    try:
        value = getattr(tr, method)(*args)
        result = ("ok", value if method not in ("get_pid", "get_pipe_transport") else bool(value))
    except Exception as exc:  # noqa: BLE001 - the exception is what is compared
        result = ("raised", type(exc).__name__)
    await proto.exited
    tr.close()
    await _settle(loop)
    return result, sorted(set(proto.events)), _observe(tr.get_returncode)


@pytest.mark.parametrize("state", ["running", "exited", "closed"])
@pytest.mark.parametrize(("method", "args"), SUBPROCESS_CALLS)
def test_subprocess_call_in_state_as_asyncio(loop, ref_loop, state, method, args):
    if type(loop) is type(ref_loop):
        pytest.skip("asyncio is the oracle here")
    if state == "running" and method in ("terminate", "kill", "send_signal"):
        pytest.skip("racing the child's own exit: its status depends on who wins")
    got = run(loop, _subprocess_scenario(loop, state, method, args))
    want = run(ref_loop, _subprocess_scenario(ref_loop, state, method, args))
    assert got == want
