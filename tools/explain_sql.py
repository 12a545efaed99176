"""Print PostgreSQL plans for the claim and the family cascade on a realistic table.

    python tools/explain_sql.py [--url postgresql+psycopg://postgres@127.0.0.1/test] [--jobs 50000]

Fills a scratch namespace (dropped afterwards) with queued jobs, a scheduled
tail and a parent with many children, then runs EXPLAIN (ANALYZE, BUFFERS)
on the statements the SQL backend uses for a claim and for one step of the
family cascade.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import psycopg

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.backend_registry import open_storage
from conveyor.core.specs import build_spec

NAMESPACE = "explain_scratch"


async def fill(url: str, jobs: int) -> str:
    config = conveyor.Config(url=url, namespace=NAMESPACE)
    storage = await open_storage(config)
    try:
        batch = [build_spec(config, BasicJob(name="x", count=i)) for i in range(jobs)]
        for start in range(0, jobs, 5000):
            await storage.enqueue(batch[start : start + 5000])
        await storage.enqueue([build_spec(config, BasicJob(), delay=3600) for _ in range(1000)])
        return batch[0].id
    finally:
        await storage.aclose()


def explain(dsn: str, parent: str) -> None:
    table = f'"{NAMESPACE}".jobs'
    now = time.time()
    statements = {
        "claim (one statement claims N jobs)": f"""
            UPDATE {table} SET state = 'running', attempt = attempt + 1,
                lease_token = lease_token + 1, lease_expires = {now + 30}, worker_id = 'w',
                started_at = {now}
            WHERE id IN (SELECT id FROM {table}
                         WHERE state = 'queued' AND queue IN ('conveyor.examples.BasicJob')
                         ORDER BY priority DESC, id LIMIT 10 FOR UPDATE SKIP LOCKED)
            RETURNING id""",
        "cascade: the settling job's held heirs": f"""
            SELECT id, heir_when FROM {table}
            WHERE predecessor_id = '{parent}' AND state = 'held'""",
        "cascade: lock the parent": f"SELECT * FROM {table} WHERE id = '{parent}' FOR UPDATE",
        "release: an attempt's children": f"""
            UPDATE {table} SET state = CASE WHEN run_at > {now} THEN 'scheduled' ELSE 'queued' END
            WHERE declared_by = '{parent}' AND state = 'held' AND parent_id = '{parent}'
            RETURNING id""",
        "promote due scheduled jobs": f"""
            SELECT id FROM {table} WHERE state = 'scheduled' AND run_at <= {now}
            ORDER BY run_at LIMIT 1000 FOR UPDATE SKIP LOCKED""",
        "recover expired leases": f"""
            SELECT id FROM {table} WHERE state = 'running' AND lease_expires <= {now}
            ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED""",
    }
    with psycopg.connect(dsn) as conn:
        conn.execute(f"ANALYZE {table}")
        for title, sql in statements.items():
            print(f"-- {title}")
            for (line,) in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}"):
                print(line)
            print()
            conn.rollback()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--jobs", type=int, default=50_000)
    args = parser.parse_args()
    dsn = args.url.replace("+psycopg", "")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{NAMESPACE}" CASCADE')
    try:
        parent = asyncio.run(fill(args.url, args.jobs))
        explain(dsn, parent)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{NAMESPACE}" CASCADE')


if __name__ == "__main__":
    main()
