"""Which parts of CPython's ``test.test_asyncio`` the conformance run covers.

Owns the module registry (``MODULES``, run by default; ``PENDING``, to be moved into
``MODULES`` by the issues that add network I/O) and the per-module adapters that run in
the worker after the test module is imported. Must not import ferroloop: the worker
decides which loop the policy creates.

A selection is a tuple of fnmatch patterns over ``Class.test_name``; an empty one means the
whole module. Adding a module is one ``Module(...)`` line; a module missing from the running
Python (``test_taskgroups`` on 3.10) is reported as absent, not as a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from types import ModuleType

PACKAGE = "test.test_asyncio"

# The loop under test; the worker sets it before running adapters (the stdlib's default loop
# class in asyncio mode, ferroloop's in ferroloop mode).
loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop


@dataclass(frozen=True)
class Module:
    name: str
    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    adapter: Callable[[ModuleType], None] | None = None

    def wants(self, class_and_test: str) -> bool:
        """Whether ``Class.test_name`` belongs to this module's selection."""
        if any(fnmatchcase(class_and_test, pat) for pat in self.exclude):
            return False
        return not self.select or any(fnmatchcase(class_and_test, pat) for pat in self.select)


# --- adapters ---------------------------------------------------------------------------------


def _events_adapter(mod: ModuleType) -> None:
    """test_events builds one class per selector (SelectEventLoopTests, EPollEventLoopTests,
    ...) whose create_event_loop() calls asyncio.SelectorEventLoop directly, so ferroloop
    could never be under test there. Add one class from the same mixin whose loops are the
    loop under test (the selector classes stay unselected). It skips
    UnixEventLoopTestsMixin's child-watcher setup, which only subprocess tests need."""
    from test.test_asyncio import utils as test_utils

    class EventLoopTests(mod.EventLoopTestsMixin, test_utils.TestCase):
        def create_event_loop(self):
            return loop_factory()

    EventLoopTests.__module__ = mod.__name__
    EventLoopTests.__qualname__ = "EventLoopTests"
    mod.EventLoopTests = EventLoopTests

    # SubprocessTestsMixin, on the loop under test. Before 3.14 the selector classes add it
    # with UnixEventLoopTestsMixin, whose setUp installs the child watcher asyncio's own loop
    # needs there (ferroloop never asks for one).
    unix = getattr(mod, "UnixEventLoopTestsMixin", mod.EventLoopTestsMixin)

    class SubprocessTests(unix, mod.SubprocessTestsMixin, test_utils.TestCase):
        def create_event_loop(self):
            return loop_factory()

    SubprocessTests.__module__ = mod.__name__
    SubprocessTests.__qualname__ = "SubprocessTests"
    mod.SubprocessTests = SubprocessTests


def _runners_adapter(mod: ModuleType) -> None:
    """test_runners' BaseTest.new_loop() returns a bare asyncio.BaseEventLoop with a mocked
    selector, so asyncio.run()/Runner would never touch the loop under test. Return the loop
    under test instead, keeping the test's ``shutdown_ag_run`` bookkeeping. Not through
    asyncio.new_event_loop(): the test's own policy calls new_loop(). Applied in both modes,
    so the baseline runs the same tests."""

    def new_loop(self):
        loop = loop_factory()
        loop.shutdown_ag_run = False
        real_shutdown_asyncgens = loop.shutdown_asyncgens

        async def shutdown_asyncgens():
            loop.shutdown_ag_run = True
            await real_shutdown_asyncgens()

        loop.shutdown_asyncgens = shutdown_asyncgens
        return loop

    mod.BaseTest.new_loop = new_loop


def _loop_class(base: str, method: str) -> Callable[[ModuleType], None]:
    """Adapter for modules that run their tests once per selector, each class building its
    own asyncio.SelectorEventLoop: add ``EventLoopTests``, a subclass of ``base`` whose
    ``method`` returns the loop under test, to be selected instead of the selector classes."""

    def adapter(mod: ModuleType) -> None:
        def new_loop(self):
            return loop_factory()

        namespace = {method: new_loop, "__module__": mod.__name__}
        mod.EventLoopTests = type("EventLoopTests", (getattr(mod, base),), namespace)

    return adapter


# --- test_events selections --------------------------------------------------------------------

# Scheduling, readers/writers, signals and executors on a loop from the policy; loop-independent
# classes (mock loops, policies, handles). Names checked against CPython 3.10-3.13.
EVENTS_CORE = (
    "EventLoopTests.test_run_until_complete*",
    "EventLoopTests.test_call_*",
    "EventLoopTests.test_run_in_executor*",
    "EventLoopTests.test_reader_callback",
    "EventLoopTests.test_writer_callback",
    "EventLoopTests.test_add_signal_handler",
    "EventLoopTests.test_signal_handling_*",
    "EventLoopTests.test_timeout_rounding",
    "EventLoopTests.test_*_fds_after_closing",
    "EventLoopTests.test_close*",
    "HandleTests.*",
    "TimerTests.*",
    "AbstractEventLoopTests.*",
    "PolicyTests.*",
    "TestPyGetEventLoop.*",
    "TestCGetEventLoop.*",
    "TestAbstractServer.*",
)

# The rest of EventLoopTestsMixin: sockets, servers, TLS, datagrams, pipes and ptys.
# test_internal_fds is about the selector loop's self-pipe and stays out.
EVENTS_NETWORK = (
    "EventLoopTests.test_create_*",
    "EventLoopTests.test_connect_accepted_socket*",
    "EventLoopTests.test_ssl_connect_accepted_socket",
    "EventLoopTests.test_connect_accepted_socket_ssl_timeout_for_plain_socket",
    "EventLoopTests.test_create_ssl_*",
    "EventLoopTests.test_create_*server_ssl*",
    "EventLoopTests.test_datagram_*",
    "EventLoopTests.test_server_close",
    "EventLoopTests.test_prompt_cancellation",
    "EventLoopTests.test_*_pipe*",
    "EventLoopTests.test_*_pty*",
    "TestServer.*",  # create_server
)

# SubprocessTestsMixin (subprocess_exec/subprocess_shell, their pipes and signals).
EVENTS_SUBPROCESS = ("SubprocessTests.test_subprocess_*",)

MODULES: tuple[Module, ...] = (
    Module("test_tasks"),
    Module("test_futures"),
    Module("test_futures2"),
    Module("test_locks"),
    Module("test_queues"),
    Module("test_pep492"),
    Module("test_context"),
    Module("test_runners", adapter=_runners_adapter),
    Module("test_taskgroups"),
    Module("test_timeouts"),
    Module("test_waitfor"),
    Module("test_threads"),
    Module(
        "test_events",
        select=EVENTS_CORE + EVENTS_NETWORK + EVENTS_SUBPROCESS,
        adapter=_events_adapter,
    ),
    # Network (issue 3)
    Module(
        "test_sock_lowlevel",
        select=("EventLoopTests.*",),
        adapter=_loop_class("SelectEventLoopTests", "create_event_loop"),
    ),
    Module("test_streams"),
    Module(
        "test_server",
        exclude=tuple(c + "StartServerTests.*" for c in ("Selector", "Proactor")),
        adapter=_loop_class("SelectorStartServerTests", "new_loop"),
    ),
    Module(
        "test_sendfile",
        select=("EventLoopTests.*",),
        adapter=_loop_class("SelectEventLoopTests", "create_event_loop"),
    ),
    Module(
        "test_buffered_proto",
        select=("EventLoopTests.*",),
        adapter=_loop_class("BufferedProtocolSelectorTests", "new_loop"),
    ),
    Module("test_protocols"),
    # Eager tasks (3.12+), the call graph (3.14), free-threading safety of tasks (3.14: it
    # runs, with the GIL, on every build), staggered connects, subprocesses.
    Module("test_eager_task_factory"),
    Module("test_graph"),
    Module("test_free_threading"),
    Module("test_staggered"),
    Module("test_subprocess"),
    # TLS: asyncio's SSLProtocol and the TLS tests over real sockets (3.11+ has test_ssl).
    Module("test_sslproto"),
    Module("test_ssl"),
    # 3.15: the context a server's connections run in (the Asyncio* classes use the policy's
    # loop; the Selector* ones name asyncio's class).
    Module("test_server_context", select=("AsyncioEventLoop*",)),
)

# Not run by default; `--module NAME` runs one.
PENDING: tuple[Module, ...] = ()

# Rough cost order (slowest first) so parallel jobs finish together.
_COST = {"test_tasks": 100, "test_events": 50, "test_taskgroups": 40}


def find(name: str) -> Module:
    for mod in MODULES + PENDING:
        if mod.name == name:
            return mod
    known = ", ".join(m.name for m in MODULES + PENDING)
    raise KeyError(f"unknown module {name!r}; known: {known}")


def cost(name: str) -> int:
    return _COST.get(name, 1)
