"""A busy process to watch with ``python -m ferroloop top``.

    python examples/health_top.py            # prints its pid, runs until Ctrl-C
    python -m ferroloop top PID              # in another terminal
    python examples/health_top.py --once     # or: serve, print one frame of top, exit

Two loops (one per thread) run tasks of different weight; one task sometimes blocks its loop
with ``time.sleep``. The process opens its health socket (``ferroloop.health.serve``) and turns
per-task accounting on, so ``top`` shows lag, utilization, the busiest tasks and the blocks.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import ferroloop
import ferroloop.health


async def light(n: int) -> None:
    while True:
        await asyncio.sleep(0.001 * n)


async def heavy() -> None:
    while True:
        sum(range(20_000))  # a little CPU per step
        await asyncio.sleep(0)


async def sometimes_blocks() -> None:
    while True:
        await asyncio.sleep(2)
        time.sleep(0.3)  # blocks the loop: reported, with this line


async def serve_loop(blocker: bool) -> None:
    tasks = [asyncio.create_task(light(n), name=f"light-{n}") for n in range(1, 6)]
    tasks.append(asyncio.create_task(heavy(), name="heavy"))
    if blocker:
        tasks.append(asyncio.create_task(sometimes_blocks(), name="blocker"))
    await asyncio.gather(*tasks)


def main() -> None:
    ferroloop.health.track_tasks(True)
    path = ferroloop.health.serve()
    print(f"pid {os.getpid()}, health socket {path}", flush=True)
    threading.Thread(target=ferroloop.run, args=(serve_loop(False),), daemon=True).start()
    if "--once" in sys.argv:
        from ferroloop import _top

        def show() -> None:
            time.sleep(2.5)
            _top.main(["--once", "--socket", path])
            os._exit(0)

        threading.Thread(target=show, daemon=True).start()
    try:
        ferroloop.run(serve_loop(True))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
