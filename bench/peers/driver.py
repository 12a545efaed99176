"""Run one workload on one peer: ``python -m bench.peers.driver PEER WORKLOAD [options]``.

Started by ``bench.run`` with the peer's own virtualenv's python (``bench.peers.venvs``),
so Celery, Dramatiq and the rest never share a process, or a redis-py version, with
Conveyor or with each other. Writes one JSON object to ``--out``.

Every measurement gets a clean place (a Redis database number flushed before and after;
a PostgreSQL database created for it and dropped after), a fresh ledger, bounded waits,
and a worker process group that is stopped with SIGTERM and killed if it lingers. A
figure counts only when the ledger shows every job ran exactly once.

The timings favour the peers where they differ from Conveyor's: a drain is timed from
the first job's start (Conveyor's from its first claim) to the moment the last job
started (Conveyor's to its last acknowledged outcome), and W3 and W4 run on the peer's
tuned worker (Conveyor's on its default one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.metadata
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from . import PEERS
from .base import Peer, Place, Unsupported
from .ledger import ENV, Ledger

REPO = Path(__file__).resolve().parents[2]
POLL = 0.02  # seconds between ledger polls
PRELOAD_BATCH = 1000
W5_PAD = 100  # characters of padding: the payload is ~100 bytes beyond the index
WARM = 10**9  # the warm-up job's index


class PeerError(RuntimeError):
    """The measurement could not be completed or did not check out."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


# --- places ------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_place(url: str) -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        yield url
    finally:
        client.flushdb()
        client.close()


@contextlib.contextmanager
def postgres_place(url: str) -> Iterator[str]:
    """A database of its own, dropped afterwards; ``url`` names the maintenance database."""
    import psycopg

    name = f"bench_peer_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stored_bytes(peer: Peer) -> int:
    """Redis: the server's ``used_memory``. PostgreSQL: every table of the place's
    database with its indexes and TOAST."""
    if peer.backend == "redis":
        import redis

        with contextlib.closing(redis.Redis.from_url(peer.place.url)) as client:
            return int(client.info("memory")["used_memory"])
    import psycopg

    with psycopg.connect(peer.place.url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'm') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%'"
        ).fetchone()
    return int(row[0]) if row else 0


# --- the worker process ------------------------------------------------------------------


class WorkerProcess:
    def __init__(self, peer: Peer, tuned: bool) -> None:
        self.argv = [sys.executable, *peer.worker_argv(tuned)]
        self.log = peer.place.workdir / f"worker-{secrets.token_hex(3)}.log"
        env = dict(os.environ, **{ENV: str(peer.place.ledger), "BENCH_URL": peer.place.url})
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        self.spawned = time.time()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise PeerError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM to the process group (a warm shutdown), SIGKILL after ``grace`` s."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        # Children a pool left behind (same group) go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def worker(peer: Peer, tuned: bool = False) -> AsyncIterator[WorkerProcess]:
    proc = WorkerProcess(peer, tuned)
    try:
        yield proc
    finally:
        proc.stop()


async def wait_count(
    ledger: Ledger, target: int, deadline: float, what: str, proc: WorkerProcess
) -> float:
    """Poll until ``target`` records; returns time.time() when seen."""
    stop = time.monotonic() + deadline
    while True:
        if ledger.count() >= target:
            return time.time()
        proc.check_alive()
        if time.monotonic() > stop:
            raise PeerError(
                f"{what}: {ledger.count()} of {target} jobs ran in {deadline:.0f} s\n{proc.tail()}"
            )
        await asyncio.sleep(POLL)


async def warm_up(peer: Peer, proc: WorkerProcess, ledger: Ledger, deadline: float) -> None:
    """One job through the running worker (imports done, connections open), then a clean ledger."""
    await peer.enqueue([WARM])
    await wait_count(ledger, 1, deadline, "warm-up", proc)
    ledger.clear()


def verified(ledger: Ledger, expected: set[int]) -> dict[str, Any]:
    check = ledger.check(expected)
    if not check.exactly_once:
        raise PeerError(f"not exactly once: {check.as_dict()}")
    return check.as_dict()


# --- workloads ----------------------------------------------------------------------------


async def w1(peer: Peer, args: argparse.Namespace, batched: bool) -> dict[str, Any]:
    n = args.jobs
    await peer.enqueue([WARM])  # connections, scripts, first-call imports
    start = time.perf_counter()
    if batched:
        await peer.enqueue_batch(range(n), 100)
    else:
        await peer.enqueue(range(n))
    seconds = time.perf_counter() - start
    have = await peer.queued()
    if have != n + 1:
        raise PeerError(f"{have} jobs queued after enqueuing {n} (+1 warm-up)")
    return {"jobs": n, "seconds": seconds, "jobs_per_s": n / seconds, "queued": have - 1}


async def preload(peer: Peer, n: int) -> None:
    try:
        await peer.enqueue_batch(range(n), PRELOAD_BATCH)
    except Unsupported:
        await peer.enqueue(range(n))
    if (have := await peer.queued()) != n:
        raise PeerError(f"{have} jobs queued before the drain, expected {n}")


async def w2(peer: Peer, args: argparse.Namespace, tuned: bool) -> dict[str, Any]:
    cap = None if tuned else peer.default_drain_jobs
    n = min(args.jobs, cap) if cap else args.jobs
    ledger = Ledger(peer.place.ledger)
    await preload(peer, n)
    async with worker(peer, tuned) as proc:
        done = await wait_count(ledger, n, args.deadline, "w2", proc)
    starts = ledger.starts()
    first = min(min(t) for t in starts.values())
    result = {
        "jobs": n,
        "concurrency": peer.tuned_concurrency if tuned else peer.default_concurrency,
        "worker": " ".join(proc.argv[1:]),
        "seconds": done - first,
        "jobs_per_s": n / (done - first),
        "startup_seconds": first - proc.spawned,
        "jobs_per_s_from_spawn": n / (done - proc.spawned),
    }
    result["verified"] = verified(ledger, set(range(n)))
    return result


async def w3(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    ledger = Ledger(peer.place.ledger)
    total = int(args.w3_rate * args.w3_seconds)
    enqueued: dict[int, float] = {}
    async with worker(peer, tuned=True) as proc:
        await warm_up(peer, proc, ledger, args.deadline)
        begin = time.perf_counter()
        for k in range(total):
            pause = begin + k / args.w3_rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            enqueued[k] = time.time()
            await peer.enqueue([k])
        await wait_count(ledger, total, args.deadline, "w3", proc)
    starts = ledger.starts()
    check = verified(ledger, set(range(total)))
    latencies = [(starts[k][0] - enqueued[k]) * 1000 for k in range(total)]
    return {
        "jobs": total,
        "rate": args.w3_rate,
        "concurrency": peer.tuned_concurrency,
        "worker": " ".join(proc.argv[1:]),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "verified": check,
    }


async def w4(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    if peer.fan_in is None:
        raise Unsupported("no native construct to run a job after a group of jobs")
    ledger = Ledger(peer.place.ledger)
    children = args.w4_children
    async with worker(peer, tuned=True) as proc:
        await warm_up(peer, proc, ledger, args.deadline)
        submitted = time.time()
        await peer.submit_fan_in(children)
        await wait_count(ledger, children + 1, args.deadline, "w4", proc)
    starts = ledger.starts()
    check = verified(ledger, set(range(children + 1)))
    heir = starts[children][0]
    last_child = max(starts[k][0] for k in range(children))
    if heir < last_child:
        raise PeerError(f"the {peer.fan_in} callback started before its last child")
    return {
        "children": children,
        "construct": peer.fan_in,
        "concurrency": peer.tuned_concurrency,
        "worker": " ".join(proc.argv[1:]),
        "heir_seconds": heir - submitted,
        "last_child_to_heir": heir - last_child,
        "verified": check,
    }


async def w5(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    n = args.jobs
    pad = "x" * W5_PAD
    await peer.enqueue([WARM])  # the system's fixed structures exist before "before"
    before = stored_bytes(peer)
    try:
        await peer.enqueue_batch(range(n), 100, pad)
    except Unsupported:
        await peer.enqueue(range(n), pad)
    if (have := await peer.queued()) != n + 1:
        raise PeerError(f"{have} jobs queued, expected {n} (+1 warm-up)")
    if peer.backend == "postgres":
        import psycopg

        with psycopg.connect(peer.place.url, autocommit=True) as conn:
            conn.execute("VACUUM")  # visibility maps and free space maps, as Conveyor's W5
    grown = stored_bytes(peer) - before
    return {"jobs": n, "payload_pad": W5_PAD, "bytes_per_job": grown / n, "grown": grown}


WORKLOADS: dict[str, Callable[[Peer, argparse.Namespace], Any]] = {
    "w1_single": lambda p, a: w1(p, a, batched=False),
    "w1_batched": lambda p, a: w1(p, a, batched=True),
    "w2_default": lambda p, a: w2(p, a, tuned=False),
    "w2_tuned": lambda p, a: w2(p, a, tuned=True),
    "w3_latency": w3,
    "w4_family": w4,
    "w5_size": w5,
}


def load(name: str) -> Peer:
    module = importlib.import_module(f"bench.peers.{name}_peer")
    peer: Peer = module.PEER
    return peer


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    peer = load(args.peer)
    result: dict[str, Any] = {
        "peer": peer.name,
        "package": peer.package,
        "version": importlib.metadata.version(peer.package),
        "backend": peer.backend,
        "workload": args.workload,
    }
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="peer-")))
        if peer.backend == "redis":
            url = stack.enter_context(redis_place(args.redis_url))
        else:
            url = stack.enter_context(postgres_place(args.pg_url))
        place = Place(peer.backend, url, workdir / "ledger", workdir)
        Ledger(place.ledger)
        await peer.open(place)
        try:
            result.update(await WORKLOADS[args.workload](peer, args))
        except Unsupported as exc:
            result["unsupported"] = str(exc)
        finally:
            await peer.close()
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.peers.driver")
    p.add_argument("peer", choices=PEERS)
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--w3-rate", type=float, default=200.0)
    p.add_argument("--w3-seconds", type=float, default=5.0)
    p.add_argument("--w4-children", type=int, default=2000)
    p.add_argument("--deadline", type=float, default=120.0)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        result = asyncio.run(measure(args))
    except PeerError as exc:
        result = {"peer": args.peer, "workload": args.workload, "error": str(exc)}
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "verified"}))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
