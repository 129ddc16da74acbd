"""The demo (`make demo`): ferroloop beside asyncio and uvloop, as a table and a PNG chart.

Runs every section of harness.SECTIONS at its small demo size with few repetitions, network
servers included (a few points: Protocol and streams echo, HTTP), in under three minutes on two
cores; prints the tables and draws benchmarks/results/demo.png: ops/s relative to asyncio, one
group of bars per benchmark, one colour per loop.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path

from harness import RESULTS, SECTIONS, machine, probe_loops, run_section
from loops import DEMO_LOOPS
from model import Results, Section
from report import errors, header, results_table

LOG_ABOVE = 12.0  # switch the chart to a log scale past this ratio
COLOURS = {"asyncio": "#9e9e9e", "uvloop": "#3f7fbf", "ferroloop": "#d4622a"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies each demo size")
    parser.add_argument("--loops", default=",".join(DEMO_LOOPS), help="default: %(default)s")
    parser.add_argument("--out", default=str(RESULTS / "demo.png"), help="chart path")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, results: Results) -> list[Section]:
    """Measure each section; return the sections that produced something."""
    done = []
    for section in SECTIONS:
        benches = list(section.benches if section.demo_benches is None else section.demo_benches)
        if not benches:
            continue
        scale = section.demo_scale * args.scale
        print(f"== {section.title}: {args.reps} reps at scale {scale:g}", flush=True)
        run_section(
            section,
            results,
            benches,
            args.reps,
            scale,
            progress=lambda line: print("  " + line, flush=True),
        )
        done.append(section)
    return done


def settings_line(args: argparse.Namespace) -> str:
    scale = f" x {args.scale:g}" if args.scale != 1 else ""
    return (
        f"Settings: median of {args.reps} repetitions at demo sizes{scale}, "
        "each in a fresh process, loops interleaved"
    )


def show(sections: list[Section], results: Results, info: dict[str, str], settings: str) -> None:
    print()
    print("\n".join(header(info, results, settings)))
    for section in sections:
        benches = [b for b in section.benches if b in results.samples or b in results.errors]
        if section.render is not None:
            print(f"\n{section.title}\n")
            print("\n".join(section.render(section, results, benches)))
            continue
        print(f"\n{section.title} (median ops/s; ratios: higher is faster)\n")
        print("\n".join(results_table(section, results, benches)))
    notes = [f"- {loop} skipped: {why}" for loop, why in results.missing.items()]
    if notes or results.errors:
        print("\nNotes:\n" + "\n".join(notes + errors(results)))


def chart(
    sections: list[Section], results: Results, info: dict[str, str], settings: str, path: Path
) -> None:
    """Grouped bars of ops/s relative to asyncio: one axes per section, one colour per loop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(sections),
        1,
        squeeze=False,
        figsize=(11, 4.6 * len(sections) + 1.2),
        layout="constrained",
    )
    for ax, section in zip(axes[:, 0], sections, strict=True):
        _bars(ax, section, results)
    fig.suptitle(
        "Event loop throughput relative to asyncio (higher is better)\n"
        f"{info['python']} on {info['cpu']}, {info['cores']} cores, {info['memory']}",
        fontsize=13,
    )
    fig.supxlabel(
        f"commit {info['commit']}, {info['date']}. {settings}",
        fontsize=8,
        color="#666",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bars(ax, section: Section, results: Results) -> None:
    benches = [b for b in section.benches if b in results.samples]
    width = 0.8 / max(1, len(results.loops))
    top = 0.0
    for i, loop in enumerate(results.loops):
        ratios = [results.ratio(b, loop, "asyncio") or 0.0 for b in benches]
        top = max(top, *ratios)
        xs = [j + (i - (len(results.loops) - 1) / 2) * width for j in range(len(benches))]
        label = f"{loop} {results.versions.get(loop, '')}".strip()
        bars = ax.bar(xs, ratios, width, label=label, color=COLOURS.get(loop))
        labels = [f"{r:.1f}x" if r else "" for r in ratios]
        ax.bar_label(bars, labels=labels, fontsize=8, padding=2)
    _y_axis(ax, top)
    ax.axhline(1.0, color="#555", linewidth=0.8, linestyle="--")
    ticks = [textwrap.fill(section.benches[b], 20, break_long_words=False) for b in benches]
    ax.set_xticks(range(len(benches)), ticks, fontsize=9)
    ax.set_title(section.title, fontsize=11)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize=9, loc="upper left")


def _y_axis(ax, top: float) -> None:
    """Linear while the bars fit; log2 once one loop is over LOG_ABOVE x asyncio."""
    if top <= LOG_ABOVE:
        ax.set_ylim(0, top * 1.15)
        ax.set_ylabel("ops/s relative to asyncio")
        return
    ax.set_yscale("log", base=2)
    ax.set_ylim(0.5, top * 1.6)
    ax.yaxis.set_major_formatter(lambda value, _pos: f"{value:g}x")
    ax.set_ylabel("ops/s relative to asyncio (log scale)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    results = probe_loops([name.strip() for name in args.loops.split(",") if name.strip()])
    if "asyncio" not in results.loops:
        print("the demo compares against asyncio: include it in --loops", file=sys.stderr)
        return 2
    for loop, why in results.missing.items():
        print(f"note: {loop} skipped: {why}")
    sections = run(args, results)
    info = machine()
    settings = settings_line(args)
    show(sections, results, info, settings)
    path = Path(args.out).resolve()
    chart(sections, results, info, settings, path)
    print(f"\nChart: {os.path.relpath(path)}  (took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
