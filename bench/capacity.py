"""What a job costs the server, and how a Redis Cluster of 1 and of 3 shards and a
PostgreSQL reached directly or through PgBouncer carry it: the figures behind the
capacity model of docs/scaling.md.

python -m bench.capacity [--jobs 10000] [--rounds 3]

Redis Cluster.
Per round and variant (shards 1 or 3, namespaces 1 or 3), on a local cluster of
masters only (tools/redis_cluster.py, ports 7100-7102, started and stopped here): every
namespace gets ``--jobs`` queued no-op jobs, then one ``conveyor worker
bench.cli_app:worker --burst`` per namespace drains it (every other option at its
default). On 3 shards the namespaces are chosen so that each lands on its own shard.
A last variant spreads one namespace over the shards (``?shards=3`` on 3 shards, plain on
1) and drains it with 3 workers, to show what one namespace gains from more shards.
Measured: jobs/s from the workers' spawn to the last one's exit, and on each master
the server CPU (``INFO cpu``) and commands (``INFO commandstats``) per job. The model
predicts a shard's utilisation as rate x CPU per job; the table sets it beside the
measured one. Same machine for every shard: read the ratios, not the absolute rates.
Each shard's idle CPU (the cluster bus, its timers), measured for 2 s before the drain, is
taken off its CPU over the drain.

PostgreSQL. One ``conveyor worker --burst`` drains ``--jobs`` no-op jobs, on the server
directly and through the local PgBouncer (tools/pgbouncer.py, started if absent): jobs/s,
and CPU per job of the postgres processes and of pgbouncer (from /proc).

Writes bench/CAPACITY_RESULTS.md. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.backends.redis._connect import cluster_nodes
from conveyor.backends.redis.sharded import shard_namespaces
from tools import pgbouncer, redis_cluster

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BASE_PORT = 7100
ENQUEUE_BATCH = 1000
DEADLINE = 300.0  # seconds one drain may take
IDLE_SAMPLE = 2.0  # seconds a shard's idle CPU is sampled over


@dataclass
class Measure:
    rate: float  # jobs/s, all namespaces together
    cpu_per_job: float  # server CPU µs per job, all shards together
    commands_per_job: float
    busiest: float  # the busiest shard's CPU share of one core over the drain
    busiest_rate: float  # jobs/s of the namespaces that shard serves


def server_totals(port: int) -> tuple[float, int]:
    """(CPU seconds used, commands run) of one server so far."""
    with redis.Redis(port=port) as client:
        cpu = client.info("cpu")
        stats = client.info("commandstats")
    calls = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls


def namespaces_on_distinct_shards(shards: int, count: int) -> list[str]:
    """``count`` fresh namespaces, each served by a different master when there are enough."""
    chosen: dict[int | None, str] = {}
    while len(chosen) < count:
        name = f"bench_cluster_{uuid.uuid4().hex[:8]}"
        master = redis_cluster.master_of(BASE_PORT, "{" + name + "}:")
        key = master if shards >= count else len(chosen)
        chosen.setdefault(key, name)
    return list(chosen.values())


async def drain(shards: int, count: int, jobs: int, spread: bool = False) -> Measure:
    """Drain ``jobs`` per namespace; with ``spread``, one namespace over every shard
    (``?shards=``), drained by one worker per shard."""
    ports = [BASE_PORT + i for i in range(shards)]
    base = f"redis+cluster://127.0.0.1:{BASE_PORT}/0"
    parts = shards if spread else 1
    url = f"{base}?shards={parts}"
    names = namespaces_on_distinct_shards(shards, count)
    for name in names:
        async with conveyor.AsyncClient(conveyor.Config(url=url, namespace=name)) as client:
            batch = [BasicJob(count=i) for i in range(ENQUEUE_BATCH)]
            for _ in range(jobs // ENQUEUE_BATCH):
                await client.enqueue_many(batch)
    idle_before = {port: server_totals(port)[0] for port in ports}
    await asyncio.sleep(IDLE_SAMPLE)
    idle = {port: (server_totals(port)[0] - idle_before[port]) / IDLE_SAMPLE for port in ports}
    before = {port: server_totals(port) for port in ports}
    env = {**os.environ, "BENCH_BODY": "noop", "PYTHONPATH": str(REPO)}
    began = time.monotonic()
    command = [sys.executable, "-m", "conveyor", "worker", "bench.cli_app:worker", "--url", url]
    command += ["--burst", "--log-level", "warning"]
    procs = [
        await asyncio.create_subprocess_exec(*command, "--namespace", name, env=env, cwd=REPO)
        for name in names
        for _ in range(3 if spread else 1)
    ]
    try:
        codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), DEADLINE)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
    took = time.monotonic() - began
    assert codes == [0] * len(procs), f"a worker failed: {codes}"
    after = {port: server_totals(port) for port in ports}
    total = jobs * count
    cpu = {port: after[port][0] - before[port][0] - idle[port] * took for port in ports}
    calls = sum(after[port][1] - before[port][1] for port in ports)
    busiest = max(cpu, key=lambda port: cpu[port])
    per_job = sum(cpu.values()) / total
    # A namespace's shards split its jobs evenly (by id): the busiest master serves its
    # shards' share of each namespace.
    served = sum(
        redis_cluster.master_of(BASE_PORT, "{" + part + "}:") == busiest
        for name in names
        for part in shard_namespaces(name, parts)
    )
    for name in names:
        drop_namespace(base, name)
    busiest_rate = served / parts * jobs / took
    return Measure(total / took, per_job * 1e6, calls / total, cpu[busiest] / took, busiest_rate)


def drop_namespace(url: str, name: str) -> None:
    nodes, _ = cluster_nodes(url)
    with redis.RedisCluster(host=nodes[0][0], port=nodes[0][1]) as client:
        for pattern in ("{" + name + "}:*", "{" + name + "~*"):  # and its shards'
            for key in list(client.scan_iter(match=pattern, count=1000)):
                client.delete(key)


# --- PostgreSQL, directly and through PgBouncer -----------------------------------------

PG_URLS = {
    "direct": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "pgbouncer": "postgresql+psycopg://postgres@127.0.0.1:6432/test"
    "?pooler=pgbouncer&direct=127.0.0.1:5432",
}


def cpu_seconds(user: str, name: str | None = None) -> float:
    """CPU seconds used so far by the processes of ``user`` (named ``name``): the live
    ones', and their ended children's (a backend that exited is counted in the
    postmaster that reaped it)."""
    uid = pwd.getpwnam(user).pw_uid
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        command, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1]
        if name is not None and command != name:
            continue
        values = fields.split()
        total += sum(int(v) for v in values[11:15]) / tick  # utime stime cutime cstime
    return total


async def pg_drain(route: str, jobs: int) -> dict[str, float]:
    """One ``conveyor worker --burst`` over ``jobs`` queued jobs on PostgreSQL."""
    url = PG_URLS[route]
    name = f"bench_capacity_{uuid.uuid4().hex[:8]}"
    async with conveyor.AsyncClient(conveyor.Config(url=url, namespace=name)) as client:
        batch = [BasicJob(count=i) for i in range(ENQUEUE_BATCH)]
        for _ in range(jobs // ENQUEUE_BATCH):
            await client.enqueue_many(batch)
    server, bouncer = cpu_seconds("postgres", "postgres"), cpu_seconds("postgres", "pgbouncer")
    env = {**os.environ, "BENCH_BODY": "noop", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "conveyor", "worker", "bench.cli_app:worker", "--url", url]
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *command, "--namespace", name, "--burst", "--log-level", "warning", env=env, cwd=REPO
    )
    code = await asyncio.wait_for(proc.wait(), DEADLINE)
    took = time.monotonic() - began
    assert code == 0, f"the worker failed: {code}"
    server = cpu_seconds("postgres", "postgres") - server
    bouncer = cpu_seconds("postgres", "pgbouncer") - bouncer
    with psycopg.connect(PG_URLS["direct"].replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    return {
        "rate": jobs / took,
        "server_us": server / jobs * 1e6,
        "bouncer_us": bouncer / jobs * 1e6,
    }


Variant = tuple[int, int, bool]  # shards, namespaces, one namespace spread over the shards


def run_all(args: argparse.Namespace) -> dict[Variant, list[Measure]]:
    found: dict[Variant, list[Measure]] = {}
    home = Path(redis_cluster.default_dir()).with_name("conveyor-bench-cluster")
    for shards in (1, 3):
        redis_cluster.start(BASE_PORT, shards, 0, home / str(shards))
        try:
            for _ in range(args.rounds):
                for count, spread in ((1, False), (3, False), (1, True)):
                    measure = asyncio.run(drain(shards, count, args.jobs, spread))
                    found.setdefault((shards, count, spread), []).append(measure)
                    print(shards, "shards", count, "namespaces", spread, measure, flush=True)
        finally:
            redis_cluster.stop(BASE_PORT, shards, 0, home / str(shards))
    return found


def run_postgres(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    found: dict[str, list[dict[str, float]]] = {}
    pgbouncer.start(pgbouncer.default_dir(), pgbouncer.PORT)
    for _ in range(args.rounds):
        for route in PG_URLS:
            measure = asyncio.run(pg_drain(route, args.jobs))
            found.setdefault(route, []).append(measure)
            print("postgres", route, measure, flush=True)
    return found


def median(values: list[float]) -> str:
    return f"{statistics.median(values):,.1f}"


def report(
    found: dict[Variant, list[Measure]],
    postgres: dict[str, list[dict[str, float]]],
    args: argparse.Namespace,
) -> str:
    base = {
        (count, spread): statistics.median(m.rate for m in found[(1, count, spread)])
        for _, count, spread in found
    }
    # The model's one input: server CPU per job, measured on one shard with one namespace.
    cost = statistics.median(m.cpu_per_job for m in found[(1, 1, False)]) / 1e6
    lines = [
        "# Capacity: what a job costs the server",
        "",
        "## Redis Cluster: 1 and 3 shards",
        "",
        f"`python -m bench.capacity --jobs {args.jobs} --rounds {args.rounds}` on this "
        "2-core machine: every shard, every worker and the driver share two cores, so the "
        "ratios matter, not the rates. Medians of the rounds; no-op job bodies; one "
        "`conveyor worker --burst` per namespace, each namespace on its own shard where "
        "there are enough.",
        "",
        "The model (docs/scaling.md) takes one figure, the server CPU per job measured on "
        f"1 shard with 1 namespace ({cost * 1e6:.1f} µs), and predicts each shard's load as "
        "the jobs/s of the namespaces it serves times that cost; the last two columns set "
        "the prediction beside the measured CPU of the busiest shard.",
        "",
        "The last two rows are one namespace drained by 3 workers: on 1 shard, and spread "
        "over 3 shards with `?shards=3`.",
        "",
        "| shards | namespaces | jobs/s | vs 1 shard | server CPU µs/job "
        "| commands/job (in scripts too) | busiest shard, measured | busiest shard, model |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (shards, count, spread), measures in sorted(found.items(), key=lambda kv: kv[0][::-1]):
        rate = statistics.median(m.rate for m in measures)
        what = f"1 spread (3 workers{', shards=3' if shards > 1 else ''})" if spread else count
        lines.append(
            f"| {shards} | {what} | {rate:,.0f} | {rate / base[(count, spread)]:.2f}x "
            f"| {median([m.cpu_per_job for m in measures])} "
            f"| {median([m.commands_per_job for m in measures])} "
            f"| {statistics.median(m.busiest for m in measures):.0%} of a core "
            f"| {statistics.median(m.busiest_rate * cost for m in measures):.0%} |"
        )
    direct = statistics.median(m["rate"] for m in postgres["direct"])
    lines += [
        "",
        "## PostgreSQL: directly and through PgBouncer",
        "",
        "One `conveyor worker --burst` (its defaults) drains the jobs; CPU from /proc, every "
        "postgres process (backends, WAL writer, checkpointer) and the pgbouncer process.",
        "",
        "| route | jobs/s | vs direct | postgres CPU µs/job | pgbouncer CPU µs/job |",
        "|---|---|---|---|---|",
    ]
    for route, rows in postgres.items():
        rate = statistics.median(m["rate"] for m in rows)
        lines.append(
            f"| {route} | {rate:,.0f} | {rate / direct:.2f}x "
            f"| {median([m['server_us'] for m in rows])} "
            f"| {median([m['bouncer_us'] for m in rows])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    text = report(run_all(args), run_postgres(args), args)
    (HERE / "CAPACITY_RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
