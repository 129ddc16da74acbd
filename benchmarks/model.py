"""What the harness measures into and the reports read: ``Section`` and ``Results``.

The harness (which runs the sections) and the report modules (which render them) both import
this module, and it imports neither, so the dependencies go one way:
run.py / demo.py -> harness -> netreport -> report -> model.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    benches: dict[str, str]  # name -> title, in report order
    # (bench, loop, scale) -> argv of one measurement, or None where the loop does not apply
    command: Callable[[str, str, float], list[str] | None]
    demo_scale: float = 1.0  # workload size for `make demo`, which must stay under 3 minutes
    demo_benches: tuple[str, ...] | None = None  # the subset `make demo` runs; None: all
    metric: str = "ops_per_s"  # the key of the measurement's JSON that samples hold
    reps: int | None = None  # default repetitions, where the runner's default is too many
    extra_loops: tuple[str, ...] = ()  # reference loops measured beside the probed ones
    prepare: Callable[[], str | None] | None = None  # run once first; returns an error or None
    # (section, results, benches) -> markdown lines, in place of the generic table
    render: Callable[[Section, Results, Sequence[str]], list[str]] | None = None


@dataclass
class Results:
    """ops/s samples per (bench, loop); errors per (bench, loop); loop versions and failures."""

    loops: list[str]
    versions: dict[str, str]
    missing: dict[str, str] = field(default_factory=dict)  # loop -> why it was skipped
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    # every figure of every measurement, per (bench, loop), for sections that report more
    details: dict[str, dict[str, list[dict]]] = field(default_factory=dict)

    def median(self, bench: str, loop: str) -> float | None:
        values = self.samples.get(bench, {}).get(loop)
        return statistics.median(values) if values else None

    def detail(self, bench: str, loop: str, key: str) -> float | None:
        """The median of figure ``key`` over the measurements of (bench, loop)."""
        values = [d[key] for d in self.details.get(bench, {}).get(loop, []) if key in d]
        return statistics.median(values) if values else None

    def spread(self, bench: str, loop: str) -> float | None:
        """Half the max-min range of the samples, relative to their median."""
        values = self.samples.get(bench, {}).get(loop)
        if not values or len(values) < 2:
            return None
        return (max(values) - min(values)) / 2 / statistics.median(values)

    def ratio(self, bench: str, loop: str, base: str) -> float | None:
        num, den = self.median(bench, loop), self.median(bench, base)
        return num / den if num and den else None

    def to_json(self) -> dict:
        medians = {
            b: {lp: self.median(b, lp) for lp in per_loop} for b, per_loop in self.samples.items()
        }
        return {**self.__dict__, "medians": medians}
