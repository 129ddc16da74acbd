"""The fence: every private name of ``asyncio`` and ``ssl`` that ferroloop relies on.

ferroloop runs asyncio's own code for its cold paths and replaces some of asyncio's
private methods with native ones for speed. Both depend on names CPython may move in any
release. Each dependency is one ``Reliance`` here: the fast path it serves, the private
names it reads, calls, borrows or replaces, what it expects of them, and a probe that checks
that expectation against the running interpreter when ferroloop is imported.

Rules:

* A probe only looks (signatures, attributes, a throw-away object); it never changes asyncio.
* A reliance whose probe fails turns its fast path off: the code that uses it asks
  ``active(name)`` and runs asyncio's own implementation instead (slower, still exact).
  ``warnings.warn`` says once, at import, what moved and what it costs
  (``ferroloop.CompatWarning``, a ``RuntimeWarning``).
* ``ferroloop.compat()`` reports every reliance: active or not, and why.
* A reliance with ``fallback=None`` has no slower twin: the names are asyncio's code that
  ferroloop runs as it is (its borrowed methods); a miss there is reported the same way.

The probes that need ferroloop's own classes (signatures of its overrides, the C Task
probe) are registered by the modules that own those classes, before ``finish()`` warns.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


class CompatWarning(RuntimeWarning):
    """A private asyncio name ferroloop relies on moved: one fast path is off."""


@dataclass
class Reliance:
    """One fast path (or borrowed piece) and the private names it stands on."""

    name: str
    names: tuple[str, ...]
    expects: str
    fallback: str | None
    probe: Callable[[], str | None]
    active: bool = True
    problem: str | None = field(default=None)

    def as_dict(self) -> dict[str, object]:
        return {
            "active": self.active,
            "relies_on": self.names,
            "expects": self.expects,
            "fallback": self.fallback,
            "problem": self.problem,
        }


_RELIANCES: dict[str, Reliance] = {}
_warned: set[str] = set()


def rely(
    name: str,
    names: Iterable[str],
    expects: str,
    fallback: str | None,
    probe: Callable[[], str | None],
    applies: bool = True,
) -> bool:
    """Register a reliance and probe it now; return whether its fast path is on.

    ``applies=False``: this Python version never had the fast path (it is recorded as off,
    with no warning: nothing moved)."""
    r = Reliance(name, tuple(names), expects, fallback, probe)
    if not applies:
        r.problem = "not used on this Python version"
        _warned.add(name)
    else:
        try:
            r.problem = probe()
        except Exception as exc:  # noqa: BLE001 - any surprise is a moved name
            r.problem = f"probe raised {type(exc).__name__}: {exc}"
    r.active = r.problem is None
    _RELIANCES[name] = r
    return r.active


def active(name: str) -> bool:
    """Whether the fast path ``name`` is on (unknown names: off)."""
    r = _RELIANCES.get(name)
    return r is not None and r.active


# Private names read as they are, with no faster twin to turn off: asyncio's own code (which
# ferroloop runs) needs them too. Each is (module, dotted attribute).
PLAIN_NAMES = (
    ("asyncio.events", "_get_running_loop"),
    ("asyncio.events", "_set_running_loop"),
    ("asyncio.futures", "_set_result_unless_cancelled"),
    ("asyncio.base_events", "_check_ssl_socket"),
    ("asyncio.base_events", "_HAS_IPv6"),
    ("asyncio.base_events", "Server._attach"),
    ("asyncio.base_events", "Server._detach"),
    ("asyncio.constants", "_SendfileMode.TRY_NATIVE"),
    ("asyncio.transports", "_FlowControlMixin"),
    ("asyncio.selector_events", "_SelectorDatagramTransport.sendto"),
    ("asyncio.selector_events", "BaseSelectorEventLoop._ensure_fd_no_transport"),
)


def _probe_plain() -> str | None:
    import importlib

    gone = []
    for module, dotted in PLAIN_NAMES:
        obj: object = importlib.import_module(module)
        for part in dotted.split("."):
            obj = getattr(obj, part, _GONE)
        if obj is _GONE:
            gone.append(f"{module}.{dotted}")
    return f"asyncio has no {', '.join(gone)}" if gone else None


_GONE = object()


def finish() -> None:
    """Warn once for each reliance whose probe failed (called at the end of the import)."""
    if "asyncio_private_names" not in _RELIANCES:
        rely(
            "asyncio_private_names",
            [f"{m}.{d}" for m, d in PLAIN_NAMES],
            "present, as asyncio's own code (which ferroloop runs) uses them",
            None,
            _probe_plain,
        )
    for r in _RELIANCES.values():
        if r.active or r.name in _warned:
            continue
        _warned.add(r.name)
        cost = f"ferroloop uses {r.fallback}" if r.fallback else "that part may not work"
        warnings.warn(
            f"ferroloop: {r.name} is off on this Python ({r.problem}); {cost}",
            CompatWarning,
            stacklevel=2,
        )


def report() -> dict[str, dict[str, object]]:
    """Every reliance, by name: whether it is active, what it relies on, why it is off."""
    return {name: r.as_dict() for name, r in _RELIANCES.items()}


# -- helpers for probes ----------------------------------------------------------------------


def missing(obj: object, attrs: Iterable[str]) -> str | None:
    """None when ``obj`` has every attribute in ``attrs``; else which ones it lacks."""
    gone = [a for a in attrs if not hasattr(obj, a)]
    if gone:
        return f"{getattr(obj, '__name__', type(obj).__name__)} has no {', '.join(gone)}"
    return None


def params(func: Callable[..., object]) -> list[str]:
    """The parameter names of ``func``, in order."""
    return list(inspect.signature(func).parameters)


def takes_all(ours: Callable[..., object], theirs: Callable[..., object], what: str) -> str | None:
    """None when ``ours`` accepts every parameter asyncio's ``theirs`` has (by name, or it
    takes ``**kwargs``); else what is missing. asyncio's own code calls ``ours`` as it
    would call ``theirs``."""
    sig = inspect.signature(ours)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    extra = [n for n in params(theirs) if n not in sig.parameters]
    if extra:
        return f"asyncio's {what} takes {', '.join(extra)}, which ferroloop's does not"
    return None


def same_params(ours: list[str], theirs: Callable[..., object], what: str) -> str | None:
    """None when asyncio's ``theirs`` has exactly the parameters ``ours`` (names, in order)."""
    got = params(theirs)
    if got != ours:
        return f"asyncio's {what} is ({', '.join(got)}), expected ({', '.join(ours)})"
    return None
