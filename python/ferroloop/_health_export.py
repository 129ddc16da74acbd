"""Loop health for metrics systems: Prometheus text, OpenTelemetry instruments.

``prometheus(loop=None)`` renders every open loop (or one) in Prometheus' text
exposition format 0.0.4: metric names start with ``ferroloop_``, each loop's
samples carry ``loop="0x..."`` (its ``id``), timer lag and ready-queue wait are
histograms (``le`` buckets exact at the histogram's own bucket edges, else
short by the one bucket the edge falls in; ``_sum`` an estimate within 3.2 %).

``register_opentelemetry(meter=None)`` creates observable instruments on
``meter`` (default: ``opentelemetry.metrics.get_meter("ferroloop")``) that read
every open loop at each collection. ``opentelemetry-api`` is needed only then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from . import health as _health

BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# (name, type, help, field of the snapshot)
_SCALARS = (
    ("idle_seconds_total", "counter", "Seconds the loop spent waiting in its poll.", "idle"),
    ("active_seconds_total", "counter", "Seconds the loop spent running, not polling.", "active"),
    ("utilization", "gauge", "active / (idle + active) since the loop was made.", "utilization"),
    ("iterations_total", "counter", "Loop iterations.", "iterations"),
    (
        "callbacks_total",
        "counter",
        "Callbacks run (handles, timers, task steps, I/O).",
        "callbacks",
    ),
    ("io_events_total", "counter", "I/O readiness events the poll reported.", "io_events"),
    ("ready_depth", "gauge", "Callbacks waiting in the ready queue.", "ready_depth"),
    ("fds_watched", "gauge", "File descriptors registered with the poller.", "fds_watched"),
    ("timers_pending", "gauge", "Timers scheduled and not yet due.", "timers_pending"),
    (
        "timer_overdue_seconds",
        "gauge",
        "How far past its deadline the most overdue timer not yet run is, now.",
        "timer_overdue",
    ),
)
_HISTOGRAMS = (
    ("timer_lag_seconds", "How late timers ran past their deadline.", 0),
    ("ready_wait_seconds", "How long ready callbacks waited for their turn.", 1),
)


def _loop_label(loop: Any) -> str:
    return f'loop="{id(loop):#x}"'


def _num(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value)).replace("inf", "Inf")


def _targets(loop: Any) -> list[Any]:
    if loop is None:
        return _health.loops()
    if getattr(loop, "_health_stats", None) is None:
        raise TypeError(f"prometheus() needs a ferroloop loop or None, not {type(loop).__name__}")
    return [loop]


def prometheus(loop: Any = None) -> str:
    """Text exposition of every open loop's health (or only ``loop``'s)."""
    snaps = [(_loop_label(lp), lp.is_running(), _health.health(lp)) for lp in _targets(loop)]
    out: list[str] = []
    out.append("# HELP ferroloop_running Whether the loop is running (1) or stopped (0).")
    out.append("# TYPE ferroloop_running gauge")
    out.extend(f"ferroloop_running{{{label}}} {int(running)}" for label, running, _ in snaps)
    for name, kind, text, attr in _SCALARS:
        out.append(f"# HELP ferroloop_{name} {text}")
        out.append(f"# TYPE ferroloop_{name} {kind}")
        out.extend(f"ferroloop_{name}{{{label}}} {_num(getattr(s, attr))}" for label, _, s in snaps)
    for name, text, index in _HISTOGRAMS:
        out.append(f"# HELP ferroloop_{name} {text}")
        out.append(f"# TYPE ferroloop_{name} histogram")
        for label, _, snap in snaps:
            lag = snap._raw[index]
            for bound, count in zip(BUCKETS, lag.buckets(list(BUCKETS)), strict=True):
                out.append(f'ferroloop_{name}_bucket{{{label},le="{bound}"}} {count}')
            out.append(f'ferroloop_{name}_bucket{{{label},le="+Inf"}} {lag.count}')
            out.append(f"ferroloop_{name}_sum{{{label}}} {_num(lag.sum)}")
            out.append(f"ferroloop_{name}_count{{{label}}} {lag.count}")
    counts = _health.block_counts()
    out.append("# HELP ferroloop_blocks_total Block reports of the process, by kind.")
    out.append("# TYPE ferroloop_blocks_total counter")
    out.extend(
        f'ferroloop_blocks_total{{kind="{k}"}} {counts.get(k, 0)}' for k in ("blocked", "recovered")
    )
    return "\n".join(out) + "\n"


# ---- OpenTelemetry ------------------------------------------------------------------


def _observe(fn: Callable[[_health.HealthSnapshot], float]) -> Callable[[Any], Iterable[Any]]:
    from opentelemetry.metrics import Observation

    def callback(_options: Any) -> Iterable[Any]:
        out = []
        for loop in _health.loops():
            try:
                value = fn(_health.health(loop))
            except Exception:  # noqa: BLE001 - a loop closing meanwhile is left out
                continue
            out.append(Observation(value, {"loop": f"{id(loop):#x}"}))
        return out

    return callback


def register_opentelemetry(meter: Any = None) -> list[Any]:
    """Observable instruments for every open loop; returns them (keep them referenced)."""
    try:
        from opentelemetry import metrics
    except ImportError:
        raise ImportError(
            "register_opentelemetry() needs the opentelemetry-api package"
            " (pip install opentelemetry-api)"
        ) from None
    if meter is None:
        meter = metrics.get_meter("ferroloop")
    elif not all(
        callable(getattr(meter, m, None))
        for m in ("create_observable_counter", "create_observable_gauge")
    ):
        raise TypeError(f"register_opentelemetry() needs an OpenTelemetry Meter, not {meter!r}")
    made = []
    counters = (
        ("ferroloop.loop.callbacks", "{callback}", "Callbacks run.", lambda s: s.callbacks),
        ("ferroloop.loop.iterations", "{iteration}", "Loop iterations.", lambda s: s.iterations),
        ("ferroloop.loop.io_events", "{event}", "I/O readiness events.", lambda s: s.io_events),
        ("ferroloop.loop.active_time", "s", "Seconds running, not polling.", lambda s: s.active),
        ("ferroloop.loop.idle_time", "s", "Seconds waiting in the poll.", lambda s: s.idle),
    )
    for name, unit, text, fn in counters:
        made.append(
            meter.create_observable_counter(
                name, callbacks=[_observe(fn)], unit=unit, description=text
            )
        )
    gauges = (
        (
            "ferroloop.loop.utilization",
            "1",
            "active / (idle + active) since the loop was made.",
            lambda s: s.utilization,
        ),
        (
            "ferroloop.loop.timer_lag.p99",
            "s",
            "99th percentile of timer lateness.",
            lambda s: s.timer_lag.p99,
        ),
        ("ferroloop.loop.timer_lag.max", "s", "Largest timer lateness.", lambda s: s.timer_lag.max),
        (
            "ferroloop.loop.ready_wait.p99",
            "s",
            "99th percentile of ready-queue wait.",
            lambda s: s.ready_wait.p99,
        ),
        (
            "ferroloop.loop.ready_depth",
            "{callback}",
            "Callbacks in the ready queue.",
            lambda s: s.ready_depth,
        ),
        (
            "ferroloop.loop.timers_pending",
            "{timer}",
            "Timers scheduled.",
            lambda s: s.timers_pending,
        ),
        (
            "ferroloop.loop.timer_overdue",
            "s",
            "How far past its deadline the most overdue timer not yet run is.",
            lambda s: s.timer_overdue,
        ),
        (
            "ferroloop.loop.fds_watched",
            "{fd}",
            "Descriptors registered with the poller.",
            lambda s: s.fds_watched,
        ),
    )
    for name, unit, text, fn in gauges:
        made.append(
            meter.create_observable_gauge(
                name, callbacks=[_observe(fn)], unit=unit, description=text
            )
        )
    return made
