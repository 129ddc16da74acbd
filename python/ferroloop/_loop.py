"""``ferroloop.Loop``: the native loop plus asyncio's policy-level methods.

The hot path (scheduling, timers, the run loop, fd watching, signal dispatch)
is native (``_ferroloop.Loop``). The cold methods whose exact behaviour varies
between Python versions (exception handler, executors, async generators, task
factory, ``run_until_complete``) are taken from the running interpreter's own
``asyncio.BaseEventLoop`` rather than rewritten, so they match it by
construction on every version; this class provides the attributes they use.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import sys
import threading
import time
import weakref
from asyncio import base_events, constants, coroutines, events

from . import _compat, _fence, _net, _subprocess
from . import health as _health
from ._ferroloop import ChildWatch as _ChildWatch
from ._ferroloop import Loop as _NativeLoop
from ._ferroloop import _register_task_callbacks

_Base = asyncio.BaseEventLoop
_UNSET = object()


def _probe_c_running_loop() -> str | None:
    import _asyncio

    return _fence.missing(_asyncio, ("_set_running_loop",))


if _fence.rely(
    "c_running_loop",
    ["_asyncio._set_running_loop"],
    "the C module's own running-loop slot, set beside asyncio.events' when code swapped "
    "the Python implementation in",
    "asyncio.events._set_running_loop alone",
    _probe_c_running_loop,
):
    from _asyncio import _set_running_loop as _c_set_running_loop
else:
    _c_set_running_loop = None


def _set_running_loop(loop) -> None:
    """asyncio's ``events._set_running_loop``, and the C one where that was replaced.

    The loop's tasks are C Tasks, which (3.14) step only on the loop the C module knows
    as running, even when code (CPython's own tests) swaps in the Python implementation.
    """
    events._set_running_loop(loop)
    if _c_set_running_loop is not None and events._set_running_loop is not _c_set_running_loop:
        _c_set_running_loop(loop)


def _debug_mode_by_hand() -> bool:
    """asyncio's rule for debug mode: -X dev, or PYTHONASYNCIODEBUG set non-empty."""
    import os

    return sys.flags.dev_mode or (
        not sys.flags.ignore_environment and bool(os.environ.get("PYTHONASYNCIODEBUG"))
    )


if _fence.rely(
    "asyncio_debug_flag",
    ["asyncio.coroutines._is_debug_mode"],
    "a function of no arguments that says whether asyncio's debug mode is on",
    "asyncio's rule written out (-X dev, or PYTHONASYNCIODEBUG)",
    lambda: _fence.missing(coroutines, ("_is_debug_mode",))
    or (None if _fence.params(coroutines._is_debug_mode) == [] else "it takes arguments"),
):

    def _is_debug_mode() -> bool:
        return coroutines._is_debug_mode()  # looked up at each call: tests patch it

else:
    _is_debug_mode = _debug_mode_by_hand


def _sighandler_noop(signum, frame):
    """Python-level handler so that CPython writes the signal to our fd."""


class Loop(_net.NetMixin, _NativeLoop, asyncio.AbstractEventLoop):
    """An asyncio event loop implemented in Rust."""

    def __init__(self) -> None:
        super().__init__()
        _health.register(self)
        self._exception_handler = None
        self._default_executor = None
        self._executor_shutdown_called = False
        self._task_factory = None
        # Kept as given, as asyncio: only debug mode compares it (in Python).
        self.slow_callback_duration = 0.1
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._wakeup_fd_saved = _UNSET
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        self._init_net()
        if _compat.PY314 and _compat.HAS_CHILD_WATCHER:
            # The watcher asyncio's own loop makes here: 3.14's subprocess code (borrowed
            # from asyncio) uses it where pidfds are missing; elsewhere the loop reaps
            # its children itself (_subprocess.py) and this is only there to be read.
            self._watcher = _compat.child_watcher()
        self._set_debug_flag(_is_debug_mode())
        if sys.version_info < (3, 12):
            # The C Future and Task of 3.10-3.11 fetch ``loop.call_soon`` (each
            # callback scheduled) and ``loop.get_debug`` (each future made) as
            # attributes, which makes a new bound method each time; ones kept
            # on the instance are found instead.
            self.call_soon = self.call_soon
            self.get_debug = self.get_debug

    # ---- taken from the interpreter's asyncio ---------------------------------

    __repr__ = _Base.__repr__
    __del__ = _Base.__del__
    run_until_complete = _Base.run_until_complete
    get_task_factory = _Base.get_task_factory
    run_in_executor = _Base.run_in_executor
    set_default_executor = _Base.set_default_executor
    shutdown_default_executor = _Base.shutdown_default_executor
    _check_default_executor = _Base._check_default_executor
    get_exception_handler = _Base.get_exception_handler
    set_exception_handler = _Base.set_exception_handler
    default_exception_handler = _Base.default_exception_handler
    call_exception_handler = _Base.call_exception_handler
    shutdown_asyncgens = _Base.shutdown_asyncgens
    _asyncgen_firstiter_hook = _Base._asyncgen_firstiter_hook
    _asyncgen_finalizer_hook = _Base._asyncgen_finalizer_hook
    _set_coroutine_origin_tracking = _Base._set_coroutine_origin_tracking
    _check_callback = _Base._check_callback
    if hasattr(_Base, "_do_shutdown"):
        _do_shutdown = _Base._do_shutdown

    def set_task_factory(self, factory) -> None:
        _Base.set_task_factory(self, factory)
        self._set_has_task_factory(factory is not None)

    @property
    def _debug(self) -> bool:
        return self.get_debug()

    # ---- lifecycle ---------------------------------------------------------

    def _check_running(self) -> None:
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def run_forever(self) -> None:
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self.get_debug())
        old_agen_hooks = sys.get_asyncgen_hooks()
        try:
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook, finalizer=self._asyncgen_finalizer_hook
            )
            _set_running_loop(self)
            self._install_wakeup_fd()
            _health.watch(self)
            self._run_forever_native()
        finally:
            _health.stopped(self)
            self._restore_wakeup_fd()
            _set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self._signal_handle_sigs() and not sys.is_finalizing():
            for sig in self._signal_handle_sigs():
                self.remove_signal_handler(sig)
        if self.get_debug():
            base_events.logger.debug("Close %r", self)
        if not _compat.PY312:
            _subprocess.loop_closing(self)
        self._close_native()
        _health.unwatch(self)
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    def health(self) -> _health.HealthSnapshot:
        """This loop's lag, utilization and counters (see ``ferroloop.health``)."""
        return _health.health(self)

    def set_debug(self, enabled) -> None:
        self._set_debug_flag(enabled)
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    # ---- signals -----------------------------------------------------------

    def _install_wakeup_fd(self) -> None:
        """While running in the main thread, signals wake the poll at once."""
        if threading.current_thread() is not threading.main_thread():
            return
        ours = self._signal_wakeup_fd()
        try:
            old = signal.set_wakeup_fd(ours, warn_on_full_buffer=False)
        except (ValueError, OSError):
            return
        if old not in (-1, ours):
            signal.set_wakeup_fd(old)  # someone else's: leave it to them
            return
        self._wakeup_fd_saved = old

    def _restore_wakeup_fd(self) -> None:
        old, self._wakeup_fd_saved = self._wakeup_fd_saved, _UNSET
        if old is _UNSET or self._signal_handle_sigs():
            return
        try:
            signal.set_wakeup_fd(old)
        except (ValueError, OSError):
            pass

    def _check_signal(self, sig) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(self, sig, callback, *args) -> None:
        if coroutines.iscoroutine(callback) or _compat.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            # Raises ValueError outside the main thread, which keeps a loop
            # running in another thread from adding signal handlers.
            signal.set_wakeup_fd(self._signal_wakeup_fd())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc)) from None
        self._set_signal_handle(sig, callback, *args)
        try:
            signal.signal(sig, _sighandler_noop)
            signal.siginterrupt(sig, False)
            if sig == signal.SIGCHLD:  # the no-pidfd watch's handler goes back in front
                _ChildWatch.rearm()
        except OSError as exc:
            self._pop_signal_handle(sig)
            if not self._signal_handle_sigs():
                try:
                    signal.set_wakeup_fd(-1)
                except (ValueError, OSError) as nexc:
                    base_events.logger.info("set_wakeup_fd(-1) failed: %s", nexc)
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise

    def remove_signal_handler(self, sig) -> bool:
        self._check_signal(sig)
        if not self._pop_signal_handle(sig):
            return False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
            if sig == signal.SIGCHLD:
                _ChildWatch.rearm()
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise
        if not self._signal_handle_sigs() and not self.is_running():
            try:
                signal.set_wakeup_fd(-1)
            except (ValueError, OSError) as exc:
                base_events.logger.info("set_wakeup_fd(-1) failed: %s", exc)
        return True


for _name, _fn in _net.borrowed().items():
    if not any(_name in vars(c) for c in Loop.__mro__[:-3]):
        setattr(Loop, _name, _fn)
del _name, _fn


class _StandIn:
    """Just enough of a loop for one C Task to run on (see _learn_task_callbacks)."""

    def __init__(self) -> None:
        self.calls: list = []

    def get_debug(self) -> bool:
        return False

    def call_soon(self, callback, *args, context=None):
        self.calls.append((callback, args))

    def call_exception_handler(self, context) -> None:
        pass


def _learn_task_callbacks() -> bool:
    """Shows the native loop the callables CPython's C Task schedules for itself.

    The C Task queues each step and each wake-up with ``loop.call_soon`` and
    drops the handle unread, so the native loop queues those two (private)
    callables without making a handle (crates/ferroloop-py/src/task_calls.rs).
    One task run by hand on a stand-in loop shows which they are on this
    version. Returns whether they were registered.
    """
    try:
        from _asyncio import Future as CFuture
        from _asyncio import Task as CTask
    except ImportError:  # pragma: no cover - CPython always builds _asyncio
        return False
    stand_in = _StandIn()
    coro = None
    # 3.14's C Task steps only on the loop registered as running (its enter_task checks).
    outer = events._get_running_loop()
    _set_running_loop(stand_in)
    try:
        fut = CFuture(loop=stand_in)

        async def waits() -> None:
            await fut

        coro = waits()
        # Named, so that the probe takes no number from the Task-N names the program sees.
        task = CTask(coro, loop=stand_in, name="ferroloop-probe")
        (step, step_args), *more = stand_in.calls
        stand_in.calls.clear()
        step(*step_args)  # runs to `await fut`
        fut.set_result(None)
        (wakeup, wakeup_args), *more2 = stand_in.calls
        stand_in.calls.clear()
        wakeup(*wakeup_args)  # the task finishes
        if more or more2 or step_args or len(wakeup_args) != 1 or not task.done():
            return False
        return _register_task_callbacks(step, wakeup, task)
    except Exception:  # noqa: BLE001 - any surprise: every callback keeps its handle
        return False
    finally:
        _set_running_loop(outer)
        if coro is not None:
            coro.close()  # already finished unless something above failed


TASK_CALLBACKS_REGISTERED = _fence.rely(
    "task_callbacks",
    ["_asyncio.Task (the callables its call_soon passes: a step and a wake-up)"],
    "the C Task schedules its steps and wake-ups with loop.call_soon(callable) and drops the "
    "handle; one task run on a stand-in loop shows which callables they are",
    "a Handle for every task step and wake-up, as asyncio makes",
    lambda: None if _learn_task_callbacks() else "the C Task's step callables were not recognised",
)

_BASE_METHODS = (
    "__repr__", "__del__", "run_until_complete", "get_task_factory", "run_in_executor",
    "set_default_executor", "shutdown_default_executor", "_check_default_executor",
    "get_exception_handler", "set_exception_handler", "default_exception_handler",
    "call_exception_handler", "shutdown_asyncgens", "_asyncgen_firstiter_hook",
    "_asyncgen_finalizer_hook", "_set_coroutine_origin_tracking", "_check_callback",
    "set_task_factory",
)  # fmt: skip
_fence.rely(
    "borrowed_loop_methods",
    [f"asyncio.base_events.BaseEventLoop.{n}" for n in _BASE_METHODS],
    "the running asyncio's own cold loop methods, run on ferroloop as they are",
    None,
    lambda: _fence.missing(_Base, _BASE_METHODS),
)

assert constants.DEBUG_STACK_DEPTH  # keep the import: _set_coroutine_origin_tracking uses it
__all__ = ["Loop", "_compat"]
