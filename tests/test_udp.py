"""Datagram endpoints (UDP over IPv4 and IPv6, Unix datagrams) and the datagram ``sock_*`` calls.

Every scenario runs on asyncio and on ferroloop. Where asyncio's behaviour differs between
Python versions (empty datagrams, the write buffer's size accounting), a scenario is also run on
``ref_loop``, the running Python's own asyncio, and the two results are compared. Addresses are
compared with what CPython's socket module gives for the same sender (``sock.recvfrom``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import sys
import tempfile

import pytest
from _net_support import LOCALHOST, ipv6_loopback
from _support import PY311, run

needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
needs_recvfrom = pytest.mark.skipif(not PY311, reason="sock_recvfrom*/sock_sendto are 3.11+")


class Recorder(asyncio.DatagramProtocol):
    """Records everything the transport tells it; ``until(n)`` waits for n datagrams."""

    def __init__(self, loop) -> None:
        self.loop = loop
        self.transport = None
        self.datagrams: list[tuple[bytes, object]] = []
        self.errors: list[BaseException] = []
        self.events: list[object] = []
        self.lost = loop.create_future()
        self._waiters: list[tuple[int, asyncio.Future]] = []

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.events.append("made")

    def datagram_received(self, data, addr) -> None:
        self.datagrams.append((data, addr))
        self._wake()

    def error_received(self, exc) -> None:
        self.errors.append(exc)
        self.events.append(("error", type(exc)))
        self._wake()

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc) -> None:
        self.events.append(("lost", type(exc)))
        self.lost.set_result(exc)

    def _wake(self) -> None:
        n = len(self.datagrams) + len(self.errors)
        for want, fut in list(self._waiters):
            if n >= want and not fut.done():
                fut.set_result(None)

    async def until(self, n: int) -> None:
        if len(self.datagrams) + len(self.errors) >= n:
            return
        fut = self.loop.create_future()
        self._waiters.append((n, fut))
        await fut


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.transport.sendto(data, addr)


@pytest.fixture
def tmp_sock_dir():
    with tempfile.TemporaryDirectory(prefix="fl-udp-") as d:
        yield d


def _family_addrs(family, tmp_dir):
    if family == socket.AF_INET:
        return (LOCALHOST, 0), (LOCALHOST, 0)
    if family == socket.AF_INET6:
        return ("::1", 0), ("::1", 0)
    return os.path.join(tmp_dir, "server"), os.path.join(tmp_dir, "client")


FAMILIES = [
    pytest.param(socket.AF_INET, id="ipv4"),
    pytest.param(socket.AF_INET6, id="ipv6", marks=needs_ipv6),
    pytest.param(socket.AF_UNIX, id="unix"),
]


async def _echo_round(loop, family, tmp_dir, payloads):
    server_addr, client_addr = _family_addrs(family, tmp_dir)
    server, _ = await loop.create_datagram_endpoint(Echo, local_addr=server_addr, family=family)
    remote = server.get_extra_info("sockname")
    kwargs = {"family": family, "remote_addr": remote[:2] if family == socket.AF_INET6 else remote}
    kwargs["local_addr"] = client_addr
    client, proto = await loop.create_datagram_endpoint(lambda: Recorder(loop), **kwargs)
    try:
        for p in payloads:
            client.sendto(p)
        # The marker is last: datagrams on loopback keep their order.
        client.sendto(b"end")
        while not proto.datagrams or proto.datagrams[-1][0] != b"end":
            await proto.until(len(proto.datagrams) + 1)
        sockname = client.get_extra_info("sockname")
        peer = client.get_extra_info("peername")
        return [d for d, _ in proto.datagrams], {a for _, a in proto.datagrams}, sockname, peer
    finally:
        client.close()
        server.close()
        await proto.lost


@pytest.mark.parametrize("family", FAMILIES)
def test_echo(loop, ref_loop, family, tmp_sock_dir):
    payloads = [
        b"a",
        b"",
        bytes(range(256)) * 4,
        b"x" * 60000 if family != socket.AF_UNIX else b"y",
    ]
    got, addrs, sockname, peer = run(loop, _echo_round(loop, family, tmp_sock_dir, payloads))
    assert addrs == {peer}
    assert sockname is not None
    for p in os.listdir(tmp_sock_dir):
        os.unlink(os.path.join(tmp_sock_dir, p))
    ref = run(ref_loop, _echo_round(ref_loop, family, tmp_sock_dir, payloads))
    # Empty datagrams are dropped before 3.13: what asyncio delivers, ferroloop delivers.
    assert got == ref[0]


def _unix_sender(kind, tmp_dir):
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "path":
        sender.bind(os.path.join(tmp_dir, "sender"))
    elif kind == "abstract":
        sender.bind(b"\0ferroloop-test-" + os.urandom(6).hex().encode())
    return sender


@pytest.mark.parametrize(
    "kind", ["ipv4", pytest.param("ipv6", marks=needs_ipv6), "path", "abstract", "unbound"]
)
def test_addresses_as_socket_module_gives_them(loop, kind, tmp_sock_dir):
    """datagram_received's address is what ``sock.recvfrom`` returns for the same sender."""
    if kind in ("ipv4", "ipv6"):
        family = socket.AF_INET if kind == "ipv4" else socket.AF_INET6
        host = LOCALHOST if kind == "ipv4" else "::1"
        sender = socket.socket(family, socket.SOCK_DGRAM)
        sender.bind((host, 0))
        plain = socket.socket(family, socket.SOCK_DGRAM)
        plain.bind((host, 0))
        local = (host, 0)
    else:
        family = socket.AF_UNIX
        sender = _unix_sender(kind, tmp_sock_dir)
        plain = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        plain.bind(os.path.join(tmp_sock_dir, "plain"))
        local = os.path.join(tmp_sock_dir, "endpoint")
    with sender, plain:
        sender.sendto(b"probe", plain.getsockname())
        plain.settimeout(5)
        _, expected = plain.recvfrom(100)

        async def main():
            tr, proto = await loop.create_datagram_endpoint(
                lambda: Recorder(loop), local_addr=local, family=family
            )
            sender.sendto(b"hello", tr.get_extra_info("sockname"))
            await proto.until(1)
            tr.close()
            await proto.lost
            return proto.datagrams

        assert run(loop, main()) == [(b"hello", expected)]


def test_connected_address_rules(loop, ref_loop):
    async def main(lp):
        server, sproto = await lp.create_datagram_endpoint(
            lambda: Recorder(lp), local_addr=(LOCALHOST, 0)
        )
        addr = server.get_extra_info("sockname")
        client, cproto = await lp.create_datagram_endpoint(lambda: Recorder(lp), remote_addr=addr)
        out = []
        try:
            client.sendto(b"other", (LOCALHOST, addr[1] + 1 if addr[1] < 65535 else 1))
        except ValueError as exc:
            out.append(str(exc).replace(str(addr), "ADDR"))
        client.sendto(b"same", addr)
        client.sendto(b"none")
        await sproto.until(2)
        out.append([d for d, _ in sproto.datagrams])
        out.append(client.get_extra_info("peername") == addr)
        client.close()
        server.close()
        await cproto.lost
        await sproto.lost
        return out

    assert run(loop, main(loop)) == run(ref_loop, main(ref_loop))


def test_unconnected_sendto_without_address_is_fatal(loop, exc_calls, ref_loop, ref_exc_calls):
    async def main(lp):
        tr, proto = await lp.create_datagram_endpoint(
            lambda: Recorder(lp), local_addr=(LOCALHOST, 0)
        )
        tr.sendto(b"nowhere")
        exc = await proto.lost
        return type(exc), proto.events, tr.is_closing()

    got = run(loop, main(loop))
    assert got == run(ref_loop, main(ref_loop))
    assert got[0] is TypeError
    assert [c["message"] for c in exc_calls] == [c["message"] for c in ref_exc_calls]
    exc_calls.clear()
    ref_exc_calls.clear()


@pytest.mark.parametrize("bad", ["text", 42, None, [b"x"]])
def test_sendto_type_error(loop, ref_loop, bad):
    async def main(lp):
        tr, proto = await lp.create_datagram_endpoint(
            lambda: Recorder(lp), local_addr=(LOCALHOST, 0)
        )
        try:
            tr.sendto(bad, (LOCALHOST, 9))
        except TypeError as exc:
            msg = str(exc)
        tr.close()
        await proto.lost
        return msg

    assert run(loop, main(loop)) == run(ref_loop, main(ref_loop))


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_sendto_bytes_like_and_hostname(loop, kind):
    async def main():
        server, proto = await loop.create_datagram_endpoint(
            lambda: Recorder(loop), local_addr=(LOCALHOST, 0)
        )
        port = server.get_extra_info("sockname")[1]
        client, cproto = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(LOCALHOST, 0)
        )
        client.sendto(kind(b"numeric"), (LOCALHOST, port))
        client.sendto(kind(b"by-name"), ("localhost", port))  # resolved by CPython
        await proto.until(2)
        client.close()
        server.close()
        await proto.lost
        return sorted(d for d, _ in proto.datagrams)

    assert run(loop, main()) == [b"by-name", b"numeric"]


def test_emsgsize_goes_to_error_received(loop, ref_loop):
    async def main(lp):
        tr, proto = await lp.create_datagram_endpoint(
            lambda: Recorder(lp), local_addr=(LOCALHOST, 0)
        )
        tr.sendto(b"x" * 70000, (LOCALHOST, 9))
        closing = tr.is_closing()
        tr.close()
        await proto.lost
        return [(type(e), e.errno) for e in proto.errors], closing

    got = run(loop, main(loop))
    assert got == run(ref_loop, main(ref_loop))
    assert got[0] == [(OSError, errno.EMSGSIZE)]


def test_error_received_on_refused_port(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCALHOST, 0))
        port = s.getsockname()[1]  # free again once closed: nothing listens there

    async def main():
        tr, proto = await loop.create_datagram_endpoint(
            lambda: Recorder(loop), remote_addr=(LOCALHOST, port)
        )
        tr.sendto(b"anyone?")
        await proto.until(1)
        closing = tr.is_closing()
        tr.close()
        await proto.lost
        return proto.errors, closing

    errors, closing = run(loop, main())
    assert [type(e) for e in errors] == [ConnectionRefusedError]
    assert errors[0].errno == errno.ECONNREFUSED
    assert closing is False


def test_datagram_received_raising_keeps_transport(loop, exc_calls):
    class Raises(Recorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            if data == b"boom":
                raise ZeroDivisionError("boom")

    async def main():
        tr, proto = await loop.create_datagram_endpoint(
            lambda: Raises(loop), local_addr=(LOCALHOST, 0)
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"boom", tr.get_extra_info("sockname"))
            s.sendto(b"after", tr.get_extra_info("sockname"))
            await proto.until(2)
        closing = tr.is_closing()
        tr.close()
        await proto.lost
        return [d for d, _ in proto.datagrams], closing

    assert run(loop, main()) == ([b"boom", b"after"], False)
    assert len(exc_calls) == 1
    assert exc_calls[0]["message"].startswith("Exception in callback")
    assert isinstance(exc_calls[0]["exception"], ZeroDivisionError)
    exc_calls.clear()


# -- write buffer, flow control, closing ---------------------------------------------------------


async def _filled(lp, tmp_dir, n=200, size=1024):
    """A Unix datagram endpoint connected to a socket that does not read, after n sendto()."""
    peer_path = os.path.join(tmp_dir, f"peer-{id(lp)}")
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.bind(peer_path)
    peer.setblocking(False)
    tr, proto = await lp.create_datagram_endpoint(
        lambda: Recorder(lp),
        family=socket.AF_UNIX,
        local_addr=os.path.join(tmp_dir, f"me-{id(lp)}"),
        remote_addr=peer_path,
    )
    sizes = []
    for i in range(n):
        tr.sendto(i.to_bytes(4, "big") + b"." * (size - 4))
        sizes.append(tr.get_write_buffer_size())
    return peer, tr, proto, sizes


async def _drain(lp, peer, count):
    got = []
    while len(got) < count:
        got.append(await lp.sock_recv(peer, 65536))
    return got


def test_write_buffer_and_flow_control(loop, ref_loop, tmp_sock_dir):
    async def main(lp):
        peer, tr, proto, sizes = await _filled(lp, tmp_sock_dir)
        with peer:
            limits = tr.get_write_buffer_limits()
            events_full = list(proto.events)
            got = await _drain(lp, peer, 200)
            while tr.get_write_buffer_size() and "resume" not in proto.events:
                await asyncio.sleep(0)
            seq = [int.from_bytes(d[:4], "big") for d in got]
            tr.close()
            await proto.lost
            return sizes, limits, events_full, proto.events, seq

    got = run(loop, main(loop))
    ref = run(ref_loop, main(ref_loop))
    assert got == ref
    sizes, _, events_full, _, seq = got
    assert max(sizes) > 64 * 1024 and events_full == ["made", "pause"]
    assert seq == list(range(200))


def test_close_with_pending_buffer_flushes_first(loop, ref_loop, tmp_sock_dir):
    async def main(lp):
        peer, tr, proto, _ = await _filled(lp, tmp_sock_dir, n=50)
        with peer:
            tr.close()
            assert tr.is_closing()
            for _ in range(5):
                await asyncio.sleep(0)
            lost_early = proto.lost.done()
            got = await _drain(lp, peer, 50)
            exc = await proto.lost
            return lost_early, len(got), exc, proto.events

    got = run(loop, main(loop))
    assert got == run(ref_loop, main(ref_loop))
    assert got[:3] == (False, 50, None)


def test_abort_drops_pending_buffer(loop, ref_loop, tmp_sock_dir):
    async def main(lp):
        peer, tr, proto, sizes = await _filled(lp, tmp_sock_dir, n=50)
        with peer:
            sent_direct = sizes.index(next(s for s in sizes if s))
            tr.abort()
            exc = await proto.lost
            got = []
            while True:
                try:
                    got.append(peer.recv(65536))
                except BlockingIOError:
                    break
            return exc, len(got) == sent_direct, tr.get_write_buffer_size(), proto.events

    got = run(loop, main(loop))
    assert got == run(ref_loop, main(ref_loop))
    assert got[:2] == (None, True)


def test_sendto_after_close(loop, ref_loop):
    async def main(lp):
        tr, proto = await lp.create_datagram_endpoint(
            lambda: Recorder(lp), local_addr=(LOCALHOST, 0)
        )
        ctr, cproto = await lp.create_datagram_endpoint(
            lambda: Recorder(lp), remote_addr=tr.get_extra_info("sockname")
        )
        tr.close()
        ctr.close()
        await proto.lost
        await cproto.lost
        ctr.sendto(b"connected, lost")  # counted, dropped
        try:
            tr.sendto(b"unconnected, closed", (LOCALHOST, 9))
        except AttributeError as exc:
            return type(exc), proto.events, cproto.events
        return None, proto.events, cproto.events

    got = run(loop, main(loop))
    assert got == run(ref_loop, main(ref_loop))


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="3.11 added reading control")
def test_no_reading_control_before_3_11(loop):
    async def main():
        tr, proto = await loop.create_datagram_endpoint(
            lambda: Recorder(loop), local_addr=(LOCALHOST, 0)
        )
        raised = []
        for method in (tr.pause_reading, tr.resume_reading, tr.is_reading):
            try:
                method()
            except NotImplementedError:
                raised.append(method.__name__)
        tr.close()
        await proto.lost
        return raised

    assert run(loop, main()) == ["pause_reading", "resume_reading", "is_reading"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10's datagram transports cannot pause")
def test_pause_and_resume_reading(loop):
    async def main():
        tr, proto = await loop.create_datagram_endpoint(
            lambda: Recorder(loop), local_addr=(LOCALHOST, 0)
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            tr.pause_reading()
            reading = tr.is_reading()
            s.sendto(b"held", tr.get_extra_info("sockname"))
            for _ in range(10):
                await asyncio.sleep(0)
            held = list(proto.datagrams)
            tr.resume_reading()
            await proto.until(1)
        tr.close()
        await proto.lost
        return reading, held, [d for d, _ in proto.datagrams]

    assert run(loop, main()) == (False, [], [b"held"])


def test_extra_info_and_isinstance(loop, ref_loop):
    async def main(lp):
        tr, proto = await lp.create_datagram_endpoint(
            lambda: Recorder(lp), local_addr=(LOCALHOST, 0)
        )
        sock = tr.get_extra_info("socket")
        out = (
            tr.get_extra_info("sockname") == sock.getsockname(),
            tr.get_extra_info("peername"),
            isinstance(tr, asyncio.DatagramTransport),
            isinstance(tr, asyncio.BaseTransport),
            tr.get_write_buffer_size(),
            tr.get_extra_info("nothing", "default"),
        )
        tr.close()
        await proto.lost
        return out

    assert run(loop, main(loop)) == run(ref_loop, main(ref_loop))


# -- floods ---------------------------------------------------------------------------------------


def test_ten_thousand_datagrams_through_the_buffer(loop, tmp_sock_dir):
    """Unix datagrams do not drop: every one arrives, in order, through the write buffer."""
    n = 10_000

    async def main():
        server, sproto = await loop.create_datagram_endpoint(
            lambda: Recorder(loop),
            family=socket.AF_UNIX,
            local_addr=os.path.join(tmp_sock_dir, "s"),
        )
        client, cproto = await loop.create_datagram_endpoint(
            lambda: Recorder(loop),
            family=socket.AF_UNIX,
            local_addr=os.path.join(tmp_sock_dir, "c"),
            remote_addr=server.get_extra_info("sockname"),
        )
        for i in range(n):
            client.sendto(i.to_bytes(4, "big"))
        await sproto.until(n)
        seq = [int.from_bytes(d, "big") for d, _ in sproto.datagrams]
        client.close()
        server.close()
        await cproto.lost
        await sproto.lost
        return seq, "pause" in cproto.events, client.get_write_buffer_size() >= 0

    seq, paused, _ = run(loop, main(), timeout=30)
    assert seq == list(range(n))


def test_flood_keeps_loop_responsive(loop):
    """10,000 UDP datagrams at once: the kernel drops what does not fit; what arrives is in
    order, and other callbacks run while the backlog is read."""
    n = 10_000

    async def main():
        tr, proto = await loop.create_datagram_endpoint(
            lambda: Recorder(loop), local_addr=(LOCALHOST, 0)
        )
        addr = tr.get_extra_info("sockname")
        ticks = []

        def tick():
            ticks.append(len(proto.datagrams))
            if len(ticks) < 100_000 and not done:
                loop.call_soon(tick)

        done = False
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            for i in range(n):
                try:
                    s.sendto(i.to_bytes(4, "big"), addr)
                except BlockingIOError:
                    await asyncio.sleep(0)
            loop.call_soon(tick)
            # The end marker may be dropped too: repeat it until it shows.
            while not proto.datagrams or proto.datagrams[-1][0] != b"end":
                s.sendto(b"end", addr)
                await asyncio.sleep(0.01)
        done = True
        seq = [int.from_bytes(d, "big") for d, _ in proto.datagrams if d != b"end"]
        tr.close()
        await proto.lost
        return seq, ticks

    seq, ticks = run(loop, main(), timeout=30)
    assert seq == sorted(set(seq)) and seq and seq[-1] < n
    # Ticks ran while the backlog was being read, not only after it.
    assert any(0 < t < len(seq) for t in ticks)


# -- sock_* ---------------------------------------------------------------------------------------


@needs_recvfrom
@pytest.mark.parametrize("kind", ["ipv4", pytest.param("ipv6", marks=needs_ipv6), "unix"])
def test_sock_sendto_recvfrom_families(loop, kind, tmp_sock_dir):
    if kind == "unix":
        a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        a.bind(os.path.join(tmp_sock_dir, "a"))
        b.bind(os.path.join(tmp_sock_dir, "b"))
    else:
        family = socket.AF_INET if kind == "ipv4" else socket.AF_INET6
        host = LOCALHOST if kind == "ipv4" else "::1"
        a = socket.socket(family, socket.SOCK_DGRAM)
        b = socket.socket(family, socket.SOCK_DGRAM)
        a.bind((host, 0))
        b.bind((host, 0))
    with a, b:
        a.setblocking(False)
        b.setblocking(False)

        async def main():
            fut = asyncio.ensure_future(loop.sock_recvfrom(b, 100))
            await asyncio.sleep(0)
            n = await loop.sock_sendto(a, b"first", b.getsockname())
            first = await fut
            await loop.sock_sendto(a, b"", b.getsockname())
            empty = await loop.sock_recvfrom(b, 100)
            buf = memoryview(bytearray(8))
            await loop.sock_sendto(a, b"second!", b.getsockname())
            into = await loop.sock_recvfrom_into(b, buf[2:])
            return n, first, empty, into, bytes(buf)

        n, first, empty, into, buf = run(loop, main())
        assert n == 5
        assert first == (b"first", a.getsockname())
        assert empty == (b"", a.getsockname())
        assert into == (6, a.getsockname())  # the rest of the datagram is dropped
        assert buf == b"\0\0second"


@needs_recvfrom
def test_sock_sendto_hostname_and_errors(loop, ref_loop):
    async def main(lp):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
        ):
            a.setblocking(False)
            b.setblocking(False)
            b.bind((LOCALHOST, 0))
            port = b.getsockname()[1]
            out = [await lp.sock_sendto(a, b"named", ("localhost", port))]
            out.append((await lp.sock_recvfrom(b, 100))[0])
            for bad in [(LOCALHOST, 70000), (LOCALHOST,), "text", ("::1", port)]:
                try:
                    await lp.sock_sendto(a, b"x", bad)
                except (OSError, OverflowError, TypeError) as exc:
                    out.append((type(exc), str(exc)))
            try:
                await lp.sock_sendto(a, b"x" * 70000, (LOCALHOST, port))
            except OSError as exc:
                out.append(exc.errno)
            return out

    assert run(loop, main(loop)) == run(ref_loop, main(ref_loop))


@needs_recvfrom
def test_cancel_sock_sendto_when_peer_full(loop, tmp_sock_dir):
    """A cancelled sock_sendto sends nothing; the socket stays usable."""
    a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.bind(os.path.join(tmp_sock_dir, "b"))
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        dest = b.getsockname()

        async def main():
            sent = 0
            while True:
                try:
                    a.sendto(b"fill", dest)
                    sent += 1
                except BlockingIOError:
                    break
            fut = asyncio.ensure_future(loop.sock_sendto(a, b"cancelled", dest))
            for _ in range(3):
                await asyncio.sleep(0)
            assert not fut.done()
            fut.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fut
            got = [b.recv(100) for _ in range(sent)]
            await loop.sock_sendto(a, b"after", dest)
            got.append((await loop.sock_recvfrom(b, 100))[0])
            return got, sent

        got, sent = run(loop, main())
        assert got == [b"fill"] * sent + [b"after"]


@needs_recvfrom
def test_sock_sendto_waits_for_a_full_receiver_to_drain(loop, tmp_sock_dir):
    """An unconnected Unix datagram socket stays writable while the receiver it names is
    full (here of another sender's datagrams, so no room freed is reported to this socket):
    the send is retried until the receiver has room, as asyncio's selector retries."""
    a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.bind(os.path.join(tmp_sock_dir, "b"))
    with a, b, c:
        a.setblocking(False)
        b.setblocking(False)
        c.setblocking(False)
        dest = b.getsockname()

        async def main():
            sent = 0
            while True:
                try:
                    c.sendto(b"fill", dest)
                    sent += 1
                except BlockingIOError:
                    break
            fut = asyncio.ensure_future(loop.sock_sendto(a, b"last", dest))
            for _ in range(5):
                await asyncio.sleep(0)
            waited = not fut.done()
            got = [b.recv(100) for _ in range(sent)]
            n = await asyncio.wait_for(fut, 10)
            got.append(b.recv(100))
            return waited, n, got, sent

        waited, n, got, sent = run(loop, main())
        assert (waited, n) == (True, 4)
        assert got == [b"fill"] * sent + [b"last"]


def test_datagram_read_waits_behind_callbacks_queued_before_the_poll(loop):
    # A datagram already waiting is delivered after the callbacks queued before it, as
    # asyncio's reader handle is: here the task step that creates the future it resolves.
    class Waiter(asyncio.DatagramProtocol):
        fut = None

        def datagram_received(self, data, addr):
            self.fut.set_result(data)

        async def next(self):
            self.fut = loop.create_future()
            return await asyncio.wait_for(self.fut, 10)

    async def endpoint():
        return await loop.create_datagram_endpoint(Waiter, local_addr=(LOCALHOST, 0))

    tr1, p1 = loop.run_until_complete(endpoint())
    tr2, p2 = loop.run_until_complete(endpoint())
    try:
        tr1.sendto(b"a", tr2.get_extra_info("sockname"))
        got = loop.run_until_complete(p2.next())
        tr2.sendto(b"b", tr1.get_extra_info("sockname"))
        got += loop.run_until_complete(p1.next())
    finally:
        tr1.close()
        tr2.close()
        loop.run_until_complete(asyncio.sleep(0))
    assert got == b"ab"


async def _sends_after_close(lp, caplog, settle: bool) -> list[bool]:
    """Which of seven ``sendto()`` after ``close()`` logged asyncio's warning."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind((LOCALHOST, 0))
        tr, _ = await lp.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=peer.getsockname()
        )
        tr.close()
        if settle:  # connection_lost has run
            await asyncio.sleep(0.01)
        warned = []
        for _ in range(7):
            caplog.clear()
            tr.sendto(b"x")
            warned.append(
                [r.getMessage() for r in caplog.records] == ["socket.send() raised exception."]
            )
        await asyncio.sleep(0.01)
        return warned


@pytest.mark.parametrize("settle", [False, True], ids=["closing", "closed"])
def test_sendto_after_close_warns_from_the_fifth(loop, ref_loop, caplog, settle):
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        mine = run(loop, _sends_after_close(loop, caplog, settle))
        ref = run(ref_loop, _sends_after_close(ref_loop, caplog, settle))
    assert mine == ref == [False] * 4 + [True] * 3
