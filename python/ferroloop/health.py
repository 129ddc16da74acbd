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

Only weak references to loops are kept. The watchdog takes no lock the loop
thread holds while waiting on anything, so a closing loop, a fork (the child
starts with no watchdog and no watched loops) or interpreter shutdown (the
thread is a daemon) cannot deadlock with it.
"""

from __future__ import annotations

import asyncio
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

from ._ferroloop import _health_hooks, _health_period

__all__ = (
    "BlockReport",
    "HealthSnapshot",
    "LagStats",
    "get_block_threshold",
    "health",
    "on_block",
    "set_block_threshold",
    "set_hooks",
)

logger = logging.getLogger("ferroloop.health")

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
    time since the previous batch began). ``idle``/``active``: seconds spent
    waiting in the poll and doing everything else while running;
    ``utilization`` is ``active / (idle + active)`` (Node's
    ``eventLoopUtilization``). Counters: ``iterations``, ``callbacks``,
    ``io_events`` are totals; ``ready_depth``, ``fds_watched``,
    ``timers_pending`` are current values.
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

    __slots__ = ("blocked", "ref", "seq", "since", "threshold")

    def __init__(self, ref: weakref.ref[Any]) -> None:
        self.ref = ref
        self.threshold: float | None = None  # None: the process default
        self.seq: int | None = None  # the callback being timed
        self.since = 0.0  # when the watchdog first saw it
        self.blocked = False  # a "blocked" report went out for it


_lock = threading.RLock()
_watches: dict[int, _Watch] = {}
_default_threshold = DEFAULT_BLOCK_THRESHOLD
_callback: Callable[[BlockReport], object] | None = None
_thread: threading.Thread | None = None
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


def _forget(key: int) -> None:
    _watches.pop(key, None)
    _wake.set()


def _watch_locked(loop: Any) -> _Watch:
    key = id(loop)
    w = _watches.get(key)
    if w is None or w.ref() is not loop:
        w = _watches[key] = _Watch(weakref.ref(loop, lambda _r, key=key: _forget(key)))
    return w


def watch(loop: Any) -> None:
    """Called when ``loop`` starts running: watch it, starting the watchdog if needed."""
    global _thread
    with _lock:
        _watch_locked(loop)
        if _thread is None:
            _thread = threading.Thread(target=_watchdog, name="ferroloop-health", daemon=True)
            _thread.start()
    _wake.set()


def unwatch(loop: Any) -> None:
    """Called when ``loop`` closes; the watchdog ends with the last loop."""
    w = _watches.get(id(loop))
    if w is not None and w.ref() is loop:
        _watches.pop(id(loop), None)
    _wake.set()


def _after_fork_in_child() -> None:
    global _lock, _thread, _wake
    _lock = threading.RLock()
    _watches.clear()
    _thread = None
    _wake = threading.Event()


os.register_at_fork(after_in_child=_after_fork_in_child)


# ---- blame: the watchdog ---------------------------------------------------------


def _watchdog() -> None:
    global _thread
    me = threading.current_thread()
    while not sys.is_finalizing():
        wake = _wake
        wake.clear()  # before looking: a wake-up from now on ends the wait below
        with _lock:
            if _thread is not me:
                return  # forked or replaced
            if not _watches:
                _thread = None
                return
            watches = list(_watches.values())
        thresholds = [t for t in map(_check, watches) if t > 0]
        # No running loop with blame on: sleep until watch() or a setting wakes us.
        wake.wait(min(thresholds) / 4 if thresholds else None)


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


def _emit(report: BlockReport) -> None:
    global _callback
    if sys.is_finalizing():
        return
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
    callback = _callback
    if callback is None:
        return
    try:
        callback(report)
    except Exception:
        logger.exception("the on_block callback %r raised; it is removed", callback)
        if _callback is callback:
            _callback = None


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


class _HealthModule(types.ModuleType):
    """``ferroloop.health`` is callable: ``ferroloop.health(loop)`` is ``health(loop)``."""

    def __call__(self, loop: Any) -> HealthSnapshot:
        return health(loop)


sys.modules[__name__].__class__ = _HealthModule
