"""Running benchmarks side by side: fresh subprocesses, interleaved loops, medians.

A *section* is a family of benchmarks with one command line per measurement; the command prints
one JSON line holding ``ops_per_s``. Micro benchmarks are the first section; network servers can
be added to ``SECTIONS`` without touching the runner, the report or the demo.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loops import LOOPS
from micro import BENCHMARKS

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TIMEOUT_S = 120  # per measurement at scale 1; asyncio needs ~1.5 s


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    benches: dict[str, str]  # name -> title, in report order
    command: Callable[[str, str, float], list[str]]  # (bench, loop, scale) -> argv
    demo_scale: float = 1.0  # workload size for `make demo`, which must stay under 2 minutes


def _micro_command(bench: str, loop: str, scale: float) -> list[str]:
    return [sys.executable, str(HERE / "micro.py"), bench, "--loop", loop, "--scale", str(scale)]


MICRO = Section(
    "micro",
    "Micro benchmarks",
    {name: title for name, (_, title) in BENCHMARKS.items()},
    _micro_command,
    demo_scale=0.5,
)
SECTIONS: list[Section] = [MICRO]


@dataclass
class Results:
    """ops/s samples per (bench, loop); errors per (bench, loop); loop versions and failures."""

    loops: list[str]
    versions: dict[str, str]
    missing: dict[str, str] = field(default_factory=dict)  # loop -> why it was skipped
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)

    def median(self, bench: str, loop: str) -> float | None:
        values = self.samples.get(bench, {}).get(loop)
        return statistics.median(values) if values else None

    def spread(self, bench: str, loop: str) -> float | None:
        """Half the max-min range of the samples, relative to their median."""
        values = self.samples.get(bench, {}).get(loop)
        if not values or len(values) < 2:
            return None
        return (max(values) - min(values)) / 2 / statistics.median(values)

    def ratio(self, bench: str, loop: str, base: str) -> float | None:
        num, den = self.median(bench, loop), self.median(bench, base)
        return num / den if num and den else None

    def to_json(self) -> dict:
        medians = {
            b: {lp: self.median(b, lp) for lp in per_loop} for b, per_loop in self.samples.items()
        }
        return {**self.__dict__, "medians": medians}


def probe_loops(names: Sequence[str]) -> Results:
    """Find which loops import in a fresh interpreter; the rest are skipped with the reason."""
    results = Results(loops=[], versions={})
    for name in names:
        if name not in LOOPS:
            results.missing[name] = f"unknown loop (known: {', '.join(LOOPS)})"
            continue
        argv = [sys.executable, str(HERE / "micro.py"), "--probe", name]
        out = _run_json(argv, timeout=60)
        if "version" in out:
            results.loops.append(name)
            results.versions[name] = out["version"]
        else:
            results.missing[name] = out.get("error", "unknown error")
    return results


def _run_json(argv: list[str], timeout: float, pin: int | None = None) -> dict:
    """Run ``argv`` and parse the JSON of its last output line; failures become {"error"}."""
    if pin is not None:
        argv = [*argv, "--pin", str(pin)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return {"error": f"timed out after {timeout:.0f} s{_last_line(exc.stderr)}"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"{_exit_status(proc.returncode)}{_last_line(proc.stderr)}"}
    return json.loads(lines[-1])


def _exit_status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _last_line(stderr: str | bytes | None) -> str:
    """': <last line of stderr>', or '' if there is none (the likeliest culprit of a failure)."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    lines = (stderr or "").strip().splitlines()
    return f": {lines[-1].strip()}" if lines else ""


def rotated(items: Sequence[str], k: int) -> list[str]:
    """``items`` rotated left by ``k``, so each loop takes each position in turn."""
    k %= max(1, len(items))
    return [*items[k:], *items[:k]]


def run_section(
    section: Section,
    results: Results,
    benches: Sequence[str],
    reps: int,
    scale: float,
    pin: int | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> None:
    """Measure every bench on every loop ``reps`` times, each in a fresh process, interleaved."""
    for rep in range(reps):
        for bench in benches:
            for loop in rotated(results.loops, rep):
                if loop in results.errors.get(bench, {}):
                    continue  # failed once (crash, hang, wrong result): don't wait on it again
                timeout = TIMEOUT_S * max(1.0, scale)
                out = _run_json(section.command(bench, loop, scale), timeout, pin)
                _record(results, bench, loop, out)
                progress(f"rep {rep + 1}/{reps} {bench:<12} {loop:<10} {_describe(out)}")


def _record(results: Results, bench: str, loop: str, out: dict) -> None:
    if "ops_per_s" in out:
        results.samples.setdefault(bench, {}).setdefault(loop, []).append(out["ops_per_s"])
    else:
        results.errors.setdefault(bench, {})[loop] = out["error"]


def _describe(out: dict) -> str:
    return f"{out['ops_per_s']:>14,.0f} ops/s" if "ops_per_s" in out else f"ERROR {out['error']}"


def machine() -> dict[str, str]:
    """What the report opens with: machine, Python, commit, date."""
    return {
        "cpu": _cpu_model(),
        "cores": _cores(),
        "memory": _memory(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "commit": _git_commit(),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    total = os.cpu_count()
    return f"{usable} usable of {total}" if usable and usable != total else str(total)


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _git_commit() -> str:
    commit = _git("rev-parse", "--short", "HEAD")
    if commit is None:
        return "(none yet)"
    return commit + ("+dirty" if _git("status", "--porcelain", "--untracked-files=no") else "")
