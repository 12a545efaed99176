"""The cost of family repair and of reading a family, on a family of 10,000 members.

python -m bench.repair [--backends memory,redis,postgres,sqlite] [--children 100]
                       [--leaves 99] [--failing 0.01] [--runs 3]

Per backend and run, a fresh namespace gets a family built through the Storage
protocol itself (a root, ``--children`` children, ``--leaves`` leaves under each:
1 + 100 + 9,900 = 10,001 members by default), with ``--failing`` of the leaves
failing for good, so that every child and the root settle failed and the root's
When.SUCCEEDED heir is cancelled. Then, each timed alone:

- ``retry_failed(root)``: one atomic step (a Lua script, a transaction) that
  queues the failed leaves again, re-counts every ancestor from its children,
  re-opens them and re-arms the heir;
- ``family_tree(root)``: the admin's overview read of all 10,002 jobs;
- ``explain(root)``: which children the re-opened root waits for.

Medians of the runs go to stdout and bench/REPAIR_RESULTS.md. Loopback servers only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.backend_registry import open_storage
from conveyor.core.explain import explain
from conveyor.core.specs import Family, build_spec
from conveyor.core.storage import Claimed, Failure, Storage, Success

HERE = Path(__file__).resolve().parent
URLS = {
    "memory": "memory://bench-repair",
    "redis": "redis://127.0.0.1:6379/14",
    "postgres": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
}
BATCH = 500


async def _claim(storage: Storage, queue: str, n: int) -> list[Claimed]:
    got: list[Claimed] = []
    while len(got) < n:
        more = await storage.claim("bench", [queue], min(BATCH, n - len(got)), 300.0, 0.0)
        if not more:
            raise AssertionError(f"{queue}: {len(got)} claimed, {n} expected")
        got += more
    return got


async def build(storage: Storage, config: conveyor.Config, children: int, leaves: int,
                failing: float) -> tuple[str, int]:  # fmt: skip
    """The family; returns the root's id and how many leaves failed."""
    root = build_spec(config, BasicJob(name="root"), queue="root")
    await storage.enqueue([root])
    [claimed] = await _claim(storage, "root", 1)
    kids = [
        build_spec(config, BasicJob(name=f"c{i}"), queue="child", family=Family(parent_id=root.id))
        for i in range(children)
    ]
    heir = build_spec(config, BasicJob(name="heir"), queue="heir",
                      family=Family(predecessor_id=root.id))  # fmt: skip
    await storage.record([Success(claimed.lease, [*kids, heir])])
    for batch_start in range(0, children, 50):
        batch = await _claim(storage, "child", min(50, children - batch_start))
        outcomes = []
        for c in batch:
            below = Family(parent_id=c.job.id)
            specs = [
                build_spec(config, BasicJob(name="leaf"), queue="leaf", family=below)
                for _ in range(leaves)
            ]
            outcomes.append(Success(c.lease, specs))
        await storage.record(outcomes)
    total = children * leaves
    every = max(int(1 / failing), 1) if failing > 0 else total + 1
    failed = 0
    done = 0
    while done < total:
        batch = await _claim(storage, "leaf", min(BATCH, total - done))
        outcomes = []
        for c in batch:
            done += 1
            if done % every == 0:
                failed += 1
                outcomes.append(Failure(c.lease, "the payment provider was down"))
            else:
                outcomes.append(Success(c.lease))
        await storage.record(outcomes)
    return root.id, failed


async def one_run(backend: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    namespace = f"bench_repair_{uuid.uuid4().hex[:10]}"
    config = conveyor.Config(url=url, namespace=namespace)
    storage = await open_storage(config)
    try:
        root, failed = await build(storage, config, args.children, args.leaves, args.failing)
        state = await storage.get(root)
        assert state is not None
        assert state.state is conveyor.JobState.FAILED, state
        started = time.perf_counter()
        repaired = await storage.retry_failed(root)
        repair_s = time.perf_counter() - started
        assert len(repaired) == failed, (len(repaired), failed)
        reopened = await storage.get(root)
        assert reopened is not None
        assert reopened.state is conveyor.JobState.WAITING
        started = time.perf_counter()
        members = await storage.family_tree(root, limit=20_000)
        tree_s = time.perf_counter() - started
        started = time.perf_counter()
        why = await explain(storage, root)
        explain_s = time.perf_counter() - started
        assert len(members) == 1 + args.children * (1 + args.leaves) + 1, len(members)
        assert why.state is conveyor.JobState.WAITING
        return {
            "members": float(len(members)),
            "failed_leaves": float(failed),
            "retry_failed_ms": repair_s * 1000,
            "family_tree_ms": tree_s * 1000,
            "explain_ms": explain_s * 1000,
        }
    finally:
        await storage.aclose()
        await drop(backend, url, namespace)


async def drop(backend: str, url: str, namespace: str) -> None:
    if backend == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        keys = [k async for k in client.scan_iter(match="{" + namespace + "}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
        await client.aclose()
    elif backend == "postgres":
        import psycopg

        async with await psycopg.AsyncConnection.connect(
            url.replace("+psycopg", ""), autocommit=True
        ) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
    elif backend == "memory":
        from conveyor.backends.memory import drop_store

        drop_store(url, namespace)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="memory,redis,postgres,sqlite")
    parser.add_argument("--children", type=int, default=100)
    parser.add_argument("--leaves", type=int, default=99)
    parser.add_argument("--failing", type=float, default=0.01)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--report", type=Path, default=HERE / "REPAIR_RESULTS.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        urls = {**URLS, "sqlite": f"sqlite:///{folder}/repair.db"}
        for backend in args.backends.split(","):
            runs = [await one_run(backend, urls[backend], args) for _ in range(args.runs)]
            median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            spread = {k: (min(r[k] for r in runs), max(r[k] for r in runs)) for k in runs[0]}
            rows.append((backend, median, spread))
            print(backend, {k: round(v, 1) for k, v in median.items()}, flush=True)
    lines = [
        "# Family repair and family reads on 10,000 members",
        "",
        "Rendered by `python -m bench.repair "
        f"--backends {args.backends} --runs {args.runs}` at "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: medians of {args.runs} runs "
        "(min-max), each on a fresh family built through the Storage protocol "
        f"(1 root, {args.children} children, {args.leaves} leaves each, "
        f"{args.failing:.0%} of the leaves failing for good). See `bench/repair.py`.",
        "",
        "| backend | members | failed leaves | retry_failed (one atomic step) | "
        "family_tree (all members) | explain (re-opened root) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for backend, m, s in rows:

        def cell(key: str) -> str:
            low, high = s[key]  # noqa: B023 (used at once)
            return f"{m[key]:,.0f} ms ({low:,.0f}-{high:,.0f})"  # noqa: B023

        lines.append(
            f"| {backend} | {m['members']:,.0f} | {m['failed_leaves']:,.0f} | "
            f"{cell('retry_failed_ms')} | {cell('family_tree_ms')} | {cell('explain_ms')} |"
        )
    args.report.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.report}")


if __name__ == "__main__":
    asyncio.run(main())
