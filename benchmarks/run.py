"""Side-by-side benchmarks of asyncio, uvloop and ferroloop (`make bench`).

Every measurement runs in a fresh subprocess; the loops are interleaved and their order rotated
each repetition, so drift in the machine hits every loop alike. Reports medians and ratios in
benchmarks/results/report.md and report.json. A loop that does not import is skipped, with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from harness import RESULTS, SECTIONS, machine, probe_loops, run_section
from loops import LOOPS
from model import Results, Section
from report import errors, header, results_table

REPS = 5
QUICK_REPS, QUICK_SCALE = 3, 0.3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    every = [b for s in SECTIONS for b in s.benches]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reps", type=int, help=f"repetitions (default {REPS}, or fewer where a section says)"
    )
    parser.add_argument("--scale", type=float, help="workload size factor (default 1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_REPS} reps at scale {QUICK_SCALE} unless given",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=every,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(every)}",
    )
    parser.add_argument(
        "--loops", default=",".join(LOOPS), help="comma-separated loops (default: %(default)s)"
    )
    parser.add_argument(
        "--pin",
        type=int,
        nargs="?",
        const=0,
        metavar="CPU",
        help="pin each benchmark process to one CPU (default CPU 0)",
    )
    parser.add_argument("--out", default=str(RESULTS), help="directory for report.md/.json")
    args = parser.parse_args(argv)
    if args.scale is None:
        args.scale = QUICK_SCALE if args.quick else 1.0
    if args.pin is not None and not hasattr(os, "sched_setaffinity"):
        print("note: --pin ignored, os.sched_setaffinity is not available", file=sys.stderr)
        args.pin = None
    return args


def reps_for(args: argparse.Namespace, section: Section) -> int:
    """--reps if given; else the default, capped by the section's own (network points are long)."""
    if args.reps is not None:
        return args.reps
    default = QUICK_REPS if args.quick else REPS
    return min(default, section.reps) if section.reps else default


def settings_line(args: argparse.Namespace, sections: list[Section]) -> str:
    pin = (
        f"pinned to CPU {args.pin} (network: the server; its load on another CPU)"
        if args.pin is not None
        else "micro benchmarks not pinned"
    )
    reps = ", ".join(f"{reps_for(args, s)} for {s.name}" for s in sections)
    return (
        f"Settings: repetitions {reps}; scale {args.scale:g}; {pin}; "
        "each measurement in a fresh process, loop order rotated per repetition"
    )


def measure(args: argparse.Namespace, results: Results) -> None:
    for section in SECTIONS:
        benches = [b for b in section.benches if not args.only or b in args.only]
        if benches and results.loops:
            run_section(
                section,
                results,
                benches,
                reps_for(args, section),
                args.scale,
                args.pin,
                progress=lambda line: print(line, file=sys.stderr, flush=True),
            )


def measured(section: Section, results: Results) -> list[str]:
    return [b for b in section.benches if b in results.samples or b in results.errors]


def render(args: argparse.Namespace, results: Results, info: dict[str, str]) -> str:
    sections = [s for s in SECTIONS if measured(s, results)]
    lines = ["# ferroloop benchmarks", "", *header(info, results, settings_line(args, sections))]
    for section in sections:
        benches = measured(section, results)
        lines += ["", f"## {section.title}", ""]
        if section.render is not None:
            lines += section.render(section, results, benches)
            continue
        lines += results_table(section, results, benches)
    notes = [f"- {loop} skipped: {why}" for loop, why in results.missing.items()]
    notes += errors(results)
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += [
        "",
        "ops/s: median of the repetitions, ± half their range relative to the median. "
        "Ratios are of medians; above 1 means faster.",
        "call_later churn ends when the last live timer fires, so it includes an idle tail "
        "of up to 10 ms (the largest delay).",
    ]
    return "\n".join(lines) + "\n"


def write(args: argparse.Namespace, results: Results, info: dict[str, str], text: str) -> str:
    os.makedirs(args.out, exist_ok=True)
    md, js = os.path.join(args.out, "report.md"), os.path.join(args.out, "report.json")
    with open(md, "w") as f:
        f.write(text)
    with open(js, "w") as f:
        sections = [s for s in SECTIONS if measured(s, results)]
        payload = {"machine": info, "settings": settings_line(args, sections), **results.to_json()}
        json.dump(payload, f, indent=2)
    return md


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    results = probe_loops([name.strip() for name in args.loops.split(",") if name.strip()])
    for loop, why in results.missing.items():
        print(f"note: {loop} skipped: {why}", file=sys.stderr)
    measure(args, results)
    info = machine()
    text = render(args, results, info)
    path = write(args, results, info, text)
    print(text)
    print(f"wrote {path} (+ .json) in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 1 if not results.loops else 0


if __name__ == "__main__":
    sys.exit(main())
