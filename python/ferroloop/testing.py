"""Virtual time for tests: a ferroloop loop whose clock moves only when told, or jumps.

``new_event_loop(autojump=True)`` gives a :class:`VirtualTimeLoop`: ``loop.time()`` starts at
``start`` and moves only when the loop has nothing else to do (autojump: straight to the next
timer's deadline) or when the test moves it (:meth:`VirtualTimeLoop.advance`,
:meth:`VirtualTimeLoop.jump_to`). Everything asyncio schedules on ``loop.time()`` follows it:
``sleep``, ``wait_for``, ``timeout``, ``call_later``/``call_at``, TaskGroups, stream and TLS
timeouts. Real I/O keeps working; the clock never jumps while a callback is ready, nor past
a moment at which a ready descriptor would have been seen. ``time.monotonic()`` and
``time.time()`` are not patched: they stay real. Health figures and debug mode's slow-callback
warnings keep real time too. See docs/testing.md.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from . import _compat
from ._loop import Loop

__all__ = [
    "START",
    "VirtualTimeLoop",
    "loop_factory",
    "new_event_loop",
    "pytest_asyncio_loop_factories",
    "run",
]

_T = TypeVar("_T")

# Where a virtual clock starts unless told: far from 0, so code that treats 0 as "never"
# still works, and a whole number, so printed times read well.
START = 1_000_000.0


class VirtualTimeLoop(Loop):
    """A ``ferroloop.Loop`` on a virtual clock (made by :func:`new_event_loop`)."""

    def __init__(self, *, virtual_time: tuple[float, bool, float]) -> None:
        super().__init__()

    @property
    def autojump(self) -> bool:
        """Whether an idle loop jumps to its next timer's deadline."""
        return self._virtual_clock()[1]

    @autojump.setter
    def autojump(self, on: bool) -> None:
        self._virtual_clock_set(bool(on), self.autojump_threshold)

    @property
    def autojump_threshold(self) -> float:
        """Real seconds the loop waits for I/O before it jumps (0: jump at once)."""
        return self._virtual_clock()[2]

    @autojump_threshold.setter
    def autojump_threshold(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("autojump_threshold must be >= 0")
        self._virtual_clock_set(self.autojump, float(seconds))

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; return the new time. Timers due by then run
        in deadline order, at the loop's next iteration. Safe from any thread."""
        if seconds < 0:
            raise ValueError("cannot move time backwards")
        return self._virtual_clock_move(seconds=float(seconds))

    def jump_to(self, when: float) -> float:
        """Move the clock to ``when`` (an earlier time leaves it as it is); return the time."""
        return self._virtual_clock_move(when=float(when))


def new_event_loop(
    *, autojump: bool = True, start: float = START, autojump_threshold: float = 0.0
) -> VirtualTimeLoop:
    """A new loop on a virtual clock starting at ``start``.

    autojump: when no callback is ready and no I/O arrives within ``autojump_threshold`` real
        seconds, the clock jumps to the next timer's deadline. Give a threshold above 0 when the
        test waits on real I/O or on threads (a server on loopback, ``run_in_executor``), so
        that their answers arrive before a timeout fires. Without autojump, the clock moves only
        by :meth:`VirtualTimeLoop.advance` and :meth:`VirtualTimeLoop.jump_to`.
    """
    if autojump_threshold < 0:
        raise ValueError("autojump_threshold must be >= 0")
    return VirtualTimeLoop(virtual_time=(float(start), bool(autojump), float(autojump_threshold)))


def loop_factory(**options: Any) -> Callable[[], VirtualTimeLoop]:
    """A factory for ``asyncio.Runner(loop_factory=...)``, pytest-asyncio or anyio, making
    loops as ``new_event_loop(**options)`` does."""

    def factory() -> VirtualTimeLoop:
        return new_event_loop(**options)

    return factory


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None, **options: Any) -> _T:
    """Run a coroutine on a new virtual-time loop, like ``asyncio.run``."""
    return _compat.run(main, loop_factory(**options), debug=debug)


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Callable[[], Any]]:
    """pytest-asyncio's loop-factory hook (1.4+), for a project's ``conftest.py``::

        from ferroloop.testing import pytest_asyncio_loop_factories  # noqa: F401

    Tests marked ``@pytest.mark.virtual_time(...)`` then run on a virtual-time loop made with
    the mark's options; the others on asyncio's default loop, as without the hook.
    """
    import asyncio

    mark = item.get_closest_marker("virtual_time")
    if mark is None:
        return {"default": asyncio.new_event_loop}
    return {"virtual_time": loop_factory(**mark.kwargs)}
