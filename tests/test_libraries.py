"""Real libraries on each loop: aiohttp, uvicorn (h11 and httptools) with httpx, websockets, anyio.

aiohttp (server and client, WebSocket included) and websockets run over plain TCP and over TLS.

Each scenario is a small but complete use of the library's public API over real sockets (server
and client in the same loop) and runs on asyncio and on ferroloop; the assertions are on what the
application sees. A library that is not installed skips its tests (``make venv`` installs them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from _support import run

HOST = "127.0.0.1"
BIG = bytes(range(256)) * 4096  # 1 MiB, no repeating 1 KiB window


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=[False, True], ids=["plain", "tls"])
def tls(request):
    """None (plain TCP), or (server context, client context) for TLS with a throwaway CA."""
    if not request.param:
        return None
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


# ---- aiohttp: server and client --------------------------------------------------------------


def test_aiohttp_server_and_client(loop, tls):
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    async def hello(request):
        return web.Response(text=f"hello {request.match_info['name']}")

    async def upload(request):
        body = await request.read()
        return web.json_response({"size": len(body), "sha256": _digest(body)})

    async def stream(request):
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(64):
            await response.write(BIG[i * 16384 : (i + 1) * 16384])
        await response.write_eof()
        return response

    async def echo_ws(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data.upper())
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws

    async def main():
        app = web.Application()
        app.router.add_get("/hello/{name}", hello)
        app.router.add_post("/upload", upload)
        app.router.add_get("/stream", stream)
        app.router.add_get("/ws", echo_ws)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0, ssl_context=tls and tls[0])
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        base = f"{'https' if tls else 'http'}://{HOST}:{port}"
        connector = aiohttp.TCPConnector(ssl=tls[1] if tls else False)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                # Keep-alive: several requests on one pooled connection, some concurrent.
                texts = await asyncio.gather(
                    *[_get_text(session, f"{base}/hello/n{i}") for i in range(20)]
                )
                assert texts == [f"hello n{i}" for i in range(20)]
                async with session.post(f"{base}/upload", data=BIG) as resp:
                    assert await resp.json() == {"size": len(BIG), "sha256": _digest(BIG)}
                async with session.get(f"{base}/stream") as resp:
                    assert _digest(await resp.read()) == _digest(BIG)
                async with session.ws_connect(f"{base}/ws") as ws:
                    await ws.send_str("ping")
                    assert (await ws.receive()).data == "PING"
                    await ws.send_bytes(BIG[:70000])
                    assert (await ws.receive()).data == BIG[:70000][::-1]
        finally:
            await runner.cleanup()

    run(loop, main())


async def _get_text(session, url: str) -> str:
    async with session.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


# ---- uvicorn + httpx -------------------------------------------------------------------------


async def _asgi_app(scope, receive, send):
    """Echoes the request body's length and digest; streams 1 MiB on /big."""
    assert scope["type"] == "http"
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(16):
            chunk = BIG[i * 65536 : (i + 1) * 65536]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    text = f"{scope['method']} {scope['path']} {len(body)} {_digest(body)}".encode()
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": text})


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_uvicorn_with_httpx(loop, http):
    uvicorn = pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    pytest.importorskip(http)

    async def main():
        sock = socket.socket()
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            _asgi_app, http=http, lifespan="off", log_level="warning", access_log=False
        )
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            while not server.started:
                assert not serving.done(), serving.exception()
                await asyncio.sleep(0.01)
            async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
                replies = await asyncio.gather(*[client.get(f"/item/{i}") for i in range(20)])
                for i, reply in enumerate(replies):
                    assert reply.status_code == 200
                    assert reply.text == f"GET /item/{i} 0 {_digest(b'')}"
                reply = await client.post("/upload", content=BIG)
                assert reply.text == f"POST /upload {len(BIG)} {_digest(BIG)}"
                reply = await client.get("/big")
                assert _digest(reply.content) == _digest(BIG)
        finally:
            server.should_exit = True
            await serving
            sock.close()

    run(loop, main())


_WORKER_APP = """
import asyncio, os

async def app(scope, receive, send):
    loop = type(asyncio.get_running_loop())
    body = f"{os.getpid()} {loop.__module__}.{loop.__qualname__}".encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""


@pytest.mark.parametrize(
    ("loop_option", "loop_class"),
    [
        ("asyncio", "asyncio.unix_events._UnixSelectorEventLoop"),
        ("ferroloop:new_event_loop", "ferroloop._loop.Loop"),
    ],
    ids=["asyncio", "ferroloop"],
)
def test_uvicorn_workers_with_loop_option(tmp_path, loop_option, loop_class):
    """`uvicorn --loop ferroloop:new_event_loop --workers 2`: each worker process runs the loop."""
    pytest.importorskip("uvicorn")
    if loop_option.startswith("ferroloop"):
        pytest.importorskip("ferroloop")
    (tmp_path / "workerapp.py").write_text(_WORKER_APP)
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "uvicorn", "workerapp:app", "--app-dir", str(tmp_path)]
    command += ["--host", HOST, "--port", str(port), "--workers", "2", "--loop", loop_option]
    command += ["--lifespan", "off", "--log-level", "warning"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        replies = []
        while len(replies) < 10:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "uvicorn did not answer"
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=10) as reply:
                    replies.append(reply.read().decode())
            except OSError:
                time.sleep(0.1)  # not listening yet
        for text in replies:
            pid, served_by = text.split()
            assert int(pid) != proc.pid  # a worker, not the supervisor
            assert served_by == loop_class
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


# ---- websockets ------------------------------------------------------------------------------


def test_websockets_server_and_client(loop, tls):
    pytest.importorskip("websockets")
    try:
        from websockets.asyncio.client import connect
        from websockets.asyncio.server import serve
    except ImportError:  # websockets < 13
        pytest.skip("websockets.asyncio needs websockets >= 13")

    async def echo(ws):
        async for message in ws:
            await ws.send(message[::-1] if isinstance(message, bytes) else message.upper())

    async def main():
        async with serve(echo, HOST, 0, max_size=None, ssl=tls and tls[0]) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            url = f"{'wss' if tls else 'ws'}://{HOST}:{port}"
            async with connect(url, max_size=None, ssl=tls and tls[1]) as ws:
                for i in range(50):
                    await ws.send(f"message {i}")
                    assert await ws.recv() == f"MESSAGE {i}"
                await ws.send(BIG)
                assert await ws.recv() == BIG[::-1]
                # Many messages in flight before reading any reply.
                for i in range(200):
                    await ws.send(str(i))
                assert [await ws.recv() for _ in range(200)] == [str(i) for i in range(200)]

    run(loop, main())


# ---- anyio on the running loop ---------------------------------------------------------------


def test_anyio_streams_tasks_threads_and_cancel_scopes(loop):
    anyio = pytest.importorskip("anyio")

    async def handle(stream):
        async with stream:
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    await stream.send(await stream.receive())

    async def main():
        listener = await anyio.create_tcp_listener(local_host=HOST, local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            async with await anyio.connect_tcp(HOST, port) as client:
                await client.send(b"abc")
                assert await client.receive() == b"abc"
                await client.send(BIG)
                received = b""
                while len(received) < len(BIG):
                    received += await client.receive()
                assert received == BIG
            assert await anyio.to_thread.run_sync(sum, [1, 2, 3]) == 6
            with anyio.move_on_after(0.05) as scope:
                await anyio.sleep(10)
            assert scope.cancelled_caught
            tg.cancel_scope.cancel()
        await listener.aclose()

    run(loop, main())
