"""Running benchmarks side by side: fresh subprocesses, interleaved loops, medians.

A *section* is a family of benchmarks with one command line per measurement; the command prints
one JSON line holding the section's metric (``ops_per_s`` unless it says otherwise), and may hold
more figures, which are kept as details. Micro benchmarks are the first section, the network
servers (net.py) the next ones; a section can bring its own report tables, an extra reference
loop (the Rust echo ceiling) and a preparation step (building the load generator).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import net
from loops import KNOWN, env_for
from micro import BENCHMARKS
from model import Results, Section
from netreport import render_net, render_syscalls

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TIMEOUT_S = 120  # per measurement at scale 1; asyncio needs ~1.5 s


def _micro_command(bench: str, loop: str, scale: float) -> list[str]:
    return [sys.executable, str(HERE / "micro.py"), bench, "--loop", loop, "--scale", str(scale)]


MICRO = Section(
    "micro",
    "Micro benchmarks",
    {name: title for name, (_, title) in BENCHMARKS.items()},
    _micro_command,
    demo_scale=0.5,
    # The demo shows a child's pipes; the FIFO and socket-pair paths are for `make bench`.
    demo_benches=tuple(b for b in BENCHMARKS if not b.startswith(("fifo_", "pair_"))),
)
NET = Section(
    "net",
    "Network: echo servers, HTTP and TLS",
    net.NET_BENCHES,
    net.command,
    demo_scale=0.5,
    demo_benches=("proto_1k_c16", "streams_1k_c16", "http_c16", "https_c64"),
    reps=3,
    extra_loops=(net.CEILING,),
    prepare=net.prepare,
    render=render_net,
)
SYSCALLS = Section(
    "syscalls",
    "Network: system calls per echoed message",
    net.SYSCALL_BENCHES,
    net.command,
    demo_benches=(),
    metric="syscalls_per_msg",
    reps=1,
    extra_loops=(net.CEILING,),
    prepare=net.prepare,
    render=render_syscalls,
)
SECTIONS: list[Section] = [MICRO, NET, SYSCALLS]


def probe_loops(names: Sequence[str]) -> Results:
    """Find which loops import in a fresh interpreter; the rest are skipped with the reason."""
    results = Results(loops=[], versions={})
    for name in names:
        if name not in KNOWN:
            results.missing[name] = f"unknown loop (known: {', '.join(KNOWN)})"
            continue
        argv = [sys.executable, str(HERE / "micro.py"), "--probe", name]
        out = _run_json(argv, timeout=60, loop=name)
        if "version" in out:
            results.loops.append(name)
            results.versions[name] = out["version"]
        else:
            results.missing[name] = out.get("error", "unknown error")
    return results


def _run_json(argv: list[str], timeout: float, pin: int | None = None, loop: str = "") -> dict:
    """Run ``argv`` and parse the JSON of its last output line; failures become {"error"}."""
    if pin is not None:
        argv = [*argv, "--pin", str(pin)]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env_for(loop)
        )
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
    loops = [*results.loops, *section.extra_loops] if results.loops else []
    problem = section.prepare() if section.prepare and benches and loops else None
    if problem:
        for bench in benches:
            for loop in loops:
                if section.command(bench, loop, scale) is not None:
                    results.errors.setdefault(bench, {})[loop] = problem
        progress(f"{section.name}: not measured: {problem}")
        return
    for rep in range(reps):
        for bench in benches:
            for loop in rotated(loops, rep):
                argv = section.command(bench, loop, scale)
                if argv is None or loop in results.errors.get(bench, {}):
                    continue  # not applicable, or failed once: don't wait on it again
                timeout = TIMEOUT_S * max(1.0, scale)
                out = _run_json(argv, timeout, pin, loop)
                _record(results, bench, loop, out, section.metric)
                progress(f"rep {rep + 1}/{reps} {bench:<20} {loop:<10} {_describe(out, section)}")


def _record(results: Results, bench: str, loop: str, out: dict, metric: str) -> None:
    if metric in out:
        results.samples.setdefault(bench, {}).setdefault(loop, []).append(out[metric])
        results.details.setdefault(bench, {}).setdefault(loop, []).append(out)
    else:
        results.errors.setdefault(bench, {})[loop] = out.get("error", f"no {metric} in {out}")


def _describe(out: dict, section: Section) -> str:
    if section.metric not in out:
        return f"ERROR {out.get('error')}"
    unit = "ops/s" if section.metric == "ops_per_s" else section.metric.replace("_per_", "/")
    return f"{out[section.metric]:>14,.{0 if out[section.metric] > 100 else 2}f} {unit}"


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
        "load": _load(),
    }


def _load() -> str:
    """The load averages when the report is written: other work on the machine skews results."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "unknown"


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
