"""A loop blocked by a synchronous call, caught while it is blocked.

    python examples/blocked_loop.py

A request handler calls ``time.sleep`` (standing in for a sync database driver or a CPU-bound
parser). ferroloop's watchdog names the line while the loop is stuck, then says how long it was
stuck once it recovers; ``loop.health()`` shows the damage in the timer lag.
"""

from __future__ import annotations

import asyncio
import logging
import time

import ferroloop


def parse_report(size: int) -> int:
    time.sleep(0.4)  # the culprit: a blocking call inside the event loop
    return size


async def handle_request(n: int) -> int:
    await asyncio.sleep(0.01)
    if n == 3:
        return parse_report(n)
    return n


async def ticker(ticks: list[float]) -> None:
    for _ in range(40):
        ticks.append(time.monotonic())
        await asyncio.sleep(0.01)


async def main() -> None:
    loop = asyncio.get_running_loop()
    ferroloop.health.set_block_threshold(0.1)
    before = loop.health()
    ticks: list[float] = []
    tick = asyncio.create_task(ticker(ticks), name="ticker")
    for n in range(6):
        await asyncio.create_task(handle_request(n), name=f"request-{n}")
    await tick
    window = loop.health() - before
    lag = window.timer_lag
    print(
        f"\nover the run: {window.callbacks} callbacks, utilization {window.utilization:.0%}, "
        f"timer lag p50 {lag.p50 * 1e3:.1f} ms, max {lag.max * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ferroloop.run(main())
