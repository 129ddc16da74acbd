"""The real-application workloads of `make bench-apps`: one process each, on a loop chosen by name.

Two roles, both run by benchmarks/apps.py in their own processes::

    python benchmarks/apps_cases.py serve uvicorn --loop ferroloop     # prints "READY <port> <pid>"
    python benchmarks/apps_cases.py client redis_pipeline --loop uvloop --target 6379 --seconds 3

A server (``serve``) listens on 127.0.0.1 (port chosen by the system), prints one READY line once
it accepts and serves until it is killed. A client measures for ``--seconds`` after a short
warm-up and prints one JSON line: ``{"ops": units done, "seconds": measured wall time}``; the
unit is the case's (requests, commands, queries, messages, bytes).

Clients: ``redis_pipeline`` (redis.asyncio, pipelines of 200 SET/GET commands, 4 tasks),
``redis_setget`` (SET then GET from 32 tasks), ``asyncpg`` (a pool of 16 connections,
``SELECT $1::int`` from 32 tasks), ``aiohttp_client`` (ClientSession, GETs from 64 tasks over 64
connections), ``httpx_client`` (AsyncClient, GETs from 16 tasks), ``subprocess_pipe`` (8 MiB
through ``cat`` with create_subprocess_exec) and ``ws_client`` (websockets, 16 connections each
echoing 256-byte messages: the load of the websockets case, always on uvloop).
Servers: ``uvicorn`` (uvicorn with httptools + a Starlette JSON endpoint), ``aiohttp``
(aiohttp.web JSON endpoint), ``websockets`` (echo) and ``http`` (the plain httptools server of
servers.py, the fixed target of the HTTP clients).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable

from loops import factory

HOST = "127.0.0.1"
WARMUP_S = 0.5
PR_SET_PDEATHSIG = 1
PIPE_BYTES = 8 << 20
PIPELINE = 200
Op = Callable[[], Awaitable[int]]


async def measure(ops: list[Op], seconds: float) -> dict:
    """Run each op in its own task, again and again; count units after a warm-up."""
    done = [0]
    stop = False

    async def worker(op: Op) -> None:
        while not stop:
            units = await op()  # not `done[0] += await op()`: that reads done[0] before awaiting
            done[0] += units

    tasks = [asyncio.ensure_future(worker(op)) for op in ops]
    await asyncio.sleep(WARMUP_S)
    start_ops, start = done[0], time.perf_counter()
    await asyncio.sleep(seconds)
    end_ops, end = done[0], time.perf_counter()
    stop = True
    await asyncio.gather(*tasks)
    return {"ops": end_ops - start_ops, "seconds": end - start}


# ---------------------------------------------------------------------------------------------
# Clients


async def redis_pipeline(target: str, seconds: float) -> dict:
    import redis.asyncio as aioredis

    client = aioredis.Redis(host=HOST, port=int(target))
    value = b"x" * 64

    async def op() -> int:
        pipe = client.pipeline(transaction=False)
        for i in range(PIPELINE // 2):
            pipe.set(f"p{i}", value)
            pipe.get(f"p{i}")
        await pipe.execute()
        return PIPELINE

    try:
        return await measure([op] * 4, seconds)
    finally:
        await client.aclose()


async def redis_setget(target: str, seconds: float) -> dict:
    import redis.asyncio as aioredis

    client = aioredis.Redis(host=HOST, port=int(target), max_connections=32)
    value = b"x" * 64

    def op_for(n: int) -> Op:
        async def op() -> int:
            await client.set(f"k{n}", value)
            await client.get(f"k{n}")
            return 2

        return op

    try:
        return await measure([op_for(n) for n in range(32)], seconds)
    finally:
        await client.aclose()


async def asyncpg_queries(target: str, seconds: float) -> dict:
    import asyncpg

    pool = await asyncpg.create_pool(
        host=HOST, port=int(target), user="postgres", database="postgres", min_size=16, max_size=16
    )

    def op_for(n: int) -> Op:
        async def op() -> int:
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT $1::int", n)
            return 1

        return op

    try:
        return await measure([op_for(n) for n in range(32)], seconds)
    finally:
        await pool.close()


async def aiohttp_client(target: str, seconds: float) -> dict:
    import aiohttp

    url = f"http://{HOST}:{target}/"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def op() -> int:
            async with session.get(url) as response:
                await response.read()
            return 1

        return await measure([op] * 64, seconds)


async def httpx_client(target: str, seconds: float) -> dict:
    import httpx

    url = f"http://{HOST}:{target}/"
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(limits=limits) as client:

        async def op() -> int:
            response = await client.get(url)
            response.read()
            return 1

        return await measure([op] * 16, seconds)


async def subprocess_pipe(target: str, seconds: float) -> dict:
    payload = b"x" * PIPE_BYTES

    async def op() -> int:
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate(payload)
        if len(out) != PIPE_BYTES:
            raise RuntimeError(f"cat gave back {len(out)} bytes of {PIPE_BYTES}")
        return PIPE_BYTES

    return await measure([op], seconds)


async def ws_client(target: str, seconds: float) -> dict:
    from websockets.asyncio.client import connect

    message = b"m" * 256
    conns = [await connect(f"ws://{HOST}:{target}/", compression=None) for _ in range(16)]

    def op_for(ws) -> Op:
        async def op() -> int:
            await ws.send(message)
            await ws.recv()
            return 1

        return op

    try:
        return await measure([op_for(ws) for ws in conns], seconds)
    finally:
        for ws in conns:
            await ws.close()


CLIENTS: dict[str, Callable[[str, float], Awaitable[dict]]] = {
    "redis_pipeline": redis_pipeline,
    "redis_setget": redis_setget,
    "asyncpg": asyncpg_queries,
    "aiohttp_client": aiohttp_client,
    "httpx_client": httpx_client,
    "subprocess_pipe": subprocess_pipe,
    "ws_client": ws_client,
}


# ---------------------------------------------------------------------------------------------
# Servers


def _listening_socket() -> socket.socket:
    # IPPROTO_TCP, as loop.create_server(host, port) makes it (what `uvicorn app:app` and
    # TCPSite get): asyncio sets TCP_NODELAY only on sockets whose proto says TCP.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(1024)
    return sock


def _ready(sock: socket.socket) -> None:
    print(f"READY {sock.getsockname()[1]} {os.getpid()}", flush=True)


async def serve_uvicorn() -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request) -> JSONResponse:
        return JSONResponse({"message": "hello", "id": 1})

    app = Starlette(routes=[Route("/", hello)])
    config = uvicorn.Config(
        app, http="httptools", loop="none", lifespan="off", access_log=False, log_level="warning"
    )
    server = uvicorn.Server(config)
    sock = _listening_socket()
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    _ready(sock)
    await serving


async def serve_aiohttp() -> None:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"message": "hello", "id": 1})

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = _listening_socket()
    await web.SockSite(runner, sock).start()
    _ready(sock)
    await asyncio.Event().wait()


async def serve_websockets() -> None:
    from websockets.asyncio.server import serve

    async def echo(ws) -> None:
        async for message in ws:
            await ws.send(message)

    sock = _listening_socket()
    async with serve(echo, sock=sock, compression=None):
        _ready(sock)
        await asyncio.Event().wait()


SERVERS: dict[str, Callable[[], Awaitable[None]]] = {
    "uvicorn": serve_uvicorn,
    "aiohttp": serve_aiohttp,
    "websockets": serve_websockets,
}


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["serve", "client"])
    parser.add_argument("case", choices=[*CLIENTS, *SERVERS])
    parser.add_argument("--loop", default="asyncio")
    parser.add_argument("--target", default="", help="the port (or other target) of a client")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    _die_with_parent()
    loop = factory(args.loop)()
    asyncio.set_event_loop(loop)
    try:
        if args.role == "serve":
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            loop.run_until_complete(SERVERS[args.case]())
        else:
            result = loop.run_until_complete(CLIENTS[args.case](args.target, args.seconds))
            print(json.dumps(result), flush=True)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
