"""Subprocesses whose exit the loop watches itself (``_ferroloop.ChildWatch``).

``SubprocessTransport`` is the running Python's own
``asyncio.base_subprocess.BaseSubprocessTransport`` (its exact order of
``pipe_data_received``, ``pipe_connection_lost``, ``process_exited`` and
``connection_lost``, its ``wait()`` waiters, ``close()``, repr and
``ResourceWarning``, all of which differ between 3.10 and 3.14), spawning with
``subprocess.Popen`` (every option asyncio passes on, unchanged), and two
differences of mechanism, none of behaviour:

* the exit comes from a pidfd on the loop's own poller, not from the policy's
  child watcher (none is asked for, on any version, so a policy without one
  works, and so does a loop in any thread);
* ``send_signal``/``terminate``/``kill`` go through the pidfd: after the child
  was reaped they do nothing (as asyncio's), and they can never reach another
  process that took over the pid.

Where pidfds are missing (Linux < 5.3, or a seccomp policy refusing them),
``PIDFD`` is false and the watch is the fallback: a process-wide ``SIGCHLD``
handler (installed from Rust, chaining to the one before it) wakes every loop
that has such children, and each loop calls ``waitpid(pid, WNOHANG)`` for its
own children only; signals go to the pid only while the child is unreaped.
Python's ``signal.signal(SIGCHLD, ...)`` replaces the handler without chaining
to it, so while a fallback child lives, a timer every ``SAFETY_CHECK`` seconds
re-installs it (chaining to the new one) and looks at the child. ``PIDFD`` is
read at each spawn: tests set it to False to force the fallback.

``make_transport`` is the loop's ``_make_subprocess_transport``, with asyncio's
steps minus the watcher, on any version and with either watch.
"""

from __future__ import annotations

import contextvars
import fcntl
import itertools
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import weakref
from asyncio import base_subprocess, tasks
from asyncio.log import logger

from ._compat import PY312, PY314
from ._ferroloop import ChildWatch

PIDFD = ChildWatch.supported()
# Seconds between the fallback's safety checks (a child's exit is seen at most
# this late if someone replaced the SIGCHLD handler after the spawn).
SAFETY_CHECK = 0.5
_INT = struct.Struct("i")
# The context asyncio's watcher reports a child's exit in (process_exited(), and
# connection_lost() when the exit comes last): 3.12+ watch a pidfd with a reader added
# at the spawn, so its copy of the spawner's context; otherwise (3.10/3.11, or no
# pidfds) a thread, whose context is empty unless threads inherit it (free-threaded 3.14).
_EXIT_IN_SPAWN_CONTEXT = (PY312 and ChildWatch.supported()) or bool(
    getattr(sys.flags, "thread_inherit_context", 0)
)


class SubprocessTransport(base_subprocess.BaseSubprocessTransport):
    _watch = None
    _safety = None
    _exit_context = None

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, **kwargs):
        self._exit_context = (
            contextvars.copy_context() if _EXIT_IN_SPAWN_CONTEXT else contextvars.Context()
        )
        self._proc = subprocess.Popen(
            args,
            shell=shell,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            universal_newlines=False,
            bufsize=bufsize,
            **kwargs,
        )
        loop = self._loop
        try:
            self._watch = ChildWatch.start(loop, loop._reactor, self._proc.pid, self, PIDFD)
            if not PIDFD:
                self._safety = loop.call_later(SAFETY_CHECK, _safety_check, self)
            if not PY312:
                _unreaped.add(self)
        except BaseException:
            # No watch, so no one would reap it: end it here (at once, after SIGKILL).
            proc = self._proc
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            raise

    def send_signal(self, signal):
        self._check_proc()
        if self._returncode is not None:  # the process already exited
            return
        self._watch.send_signal(signal)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)


def _safety_check(transport: SubprocessTransport) -> None:
    """The fallback's periodic check, while the child is watched."""
    transport._safety = None
    watch = transport._watch
    if watch is not None and watch.poll() and transport._safety is None:
        transport._safety = transport._loop.call_later(SAFETY_CHECK, _safety_check, transport)


def child_exited(transport: SubprocessTransport, pid: int, returncode: int | None) -> None:
    """The child's pidfd fired and the child was reaped (``returncode`` None:
    someone else reaped it first, e.g. ``Popen.poll()``)."""
    _unreaped.discard(transport)
    if transport._safety is not None:
        transport._safety.cancel()
        transport._safety = None
    proc = transport._proc
    if returncode is None:
        returncode = None if proc is None else proc.returncode
        if returncode is None:
            returncode = 255
            logger.warning(
                "child process pid %d exit status already read:  will report returncode 255",
                pid,
            )
    elif proc is not None and proc.returncode is None:
        # At once, so that Popen never waits on a pid that is no longer its child.
        proc.returncode = returncode
    _report_exit(transport, pid, returncode, _DRAIN_ITERATIONS)


# 3.10/3.11: the transports whose child the loop has not reaped yet (see ``loop_closing``).
_unreaped: weakref.WeakSet[SubprocessTransport] = weakref.WeakSet()
_waitpid_threads = itertools.count(0)
_WAITPID_THREAD = "asyncio-waitpid-" if sys.version_info >= (3, 11) else "waitpid-"  # asyncio's


def loop_closing(loop) -> None:
    """``loop`` closes (3.10/3.11): for each child it has not reaped, what asyncio's default
    child watcher (the policy's ``ThreadedChildWatcher``: a thread per child, holding its
    transport) does once the loop is closed. A thread waits for the child's exit, reaps it,
    logs that its loop is closed, and only then lets the transport go; so a program that
    ends first never collects the transport (whose ``__del__`` would fail on the closed
    loop), and one that lives on sees the warning and that failure, as on asyncio. 3.12+
    watch a pidfd on the loop and let the transport go with it, as ferroloop does."""
    for transport in [t for t in _unreaped if t._loop is loop]:
        _unreaped.discard(transport)
        threading.Thread(
            target=_wait_after_close,
            name=f"{_WAITPID_THREAD}{next(_waitpid_threads)}",
            args=(loop, transport.get_pid(), transport),
            daemon=True,
        ).start()


def _wait_after_close(loop, expected_pid: int, transport: SubprocessTransport) -> None:
    """asyncio 3.10/3.11's ``ThreadedChildWatcher._do_waitpid`` for a closed loop."""
    try:
        pid, status = os.waitpid(expected_pid, 0)
    except ChildProcessError:
        pid = expected_pid
        logger.warning("Unknown child process pid %d, will report returncode 255", pid)
    else:
        if loop.get_debug():
            returncode = os.waitstatus_to_exitcode(status)
            logger.debug("process %s exited with returncode %s", expected_pid, returncode)
    logger.warning("Loop %r that handles pid %r is closed", loop, pid)
    # The transport goes when this thread ends (its arguments are released), as asyncio's.


# How many loop iterations a child's exit waits, at most, for what it wrote before exiting
# to be read (a pipe still being connected, or a large output).
_DRAIN_ITERATIONS = 64


def _report_exit(transport: SubprocessTransport, pid: int, returncode: int, wait: int) -> None:
    """Hands the exit to asyncio once the output the child wrote before it exited was read.

    asyncio's pidfd reader is added after the spawn and its pipes' readers once they are
    connected, so an exit noticed first would reach the protocol before that output (always
    on 3.14, which reports the exit at once). The child wrote it before it exited: it is in
    the pipes already, and delivered first, as asyncio delivers it whenever the pipes are
    read before the pidfd."""
    if wait and _unread_output(transport):
        transport._loop.call_soon(_report_exit, transport, pid, returncode, wait - 1)
        return
    transport._exit_context.run(transport._loop._child_watcher_callback, pid, returncode, transport)


def _unread_output(transport: SubprocessTransport) -> bool:
    """Whether the child's stdout or stderr pipe holds bytes that a pipe transport is
    about to read (one being connected, or one reading)."""
    proc = transport._proc
    for fd, pipe in ((1, proc.stdout), (2, proc.stderr)):
        if pipe is None or pipe.closed or fd not in transport._pipes:
            continue
        proto = transport._pipes[fd]
        reader = None if proto is None else proto.pipe
        if reader is not None and not _is_reading(reader):
            continue  # paused, or done: asyncio would not wait for it either
        try:
            unread = fcntl.ioctl(pipe.fileno(), termios.FIONREAD, _INT.pack(0))
        except (OSError, ValueError):
            continue
        if _INT.unpack(unread)[0] > 0:
            return True
    return False


async def make_transport(
    loop, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
):
    """asyncio's ``_make_subprocess_transport`` without a child watcher."""
    waiter = loop.create_future()
    transp = SubprocessTransport(
        loop,
        protocol,
        args,
        shell,
        stdin,
        stdout,
        stderr,
        bufsize,
        waiter=waiter,
        extra=extra,
        **kwargs,
    )
    try:
        await waiter
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        transp.close()
        if PY314:
            await tasks.shield(transp._wait())
        else:
            await transp._wait()
        raise
    return transp


def _is_reading(reader) -> bool:
    try:
        return reader.is_reading()
    except NotImplementedError:  # 3.10's pipe transports have no is_reading()
        return not reader.is_closing()
