"""Smoke test of an installed wheel: it imports from site-packages and runs a loop.

Run with `python -I` from outside the checkout (.ci/wheels test does), so that the source tree
cannot be what is imported.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import sys
import sysconfig

import ferroloop
import ferroloop._ferroloop as native

site = os.path.realpath(sysconfig.get_paths()["platlib"])
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
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "print('child')", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    return f"{answer.decode().strip()} {await fired} {out.decode().strip()}"


result = ferroloop.run(main())
assert result == "ping timer child", result
print(f"ferroloop {ferroloop.__version__} from {os.path.dirname(ferroloop.__file__)}: {result}")
