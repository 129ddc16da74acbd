"""Real database servers for the client-library tests: PostgreSQL and Redis on loopback.

Each starter runs the server installed on the machine (``make services`` installs Debian's
packages when they are missing) in a private temporary directory, on a free TCP port of
127.0.0.1 and on a Unix socket, and stops it and removes the directory afterwards. When a
server is not installed, the starter skips with a message that says so.

PostgreSQL refuses to run as root, so under root it runs as the ``postgres`` user (or
``nobody``), which then owns the directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

HOST = "127.0.0.1"
START_LIMIT_S = 30.0


@dataclass(frozen=True)
class Server:
    """Where a started server listens."""

    port: int
    socket_dir: str  # PostgreSQL: the directory of its socket; Redis: unused
    socket_path: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _find(program: str, patterns: tuple[str, ...] = ()) -> str | None:
    found = shutil.which(program)
    if found:
        return found
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if matches:
            return matches[-1]
    return None


def _wait_until(ready, proc: subprocess.Popen, what: str, log: str) -> None:
    deadline = time.monotonic() + START_LIMIT_S
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {START_LIMIT_S}s:\n{_tail(log)}")
        time.sleep(0.05)


def _tail(path: str) -> str:
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        return f.read()[-2000:]
    return ""


def _answers(address, request: bytes, expect: bytes) -> bool:
    """Whether a server at ``address`` answers ``request`` with a reply starting ``expect``."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    try:
        with socket.socket(family) as s:
            s.settimeout(2)
            s.connect(address)
            s.sendall(request)
            return s.recv(64).startswith(expect)
    except OSError:
        return False


def _stop(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def postgres() -> Iterator[Server]:
    """A PostgreSQL server with trust authentication for the user ``postgres``."""
    initdb = _find("initdb", ("/usr/lib/postgresql/*/bin/initdb",))
    server = _find("postgres", ("/usr/lib/postgresql/*/bin/postgres",))
    if not (initdb and server):
        pytest.skip("no PostgreSQL server installed (`make services` installs Debian's)")
    user: dict = {}
    root = tempfile.mkdtemp(prefix="ferroloop-pg-")
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            account = pwd.getpwnam("nobody")
        os.chown(root, account.pw_uid, account.pw_gid)
        user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    data, log = os.path.join(root, "data"), os.path.join(root, "log")
    port = _free_port()
    proc = None
    try:
        subprocess.run(
            [initdb, "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            cwd=root,
            **user,
        )
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [server, "-D", data, "-p", str(port), "-h", HOST, "-k", root, "-F",
                 "-c", "max_connections=40", "-c", "ssl=off"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=root,
                **user,
            )  # fmt: skip
        sock = os.path.join(root, f".s.PGSQL.{port}")
        # An SSLRequest is answered with 'N' (no TLS) once the server accepts connections.
        ssl_request = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
        _wait_until(lambda: _answers(sock, ssl_request, b"N"), proc, "postgres", log)
        _wait_until(lambda: _answers((HOST, port), ssl_request, b"N"), proc, "postgres", log)
        yield Server(port=port, socket_dir=root, socket_path=sock)
    finally:
        if proc is not None:
            _stop(proc, signal.SIGINT)  # "fast" shutdown: ends the sessions still open
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def redis() -> Iterator[Server]:
    """A Redis server with no persistence."""
    server = _find("redis-server")
    if not server:
        pytest.skip("no Redis server installed (`make services` installs Debian's)")
    root = tempfile.mkdtemp(prefix="ferroloop-redis-")
    sock, log = os.path.join(root, "redis.sock"), os.path.join(root, "log")
    port = _free_port()
    proc = None
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [server, "--port", str(port), "--bind", HOST, "--unixsocket", sock,
                 "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--dir", root],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=root,
            )  # fmt: skip
        _wait_until(lambda: _answers((HOST, port), b"PING\r\n", b"+PONG"), proc, "redis", log)
        yield Server(port=port, socket_dir=root, socket_path=sock)
    finally:
        if proc is not None:
            _stop(proc, signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)
