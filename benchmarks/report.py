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
    """(loop, base) pairs worth a column: every loop vs asyncio, newer loops vs uvloop too, and
    ferroloop vs any other newer loop (rloop)."""
    pairs = [(lp, "asyncio") for lp in loops if lp != "asyncio" and "asyncio" in loops]
    newer = [lp for lp in loops if lp not in ("asyncio", "uvloop")]
    pairs += [(lp, "uvloop") for lp in newer if "uvloop" in loops]
    if OURS in loops:
        pairs += [(OURS, lp) for lp in newer if lp != OURS]
    return pairs


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
    head = ["benchmark", *(f"{lp} ops/s" for lp in results.loops)]
    head += [f"{lp} / {base}" for lp, base in pairs]
    rows = []
    for bench in benches:
        row = [section.benches[bench], *(cell(results, bench, lp) for lp in results.loops)]
        row += [ratio_text(results.ratio(bench, lp, base)) for lp, base in pairs]
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
