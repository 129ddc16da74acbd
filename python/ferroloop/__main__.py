"""``python -m ferroloop script.py [args...]``: run a script with ferroloop as its loop.

The script's ``asyncio.run``, ``asyncio.new_event_loop`` and
``asyncio.get_event_loop`` all get ferroloop loops.

``python -m ferroloop top PID``: a live view of a running ferroloop process's
loops (``ferroloop._top``). A script named ``top`` runs as ``./top``.
"""

from __future__ import annotations

import runpy
import sys


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
        sys.argv = argv
        sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
