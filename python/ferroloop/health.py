"""Loop health: lag, utilization and counters, and blame for a blocked loop.

``ferroloop.health(loop)`` (or ``loop.health()``) returns a :class:`HealthSnapshot`;
``snap2 - snap1`` is what happened between the two. The loop records always (in
Rust, from clock reads it makes once per iteration); this module only reads.

Blame: one watchdog thread per process (a daemon ``threading.Thread``, started
when a loop first runs, ended when the last watched loop closes) wakes every
threshold/4 and reads each running loop's heartbeat (``Loop._health_probe``: what
the loop is doing, and how many callbacks it has begun). A callback whose number
has not moved for longer than the threshold is blocking the loop: the watchdog
samples the loop thread's stack (``sys._current_frames``) and the running task,
and reports it through the ``ferroloop.health`` logger and ``on_block``'s
callback. It also asks the loop (``Loop._health_arm``) to call
``_callback_ended`` when that callback returns: that call reports the recovery,
and catches a call that held the GIL the whole time (the watchdog could not run
then), naming the handle.

The log gets the first block from each place in full and the repeats from
that place summed up (``_log``); the ``ferroloop`` logger has a ``NullHandler``,
so nothing is shown unless the program configured logging (or set
``FERROLOOP_HEALTH_LOG=1``).

Only weak references to loops are kept. The watchdog takes no lock the loop
thread holds while waiting on anything, so a closing loop, a fork (the child
starts with no watchdog and no watched loops) or interpreter shutdown (the
thread is a daemon) cannot deadlock with it.

Per-task accounting (``track_tasks(True)`` or ``FERROLOOP_TRACK_TASKS=1``):
each loop counts, in Rust, the steps of each task and the time they ran,
holding the tasks weakly; ``top_tasks(loop)`` lists the busiest. The health
socket (``serve``, ``python -m ferroloop top PID``) and the exporters
(``prometheus``, ``register_opentelemetry``) read all of this from other
modules (``_health_server``, ``_health_export``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import os
import sys
import threading
import time
import traceback
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._ferroloop import (
    _health_hooks,
    _health_pause_watchdog,
    _health_period,
    _health_track_tasks,
)

__all__ = (
    "BlockReport",
    "HealthSnapshot",
    "LagStats",
    "TaskRecord",
    "block_counts",
    "get_block_threshold",
    "health",
    "loops",
    "on_block",
    "prometheus",
    "recent_blocks",
    "register_opentelemetry",
    "serve",
    "set_block_threshold",
    "set_hooks",
    "stop_serving",
    "top_tasks",
    "track_tasks",
)

logger = logging.getLogger("ferroloop.health")
# A library's loggers show what the application asks for, and nothing else (the logging
# HOWTO's "Configuring Logging for a Library"): with this handler, logging's last-resort
# handler never writes a report to stderr for a program that configured no logging.
logging.getLogger("ferroloop").addHandler(logging.NullHandler())


class _UnconfiguredStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """``FERROLOOP_HEALTH_LOG=1``: reports on stderr while the root logger has no handler.

    Once the application configures logging, the reports go only where it says.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


if os.environ.get("FERROLOOP_HEALTH_LOG", "0") not in ("", "0"):
    _handler = _UnconfiguredStderr(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
    logging.getLogger("ferroloop").addHandler(_handler)

DEFAULT_BLOCK_THRESHOLD = 0.1

_IN_CALLBACK = 2


# ---- snapshots -------------------------------------------------------------------


@dataclass(frozen=True)
class LagStats:
    """Percentiles of a lag histogram, in seconds (within 6.25 % above the truth)."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def _of(cls, lag: Any) -> LagStats:
        return cls(
            lag.count, lag.percentile(0.5), lag.percentile(0.9), lag.percentile(0.99), lag.max
        )


@dataclass(frozen=True)
class HealthSnapshot:
    """A loop's health at one moment (or, from ``since``/``-``, over a window).

    ``timer_lag``: how late timers ran past their deadline. ``ready_wait``: how
    long ready callbacks waited for their turn (an upper bound per callback: the
    time since the previous batch began; one batch in 16 where the loop only runs
    callbacks, with no poll and no timer). ``idle``/``active``: seconds spent
    waiting in the poll and doing everything else while running;
    ``utilization`` is ``active / (idle + active)`` (Node's
    ``eventLoopUtilization``); a poll or a callback in progress counts up to
    the moment of the snapshot, whichever thread takes it. Counters:
    ``iterations``, ``callbacks``, ``io_events`` are totals; ``ready_depth``,
    ``fds_watched``, ``timers_pending`` and ``timer_overdue`` (how far past its
    deadline the most overdue timer not yet run is, in seconds, 0.0 when none is
    late: a blocked loop's lateness while it is blocked) are current values.
    """

    timer_lag: LagStats
    ready_wait: LagStats
    idle: float
    active: float
    iterations: int
    callbacks: int
    io_events: int
    ready_depth: int
    fds_watched: int
    timers_pending: int
    timer_overdue: float
    recording: bool
    _raw: tuple[Any, Any] = field(repr=False, compare=False)

    @property
    def utilization(self) -> float:
        total = self.idle + self.active
        return self.active / total if total > 0 else 0.0

    def since(self, earlier: HealthSnapshot) -> HealthSnapshot:
        """What happened between ``earlier`` and this snapshot (current values stay)."""
        timer, wait = (now.since(then) for now, then in zip(self._raw, earlier._raw, strict=True))
        return HealthSnapshot(
            LagStats._of(timer),
            LagStats._of(wait),
            self.idle - earlier.idle,
            self.active - earlier.active,
            self.iterations - earlier.iterations,
            self.callbacks - earlier.callbacks,
            self.io_events - earlier.io_events,
            self.ready_depth,
            self.fds_watched,
            self.timers_pending,
            self.timer_overdue,
            self.recording,
            (timer, wait),
        )

    def __sub__(self, earlier: HealthSnapshot) -> HealthSnapshot:
        if not isinstance(earlier, HealthSnapshot):
            return NotImplemented
        return self.since(earlier)


def health(loop: Any) -> HealthSnapshot:
    """The health snapshot of a ferroloop loop (``loop.health()``)."""
    stats = getattr(loop, "_health_stats", None)
    if stats is None:
        raise TypeError(f"health() needs a ferroloop loop, not {type(loop).__name__}")
    timer, wait, *rest = stats()
    return HealthSnapshot(LagStats._of(timer), LagStats._of(wait), *rest, (timer, wait))


# ---- the loops of the process -------------------------------------------------

_loops: weakref.WeakSet[Any] = weakref.WeakSet()


def register(loop: Any) -> None:
    """Called when a ferroloop loop is made: ``loops()`` lists it while it is open.

    With ``FERROLOOP_HEALTH_SOCKET`` set, the first loop opens the health socket.
    """
    _loops.add(loop)
    if os.environ.get("FERROLOOP_HEALTH_SOCKET"):
        from . import _health_server

        _health_server.serve_from_env()


def loops() -> list[Any]:
    """The open ferroloop loops of this process (held weakly), in a stable order (by id)."""
    return sorted((lp for lp in list(_loops) if not lp.is_closed()), key=id)


# ---- per-task accounting ---------------------------------------------------------


@dataclass(frozen=True)
class TaskRecord:
    """One task's steps: how many ran and how long, in seconds, in all and the longest.

    ``name`` is the task's name, ``coro`` its coroutine's qualified name, ``done``
    whether it has finished (a finished task is listed while it is alive).
    """

    name: str
    coro: str
    steps: int
    total: float
    max_step: float
    done: bool


def track_tasks(on: bool | None = None) -> bool:
    """Count each task's steps and their time, in every ferroloop loop; returns the setting.

    ``track_tasks(True)`` turns it on (as ``FERROLOOP_TRACK_TASKS=1`` does at
    import), ``track_tasks(False)`` off (counts so far are kept), no argument
    only reads it. On, each task step costs two clock reads and a table update;
    off, nothing beyond one branch per callback. Tasks are held weakly: a task
    that is gone drops out.
    """
    if on is not None and not isinstance(on, bool):
        raise TypeError(f"track_tasks() takes True, False or None, not {type(on).__name__}")
    return _health_track_tasks(on)


MAX_TOP = 100_000


def _check_count(n: Any, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{what} must be an int, not {type(n).__name__}")
    if not 1 <= n <= MAX_TOP:
        raise ValueError(f"{what} must be between 1 and {MAX_TOP}, not {n!r}")
    return n


def _coro_name(task: Any) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or type(coro).__qualname__


def top_tasks(loop: Any, n: int = 10) -> list[TaskRecord]:
    """The ``n`` tasks of ``loop`` with the most time in their steps, busiest first.

    Only steps run while tracking was on count (``track_tasks``).
    """
    n = _check_count(n, "n")
    rows = getattr(loop, "_health_tasks", None)
    if rows is None:
        raise TypeError(f"top_tasks() needs a ferroloop loop, not {type(loop).__name__}")
    out = []
    for task, steps, total, longest in rows(n):
        try:
            name, coro, done = task.get_name(), _coro_name(task), task.done()
        except Exception:  # noqa: BLE001, S112 - not a task after all (a look-alike method): left out
            continue
        out.append(TaskRecord(name, coro, steps, total, longest, done))
    return out


# ---- blame: settings -------------------------------------------------------------


@dataclass(frozen=True)
class BlockReport:
    """A blocked loop (``kind == "blocked"``) or its recovery (``"recovered"``).

    ``seconds``: how long the callback had run when seen (blocked) or in all
    (recovered), a lower bound by up to a quarter of the threshold. ``stack``:
    the loop thread's formatted Python stack, ``location`` its innermost
    ``file:line`` (both empty when the callback held the GIL throughout and
    could only be seen after it returned: ``sampled`` is then False).
    ``task``/``coroutines``: the running task's name and its ``await`` chain.
    ``handle``: what ran, when known (after it returned).
    """

    kind: str
    loop: Any
    seconds: float
    sampled: bool = False
    location: str = ""
    stack: str = ""
    task: str | None = None
    coroutines: tuple[str, ...] = ()
    handle: str | None = None


def _check_threshold(seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(
            f"block threshold must be a number of seconds, not {type(seconds).__name__}"
        )
    value = float(seconds)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            "block threshold must be a finite number of seconds >= 0 (0 turns it off), "
            f"not {seconds!r}"
        )
    return value


class _Watch:
    """The watchdog's view of one loop."""

    __slots__ = ("active", "blocked", "ref", "seq", "since", "threshold")

    def __init__(self, ref: weakref.ref[Any]) -> None:
        self.ref = ref
        self.active = False  # between watch() and stopped(): the loop runs
        self.threshold: float | None = None  # None: the process default
        self.seq: int | None = None  # the callback being timed
        self.since = 0.0  # when the watchdog first saw it
        self.blocked = False  # a "blocked" report went out for it


_lock = threading.RLock()
_watches: dict[int, _Watch] = {}
_default_threshold = DEFAULT_BLOCK_THRESHOLD
_callback: Callable[[BlockReport], object] | None = None
_thread: threading.Thread | None = None
# Watchdog threads that ended by themselves (no loop ran), until a close() joins them.
_ended: list[threading.Thread] = []
_wake = threading.Event()


def set_block_threshold(seconds: float, loop: Any = None) -> None:
    """How long a callback may run before it is reported (default 0.1 s; 0: off).

    Without ``loop``, for every loop of the process that has no threshold of its own.
    """
    global _default_threshold
    value = _check_threshold(seconds)
    with _lock:
        if loop is None:
            _default_threshold = value
        else:
            _watch_locked(loop).threshold = value
        thresholds = [_default_threshold, *(w.threshold for w in _watches.values() if w.threshold)]
        positive = [t for t in thresholds if t]
    if positive:
        _health_period(min(positive) / 4)
    _wake.set()


def get_block_threshold(loop: Any = None) -> float:
    with _lock:
        w = None if loop is None else _watches.get(id(loop))
        return _default_threshold if w is None or w.threshold is None else w.threshold


def on_block(callback: Callable[[BlockReport], object] | None) -> None:
    """Call ``callback(report)`` for each block and recovery (``None``: stop).

    Called from the watchdog thread (blocked) or the loop's thread (recovered); a
    callback that raises is logged and dropped.
    """
    global _callback
    _callback = callback


# ---- blame: registration ---------------------------------------------------------


# The paths the loop's own thread or a finaliser may take (_forget, unwatch,
# _callback_ended) never wait for _lock unboundedly: at interpreter shutdown the
# daemon watchdog thread is frozen wherever it was, possibly holding it. A dict's
# single operations are atomic under the GIL, which is all _forget and unwatch need.


def _forgetter(key: int) -> Callable[[Any], None]:
    """The weak reference's callback: forgets the watch of a loop that is gone.

    It may run while the interpreter shuts down, after this module's globals were
    cleared: it uses only what it was given (and does nothing once shutdown began).
    """

    def forget(
        _ref: Any,
        key: int = key,
        watches: dict[int, _Watch] = _watches,
        wake: threading.Event = _wake,
        finalizing: Callable[[], bool] = sys.is_finalizing,
    ) -> None:
        if not finalizing():
            watches.pop(key, None)
            wake.set()

    return forget


def _watch_locked(loop: Any) -> _Watch:
    key = id(loop)
    w = _watches.get(key)
    if w is None or w.ref() is not loop:
        w = _watches[key] = _Watch(weakref.ref(loop, _forgetter(key)))
    return w


def watch(loop: Any) -> None:
    """Called when ``loop`` starts running: watch it, starting the watchdog if needed."""
    with _lock:
        _watch_locked(loop).active = True
        _start_locked()
    _wake.set()


def _start_locked() -> None:
    """Starts the watchdog thread unless it runs or a fork is under way (``_lock`` held)."""
    global _thread
    if _thread is None and not _paused:
        _ended[:] = [t for t in _ended if t.is_alive()]
        _thread = threading.Thread(target=_watchdog, name="ferroloop-health", daemon=True)
        _thread.start()


def stopped(loop: Any) -> None:
    """Called when ``loop`` stops running: the watchdog thread ends ``IDLE_GRACE`` seconds
    after no loop runs (the next ``run_forever`` starts it again, and ``close()`` ends it at
    once), so a program between runs keeps no thread of ours for long."""
    w = _watches.get(id(loop))
    if w is not None and w.ref() is loop:
        w.active = False
    _wake.set()


def unwatch(loop: Any) -> None:
    """Called when ``loop`` closes; the watchdog ends with the last loop.

    The counts of its repeated blocks not yet logged are logged now.
    """
    if sys.is_finalizing():
        return
    w = _watches.get(id(loop))
    if w is not None and w.ref() is loop:
        _watches.pop(id(loop), None)
    _wake.set()
    _flush_summaries(id(loop))
    _join_if_idle()


def _join_if_idle() -> None:
    """With no loop running, the watchdog thread (and one that ended by itself but may not
    have left ``threading``'s books yet) is joined: once its loops are closed, a program
    has no thread of ours, as on asyncio. Bounded, since this runs on a loop's thread."""
    global _thread
    if not _lock.acquire(timeout=1.0):  # the watchdog is stuck (shutdown): leave it
        return
    try:
        if any(w.active for w in _watches.values()):
            return
        threads = [t for t in (_thread, *_ended) if t is not None]
        _thread = None
        _ended.clear()
    finally:
        _lock.release()
    _wake.set()
    me = threading.current_thread()
    for t in threads:
        if t is not me:
            t.join(1.0)


def _after_fork_in_child() -> None:
    """The child starts with no watchdog, no watched loop and no report state of the parent."""
    global _lock, _log_lock, _thread, _wake, _paused
    _paused = False
    _health_pause_watchdog(False)
    _lock = threading.RLock()
    _log_lock = threading.Lock()
    _watches.clear()
    _recent.clear()
    _counts.clear()
    _places.clear()
    _folded.clear()
    _ended.clear()
    _thread = None
    _wake = threading.Event()


def _before_fork() -> None:
    """Both watchdog threads end before ``os.fork()``, so that the process forks with one
    thread (CPython 3.12+ warns when it has more: the child may deadlock) ..."""
    global _thread, _paused
    with _lock:
        thread, _thread, _paused = _thread, None, True
    _wake.set()
    if thread is not None and thread is not threading.current_thread():
        thread.join(1.0)
    _health_pause_watchdog(True)


def _after_fork_in_parent() -> None:
    """... and start again in the parent, if a loop runs."""
    global _paused
    _health_pause_watchdog(False)
    with _lock:
        _paused = False
        if any(w.active for w in _watches.values()):
            _start_locked()


_paused = False
os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


# ---- blame: the watchdog ---------------------------------------------------------


# How long the watchdog thread outlives the last running loop (a loop's close() ends it at
# once): a program that calls run_until_complete again and again keeps one thread instead of
# starting one per call. The native watchdog lingers as long.
IDLE_GRACE = 1.0


def _watchdog() -> None:
    global _thread
    me = threading.current_thread()
    idle_since: float | None = None
    while not sys.is_finalizing():
        wake = _wake
        wake.clear()  # before looking: a wake-up from now on ends the wait below
        with _lock:
            if _thread is not me:
                return  # forked, replaced, or joined by a loop's close()
            if any(w.active for w in _watches.values()):
                idle_since = None
            else:
                now = time.monotonic()
                idle_since = now if idle_since is None else idle_since
                if now - idle_since >= IDLE_GRACE:
                    _thread = None
                    _ended.append(me)  # for a loop's close() to join
                    return
            watches = list(_watches.values())
        if idle_since is not None:
            wake.wait(IDLE_GRACE - (time.monotonic() - idle_since))
            continue
        thresholds = [t for t in map(_check, watches) if t > 0]
        pending = bool(_places) and _flush_summaries()
        # No running loop with blame on: sleep until watch() or a setting wakes us (or
        # a window of repeated blocks ends).
        period = min(thresholds) / 4 if thresholds else None
        if pending:
            period = min(period or SUMMARY_WINDOW, SUMMARY_WINDOW / 4)
        wake.wait(period)


def _check(w: _Watch) -> float:
    """One look at a loop; returns its threshold if it is running, else 0."""
    loop = w.ref()
    if loop is None or loop.is_closed():
        return 0.0
    threshold = _default_threshold if w.threshold is None else w.threshold
    phase, seq = loop._health_probe()
    now = time.monotonic()
    report = None
    with _lock:
        running = loop.is_running()
        if threshold == 0 or phase != _IN_CALLBACK or not running:
            w.seq = None
            return threshold if running else 0.0
        if seq != w.seq:
            if w.blocked:  # the loop's own report of the end did not come
                report = BlockReport("recovered", loop, now - w.since)
            # A new callback: time it from now.
            w.seq, w.since, w.blocked = seq, now, False
        elif not w.blocked and now - w.since >= threshold:
            w.blocked = True
            report = _sample(loop, now - w.since)
        if report is not None:
            # Under the lock, so that the loop's "recovered" comes after it.
            _emit(report)
    return threshold


def _sample(loop: Any, seconds: float) -> BlockReport:
    tid = loop._thread_id
    frame = sys._current_frames().get(tid) if tid is not None else None
    stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
    location = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
    task, chain = _task_of(loop)
    return BlockReport("blocked", loop, seconds, frame is not None, location, stack, task, chain)


def _task_of(loop: Any) -> tuple[str | None, tuple[str, ...]]:
    try:
        task = asyncio.current_task(loop)
    except Exception:  # not every loop state allows asking; blame goes on without it
        return None, ()
    if task is None:
        return None, ()
    chain = []
    aw: Any = task.get_coro()
    while aw is not None and len(chain) < 64:
        frame = getattr(aw, "cr_frame", None) or getattr(aw, "gi_frame", None)
        name = getattr(aw, "__qualname__", type(aw).__name__)
        chain.append(f"{name} at {frame.f_code.co_filename}:{frame.f_lineno}" if frame else name)
        aw = getattr(aw, "cr_await", None) or getattr(aw, "gi_yieldfrom", None)
    return task.get_name(), tuple(chain)


def _describe(what: Any) -> str:
    try:
        return repr(what)
    except Exception:
        return object.__repr__(what)


def _callback_ended(loop: Any, what: Any, seq: int, seconds: float) -> None:
    """Callback ``seq``, seen running by the native watchdog, ran at least ``seconds``."""
    lock = _lock
    if not lock.acquire(timeout=1.0):  # the watchdog is stuck (shutdown): no report
        return
    try:
        w = _watches.get(id(loop))
        threshold = _default_threshold if w is None or w.threshold is None else w.threshold
        blocked = w is not None and w.blocked and w.seq == seq
        if blocked:
            assert w is not None
            seconds = max(seconds, time.monotonic() - w.since)
            w.seq, w.blocked = None, False
    finally:
        lock.release()
    if not blocked and (threshold == 0 or seconds < threshold):
        return
    handle = _describe(what)
    if not blocked:
        # It held the GIL throughout: the watchdog could only see it now.
        _emit(BlockReport("blocked", loop, seconds, handle=handle))
    _emit(BlockReport("recovered", loop, seconds, handle=handle))


_recent: collections.deque[BlockReport] = collections.deque(maxlen=32)
_counts: collections.Counter[str] = collections.Counter()


def block_counts() -> dict[str, int]:
    """How many ``blocked`` and ``recovered`` reports this process has made."""
    return dict(_counts)


def recent_blocks() -> list[BlockReport]:
    """The last 32 block and recovery reports of the process, oldest first."""
    return list(_recent)


def _emit(report: BlockReport) -> None:
    global _callback
    if sys.is_finalizing():
        return
    _recent.append(report)
    _counts[report.kind] += 1
    _log(report)
    callback = _callback
    if callback is None:
        return
    try:
        callback(report)
    except Exception:
        logger.exception("the on_block callback %r raised; it is removed", callback)
        if _callback is callback:
            _callback = None


# ---- blame: what reaches the log -------------------------------------------------

# The first block from one place (the innermost file:line of the loop's stack, or the
# callback when no stack could be taken) is logged in full; the next ones from that
# place within SUMMARY_WINDOW seconds are counted, with their recoveries, and logged as
# one line when the window ends (the watchdog looks) or the loop closes. ``on_block``,
# ``recent_blocks`` and ``block_counts`` still get every report.

SUMMARY_WINDOW = 60.0


class _Place:
    """Blocks from one place of one loop, within one window."""

    __slots__ = ("longest", "loop", "more", "since")

    def __init__(self, loop: str, since: float) -> None:
        self.loop = loop  # the loop's repr when the window began (no reference kept)
        self.since = since
        self.more = 0  # blocks counted after the first, not logged one by one
        self.longest = 0.0


_log_lock = threading.Lock()
_places: dict[tuple[int, str], _Place] = {}
# Per loop: the place of the block in progress when it was counted, not logged (its
# recovery is counted too).
_folded: dict[int, tuple[int, str]] = {}


def _log(report: BlockReport) -> None:
    now = time.monotonic()
    key = (id(report.loop), report.location or report.handle or "")
    due: list[tuple[str, _Place]] = []
    if not _log_lock.acquire(timeout=1.0):  # stuck (shutdown): the log misses it
        return
    try:
        if report.kind == "recovered":
            folded = _folded.pop(key[0], None)
            if folded is not None:  # its block was counted, not logged: so is its end
                place = _places.get(folded)
                if place is not None:
                    place.longest = max(place.longest, report.seconds)
                return
        else:
            place = _places.get(key)
            if place is not None and now - place.since < SUMMARY_WINDOW:
                place.more += 1
                place.longest = max(place.longest, report.seconds)
                _folded[key[0]] = key
                return
            if place is not None and place.more:
                due.append((key[1], place))
            _places[key] = _Place(_describe(report.loop), now)
            _folded.pop(key[0], None)
    finally:
        _log_lock.release()
    for where, place in due:
        _log_summary(where, place, now)
    _log_report(report)


def _log_report(report: BlockReport) -> None:
    if report.kind == "recovered":
        logger.warning(
            "%r recovered after blocking for %.3f s in %s",
            report.loop,
            report.seconds,
            report.handle,
        )
    elif report.sampled:
        task = f" (task {report.task}: {' -> '.join(report.coroutines)})" if report.task else ""
        logger.warning(
            "%r blocked for %.3f s at %s%s\n%s",
            report.loop,
            report.seconds,
            report.location,
            task,
            report.stack.rstrip(),
        )
    else:
        logger.warning(
            "%r was blocked for %.3f s by %s, in a call that held the GIL (no stack taken)",
            report.loop,
            report.seconds,
            report.handle,
        )


def _log_summary(where: str, place: _Place, now: float) -> None:
    logger.warning(
        "%s blocked %d more time%s at %s, longest %.3f s, in the last %.0f s",
        place.loop,
        place.more,
        "" if place.more == 1 else "s",
        where,
        place.longest,
        max(now - place.since, 1.0),
    )


def _flush_summaries(loop_id: int | None = None) -> bool:
    """Logs the counts of the windows that ended (every window of ``loop_id``, when given).

    Returns whether some window is still open (the watchdog looks again later).
    """
    now = time.monotonic()
    due = []
    if not _log_lock.acquire(timeout=1.0):
        return False
    try:
        for key, place in list(_places.items()):
            if key[0] == loop_id or now - place.since >= SUMMARY_WINDOW:
                del _places[key]
                if place.more:
                    due.append((key[1], place))
        if loop_id is not None:
            _folded.pop(loop_id, None)
        pending = bool(_places)
    finally:
        _log_lock.release()
    for where, place in due:
        _log_summary(where, place, now)
    return pending


# ---- instrumentation hooks -------------------------------------------------------

_Hook = Callable[[Any, Any, float], object]
_hooks: tuple[_Hook | None, _Hook | None, float] = (None, None, 0.1)


def set_hooks(
    *,
    on_callback: _Hook | None = None,
    on_slow_callback: _Hook | None = None,
    slow_callback_duration: float = 0.1,
) -> None:
    """Instrument every callback of every ferroloop loop; no arguments removes the hooks.

    ``on_callback(loop, handle, seconds)`` runs after each callback (``handle`` is
    the Handle/TimerHandle, or a string naming native work: a task step, a
    transport's read or write, a ``sock_*`` operation); ``on_slow_callback`` only
    after one that ran ``slow_callback_duration`` seconds or longer. Hooks run on
    the loop's thread. Unset, they cost one branch per callback; set, two clock
    reads and a Python call per callback. A hook that raises is logged and removed.
    """
    global _hooks
    slow = _check_threshold(slow_callback_duration)
    _hooks = (on_callback, on_slow_callback, slow)
    _health_hooks(on_callback is not None or on_slow_callback is not None)


def _run_hook(loop: Any, what: Any, seconds: float) -> None:
    on_callback, on_slow, slow = _hooks
    for hook, due in ((on_callback, True), (on_slow, seconds >= slow)):
        if hook is None or not due:
            continue
        try:
            hook(loop, what, seconds)
        except Exception:
            logger.exception("the health hook %r raised; hooks are removed", hook)
            set_hooks()
            return


# ---- the health socket and the exporters (their own modules, loaded on use) ------


def serve(path: str | None = None) -> str:
    """Answer ``python -m ferroloop top`` on a Unix socket; returns its path.

    See ``ferroloop._health_server.serve``: the default path is
    ``$XDG_RUNTIME_DIR/ferroloop-{pid}.sock`` (else ``/tmp/ferroloop-{uid}/{pid}.sock``);
    ``{pid}`` in ``path`` becomes the process id.
    """
    from . import _health_server

    return _health_server.serve(path)


def stop_serving() -> None:
    """Close the health socket, if one is open, and remove its file."""
    from . import _health_server

    _health_server.stop()


def prometheus(loop: Any = None) -> str:
    """Every loop's health (or ``loop``'s) in Prometheus' text exposition format."""
    from . import _health_export

    return _health_export.prometheus(loop)


def register_opentelemetry(meter: Any = None) -> list[Any]:
    """Report every loop's health through OpenTelemetry metrics (needs ``opentelemetry-api``)."""
    from . import _health_export

    return _health_export.register_opentelemetry(meter)


class _HealthModule(types.ModuleType):
    """``ferroloop.health`` is callable: ``ferroloop.health(loop)`` is ``health(loop)``."""

    def __call__(self, loop: Any) -> HealthSnapshot:
        return health(loop)


sys.modules[__name__].__class__ = _HealthModule
