"""``python -m ferroloop script.py [args...]``: run a script with ferroloop as its loop.

The script's ``asyncio.run``, ``asyncio.new_event_loop`` and
``asyncio.get_event_loop`` all get ferroloop loops.

``python -m ferroloop top PID``: a live view of a running ferroloop process's
loops (``ferroloop._top``). A script named ``top`` runs as ``./top``.
"""

from __future__ import annotations

import builtins
import io
import os
import runpy
import sys
import types
import zipfile


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: python -m ferroloop script.py [args...]\n"
            "       python -m ferroloop -m module [args...]\n"
            "       python -m ferroloop top [--socket PATH] [--once] [PID]",
            file=sys.stderr,
        )
        return 2
    if argv[0] == "top":
        from . import _top

        return _top.main(argv[1:])
    from . import _patch

    _patch.install_everywhere()
    if argv[0] == "-m":
        if len(argv) < 2:
            print("python -m ferroloop: -m needs a module name", file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        return _run_script(argv)
    return 0


def _exec_as_main(path: str) -> None:
    """Run the file at ``path`` as the ``__main__`` module, as the interpreter runs a script."""
    from importlib.machinery import SourceFileLoader

    with io.open_code(path) as f:
        code = compile(f.read(), path, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=path,
        __loader__=SourceFileLoader("__main__", path),
        __builtins__=builtins,
        __cached__=None,
    )
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


def _run_script(argv: list[str]) -> int:
    """``python script.py``, as CPython runs it: ``__file__`` absolute, the script's directory
    (not the current one) first on ``sys.path``, a missing script one line and status 2, and an
    uncaught exception's traceback starting at the script."""
    path = os.path.abspath(argv[0])
    if not os.path.exists(path):
        program = (getattr(sys, "orig_argv", None) or [sys.executable])[0]
        print(f"{program}: can't open file {path!r}: [Errno 2] No such file or directory",
              file=sys.stderr)  # fmt: skip
        return 2
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(path)
    try:
        if os.path.isfile(path) and not zipfile.is_zipfile(path):
            _exec_as_main(path)
        else:  # a directory or zip file with a __main__.py
            runpy.run_path(path, run_name="__main__")
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 - reported as the interpreter reports it
        tb = exc.__traceback__
        # Drop this module's and runpy's frames: the traceback starts in the script.
        while tb is not None and tb.tb_frame.f_code.co_filename != path:
            tb = tb.tb_next
        tb = tb or exc.__traceback__
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
