"""Smoke test of an installed wheel: it imports from site-packages and runs a loop.

Run with `python -I` from outside the checkout (.ci/wheels test does), so that the source tree
cannot be what is imported. `--site DIR`: the wheel was unpacked into DIR instead (on PYTHONPATH);
`--no-subprocess`: skip the child process (under qemu-user, where the interpreter cannot exec
itself without binfmt).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import sys
import sysconfig

import ferroloop
import ferroloop._ferroloop as native

args = sys.argv[1:]
spawn = "--no-subprocess" not in args
site = args[args.index("--site") + 1] if "--site" in args else sysconfig.get_paths()["platlib"]
site = os.path.realpath(site)
for module in (ferroloop, native):
    where = os.path.realpath(module.__file__)
    assert where.startswith(site + os.sep), f"{module.__name__} from {where}, not {site}"

version = importlib.metadata.version("ferroloop")
assert ferroloop.__version__ == version, (ferroloop.__version__, version)


async def main() -> str:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ferroloop.Loop), type(loop)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping\n")
    answer = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    server.close()
    await server.wait_closed()

    fired = loop.create_future()
    loop.call_later(0.01, fired.set_result, "timer")
    out = b"child"
    if spawn:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print('child')", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await child.communicate()
    return f"{answer.decode().strip()} {await fired} {out.decode().strip()}"


result = ferroloop.run(main())
assert result == "ping timer child", result
machine = os.uname().machine
where = os.path.dirname(ferroloop.__file__)
print(f"ferroloop {ferroloop.__version__} on {machine} from {where}: {result}")
