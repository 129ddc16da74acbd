"""Version gates, in one place."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from . import _fence

PY311 = sys.version_info >= (3, 11)
PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)
PY314 = sys.version_info >= (3, 14)

_T = TypeVar("_T")

# asyncio's own check, without the DeprecationWarning 3.14's public one gives.
iscoroutinefunction = getattr(
    asyncio.coroutines, "_iscoroutinefunction", asyncio.coroutines.iscoroutinefunction
)

def _probe_policy() -> str | None:
    if not PY314:
        return None
    return _fence.missing(asyncio.events, ("_BaseDefaultEventLoopPolicy",))


# The legacy policy's base: 3.14 deprecates the public name (it warns when read).
if _fence.rely(
    "policy_base",
    ["asyncio.events._BaseDefaultEventLoopPolicy (3.14+)"],
    "the class 3.14's DefaultEventLoopPolicy derives from, readable without a warning",
    "asyncio.DefaultEventLoopPolicy, read with its deprecation warning silenced",
    _probe_policy,
):
    BasePolicy = (
        asyncio.events._BaseDefaultEventLoopPolicy  # type: ignore[attr-defined]
        if PY314
        else asyncio.DefaultEventLoopPolicy
    )
else:
    import warnings as _warnings

    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", DeprecationWarning)
        BasePolicy = getattr(asyncio, "DefaultEventLoopPolicy", object)


def _probe_watcher() -> str | None:
    if not PY314:
        return None
    from asyncio import unix_events

    return _fence.missing(
        unix_events, ("can_use_pidfd", "_PidfdChildWatcher", "_ThreadedChildWatcher")
    )


# 3.14's loop keeps a child watcher of its own; ferroloop makes the same for code that reads it.
HAS_CHILD_WATCHER = _fence.rely(
    "child_watcher_attribute",
    ["asyncio.unix_events.can_use_pidfd", "asyncio.unix_events._PidfdChildWatcher",
     "asyncio.unix_events._ThreadedChildWatcher"],
    "the watcher classes 3.14's Unix loop makes for itself (loop._watcher), which its "
    "borrowed subprocess code uses where pidfds are missing",
    "no loop._watcher: ferroloop reaps its children itself (pidfd, or SIGCHLD)",
    _probe_watcher,
)  # fmt: skip


def child_watcher() -> Any:  # pragma: no cover - 3.14 only
    """The child watcher 3.14's own loop makes for itself: pidfd where the kernel allows
    (asked for each loop, as asyncio does)."""
    from asyncio import unix_events

    if unix_events.can_use_pidfd():
        return unix_events._PidfdChildWatcher()
    return unix_events._ThreadedChildWatcher()


def run(
    main: Coroutine[Any, Any, _T],
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
    *,
    debug: bool | None = None,
) -> _T:
    """``asyncio.run`` with a loop factory, on every supported version."""
    if PY312:
        return asyncio.run(main, debug=debug, loop_factory=loop_factory)
    if PY311:
        with asyncio.Runner(debug=debug, loop_factory=loop_factory) as runner:
            return runner.run(main)
    return _run_310(main, loop_factory, debug)


def _run_310(main, loop_factory, debug):  # pragma: no cover - 3.10 only
    """3.10 has no Runner: mirror its asyncio.run with our loop."""
    from asyncio import coroutines, events, tasks

    if events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    if not coroutines.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    loop = loop_factory()
    try:
        events.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop, tasks)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            events.set_event_loop(None)
            loop.close()


def _cancel_all_tasks(loop, tasks):  # pragma: no cover - 3.10 only
    to_cancel = tasks.all_tasks(loop)
    if not to_cancel:
        return
    for task in to_cancel:
        task.cancel()
    loop.run_until_complete(tasks.gather(*to_cancel, return_exceptions=True))
    for task in to_cancel:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during asyncio.run() shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )
