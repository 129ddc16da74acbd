"""Micro benchmarks of event-loop primitives.

Each benchmark is a function ``bench(new_loop, scale) -> float``: it makes a fresh loop with
``new_loop()``, runs its workload, checks the workload really completed, closes the loop and
returns operations per second. Only the workload is timed, not making or closing the loop.
``scale`` multiplies the default sizes (the ones the published figures use).

One measurement per process, as benchmarks/run.py does it::

    python benchmarks/micro.py call_soon --loop uvloop --scale 0.5   # prints one JSON line
    python benchmarks/micro.py --probe ferroloop                     # version, or import error
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from time import perf_counter

from loops import LoopFactory, factory, version

SEED = 20240601


def _size(default: int, scale: float) -> int:
    return max(1, int(default * scale))


def _run_timed(loop: asyncio.AbstractEventLoop, start: Callable[[], None]) -> float:
    """Schedule ``start`` and run the loop until something stops it; return seconds taken."""
    try:
        t0 = perf_counter()
        loop.call_soon(start)
        loop.run_forever()
        return perf_counter() - t0
    finally:
        loop.close()


def _run_coro_timed(new_loop: LoopFactory, main: Callable[[asyncio.AbstractEventLoop], object]):
    """Run coroutine ``main(loop)`` to completion on a fresh loop; return (result, seconds)."""
    loop = new_loop()
    try:
        coro = main(loop)
        t0 = perf_counter()
        result = loop.run_until_complete(coro)
        return result, perf_counter() - t0
    finally:
        loop.close()


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(f"workload did not complete: {what}")


def call_soon(new_loop: LoopFactory, scale: float = 1.0) -> float:
    """call_soon throughput: 500k no-op callbacks scheduled in batches of 1000, then run."""
    total, batch = _size(500_000, scale), 1000
    loop = new_loop()
    counter = itertools.count()
    tick = counter.__next__  # a C callable: the loop's own overhead dominates
    scheduled = 0

    def feed() -> None:
        nonlocal scheduled
        n = min(batch, total - scheduled)
        for _ in range(n):
            loop.call_soon(tick)
        scheduled += n
        loop.call_soon(feed if scheduled < total else loop.stop)

    seconds = _run_timed(loop, feed)
    _check(next(counter) == total, f"call_soon ran {total} callbacks")
    return total / seconds


def call_later(new_loop: LoopFactory, scale: float = 1.0) -> float:
    """call_later churn: 100k timers at random 0-10 ms delays, every other one cancelled.

    Timers are scheduled 1000 per loop iteration, so firing and scheduling interleave; the run
    ends when the last live timer fires, so it includes an idle tail of up to 10 ms.
    """
    total, batch = _size(100_000, scale), 1000
    rng = random.Random(SEED)
    delays = [rng.uniform(0.0, 0.010) for _ in range(total)]
    loop = new_loop()
    live = (total + 1) // 2  # even indices stay live
    scheduled = 0

    def fired() -> None:
        nonlocal live
        live -= 1
        if not live:
            loop.stop()

    def feed() -> None:
        nonlocal scheduled
        end = min(scheduled + batch, total)
        later = loop.call_later
        for i in range(scheduled, end):
            handle = later(delays[i], fired)
            if i & 1:
                handle.cancel()
        scheduled = end
        if scheduled < total:
            loop.call_soon(feed)

    seconds = _run_timed(loop, feed)
    _check(live == 0 and scheduled == total, "call_later fired every live timer")
    return total / seconds


async def _noop() -> None:
    pass


def gather(new_loop: LoopFactory, scale: float = 1.0) -> float:
    """create_task + gather of 100k trivial coroutines."""
    n = _size(100_000, scale)

    async def main(loop: asyncio.AbstractEventLoop) -> list:
        return await asyncio.gather(*[loop.create_task(_noop()) for _ in range(n)])

    result, seconds = _run_coro_timed(new_loop, main)
    _check(len(result) == n, f"gather of {n} tasks")
    return n / seconds


async def _player(loop: asyncio.AbstractEventLoop, mine: list, peers: list, rounds: int) -> int:
    """Create a future, wake the peer (resolve its future) and await ours, ``rounds`` times."""
    woken = 0
    for _ in range(rounds):
        fut = loop.create_future()
        mine[0] = fut
        peer, peers[0] = peers[0], None
        if peer is not None:
            peer.set_result(None)
            woken += 1
        await fut
    peer, peers[0] = peers[0], None
    if peer is not None:  # the peer's last wait
        peer.set_result(None)
        woken += 1
    return woken


def ping_pong(new_loop: LoopFactory, scale: float = 1.0) -> float:
    """Two tasks hand control back and forth through futures, 200k hand-offs in all."""
    rounds = _size(100_000, scale)
    a: list = [None]
    b: list = [None]

    async def main(loop: asyncio.AbstractEventLoop) -> list:
        return await asyncio.gather(_player(loop, a, b, rounds), _player(loop, b, a, rounds))

    woken, seconds = _run_coro_timed(new_loop, main)
    _check(sum(woken) == 2 * rounds, f"ping-pong of {2 * rounds} hand-offs")
    return 2 * rounds / seconds


def threadsafe(new_loop: LoopFactory, scale: float = 1.0, threads: int = 4) -> float:
    """call_soon_threadsafe from 4 threads posting 50k callbacks each; the loop counts them."""
    per_thread = _size(50_000, scale)
    total = per_thread * threads
    loop = new_loop()
    left = total

    def arrived() -> None:
        nonlocal left
        left -= 1
        if not left:
            loop.stop()

    def post() -> None:
        send = loop.call_soon_threadsafe
        for _ in range(per_thread):
            send(arrived)

    workers = [threading.Thread(target=post) for _ in range(threads)]

    def start() -> None:
        for worker in workers:
            worker.start()

    seconds = _run_timed(loop, start)
    for worker in workers:
        worker.join()
    _check(left == 0, f"{total} threadsafe callbacks arrived")
    return total / seconds


def sleep0(new_loop: LoopFactory, scale: float = 1.0) -> float:
    """A tight ``await asyncio.sleep(0)`` loop, 200k iterations."""
    n = _size(200_000, scale)

    async def main(loop: asyncio.AbstractEventLoop) -> int:
        done = 0
        for _ in range(n):
            await asyncio.sleep(0)
            done += 1
        return done

    done, seconds = _run_coro_timed(new_loop, main)
    _check(done == n, f"{n} sleep(0)")
    return n / seconds


def spawn(new_loop: LoopFactory, scale: float = 1.0) -> float:
    """400 children running ``true``, 16 at a time, each awaited (``create_subprocess_exec``)."""
    n = _size(400, scale)

    async def main(loop: asyncio.AbstractEventLoop) -> int:
        sem = asyncio.Semaphore(16)

        async def one() -> int:
            async with sem:
                proc = await asyncio.create_subprocess_exec("true")
                return await proc.wait()

        codes = await asyncio.gather(*(one() for _ in range(n)))
        return codes.count(0)

    done, seconds = _run_coro_timed(new_loop, main)
    _check(done == n, f"{n} children exited 0")
    return n / seconds


def _cross_cpu() -> tuple[int, int] | None:
    """(parent CPU, child CPU): two different CPUs this process may use, or None."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return (cpus[0], cpus[1]) if len(cpus) > 1 else None


def _child(argv: list[str], cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


def _on_cpus(run: Callable[[LoopFactory, float, int | None], float]):
    """The point ``run`` with the parent on one CPU and the child on another (a child
    inherits its parent's CPU, which hides the cross-CPU wake-ups of pipes)."""

    def cross(new_loop: LoopFactory, scale: float = 1.0) -> float:
        cpus = _cross_cpu()
        if cpus is None:
            return run(new_loop, scale, None)
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpus[0]})
        try:
            return run(new_loop, scale, cpus[1])
        finally:
            os.sched_setaffinity(0, before)

    return cross


def pipe_read(new_loop: LoopFactory, scale: float = 1.0, child_cpu: int | None = None) -> float:
    """A child's stdout read through ``StreamReader.read(64 KiB)``: 2.5 GiB of
    ``head -c N /dev/zero``; one op is one MiB."""
    mib = _size(2560, scale)

    async def main(loop: asyncio.AbstractEventLoop) -> int:
        proc = await asyncio.create_subprocess_exec(
            *_child(["head", "-c", str(mib << 20), "/dev/zero"], child_cpu),
            stdout=asyncio.subprocess.PIPE,
        )
        total = await _read_all(proc.stdout)
        await proc.wait()
        return total

    total, seconds = _run_coro_timed(new_loop, main)
    _check(total == mib << 20, f"{mib} MiB read")
    return mib / seconds


def pipe_write(new_loop: LoopFactory, scale: float = 1.0, child_cpu: int | None = None) -> float:
    """A child's stdin written through ``StreamWriter.write`` + ``drain()`` in 64 KiB
    chunks: 2.5 GiB into ``cat > /dev/null``; one op is one MiB."""
    mib = _size(2560, scale)

    async def main(loop: asyncio.AbstractEventLoop) -> int:
        proc = await asyncio.create_subprocess_exec(
            *_child(["sh", "-c", "exec cat > /dev/null"], child_cpu), stdin=asyncio.subprocess.PIPE
        )
        await _write_mib(proc.stdin, mib)
        return await proc.wait()

    code, seconds = _run_coro_timed(new_loop, main)
    _check(code == 0, f"{mib} MiB written")
    return mib / seconds


async def _write_mib(writer: asyncio.StreamWriter, mib: int) -> None:
    """``mib`` MiB through ``writer`` in 64 KiB ``write()`` + ``drain()`` steps, then close."""
    chunk = bytes(65536)
    for _ in range(mib * 16):
        writer.write(chunk)
        await writer.drain()
    writer.close()


async def _read_all(reader: asyncio.StreamReader) -> int:
    """Bytes read from ``reader`` in ``read(64 KiB)`` steps until its end."""
    total = 0
    while chunk := await reader.read(65536):
        total += len(chunk)
    return total


async def _open_blocking(path: str, flags: int) -> int:
    """Opens a FIFO end, which waits for the other end's process (a thread, so the loop runs)."""
    fd = await asyncio.to_thread(os.open, path, flags)
    os.set_blocking(fd, False)
    return fd


def fifo_write(new_loop: LoopFactory, scale: float = 1.0, child_cpu: int | None = None) -> float:
    """``connect_write_pipe`` over a FIFO that a child drains with ``cat > /dev/null``,
    through ``StreamWriter.write`` + ``drain()`` in 64 KiB chunks; one op is one MiB."""
    mib = _size(2560, scale)

    async def main(loop: asyncio.AbstractEventLoop) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "fifo")
            os.mkfifo(path)
            argv = _child(["sh", "-c", 'exec cat "$0" > /dev/null', path], child_cpu)
            proc = await asyncio.create_subprocess_exec(*argv)
            pipe = os.fdopen(await _open_blocking(path, os.O_WRONLY), "wb", buffering=0)
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, pipe
            )
            await _write_mib(asyncio.StreamWriter(transport, protocol, None, loop), mib)
            return await proc.wait()

    code, seconds = _run_coro_timed(new_loop, main)
    _check(code == 0, f"{mib} MiB written")
    return mib / seconds


def fifo_read(new_loop: LoopFactory, scale: float = 1.0, child_cpu: int | None = None) -> float:
    """``connect_read_pipe`` over a FIFO that a child fills with ``head -c N /dev/zero``,
    through ``StreamReader.read(64 KiB)``; one op is one MiB."""
    mib = _size(2560, scale)

    async def main(loop: asyncio.AbstractEventLoop) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "fifo")
            os.mkfifo(path)
            argv = ["sh", "-c", 'exec head -c "$1" /dev/zero > "$0"', path, str(mib << 20)]
            proc = await asyncio.create_subprocess_exec(*_child(argv, child_cpu))
            pipe = os.fdopen(await _open_blocking(path, os.O_RDONLY), "rb", buffering=0)
            reader = asyncio.StreamReader(limit=1 << 20)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
            total = await _read_all(reader)
            await proc.wait()
            return total

    total, seconds = _run_coro_timed(new_loop, main)
    _check(total == mib << 20, f"{mib} MiB read")
    return mib / seconds


def pair_write(new_loop: LoopFactory, scale: float = 1.0, child_cpu: int | None = None) -> float:
    """A Unix socket pair whose other end is a child's stdin (``cat > /dev/null``), written
    through ``open_connection(sock=...)``'s ``StreamWriter`` in 64 KiB chunks; one op is one MiB."""
    mib = _size(2560, scale)

    async def main(loop: asyncio.AbstractEventLoop) -> int:
        ours, theirs = socket.socketpair()
        with theirs:
            proc = await asyncio.create_subprocess_exec(
                *_child(["sh", "-c", "exec cat > /dev/null"], child_cpu), stdin=theirs.fileno()
            )
        _, writer = await asyncio.open_connection(sock=ours)
        await _write_mib(writer, mib)
        return await proc.wait()

    code, seconds = _run_coro_timed(new_loop, main)
    _check(code == 0, f"{mib} MiB written")
    return mib / seconds


def pair_read(new_loop: LoopFactory, scale: float = 1.0, child_cpu: int | None = None) -> float:
    """A Unix socket pair whose other end is a child's stdout (``head -c N /dev/zero``), read
    through ``open_connection(sock=...)``'s ``StreamReader.read(64 KiB)``; one op is one MiB."""
    mib = _size(2560, scale)

    async def main(loop: asyncio.AbstractEventLoop) -> int:
        ours, theirs = socket.socketpair()
        with theirs:
            proc = await asyncio.create_subprocess_exec(
                *_child(["head", "-c", str(mib << 20), "/dev/zero"], child_cpu),
                stdout=theirs.fileno(),
            )
        reader, writer = await asyncio.open_connection(sock=ours, limit=1 << 20)
        total = await _read_all(reader)
        writer.close()
        await proc.wait()
        return total

    total, seconds = _run_coro_timed(new_loop, main)
    _check(total == mib << 20, f"{mib} MiB read")
    return mib / seconds


# name -> (benchmark, title). Order is the row order of every report.
BENCHMARKS: dict[str, tuple[Callable[[LoopFactory, float], float], str]] = {
    "call_soon": (call_soon, "call_soon"),
    "call_later": (call_later, "call_later churn"),
    "gather": (gather, "create_task + gather"),
    "ping_pong": (ping_pong, "future ping-pong"),
    "threadsafe": (threadsafe, "call_soon_threadsafe, 4 threads"),
    "sleep0": (sleep0, "sleep(0) loop"),
    "spawn": (spawn, "spawn 400 x true, 16 at a time"),
    "pipe_read": (pipe_read, "child stdout via StreamReader, MiB"),
    "pipe_write": (pipe_write, "child stdin via StreamWriter, MiB"),
    # The same with parent and child on two CPUs, whatever --pin says (uvloop's children get a
    # socket pair, not a pipe: docs/performance.md).
    "pipe_read_xcpu": (_on_cpus(pipe_read), "child stdout, child on another CPU, MiB"),
    "pipe_write_xcpu": (_on_cpus(pipe_write), "child stdin, child on another CPU, MiB"),
    # The other stream paths a byte can take to or from another process, cross-CPU too.
    "fifo_read_xcpu": (_on_cpus(fifo_read), "FIFO via connect_read_pipe, other CPU, MiB"),
    "fifo_write_xcpu": (_on_cpus(fifo_write), "FIFO via connect_write_pipe, other CPU, MiB"),
    "pair_read_xcpu": (_on_cpus(pair_read), "socket pair via open_connection, other CPU, MiB"),
    "pair_write_xcpu": (_on_cpus(pair_write), "socket pair written, other CPU, MiB"),
}


def measure(bench: str, loop: str, scale: float, warmup: bool = True) -> float:
    """One measurement of ``bench`` on ``loop``, after a warm-up run at a tenth of the size."""
    run, new_loop = BENCHMARKS[bench][0], factory(loop)
    if warmup:
        run(new_loop, scale / 10)
    return run(new_loop, scale)


def _probe(loop: str) -> dict:
    try:
        factory(loop)().close()
        return {"loop": loop, "version": version(loop)}
    except Exception as exc:  # report why the loop is unusable, whatever it is
        return {"loop": loop, "error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", nargs="?", choices=list(BENCHMARKS))
    parser.add_argument("--loop", default="asyncio")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--pin", type=int, metavar="CPU", help="pin this process to one CPU")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    parser.add_argument("--probe", metavar="LOOP", help="print LOOP's version or import error")
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(_probe(args.probe)))
        return 0
    if args.bench is None:
        parser.error("a benchmark name or --probe is required")
    if args.pin is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.pin})
    ops = measure(args.bench, args.loop, args.scale, args.warmup)
    print(json.dumps({"bench": args.bench, "loop": args.loop, "ops_per_s": ops}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
