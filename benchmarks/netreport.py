"""Markdown for the network sections: throughput, latency, server and load-generator CPU per
message, system calls per echo, and the Rust ceiling.

The harness calls ``render_net`` and ``render_syscalls`` through ``Section.render``; both read
the per-measurement figures that net.py prints (``Results.detail``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from model import Results, Section
from net import CEILING, POINTS, ceiling_point
from report import BASE, OURS, cell, ratio_columns, ratio_text, table

BUSY_PCT = 90.0  # a load generator this busy caps the point's throughput as much as the server
MARK = "†"


def _us(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def _busy(results: Results, bench: str, loop: str) -> bool:
    pct = results.detail(bench, loop, "loadgen_cpu_pct")
    return pct is not None and pct >= BUSY_PCT


def _cpu_ratio(results: Results, bench: str) -> float | None:
    mine = results.detail(bench, OURS, "server_cpu_us_per_msg")
    base = results.detail(bench, BASE, "server_cpu_us_per_msg")
    return mine / base if mine and base else None


def settings(results: Results, benches: Sequence[str]) -> list[str]:
    """How the points were measured, from the figures the measurements recorded."""
    first = next(
        (d[0] for b in benches for d in results.details.get(b, {}).values() if b in POINTS),
        None,
    )
    if first is None:
        return []
    reps = max((len(v) for b in benches for v in results.samples.get(b, {}).values()), default=0)
    return [
        f"Server pinned to CPU {first['server_cpu']}, load generator to CPU {first['client_cpu']}. "
        f"Echo points: benchmarks/loadgen (Rust, one thread, closed loop: each connection waits "
        f"for its whole echo before sending again), {first['warmup_s']:g} s warm-up then "
        f"{first['window_s']:.2g} s measured. HTTP: wrk -t1 -c16 --latency after a 1 s warm-up "
        f"run. Repetitions: {reps}, loops interleaved, each in a fresh server process. "
        f"Rust ceiling: benchmarks/loadgen's single-threaded mio echo server (one TCP ceiling "
        f"serves the Protocol, streams and sock_* rows alike).",
    ]


def throughput_table(results: Results, benches: Sequence[str], titles: dict[str, str]) -> list[str]:
    pairs = ratio_columns(results.loops)
    head = ["point", *(f"{lp} msg/s" for lp in results.loops)]
    head += [f"{lp} / {base}" for lp, base in pairs] + ["Rust ceiling msg/s"]
    rows = []
    for bench in benches:
        row = [titles[bench]]
        for lp in results.loops:
            row.append(cell(results, bench, lp) + (MARK if _busy(results, bench, lp) else ""))
        row += [ratio_text(results.ratio(bench, lp, base)) for lp, base in pairs]
        ceiling = ceiling_point(bench)
        if ceiling is None:
            row.append("n/a")
        else:
            busy = MARK if _busy(results, ceiling, CEILING) else ""
            row.append(cell(results, ceiling, CEILING) + busy)
        rows.append(row)
    return table(head, rows)


def _figure_table(
    results: Results,
    benches: Sequence[str],
    titles: dict[str, str],
    text: Callable[[Results, str, str], str],
    extra: Callable[[Results, str], list[str]] = lambda _r, _b: [],
    extra_head: Sequence[str] = (),
) -> list[str]:
    """One row per point, one column per loop and the ceiling, cells made by ``text``."""
    loops = [*results.loops, CEILING]
    head = ["point", *(lp if lp != CEILING else "Rust ceiling" for lp in loops), *extra_head]
    rows = []
    for bench in benches:
        ceiling = ceiling_point(bench)
        cells = [
            text(results, bench if lp != CEILING else ceiling, lp)
            if lp != CEILING or ceiling
            else "n/a"
            for lp in loops
        ]
        rows.append([titles[bench], *cells, *extra(results, bench)])
    return table(head, rows)


def _latency(results: Results, bench: str, loop: str) -> str:
    p50, p99 = (results.detail(bench, loop, k) for k in ("p50_us", "p99_us"))
    return "n/a" if p50 is None or p99 is None else f"{p50:,.0f} / {p99:,.0f}"


def _server_cpu(results: Results, bench: str, loop: str) -> str:
    per_msg = results.detail(bench, loop, "server_cpu_us_per_msg")
    pct = results.detail(bench, loop, "server_cpu_pct")
    return "n/a" if per_msg is None or pct is None else f"{_us(per_msg)} µs, {pct:.0f}%"


def _loadgen_cpu(results: Results, bench: str, loop: str) -> str:
    per_msg = results.detail(bench, loop, "loadgen_cpu_us_per_msg")
    pct = results.detail(bench, loop, "loadgen_cpu_pct")
    if per_msg is None or pct is None:
        return "n/a"
    return f"{_us(per_msg)} µs, {pct:.0f}%" + (MARK if pct >= BUSY_PCT else "")


def render_net(section: Section, results: Results, benches: Sequence[str]) -> list[str]:
    """Throughput, latency and CPU per message of the network section."""
    titles = section.benches
    cpu_ratio_head = f"{OURS} / {BASE}"
    lines = [*settings(results, benches)]
    lines += ["", "### Throughput (messages/s; HTTP: requests/s)", ""]
    lines += throughput_table(results, benches, titles)
    lines += ["", "### Latency p50 / p99 (µs)", ""]
    lines += _figure_table(results, benches, titles, _latency)
    lines += [
        "",
        "### Server CPU per message (µs of user + system time, lower is better; % of its CPU busy)",
        "",
        "At 16 connections a server should keep its CPU near 100% busy; much less means other "
        "processes took it (see the load average above) and the throughput is not the server's.",
        "",
    ]
    lines += _figure_table(
        results,
        benches,
        titles,
        _server_cpu,
        extra=lambda r, b: [ratio_text(_cpu_ratio(r, b))],
        extra_head=[cpu_ratio_head],
    )
    lines += ["", "### Load generator CPU (µs per message, % of its CPU busy)", ""]
    lines += _figure_table(results, benches, titles, _loadgen_cpu)
    if any(_busy(results, b, lp) for b in benches for lp in [*results.loops, CEILING]):
        lines += [
            "",
            f"{MARK} load generator at least {BUSY_PCT:.0f}% busy: on two CPUs it then caps the "
            "point's throughput as much as the server does (on loopback each side also pays the "
            "kernel's receive path of the other), so compare servers there by CPU per message.",
        ]
    return lines


def render_syscalls(section: Section, results: Results, benches: Sequence[str]) -> list[str]:
    """System calls per echoed message, per loop, with the calls that make them up."""
    lines = [
        "The server's system calls (all its threads) under `strace -f -c`: a run that echoes N "
        "messages minus a run that echoes none (start-up, accept, close), over N. The load "
        "generator is not traced.",
        "",
    ]
    head = ["point", "loop", "syscalls/msg", f"/ {BASE}", "calls per message"]
    rows = []
    for bench in benches:
        for loop in [*results.loops, CEILING]:
            value = results.median(bench, loop)
            if value is None and loop not in results.errors.get(bench, {}):
                continue
            base = results.median(bench, BASE)
            details = results.details.get(bench, {}).get(loop, [])
            calls = details[-1]["by_syscall"] if details else {}
            breakdown = ", ".join(f"{name} {n:.2f}" for name, n in calls.items()) or "error"
            ratio = value / base if value is not None and base else None
            name = "Rust ceiling" if loop == CEILING else loop
            count = f"{value:.2f}" if value is not None else "error"
            msgs = f" (N = {details[-1]['messages']:,})" if details else ""
            rows.append([section.benches[bench] + msgs, name, count, ratio_text(ratio), breakdown])
    return lines + table(head, rows)
