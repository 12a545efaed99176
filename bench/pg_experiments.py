"""Experiments behind the PostgreSQL findings in bench/README.md (run by hand, not by
``bench.run``; nothing here changes the library).

    python -m bench.pg_experiments w1   [--jobs 2000] [--rounds 3]
    python -m bench.pg_experiments w2cpu [--jobs 10000] [--concurrency 10]
    python -m bench.pg_experiments explain [--jobs 10000]

``w1``: the producer's cost per enqueue against the number of round trips. In interleaved
rounds, on a jobs table the library created: ``client.enqueue`` itself; the same statement
sequence sent with raw psycopg 3 (async) without SQLAlchemy (pre-ping, BEGIN, SELECT, INSERT,
UPDATE, two pg_notify, COMMIT: 8 round trips); a 4-round-trip sequence (BEGIN, ``INSERT …
ON CONFLICT DO NOTHING RETURNING`` straight as ``queued``, one statement with both
pg_notify calls, COMMIT); and one statement in autocommit (a CTE that inserts and notifies).

``w2cpu``: the CPU time of a W2 drain, split between the worker process and its PostgreSQL
backends (``/proc/<pid>/stat`` utime + stime of the worker and of every backend whose
``application_name`` is the namespace's), per job.

``explain``: ``EXPLAIN (ANALYZE, BUFFERS)`` of the statements of one claim and one settle of
10 jobs, on a namespace of ``--jobs`` queued jobs half drained by the library's own
``claim``/``settle`` (10 at a time); every statement runs in a transaction that is rolled back.
The SQL is written out by hand to match ``conveyor/backends/sql`` (storage.py, rules.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from uuid_utils import uuid7

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

from .backends import DEFAULT_PG_URL
from .common import QUEUE, new_namespace

DSN = "postgresql://" + DEFAULT_PG_URL.split("://", 1)[1]
COLS = "id, type, queue, payload, state, priority, max_attempts, optional, created_at"
VALUES = "%s, %s, %s, %s, %s, %s, %s, %s, %s"
REPO = Path(__file__).resolve().parent.parent


def _row(i: int, state: str) -> list[Any]:
    payload = BasicJob(name="noop", count=i).SerializeToString()
    return [str(uuid7()), QUEUE, QUEUE, payload, state, 0, 5, False, time.time()]


async def _eight(conn: psycopg.AsyncConnection[Any], ns: str, n: int) -> None:
    for i in range(n):
        r = _row(i, "held")
        await conn.execute(";")  # SQLAlchemy's pre-ping
        async with conn.transaction():
            await conn.execute(f'SELECT id FROM "{ns}".jobs WHERE id = ANY(%s)', ([r[0]],))
            await conn.execute(f'INSERT INTO "{ns}".jobs ({COLS}) VALUES ({VALUES})', r)
            cur = await conn.execute(
                f"UPDATE \"{ns}\".jobs SET state = CASE WHEN run_at > %s THEN 'scheduled' "
                "ELSE 'queued' END, worker_id = NULL, lease_expires = NULL "
                "WHERE id = ANY(%s) AND state = 'held' RETURNING id, state, type, queue",
                (time.time(), [r[0]]),
            )
            await cur.fetchall()
            await conn.execute("SELECT pg_notify(%s, %s)", (f"conveyor_{ns}_wake", QUEUE))
            event = f"{r[0]}|queued|{QUEUE}|{QUEUE}|{time.time()}"
            await conn.execute("SELECT pg_notify(%s, %s)", (f"conveyor_{ns}_events", event))


async def _four(conn: psycopg.AsyncConnection[Any], ns: str, n: int) -> None:
    for i in range(n):
        r = _row(i, "queued")
        async with conn.transaction():
            cur = await conn.execute(
                f'INSERT INTO "{ns}".jobs ({COLS}) VALUES ({VALUES}) '
                "ON CONFLICT (id) DO NOTHING RETURNING id",
                r,
            )
            await cur.fetchall()
            event = f"{r[0]}|queued|{QUEUE}|{QUEUE}|{time.time()}"
            await conn.execute(
                "SELECT pg_notify(%s, %s), pg_notify(%s, %s)",
                (f"conveyor_{ns}_wake", QUEUE, f"conveyor_{ns}_events", event),
            )


async def _one(conn: psycopg.AsyncConnection[Any], ns: str, n: int) -> None:
    sql = (
        f'WITH ins AS (INSERT INTO "{ns}".jobs ({COLS}) VALUES ({VALUES}) '
        "ON CONFLICT (id) DO NOTHING RETURNING id, queue) "
        "SELECT pg_notify(%s, queue), pg_notify(%s, id) FROM ins"
    )
    for i in range(n):
        cur = await conn.execute(
            sql, [*_row(i, "queued"), f"conveyor_{ns}_wake", f"conveyor_{ns}_events"]
        )
        await cur.fetchall()


Variant = Callable[[psycopg.AsyncConnection[Any], str, int], Awaitable[None]]


async def w1(jobs: int, rounds: int) -> None:
    ns = new_namespace("whatif_w1")
    variants: list[tuple[str, Variant | None, bool]] = [
        ("client.enqueue (the library: 8 round trips)", None, False),
        ("same 8 round trips, raw psycopg, no SQLAlchemy", _eight, True),
        ("4 round trips (INSERT as queued ON CONFLICT, one NOTIFY statement)", _four, False),
        ("1 round trip (CTE insert + notify, autocommit)", _one, True),
    ]
    rates: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    admin = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
    try:
        async with conveyor.AsyncClient(conveyor.Config(url=DEFAULT_PG_URL, namespace=ns)) as c:
            await c.enqueue(BasicJob(name="warm"), queue="bench_warmup")
            for _ in range(rounds):
                for name, fn, autocommit in variants:
                    start = time.perf_counter()
                    if fn is None:
                        for i in range(jobs):
                            await c.enqueue(BasicJob(name="noop", count=i))
                    else:
                        conn = await psycopg.AsyncConnection.connect(DSN, autocommit=autocommit)
                        try:
                            start = time.perf_counter()
                            await fn(conn, ns, jobs)
                        finally:
                            await conn.close()
                    rates[name].append(jobs / (time.perf_counter() - start))
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE')
        await admin.close()
    for name, values in rates.items():
        shown = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{statistics.median(values):>7,.0f} jobs/s  {name}  [{shown}]")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def w2cpu(jobs: int, concurrency: int, deadline: float = 120.0) -> None:
    ns = new_namespace("whatif_w2")
    admin = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
    proc: asyncio.subprocess.Process | None = None
    try:
        async with conveyor.AsyncClient(conveyor.Config(url=DEFAULT_PG_URL, namespace=ns)) as c:
            for first in range(0, jobs, 1000):
                size = min(1000, jobs - first)
                await c.enqueue_many([BasicJob(name="noop", count=first + i) for i in range(size)])
        cmd = [sys.executable, "-m", "bench.worker_app", "--url", DEFAULT_PG_URL]
        cmd += ["--namespace", ns, "--concurrency", str(concurrency)]
        cmd += ["--out", os.devnull]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, cwd=REPO)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        start = float(line.split()[1])
        query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        name = f"conveyor:{ns}"
        pids = [r[0] for r in await (await admin.execute(query, (name,))).fetchall()]
        pg0 = {pid: _cpu(pid) for pid in pids}
        w0 = _cpu(proc.pid)
        done_sql = f"SELECT coalesce(sum(succeeded), 0) FROM \"{ns}\".counters WHERE type = ''"
        stop = time.monotonic() + deadline
        while (await (await admin.execute(done_sql)).fetchone())[0] < jobs:  # type: ignore[index]
            if time.monotonic() > stop:
                raise TimeoutError(f"not drained in {deadline}s")
            await asyncio.sleep(0.02)
        wall = time.time() - start
        worker = _cpu(proc.pid) - w0
        pg = 0.0
        for (pid,) in await (await admin.execute(query, (name,))).fetchall():
            try:
                pg += _cpu(pid) - pg0.get(pid, 0.0)
            except FileNotFoundError:
                continue
    finally:
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE')
        await admin.close()
    print(
        f"c{concurrency}: {jobs / wall:,.0f} jobs/s over {wall:.2f}s; worker CPU {worker:.2f}s "
        f"({worker / wall:.0%} of a core, {1e6 * worker / jobs:.0f} µs/job); its PostgreSQL "
        f"backends {pg:.2f}s ({pg / wall:.0%}, {1e6 * pg / jobs:.0f} µs/job)"
    )


async def explain(jobs: int) -> None:
    from conveyor.core.storage import Success

    ns = new_namespace("whatif_explain")
    admin = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
    conn = await psycopg.AsyncConnection.connect(DSN)
    try:
        async with conveyor.AsyncClient(conveyor.Config(url=DEFAULT_PG_URL, namespace=ns)) as c:
            for first in range(0, jobs, 1000):
                size = min(1000, jobs - first)
                await c.enqueue_many([BasicJob(name="noop", count=first + i) for i in range(size)])
            storage = await c.storage()
            for _ in range(jobs // 20):  # half of them, as a worker at concurrency 10 would
                claimed = await storage.claim("explain", [QUEUE], 10, 30.0, 0.0)
                await storage.record([Success(item.lease, ()) for item in claimed])
        now = time.time()
        t = f'"{ns}".jobs'
        cur = await conn.execute(
            f"SELECT id FROM {t} WHERE state = 'queued' ORDER BY priority DESC, id LIMIT 10"
        )
        ids = ", ".join(f"'{r[0]}'" for r in await cur.fetchall())
        await conn.rollback()
        claim_set = f"state = 'running', attempt = attempt + 1, lease_expires = {now + 30}"
        statements = {
            "claim: promote_due": f"UPDATE {t} SET state = CASE WHEN run_at > {now} THEN "
            "'scheduled' ELSE 'queued' END, worker_id = NULL, lease_expires = NULL WHERE id IN "
            f"(SELECT id FROM {t} WHERE state = 'scheduled' AND run_at <= {now} ORDER BY "
            "run_at LIMIT 1000 FOR UPDATE SKIP LOCKED) RETURNING id, state, type, queue",
            "claim: take 10": f"UPDATE {t} SET {claim_set} WHERE id IN (SELECT id FROM {t} "
            f"WHERE state = 'queued' AND queue IN ('{QUEUE}') ORDER BY priority DESC, id "
            "LIMIT 10 FOR UPDATE SKIP LOCKED) RETURNING *",
            "claim: next_due (when empty)": f"SELECT min(run_at) FROM {t} "
            "WHERE state = 'scheduled'",
            "settle: lock": f"SELECT * FROM {t} WHERE id IN ({ids}) ORDER BY id FOR UPDATE",
            "settle: declared anything?": f"SELECT DISTINCT declared_by FROM {t} "
            f"WHERE declared_by IN ({ids}) AND state = 'held'",
            "settle: succeed": f"UPDATE {t} SET state = 'succeeded', finished_at = {now}, "
            f"worker_id = NULL, lease_expires = NULL WHERE id IN ({ids})",
            "settle: counters": f'INSERT INTO "{ns}".counters (minute, type, succeeded, '
            f"retried, failed) VALUES ({int(now // 60)}, '', 10, 0, 0) ON CONFLICT (minute, "
            "type) DO UPDATE SET succeeded = counters.succeeded + excluded.succeeded",
        }
        for name, sql in statements.items():
            cur = await conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            print(f"== {name}")
            print("\n".join(str(r[0]) for r in await cur.fetchall()))
            await conn.rollback()
    finally:
        await conn.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE')
        await admin.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("experiment", choices=["w1", "w2cpu", "explain"])
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=10)
    args = p.parse_args(argv)
    if args.experiment == "w1":
        asyncio.run(w1(args.jobs or 2000, args.rounds))
    elif args.experiment == "explain":
        asyncio.run(explain(args.jobs or 10_000))
    else:
        asyncio.run(w2cpu(args.jobs or 10_000, args.concurrency))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
