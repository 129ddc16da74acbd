"""Compare the asyncio and ferroloop runs against expected_failures.txt, and print the report.

The verdict's ``unexpected`` list decides the exit status: ferroloop failures that are
neither listed nor failing on asyncio too. When only asyncio ran (``--loop asyncio``), its
own failures are the unexpected ones: the baseline must be clean to be worth comparing with.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from _expected import Entry, lookup
from _jobs import FAILED, PASSED, ModuleRun, exception_line


@dataclass
class Failure:
    id: str
    outcome: str
    detail: str
    note: str = ""

    @property
    def summary(self) -> str:
        lines = [ln.strip() for ln in self.detail.splitlines() if ln.strip()]
        if not lines:
            return ""
        if self.outcome in ("hung", "crash") or "<" in self.id:  # these say it first
            return lines[0]
        return exception_line(self.detail) or lines[-1]  # the first error is the cause


@dataclass
class Verdict:
    unexpected: list[Failure] = field(default_factory=list)
    tolerated: list[Failure] = field(default_factory=list)  # fail on asyncio too
    listed: list[Failure] = field(default_factory=list)
    baseline: list[Failure] = field(default_factory=list)  # asyncio failures
    flaky: list[Failure] = field(default_factory=list)
    stale: list[Entry] = field(default_factory=list)
    unmatched: list[Entry] = field(default_factory=list)
    extra_warnings: dict[str, list[str]] = field(default_factory=dict)  # module -> lines
    compared: bool = True  # False when ferroloop did not run

    def as_json(self) -> dict:
        out: dict = {"compared": self.compared}
        for name, items in vars(self).items():
            if isinstance(items, list):
                out[name] = [vars(i) for i in items]
        out["extra_warnings"] = self.extra_warnings
        return out


def _failures(run: ModuleRun) -> list[Failure]:
    return [Failure(t, run.tests[t]["outcome"], run.tests[t]["detail"]) for t in run.failed_ids()]


def compare(runs: list[ModuleRun], entries: list[Entry]) -> Verdict:
    v = Verdict()
    by_mode = {
        mode: {r.module: r for r in runs if r.mode == mode} for mode in ("asyncio", "ferroloop")
    }
    for run in runs:
        for tid, t in sorted(run.tests.items()):
            if t.get("flaky"):
                v.flaky.append(Failure(tid, run.mode, t.get("first_detail", ""), "passed on rerun"))
    for run in by_mode["asyncio"].values():
        v.baseline += _failures(run)
    if not by_mode["ferroloop"]:
        v.unexpected, v.compared = list(v.baseline), False
        return v
    for module, run in by_mode["ferroloop"].items():
        base = by_mode["asyncio"].get(module)
        base_failed = set(base.failed_ids()) if base else set()
        for f in _failures(run):
            entry = None if "<" in f.id else lookup(entries, f.id)  # pseudo ids: never listed
            if entry is not None:
                f.note = entry.reason
                v.listed.append(f)
            elif f.id in base_failed:
                f.note = "fails on asyncio too"
                v.tolerated.append(f)
            else:
                v.unexpected.append(f)
    _check_entries(v, entries, by_mode["ferroloop"])
    for module, run in by_mode["ferroloop"].items():
        base = by_mode["asyncio"].get(module)
        if base is not None:
            extra = Counter(run.warnings) - Counter(base.warnings)
            if extra:
                v.extra_warnings[module] = sorted(extra.elements())
    return v


def _check_entries(v: Verdict, entries: list[Entry], ran: dict[str, ModuleRun]) -> None:
    for entry in entries:
        run = ran.get(entry.module)
        if run is None or run.status == "absent":
            continue
        matched = [t for tid, t in run.tests.items() if entry.matches(tid)]
        if not matched:
            v.unmatched.append(entry)
        elif all(t["outcome"] in PASSED for t in matched):
            v.stale.append(entry)


def progress_line(run: ModuleRun) -> str:
    if run.status == "absent":
        return f"{run.module} {run.mode}: not in this Python"
    p, f, s = _pfs(run)
    extra = f", {run.restarts} restart(s)" if run.restarts else ""
    return (
        f"{run.module} {run.mode}: {p} passed, {f} failed, {s} skipped ({run.wall_s:.1f} s{extra})"
    )


def _pfs(run: ModuleRun) -> tuple[int, int, int]:
    return run.count(PASSED), run.count(FAILED), run.count({"skip"})


def _cell(run: ModuleRun | None) -> str:
    if run is None:
        return "-"
    if run.status == "absent":
        return "absent"
    p, f, s = _pfs(run)
    return f"{p}/{f}/{s}" + ("" if run.status == "ok" else f" {run.status.upper()}")


def print_table(runs: list[ModuleRun]) -> None:
    modules = list(dict.fromkeys(r.module for r in runs))
    get = {(r.module, r.mode): r for r in runs}
    head = ("module", "asyncio p/f/s", "ferroloop p/f/s", "on loop", "time a/f (s)")
    rows = [head]
    totals = {"asyncio": [0, 0, 0], "ferroloop": [0, 0, 0]}
    on_loop_total = 0
    for m in modules:
        a, f = get.get((m, "asyncio")), get.get((m, "ferroloop"))
        on_loop = "-"
        if f is not None and f.status != "absent":
            n = sum(1 for t in f.tests.values() if t.get("loops"))
            on_loop, on_loop_total = str(n), on_loop_total + n
        times = "/".join(f"{r.wall_s:.1f}" if r and r.status != "absent" else "-" for r in (a, f))
        rows.append((m, _cell(a), _cell(f), on_loop, times))
        for mode, r in (("asyncio", a), ("ferroloop", f)):
            if r is not None:
                totals[mode] = [x + y for x, y in zip(totals[mode], _pfs(r), strict=True)]
    tot = ["/".join(map(str, totals[m])) for m in ("asyncio", "ferroloop")]
    rows.append(("total", tot[0], tot[1], str(on_loop_total), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for i, row in enumerate(rows):
        print(
            " | ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i in (0, len(rows) - 2):
            print("-+-".join("-" * w for w in widths))
    print(
        "(p/f/s: passed/failed/skipped; failed counts errors, hangs and crashes; "
        "on loop: ferroloop-run tests that created a loop under test)"
    )


def _print_list(title: str, items: list[Failure], verbose: bool) -> None:
    if not items:
        return
    print(f"\n{title} ({len(items)}):")
    for f in items:
        note = f"  # {f.note}" if f.note else ""
        print(f"  {f.id} [{f.outcome}] {f.summary}{note}")
        if verbose and f.detail:
            print("    " + f.detail.replace("\n", "\n    "))
    if len(items) > 10:
        print("  most common causes:")
        for summary, n in Counter(f.summary for f in items).most_common(5):
            print(f"  {n:6} x {summary}")


def print_report(runs: list[ModuleRun], v: Verdict, wall: float, args) -> None:
    print()
    print_table(runs)
    if v.compared:
        _print_list("asyncio (baseline) failures", v.baseline, args.verbose)
    _print_list(
        "ferroloop failures, also failing on asyncio (tolerated)", v.tolerated, args.verbose
    )
    _print_list("ferroloop failures listed in expected_failures.txt", v.listed, args.verbose)
    _print_list(
        "WARNING: flaky, failed then passed when rerun by themselves", v.flaky, args.verbose
    )
    for title, entries in (
        ("WARNING: stale expected-failure entries (the tests pass now)", v.stale),
        ("WARNING: expected-failure entries matching no test that ran", v.unmatched),
    ):
        if entries:
            print(f"\n{title} ({len(entries)}):")
            for e in entries:
                print(f"  line {e.lineno}: {e.pattern}  # {e.reason}")
    if v.extra_warnings:
        print("\nWARNING: log lines printed on ferroloop but not on asyncio:")
        for module, lines in v.extra_warnings.items():
            shown = lines if args.verbose else lines[:5]
            print(f"  {module} ({len(lines)}):")
            for line in shown:
                print(f"    {line}")
            if len(shown) < len(lines):
                print(f"    ... {len(lines) - len(shown)} more (--verbose)")
    if v.compared:
        title = "UNEXPECTED ferroloop failures (not listed, pass on asyncio)"
    else:
        title = "asyncio failures (the baseline must be clean)"
    _print_list(title, v.unexpected, args.verbose)
    print(f"\nwall time: {wall:.1f} s with -j {args.jobs}")
    print("result:", "FAIL" if v.unexpected else "OK")
