"""Which ``contextvars`` context a connection's protocol callbacks run in.

Python 3.15 gives each transport one context: a client's is a copy of the caller's, taken
when ``create_connection`` makes the transport; a server copies its creator's context when
it is made, and each accepted connection runs (protocol factory included) in a copy of that.
Earlier versions copy the current context at each scheduled callback. Each scenario runs on
the loop under test and on a stdlib loop of the same Python (``ref_loop``), which must agree;
on 3.15 the observations are also checked against the rules above.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import sys

import pytest
from _net_support import LOCALHOST, tls_contexts
from _support import run

PY315 = sys.version_info >= (3, 15)

var = contextvars.ContextVar("var", default="default")


async def _server_scenario(loop, server_ssl=None, client_ssl=None):
    """Two connections to a server made while var == 'at_server'; each connection's
    callbacks record what they see and set var themselves."""
    seen = []
    closed = []

    class Recording(asyncio.Protocol):
        def __init__(self, n):
            self.n = n
            seen.append((n, "factory", var.get()))
            var.set(f"factory{n}")

        def connection_made(self, transport):
            seen.append((self.n, "made", var.get()))
            var.set(f"made{self.n}")
            self.transport = transport

        def data_received(self, data):
            seen.append((self.n, "data", var.get()))
            self.transport.write(data)
            self.transport.close()

        def connection_lost(self, exc):
            seen.append((self.n, "lost", var.get()))
            closed.append(self.n)

    count = iter(range(100))
    var.set("at_server")
    server = await loop.create_server(lambda: Recording(next(count)), LOCALHOST, 0, ssl=server_ssl)
    var.set("after_server")
    addr = server.sockets[0].getsockname()
    for n in range(2):
        reader, writer = await asyncio.open_connection(
            *addr, ssl=client_ssl, server_hostname="localhost" if client_ssl else None
        )
        writer.write(b"ping")
        assert await reader.read() == b"ping"
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass
        while n not in closed:
            await asyncio.sleep(0.001)
    server.close()
    await server.wait_closed()
    return seen, var.get()


async def _client_scenario(loop):
    """A client connection made while var == 'caller': what its callbacks see."""
    seen = []
    got = loop.create_future()

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            transport.write(transport.get_extra_info("peername")[0].encode())
            transport.close()

    class Client(asyncio.Protocol):
        def connection_made(self, transport):
            seen.append(("made", var.get()))
            var.set("made")

        def data_received(self, data):
            seen.append(("data", var.get()))

        def connection_lost(self, exc):
            seen.append(("lost", var.get()))
            got.set_result(None)

    server = await loop.create_server(Echo, LOCALHOST, 0)
    var.set("caller")
    await loop.create_connection(Client, *server.sockets[0].getsockname())
    var.set("caller_after")
    await got
    server.close()
    await server.wait_closed()
    return seen, var.get()


def _in_fresh_context(loop, coro_fn, *args):
    return contextvars.Context().run(run, loop, coro_fn(loop, *args))


def test_server_connection_contexts(loop, ref_loop):
    got = _in_fresh_context(loop, _server_scenario)
    assert got == _in_fresh_context(ref_loop, _server_scenario)
    if PY315:
        seen, after = got
        assert after == "after_server"
        for n in range(2):  # one context per connection, a copy of the server's
            assert [s for s in seen if s[0] == n] == [
                (n, "factory", "at_server"),
                (n, "made", f"factory{n}"),
                (n, "data", f"made{n}"),
                (n, "lost", f"made{n}"),
            ]


def test_client_connection_context(loop, ref_loop):
    got = _in_fresh_context(loop, _client_scenario)
    assert got == _in_fresh_context(ref_loop, _client_scenario)
    if PY315:
        assert got == ([("made", "caller"), ("data", "made"), ("lost", "made")], "caller_after")


def test_tls_server_connection_contexts(loop, ref_loop):
    server_ssl, client_ssl = tls_contexts()
    got = _in_fresh_context(loop, _server_scenario, server_ssl, client_ssl)
    assert got == _in_fresh_context(ref_loop, _server_scenario, server_ssl, client_ssl)
    if PY315:
        seen, _ = got
        assert (0, "factory", "at_server") in seen
        assert (1, "data", "made1") in seen


@pytest.mark.skipif(not PY315, reason="3.15 gives transports a context")
def test_socket_transport_takes_a_context(loop):
    """asyncio 3.15's ``_make_socket_transport(..., context=)``: callbacks run in it."""
    import socket

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        ctx = contextvars.copy_context()
        ctx.run(var.set, "given")
        seen = []
        done = loop.create_future()

        class P(asyncio.Protocol):
            def connection_made(self, transport):
                seen.append(var.get())

            def data_received(self, data):
                seen.append(var.get())
                done.set_result(None)

        waiter = loop.create_future()
        tr = loop._make_socket_transport(a, P(), waiter, context=ctx)
        await waiter
        b.send(b"x")
        await done
        tr.close()
        b.close()
        await asyncio.sleep(0)
        return seen

    assert run(loop, main()) == ["given", "given"]
