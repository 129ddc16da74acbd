"""Subprocesses through asyncio's API, on asyncio and ferroloop alike.

ferroloop reaps its own children (a pidfd on its poller) and never asks the policy for a
child watcher; asyncio does before 3.14.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import signal
import sys
import threading
import time
from asyncio import base_subprocess

import pytest
from _support import PY311, PY312, PY314, run
from conftest import LOOP_KINDS, _factory_for

PY = sys.executable

# Every test here also runs on ferroloop with its no-pidfd watch forced (SIGCHLD +
# waitpid(pid)), the one used where the kernel or a seccomp policy has no pidfds.
NO_PIDFD = "ferroloop-nopidfd"


@pytest.fixture(params=[*LOOP_KINDS, NO_PIDFD])
def loop_kind(request, monkeypatch) -> str:
    if request.param == NO_PIDFD:
        fl_subprocess = pytest.importorskip("ferroloop._subprocess")
        monkeypatch.setattr(fl_subprocess, "PIDFD", False)
    return request.param


@pytest.fixture
def loop_factory(loop_kind):
    return _factory_for("ferroloop" if loop_kind == NO_PIDFD else loop_kind)


def test_exec_communicate_and_returncode(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY,
            "-c",
            "import sys; data = sys.stdin.read(); sys.stdout.write(data.upper()); sys.exit(3)",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(b"hello")
        return out, err, proc.returncode

    assert run(loop, main()) == (b"HELLO", None, 3)


def test_shell_with_stderr_to_stdout(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "echo out; echo err >&2",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        return sorted(out.split()), await proc.wait()

    assert run(loop, main()) == ([b"err", b"out"], 0)


def test_kill_reports_the_signal(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", "import time; time.sleep(60)")
        proc.kill()
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGKILL


def test_many_children_at_once(loop):
    async def child(i):
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", f"print({i})", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return int(out)

    async def main():
        return await asyncio.gather(*(child(i) for i in range(8)))

    assert run(loop, main()) == list(range(8))


# ---- the options asyncio passes on to Popen ------------------------------------------------


def test_devnull_and_stdout_and_fd(loop, tmp_path):
    out_path = tmp_path / "out"

    async def main():
        with open(out_path, "wb") as f:
            proc = await asyncio.create_subprocess_exec(
                PY,
                "-c",
                "import sys; print(sys.stdin.read() == '', flush=True); "
                "print('err', file=sys.stderr)",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=f.fileno(),
                stderr=asyncio.subprocess.STDOUT,
            )
            rc = await proc.wait()
        return rc, out_path.read_bytes().split()

    assert run(loop, main()) == (0, [b"True", b"err"])


def test_communicate_64_mib_each_way(loop):
    payload = os.urandom(64 * 1024 * 1024)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY,
            "-c",
            "import sys; d = sys.stdin.buffer.read(); "
            "sys.stdout.buffer.write(d); sys.stderr.buffer.write(d[::-1])",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(payload)
        return out == payload, err == payload[::-1], proc.returncode

    assert run(loop, main(), timeout=60) == (True, True, 0)


def test_cwd_env_and_start_new_session(loop, tmp_path):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY,
            "-c",
            "import os; print(os.getcwd(), os.environ['FERRO_X'], os.getsid(0) == os.getpid())",
            stdout=asyncio.subprocess.PIPE,
            cwd=tmp_path,
            env={"FERRO_X": "42"},
            start_new_session=True,
        )
        out, _ = await proc.communicate()
        return out.split()

    assert run(loop, main()) == [str(tmp_path).encode(), b"42", b"True"]


def test_popen_options_reach_the_child(loop, tmp_path):
    """pass_fds, umask, close_fds and (3.11+) process_group go to subprocess.Popen as given."""
    r, w = os.pipe()
    extra = {"process_group": 0} if PY311 else {}
    code = (
        "import os, sys; os.write(int(sys.argv[1]), b'fd-ok'); "
        "print(oct(os.umask(0)), os.getpgid(0) == os.getpid())"
    )

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY,
            "-c",
            code,
            str(w),
            stdout=asyncio.subprocess.PIPE,
            pass_fds=(w,),
            close_fds=True,
            umask=0o077,
            **extra,
        )
        out, _ = await proc.communicate()
        return out.split(), os.read(r, 100), proc.returncode

    try:
        out, passed, rc = run(loop, main())
    finally:
        os.close(r)
        os.close(w)
    assert (out[0], passed, rc) == (b"0o77", b"fd-ok", 0)
    assert out[1] == (b"True" if PY311 else b"False")


# ---- faults --------------------------------------------------------------------------------


def test_child_killed_while_writing(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY,
            "-c",
            "import sys\nwhile True: sys.stdout.buffer.write(b'x' * 65536)",
            stdout=asyncio.subprocess.PIPE,
        )
        first = await proc.stdout.readexactly(100_000)
        proc.kill()
        rest = await proc.stdout.read()  # whatever was in the pipe, then EOF
        return len(first), isinstance(rest, bytes), await proc.wait()

    assert run(loop, main()) == (100_000, True, -signal.SIGKILL)


def test_reader_closing_early_gives_the_child_sigpipe(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "yes", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        line = await proc.stdout.readline()
        proc._transport.get_pipe_transport(1).close()
        rc = await proc.wait()
        await asyncio.sleep(0)
        return line, rc

    assert run(loop, main()) == (b"y\n", -signal.SIGPIPE)


def test_loop_closed_with_a_child_running(loop_factory):
    """As asyncio: closing the loop leaves the child alone; the transport left open warns
    (ResourceWarning, and its close() fails on the closed loop) when collected; no descriptor
    of the loop's stays open."""
    import gc
    import warnings

    gc.collect()  # what earlier tests left is collected before this test watches
    lp = loop_factory()
    before = _open_fds()

    async def main():
        tr, _ = await lp.subprocess_exec(
            asyncio.SubprocessProtocol, PY, "-c", "import time; time.sleep(60)"
        )
        return tr.get_pid()

    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: unraisable.append(repr(u.exc_value))
    try:
        # From the start: the transport may go as soon as nothing refers to it any more.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pid = lp.run_until_complete(main())
            lp.close()
            os.kill(pid, signal.SIGKILL)
            for _ in range(500):  # reap it unless the oracle's watcher thread did
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.01)
            # A watcher thread (the oracle's, on some versions) lets the transport go only
            # once it has seen the exit: collect until it has gone.
            for _ in range(500):
                gc.collect()
                if any("transport" in str(w.message) for w in caught):
                    break
                time.sleep(0.01)
            gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert any(
        issubclass(w.category, ResourceWarning) and "transport" in str(w.message) for w in caught
    )
    assert _open_fds() <= before
    # The transport's __del__ closes its pipes; asyncio versions with the fix for gh-114177 skip
    # that on a closed loop, older ones raise from it.
    close_source = inspect.getsource(base_subprocess.BaseSubprocessTransport.close)
    closes_pipes = "is_closed()" not in close_source
    assert unraisable == (["RuntimeError('Event loop is closed')"] if closes_pipes else [])


# ---- signals and returncodes -----------------------------------------------------------------


def test_signals_after_exit(loop):
    """While the exit is known but a pipe is still open (a grandchild holds stdout), a signal
    is dropped silently; once the transport has finished, asyncio raises ProcessLookupError."""

    def signal_all(proc, outcomes):
        for send in (lambda: proc.send_signal(signal.SIGTERM), proc.terminate, proc.kill):
            try:
                send()
                outcomes.append(None)
            except ProcessLookupError:
                outcomes.append("ProcessLookupError")

    async def main():
        outcomes = []
        proc = await asyncio.create_subprocess_shell(
            "sleep 30 & echo $!", stdout=asyncio.subprocess.PIPE
        )
        grandchild = int(await proc.stdout.readline())
        while proc.returncode is None:
            await asyncio.sleep(0.01)
        signal_all(proc, outcomes)
        os.kill(grandchild, signal.SIGKILL)
        await proc.stdout.read()
        outcomes.append(await proc.wait())
        for _ in range(5):
            await asyncio.sleep(0)
        signal_all(proc, outcomes)
        return outcomes

    assert run(loop, main()) == [None] * 3 + [0] + ["ProcessLookupError"] * 3


def test_terminate_and_send_signal(loop):
    async def main():
        codes = []
        for how in ("terminate", "sigint"):
            proc = await asyncio.create_subprocess_exec(
                PY,
                "-c",
                "import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                "print('ready', flush=True); time.sleep(60)",
                stdout=asyncio.subprocess.PIPE,
            )
            await proc.stdout.readline()
            if how == "terminate":
                proc.terminate()
            else:
                proc.send_signal(signal.SIGINT)
            codes.append(await proc.wait())
        return codes

    assert run(loop, main()) == [-signal.SIGTERM, -signal.SIGINT]


def test_protocol_events_order(loop):
    async def main():
        events = []
        done = loop.create_future()

        class Proto(asyncio.SubprocessProtocol):
            def connection_made(self, transport):
                events.append("made")

            def pipe_data_received(self, fd, data):
                events.append(("data", fd))

            def pipe_connection_lost(self, fd, exc):
                events.append(("pipe_lost", fd, exc))

            def process_exited(self):
                events.append("exited")

            def connection_lost(self, exc):
                events.append(("lost", exc))
                done.set_result(None)

        code = "import sys; sys.stdout.write('out'); sys.stderr.write('err')"
        tr, _ = await loop.subprocess_exec(Proto, PY, "-c", code, stdin=None)
        pid = tr.get_pid()
        pipes = [tr.get_pipe_transport(fd) for fd in (0, 1, 2)]
        await done
        rc = tr.get_returncode()
        tr.close()
        return events, pid > 0, pipes[0], pipes[1] is not None, rc

    events, has_pid, stdin, has_stdout, rc = run(loop, main())
    assert (has_pid, stdin, has_stdout, rc) == (True, None, True, 0)
    assert events[0] == "made" and events[-1] == ("lost", None)
    middle = events[1:-1]
    assert sorted(map(str, middle)) == sorted(
        map(
            str,
            [("data", 1), ("data", 2), ("pipe_lost", 1, None), ("pipe_lost", 2, None), "exited"],
        )
    )
    for fd in (1, 2):
        assert middle.index(("data", fd)) < middle.index(("pipe_lost", fd, None))


def test_close_kills_a_running_child(loop):
    async def main():
        tr, proto = await loop.subprocess_exec(
            asyncio.SubprocessProtocol, PY, "-c", "import time; time.sleep(60)"
        )
        tr.close()
        return await tr._wait()

    assert run(loop, main()) == -signal.SIGKILL


# ---- bad input -------------------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("missing", FileNotFoundError),
        ("bad_cwd", NotADirectoryError),
        ("not_exec", PermissionError),
    ],
)
def test_spawn_errors_leak_nothing(loop, tmp_path, what, expected):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")
    kwargs: dict = {}
    program = PY
    if what == "missing":
        program = str(tmp_path / "no-such-program")
    elif what == "bad_cwd":
        kwargs["cwd"] = str(script)
    else:
        program = str(script)

    async def main():
        before = _open_fds()
        for _ in range(3):
            with pytest.raises(expected):
                await asyncio.create_subprocess_exec(
                    program,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    **kwargs,
                )
        return _open_fds() - before

    assert run(loop, main()) == 0


# ---- many children, no zombie, no leak ---------------------------------------------------------


def _zombies_of(pids) -> list[int]:
    me = os.getpid()
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
        except FileNotFoundError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("State", "").startswith("Z") and int(fields.get("PPid", "0")) == me:
            found.append(pid)
    return found


def test_many_short_children_leave_nothing(loop, loop_kind):
    async def one(sem, pids):
        async with sem:
            proc = await asyncio.create_subprocess_exec(
                "true", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
            )
            pids.append(proc.pid)
            await proc.communicate()
            return proc.returncode

    async def main():
        await one(asyncio.Semaphore(1), [])  # warm up (first-use descriptors)
        fds, threads = _open_fds(), threading.active_count()
        sem, pids = asyncio.Semaphore(16), []
        codes = await asyncio.gather(*(one(sem, pids) for _ in range(500)))
        await asyncio.sleep(0)
        return codes, pids, _open_fds() - fds, threading.active_count() - threads

    codes, pids, fd_growth, thread_growth = run(loop, main(), timeout=60)
    assert codes == [0] * 500
    assert _zombies_of(pids) == []
    assert fd_growth == 0
    if loop_kind != "asyncio":  # asyncio's threaded watcher may still be winding down
        assert thread_growth == 0


# ---- where the loop runs ---------------------------------------------------------------------


def test_loop_in_another_thread(loop_factory):
    result = {}

    def target():
        lp = loop_factory()
        try:

            async def main():
                proc = await asyncio.create_subprocess_exec(
                    PY, "-c", "print('hi')", stdout=asyncio.subprocess.PIPE
                )
                out, _ = await proc.communicate()
                return out, proc.returncode

            result["value"] = lp.run_until_complete(asyncio.wait_for(main(), 10))
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["value"] = exc
        finally:
            lp.close()

    t = threading.Thread(target=target)
    t.start()
    t.join(20)
    assert result["value"] == (b"hi\n", 0)


def test_loops_in_several_threads_at_once(loop_factory):
    results = {}

    def target(i):
        lp = loop_factory()
        try:

            async def main():
                procs = [
                    await asyncio.create_subprocess_exec(
                        PY, "-c", f"print({i} * 10 + {j})", stdout=asyncio.subprocess.PIPE
                    )
                    for j in range(4)
                ]
                return [int((await p.communicate())[0]) for p in procs]

            results[i] = lp.run_until_complete(asyncio.wait_for(main(), 20))
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[i] = exc
        finally:
            lp.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: [i * 10 + j for j in range(4)] for i in range(4)}


def test_user_sigchld_handler_keeps_working(loop):
    seen = []
    old = signal.signal(signal.SIGCHLD, lambda signum, frame: seen.append(signum))
    try:

        async def main():
            proc = await asyncio.create_subprocess_exec(PY, "-c", "raise SystemExit(4)")
            rc = await proc.wait()
            for _ in range(20):
                if seen:
                    break
                await asyncio.sleep(0.01)
            return rc

        assert run(loop, main()) == 4
    finally:
        signal.signal(signal.SIGCHLD, old)
    assert signal.SIGCHLD in seen


def test_user_sigchld_handler_set_after_the_spawn(loop):
    """A handler installed while a child runs replaces the loop's own where it has one; the
    exit is still seen, and both the user's handler and the wait go on working."""
    seen = []

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY,
            "-c",
            "import sys; sys.stdin.read(); raise SystemExit(6)",
            stdin=asyncio.subprocess.PIPE,
        )
        old = signal.signal(signal.SIGCHLD, lambda signum, frame: seen.append(signum))
        try:
            proc.stdin.close()
            rc = await asyncio.wait_for(proc.wait(), 10)
            for _ in range(20):
                if seen:
                    break
                await asyncio.sleep(0.01)
        finally:
            signal.signal(signal.SIGCHLD, old)
        return rc

    assert run(loop, main()) == 6
    assert signal.SIGCHLD in seen


def test_add_signal_handler_sigchld_keeps_working(loop):
    seen = []

    async def main():
        loop.add_signal_handler(signal.SIGCHLD, seen.append, "chld")
        try:
            proc = await asyncio.create_subprocess_exec(PY, "-c", "raise SystemExit(3)")
            rc = await asyncio.wait_for(proc.wait(), 10)
            for _ in range(20):
                if seen:
                    break
                await asyncio.sleep(0.01)
        finally:
            loop.remove_signal_handler(signal.SIGCHLD)
        return rc

    assert run(loop, main()) == 3
    assert "chld" in seen


def test_other_childrens_exit_is_left_to_their_owner(loop, loop_kind):
    """A child the loop did not spawn (a plain Popen) is never reaped by the loop."""
    if loop_kind == "asyncio" and not PY314:
        pytest.skip("asyncio's default watcher before 3.14 may be a waitpid(-1) one")
    import subprocess

    other = subprocess.Popen([PY, "-c", "pass"])

    async def main():
        # Exits while the loop watches children of its own, so SIGCHLD reaches the loop.
        procs = [await asyncio.create_subprocess_exec(PY, "-c", "pass") for _ in range(3)]
        for p in procs:
            await p.wait()
        for _ in range(50):
            await asyncio.sleep(0.01)

    run(loop, main())
    pid, status = os.waitpid(other.pid, 0)  # still ours to reap: no ECHILD
    assert pid == other.pid
    assert os.waitstatus_to_exitcode(status) == 0
    other.returncode = 0


def test_policy_without_child_watcher(loop_factory, loop_kind):
    if loop_kind == "asyncio" and not PY314:
        pytest.skip("asyncio before 3.14 needs the policy's child watcher")

    if hasattr(asyncio.events, "BaseDefaultEventLoopPolicy"):
        base = asyncio.events.BaseDefaultEventLoopPolicy
    else:  # private from 3.14 on
        base = asyncio.events._BaseDefaultEventLoopPolicy

    class Policy(base):
        _loop_factory = staticmethod(loop_factory)

    async def main():
        proc = await asyncio.create_subprocess_shell("exit 5")
        return await proc.wait()

    old = asyncio.events._event_loop_policy
    asyncio.events._event_loop_policy = Policy()
    try:
        lp = asyncio.new_event_loop()
        try:
            assert lp.run_until_complete(main()) == 5
        finally:
            lp.close()
    finally:
        asyncio.events._event_loop_policy = old


def test_runner_with_loop_factory(loop_factory):
    if not PY311:
        pytest.skip("asyncio.Runner is 3.11+")

    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", "raise SystemExit(9)")
        return await proc.wait()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(main()) == 9


REQUEST_ID = contextvars.ContextVar("request_id", default="default")


def test_exit_callbacks_run_in_the_spawners_context_as_asyncio(loop, ref_loop):
    """asyncio 3.12+ watches the child with a pidfd reader added at the spawn (so in a copy of
    the spawner's context); before, a watcher thread reports the exit in an empty context."""

    async def main(lp):
        seen = {}
        done = lp.create_future()

        class Proto(asyncio.SubprocessProtocol):
            def process_exited(self):
                seen["process_exited"] = REQUEST_ID.get()

            def connection_lost(self, exc):
                seen["connection_lost"] = REQUEST_ID.get()
                done.set_result(None)

        REQUEST_ID.set("req-42")
        tr, _ = await lp.subprocess_exec(
            Proto, PY, "-c", "pass", stdin=None, stdout=None, stderr=None
        )
        await done
        tr.close()
        return seen

    mine = run(loop, main(loop))
    assert mine == run(ref_loop, main(ref_loop))
    if PY312 and hasattr(os, "pidfd_open"):
        assert mine == {"process_exited": "req-42", "connection_lost": "req-42"}
    if not PY312:
        assert mine == {"process_exited": "default", "connection_lost": "default"}


async def _exit_order(loop, argv, stdin_line, **kwargs):
    """The order of a child's output, exit and end, as its protocol heard them."""
    events = []
    done = loop.create_future()

    class Proto(asyncio.SubprocessProtocol):
        def pipe_data_received(self, fd, data):
            events.append("data")

        def process_exited(self):
            events.append("exited")

        def connection_lost(self, exc):
            events.append("lost")
            done.set_result(None)

    tr, _ = await loop.subprocess_exec(Proto, *argv, stderr=None, **kwargs)
    if stdin_line:
        tr.get_pipe_transport(0).write(stdin_line)
    await done
    tr.close()
    return events


def _assert_output_first(runs):
    for events in runs:
        assert events.index("data") < events.index("exited")
        assert events[-1] == "lost"


def test_output_written_before_exit_comes_before_process_exited(loop):
    """A child that prints and exits at once: its output reaches the protocol before
    process_exited() (asyncio reads its pipes before the pidfd that follows them), and
    connection_lost() comes last."""

    async def main():
        argv = ["/bin/sh", "-c", "read x; printf out"]
        return [await _exit_order(loop, argv, b"go\n") for _ in range(20)]

    _assert_output_first(run(loop, main(), timeout=30))


def test_output_comes_first_when_the_exit_is_seen_before_the_pipes(loop, loop_kind):
    """A child that prints and exits before its pipes are connected: the exit is noticed
    first, and reported only once the output it wrote was read."""
    if loop_kind == "asyncio":
        pytest.skip(
            "asyncio races here: an exit seen while its pipes connect is queued before them"
        )

    async def main():
        argv = ["/bin/sh", "-c", "printf out"]
        return [await _exit_order(loop, argv, None, stdin=None) for _ in range(30)]

    _assert_output_first(run(loop, main(), timeout=30))
