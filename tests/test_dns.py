"""loop.getaddrinfo / loop.getnameinfo, and numeric and scoped hosts in connection calls.

The oracle for resolution is the socket module itself: the loop must return exactly what
``socket.getaddrinfo`` / ``socket.getnameinfo`` return, in the same order, and raise the same
``socket.gaierror``.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from _net_support import LOCALHOST, Proto, accept, ipv6_loopback, make_listener, scoped_ipv6
from _support import run

needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")

GETADDRINFO_CASES = [
    pytest.param(("localhost", 80), {}, id="localhost"),
    pytest.param(("localhost", "80"), {"type": socket.SOCK_STREAM}, id="str-port-stream"),
    pytest.param((LOCALHOST, None), {"family": socket.AF_INET}, id="numeric-no-port"),
    pytest.param((None, 0), {"flags": socket.AI_PASSIVE}, id="passive"),
    pytest.param((None, 8080), {"type": socket.SOCK_DGRAM}, id="no-host-dgram"),
    pytest.param(
        ("127.0.0.1", 443),
        {"proto": socket.IPPROTO_TCP, "flags": socket.AI_NUMERICHOST},
        id="numerichost-proto",
    ),
    pytest.param((b"localhost", b"80"), {}, id="bytes"),
    pytest.param(("::1", 80), {"family": socket.AF_INET6}, id="ipv6-numeric"),
]


@pytest.mark.parametrize(("args", "kwargs"), GETADDRINFO_CASES)
def test_getaddrinfo_equals_socket(loop, args, kwargs):
    try:
        expected = socket.getaddrinfo(*args, **kwargs)
    except socket.gaierror as exc:
        pytest.skip(f"this host cannot resolve {args!r}: {exc}")
    assert run(loop, loop.getaddrinfo(*args, **kwargs)) == expected


def test_getaddrinfo_service_name(loop):
    try:
        expected = socket.getaddrinfo(LOCALHOST, "http", type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        pytest.skip(f"no services database: {exc}")
    assert run(loop, loop.getaddrinfo(LOCALHOST, "http", type=socket.SOCK_STREAM)) == expected


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        pytest.param(("localhost", 80), {"flags": socket.AI_NUMERICHOST}, id="not-numeric"),
        pytest.param((LOCALHOST, "no-such-service-x"), {}, id="unknown-service"),
        pytest.param((None, None), {}, id="nothing"),
    ],
)
def test_getaddrinfo_error_equals_socket(loop, args, kwargs):
    with pytest.raises(socket.gaierror) as expected:
        socket.getaddrinfo(*args, **kwargs)

    async def main():
        with pytest.raises(socket.gaierror) as info:
            await loop.getaddrinfo(*args, **kwargs)
        return info.value

    exc = run(loop, main())
    assert type(exc) is type(expected.value)
    assert exc.args == expected.value.args
    assert exc.errno == expected.value.errno


@pytest.mark.parametrize(
    ("sockaddr", "flags"),
    [
        ((LOCALHOST, 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
        ((LOCALHOST, 80), 0),
        ((LOCALHOST, 8), socket.NI_NUMERICSERV),
        (("::1", 80, 0, 0), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
        ((LOCALHOST, 53), socket.NI_DGRAM | socket.NI_NUMERICHOST),
    ],
)
def test_getnameinfo_equals_socket(loop, sockaddr, flags):
    try:
        expected = socket.getnameinfo(sockaddr, flags)
    except OSError as exc:
        pytest.skip(f"this host cannot look up {sockaddr!r}: {exc}")
    assert run(loop, loop.getnameinfo(sockaddr, flags)) == expected


def test_getnameinfo_error_equals_socket(loop):
    bad = ("not-an-address", 80)
    with pytest.raises(socket.gaierror) as expected:
        socket.getnameinfo(bad, socket.NI_NUMERICHOST)

    async def main():
        with pytest.raises(socket.gaierror) as info:
            await loop.getnameinfo(bad, socket.NI_NUMERICHOST)
        return info.value

    assert run(loop, main()).args == expected.value.args


def test_resolution_runs_concurrently_with_the_loop(loop):
    async def main():
        results = await asyncio.gather(
            *(loop.getaddrinfo("localhost", port, type=socket.SOCK_STREAM) for port in range(20))
        )
        return [r[0][4][1] for r in results]

    assert run(loop, main()) == list(range(20))


# -- numeric and scoped hosts in connection calls --------------------------------------------------


async def _connect_both_ways(loop, family, host, listener):
    port = listener.getsockname()[1]
    tr, proto = await loop.create_connection(lambda: Proto(loop), host, port, family=family)
    conn = await accept(loop, listener)
    peer = tr.get_extra_info("peername")
    tr.close()
    await proto.lost
    conn.close()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        conn = await accept(loop, listener)
        conn.close()
        return peer, sock.getpeername()


def test_numeric_ipv4(loop):
    with make_listener() as listener:
        peer, sock_peer = run(loop, _connect_both_ways(loop, socket.AF_INET, LOCALHOST, listener))
        assert peer == sock_peer == listener.getsockname()


@needs_ipv6
def test_numeric_ipv6(loop):
    with make_listener(socket.AF_INET6, "::1") as listener:
        peer, sock_peer = run(loop, _connect_both_ways(loop, socket.AF_INET6, "::1", listener))
        assert peer == sock_peer == listener.getsockname()
        assert peer[0] == "::1"


def _scoped_listener():
    """A listening socket on an IPv6 address with a scope id, and (addr, ifname, index)."""
    scoped = scoped_ipv6()
    if scoped is None:
        pytest.skip("no bindable IPv6 address with a scope id here")
    addr, _, index = scoped
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.bind((addr, 0, 0, index))
    listener.listen()
    listener.setblocking(False)
    return listener, scoped


def test_ipv6_with_scope_id(loop):
    listener, (addr, ifname, index) = _scoped_listener()
    with listener:
        host = f"{addr}%{ifname}"
        port = listener.getsockname()[1]
        peer, sock_peer = run(loop, _connect_both_ways(loop, socket.AF_INET6, host, listener))
    assert peer == sock_peer == (addr, port, 0, index)


def test_ipv6_scope_id_as_tuple(loop):
    listener, (addr, _, index) = _scoped_listener()

    async def main():
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, (addr, listener.getsockname()[1], 0, index))
            conn = await accept(loop, listener)
            conn.close()
            return sock.getpeername()

    with listener:
        assert run(loop, main()) == listener.getsockname()
