"""Admin page latency with 1,000,000 finished and 10,000 queued jobs in the store.

python -m bench.admin_pages [--backends redis,postgres] [--finished 1000000] [--requests 40]

Per backend: seed the store, serve ``create_app`` with uvicorn in a child
process on 127.0.0.1, and time the dashboard, a queue's page and a job's page
over HTTP (median and p95 of ``--requests`` after warm-up). The baseline is
the same run's raw cost of the storage reads each page makes (timed in this
process through the Storage protocol), so the difference is the admin's own
work: rendering, HTTP and the event loop.

Seeding: PostgreSQL gets its finished jobs with one ``INSERT … SELECT
generate_series``, and its settled-count ledger the row the storage would have
written (the real API would take minutes and the page reads do not care how
rows arrived); Redis gets them through the real API (``enqueue_many``
and a no-op worker), since its indexes and counters are what the pages read.
The 10,000 queued jobs and a family of 20 children go through the API on both.
Results go to bench/admin_results.json and the table to stdout and
bench/ADMIN_RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.backend_registry import open_storage
from conveyor.core.storage import JobFilter, Storage

HERE = Path(__file__).resolve().parent
URLS = {
    "redis": "redis://127.0.0.1:6379/14",
    "postgres": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
}
QUEUE = "conveyor.examples.BasicJob"
TARGET_MS = 150.0
DEADLINE = 900.0  # seconds for any one seeding step


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed_postgres(config: conveyor.Config, finished: int) -> None:
    import psycopg

    storage = await open_storage(config)  # creates the schema
    await storage.aclose()
    now = time.time()
    payload = BasicJob(name="done", count=1).SerializeToString()
    sql = f"""
        INSERT INTO "{config.namespace}".jobs
            (id, type, queue, payload, state, max_attempts, attempt, created_at,
             started_at, finished_at)
        SELECT
            '0190' || lpad(to_hex(i), 4, '0') || '-0000-7000-8000-' || lpad(to_hex(i), 12, '0'),
            %(type)s, %(type)s, %(payload)s,
            CASE WHEN i %% 50 = 0 THEN 'failed' WHEN i %% 97 = 0 THEN 'cancelled'
                 ELSE 'succeeded' END,
            5, 1, %(now)s - 86000 + i * 0.05, %(now)s - 86000 + i * 0.05,
            %(now)s - 86000 + i * 0.05 + 0.01
        FROM generate_series(1, %(n)s) AS i
    """
    with psycopg.connect(config.url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(sql, {"type": QUEUE, "payload": payload, "now": now, "n": finished})
        # What the storage keeps beside the rows: its ledger of settled counts.
        conn.execute(
            f'INSERT INTO "{config.namespace}".settled_counts (queue, state, n) '
            f'SELECT queue, state, count(*) FROM "{config.namespace}".jobs '
            "WHERE state IN ('succeeded', 'failed', 'cancelled') GROUP BY queue, state"
        )
        conn.execute(f'VACUUM ANALYZE "{config.namespace}".jobs')


async def seed_redis(config: conveyor.Config, finished: int) -> None:
    worker = conveyor.Worker(config, concurrency=256)

    @worker.handler
    async def done(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        if msg.name == "fail":
            raise RuntimeError("seeded failure")

    async with conveyor.AsyncClient(config) as client:
        task = asyncio.create_task(worker.run())
        started = time.monotonic()
        for first in range(0, finished, 5000):
            batch = [
                BasicJob(name="fail" if i % 50 == 0 else "done", count=i)
                for i in range(first, min(first + 5000, finished))
            ]
            await client.enqueue_many(batch, max_attempts=1)
        storage = await client.storage()
        while True:
            stats = {s.queue: s for s in await storage.queue_stats()}
            open_jobs = sum(
                stats[QUEUE].count(state) for state in conveyor.JobState if not state.settled
            )
            if open_jobs == 0:
                break
            if time.monotonic() - started > DEADLINE:
                raise SystemExit("seeding Redis took too long")
            await asyncio.sleep(1.0)
        await worker.stop()
        await task


async def seed_common(config: conveyor.Config) -> str:
    """A family (parent with 20 children, run to the end) and 10,000 queued jobs."""
    worker = conveyor.Worker(config, concurrency=32)

    @worker.handler
    async def parent(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        if msg.name == "parent":
            for i in range(20):
                ctx.enqueue_child(BasicJob(name="child", count=i))
            ctx.enqueue_heir(BasicJob(name="heir"))

    async with conveyor.AsyncClient(config) as client:
        task = asyncio.create_task(worker.run())
        family = await client.enqueue(BasicJob(name="parent"))
        await client.wait(family.id, timeout=60)
        await worker.stop()
        await task
        for first in range(0, 10_000, 1000):
            await client.enqueue_many(
                [BasicJob(name="waiting", count=i) for i in range(first, first + 1000)]
            )
        return family.id


@contextlib.contextmanager
def serving(config: conveyor.Config) -> Iterator[str]:
    port = free_port()
    code = textwrap.dedent(
        f"""
        import uvicorn, conveyor
        from conveyor.admin import create_app
        app = create_app(conveyor.Config(url={config.url!r}, namespace={config.namespace!r}))
        uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/api/types", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit("the admin server did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        child.terminate()
        child.wait(timeout=20)


def time_page(base: str, path: str, requests: int) -> dict[str, float]:
    samples = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for _ in range(3):
            http.get(path).raise_for_status()
        for _ in range(requests):
            started = time.perf_counter()
            answer = http.get(path)
            samples.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
    return summary(samples)


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[int(len(ordered) * 0.95) - 1],
        "min_ms": ordered[0],
    }


async def time_reads(
    storage: Storage, reads: Callable[[], Awaitable[Any]], requests: int
) -> dict[str, float]:
    """The baseline: the storage calls a page makes, without the admin around them."""
    for _ in range(3):
        await reads()
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        await reads()
        samples.append((time.perf_counter() - started) * 1000)
    return summary(samples)


async def measure(backend: str, finished: int, requests: int) -> dict[str, Any]:
    namespace = f"bench_admin_{uuid.uuid4().hex[:8]}"
    config = conveyor.Config(url=URLS[backend], namespace=namespace)
    started = time.monotonic()
    if backend == "postgres":
        await seed_postgres(config, finished)
    else:
        await seed_redis(config, finished)
    parent_id = await seed_common(config)
    seeded = time.monotonic() - started
    storage = await open_storage(config)
    try:
        stats = await storage.queue_stats()
        total = sum(sum(s.counts.values()) for s in stats)

        async def dashboard_reads() -> None:
            queues = await storage.queue_stats()
            await storage.counters(minutes=60)
            for q in queues:
                await storage.counters(minutes=2, queue=q.queue)
            await storage.workers()

        async def queue_reads() -> None:
            await storage.list_jobs(JobFilter(queue=QUEUE), limit=50)

        async def job_reads() -> None:
            job = await storage.get(parent_id)
            assert job is not None
            await storage.family(parent_id)
            await storage.descriptor_sets()

        pages = {
            "dashboard": ("/", dashboard_reads),
            "queue page": (f"/queues/{QUEUE}", queue_reads),
            "job page": (f"/jobs/{parent_id}", job_reads),
        }
        results: dict[str, Any] = {}
        with serving(config) as base:
            for name, (path, reads) in pages.items():
                results[name] = {
                    "page": time_page(base, path, requests),
                    "storage_reads": await time_reads(storage, reads, requests),
                }
        return {"jobs": total, "seed_seconds": seeded, "pages": results}
    finally:
        await storage.aclose()
        await drop(backend, config)


async def drop(backend: str, config: conveyor.Config) -> None:
    if backend == "postgres":
        import psycopg

        with psycopg.connect(config.url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{config.namespace}" CASCADE')
    else:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(config.url)
        async for key in client.scan_iter(match="{" + config.namespace + "}:*", count=10_000):
            await client.delete(key)
        await client.aclose()


def report(results: dict[str, Any]) -> str:
    lines = [
        "# Admin page latency",
        "",
        f"`python -m bench.admin_pages` on {time.strftime('%Y-%m-%d')}, this machine (2 cores),",
        "servers on loopback. Each page is fetched over HTTP from a uvicorn child process;",
        "median / p95 of the requests after 3 warm-ups. Baseline: the storage reads the",
        f"page makes, timed alone in the same run. Target: median under {TARGET_MS:.0f} ms.",
        "",
        "| backend | jobs in store | page | median | p95 | storage reads (median) "
        "| page / reads | target |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for backend, run in results.items():
        for page, figures in run["pages"].items():
            median = figures["page"]["median_ms"]
            reads = figures["storage_reads"]["median_ms"]
            lines.append(
                f"| {backend} | {run['jobs']:,} | {page} | {median:.1f} ms | "
                f"{figures['page']['p95_ms']:.1f} ms | {reads:.1f} ms | {median / reads:.1f}x | "
                f"{'met' if median < TARGET_MS else 'MISSED'} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="redis,postgres")
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    results = {}
    for backend in args.backends.split(","):
        print(f"{backend}: seeding {args.finished:,} finished jobs...", flush=True)
        results[backend] = asyncio.run(measure(backend, args.finished, args.requests))
    (HERE / "admin_results.json").write_text(json.dumps(results, indent=2))
    table = report(results)
    (HERE / "ADMIN_RESULTS.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
