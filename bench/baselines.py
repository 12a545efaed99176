"""Raw baselines, measured in the same rounds as Conveyor: what the server does for a
client that sends the bare minimum.

Redis (redis-py asyncio, and redis-benchmark):

- ``raw_rtt``: LPUSH then RPOP, each awaited alone (one round trip each).
- ``raw_pipelined``: the same pairs pipelined by 100.
- ``redis_benchmark``: ``redis-benchmark -t lpush,rpop`` (50 parallel clients).

PostgreSQL (psycopg 3, **async** ``AsyncConnection`` in **autocommit** mode, so that each
statement is one round trip and its own transaction, committed with it):

- ``pg_insert``: single-row ``INSERT`` into a comparable table, one per round trip and commit.
- ``pg_claim``: ``UPDATE t SET state='running' WHERE id = (SELECT id FROM t WHERE
  state='queued' ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id``,
  one per transaction, on a table pre-filled with ``--jobs`` queued rows.

The comparable table (in a schema of its own, dropped afterwards)::

    id text PRIMARY KEY, queue text, payload bytea, state text, priority integer,
    created double precision
    + a partial index (priority DESC, id) WHERE state = 'queued' (the claim's order)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from uuid_utils import uuid7

from conveyor._proto.examples.basic_pb2 import BasicJob

from .backends import Backend, PostgresBackend, RedisBackend
from .common import QUEUE, parse_redis_benchmark
from .workloads import BATCH, Settings, WorkloadError

RAW_VALUE = "0192f3a4-5b6c-7d8e-9f01-23456789abcd"  # as long as a job id

# --- Redis -------------------------------------------------------------------------------


async def raw_round_trips(settings: Settings, be: Backend) -> dict[str, Any]:
    """LPUSH then RPOP, each awaited alone: one round trip per command."""
    assert isinstance(be, RedisBackend)
    n = settings.jobs
    async with be.namespace("raw") as ns:
        key = "{" + ns + "}:raw"
        # Like Conveyor, no per-command timeout (redis-py makes it a task per command).
        r = aioredis.Redis.from_url(be.url(ns), client_name="bench:raw", socket_timeout=None)
        try:
            await r.ping()
            lpush_time = 0.0
            clock = time.perf_counter
            start = clock()
            for _ in range(n):
                t = clock()
                await r.lpush(key, RAW_VALUE)
                lpush_time += clock() - t
                await r.rpop(key)
            total = clock() - start
        finally:
            await r.aclose()
    return {
        "pairs": n,
        "seconds": total,
        "pairs_per_s": n / total,
        "lpush_per_s": n / lpush_time,
        "round_trips_per_s": 2 * n / total,
    }


async def raw_pipelined(settings: Settings, be: Backend) -> dict[str, Any]:
    """The same pairs, pipelined by 100: a pipeline of 100 LPUSH, then one of 100 RPOP."""
    assert isinstance(be, RedisBackend)
    batches = max(1, settings.jobs // BATCH)
    n = batches * BATCH
    async with be.namespace("rawpipe") as ns:
        key = "{" + ns + "}:raw"
        # Like Conveyor, no per-command timeout (redis-py makes it a task per command).
        r = aioredis.Redis.from_url(be.url(ns), client_name="bench:raw", socket_timeout=None)
        try:
            await r.ping()
            lpush_time = 0.0
            clock = time.perf_counter
            start = clock()
            for _ in range(batches):
                t = clock()
                pipe = r.pipeline(transaction=False)
                for _ in range(BATCH):
                    pipe.lpush(key, RAW_VALUE)
                await pipe.execute()
                lpush_time += clock() - t
                pipe = r.pipeline(transaction=False)
                for _ in range(BATCH):
                    pipe.rpop(key)
                await pipe.execute()
            total = clock() - start
        finally:
            await r.aclose()
    return {
        "pairs": n,
        "pipeline": BATCH,
        "seconds": total,
        "pairs_per_s": n / total,
        "lpush_per_s": n / lpush_time,
    }


def redis_benchmark_command(url: str, requests: int) -> list[str]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", str(parts.port or 6379)
    cmd = ["redis-benchmark", "-h", host, "-p", port, "-t", "lpush,rpop"]
    return [*cmd, "-n", str(requests), "-q"]


async def redis_benchmark(settings: Settings, be: Backend) -> dict[str, Any]:
    """``redis-benchmark -t lpush,rpop`` (50 parallel clients by default, key "mylist" in db 0)."""
    assert isinstance(be, RedisBackend)
    cmd = redis_benchmark_command(be.url(""), settings.rb_requests)
    db0 = aioredis.Redis.from_url(be.url(""), db=0, client_name="bench:admin")
    try:
        if await db0.exists("mylist"):
            raise WorkloadError("db 0 holds a key 'mylist' that redis-benchmark would alter")
    finally:
        await db0.aclose()
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), settings.deadline)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise WorkloadError("redis-benchmark did not finish in time") from None
    rates = parse_redis_benchmark(out.decode(errors="replace"))
    if "lpush" not in rates or "rpop" not in rates:
        raise WorkloadError(f"cannot parse redis-benchmark output: {out!r} {err!r}")
    return {
        "command": " ".join(cmd),
        "clients": 50,
        "lpush_rps": rates["lpush"],
        "rpop_rps": rates["rpop"],
    }


# --- PostgreSQL ----------------------------------------------------------------------------

RAW_TABLE = """
CREATE TABLE "{ns}".t (
    id text PRIMARY KEY,
    queue text NOT NULL,
    payload bytea NOT NULL,
    state text NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    created double precision NOT NULL
)"""
RAW_INDEX = """CREATE INDEX t_claim ON "{ns}".t (priority DESC, id) WHERE state = 'queued'"""
RAW_INSERT = (
    'INSERT INTO "{ns}".t (id, queue, payload, state, priority, created) '
    "VALUES (%s, %s, %s, 'queued', 0, %s)"
)
RAW_CLAIM = (
    'UPDATE "{ns}".t SET state = \'running\' WHERE id = (SELECT id FROM "{ns}".t '
    "WHERE state = 'queued' ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
    "RETURNING id"
)


@contextlib.asynccontextmanager
async def raw_pg(be: PostgresBackend, tag: str) -> AsyncIterator[tuple[str, Any]]:
    """A schema with the comparable table, and an autocommit psycopg async connection."""
    import psycopg

    async with be.namespace(tag) as ns:
        await be.execute(f'CREATE SCHEMA "{ns}"')
        await be.execute(RAW_TABLE.format(ns=ns))
        await be.execute(RAW_INDEX.format(ns=ns))
        conn = await psycopg.AsyncConnection.connect(
            be.dsn, autocommit=True, application_name="bench:raw"
        )
        try:
            yield ns, conn
        finally:
            await conn.close()


def _raw_rows(n: int) -> list[tuple[str, str, bytes, float]]:
    now = time.time()
    return [
        (str(uuid7()), QUEUE, BasicJob(name="noop", count=i).SerializeToString(), now)
        for i in range(n)
    ]


async def pg_insert(settings: Settings, be: Backend) -> dict[str, Any]:
    """Single-row INSERTs, one round trip and one commit (autocommit) each."""
    assert isinstance(be, PostgresBackend)
    n = settings.jobs
    rows = _raw_rows(n)  # ids and payloads made before the clock starts
    async with raw_pg(be, "rawins") as (ns, conn):
        sql = RAW_INSERT.format(ns=ns)
        await conn.execute(sql, (str(uuid7()), QUEUE, b"warm", time.time()))
        clock = time.perf_counter
        start = clock()
        for row in rows:
            await conn.execute(sql, row)
        elapsed = clock() - start
        count = (await (await conn.execute(f'SELECT count(*) FROM "{ns}".t')).fetchone())[0]
    if count != n + 1:
        raise WorkloadError(f"pg_insert: {count} rows, expected {n + 1}")
    return {
        "rows": n,
        "seconds": elapsed,
        "inserts_per_s": n / elapsed,
        "driver": "psycopg 3 AsyncConnection, autocommit",
    }


async def pg_claim(settings: Settings, be: Backend) -> dict[str, Any]:
    """One-at-a-time claims (UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED))."""
    assert isinstance(be, PostgresBackend)
    n = settings.jobs
    rows = _raw_rows(n)
    async with raw_pg(be, "rawclaim") as (ns, conn):
        async with conn.transaction(), conn.cursor() as cur:  # the fill: one transaction
            await cur.executemany(RAW_INSERT.format(ns=ns), rows)
        await conn.execute(f'ANALYZE "{ns}".t')
        sql = RAW_CLAIM.format(ns=ns)
        claimed = 0
        clock = time.perf_counter
        start = clock()
        for _ in range(n):
            found = await (await conn.execute(sql)).fetchone()
            if found is None:
                break
            claimed += 1
        elapsed = clock() - start
    if claimed != n:
        raise WorkloadError(f"pg_claim: claimed {claimed} of {n}")
    return {
        "rows": n,
        "seconds": elapsed,
        "claims_per_s": n / elapsed,
        "driver": "psycopg 3 AsyncConnection, autocommit",
    }


BASELINES = {
    "redis": {
        "raw_rtt": raw_round_trips,
        "raw_pipelined": raw_pipelined,
        "redis_benchmark": redis_benchmark,
    },
    "postgres": {"pg_insert": pg_insert, "pg_claim": pg_claim},
    "sqlite": {},
}
