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
    # The other loops on PyPI (`make bench` installs each when it can; a loop that does not
    # install or import is skipped with a note). rloop has no Unix servers: those points are n/a.
    "rloop": ("rloop", "new_event_loop"),
    "rsloop": ("rsloop", "new_event_loop"),
    "zuvloop": ("zuvloop", "new_event_loop"),
    # aiofastnet's transports (OpenSSL called directly) under uvloop: a transport layer, not a
    # loop; its factory wraps uvloop's (see COMPOSED).
    "uvloop+aiofastnet": ("aiofastnet", "loop_factory"),
}

# Loops whose factory is another's, wrapped: name -> the module and factory it wraps.
COMPOSED: dict[str, tuple[str, str]] = {"uvloop+aiofastnet": ("uvloop", "new_event_loop")}

# The pip requirement of each peer (`make bench` installs them; benchmarks/peers.txt).
PEERS = ("uvloop", "rloop", "rsloop", "zuvloop", "aiofastnet")

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
    make = getattr(importlib.import_module(module), attr)
    if name in COMPOSED:
        inner_module, inner_attr = COMPOSED[name]
        return make(getattr(importlib.import_module(inner_module), inner_attr))
    return make


def _module_version(module: str) -> str:
    mod = importlib.import_module(module)
    found = getattr(mod, "__version__", None)
    if found is None:
        try:
            from importlib.metadata import version as dist_version

            found = dist_version(module)
        except Exception:  # noqa: BLE001 - a module with no distribution of its name
            found = "unknown"
    return str(found)


def version(name: str) -> str:
    """The version of loop ``name`` (the Python version for asyncio)."""
    if name == "asyncio":
        return platform.python_version()
    if name in COMPOSED:
        inner = COMPOSED[name][0]
        return f"{_module_version(inner)} + {_module_version(KNOWN[name][0])}"
    return _module_version(KNOWN[name][0])


def env_for(name: str) -> dict[str, str] | None:
    """The environment of loop ``name``'s processes (None: this one's)."""
    if name in VARIANTS:
        return {**os.environ, **VARIANTS[name]}
    if name != "ferroloop-base" or not BASELINE:
        return None
    path = os.pathsep.join(p for p in (BASELINE, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}
