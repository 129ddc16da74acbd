"""Database clients on each loop: asyncpg against PostgreSQL, redis-py against Redis.

The servers are real (tests/_services.py starts the ones installed on the machine, once per
module). Each scenario runs on asyncio and on ferroloop and asserts what the application sees.
These clients lean on loop details that micro-benchmarks never touch: asyncpg asks for TLS
first and, when the server declines, swaps the protocol of the live transport
(``set_protocol``), writes memoryviews, cancels a running query over a second connection and
reads large results through flow control; redis-py runs over asyncio streams and pipelines
many commands per write.
"""

from __future__ import annotations

import asyncio
import io
import uuid

import pytest
from _services import HOST, postgres, redis
from _support import run

asyncpg = pytest.importorskip("asyncpg")
aioredis = pytest.importorskip("redis.asyncio")

BIG = bytes(range(256)) * 4096  # 1 MiB, no repeating 1 KiB window
GUARD_S = 20.0


@pytest.fixture(scope="module")
def pg():
    with postgres() as server:
        yield server


@pytest.fixture(scope="module")
def rd():
    with redis() as server:
        yield server


def _pg_tcp(pg) -> dict:
    # ssl="prefer" is asyncpg's default for TCP: the SSLRequest is declined by the server.
    return {"host": HOST, "port": pg.port, "user": "postgres", "database": "postgres"}


def _pg_unix(pg) -> dict:
    return {"host": pg.socket_dir, "port": pg.port, "user": "postgres", "database": "postgres"}


# ---- asyncpg ---------------------------------------------------------------------------------


def test_asyncpg_queries_types_and_large_values(loop, pg):
    async def main():
        conn = await asyncpg.connect(**_pg_tcp(pg))
        try:
            assert await conn.fetchval("SELECT 1 + 1") == 2
            await conn.execute("CREATE TEMP TABLE t (id int PRIMARY KEY, name text, blob bytea)")
            rows = [(i, f"n{i}", bytes([i % 256]) * i) for i in range(500)]
            await conn.executemany("INSERT INTO t VALUES ($1, $2, $3)", rows)
            got = await conn.fetch(
                "SELECT id, name, length(blob) FROM t WHERE id % 100 = 0 ORDER BY id"
            )
            assert [tuple(r) for r in got] == [(i, f"n{i}", i) for i in range(0, 500, 100)]
            stmt = await conn.prepare("SELECT name FROM t WHERE id = $1")
            assert [await stmt.fetchval(i) for i in (1, 250, 499)] == ["n1", "n250", "n499"]
            # 1 MiB each way in one message: partial writes and reads on both sides.
            assert await conn.fetchval("SELECT $1::bytea", BIG) == BIG
            # A large result read through a cursor, 1000 rows per round trip.
            count = total = 0
            async with conn.transaction():
                query = "SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g"
                async for record in conn.cursor(query, prefetch=1000):
                    count += 1
                    total += record[0]
            assert (count, total) == (50000, 50000 * 50001 // 2)
            # And 50000 rows in one fetch: many reads, one result.
            got = await conn.fetch("SELECT g, md5(g::text) FROM generate_series(1, 50000) g")
            assert len(got) == 50000 and got[-1][0] == 50000
        finally:
            await conn.close()
        assert conn.is_closed()

    run(loop, main(), GUARD_S)


def test_asyncpg_pool_concurrency_over_unix_socket(loop, pg):
    async def main():
        async with asyncpg.create_pool(min_size=2, max_size=4, **_pg_unix(pg)) as pool:
            results = await asyncio.gather(
                *[pool.fetchval("SELECT $1::int * 2 FROM pg_sleep(0.005)", i) for i in range(60)]
            )
            assert results == [2 * i for i in range(60)]
            async with pool.acquire() as conn:
                async with conn.transaction():
                    await conn.execute("CREATE TEMP TABLE p (v int)")
                    await conn.execute("INSERT INTO p SELECT generate_series(1, 10)")
                    assert await conn.fetchval("SELECT sum(v) FROM p") == 55

    run(loop, main(), GUARD_S)


def test_asyncpg_copy_and_listen_notify(loop, pg):
    async def main():
        conn = await asyncpg.connect(**_pg_tcp(pg))
        listener = await asyncpg.connect(**_pg_tcp(pg))
        try:
            await conn.execute("CREATE TEMP TABLE c (a int, b text)")
            records = [(i, "r" * (i % 50)) for i in range(20000)]
            await conn.copy_records_to_table("c", records=records)
            out = io.BytesIO()
            await conn.copy_from_query("SELECT a, b FROM c ORDER BY a", output=out, format="csv")
            lines = out.getvalue().decode().splitlines()
            assert len(lines) == 20000
            assert lines[49] == "49," + "r" * 49 and lines[50] == '50,""'

            got: asyncio.Queue = asyncio.Queue()
            await listener.add_listener("chan", lambda *args: got.put_nowait(args[-1]))
            for i in range(10):
                await conn.execute(f"NOTIFY chan, 'm{i}'")
            assert [await got.get() for _ in range(10)] == [f"m{i}" for i in range(10)]
        finally:
            await listener.close()
            await conn.close()

    run(loop, main(), GUARD_S)


def test_asyncpg_cancelled_query_and_dying_backend(loop, pg):
    async def main():
        conn = await asyncpg.connect(**_pg_tcp(pg))
        other = await asyncpg.connect(**_pg_tcp(pg))
        try:
            # Cancelling the awaiting task makes asyncpg cancel the query over a new connection;
            # the first connection stays usable.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(conn.fetchval("SELECT pg_sleep(30)"), 0.3)
            assert await conn.fetchval("SELECT 42") == 42
            with pytest.raises(asyncio.TimeoutError):
                await conn.execute("SELECT pg_sleep(30)", timeout=0.3)
            assert await conn.fetchval("SELECT 43") == 43
            # The server ends the session: the client sees the connection go, not a hang.
            lost = asyncio.get_running_loop().create_future()
            conn.add_termination_listener(lambda _c: lost.done() or lost.set_result(None))
            pid = conn.get_server_pid()
            assert await other.fetchval("SELECT pg_terminate_backend($1)", pid) is True
            await lost
            assert conn.is_closed()
            with pytest.raises(asyncpg.InterfaceError):
                await conn.fetchval("SELECT 1")
            assert await other.fetchval("SELECT 44") == 44
        finally:
            conn.terminate()
            await other.close()

    run(loop, main(), GUARD_S)


# ---- redis-py --------------------------------------------------------------------------------


def test_redis_commands_pipeline_and_concurrency(loop, rd):
    prefix = uuid.uuid4().hex

    async def main():
        r = aioredis.Redis(host=HOST, port=rd.port)
        try:
            assert await r.ping() is True
            await r.set(f"{prefix}:k", "v")
            assert await r.get(f"{prefix}:k") == b"v"
            await r.set(f"{prefix}:big", BIG)
            assert await r.get(f"{prefix}:big") == BIG
            async with r.pipeline(transaction=True) as pipe:
                for _ in range(1000):
                    pipe.incr(f"{prefix}:ctr")
                results = await pipe.execute()
            assert results == list(range(1, 1001))
            counts = await asyncio.gather(*[r.incr(f"{prefix}:c2") for _ in range(50)])
            assert sorted(counts) == list(range(1, 51))
            values = {f"{prefix}:m{i}": str(i) * (i % 100 + 1) for i in range(500)}
            await r.mset(values)
            got = await r.mget(list(values))
            assert got == [v.encode() for v in values.values()]
        finally:
            await r.aclose()

    run(loop, main(), GUARD_S)


def test_redis_pubsub_blocking_pop_and_unix_socket(loop, rd):
    prefix = uuid.uuid4().hex

    async def main():
        r = aioredis.Redis(unix_socket_path=rd.socket_path)
        pubsub = r.pubsub()
        try:
            await pubsub.subscribe(f"{prefix}:ch")
            message = await pubsub.get_message(timeout=5)
            assert message["type"] == "subscribe"
            for i in range(5):
                assert await r.publish(f"{prefix}:ch", f"hello {i}") == 1
            got = []
            while len(got) < 5:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                assert message is not None
                got.append(message["data"])
            assert got == [f"hello {i}".encode() for i in range(5)]
            # A blocking pop woken by a push from another connection.
            other = aioredis.Redis(host=HOST, port=rd.port)
            try:
                waiter = asyncio.ensure_future(r.blpop([f"{prefix}:q"], timeout=10))
                await asyncio.sleep(0.05)
                await other.rpush(f"{prefix}:q", "item")
                assert await waiter == (f"{prefix}:q".encode(), b"item")
                # A blocking pop cancelled by the caller; the client goes on working.
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(r.blpop([f"{prefix}:empty"], timeout=10), 0.2)
                assert await r.ping() is True
            finally:
                await other.aclose()
        finally:
            await pubsub.aclose()
            await r.aclose()

    run(loop, main(), GUARD_S)
