"""The health socket: every loop's health, for ``python -m ferroloop top PID``.

Opened only when asked: ``ferroloop.health.serve(path)``, or
``FERROLOOP_HEALTH_SOCKET=path`` in the environment (served from the first loop
made). ``{pid}`` in a path becomes the process id. Without a path the socket is
``$XDG_RUNTIME_DIR/ferroloop-{pid}.sock``, or ``/tmp/ferroloop-{uid}/{pid}.sock``
when ``XDG_RUNTIME_DIR`` is unset (the directory made 0700, and refused when
another user owns it); ``top`` looks in the same places.

The socket file is 0600 and a peer whose ``SO_PEERCRED`` uid is not ours is
closed without an answer. One daemon thread accepts and answers one connection
at a time: the client sends one line (a JSON object, ``{}`` for the defaults;
``{"tasks": N}`` asks for N busiest tasks per loop), the server answers one JSON
document and closes. A request that is not one line of a JSON object within
``MAX_REQUEST`` bytes and ``TIMEOUT`` seconds gets ``{"error": ...}`` (or
nothing, when the peer is gone); the server goes on with the next client.

The thread takes no lock the loops' threads hold (it reads each loop under the
GIL, as any thread may), so it answers while a loop is blocked in Python code;
a C call that holds the GIL stops it as it stops every thread. After ``fork``
the child is not serving (it closes its copy of the listening socket, leaving
the parent's file alone); at interpreter exit the file is removed.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import selectors
import socket
import stat
import struct
import sys
import threading
import time
from typing import Any

from . import health as _health

MAX_REQUEST = 4096
TIMEOUT = 1.0
ENV = "FERROLOOP_HEALTH_SOCKET"
DEFAULT_TASKS = 10

_lock = threading.Lock()
_server: _Server | None = None
_env_served_pid: int | None = None


def default_path(pid: int | None = None) -> str:
    """Where ``serve()`` without a path puts the socket of process ``pid``."""
    pid = os.getpid() if pid is None else pid
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, f"ferroloop-{pid}.sock")
    return os.path.join(f"/tmp/ferroloop-{os.getuid()}", f"{pid}.sock")


def expand(path: str, pid: int | None = None) -> str:
    return path.replace("{pid}", str(os.getpid() if pid is None else pid))


def peer_allowed(peer_uid: int, our_uid: int | None = None) -> bool:
    """Whether a client whose ``SO_PEERCRED`` uid is ``peer_uid`` may read our health."""
    return peer_uid == (os.getuid() if our_uid is None else our_uid)


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def _private_dir(directory: str) -> None:
    """Makes ``directory`` (0700) if missing; refuses one another user owns or others may write."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise PermissionError(f"{directory} is not a private directory of this user")


def serve(path: str | None = None) -> str:
    """Starts answering on ``path`` (see the module docs); returns the path.

    Already serving, ``serve()`` without a path and ``serve(path)`` on the same path
    return the path served (the server started by ``FERROLOOP_HEALTH_SOCKET`` too);
    another path raises ``RuntimeError`` (one socket per process: ``stop()`` first).
    """
    global _server
    if path is not None and (not isinstance(path, str) or not path or "\0" in path):
        raise ValueError(f"serve() needs a non-empty socket path, not {path!r}")
    with _lock:
        if _server is not None and path is None:
            return _server.path
        target = expand(path) if path is not None else default_path()
        if _server is not None:
            if _server.path == target:
                return target
            started = f" (from {ENV})" if _server.from_env else ""
            raise RuntimeError(
                f"already serving ferroloop health on {_server.path}{started}: a process"
                f" serves one socket; stop_serving() first to serve on {target}"
            )
        if path is None and target.startswith(f"/tmp/ferroloop-{os.getuid()}/"):
            _private_dir(os.path.dirname(target))
        _server = _Server(target)
        return target


def stop() -> None:
    """Closes the socket and removes its file; the thread ends."""
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None:
        server.close()


def serving() -> str | None:
    """The path served, or None."""
    server = _server
    return None if server is None else server.path


def serve_from_env() -> None:
    """Called when a loop is made: serve ``FERROLOOP_HEALTH_SOCKET`` once per process.

    A forked child serves again only when the path names its own ``{pid}``.
    """
    global _env_served_pid
    template = os.environ.get(ENV)
    if not template or _env_served_pid is not None:
        return
    _env_served_pid = os.getpid()
    try:
        serve(template)
    except (OSError, RuntimeError, ValueError) as exc:
        _health.logger.warning("could not serve ferroloop health on %s: %s", template, exc)
        return
    server = _server
    if server is not None and server.path == expand(template):
        server.from_env = True


def _after_fork_in_child() -> None:
    global _lock, _server, _env_served_pid
    _lock = threading.Lock()
    server, _server = _server, None
    if server is not None:
        server.abandon()
    if _env_served_pid is not None and "{pid}" in os.environ.get(ENV, ""):
        _env_served_pid = None


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(stop)


class _Server:
    """The listening socket, its file and its thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.from_env = False  # started for FERROLOOP_HEALTH_SOCKET
        self._pid = os.getpid()
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                if _answered(path):
                    raise OSError(errno.EADDRINUSE, "another process serves on this socket", path)
                os.unlink(path)  # stale: left by a process that is gone
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(path)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(8)
        sock.setblocking(False)
        self._sock = sock
        self._wake_r, self._wake_w = socket.socketpair()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name="ferroloop-health-socket", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if threading.current_thread() is not self._thread and not sys.is_finalizing():
            self._thread.join(TIMEOUT * 2)
        if self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        for s in (self._sock, self._wake_r, self._wake_w):
            s.close()

    def abandon(self) -> None:
        """In a forked child: drop the parent's socket without touching its file."""
        self._closed = True
        for s in (self._sock, self._wake_r, self._wake_w):
            s.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(self._sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._closed:
                ready = [key.fileobj for key, _ in sel.select()]
                if self._wake_r in ready or self._closed:
                    return
                try:
                    conn, _ = self._sock.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return  # closed under us
                with conn:
                    try:
                        self._answer(conn)
                    except Exception:  # noqa: BLE001 - one bad answer must not end the server
                        if sys.is_finalizing():
                            return
                        _health.logger.exception("the ferroloop health socket could not answer")
        except Exception:  # noqa: BLE001 - the thread must not die noisily at shutdown
            if not sys.is_finalizing():
                _health.logger.exception("the ferroloop health socket stopped")
        finally:
            sel.close()

    def _answer(self, conn: socket.socket) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(TIMEOUT)
            if not peer_allowed(peer_uid(conn)):
                return
            try:
                request = _read_request(conn)
            except ValueError as exc:
                conn.sendall(json.dumps({"error": str(exc)}).encode() + b"\n")
                return
            ntasks = request.get("tasks", DEFAULT_TASKS)
            if isinstance(ntasks, bool) or not isinstance(ntasks, int) or not 0 <= ntasks <= 1000:
                conn.sendall(b'{"error": "tasks must be an int from 0 to 1000"}\n')
                return
            conn.sendall(json.dumps(collect(ntasks), default=str).encode() + b"\n")
        except OSError:
            pass  # the client went away or was too slow: next one


def _answered(path: str) -> bool:
    """Whether something accepts connections on the socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(TIMEOUT)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


def _read_request(conn: socket.socket) -> dict[str, Any]:
    data = b""
    while b"\n" not in data:
        try:
            chunk = conn.recv(MAX_REQUEST)
        except TimeoutError:
            raise ValueError("the request must be one line, sent at once") from None
        if not chunk:
            raise ValueError("the request must end with a newline")
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError(f"the request is longer than {MAX_REQUEST} bytes")
    line = data.split(b"\n", 1)[0]
    try:
        request = json.loads(line.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("the request must be a JSON object") from None
    if not isinstance(request, dict):
        raise ValueError("the request must be a JSON object")
    return request


# ---- what is answered --------------------------------------------------------------


def _lag(lag: _health.LagStats) -> dict[str, float]:
    return {"count": lag.count, "p50": lag.p50, "p90": lag.p90, "p99": lag.p99, "max": lag.max}


def loop_document(loop: Any, ntasks: int = DEFAULT_TASKS) -> dict[str, Any]:
    """One loop's snapshot as JSON-ready data."""
    snap = _health.health(loop)
    phase, _seq = loop._health_probe()
    doc: dict[str, Any] = {
        "id": id(loop),
        "repr": _health._describe(loop),
        "running": loop.is_running(),
        "in_callback": phase == _health._IN_CALLBACK,
        "thread": loop._thread_id,
        "timer_lag": _lag(snap.timer_lag),
        "ready_wait": _lag(snap.ready_wait),
        "idle": snap.idle,
        "active": snap.active,
        "utilization": snap.utilization,
        "iterations": snap.iterations,
        "callbacks": snap.callbacks,
        "io_events": snap.io_events,
        "ready_depth": snap.ready_depth,
        "fds_watched": snap.fds_watched,
        "timers_pending": snap.timers_pending,
        "timer_overdue": snap.timer_overdue,
        "recording": snap.recording,
        "tasks": [],
    }
    if ntasks:
        doc["tasks"] = [vars(r) for r in _health.top_tasks(loop, ntasks)]
    return doc


def _block_document(report: _health.BlockReport) -> dict[str, Any]:
    doc = {k: v for k, v in vars(report).items() if k != "loop"}
    doc["loop"] = id(report.loop)
    doc["coroutines"] = list(report.coroutines)
    return doc


def collect(ntasks: int = DEFAULT_TASKS) -> dict[str, Any]:
    """What the socket answers: every open loop, recent block reports, settings."""
    loops = []
    for loop in _health.loops():
        try:
            loops.append(loop_document(loop, ntasks))
        except BaseException as exc:  # noqa: BLE001 - a loop closing meanwhile: say so, go on
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            loops.append({"id": id(loop), "repr": _health._describe(loop), "error": repr(exc)})
    return {
        "pid": os.getpid(),
        "time": time.time(),
        "monotonic": time.monotonic(),
        "argv": sys.argv,
        "track_tasks": _health.track_tasks(),
        "block_threshold": _health.get_block_threshold(),
        "loops": loops,
        "blocks": [_block_document(r) for r in _health.recent_blocks()],
    }
