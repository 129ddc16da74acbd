"""Run one (module, mode) in worker subprocesses and gather its per-test outcomes.

Owns the hang/crash policy: a worker that dies inside a test (the per-test watchdog fired,
or the interpreter crashed) gets that test recorded as ``hung``/``crash`` and is restarted
with every finished test skipped, up to MAX_RESTARTS times and within the module's time
budget. A worker that dies outside a test, or a module over budget, is a module failure,
recorded under the pseudo test id ``test_x.<module>``; a worker that finishes its tests but
then hangs or crashes on the way out gets ``test_x.<exit>``. Pseudo ids are reported like
any failing test but cannot be listed as expected failures. The worker's log is scanned for
warning lines, which the report compares between the two loops.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _suites import PACKAGE

WORKER = Path(__file__).resolve().parent / "_worker.py"
MAX_RESTARTS = 10
FAILED = frozenset({"fail", "error", "xpass", "hung", "crash"})
PASSED = frozenset({"pass", "xfail"})
_TAIL = 3000
# Log lines worth comparing between the loops: leaks and errors nobody raised.
_NOISE = re.compile(r"Warning:|Exception ignored|destroyed but it is pending|[Uu]nclosed")
_ADDR = re.compile(r"0x[0-9a-fA-F]+")
_MAX_WARNINGS = 200


@dataclass
class Options:
    test_timeout: float = 60.0
    module_timeout: float = 300.0
    asyncio_debug: bool = False
    policy: str = "default"  # how ferroloop loops are made: see _worker.install_loop


@dataclass
class ModuleRun:
    module: str
    mode: str
    status: str = "ok"  # ok | absent | error | timeout
    wall_s: float = 0.0
    restarts: int = 0
    tests: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # noisy log lines, addresses masked

    def count(self, outcomes: frozenset[str] | set[str]) -> int:
        return sum(1 for t in self.tests.values() if t["outcome"] in outcomes)

    def failed_ids(self) -> list[str]:
        return sorted(tid for tid, t in self.tests.items() if t["outcome"] in FAILED)


def module_present(module: str) -> bool:
    return importlib.util.find_spec(f"{PACKAGE}.{module}") is not None


def _read_events(path: Path) -> list[dict]:
    events = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                break
    return events


def _tail(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return text[-_TAIL:].strip()


def _noise(log: Path) -> list[str]:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return [_ADDR.sub("0x…", ln.strip()) for ln in text.splitlines() if _NOISE.search(ln)]


def _spawn(cmd: list[str], log: Path, cwd: str, env: dict, timeout: float) -> tuple[int, bool]:
    """Run the worker in its own process group; kill the whole group on timeout."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True
        )
        try:
            return proc.wait(timeout=max(timeout, 1.0)), False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler dumps the stacks into the log
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):  # the group may be gone already
                os.killpg(proc.pid, signal.SIGKILL)  # and whatever it started
            return proc.wait(), True


def run_module(module: str, mode: str, opts: Options, only: list[str] | None = None) -> ModuleRun:
    run = ModuleRun(module, mode)
    if not module_present(module):
        run.status = "absent"
        return run
    env = dict(os.environ)
    if opts.asyncio_debug:
        env["PYTHONASYNCIODEBUG"] = "1"
    env["FERROLOOP_CONFORMANCE_POLICY"] = opts.policy
    start = time.monotonic()
    deadline = start + opts.module_timeout
    with tempfile.TemporaryDirectory(prefix=f"conformance-{module}-{mode}-") as tmp:
        skip_file = Path(tmp, "skip.txt")
        cmd = [sys.executable, str(WORKER), "--module", module, "--mode", mode]
        cmd += ["--skip-file", str(skip_file), "--test-timeout", str(opts.test_timeout)]
        if only is not None:
            Path(tmp, "only.txt").write_text("\n".join(only) + "\n", encoding="utf-8")
            cmd += ["--only-file", str(Path(tmp, "only.txt"))]
        while True:
            attempt = run.restarts
            events_path, log = Path(tmp, f"events-{attempt}.jsonl"), Path(tmp, f"log-{attempt}")
            skip_file.write_text("\n".join(sorted(run.tests)) + "\n", encoding="utf-8")
            rc, timed_out = _spawn(
                cmd + ["--events", str(events_path)],
                log,
                tmp,
                env,
                deadline - time.monotonic(),
            )
            run.warnings += _noise(log)[: _MAX_WARNINGS - len(run.warnings)]
            if _absorb(run, _read_events(events_path), rc, timed_out, log, opts):
                break
    run.wall_s = time.monotonic() - start
    return run


def _absorb(
    run: ModuleRun, events: list[dict], rc: int, timed_out: bool, log: Path, opts: Options
) -> bool:
    """Fold one worker attempt into ``run``; return True when the module is finished."""
    current = None
    for ev in events:
        if ev["event"] == "start":
            current = ev["id"]
        elif ev["event"] == "result":
            run.tests[ev["id"]] = {
                "outcome": ev["outcome"],
                "detail": ev.get("detail", ""),
                "loops": ev.get("loops", 0),
            }
            if ev["id"] == current:
                current = None
        elif ev["event"] == "done":
            if rc != 0:  # the tests finished but the interpreter did not exit cleanly
                _exit_failure(run, rc, timed_out, _tail(log))
            return True
    tail = _tail(log)
    if timed_out:
        run.status = "timeout"
        where = f"; {current} was running" if current else ""
        msg = f"module exceeded its {opts.module_timeout:.0f} s budget{where} (killed)"
        run.tests[f"{run.module}.<module>"] = {"outcome": "hung", "detail": f"{msg}\n{tail}"}
        if current:
            run.tests[current] = {"outcome": "hung", "detail": f"{msg}\n{tail}"}
        return True
    if current is None:
        run.status = "error"
        detail = f"worker exited with status {rc} outside any test{_last_exception(log)}\n{tail}"
        run.tests[f"{run.module}.<module>"] = {"outcome": "error", "detail": detail}
        return True
    if "Timeout (" in tail:  # faulthandler.dump_traceback_later's banner
        detail = f"hung: no result after {opts.test_timeout:.0f} s; stacks:\n{tail}"
        run.tests[current] = {"outcome": "hung", "detail": detail}
    else:
        detail = f"crashed the interpreter (exit status {rc})\n{tail}"
        run.tests[current] = {"outcome": "crash", "detail": detail}
    run.restarts += 1
    if run.restarts > MAX_RESTARTS:
        run.status = "error"
        detail = f"gave up after {MAX_RESTARTS} restarts (hangs/crashes)"
        run.tests[f"{run.module}.<module>"] = {"outcome": "error", "detail": detail}
        return True
    return False


def exception_line(text: str, last: bool = False) -> str:
    """The ``ExcType: message`` line of the first (or last) traceback in ``text`` that was
    not merely printed by a finalizer ("Exception ignored in ..."), or ``""``."""
    lines = text.splitlines()
    starts = [
        i
        for i, ln in enumerate(lines)
        if ln.startswith("Traceback (most recent call")
        and not (i and lines[i - 1].startswith("Exception ignored"))
    ]
    if not starts:
        return ""
    for line in lines[starts[-1 if last else 0] + 1 :]:
        if line and not line[0].isspace():
            return line
    return ""


def _last_exception(log: Path) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    line = exception_line(text, last=True)
    return f": {line}" if line else ""


def _exit_failure(run: ModuleRun, rc: int, timed_out: bool, tail: str) -> None:
    if timed_out or "Timeout (" in tail:
        outcome, what = "hung", "hung at interpreter exit after the last test"
    else:
        outcome, what = "crash", f"interpreter exit failed (status {rc}) after the last test"
    run.status = "error"
    run.tests[f"{run.module}.<exit>"] = {"outcome": outcome, "detail": f"{what}\n{tail}"}
