"""Subprocesses through asyncio's API, on asyncio and ferroloop alike.

On 3.14 there are no child watchers in the policy: the loop brings its own.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from _support import run

PY = sys.executable


def test_exec_communicate_and_returncode(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY,
            "-c",
            "import sys; data = sys.stdin.read(); sys.stdout.write(data.upper()); sys.exit(3)",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(b"hello")
        return out, err, proc.returncode

    assert run(loop, main()) == (b"HELLO", None, 3)


def test_shell_with_stderr_to_stdout(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "echo out; echo err >&2",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        return sorted(out.split()), await proc.wait()

    assert run(loop, main()) == ([b"err", b"out"], 0)


def test_kill_reports_the_signal(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", "import time; time.sleep(60)")
        proc.kill()
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGKILL


def test_many_children_at_once(loop):
    async def child(i):
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", f"print({i})", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return int(out)

    async def main():
        return await asyncio.gather(*(child(i) for i in range(8)))

    assert run(loop, main()) == list(range(8))
