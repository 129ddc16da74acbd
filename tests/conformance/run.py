"""Run CPython's own test.test_asyncio against ferroloop and against asyncio, and compare.

    .venv/bin/python tests/conformance/run.py                  # every module, both loops
    .venv/bin/python tests/conformance/run.py --module test_locks --loop ferroloop -v
    FERROLOOP_CONFORMANCE_FAKE=1 python tests/conformance/run.py   # harness check, no ferroloop

The tests come from the running interpreter's ``test`` package. Each (module, loop) pair runs
in its own worker process (_worker.py); _suites.py lists the modules and selections. A
failure on ferroloop is acceptable when expected_failures.txt lists it with a reason, or when
the same test fails on asyncio too (reported, tolerated). The exit status is 1 when any other
ferroloop failure remains, 2 on a usage or setup error. Listed tests that pass are reported as
stale; a test that fails and then passes when rerun by itself is reported as flaky.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# The script's directory is sys.path[0], so its private modules import directly.
import _expected
import _report
import _suites
from _jobs import FAILED, ModuleRun, Options, run_module

EXPECTED = Path(__file__).resolve().parent / "expected_failures.txt"
EXPECTED_VIRTUAL = EXPECTED.with_name("expected_failures_virtual.txt")
MODES = ("asyncio", "ferroloop")
POLICIES = ("default", "ferroloop", "bare")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--module", action="append", metavar="NAME", help="run only NAME (repeatable)")
    p.add_argument("--loop", choices=MODES, help="run only this loop (default: both)")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2, help="parallel workers")
    p.add_argument("--json", metavar="PATH", help="write every outcome as JSON to PATH")
    p.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
    p.add_argument("--test-timeout", type=float, default=60.0, help="seconds per test (60)")
    p.add_argument("--module-timeout", type=float, default=300.0, help="seconds per module (300)")
    p.add_argument("--no-rerun", action="store_true", help="do not rerun failed tests")
    p.add_argument("--asyncio-debug", action="store_true", help="set PYTHONASYNCIODEBUG=1")
    p.add_argument(
        "--policy",
        choices=POLICIES,
        default="default",
        help="where ferroloop's loops come from: asyncio's default policy class (default), "
        "ferroloop.EventLoopPolicy installed, or a policy with no child watcher (3.14)",
    )
    p.add_argument("--expected", default=str(EXPECTED), help="expected-failures file")
    p.add_argument(
        "--virtual-time",
        type=float,
        metavar="THRESHOLD",
        help="ferroloop's loops on a virtual clock that jumps after THRESHOLD real seconds "
        "without I/O (ferroloop.testing)",
    )
    args = p.parse_args(argv)
    if args.virtual_time is not None:
        os.environ["FERROLOOP_CONFORMANCE_VIRTUAL_TIME"] = str(args.virtual_time)
    return args


def ferroloop_label() -> tuple[str, Path | None]:
    """Say what "ferroloop" means in this run, and which extension file it loads.

    Exits 2 if ferroloop cannot be imported and used.
    """
    if os.environ.get("FERROLOOP_CONFORMANCE_FAKE") == "1":
        return "FAKE (FERROLOOP_CONFORMANCE_FAKE=1: asyncio.SelectorEventLoop)", None
    code = (
        "import ferroloop, ferroloop._ferroloop as n; ferroloop.new_event_loop().close(); "
        "print(ferroloop.__version__); print(n.__file__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        print(
            f"error: ferroloop is not usable from {sys.executable}:\n{proc.stderr.strip()}\n"
            "build it (make build), or run --loop asyncio, or FERROLOOP_CONFORMANCE_FAKE=1",
            file=sys.stderr,
        )
        sys.exit(2)
    version, so_file = proc.stdout.split()[:2]
    return f"ferroloop {version} ({so_file})", Path(so_file)


def _stamp(so_file: Path | None) -> list[tuple[str, int, int]] | None:
    """Name, mtime and size of the ferroloop package's Python files and loaded extension."""
    if so_file is None or not so_file.parent.is_dir():
        return None
    files = sorted(p for p in so_file.parent.iterdir() if p.suffix == ".py" or p == so_file)
    return [(p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files]


def run_all(modules: list[str], modes: list[str], jobs: int, opts: Options) -> list[ModuleRun]:
    pairs = [(m, mode) for m in modules for mode in modes]
    by_cost = sorted(pairs, key=lambda p: -_suites.cost(p[0]))  # slowest first
    done: list[ModuleRun] = []

    def one(pair: tuple[str, str]) -> ModuleRun:
        run = run_module(pair[0], pair[1], opts)
        done.append(run)
        # One write per line: worker threads report concurrently.
        sys.stdout.write(f"[{len(done)}/{len(pairs)}] {_report.progress_line(run)}\n")
        sys.stdout.flush()
        return run

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        runs = dict(zip(by_cost, pool.map(one, by_cost), strict=True))
    return [runs[p] for p in pairs]


def rerun_failures(runs: list[ModuleRun], jobs: int, opts: Options) -> None:
    """Rerun each module's failed tests without the rest of the module; a test that passes
    then is reported as flaky instead of failed. Hangs, crashes and module-level problems
    (pseudo ids like ``test_x.<module>``) are not rerun."""
    todo = []
    for r in runs:
        ids = [t for t in r.failed_ids() if r.tests[t]["outcome"] in ("fail", "error")]
        ids = [t for t in ids if "<" not in t]
        if ids:
            todo.append((r, ids))
    if not todo:
        return
    print(f"rerunning {sum(len(ids) for _, ids in todo)} failed test(s) by themselves", flush=True)

    def one(item: tuple[ModuleRun, list[str]]) -> None:
        run, ids = item
        again = run_module(run.module, run.mode, opts, only=ids)
        for tid in ids:
            second = again.tests.get(tid)
            if second is not None and second["outcome"] not in FAILED:
                first = run.tests[tid]
                run.tests[tid] = {**second, "flaky": True, "first_detail": first["detail"]}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, todo))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        entries = _expected.parse(args.expected)
        if args.virtual_time is not None:  # and what a virtual clock cannot follow
            entries += _expected.parse(str(EXPECTED_VIRTUAL))
        selected = args.module or [m.name for m in _suites.MODULES]
        for name in selected:
            _suites.find(name)
    except (_expected.ExpectedFileError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    modes = [args.loop] if args.loop else list(MODES)
    label, so_file = ferroloop_label() if "ferroloop" in modes else ("-", None)
    so_stamp = _stamp(so_file)
    opts = Options(args.test_timeout, args.module_timeout, args.asyncio_debug, args.policy)
    print(f"Python {platform.python_version()} ({sys.executable}); loop under test: {label}")
    start = time.monotonic()
    runs = run_all(selected, modes, args.jobs, opts)
    if not args.no_rerun:
        rerun_failures(runs, args.jobs, opts)
    wall = time.monotonic() - start
    if _stamp(so_file) != so_stamp:
        print(f"\nWARNING: {so_file.parent} changed during the run: results mix two builds")
    if so_file is None and "ferroloop" in modes:  # FAKE: the entries are about ferroloop
        print("\n(fake ferroloop: expected_failures.txt checked for syntax only)")
        entries = []
    verdict = _report.compare(runs, entries)
    _report.print_report(runs, verdict, wall, args)
    if args.json:
        payload = {
            "python": platform.python_version(),
            "executable": sys.executable,
            "loop_under_test": label,
            "wall_s": round(wall, 2),
            "runs": [vars(r) for r in runs],
            "verdict": verdict.as_json(),
        }
        Path(args.json).write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return 1 if verdict.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
