"""The health socket and ``python -m ferroloop top`` (ferroloop only).

No assertion depends on how fast the machine is: waits are on events and
answers, each with a generous timeout that only a hang would reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import ferroloop
import ferroloop.health as fh
import pytest
from ferroloop import _health_server as hs
from ferroloop import _top

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")


@pytest.fixture
def served(tmp_path):
    path = fh.serve(str(tmp_path / "h-{pid}.sock"))
    yield path
    fh.stop_serving()


def _raw(path, payload, *, shut=False):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        if payload:
            s.sendall(payload)
        if shut:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def test_serve_answers_with_every_loop(hloop, served, tmp_path):
    assert served == str(tmp_path / f"h-{os.getpid()}.sock")
    assert stat.S_IMODE(os.stat(served).st_mode) == 0o600
    other = ferroloop.new_event_loop()
    try:
        hloop.run_until_complete(asyncio.sleep(0))
        doc = _top.fetch(served)
    finally:
        other.close()
    assert doc["pid"] == os.getpid()
    ids = {lp["id"] for lp in doc["loops"]}
    assert {id(hloop), id(other)} <= ids
    mine = next(lp for lp in doc["loops"] if lp["id"] == id(hloop))
    assert mine["iterations"] > 0 and mine["running"] is False
    assert {"p50", "p99", "max", "count"} <= set(mine["timer_lag"])


def test_stop_removes_the_file(tmp_path):
    path = fh.serve(str(tmp_path / "x.sock"))
    assert os.path.exists(path) and hs.serving() == path
    fh.stop_serving()
    assert not os.path.exists(path) and hs.serving() is None
    fh.stop_serving()  # twice is fine


def test_serve_settings(served, tmp_path):
    assert fh.serve(served) == served  # the same path again: already serving
    with pytest.raises(RuntimeError, match="already serving"):
        fh.serve(str(tmp_path / "other.sock"))
    for bad in ("", "a\0b", 3):
        with pytest.raises(ValueError):
            fh.serve(bad)  # type: ignore[arg-type]


def test_a_live_socket_is_not_taken_over_and_a_stale_one_is(tmp_path):
    path = str(tmp_path / "taken.sock")
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(path)
    other.listen(1)
    try:
        with pytest.raises(OSError, match="another process"):
            fh.serve(path)
        assert hs.serving() is None
    finally:
        other.close()
    # Closed: the file is stale now, and taken over.
    assert fh.serve(path) == path
    assert _top.fetch(path)["pid"] == os.getpid()
    fh.stop_serving()


def test_default_path_uses_xdg_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = fh.serve()
    try:
        assert path == str(tmp_path / f"ferroloop-{os.getpid()}.sock")
        assert _top.find_socket(os.getpid()) == path
    finally:
        fh.stop_serving()


def test_default_path_without_xdg_is_a_private_tmp_dir(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    path = fh.serve()
    try:
        assert path == f"/tmp/ferroloop-{os.getuid()}/{os.getpid()}.sock"
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    finally:
        fh.stop_serving()


def test_blocked_loop_is_still_inspectable(hloop, served):
    entered, release = threading.Event(), threading.Event()

    def blocking():
        entered.set()
        release.wait(30)  # blocks the loop (in C, with the GIL released)

    def run():
        hloop.call_soon(blocking)
        hloop.run_until_complete(asyncio.sleep(0))

    t = threading.Thread(target=run)
    t.start()
    try:
        assert entered.wait(10)
        doc = _top.fetch(served)
    finally:
        release.set()
        t.join(10)
    mine = next(lp for lp in doc["loops"] if lp["id"] == id(hloop))
    assert mine["running"] and mine["in_callback"]


def test_garbage_from_clients_leaves_the_server_up(served):
    assert b"error" in _raw(served, b"not json\n")
    assert b"error" in _raw(served, b"[1, 2]\n")
    assert b"error" in _raw(served, b"\xff\xfe\n")
    assert b"error" in _raw(served, b'{"tasks": -5}\n')
    try:  # too long: an error, or a reset when the server closes with the rest unread
        assert b"error" in _raw(served, b"x" * 10000)
    except ConnectionResetError:
        pass
    assert b"error" in _raw(served, b'{"tasks": 1', shut=True)  # half a request, then EOF
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(served)  # connect and close at once
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(served)
        s.sendall(b"{")  # half a request, then gone without reading
    doc = json.loads(_raw(served, b"{}\n"))
    assert doc["pid"] == os.getpid()


def test_half_request_without_eof_times_out_and_next_client_is_answered(served):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(served)
        s.sendall(b'{"tasks"')
        assert b"error" in s.recv(65536)  # the server gave up on it
    assert _top.fetch(served)["pid"] == os.getpid()


def test_peer_check():
    me = os.getuid()
    assert hs.peer_allowed(me)
    assert not hs.peer_allowed(me + 1)
    assert not hs.peer_allowed(0, our_uid=1000)
    assert hs.peer_allowed(1000, our_uid=1000)


def test_refused_peer_gets_no_answer(served, monkeypatch):
    monkeypatch.setattr(hs, "peer_allowed", lambda uid, our_uid=None: False)
    assert _raw(served, b"") == b""  # closed unanswered
    with pytest.raises(ConnectionError):
        _top.fetch(served)
    monkeypatch.undo()
    assert _top.fetch(served)["pid"] == os.getpid()


def test_tasks_and_blocks_are_in_the_document(hloop, served):
    before = fh.track_tasks()
    fh.track_tasks(True)
    got = []
    fh.on_block(got.append)
    fh.set_block_threshold(0.05, hloop)

    async def main():
        task = asyncio.create_task(asyncio.sleep(0), name="listed")
        await task
        time.sleep(0.2)  # a block: reported when it ends at the latest
        await asyncio.sleep(0)
        return task, await hloop.run_in_executor(None, _top.fetch, served)

    try:
        _task, doc = hloop.run_until_complete(main())
    finally:
        fh.track_tasks(before)
        fh.on_block(None)
        fh.set_block_threshold(fh.DEFAULT_BLOCK_THRESHOLD)
    mine = next(lp for lp in doc["loops"] if lp["id"] == id(hloop))
    assert "listed" in {t["name"] for t in mine["tasks"]}
    assert any(b["loop"] == id(hloop) and b["kind"] == "blocked" for b in doc["blocks"])
    frame = _top.render(doc)
    assert "listed" in frame and "recent blocks" in frame


def test_top_once_prints_a_frame(hloop, served, capsys, monkeypatch):
    hloop.run_until_complete(asyncio.sleep(0))
    assert _top.main(["--once", "--socket", served]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ferroloop top") and f"loop {id(hloop):#x}" in out
    # Found by PID through FERROLOOP_HEALTH_SOCKET (here this process's own).
    monkeypatch.setenv(hs.ENV, served.replace(str(os.getpid()), "{pid}"))
    assert _top.main(["--once", str(os.getpid())]) == 0
    assert f"pid {os.getpid()}" in capsys.readouterr().out


def test_top_errors(tmp_path, capsys):
    assert _top.main(["--once", "--socket", str(tmp_path / "none.sock")]) == 1
    assert _top.main(["--once", "999999999"]) == 1
    assert "no ferroloop health socket" in capsys.readouterr().err
    for bad in (
        ["--once"],
        ["--interval", "0", "1"],
        ["--interval", "nan", "1"],
        ["--tasks", "-1", "1"],
    ):
        with pytest.raises(SystemExit):
            _top.main(bad)


def test_render_gives_rates_from_two_documents(hloop, served):
    hloop.run_until_complete(asyncio.sleep(0))
    first = _top.fetch(served)
    hloop.run_until_complete(asyncio.sleep(0))
    second = _top.fetch(served)
    assert "callbacks/s" in _top.render(second, first)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_is_not_serving(served):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if hs.serving() is None and os.path.exists(served) else 2
            if code == 0:
                # The child may serve on its own path.
                own = fh.serve(served + ".child")
                fh.stop_serving()
                code = 0 if not os.path.exists(own) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.path.exists(served)
    assert _top.fetch(served)["pid"] == os.getpid()


CHILD = """
import asyncio, sys, ferroloop
async def main():
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
ferroloop.run(main())
"""


def _child(env, *args):
    """A Python child running ``-c`` code with ``args``, talking over its stdin and stdout."""
    return subprocess.Popen(
        [sys.executable, "-c", *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _top_once(pid):
    return subprocess.run(
        [sys.executable, "-m", "ferroloop", "top", "--once", str(pid)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_env_var_serves_and_top_finds_it_by_pid(tmp_path):
    env = {**os.environ, "FERROLOOP_HEALTH_SOCKET": str(tmp_path / "p-{pid}.sock")}
    child = _child(env, CHILD)
    try:
        assert child.stdout.readline().strip() == "ready"
        path = str(tmp_path / f"p-{child.pid}.sock")
        assert os.path.exists(path)
        out = _top_once(child.pid)
        assert out.returncode == 0, out.stderr
        assert f"pid {child.pid}" in out.stdout and "(running)" in out.stdout
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(60) == 0
    finally:
        with contextlib.suppress(OSError):
            child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
    assert not os.path.exists(path)  # removed at exit


def test_script_mode_still_works(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import asyncio\nprint(type(asyncio.new_event_loop()).__module__)\n")
    out = subprocess.run(
        [sys.executable, "-m", "ferroloop", str(script)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.startswith("ferroloop"), out.stderr


def test_collect_survives_a_closing_loop(hloop, monkeypatch):
    def broken(loop, ntasks=10):
        raise RuntimeError("closing")

    monkeypatch.setattr(hs, "loop_document", broken)
    doc = hs.collect()
    assert any(lp.get("error") for lp in doc["loops"])
    assert _top.render(doc)


def test_document_is_json_and_render_handles_no_loops():
    doc = json.loads(json.dumps(hs.collect(0), default=str))
    doc["loops"] = []
    assert "no open ferroloop loop" in _top.render(doc)
    buf = io.StringIO()
    buf.write(_top.render(doc, doc))
    assert buf.getvalue()


def test_loops_closing_while_clients_ask(served):
    done = threading.Event()
    errors = []

    def churn():
        try:
            for _ in range(100):
                loop = ferroloop.new_event_loop()
                loop.run_until_complete(asyncio.sleep(0))
                loop.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    t = threading.Thread(target=churn)
    t.start()
    answers = 0
    while not done.is_set() or answers == 0:
        assert _top.fetch(served)["pid"] == os.getpid()
        answers += 1
    t.join(30)
    assert not t.is_alive() and not errors


def test_serve_after_the_environment_variable_started_the_server(tmp_path, monkeypatch):
    template = str(tmp_path / "env-{pid}.sock")
    monkeypatch.setenv(hs.ENV, template)
    monkeypatch.setattr(hs, "_env_served_pid", None)
    try:
        hs.serve_from_env()
        path = hs.serving()
        assert path == hs.expand(template)
        assert fh.serve() == path  # harmless: the running server
        assert fh.serve(template) == path
        with pytest.raises(RuntimeError, match=f"{hs.ENV}.*stop_serving"):
            fh.serve(str(tmp_path / "other.sock"))
        assert hs.serving() == path
    finally:
        fh.stop_serving()


SLEEPER = """
import asyncio, sys, time, ferroloop
async def main():
    await asyncio.sleep(0.2)
    print("ready", flush=True)
    if sys.argv[1] == "busy":
        time.sleep(30)  # blocks the loop until killed
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
ferroloop.run(main())
"""


@pytest.mark.parametrize("kind", ["sleeping", "busy"])
def test_top_once_shows_a_sleeping_loop_idle_and_a_busy_one_busy(tmp_path, kind):
    env = {**os.environ, "FERROLOOP_HEALTH_SOCKET": str(tmp_path / "{pid}.sock")}
    child = _child(env, SLEEPER, kind)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(1.5)
        out = _top_once(child.pid)
        assert out.returncode == 0, out.stderr
        line = next(x for x in out.stdout.splitlines() if "utilization" in x)
        util = float(line.split("utilization", 1)[1].split("%", 1)[0])
        if kind == "sleeping":
            assert util < 5.0, out.stdout
        else:
            assert util > 80.0 and "in a callback" in line, out.stdout
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()


def test_top_shows_how_late_the_timers_are_while_the_loop_is_held_up(hloop, served):
    frames = []

    def held_up():
        t = threading.Thread(target=lambda: (time.sleep(0.6), frames.append(_top.fetch(served))))
        t.start()
        time.sleep(0.8)  # the loop's thread is busy; the timer below is due meanwhile
        t.join()

    async def main():
        hloop.call_soon(held_up)
        hloop.call_later(0.1, lambda: None)
        await asyncio.sleep(1)

    hloop.run_until_complete(main())
    mine = next(lp for lp in frames[0]["loops"] if lp["id"] == id(hloop))
    assert mine["timer_overdue"] > 0.3 and mine["in_callback"]
    assert "ms overdue)" in _top.render(frames[0])
