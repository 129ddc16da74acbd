"""Markdown for benchmark results: the header and the side-by-side tables."""

from __future__ import annotations

from collections.abc import Sequence

from model import Results, Section

OURS, BASE = "ferroloop", "uvloop"  # the loop the reports are about, and the one to beat


def header(machine: dict[str, str], results: Results, settings: str) -> list[str]:
    """The opening lines: machine, Python, loop versions, commit, date, settings."""
    lines = [
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']} memory, "
        f"{machine['os']}",
        f"- Python: {machine['python']}",
    ]
    for loop in ("uvloop", "ferroloop"):
        if loop in results.versions:
            lines.append(f"- {loop}: {results.versions[loop]}")
        elif loop in results.missing:
            lines.append(f"- {loop}: skipped, not importable ({results.missing[loop]})")
    lines += [f"- Commit: {machine['commit']}", f"- Date: {machine['date']}"]
    if "load" in machine:
        lines.append(f"- Load average at the end: {machine['load']}")
    lines.append(f"- {settings}")
    return lines


def human(ops: float | None) -> str:
    if ops is None:
        return "n/a"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if ops >= limit:
            return f"{ops / limit:.2f} {suffix}"
    return f"{ops:.0f}"


def ratio_text(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "n/a"


def ratio_columns(loops: Sequence[str]) -> list[tuple[str, str]]:
    """(loop, base) pairs worth a column. With uvloop measured: every other loop vs uvloop (the
    loop users switch from), and ferroloop vs asyncio; else every loop vs asyncio. The best
    peer gets a column of its own (``best_peer``)."""
    base = "uvloop" if "uvloop" in loops else "asyncio"
    pairs = [(lp, base) for lp in loops if lp not in ("asyncio", base)]
    if base == "uvloop" and OURS in loops and "asyncio" in loops:
        pairs.insert(0, (OURS, "asyncio"))
    return pairs


def best_peer(results: Results, bench: str) -> str:
    """ferroloop's ratio to the fastest other loop at ``bench``, naming it: '1.05x (rsloop)'."""
    ours = results.median(bench, OURS)
    peers = [
        (results.median(bench, lp), lp)
        for lp in results.loops
        if lp not in (OURS, "asyncio") and results.median(bench, lp)
    ]
    if not ours or not peers:
        return "n/a"
    ops, name = max(peers)
    return f"{ours / ops:.2f}x ({name})"


def cell(results: Results, bench: str, loop: str) -> str:
    error = results.errors.get(bench, {}).get(loop)
    if error and results.median(bench, loop) is None:
        return "error"
    spread = results.spread(bench, loop)
    text = human(results.median(bench, loop))
    return f"{text} ±{spread:.0%}" if spread is not None else text


def results_table(section: Section, results: Results, benches: Sequence[str]) -> list[str]:
    """Median ops/s per loop (± half the range of the reps), then the ratios of the medians."""
    pairs = ratio_columns(results.loops)
    peers = OURS in results.loops and len(set(results.loops) - {OURS, "asyncio"}) > 1
    head = ["benchmark", *(f"{lp} ops/s" for lp in results.loops)]
    head += [f"{lp} / {base}" for lp, base in pairs]
    head += [f"{OURS} / best peer"] if peers else []
    rows = []
    for bench in benches:
        row = [section.benches[bench], *(cell(results, bench, lp) for lp in results.loops)]
        row += [ratio_text(results.ratio(bench, lp, base)) for lp, base in pairs]
        row += [best_peer(results, bench)] if peers else []
        rows.append(row)
    return table(head, rows)


def errors(results: Results) -> list[str]:
    return [
        f"- {bench} on {loop}: {message}"
        for bench, per_loop in results.errors.items()
        for loop, message in per_loop.items()
    ]


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        padded = (
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1)) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return [line(head), rule, *(line(r) for r in rows)]
