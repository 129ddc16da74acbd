"""The event loops compared, by name: how to make one and what version it is.

Nothing here imports a loop at module import time, so a missing or broken loop only fails the
measurement that asked for it.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import platform
from collections.abc import Callable

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

# name -> (module, factory attribute). Order is the column order of every report.
LOOPS: dict[str, tuple[str, str]] = {
    "asyncio": ("asyncio", "SelectorEventLoop"),
    "uvloop": ("uvloop", "new_event_loop"),
    "ferroloop": ("ferroloop", "new_event_loop"),
    # The fastest other loop we have measured (0.5); `make bench` installs it when it can and
    # the reports compare ferroloop with it too. It has no Unix servers, so those points are n/a.
    "rloop": ("rloop", "new_event_loop"),
}

# Another build of ferroloop to measure beside this one (`make bench BASELINE=dir`): `dir` holds an
# importable `ferroloop` package (python/ferroloop of another commit with its built module), put
# first on the path of that loop's processes only.
BASELINE = os.environ.get("FERROLOOP_BASELINE")
if BASELINE:
    LOOPS["ferroloop-base"] = ("ferroloop", "new_event_loop")

# ferroloop with a setting that only measuring wants: asked for by name in --loops, never by
# default. name -> environment added to that loop's processes (read at ferroloop's import or
# at each loop's creation).
VARIANTS: dict[str, dict[str, str]] = {
    "ferroloop-health-off": {"FERROLOOP_HEALTH": "0"},  # no health recording
    "ferroloop-tasks": {"FERROLOOP_TRACK_TASKS": "1"},  # per-task accounting on
}
KNOWN: dict[str, tuple[str, str]] = {
    **LOOPS,
    **{name: ("ferroloop", "new_event_loop") for name in VARIANTS},
}

# The loops the demo shows: the stdlib's, the one users switch from, ours.
DEMO_LOOPS = ("asyncio", "uvloop", "ferroloop")


def factory(name: str) -> LoopFactory:
    """Import loop ``name`` and return its new-loop factory."""
    module, attr = KNOWN[name]
    return getattr(importlib.import_module(module), attr)


def version(name: str) -> str:
    """The version of loop ``name`` (the Python version for asyncio)."""
    if name == "asyncio":
        return platform.python_version()
    module = importlib.import_module(KNOWN[name][0])
    return str(getattr(module, "__version__", "unknown"))


def env_for(name: str) -> dict[str, str] | None:
    """The environment of loop ``name``'s processes (None: this one's)."""
    if name in VARIANTS:
        return {**os.environ, **VARIANTS[name]}
    if name != "ferroloop-base" or not BASELINE:
        return None
    path = os.pathsep.join(p for p in (BASELINE, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}
