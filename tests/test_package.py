"""The ferroloop package itself (ferroloop only): entry points, policy, ``python -m ferroloop``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
from _support import PY311, PY312

ferroloop = pytest.importorskip("ferroloop", reason="ferroloop is not importable (not built yet?)")


@pytest.fixture(autouse=True)
def _restore_policy():
    """Tests here may install ferroloop's policy; put asyncio's default back afterwards."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(None)
    asyncio.set_event_loop(None)


async def _running_loop():
    return asyncio.get_running_loop()


# -- attributes ------------------------------------------------------------------------------------


def test_version_is_str():
    assert isinstance(ferroloop.__version__, str)
    assert ferroloop.__version__


def test_loop_is_abstract_event_loop():
    assert issubclass(ferroloop.Loop, asyncio.AbstractEventLoop)
    lp = ferroloop.new_event_loop()
    try:
        assert isinstance(lp, ferroloop.Loop)
        assert isinstance(lp, asyncio.AbstractEventLoop)
    finally:
        lp.close()


def test_public_names():
    for name in ("EventLoopPolicy", "Loop", "__version__", "install", "new_event_loop", "run"):
        assert hasattr(ferroloop, name), name


_REIMPORT = """
import importlib, json, sys
import ferroloop, ferroloop._ferroloop as native

importlib.reload(native)
del sys.modules["ferroloop._ferroloop"]
import ferroloop._ferroloop as again

lp = ferroloop.new_event_loop()
errors = {}
for name in ("call_soon", "call_soon_threadsafe", "call_later", "call_at"):
    try:
        getattr(lp, name)()
    except Exception as exc:
        errors[name] = type(exc).__name__
ran = []
lp.call_soon(ran.append, 1)
lp.call_later(0, ran.append, 2)
lp.call_soon(lp.stop)
lp.run_forever()
lp.close()
print(json.dumps({"same_type": again.Loop is native.Loop, "errors": errors, "ran": ran}))
"""


def test_extension_reload_and_reimport():
    # The extension's init runs again for a reload or a fresh import; the native types it
    # patches (free lists, direct call_soon entries) are the process's and stay as they were.
    proc = subprocess.run(
        [sys.executable, "-c", _REIMPORT], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["same_type"]
    assert result["errors"] == dict.fromkeys(
        ("call_soon", "call_soon_threadsafe", "call_later", "call_at"), "TypeError"
    )
    assert result["ran"] == [1, 2]


# -- running ---------------------------------------------------------------------------------------


def test_run():
    async def main(x):
        lp = asyncio.get_running_loop()
        return x, type(lp), lp.get_debug()

    value, kind, _ = ferroloop.run(main(7))
    assert value == 7
    assert issubclass(kind, ferroloop.Loop)
    assert ferroloop.run(main(1), debug=True)[2] is True
    assert ferroloop.run(main(1), debug=False)[2] is False


def test_run_closes_loop_and_propagates_errors():
    holder = []

    async def main():
        holder.append(asyncio.get_running_loop())
        raise LookupError("from main")

    with pytest.raises(LookupError, match="from main"):
        ferroloop.run(main())
    assert holder[0].is_closed()


def test_run_rejects_non_coroutine():
    with pytest.raises((ValueError, TypeError)):
        ferroloop.run(42)


@pytest.mark.skipif(not PY312, reason="asyncio.run(loop_factory=) added in 3.12")
def test_asyncio_run_loop_factory():
    lp = asyncio.run(_running_loop(), loop_factory=ferroloop.new_event_loop)
    assert isinstance(lp, ferroloop.Loop)
    assert lp.is_closed()


@pytest.mark.skipif(not PY311, reason="asyncio.Runner added in 3.11")
def test_asyncio_runner_loop_factory():
    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        lp = runner.run(_running_loop())
        assert lp is runner.get_loop()
        assert isinstance(lp, ferroloop.Loop)
        assert runner.run(asyncio.sleep(0, "again")) == "again"
    assert lp.is_closed()


# -- policy ----------------------------------------------------------------------------------------


def test_install_gives_ferroloop_loops():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ferroloop.install()
    lp = asyncio.new_event_loop()
    try:
        assert isinstance(lp, ferroloop.Loop)
    finally:
        lp.close()


@pytest.mark.skipif(not PY312, reason="deprecated from 3.12")
def test_install_deprecated_312():
    with pytest.warns(DeprecationWarning) as record:
        ferroloop.install()
    assert record[0].filename == __file__


@pytest.mark.skipif(PY312, reason="deprecated from 3.12")
def test_install_not_deprecated_before_312():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        ferroloop.install()


@pytest.mark.skipif(not PY312, reason="deprecated from 3.12")
def test_event_loop_policy_deprecated_312():
    with pytest.warns(DeprecationWarning):
        policy = ferroloop.EventLoopPolicy()
    lp = policy.new_event_loop()
    try:
        assert isinstance(lp, ferroloop.Loop)
    finally:
        lp.close()


@pytest.mark.skipif(PY312, reason="deprecated from 3.12")
def test_event_loop_policy_not_deprecated_before_312():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        policy = ferroloop.EventLoopPolicy()
        asyncio.set_event_loop_policy(policy)
    lp = asyncio.new_event_loop()
    try:
        assert isinstance(lp, ferroloop.Loop)
    finally:
        lp.close()


# -- python -m ferroloop ---------------------------------------------------------------------------

_SCRIPT = """
import asyncio, json, sys, warnings

async def main():
    return name(asyncio.get_running_loop())

def name(lp):
    return type(lp).__module__ + "." + type(lp).__name__

result = {"argv": sys.argv, "main": __name__}
# get_event_loop() with no loop set: 3.10-3.13 make one (3.12-3.13 warn), 3.14 raises
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        lp = asyncio.get_event_loop()
    except RuntimeError as exc:
        result["get_event_loop"] = f"RuntimeError: {exc}"
    else:
        result["get_event_loop"] = name(lp)
        lp.close()
asyncio.set_event_loop(None)
lp = asyncio.new_event_loop()
result["new_event_loop"] = name(lp)
lp.close()
result["run"] = asyncio.run(main())
print(json.dumps(result))
sys.exit(int(sys.argv[-1]) if sys.argv[-1].isdigit() else 0)
"""


def _python(tmp_path, *args):
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


def _python_m_ferroloop(tmp_path, *args):
    return _python(tmp_path, "-m", "ferroloop", *args)


def _loops_named(result: dict, plain: dict) -> dict:
    """What ``python -m ferroloop`` must print, given what plain ``python`` printed: the
    same, with every loop asyncio made being a ferroloop loop instead."""
    want = dict(plain)
    for key in ("run", "new_event_loop", "get_event_loop"):
        if not plain[key].startswith("RuntimeError"):
            assert result[key].startswith("ferroloop."), result
            want[key] = result[key]
    return want


@pytest.mark.parametrize("how", ["script", "module"])
def test_python_m_ferroloop_runs_like_python(tmp_path, how):
    # The oracle is the same program under plain python: same argv, __name__, exit status and
    # outcome of each call (3.14's get_event_loop() raises with no loop set, on both), with
    # ferroloop loops wherever asyncio made its own.
    (tmp_path / "prog.py").write_text(_SCRIPT)
    target = ["prog.py"] if how == "script" else ["-m", "prog"]
    plain = _python(tmp_path, *target, "a", "--flag", "b c")
    mine = _python_m_ferroloop(tmp_path, *target, "a", "--flag", "b c")
    assert plain.returncode == 0, plain.stderr
    assert mine.returncode == 0, mine.stderr
    result = json.loads(mine.stdout)
    assert result == _loops_named(result, json.loads(plain.stdout))
    assert result["main"] == "__main__"


def test_python_m_ferroloop_exit_status(tmp_path):
    (tmp_path / "script.py").write_text(_SCRIPT)
    proc = _python_m_ferroloop(tmp_path, "script.py", "3")
    assert proc.returncode == 3, proc.stderr


def test_python_m_ferroloop_script_sees_its_directory(tmp_path):
    sub = tmp_path / "pkg"
    sub.mkdir()
    (sub / "helper_mod.py").write_text("VALUE = 'found'\n")
    (sub / "main.py").write_text(
        textwrap.dedent("""
        import helper_mod
        print(helper_mod.VALUE)
    """)
    )
    proc = _python_m_ferroloop(tmp_path, str(sub / "main.py"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "found"


def test_python_m_ferroloop_usage(tmp_path):
    proc = _python_m_ferroloop(tmp_path)
    assert proc.returncode == 2
    assert "usage" in proc.stderr


async def _ping_pong_over_a_socketpair(rounds: int) -> int:
    import socket

    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)

    async def echo() -> None:
        while data := await loop.sock_recv(b, 64):
            await loop.sock_sendall(b, data)

    with a, b:
        echoer = loop.create_task(echo())
        done = 0
        for i in range(rounds):
            await loop.sock_sendall(a, b"%d" % i)
            assert await loop.sock_recv(a, 64) == b"%d" % i
            await asyncio.sleep(0.0001 if i % 50 == 0 else 0)  # idle gaps: timer-woken polls
            done += 1
        a.shutdown(socket.SHUT_WR)
        await echoer
    return done


@pytest.mark.parametrize("value", ["0", "1", "200", " 50 "])
def test_busy_poll_setting(monkeypatch, value):
    # The busy-poll window only changes when the loop sleeps, never what it delivers.
    monkeypatch.setenv("FERROLOOP_BUSY_POLL_US", value)
    assert ferroloop.run(_ping_pong_over_a_socketpair(300)) == 300


@pytest.mark.parametrize("value", ["", "abc", "-1", "1.5", "1000001"])
def test_busy_poll_setting_is_validated(monkeypatch, value):
    monkeypatch.setenv("FERROLOOP_BUSY_POLL_US", value)
    with pytest.raises(ValueError, match="FERROLOOP_BUSY_POLL_US"):
        ferroloop.new_event_loop()


def test_import_is_silent(tmp_path):
    # Importing (and the probe of the C Task's callables it runs) warns about nothing, even
    # with every warning turned into an error and collected at exit.
    proc = _python(
        tmp_path,
        "-W",
        "error",
        "-X",
        "dev",
        "-c",
        "import gc, ferroloop, ferroloop._loop as l; gc.collect(); "
        "assert l.TASK_CALLBACKS_REGISTERED",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


# -- python -m ferroloop script.py is python script.py ------------------------------------------

_WHERE = """
import os, sys
print(__file__ == os.path.abspath(__file__), sys.path[0] == os.path.dirname(__file__))
print(sys.argv)
try:
    import only_in_cwd
    print("cwd importable")
except ImportError:
    print("cwd not importable")
def fail():
    raise ValueError("from the script")
if sys.argv[-1] == "fail":
    fail()
"""


@pytest.mark.parametrize("extra", [[], ["arg", "fail"]])
def test_script_runs_as_with_python(tmp_path, extra):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "script.py").write_text(_WHERE)
    (tmp_path / "only_in_cwd.py").write_text("")
    plain = _python(tmp_path, "sub/script.py", *extra)
    ours = _python_m_ferroloop(tmp_path, "sub/script.py", *extra)
    assert ours.returncode == plain.returncode
    assert ours.stdout == plain.stdout
    assert ours.stderr == plain.stderr


def test_missing_script_as_with_python(tmp_path):
    plain = _python(tmp_path, "nope.py")
    ours = _python_m_ferroloop(tmp_path, "nope.py")
    assert (ours.returncode, ours.stdout) == (plain.returncode, plain.stdout) == (2, "")
    assert ours.stderr.count("\n") == plain.stderr.count("\n") == 1
    assert ours.stderr.split(": ", 1)[1] == plain.stderr.split(": ", 1)[1]
