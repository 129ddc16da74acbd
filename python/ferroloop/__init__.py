"""ferroloop: a fast, exact asyncio event loop written in Rust.

Use it with one line::

    ferroloop.run(main())
    asyncio.run(main(), loop_factory=ferroloop.new_event_loop)   # 3.12+
"""

from __future__ import annotations

import asyncio as _asyncio
import warnings as _warnings
from collections.abc import Coroutine
from typing import Any, TypeVar

from . import _compat, _fence, health
from . import _helpers as _helpers  # its fence probes run before finish() below
from ._fence import CompatWarning
from ._ferroloop import __version__
from ._loop import Loop

__all__ = (
    "CompatWarning",
    "EventLoopPolicy",
    "Loop",
    "__version__",
    "compat",
    "health",
    "install",
    "new_event_loop",
    "run",
)

_T = TypeVar("_T")


def compat() -> dict[str, dict[str, Any]]:
    """Which of ferroloop's fast paths are active on this Python, by name.

    Each entry says ``active``, the private asyncio or ``ssl`` names it ``relies_on``, what
    it ``expects`` of them, the ``fallback`` that runs when it is off, and the ``problem``
    its import-time probe found (None when active). A fast path that is off costs speed,
    never behaviour: asyncio's own code runs there.
    """
    return _fence.report()


def new_event_loop() -> Loop:
    """Return a new ferroloop event loop."""
    return Loop()


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """Run a coroutine on a new ferroloop loop, like ``asyncio.run``."""
    return _compat.run(main, new_event_loop, debug=debug)


class EventLoopPolicy(_compat.BasePolicy):  # type: ignore[misc,valid-type]
    """Legacy policy whose loops are ferroloop loops (prefer ``loop_factory``).

    Event loop policies are deprecated from Python 3.12 on (removed in 3.16):
    creating one warns there, as uvloop's does.
    """

    def __init__(self) -> None:
        if _compat.PY312:
            _warnings.warn(
                "ferroloop.EventLoopPolicy is deprecated: use ferroloop.run() or "
                "asyncio.run(..., loop_factory=ferroloop.new_event_loop)",
                DeprecationWarning,
                stacklevel=2,
            )
        super().__init__()

    def _loop_factory(self) -> Loop:  # used by asyncio's policy machinery
        return new_event_loop()

    def new_event_loop(self) -> Loop:
        return new_event_loop()

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} object at {id(self):#x}>"


def install() -> None:
    """Set ferroloop's policy as asyncio's (deprecated, like uvloop's, on 3.12+)."""
    if _compat.PY312:
        _warnings.warn(
            "ferroloop.install() is deprecated in favor of ferroloop.run() "
            "or asyncio.run(..., loop_factory=ferroloop.new_event_loop)",
            DeprecationWarning,
            stacklevel=2,
        )
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", DeprecationWarning)
        _asyncio.set_event_loop_policy(EventLoopPolicy())


_fence.finish()
