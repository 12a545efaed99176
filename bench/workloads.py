"""The workloads and raw baselines: each function measures its figure once and returns a dict.

Every Conveyor measurement gets a fresh namespace whose keys are deleted afterwards
(SCAN MATCH "{ns}:*" + DEL); every wait is bounded by ``Settings.deadline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

from .common import (
    QUEUE,
    commandstats,
    commandstats_delta,
    delete_namespace,
    new_namespace,
    parse_redis_benchmark,
    percentile,
    round_trips,
)

REPO = Path(__file__).resolve().parent.parent
POLL = 0.02  # seconds between progress polls (one HGETALL each)
BATCH = 100  # W1 batched and W5: jobs per enqueue_many
PRELOAD_BATCH = 1000  # W2: jobs per enqueue_many while filling the queue (not timed)
W5_PAYLOAD = 100  # bytes of serialized BasicJob in W5


class WorkloadError(RuntimeError):
    """A measurement could not be completed (timeout, worker crash, wrong counts)."""


@dataclass
class Settings:
    url: str
    jobs: int
    default_concurrency: int
    tuned_concurrency: int
    w3_rate: float
    w3_seconds: float
    w4_children: int
    rb_requests: int
    commandstats: bool
    workdir: Path
    deadline: float = 120.0
    py_spy: Path | None = None
    notes: list[str] = field(default_factory=list)


Workload = Callable[[Settings, aioredis.Redis], Awaitable[dict[str, Any]]]


# --- helpers ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def namespace(admin: aioredis.Redis, tag: str) -> AsyncIterator[str]:
    """A fresh namespace, its keys deleted afterwards whatever happened."""
    ns = new_namespace(tag)
    try:
        yield ns
    finally:
        await delete_namespace(admin, ns)


async def succeeded(storage: Any) -> int:
    for stats in await storage.queue_stats():
        if stats.queue == QUEUE:
            return int(stats.count(conveyor.JobState.SUCCEEDED))
    return 0


async def queued(storage: Any) -> int:
    for stats in await storage.queue_stats():
        if stats.queue == QUEUE:
            return int(stats.count(conveyor.JobState.QUEUED))
    return 0


async def wait_succeeded(
    storage: Any, target: int, deadline: float, what: str
) -> tuple[float, int]:
    """Poll ``queue_stats()`` every POLL s until ``target`` jobs succeeded.

    Returns (time.time() when seen, number of polls). Bounded by ``deadline`` seconds.
    """
    polls = 0
    stop = time.monotonic() + deadline
    while True:
        done = await succeeded(storage)
        polls += 1
        if done >= target:
            return time.time(), polls
        if time.monotonic() > stop:
            raise WorkloadError(f"{what}: only {done} of {target} jobs succeeded after {deadline}s")
        await asyncio.sleep(POLL)


async def snapshot(admin: aioredis.Redis, settings: Settings) -> dict[str, Any] | None:
    return await commandstats(admin) if settings.commandstats else None


def count_trips(
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    jobs: int,
    **kwargs: Any,
) -> dict[str, Any] | None:
    if before is None or after is None:
        return None
    delta = commandstats_delta(before, after)
    result = round_trips(delta, jobs, **kwargs)
    result["delta"] = delta
    return result


class Profiler:
    """``py-spy record`` attached to a process (only with ``--py-spy DIR``)."""

    def __init__(self, proc: asyncio.subprocess.Process | None, path: Path | None) -> None:
        self.proc = proc
        self.path = path

    @classmethod
    async def attach(cls, settings: Settings, pid: int, tag: str) -> Profiler:
        if settings.py_spy is None:
            return cls(None, None)
        settings.py_spy.mkdir(parents=True, exist_ok=True)
        path = settings.py_spy / f"{tag}.txt"
        cmd = ["py-spy", "record", "--pid", str(pid), "--rate", "1000", "--nonblocking"]
        cmd += ["--format", "raw", "--output", str(path)]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await asyncio.sleep(0.5)  # let it attach before the measured part starts
        return cls(proc, path)

    async def finish(self, *, interrupt: bool) -> str | None:
        """Wait for py-spy to write its profile (SIGINT it when its target keeps running)."""
        if self.proc is None:
            return None
        if interrupt and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        return str(self.path)


def _open_log(path: Path) -> Any:
    return open(path, "wb")  # handed to the child; the caller closes its own copy


class WorkerProcess:
    """``python -m bench.worker_app`` as a subprocess of the harness."""

    def __init__(
        self, proc: asyncio.subprocess.Process, out: Path, log: Path, spawned: float, tag: str
    ) -> None:
        self.proc = proc
        self.out = out
        self.log = log
        self.spawned = spawned
        self.tag = tag
        self.profiler = Profiler(None, None)

    @classmethod
    async def start(cls, settings: Settings, ns: str, concurrency: int, tag: str) -> WorkerProcess:
        out = settings.workdir / f"{ns}.json"
        log = settings.workdir / f"{ns}.log"
        cmd = [sys.executable, "-m", "bench.worker_app", "--url", settings.url]
        cmd += ["--namespace", ns, "--concurrency", str(concurrency), "--out", str(out)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        spawned = time.time()
        log_fh = _open_log(log)
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.PIPE, stderr=log_fh, cwd=REPO, env=env
            )
        finally:
            log_fh.close()  # the child has its own copy
        return cls(proc, out, log, spawned, tag)

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    async def wait_claiming(self, settings: Settings, timeout: float = 60.0) -> float:
        """Wait for the worker's first ``claim`` call; returns its time.time()."""
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise WorkloadError(f"worker did not start claiming in {timeout}s") from None
        if not line.startswith(b"CLAIMING "):
            raise WorkloadError(f"worker failed to start: {line!r}\n{self.log_tail()}")
        self.profiler = await Profiler.attach(settings, self.proc.pid, self.tag)
        return float(line.split()[1])

    async def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        """SIGTERM (graceful stop), wait, and read what the worker recorded."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
            raise WorkloadError(f"worker did not stop within {timeout}s of SIGTERM") from None
        await self.profiler.finish(interrupt=False)
        if self.proc.returncode != 0:
            raise WorkloadError(f"worker exited with {self.proc.returncode}\n{self.log_tail()}")
        try:
            data: dict[str, Any] = json.loads(self.out.read_text())
        except (OSError, ValueError) as exc:
            raise WorkloadError(f"worker wrote no results: {exc}\n{self.log_tail()}") from exc
        warnings = [ln for ln in self.log_tail().splitlines() if ln.strip()]
        if warnings:
            data["log_tail"] = warnings[-10:]
        return data

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
        await self.profiler.finish(interrupt=True)


def config(settings: Settings, ns: str) -> conveyor.Config:
    return conveyor.Config(url=settings.url, namespace=ns)


async def warm_up(client: conveyor.AsyncClient) -> None:
    """Load the enqueue script (NOSCRIPT + SCRIPT LOAD) outside the measurement.

    The job goes to a queue that no benchmark worker listens on.
    """
    await client.enqueue(BasicJob(name="warmup"), queue="bench_warmup")


# --- raw baselines --------------------------------------------------------------------------


async def raw_round_trips(settings: Settings, admin: aioredis.Redis) -> dict[str, Any]:
    """LPUSH then RPOP, each awaited alone: one round trip per command."""
    n = settings.jobs
    async with namespace(admin, "raw") as ns:
        key = "{" + ns + "}:raw"
        value = "0192f3a4-5b6c-7d8e-9f01-23456789abcd"  # as long as a job id
        r = aioredis.Redis.from_url(settings.url, client_name="bench:raw")
        try:
            await r.ping()
            lpush_time = 0.0
            clock = time.perf_counter
            start = clock()
            for _ in range(n):
                t = clock()
                await r.lpush(key, value)
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


async def raw_pipelined(settings: Settings, admin: aioredis.Redis) -> dict[str, Any]:
    """The same pairs, pipelined by 100: a pipeline of 100 LPUSH, then one of 100 RPOP."""
    n = settings.jobs
    batches = max(1, n // BATCH)
    n = batches * BATCH
    async with namespace(admin, "rawpipe") as ns:
        key = "{" + ns + "}:raw"
        value = "0192f3a4-5b6c-7d8e-9f01-23456789abcd"
        r = aioredis.Redis.from_url(settings.url, client_name="bench:raw")
        try:
            await r.ping()
            lpush_time = 0.0
            clock = time.perf_counter
            start = clock()
            for _ in range(batches):
                t = clock()
                pipe = r.pipeline(transaction=False)
                for _ in range(BATCH):
                    pipe.lpush(key, value)
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


def redis_benchmark_command(settings: Settings) -> list[str]:
    parts = urlsplit(settings.url)
    host, port = parts.hostname or "127.0.0.1", str(parts.port or 6379)
    cmd = ["redis-benchmark", "-h", host, "-p", port, "-t", "lpush,rpop"]
    return [*cmd, "-n", str(settings.rb_requests), "-q"]


async def redis_benchmark(settings: Settings, admin: aioredis.Redis) -> dict[str, Any]:
    """``redis-benchmark -t lpush,rpop`` (50 parallel clients by default, key "mylist" in db 0)."""
    cmd = redis_benchmark_command(settings)
    db0 = aioredis.Redis.from_url(settings.url, db=0, client_name="bench:admin")
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


# --- W1: enqueue --------------------------------------------------------------------------


async def _w1(settings: Settings, admin: aioredis.Redis, batched: bool) -> dict[str, Any]:
    n = settings.jobs
    tag = "w1b" if batched else "w1s"
    async with namespace(admin, tag) as ns, conveyor.AsyncClient(config(settings, ns)) as client:
        await warm_up(client)
        profiler = await Profiler.attach(settings, os.getpid(), f"{tag}_producer")
        before = await snapshot(admin, settings)
        clock = time.perf_counter
        if batched:
            batches = max(1, n // BATCH)
            n = batches * BATCH
            start = clock()
            for b in range(batches):
                first = b * BATCH
                await client.enqueue_many(
                    [BasicJob(name="noop", count=first + i) for i in range(BATCH)]
                )
            elapsed = clock() - start
        else:
            start = clock()
            for i in range(n):
                await client.enqueue(BasicJob(name="noop", count=i))
            elapsed = clock() - start
        after = await snapshot(admin, settings)
        await profiler.finish(interrupt=True)
        stored = await queued(await client.storage())
    if stored != n:
        raise WorkloadError(f"{tag}: {stored} jobs queued, expected {n}")
    result: dict[str, Any] = {"jobs": n, "seconds": elapsed, "jobs_per_s": n / elapsed}
    if batched:
        result["batch"] = BATCH
    result["commandstats"] = count_trips(before, after, n)
    if profiler.path:
        result["profile"] = str(profiler.path)
    return result


async def w1_single(settings: Settings, admin: aioredis.Redis) -> dict[str, Any]:
    """W1: ``await client.enqueue(...)`` one at a time."""
    return await _w1(settings, admin, batched=False)


async def w1_batched(settings: Settings, admin: aioredis.Redis) -> dict[str, Any]:
    """W1: ``await client.enqueue_many(...)`` in batches of 100."""
    return await _w1(settings, admin, batched=True)


# --- W2: drain ----------------------------------------------------------------------------


async def _w2(settings: Settings, admin: aioredis.Redis, concurrency: int) -> dict[str, Any]:
    n = settings.jobs
    tag = f"w2c{concurrency}"
    async with namespace(admin, tag) as ns, conveyor.AsyncClient(config(settings, ns)) as client:
        for first in range(0, n, PRELOAD_BATCH):
            size = min(PRELOAD_BATCH, n - first)
            await client.enqueue_many([BasicJob(name="noop", count=first + i) for i in range(size)])
        storage = await client.storage()
        if (have := await queued(storage)) != n:
            raise WorkloadError(f"{tag}: {have} jobs queued before the drain, expected {n}")
        before = await snapshot(admin, settings)
        worker = await WorkerProcess.start(settings, ns, concurrency, tag)
        try:
            first_claim = await worker.wait_claiming(settings)
            done_at, polls = await wait_succeeded(storage, n, settings.deadline, tag)
            after = await snapshot(admin, settings)
            last_settle = await admin.zrange("{" + ns + "}:finished", -1, -1, withscores=True)
            recorded = await worker.stop()
        except BaseException:
            await worker.kill()
            raise
    from_claim = done_at - first_claim
    from_spawn = done_at - worker.spawned
    calls = recorded.get("calls", {})
    result: dict[str, Any] = {
        "jobs": n,
        "concurrency": concurrency,
        "seconds": from_claim,
        "jobs_per_s": n / from_claim,
        "seconds_from_spawn": from_spawn,
        "jobs_per_s_from_spawn": n / from_spawn,
        "startup_seconds": first_claim - worker.spawned,
        "polls": polls,
        "worker_calls": calls,
    }
    if last_settle:
        # Cross-check: the last settle's Redis TIME, free of the poll's up-to-20 ms lag.
        server_end = float(last_settle[0][1])
        result["seconds_to_last_settle"] = server_end - first_claim
        result["jobs_per_s_to_last_settle"] = n / (server_end - first_claim)
    if calls.get("claimed_jobs"):
        result["jobs_per_claim"] = calls["claimed_jobs"] / max(1, calls["claim"])
    if calls.get("settled_outcomes"):
        result["outcomes_per_settle"] = calls["settled_outcomes"] / max(1, calls["settle"])
    result["commandstats"] = count_trips(
        before, after, n, harness={"hgetall": polls}, library_client={"hset": 1}
    )
    if worker.profiler.path:
        result["profile"] = str(worker.profiler.path)
    if "log_tail" in recorded:
        result["worker_log"] = recorded["log_tail"]
    return result


async def w2_default(settings: Settings, admin: aioredis.Redis) -> dict[str, Any]:
    """W2 at the Worker's default concurrency."""
    return await _w2(settings, admin, settings.default_concurrency)


async def w2_tuned(settings: Settings, admin: aioredis.Redis) -> dict[str, Any]:
    """W2 at the tuned concurrency."""
    return await _w2(settings, admin, settings.tuned_concurrency)


# --- W3: enqueue-to-start latency ------------------------------------------------------


async def w3_latency(settings: Settings, admin: aioredis.Redis) -> dict[str, Any]:
    n = max(1, round(settings.w3_rate * settings.w3_seconds))
    interval = 1.0 / settings.w3_rate
    async with namespace(admin, "w3") as ns, conveyor.AsyncClient(config(settings, ns)) as client:
        await warm_up(client)
        storage = await client.storage()
        worker = await WorkerProcess.start(settings, ns, settings.default_concurrency, "w3")
        try:
            await worker.wait_claiming(settings)
            await asyncio.sleep(0.3)  # the worker is now idle, blocked waiting for work
            before = await snapshot(admin, settings)
            clock = time.perf_counter
            start = clock() + 0.01
            late = 0
            for i in range(n):
                pause = start + i * interval - clock()
                if pause > 0:
                    await asyncio.sleep(pause)
                elif pause < -interval:
                    late += 1
                await client.enqueue(BasicJob(name="lat", count=int(time.time() * 1_000_000)))
            produced = clock() - start
            _, polls = await wait_succeeded(storage, n, settings.deadline, "w3")
            after = await snapshot(admin, settings)
            recorded = await worker.stop()
        except BaseException:
            await worker.kill()
            raise
    latencies = sorted(us / 1000.0 for us in recorded["latencies_us"])
    if len(latencies) != n:
        raise WorkloadError(f"w3: {len(latencies)} latencies recorded, expected {n}")
    result: dict[str, Any] = {
        "jobs": n,
        "rate": settings.w3_rate,
        "achieved_rate": n / produced,
        "late_sends": late,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1],
        "min_ms": latencies[0],
        "mean_ms": sum(latencies) / n,
        "worker_calls": recorded.get("calls", {}),
        "commandstats": count_trips(before, after, n, harness={"hgetall": polls}),
    }
    if worker.profiler.path:
        result["profile"] = str(worker.profiler.path)
    return result


# --- W4: family ------------------------------------------------------------------------


async def w4_family(settings: Settings, admin: aioredis.Redis) -> dict[str, Any]:
    children = settings.w4_children
    total = children + 2  # the parent, its children, the heir
    async with namespace(admin, "w4") as ns, conveyor.AsyncClient(config(settings, ns)) as client:
        await warm_up(client)
        storage = await client.storage()
        worker = await WorkerProcess.start(settings, ns, settings.default_concurrency, "w4")
        try:
            await worker.wait_claiming(settings)
            await asyncio.sleep(0.3)
            before = await snapshot(admin, settings)
            enqueued = time.time()
            await client.enqueue(BasicJob(name="parent", count=children))
            _, polls = await wait_succeeded(storage, total, settings.deadline, "w4")
            after = await snapshot(admin, settings)
            recorded = await worker.stop()
        except BaseException:
            await worker.kill()
            raise
    if recorded.get("heir_start") is None or recorded.get("children") != children:
        raise WorkloadError(f"w4: worker saw {recorded.get('children')} children, heir {recorded}")
    heir = recorded["heir_start"]
    result: dict[str, Any] = {
        "children": children,
        "concurrency": settings.default_concurrency,
        "heir_seconds": heir - enqueued,
        "phases": {
            "enqueue_to_parent_start": recorded["parent_start"] - enqueued,
            "parent_declaring": recorded["parent_declared"] - recorded["parent_start"],
            "declared_to_first_child": recorded["child_first"] - recorded["parent_declared"],
            "first_to_last_child": recorded["child_last"] - recorded["child_first"],
            "last_child_to_heir": heir - recorded["child_last"],
        },
        "children_per_s": children / max(1e-9, recorded["child_last"] - recorded["child_first"]),
        "worker_calls": recorded.get("calls", {}),
        "commandstats": count_trips(
            before, after, total, harness={"hgetall": polls}, library_client={}
        ),
    }
    if worker.profiler.path:
        result["profile"] = str(worker.profiler.path)
    return result


# --- W5: memory -------------------------------------------------------------------------


async def w5_memory(settings: Settings, admin: aioredis.Redis) -> dict[str, Any]:
    n = settings.jobs
    name = "m" * (W5_PAYLOAD - 2)  # field tag + length byte + name = 100 bytes
    payload = BasicJob(name=name)
    if payload.ByteSize() != W5_PAYLOAD:
        raise WorkloadError(f"w5 payload is {payload.ByteSize()} bytes, not {W5_PAYLOAD}")
    async with namespace(admin, "w5") as ns, conveyor.AsyncClient(config(settings, ns)) as client:
        async with (
            namespace(admin, "w5warm") as warm_ns,  # scripts loaded, then its keys gone
            conveyor.AsyncClient(config(settings, warm_ns)) as warm,
        ):
            await warm.enqueue_many([BasicJob(name=name)])
        batches = [
            [BasicJob(name=name) for _ in range(min(BATCH, n - first))]
            for first in range(0, n, BATCH)
        ]
        await client.connect()
        before = int((await admin.info("memory"))["used_memory"])
        for batch in batches:
            await client.enqueue_many(batch)
        after = int((await admin.info("memory"))["used_memory"])
        breakdown, encodings = await _memory_breakdown(admin, ns)
        limits = await admin.config_get("hash-max-listpack-*")
        limits.update(await admin.config_get("zset-max-listpack-*"))
    return {
        "jobs": n,
        "payload_bytes": W5_PAYLOAD,
        "used_memory_before": before,
        "used_memory_after": after,
        "bytes_per_job": (after - before) / n,
        "memory_usage_per_job": {k: v / n for k, v in breakdown.items()},
        "job_hash_encoding": encodings.get("job hashes", "?"),
        "encodings": encodings,
        "hash_max_listpack": {_text(k): _text(v) for k, v in sorted(limits.items())},
        "unattributed_per_job": (after - before - sum(breakdown.values())) / n,
    }


async def _memory_breakdown(
    admin: aioredis.Redis, ns: str
) -> tuple[dict[str, int], dict[str, str]]:
    """MEMORY USAGE (SAMPLES 0: exact) summed by kind of key, and each kind's OBJECT ENCODING."""
    prefix = "{" + ns + "}:"
    keys = [k async for k in admin.scan_iter(match=prefix + "*", count=1000)]
    labels = {"job": "job hashes", "idx": "state index (zset)", "q": "queue list"}
    sizes: dict[str, int] = {}
    encodings: dict[str, str] = {}
    for first in range(0, len(keys), 1000):
        chunk = keys[first : first + 1000]
        pipe = admin.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(chunk, await pipe.execute(), strict=True):
            rest = key.decode()[len(prefix) :]
            label = labels.get(rest.split(":", 1)[0], rest)
            if label not in encodings:
                encodings[label] = _text(await admin.object("encoding", key))
            sizes[label] = sizes.get(label, 0) + int(size or 0)
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1])), encodings


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


WORKLOADS: dict[str, tuple[str, Workload]] = {
    # name: (the --workloads group it belongs to, function)
    "raw_rtt": ("baseline", raw_round_trips),
    "raw_pipelined": ("baseline", raw_pipelined),
    "redis_benchmark": ("baseline", redis_benchmark),
    "w1_single": ("w1", w1_single),
    "w1_batched": ("w1", w1_batched),
    "w2_default": ("w2", w2_default),
    "w2_tuned": ("w2", w2_tuned),
    "w3": ("w3", w3_latency),
    "w4": ("w4", w4_family),
    "w5": ("w5", w5_memory),
}
