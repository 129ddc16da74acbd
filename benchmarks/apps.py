"""Real applications side by side (`make bench-apps`): real libraries against real servers.

Each case runs on asyncio, uvloop, ferroloop and rloop (where it imports), interleaved: every
round runs every case on every loop, the loops' order rotated each round. Every measurement is a
fresh process (benchmarks/apps_cases.py). The harness pins the fixed servers (redis-server,
PostgreSQL from tests/_services.py, the HTTP target of the client cases) and the servers under
test to the first CPU, and the clients (a client under test, wrk, the websockets load) to the
second::

    .venv/bin/python benchmarks/apps.py                       # 3 rounds, 3 s per measurement
    .venv/bin/python benchmarks/apps.py --quick               # 1 round, 1 s: a smoke run
    .venv/bin/python benchmarks/apps.py --only redis_pipeline --loops uvloop,ferroloop --rounds 5

Writes benchmarks/results/apps.md (table), apps.json (every sample) and apps.png (chart). The
ratios are medians of the per-round paired ratios, with their minimum and maximum.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import net
from harness import RESULTS, machine, rotated
from loops import LOOPS, version

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
CASES_PY = str(HERE / "apps_cases.py")
WRK_CONNS = 64
TIMEOUT_PAD_S = 60.0
COLOURS = {"asyncio": "#9e9e9e", "uvloop": "#3f7fbf", "ferroloop": "#d4622a", "rloop": "#6a9f3a"}


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    unit: str  # what one op is
    kind: str  # "client" (client under test), "wrk" (server under test), "ws" (echo server)
    needs: str = ""  # the fixed server a client case talks to: redis, postgres, http


CASES = [
    Case("redis_pipeline", "redis-py, pipelines of 200 commands", "cmd", "client", "redis"),
    Case("redis_setget", "redis-py, SET/GET from 32 tasks", "cmd", "client", "redis"),
    Case("asyncpg", "asyncpg pool, SELECT from 32 tasks", "query", "client", "postgres"),
    Case("aiohttp_client", "aiohttp ClientSession, 64 connections", "req", "client", "http"),
    Case("httpx_client", "httpx AsyncClient, 16 connections", "req", "client", "http"),
    Case("subprocess_pipe", "8 MiB through cat (subprocess pipes)", "MB", "client"),
    Case("uvicorn", "uvicorn + Starlette JSON, wrk 64 conns", "req", "wrk"),
    Case("aiohttp_server", "aiohttp.web JSON, wrk 64 conns", "req", "wrk"),
    Case("websockets", "websockets echo server, 16 conns", "msg", "ws"),
]
SERVER_OF = {"uvicorn": "uvicorn", "aiohttp_server": "aiohttp", "websockets": "websockets"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s: a smoke run")
    parser.add_argument("--loops", default=",".join(LOOPS), help="default: %(default)s")
    parser.add_argument("--only", action="append", help="a case name (repeatable)")
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 1.0
    return args


# ---------------------------------------------------------------------------------------------
# Fixed servers


@contextlib.contextmanager
def fixed_servers(needs: set[str], cpu: int) -> Iterator[dict[str, str]]:
    """Start what the cases need on ``cpu``; yield name -> port, or name -> "!reason"."""
    import _services  # tests/_services.py: the test suite's redis-server and PostgreSQL
    import pytest

    ports: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        mask = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})  # the servers' processes inherit it
        try:
            for name, start in (("redis", _services.redis), ("postgres", _services.postgres)):
                if name in needs:
                    try:
                        ports[name] = str(stack.enter_context(start()).port)
                    except (pytest.skip.Exception, RuntimeError, OSError) as exc:
                        ports[name] = f"!{exc}".splitlines()[0]
        finally:
            os.sched_setaffinity(0, mask)
        if "http" in needs:
            argv = [sys.executable, str(HERE / "servers.py"), "http", "--loop", "uvloop"]
            ports["http"] = stack.enter_context(net.Server(argv, cpu)).address
        yield ports


# ---------------------------------------------------------------------------------------------
# One measurement


def run_client(case: str, loop: str, target: str, seconds: float, cpu: int) -> float:
    argv = [sys.executable, CASES_PY, "client", case, "--loop", loop, "--target", target]
    proc = subprocess.run(
        [*argv, "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + TIMEOUT_PAD_S,
        preexec_fn=net._pinned(cpu),
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"exit {proc.returncode}: {tail}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["ops"] <= 0:
        raise RuntimeError("no op completed")
    return out["ops"] / out["seconds"]


def run_wrk(port: str, seconds: float, cpu: int) -> float:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    url = f"http://{net.HOST}:{port}/"

    def once(duration: int) -> str:
        argv = [wrk, "-t1", f"-c{WRK_CONNS}", f"-d{duration}s", "--latency", url]
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration + TIMEOUT_PAD_S,
            preexec_fn=net._pinned(cpu),
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    once(1)
    return net.parse_wrk(once(max(1, round(seconds))))["ops_per_s"]


def measure(case: Case, loop: str, ports: dict[str, str], seconds: float, cpus) -> float:
    """ops/s of ``case`` on ``loop``."""
    if case.kind == "client":
        target = ports.get(case.needs, "")
        if target.startswith("!"):
            raise RuntimeError(target[1:])
        factor = 1e-6 if case.unit == "MB" else 1.0
        return run_client(case.name, loop, target, seconds, cpus.client) * factor
    argv = [sys.executable, CASES_PY, "serve", SERVER_OF[case.name], "--loop", loop]
    with net.Server(argv, cpus.server) as server:
        if case.kind == "wrk":
            return run_wrk(server.address, seconds, cpus.client)
        return run_client("ws_client", "uvloop", server.address, seconds, cpus.client)


# ---------------------------------------------------------------------------------------------
# Report


def paired(samples: dict, case: str, num: str, den: str) -> list[float]:
    a, b = samples[case].get(num, []), samples[case].get(den, [])
    return [x / y for x, y in zip(a, b, strict=False) if x and y]


def ratio_cell(ratios: list[float]) -> str:
    if not ratios:
        return "n/a"
    med = statistics.median(ratios)
    if len(ratios) == 1:
        return f"{med:.2f}x"
    return f"{med:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def human(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "MB":
        return f"{value:.0f} MB/s"
    return f"{value / 1000:.1f}k {unit}/s" if value >= 1000 else f"{value:.0f} {unit}/s"


def table(cases: list[Case], loops: list[str], samples: dict) -> list[str]:
    others = [lp for lp in ("asyncio", "rloop") if lp in loops]
    ref = "uvloop" if "uvloop" in loops else loops[0]
    head = ["case", *loops, f"ferroloop / {ref}", *(f"ferroloop / {o}" for o in others)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases:
        cells = [case.title]
        for loop in loops:
            values = [v for v in samples[case.name].get(loop, []) if v]
            cells.append(human(statistics.median(values) if values else None, case.unit))
        for other in (ref, *others):
            cells.append(ratio_cell(paired(samples, case.name, "ferroloop", other)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def chart(cases: list[Case], loops: list[str], samples: dict, path: Path) -> None:
    """Per case: each loop's median ops/s relative to uvloop's, with the paired min-max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.8))
    width = 0.8 / len(loops)
    for i, loop in enumerate(loops):
        meds, lows, highs = [], [], []
        for case in cases:
            ratios = paired(samples, case.name, loop, "uvloop")
            med = statistics.median(ratios) if ratios else 0.0
            meds.append(med)
            lows.append(med - min(ratios) if ratios else 0.0)
            highs.append(max(ratios) - med if ratios else 0.0)
        xs = [c + (i - (len(loops) - 1) / 2) * width for c in range(len(cases))]
        ax.bar(xs, meds, width, yerr=[lows, highs], capsize=2, label=loop,
               color=COLOURS.get(loop, "#444444"))  # fmt: skip
    ax.axhline(1.0, color="#3f7fbf", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([c.name for c in cases], rotation=25, ha="right")
    ax.set_ylabel("throughput / uvloop's (median of rounds, min-max)")
    ax.set_title("Real applications: relative to uvloop (higher is better)")
    ax.legend(ncol=len(loops))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args, cases: list[Case], loops: list[str], samples: dict, errors: list[str]) -> str:
    info = machine()
    lines = [
        "# Real applications",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores, {info['memory']} memory, {info['os']}",
        f"- Python: {info['python']}",
        *(f"- {loop}: {version(loop)}" for loop in loops if loop != "asyncio"),
        f"- Commit: {info['commit']}",
        f"- Date: {info['date']}; load average at the end: {info['load']}",
        f"- {args.rounds} rounds of {args.seconds:g} s per measurement, loops interleaved",
        "",
        *table(cases, loops, samples),
    ]
    if errors:
        # One line per case and loop: rloop fails the same way every round.
        unique = list(
            dict.fromkeys(e.split(", round ")[0] + ":" + e.split(":", 1)[1] for e in errors)
        )
        lines += ["", "Errors (n/a above):", "", *(f"- {e}" for e in unique)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------


def usable_loops(names: list[str]) -> list[str]:
    loops = []
    for name in names:
        try:
            version(name)
        except Exception as exc:  # noqa: BLE001 - any import failure skips the loop
            print(f"{name}: skipped, not importable ({exc})", file=sys.stderr)
            continue
        loops.append(name)
    return loops


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loops = usable_loops([lp for lp in args.loops.split(",") if lp])
    cases = [c for c in CASES if not args.only or c.name in args.only]
    cpus = net.choose_cpus(None)
    samples: dict = {c.name: {lp: [] for lp in loops} for c in cases}
    errors: list[str] = []
    started = time.monotonic()
    with fixed_servers({c.needs for c in cases if c.needs}, cpus.server) as ports:
        for rnd in range(args.rounds):
            for case in cases:
                for loop in rotated(loops, rnd):
                    try:
                        value = measure(case, loop, ports, args.seconds, cpus)
                    except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                        value = None
                        errors.append(f"{case.name} on {loop}, round {rnd + 1}: {exc}")
                    samples[case.name][loop].append(value)
                    shown = "error" if value is None else human(value, case.unit)
                    print(f"round {rnd + 1} {case.name:16} {loop:10} {shown}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = report(args, cases, loops, samples, errors)
    (out / "apps.md").write_text(text)
    (out / "apps.json").write_text(json.dumps({"samples": samples, "errors": errors}, indent=1))
    if "uvloop" in loops:
        chart(cases, loops, samples, out / "apps.png")
    print(f"\n{text}\n({time.monotonic() - started:.0f} s; {out / 'apps.md'}, apps.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
