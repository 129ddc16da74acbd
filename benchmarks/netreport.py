"""Markdown for the network sections: throughput, latency, server and load-generator CPU per
message, system calls per echo, the Rust ceiling, and the issue's network targets.

The harness calls ``render_net`` and ``render_syscalls`` through ``Section.render``; both read
the per-measurement figures that net.py prints (``Results.detail``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from model import Results, Section
from net import CEILING, POINTS, ceiling_point
from report import TARGET_BASE, TARGET_LOOP, cell, ratio_columns, ratio_text, table

BUSY_PCT = 90.0  # a load generator this busy caps the point's throughput as much as the server
MARK = "†"

# (bench, minimum ferroloop / uvloop msg/s) at the points the issue names
THROUGHPUT_TARGETS = [("proto_1k_c16", 1.05), ("streams_1k_c16", 1.05), ("unix_1k_c16", 1.05)]
# The issue names no point for these: each is shown at 1 KiB x 16, the headline point, and as
# the worst over every point of that server, which is what "at any point" would ask.
SOCK_TARGET = 1.8  # sock_* echo msg/s, ferroloop / uvloop, at least
FLOOR = 1.0  # every point: never below uvloop
CPU_TARGET = 0.9  # server CPU per message, ferroloop / uvloop, at most
CPU_SERVERS = {"proto": "Protocol echo", "streams": "streams echo", "http": "HTTP"}
HEADLINE = "1k_c16"
SYSCALL_BENCH = "syscalls_proto_1k_c1"


def _us(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def _busy(results: Results, bench: str, loop: str) -> bool:
    pct = results.detail(bench, loop, "loadgen_cpu_pct")
    return pct is not None and pct >= BUSY_PCT


def _cpu_ratio(results: Results, bench: str) -> float | None:
    mine = results.detail(bench, TARGET_LOOP, "server_cpu_us_per_msg")
    base = results.detail(bench, TARGET_BASE, "server_cpu_us_per_msg")
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
    """Throughput, latency, CPU per message and the targets of the network section."""
    titles = section.benches
    cpu_ratio_head = f"{TARGET_LOOP} / {TARGET_BASE}"
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
    targets = targets_table(results, titles, benches)
    if targets:
        lines += ["", "### Network targets (ferroloop vs uvloop, from the issue)", "", *targets]
    return lines


def _worst(
    results: Results, benches: Sequence[str], value: Callable[[str], float | None], low: bool
) -> tuple[float | None, str | None, int]:
    """The worst measured value over ``benches`` (the lowest if ``low``), where, and how many."""
    measured = [(v, b) for b in benches if (v := value(b)) is not None]
    if not measured:
        return None, None, 0
    v, b = min(measured) if low else max(measured)
    return v, b, len(measured)


def _status(value: float | None, ok: bool) -> str:
    return "n/a" if value is None else ("met" if ok else "NOT met")


def targets_table(results: Results, titles: dict[str, str], benches: Sequence[str]) -> list[str]:
    """Each target that concerns a point in ``benches``: what it asks, where, what was measured
    (the worst point where it covers several), met or not. The system-call target reads the
    syscalls section's results, when that section ran."""
    rows = []

    def ratio(bench: str) -> float | None:
        return results.ratio(bench, TARGET_LOOP, TARGET_BASE)

    def cpu(bench: str) -> float | None:
        return _cpu_ratio(results, bench)

    seen = set()

    def add(target: str, where: str, points: list[str], value, at_least: bool, limit: float):
        points = [b for b in points if b in benches]
        if not points or (target, *points) in seen:
            return  # nothing measured, or the same points as the row above
        seen.add((target, *points))
        v, b, n = _worst(results, points, value, low=at_least)
        if len(points) > 1:
            where = f"{where}: worst of {len(points)} points"
        shown = ratio_text(v) + (f" ({titles[b]})" if b and len(points) > 1 else "")
        shown += f", {len(points) - n} not measured" if v is not None and n < len(points) else ""
        ok = v is not None and (v >= limit if at_least else v <= limit)
        rows.append([target, where, shown, _status(v, ok)])

    for bench, limit in THROUGHPUT_TARGETS:
        add(f"msg/s >= {limit:.2f}x", titles[bench], [bench], ratio, True, limit)
    sock = [b for b in titles if b.startswith("sock_")]
    target = f"msg/s >= {SOCK_TARGET:.2f}x"
    add(target, titles[f"sock_{HEADLINE}"], [f"sock_{HEADLINE}"], ratio, True, SOCK_TARGET)
    add(target, "sock_* echo", sock, ratio, True, SOCK_TARGET)
    add(f"msg/s >= {FLOOR:.2f}x (never below)", "every point", list(titles), ratio, True, FLOOR)
    target = f"server CPU/msg <= {CPU_TARGET:.2f}x"
    for prefix, name in CPU_SERVERS.items():
        points = [b for b in titles if b.startswith(prefix + "_")]
        headline = f"{prefix}_{HEADLINE}"
        if headline in titles:
            add(target, titles[headline], [headline], cpu, False, CPU_TARGET)
        add(target, name, points, cpu, False, CPU_TARGET)
    if SYSCALL_BENCH in results.samples or SYSCALL_BENCH in results.errors:
        rows.append(_syscall_row(results))
    return table(["target", "where", "measured", "status"], rows) if rows else []


def _syscall_row(results: Results) -> list[str]:
    mine, base = (results.median(SYSCALL_BENCH, lp) for lp in (TARGET_LOOP, TARGET_BASE))
    where = "Protocol echo 1 KiB x 1"
    if mine is None or base is None:
        return ["syscalls/msg <= uvloop's", where, "n/a", "n/a"]
    # strace counts are whole numbers over many messages: ignore a last-digit difference
    ok = mine <= base + 0.005
    return ["syscalls/msg <= uvloop's", where, f"{mine:.2f} vs {base:.2f}", _status(mine, ok)]


def render_syscalls(section: Section, results: Results, benches: Sequence[str]) -> list[str]:
    """System calls per echoed message, per loop, with the calls that make them up."""
    lines = [
        "The server's system calls (all its threads) under `strace -f -c`: a run that echoes N "
        "messages minus a run that echoes none (start-up, accept, close), over N. The load "
        "generator is not traced.",
        "",
    ]
    head = ["point", "loop", "syscalls/msg", f"/ {TARGET_BASE}", "calls per message"]
    rows = []
    for bench in benches:
        for loop in [*results.loops, CEILING]:
            value = results.median(bench, loop)
            if value is None and loop not in results.errors.get(bench, {}):
                continue
            base = results.median(bench, TARGET_BASE)
            details = results.details.get(bench, {}).get(loop, [])
            calls = details[-1]["by_syscall"] if details else {}
            breakdown = ", ".join(f"{name} {n:.2f}" for name, n in calls.items()) or "error"
            ratio = value / base if value is not None and base else None
            name = "Rust ceiling" if loop == CEILING else loop
            count = f"{value:.2f}" if value is not None else "error"
            msgs = f" (N = {details[-1]['messages']:,})" if details else ""
            rows.append([section.benches[bench] + msgs, name, count, ratio_text(ratio), breakdown])
    return lines + table(head, rows)
