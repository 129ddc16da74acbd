"""Tests of the conformance harness itself: the expected-failures grammar, the verdict, and
the worker's hang/crash handling (on the stdlib loop, with FERROLOOP_CONFORMANCE_FAKE=1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _expected  # noqa: E402
import _report  # noqa: E402
from _jobs import ModuleRun  # noqa: E402

RUN = Path(__file__).resolve().parent / "run.py"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "expected.txt"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def test_entries_need_a_reason(tmp_path):
    with pytest.raises(_expected.ExpectedFileError, match="no '# reason'"):
        _expected.parse(write(tmp_path, "test_x.C.test_a\n"))
    with pytest.raises(_expected.ExpectedFileError, match="no '# reason'"):
        _expected.parse(write(tmp_path, "test_x.C.test_a  #   \n"))


def test_entries_need_module_class_and_test(tmp_path):
    with pytest.raises(_expected.ExpectedFileError, match="module.Class.test_name"):
        _expected.parse(write(tmp_path, "test_x.test_a  # why\n"))


def test_gates_select_versions(tmp_path):
    path = write(
        tmp_path,
        """\
        # comment
        [py>=3.12] test_x.C.new  # only new
        [py<3.12] test_x.C.old  # only old
        [py>=3.11,py<3.13] test_x.C.mid  # a range
        test_x.C.any_*  # wildcard
        """,
    )
    ids = lambda v: [e.pattern for e in _expected.parse(path, v)]  # noqa: E731
    assert ids((3, 10, 13)) == ["test_x.C.old", "test_x.C.any_*"]
    assert ids((3, 12, 1)) == ["test_x.C.new", "test_x.C.mid", "test_x.C.any_*"]
    assert ids((3, 13, 0)) == ["test_x.C.new", "test_x.C.any_*"]
    with pytest.raises(_expected.ExpectedFileError, match="bad gate"):
        _expected.parse(write(tmp_path, "[py=>3.1] test_x.C.t  # why\n"))


def _run(mode: str, **outcomes: str) -> ModuleRun:
    run = ModuleRun("test_x", mode)
    for name, outcome in outcomes.items():
        run.tests[f"test_x.C.{name}"] = {"outcome": outcome, "detail": "E: boom", "loops": 1}
    return run


def test_verdict_sorts_failures(tmp_path):
    entries = _expected.parse(
        write(
            tmp_path,
            """\
            test_x.C.listed  # known
            test_x.C.stale  # fixed since
            test_x.C.gone  # renamed upstream
            """,
        )
    )
    base = _run("asyncio", listed="pass", stale="pass", both="fail", new="pass")
    ferro = _run("ferroloop", listed="error", stale="pass", both="fail", new="hung")
    v = _report.compare([base, ferro], entries)
    assert [f.id for f in v.listed] == ["test_x.C.listed"]
    assert [f.id for f in v.tolerated] == ["test_x.C.both"]
    assert [f.id for f in v.unexpected] == ["test_x.C.new"]
    assert [e.pattern for e in v.stale] == ["test_x.C.stale"]
    assert [e.pattern for e in v.unmatched] == ["test_x.C.gone"]


def test_asyncio_alone_must_be_clean():
    v = _report.compare([_run("asyncio", a="pass", b="fail")], [])
    assert not v.compared
    assert [f.id for f in v.unexpected] == ["test_x.C.b"]


def test_hung_and_crashed_tests_are_recorded_and_the_run_resumes(tmp_path):
    """Make two test_threads tests hang and crash: each is charged to its test, and the
    worker is restarted to run the others."""
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent(
            """\
            import os, time, unittest
            _orig = unittest.IsolatedAsyncioTestCase._callTestMethod
            def _call(self, method):
                if self._testMethodName == "test_to_thread":
                    time.sleep(1000)
                if self._testMethodName == "test_to_thread_once":
                    os.abort()
                return _orig(self, method)
            unittest.IsolatedAsyncioTestCase._callTestMethod = _call
            """
        ),
        encoding="utf-8",
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path), FERROLOOP_CONFORMANCE_FAKE="1")
    out = tmp_path / "out.json"
    cmd = [sys.executable, str(RUN), "--module", "test_threads", "--loop", "ferroloop"]
    cmd += ["--test-timeout", "2", "--json", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (run,) = json.loads(out.read_text(encoding="utf-8"))["runs"]
    tests = run["tests"]
    assert tests["test_threads.ToThreadTests.test_to_thread"]["outcome"] == "hung"
    assert tests["test_threads.ToThreadTests.test_to_thread_once"]["outcome"] == "crash"
    assert run["restarts"] == 2
    passed = [t for t in tests.values() if t["outcome"] == "pass"]
    assert len(passed) == len(tests) - 2 >= 3
