"""pytest plugin: tests on ferroloop's virtual-time loop (``ferroloop.testing``).

Installed with ferroloop (entry point ``pytest11``) and inert unless a test asks for it:

* ``@pytest.mark.virtual_time(autojump=True, start=..., autojump_threshold=0.0)`` on an
  ``async def`` test runs it on a fresh virtual-time loop (when pytest-asyncio is not the one
  running it: see ``ferroloop.testing.pytest_asyncio_loop_factories`` for that case);
* the ``virtual_loop`` fixture gives a synchronous test such a loop (closed afterwards), made
  with the test's ``virtual_time`` mark's options if it has one;
* the ``virtual_time_loop_factory`` fixture gives the factory itself, for
  ``asyncio.Runner(loop_factory=...)`` or anyio's ``anyio_backend`` fixture.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

_MARK = "virtual_time"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARK}(autojump=True, start=..., autojump_threshold=0.0): run the test on "
        "ferroloop's virtual-time loop (ferroloop.testing)",
    )


def _options(item: pytest.Item) -> dict[str, Any]:
    mark = item.get_closest_marker(_MARK)
    return dict(mark.kwargs) if mark is not None else {}


def _claimed_by_pytest_asyncio(item: pytest.Function) -> bool:
    """pytest-asyncio runs this test itself (its own item class, or its marker)."""
    return type(item).__module__.startswith("pytest_asyncio") or (
        item.get_closest_marker("asyncio") is not None
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if pyfuncitem.get_closest_marker(_MARK) is None:
        return None
    if not inspect.iscoroutinefunction(pyfuncitem.obj) or _claimed_by_pytest_asyncio(pyfuncitem):
        return None
    from . import testing

    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    testing.run(pyfuncitem.obj(**kwargs), **_options(pyfuncitem))
    return True


@pytest.fixture
def virtual_time_loop_factory(request: pytest.FixtureRequest) -> Callable[[], Any]:
    """A factory of virtual-time loops, with the test's ``virtual_time`` mark's options."""
    from . import testing

    return testing.loop_factory(**_options(request.node))


@pytest.fixture
def virtual_loop(virtual_time_loop_factory: Callable[[], Any]) -> Iterator[Any]:
    """A virtual-time loop, set as the current loop for the test; closed afterwards."""
    import asyncio

    loop = virtual_time_loop_factory()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()
