"""Instructions per operation of the micro benchmarks, counted by callgrind, for each loop.

A wall-clock figure on a shared two-core machine swings by tens of percent; an instruction
count does not: valgrind counts the same total for the same binary and input whatever else
runs. Each (benchmark, loop) runs twice under ``valgrind --tool=callgrind``, at two sizes; the
difference, divided by the difference in operations, is what one operation costs with start-up
and imports taken out. It is split by where the instructions ran: the loop's own extension (or
its Python code, which runs in the interpreter), the interpreter, and the C library.

Instructions are not time (a cache miss costs more than an add), so this complements the
timed runs; it is the figure to use when comparing two builds or two loops on a busy machine.

    python benchmarks/instructions.py --loops asyncio,uvloop,ferroloop call_soon gather
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from micro import BENCHMARKS  # noqa: E402

# Sizes small enough for callgrind (about 50x slower than native), far enough apart for the
# difference to dwarf start-up noise.
SCALES = (0.02, 0.06)
DEFAULT = ("call_soon", "call_later", "gather", "ping_pong", "sleep0")

# Run one benchmark without its warm-up and print how many operations it did (the size its
# workload asked for: the first `_size` call of every benchmark is its operation count).
RUNNER = """
import sys
sys.path.insert(0, {here!r})
import micro
sizes = []
size = micro._size
def counted(default, scale):
    n = size(default, scale)
    sizes.append(n)
    return n
micro._size = counted
if {loop!r}.startswith("ferroloop"):
    # Under valgrind every callback runs ~50x longer than the block threshold, and the
    # watchdog's stack samples would be counted as the loop's work: sampling off, recording on.
    import ferroloop.health
    ferroloop.health.set_block_threshold(0)
micro.BENCHMARKS[{bench!r}][0](micro.factory({loop!r}), {scale!r})
print("OPS", sizes[0])
"""

_LINE = re.compile(r"^\s*([\d,]+)\s+\([^)]*\)\s+(.*)$")


def _by_object(out: Path) -> dict[str, int]:
    """Instructions per shared object of a callgrind output file."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    totals: dict[str, int] = {}
    started = False
    for line in text.splitlines():
        if "file:function" in line:
            started = True
            continue
        m = _LINE.match(line) if started else None
        if not m or not m.group(2).endswith("]"):
            continue
        obj = m.group(2).rsplit("[", 1)[1].rstrip("]")
        totals[obj] = totals.get(obj, 0) + int(m.group(1).replace(",", ""))
    return totals


def _count(bench: str, loop: str, scale: float) -> tuple[int, dict[str, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        code = RUNNER.format(here=str(HERE), bench=bench, loop=loop, scale=scale)
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        proc = subprocess.run(
            [*valgrind, sys.executable, "-c", code],
            capture_output=True,
            text=True,
        )
        ops = re.search(r"^OPS (\d+)$", proc.stdout, re.M)
        if proc.returncode or not ops:
            raise RuntimeError(f"{bench} on {loop}: {proc.stderr.strip().splitlines()[-1:]}")
        return int(ops.group(1)), _by_object(out)


def _kind(obj: str, loop: str) -> str:
    name = os.path.basename(obj)
    if name.startswith(("python", "libpython")):
        return "interpreter"
    if name.startswith(("libc.", "libm.", "ld-linux")):
        return "libc"
    first = loop.split("+")[0]
    if first in obj or (loop == "asyncio" and "_asyncio" in name):
        return "loop"
    return "other"


def per_op(bench: str, loop: str) -> dict[str, float]:
    """Instructions per operation: total and by kind (loop, interpreter, libc, other)."""
    (n1, a), (n2, b) = (_count(bench, loop, s) for s in SCALES)
    result = {"total": 0.0, "loop": 0.0, "interpreter": 0.0, "libc": 0.0, "other": 0.0}
    for obj in set(a) | set(b):
        d = (b.get(obj, 0) - a.get(obj, 0)) / (n2 - n1)
        result[_kind(obj, loop)] += d
        result["total"] += d
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="*", default=list(DEFAULT), choices=[*BENCHMARKS, []])
    parser.add_argument("--loops", default="asyncio,uvloop,ferroloop")
    args = parser.parse_args(argv)
    loops = args.loops.split(",")
    print(f"Instructions per operation (callgrind; CPython {sys.version.split()[0]})\n")
    print("| benchmark | loop | total | loop's own code | interpreter | libc | other |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for bench in args.benches:
        for loop in loops:
            try:
                r = per_op(bench, loop)
            except RuntimeError as e:
                print(f"| {bench} | {loop} | {e} | | | | |")
                continue
            kinds = ("total", "loop", "interpreter", "libc", "other")
            cells = " | ".join(f"{r[k]:,.0f}" for k in kinds)
            print(f"| {bench} | {loop} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
