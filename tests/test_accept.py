"""A server's accepted connections: when and in which context each is set up.

asyncio accepts connections in batches and sets each up in a task of its own: the protocol
factory runs in the task's first step (the iteration after the accept), ``connection_made`` in
the next iteration, both in a copy of the context the server started serving in. The tests
observe those steps through public API only, on asyncio and ferroloop alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import gc
import resource
import socket
import warnings

import pytest
from _net_support import LOCALHOST, Proto, fd_count
from _support import PY313, run

who = contextvars.ContextVar("who", default="nobody")


class Ticker:
    """Counts loop iterations: a callback that queues itself again each time it runs."""

    def __init__(self, loop):
        self.loop = loop
        self.ticks = 0
        self._handle = loop.call_soon(self._tick)

    def _tick(self):
        self.ticks += 1
        self._handle = self.loop.call_soon(self._tick)

    def stop(self):
        self._handle.cancel()


def connect_all(addr, n: int) -> list[socket.socket]:
    """``n`` connected client sockets; the loop has not run in between, so the server's
    accept queue holds all of them at its next poll."""
    return [socket.create_connection(addr) for _ in range(n)]


async def until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0)


def test_factory_then_connection_made_one_iteration_later(loop):
    """The protocol factory runs one iteration after the accept, connection_made one after."""

    async def main():
        steps = []

        class Recording(Proto):
            def connection_made(self, transport):
                steps.append(("made", ticker.ticks))
                super().connection_made(transport)

        def factory():
            steps.append(("factory", ticker.ticks))
            return Recording(loop)

        server = await loop.create_server(factory, LOCALHOST, 0)
        clients = connect_all(server.sockets[0].getsockname(), 3)
        ticker = Ticker(loop)
        await until(lambda: len(steps) == 6)
        ticker.stop()
        for c in clients:
            c.close()
        server.close()
        await server.wait_closed()
        first = steps[0][1]
        return [(what, tick - first) for what, tick in steps]

    assert run(loop, main()) == [
        ("factory", 0),
        ("factory", 0),
        ("factory", 0),
        ("made", 1),
        ("made", 1),
        ("made", 1),
    ]


def test_each_connection_has_its_own_context_copy(loop):
    """The factory runs in a copy of the context the server started serving in, one copy per
    connection: what it sets there is what that connection's callbacks see, and the server's
    own context is left unchanged."""

    async def main():
        seen = []

        class Tagged(Proto):
            def data_received(self, data):
                seen.append(who.get() == self.tag)
                super().data_received(data)

        def factory():
            seen.append(who.get())
            proto = Tagged(loop)
            proto.tag = len(seen)
            who.set(proto.tag)
            return proto

        token = who.set("server")
        server = await loop.create_server(factory, LOCALHOST, 0)
        who.reset(token)
        clients = connect_all(server.sockets[0].getsockname(), 4)
        for c in clients:
            c.sendall(b"x")
        await until(lambda: len(seen) == 8)
        for c in clients:
            c.close()
        server.close()
        await server.wait_closed()
        return seen, who.get()

    seen, after = run(loop, main())
    assert seen[:4] == ["server"] * 4
    assert seen[4:] == [True] * 4
    assert after == "nobody"


def test_a_batch_is_served_in_accept_order(loop):
    async def main():
        peers = []

        def factory():
            proto = Proto(loop)
            proto.made.add_done_callback(
                lambda f: peers.append(f.result().get_extra_info("peername"))
            )
            return proto

        server = await loop.create_server(factory, LOCALHOST, 0, backlog=200)
        clients = connect_all(server.sockets[0].getsockname(), 150)
        await until(lambda: len(peers) == 150)
        mine = [c.getsockname() for c in clients]
        for c in clients:
            c.close()
        server.close()
        await server.wait_closed()
        return peers == mine

    assert run(loop, main())


def test_failing_protocol_factory(loop, exc_calls):
    """A factory that raises drops that connection (reported in debug mode only); the server
    goes on serving."""

    async def main():
        calls = []

        def factory():
            calls.append(len(calls))
            if len(calls) == 1:
                raise ZeroDivisionError("no protocol for you")
            return Proto(loop)

        server = await loop.create_server(factory, LOCALHOST, 0)
        addr = server.sockets[0].getsockname()
        first = socket.create_connection(addr)
        await until(lambda: calls)
        second = socket.create_connection(addr)
        await until(lambda: len(calls) == 2)
        reported = [type(c["exception"]) for c in exc_calls if "incoming" in c["message"]]
        exc_calls.clear()  # a report holds the connection's socket (through its traceback)
        gc.collect()  # the dropped connection's socket object is garbage (as on asyncio)
        first.settimeout(5)
        gone = first.recv(1)
        first.close()
        second.close()
        server.close()
        await server.wait_closed()
        return gone, reported

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the socket nobody closed
        gone, reported = run(loop, main())
    assert gone == b""
    assert reported == ([ZeroDivisionError] if loop.get_debug() else [])


# 3.13+'s transport leaves the server it could not join in __del__, which raises there
# (asyncio's own transport included); earlier versions' must not.
@pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning" if PY313 else "default::DeprecationWarning"
)
def test_server_closed_before_the_transport_is_made(loop, exc_calls):
    """A server closed between a connection's accept and its set-up: the transport cannot
    join the closed server, and the connection is dropped quietly, as on asyncio."""

    async def main():
        def factory():
            server.close()
            return Proto(loop)

        server = await loop.create_server(factory, LOCALHOST, 0)
        client = socket.create_connection(server.sockets[0].getsockname())
        await server.wait_closed()
        for _ in range(5):
            await asyncio.sleep(0)
        reported = [c["message"] for c in exc_calls if "incoming" in c["message"]]
        exc_calls.clear()  # a report holds the transport (and its socket)
        gc.collect()
        client.settimeout(5)
        with contextlib.closing(client):
            return client.recv(1), reported

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the transport nobody closed
        gone, reported = run(loop, main())
    assert gone == b""
    expected = ["Error on transport creation for incoming connection"]
    assert reported == (expected if loop.get_debug() else [])


def test_task_factory_sees_a_task_per_connection(loop):
    async def main():
        names = []
        made = []

        def task_factory(lp, coro, **kwargs):
            names.append(coro.__qualname__)
            return asyncio.Task(coro, loop=lp, **kwargs)

        def factory():
            proto = Proto(loop)
            made.append(proto.made)
            return proto

        server = await loop.create_server(factory, LOCALHOST, 0)
        loop.set_task_factory(task_factory)
        try:
            clients = connect_all(server.sockets[0].getsockname(), 2)
            await until(lambda: len(made) == 2)
            transports = await asyncio.gather(*made)
        finally:
            loop.set_task_factory(None)
        for c in clients:
            c.close()
        for t in transports:
            t.close()
        server.close()
        await server.wait_closed()
        return names

    assert run(loop, main()) == ["BaseSelectorEventLoop._accept_connection2"] * 2


def test_out_of_descriptors_pauses_accepting(loop, exc_calls):
    """EMFILE on accept: reported, accepting paused and resumed later, and the client that
    was waiting is served (asyncio's behaviour)."""

    async def main():
        made = []
        server = await loop.create_server(lambda: made.append(1) or Proto(loop), LOCALHOST, 0)
        client = socket.socket()
        client.setblocking(False)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        fillers = []
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd_count() + 8, hard))
        try:
            while True:  # use up every descriptor left
                try:
                    fillers.append(socket.socket())
                except OSError:
                    break
            with contextlib.suppress(BlockingIOError):
                client.connect(server.sockets[0].getsockname())
            await until(lambda: exc_calls)
        finally:
            for s in fillers:
                s.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        await until(lambda: made)
        client.close()
        server.close()
        await server.wait_closed()
        return [c for c in exc_calls if "_start_serving" not in c["message"]]

    # asyncio queues a retry per failed accept of the batch; those still queued when the
    # server closes fail on its closed socket (on either loop, and left out here).
    reports = run(loop, main())
    assert {(c["message"], c["exception"].errno) for c in reports} == {
        ("socket.accept() out of system resource", errno.EMFILE)
    }
    exc_calls.clear()
