"""Child process of run.py: run one test.test_asyncio module on one loop, stream outcomes.

Owns the switch to the loop under test (the only patching done here) and the event stream.
Runs in a fresh interpreter per (module, mode) so patches never leak; prints nothing of its
own on stdout (tests do). Every event is one JSON line, flushed, in the ``--events`` file:

    {"event": "start", "id": ...}                      a test began
    {"event": "result", "id": ..., "outcome": ...}     pass|fail|error|skip|xfail|xpass
    {"event": "done"}                                  the suite finished (exit follows)

so the parent can tell which test hung or crashed and resume after it. A per-test watchdog
(faulthandler) dumps every thread's stack to stderr and exits when a test runs too long.

Modes: ``asyncio`` changes nothing. ``ferroloop`` makes every instance of the default policy
class create ferroloop loops (patching the class survives the ``set_event_loop_policy(None)``
in each module's tearDownModule) and lets test_utils.TestCase.close_loop close loops that do
not have BaseEventLoop's private ``_default_executor``. With FERROLOOP_CONFORMANCE_FAKE=1 the
"ferroloop" loop is asyncio.SelectorEventLoop, to test this harness without the extension.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import importlib
import json
import os
import re
import sys
import traceback
import unittest
import warnings

import _suites

_FIXTURE = re.compile(r"^(\w+) \((.+)\)$")  # unittest's _ErrorHolder: "setUpClass (mod.Cls)"
_PREFIX = _suites.PACKAGE + "."
_DETAIL_MAX = 4000
EXIT_TIMEOUT = 30.0  # seconds the interpreter may take to exit once the tests are done


def short_id(test: unittest.TestCase) -> str:
    """``test_tasks.Class.test_name``; fixtures become ``test_x.Class.setUpClass``."""
    raw = test.id()
    m = _FIXTURE.match(raw)
    if m and not hasattr(test, "_testMethodName"):
        raw = f"{m.group(2)}.{m.group(1)}"
    return raw.removeprefix(_PREFIX)


class _Stream:
    def __init__(self, path: str) -> None:
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the run

    def emit(self, **event: object) -> None:
        self._f.write(json.dumps(event) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class StreamingResult(unittest.TestResult):
    """Collapses each test (subtests included) to its worst outcome and streams it."""

    _RANK = {"pass": 0, "xfail": 0, "skip": 1, "xpass": 2, "fail": 3, "error": 4}

    def __init__(self, stream: _Stream, counter: list[int], test_timeout: float) -> None:
        super().__init__()
        self._stream = stream
        self._counter = counter  # loops created by the factory so far
        self._seen_loops = counter[0]
        self._timeout = test_timeout
        self.current: unittest.TestCase | None = None
        self._outcome = "pass"
        self._details: list[str] = []

    def startTest(self, test):  # noqa: N802 - unittest API
        super().startTest(test)
        self.current, self._outcome, self._details = test, "pass", []
        self._stream.emit(event="start", id=short_id(test))
        if self._timeout > 0:
            faulthandler.dump_traceback_later(self._timeout, exit=True)

    def stopTest(self, test):  # noqa: N802
        if self._timeout > 0:
            faulthandler.cancel_dump_traceback_later()
        super().stopTest(test)
        loops, self._seen_loops = self._counter[0] - self._seen_loops, self._counter[0]
        detail = "\n".join(self._details)[: 2 * _DETAIL_MAX]  # the first error matters most
        self._stream.emit(
            event="result", id=short_id(test), outcome=self._outcome, detail=detail, loops=loops
        )
        self.current = None

    def _record(self, test, outcome: str, detail: str) -> None:
        if test is not self.current:  # class/module fixture: no start/stop of its own
            self._stream.emit(event="result", id=short_id(test), outcome=outcome, detail=detail)
            return
        if self._RANK[outcome] >= self._RANK[self._outcome]:
            self._outcome = outcome
        if detail:
            self._details.append(detail)

    def _fmt(self, err) -> str:
        return "".join(traceback.format_exception(*err))[-_DETAIL_MAX:]

    def addSuccess(self, test):  # noqa: N802
        super().addSuccess(test)

    def addFailure(self, test, err):  # noqa: N802
        super().addFailure(test, err)
        self._record(test, "fail", self._fmt(err))

    def addError(self, test, err):  # noqa: N802
        super().addError(test, err)
        self._record(test, "error", self._fmt(err))

    def addSkip(self, test, reason):  # noqa: N802
        super().addSkip(test, reason)
        self._record(test, "skip", reason)

    def addExpectedFailure(self, test, err):  # noqa: N802
        super().addExpectedFailure(test, err)
        self._record(test, "xfail", "")

    def addUnexpectedSuccess(self, test):  # noqa: N802
        super().addUnexpectedSuccess(test)
        self._record(test, "xpass", "unexpected success of an @expectedFailure test")

    def addSubTest(self, test, subtest, err):  # noqa: N802
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            detail = f"{subtest._subDescription()}\n{self._fmt(err)}"
            self._record(test, "fail" if failed else "error", detail)


def install_loop(mode: str) -> list[int]:
    """Point the default policy class and _suites.loop_factory at the loop under test.

    Returns a one-item list counting the loops the factory has created (ferroloop mode only).
    """
    counter = [0]
    if mode == "asyncio":
        _suites.loop_factory = asyncio.SelectorEventLoop
        return counter
    if os.environ.get("FERROLOOP_CONFORMANCE_FAKE") == "1":
        loop_class = asyncio.SelectorEventLoop
    else:
        import ferroloop

        loop_class = ferroloop.Loop
        threshold = os.environ.get("FERROLOOP_CONFORMANCE_VIRTUAL_TIME")
        if threshold:  # run.py --virtual-time: loops on a jumping virtual clock
            import functools

            import ferroloop.testing

            loop_class = functools.partial(
                ferroloop.testing.new_event_loop, autojump=True, autojump_threshold=float(threshold)
            )

    def factory():
        counter[0] += 1
        return loop_class()

    from asyncio import unix_events

    # 3.10-3.13: _UnixDefaultEventLoopPolicy; 3.14 renames it _DefaultEventLoopPolicy.
    for name in ("_UnixDefaultEventLoopPolicy", "_DefaultEventLoopPolicy"):
        policy_class = getattr(unix_events, name, None)
        if policy_class is not None:
            policy_class._loop_factory = staticmethod(factory)
    _install_policy(os.environ.get("FERROLOOP_CONFORMANCE_POLICY", "default"), factory)
    _suites.loop_factory = factory
    _patch_close_loop()
    return counter


def _install_policy(kind: str, factory) -> None:
    """Make asyncio create policies of another class whenever it makes its default one (at
    first use and after every ``set_event_loop_policy(None)``):

    * ``ferroloop``: ``ferroloop.EventLoopPolicy``, as users install it (its loops count too);
    * ``bare``: a policy derived from ``BaseDefaultEventLoopPolicy`` (as frameworks' are), with
      no child watcher; before 3.14 CPython's subprocess tests set one on the policy, so this
      one fits 3.14 only.
    """
    if kind == "default":
        return
    from asyncio import events, unix_events

    if kind == "ferroloop":
        import ferroloop

        class Policy(ferroloop.EventLoopPolicy):
            def __init__(self) -> None:
                with warnings.catch_warnings():  # deprecated from 3.12 on, as uvloop's
                    warnings.simplefilter("ignore", DeprecationWarning)
                    super().__init__()

            def _loop_factory(self):
                return factory()

            new_event_loop = _loop_factory

    else:
        # Public before 3.14, private from then on.
        base = getattr(events, "BaseDefaultEventLoopPolicy", None)
        base = base or events._BaseDefaultEventLoopPolicy

        class Policy(base):  # type: ignore[no-redef]
            _loop_factory = staticmethod(factory)

    # Where _init_event_loop_policy looks the class up: the package (3.10-3.13) or
    # unix_events (3.14).
    with warnings.catch_warnings():  # 3.14 deprecates the policy API
        warnings.simplefilter("ignore", DeprecationWarning)
        if sys.version_info < (3, 14):
            asyncio.DefaultEventLoopPolicy = Policy
        unix_events._DefaultEventLoopPolicy = Policy
        asyncio.set_event_loop_policy(None)


def _patch_close_loop() -> None:
    """test_utils.TestCase.close_loop reads BaseEventLoop's private ``_default_executor``;
    for other loops, do the same through public API."""
    from test.test_asyncio import utils as test_utils

    original = test_utils.TestCase.close_loop

    def close_loop(loop):
        if hasattr(loop, "_default_executor"):
            return original(loop)
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    test_utils.TestCase.close_loop = staticmethod(close_loop)


def _guard(test: unittest.TestCase) -> None:
    """Charge an exception that escapes unittest's own handling (IsolatedAsyncioTestCase
    sets up and tears down its loop outside it) to the test instead of ending the worker.
    TestCase.__call__ calls ``self.run``, so an instance attribute wraps it."""
    original = test.run

    def run(result=None):
        try:
            return original(result)
        except Exception:
            result.addError(test, sys.exc_info())
            if result.current is test:
                result.stopTest(test)

    test.run = run


def _iter_tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _iter_tests(item)
        else:
            yield item


def build_suite(module: _suites.Module, skip: set[str]) -> unittest.TestSuite:
    mod = importlib.import_module(_suites.PACKAGE + "." + module.name)
    if module.adapter is not None:
        module.adapter(mod)
    loaded = unittest.defaultTestLoader.loadTestsFromModule(mod)
    suite = unittest.TestSuite()
    for test in _iter_tests(loaded):
        sid = short_id(test)
        if sid in skip:
            continue
        class_and_test = sid.removeprefix(module.name + ".")
        if hasattr(test, "_testMethodName") and not module.wants(class_and_test):
            continue
        suite.addTest(test)  # loader errors (_FailedTest) are kept: they must show up
    return suite


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--module", required=True)
    parser.add_argument("--mode", choices=("asyncio", "ferroloop"), required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--skip-file")
    parser.add_argument("--only-file")
    parser.add_argument("--test-timeout", type=float, default=60.0)
    args = parser.parse_args()

    faulthandler.enable()  # a crash in native code still leaves the Python stacks in the log
    if not sys.warnoptions:  # as unittest's runner does: show ResourceWarning and friends
        warnings.simplefilter("default")
    stream = _Stream(args.events)
    counter = install_loop(args.mode)
    module = _suites.find(args.module)
    skip: set[str] = set()
    if args.skip_file:
        with open(args.skip_file, encoding="utf-8") as f:
            skip = {line.strip() for line in f if line.strip()}
    suite = build_suite(module, skip)
    if args.only_file:
        with open(args.only_file, encoding="utf-8") as f:
            only = {line.strip() for line in f if line.strip()}
        suite = unittest.TestSuite(t for t in _iter_tests(suite) if short_id(t) in only)
    for test in _iter_tests(suite):
        _guard(test)
    stream.emit(event="collected", count=suite.countTestCases())
    try:
        suite.run(StreamingResult(stream, counter, args.test_timeout))
        stream.emit(event="done")
    finally:
        stream.close()
    # Interpreter shutdown (joining threads, finalizers) gets a watchdog too: a hang there
    # is a bug users would meet at exit.
    faulthandler.dump_traceback_later(EXIT_TIMEOUT, exit=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
