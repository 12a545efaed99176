"""Soak: many families through two real worker processes, with a short retention.

After the first tenth of the jobs the workers' resident memory and the namespace's
storage are measured (on PostgreSQL after VACUUM and REINDEX, so that the figure is
what the live rows need; the raw file sizes are reported beside it); after the last job, once retention has passed, both must be
back within 10% of that (no leak), and every finished job must have been pruned.

``SOAK_JOBS`` sets the size (20,000 on Redis and 10,000 on PostgreSQL in CI;
``nox -s chaos`` runs 200,000). Figures go to ``test-output/soak/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import psycopg
import pytest
import redis

import conveyor
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.core.storage import JobFilter
from tests.chaos.fleet import Fleet
from tests.conftest import POSTGRES_URL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "soak"
RETENTION = 3.0  # seconds a finished job is kept
IN_FLIGHT = 4  # families open at once
DEFAULT_JOBS = {"redis": 20_000, "postgres": 10_000}
SAMPLE_EVERY = 5.0  # seconds between samples of the raw stored size


def family(tag: str) -> Step:
    """502 jobs: a root, 10 branches of 48 leaves with an heir each, and the root's heir."""
    branches = [
        Step(
            name=f"{tag}/b{b}",
            children=[Step(name=f"{tag}/b{b}/l{i}") for i in range(48)],
            heirs=[Step(name=f"{tag}/b{b}/heir")],
        )
        for b in range(10)
    ]
    return Step(name=f"{tag}/root", children=branches, heirs=[Step(name=f"{tag}/heir")])


FAMILY_JOBS = 502


def stored_bytes(url: str, namespace: str, compact: bool = False) -> int:
    """What the namespace takes on the server: its keys' MEMORY USAGE, or its schema's
    tables with their indexes and TOAST. With ``compact``, after VACUUM and REINDEX:
    what its live rows need, leaving out the space of deleted rows and index entries
    that PostgreSQL reuses or that autovacuum reclaims on its own schedule."""
    if url.startswith("redis"):
        with redis.Redis.from_url(url) as client:
            return sum(
                client.memory_usage(key) or 0
                for key in client.scan_iter(match="{" + namespace + "}:*", count=1000)
            )
    with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), autocommit=True) as conn:
        tables = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'm')",
            (namespace,),
        ).fetchall()
        if compact:
            for (table,) in tables:
                conn.execute(f"VACUUM {table}")
                # Table by table, again if it deadlocks with a worker's claim (which reads
                # the queue controls, then writes jobs): the server aborts one of the two.
                for attempt in range(5):
                    try:
                        conn.execute(f"REINDEX TABLE {table}")
                        break
                    except psycopg.errors.DeadlockDetected:
                        if attempt == 4:
                            raise
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "AND c.relkind IN ('r', 'p', 'm')",
            (namespace,),
        ).fetchone()
    return int(row[0]) if row else 0


def snapshot_holders(url: str) -> list[str]:
    """Other sessions of the database with a snapshot open (they hold VACUUM back)."""
    if url.startswith("redis"):
        return []
    with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name, state, left(query, 80) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_xmin IS NOT NULL"
        ).fetchall()
    return [" | ".join(str(v) for v in row) for row in rows]


async def settled_families(client: conveyor.AsyncClient, roots: list[str]) -> list[str]:
    done = []
    for root in roots:
        job = await client.get(root)
        assert job is not None, f"family root {root} is gone before its family settled"
        if job.state.settled:
            done.append(root)
    return done


async def test_memory_and_storage_return_to_their_level(
    server_url: str, namespace: str, tmp_path: Path
) -> None:
    backend = "redis" if server_url.startswith("redis") else "postgres"
    jobs = int(os.environ.get("SOAK_JOBS", DEFAULT_JOBS[backend]))
    families = max(10, jobs // FAMILY_JOBS)
    # The baseline is taken in the steady state: the first tenth of the families, and
    # at least twice as many as run at once (retention and indexes at their working size).
    checkpoint = max(families // 10, 2 * IN_FLIGHT)
    config = conveyor.Config(url=server_url, namespace=namespace)
    fleet = Fleet(server_url, namespace, tmp_path, size=2, CHAOS_RETENTION=str(RETENTION))
    figures: dict[str, object] = {"backend": backend, "families": families}
    began = time.monotonic()
    async with conveyor.AsyncClient(config) as client:
        await client.storage()
        fleet.start()
        try:
            open_roots: list[str] = []
            made = finished = peak_raw = 0
            next_sample = time.monotonic()
            while finished < families:
                fleet.check_alive()
                while made < families and len(open_roots) < IN_FLIGHT:
                    open_roots.append((await client.enqueue(family(f"f{made}"))).id)
                    made += 1
                if time.monotonic() >= next_sample:  # the raw size's peak, as it grows
                    next_sample = time.monotonic() + SAMPLE_EVERY
                    raw = await asyncio.to_thread(stored_bytes, server_url, namespace)
                    peak_raw = max(peak_raw, raw)
                for root in await settled_families(client, open_roots):
                    job = await client.get(root)
                    assert job is not None and job.state is conveyor.JobState.SUCCEEDED
                    open_roots.remove(root)
                    finished += 1
                    if finished == checkpoint:
                        figures["baseline_rss"] = fleet.rss()
                        figures["baseline_stored_raw"] = stored_bytes(server_url, namespace)
                        figures["baseline_stored"] = stored_bytes(server_url, namespace, True)
                await asyncio.sleep(0.1)
            figures["seconds"] = time.monotonic() - began
            figures["peak_stored_raw"] = peak_raw
            # Retention passes; maintenance prunes every finished job.
            storage = await client.storage()
            stop = time.monotonic() + 120
            while (left := len((await storage.list_jobs(JobFilter(), limit=10)).jobs)) > 0:
                assert time.monotonic() < stop, f"{left}+ finished jobs never pruned"
                await asyncio.sleep(0.5)
            figures["final_rss"] = fleet.rss()
            figures["final_stored_raw"] = stored_bytes(server_url, namespace)
            figures["final_stored"] = stored_bytes(server_url, namespace, True)
            for _ in range(6):
                # VACUUM cannot reclaim rows another session's snapshot may still see;
                # give such a session (autovacuum, a slow client) time to end, and name it.
                if figures["final_stored"] <= 1.10 * figures["baseline_stored"]:  # type: ignore[operator]
                    break
                figures["horizon_held_by"] = snapshot_holders(server_url)
                await asyncio.sleep(5)
                figures["final_stored"] = stored_bytes(server_url, namespace, True)
        finally:
            fleet.stop()
    figures["jobs"] = families * FAMILY_JOBS
    figures["rss_ratio"] = figures["final_rss"] / figures["baseline_rss"]  # type: ignore[operator]
    figures["stored_ratio"] = (
        figures["final_stored"] / figures["baseline_stored"]  # type: ignore[operator]
    )
    # What the disk holds, dead rows included, against the steady state's (reported:
    # how far autovacuum, at the server's defaults, lets the tables grow).
    figures["peak_raw_ratio"] = (
        figures["peak_stored_raw"] / figures["baseline_stored_raw"]  # type: ignore[operator]
    )
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"soak-{backend}.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    assert figures["rss_ratio"] <= 1.10, figures  # type: ignore[operator]
    assert figures["stored_ratio"] <= 1.10, figures  # type: ignore[operator]
