"""The Conveyor workloads W1-W6, written once for every backend (``bench.backends``).

Each function measures its figure once on one backend and returns a dict. Every Conveyor
measurement gets a fresh namespace that is removed afterwards (Redis keys deleted,
PostgreSQL schema dropped, SQLite file deleted); every wait is bounded by
``Settings.deadline``. The raw baselines are in ``bench.baselines``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.supervisor import default_processes

from . import sqlcount
from .backends import Backend, RedisBackend
from .common import QUEUE, percentile

REPO = Path(__file__).resolve().parent.parent
POLL = 0.02  # seconds between progress polls (one query each)
BATCH = 100  # W1 batched and W5: jobs per enqueue_many
PRELOAD_BATCH = 1000  # W2: jobs per enqueue_many while filling the queue (not timed)
W5_PAYLOAD = 100  # bytes of serialized BasicJob in W5


class WorkloadError(RuntimeError):
    """A measurement could not be completed (timeout, worker crash, wrong counts)."""


@dataclass
class Settings:
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
    w5_jobs: int = 5_000
    w6_children: int = 100_000
    w6_deadline: float = 600.0
    notes: list[str] = field(default_factory=list)


Workload = Callable[[Settings, Backend], Awaitable[dict[str, Any]]]


# --- helpers ------------------------------------------------------------------------------


async def queued(storage: Any) -> int:
    for stats in await storage.queue_stats():
        if stats.queue == QUEUE:
            return int(stats.count(conveyor.JobState.QUEUED))
    return 0


async def wait_succeeded(
    be: Backend, storage: Any, ns: str, target: int, deadline: float, what: str
) -> tuple[float, int]:
    """Poll the backend's succeeded count every POLL s until ``target`` jobs succeeded.

    Returns (time.time() when seen, number of polls). Bounded by ``deadline`` seconds.
    """
    polls = 0
    stop = time.monotonic() + deadline
    while True:
        done = await be.succeeded(storage, ns)
        polls += 1
        if done >= target:
            return time.time(), polls
        if time.monotonic() > stop:
            raise WorkloadError(f"{what}: only {done} of {target} jobs succeeded after {deadline}s")
        await asyncio.sleep(POLL)


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
        self,
        proc: asyncio.subprocess.Process,
        out: Path,
        log: Path,
        spawned: float,
        tag: str,
        hold: bool,
    ) -> None:
        self.proc = proc
        self.out = out
        self.log = log
        self.spawned = spawned
        self.tag = tag
        self.hold = hold
        self.profiler = Profiler(None, None)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        be: Backend,
        ns: str,
        concurrency: int,
        tag: str,
        *,
        expect: int,
        hold: bool = False,
        out_tag: str = "",
    ) -> WorkerProcess:
        """Spawn the worker. ``expect``: outcomes after which it snapshots its SQL counts
        (or when it stops, if it settles fewer); ``hold``: it waits for ``go()`` before its
        first claim (the wire census); ``out_tag`` keeps the files of a fleet's processes
        apart."""
        out = settings.workdir / f"{ns}{out_tag}.json"
        log = settings.workdir / f"{ns}{out_tag}.log"
        cmd = [sys.executable, "-m", "bench.worker_app", "--url", be.url(ns)]
        cmd += ["--namespace", ns, "--concurrency", str(concurrency), "--out", str(out)]
        cmd += ["--expect", str(expect)]
        if be.counting and be.counts_key == "sql_counts":
            cmd.append("--count-sql")
        if hold:
            cmd.append("--hold")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        spawned = time.time()
        log_fh = _open_log(log)
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE if hold else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_fh,
                cwd=REPO,
                env=env,
            )
        finally:
            log_fh.close()  # the child has its own copy
        return cls(proc, out, log, spawned, tag, hold)

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

    async def go(self) -> None:
        """Let a held worker make its first claim."""
        if self.hold and self.proc.stdin is not None:
            self.proc.stdin.write(b"go\n")
            await self.proc.stdin.drain()

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


class WorkerFleet:
    """Several ``bench.worker_app`` processes on one namespace, as ``conveyor worker
    --processes N`` runs them (N independent worker processes), seen as one worker:
    spawned together, claiming from the first one's first claim, stopped together, and
    their records merged (calls and SQL counts summed)."""

    def __init__(self, members: list[WorkerProcess]) -> None:
        self.members = members
        self.spawned = min(m.spawned for m in members)
        self.profiler = members[0].profiler

    @classmethod
    async def start(
        cls,
        settings: Settings,
        be: Backend,
        ns: str,
        concurrency: int,
        tag: str,
        *,
        expect: int,
        processes: int,
    ) -> WorkerFleet:
        members = []
        try:
            for i in range(processes):
                name = tag if processes == 1 else f"{tag}_p{i}"
                members.append(
                    await WorkerProcess.start(
                        settings, be, ns, concurrency, name, expect=expect, out_tag=str(i)
                    )
                )
        except BaseException:
            for member in members:
                await member.kill()
            raise
        return cls(members)

    async def wait_claiming(self, settings: Settings, timeout: float = 60.0) -> float:
        """Wait until every process has claimed once; the first claim's time.time()."""
        times = await asyncio.gather(*(m.wait_claiming(settings, timeout) for m in self.members))
        self.profiler = self.members[0].profiler
        return min(times)

    async def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        records = await asyncio.gather(*(m.stop(timeout) for m in self.members))
        if len(records) == 1:
            return records[0]
        merged: dict[str, Any] = {"processes": len(records)}
        calls: Counter[str] = Counter()
        for record in records:
            calls.update(record.get("calls", {}))
        merged["calls"] = dict(calls)
        counts = [r["sql_counts"] for r in records if r.get("sql_counts")]
        if counts:
            merged["sql_counts"] = sqlcount.add(*counts)
        tails = [line for r in records for line in r.get("log_tail", [])]
        if tails:
            merged["log_tail"] = tails[-10:]
        return merged

    async def kill(self) -> None:
        for member in self.members:
            await member.kill()


async def warm_up(client: conveyor.AsyncClient) -> None:
    """Load the enqueue script / compile the statements outside the measurement.

    The job goes to a queue that no benchmark worker listens on.
    """
    await client.enqueue(BasicJob(name="warmup"), queue="bench_warmup")


def _counts(be: Backend, result: dict[str, Any], trips: dict[str, Any] | None) -> None:
    result[be.counts_key] = trips


# --- W1: enqueue --------------------------------------------------------------------------


async def _w1(settings: Settings, be: Backend, how: str, jobs: int) -> dict[str, Any]:
    """W1 ``how``: "single" (awaited one at a time), "batched" or "sync" (one at a time
    from a thread of synchronous code, through ``conveyor.Client``)."""
    n = jobs
    tag = {"single": "w1s", "batched": "w1b", "sync": "w1y"}[how]
    batched = how == "batched"
    async with be.namespace(tag) as ns, conveyor.AsyncClient(be.config(ns)) as client:
        await warm_up(client)
        storage = await client.storage()
        sync_client = conveyor.Client(be.config(ns)) if how == "sync" else None
        if sync_client is not None:  # opened and warmed up before the counts and clock
            warmup = BasicJob(name="warmup")
            await asyncio.to_thread(sync_client.enqueue, warmup, queue="bench_warmup")
        profiler = await Profiler.attach(settings, os.getpid(), f"{be.name}_{tag}_producer")
        before = await be.snap(storage)
        clock = time.perf_counter
        if sync_client is not None:

            def produce(enqueue: Any = sync_client.enqueue) -> float:
                start = clock()
                for i in range(n):
                    enqueue(BasicJob(name="noop", count=i))
                return clock() - start

            elapsed = await asyncio.to_thread(produce)
            await asyncio.to_thread(sync_client.close)
        elif batched:
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
        after = await be.snap(storage)
        await profiler.finish(interrupt=True)
        stored = await queued(storage)
    if stored != n:
        raise WorkloadError(f"{tag}: {stored} jobs queued, expected {n}")
    result: dict[str, Any] = {"jobs": n, "seconds": elapsed, "jobs_per_s": n / elapsed}
    if batched:
        result["batch"] = BATCH
    _counts(be, result, be.trips(before, after, n))
    if profiler.path:
        result["profile"] = str(profiler.path)
    return result


async def w1_single(settings: Settings, be: Backend, jobs: int | None = None) -> dict[str, Any]:
    """W1: ``await client.enqueue(...)`` one at a time."""
    return await _w1(settings, be, "single", jobs or settings.jobs)


async def w1_sync(settings: Settings, be: Backend, jobs: int | None = None) -> dict[str, Any]:
    """W1: ``client.enqueue(...)`` one at a time from synchronous code (``conveyor.Client``,
    as a web view or a script calls it), in one thread."""
    return await _w1(settings, be, "sync", jobs or settings.jobs)


async def w1_batched(settings: Settings, be: Backend, jobs: int | None = None) -> dict[str, Any]:
    """W1: ``await client.enqueue_many(...)`` in batches of 100."""
    return await _w1(settings, be, "batched", jobs or settings.jobs)


# --- W2: drain ----------------------------------------------------------------------------


async def _w2(
    settings: Settings,
    be: Backend,
    concurrency: int,
    jobs: int,
    hold: bool = False,
    processes: int = 1,
) -> dict[str, Any]:
    n = jobs
    tag = f"w2c{concurrency}" + (f"p{processes}" if processes > 1 else "")
    async with be.namespace(tag) as ns, conveyor.AsyncClient(be.config(ns)) as client:
        for first in range(0, n, PRELOAD_BATCH):
            size = min(PRELOAD_BATCH, n - first)
            await client.enqueue_many([BasicJob(name="noop", count=first + i) for i in range(size)])
        storage = await client.storage()
        if (have := await queued(storage)) != n:
            raise WorkloadError(f"{tag}: {have} jobs queued before the drain, expected {n}")
        # Redis counts from before the spawn (worker set-up included, ≈0.001/job); a held
        # worker (the wire census) from its first claim exactly; the SQL in-process counts
        # are the worker's own, from its first claim to its n-th outcome.
        before = None if hold else await be.snap(storage)
        worker: WorkerProcess | WorkerFleet
        if processes > 1:
            worker = await WorkerFleet.start(
                settings, be, ns, concurrency, f"{be.name}_{tag}", expect=n, processes=processes
            )
        else:
            worker = await WorkerProcess.start(
                settings, be, ns, concurrency, f"{be.name}_{tag}", expect=n, hold=hold
            )
        try:
            first_claim = await worker.wait_claiming(settings)
            if hold:
                before = await be.snap(storage)
                await worker.go()
            done_at, polls = await wait_succeeded(be, storage, ns, n, settings.deadline, tag)
            after = await be.snap(storage)
            server_end = await be.last_settle(ns)
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
        "processes": processes,
        "seconds": from_claim,
        "jobs_per_s": n / from_claim,
        "seconds_from_spawn": from_spawn,
        "jobs_per_s_from_spawn": n / from_spawn,
        "startup_seconds": first_claim - worker.spawned,
        "polls": polls,
        "worker_calls": calls,
    }
    if server_end is not None and server_end > first_claim:
        # Cross-check: the last settle as the backend recorded it, free of the poll's lag.
        result["seconds_to_last_settle"] = server_end - first_claim
        result["jobs_per_s_to_last_settle"] = n / (server_end - first_claim)
    if calls.get("claimed_jobs"):
        result["jobs_per_claim"] = calls["claimed_jobs"] / max(1, calls["claim"])
    if calls.get("settled_outcomes"):
        result["outcomes_per_settle"] = calls["settled_outcomes"] / max(1, calls["settle"])
    _counts(be, result, be.trips(before, after, n, polls=polls, worker=recorded))
    if worker.profiler.path:
        result["profile"] = str(worker.profiler.path)
    if "log_tail" in recorded:
        result["worker_log"] = recorded["log_tail"]
    return result


async def w2_default(settings: Settings, be: Backend, jobs: int | None = None) -> dict[str, Any]:
    """W2 with what ``conveyor worker`` starts by default: one process per CPU (one on
    SQLite), each at the Worker's default concurrency."""
    processes = default_processes(be.url("bench"), burst=False)
    return await _w2(
        settings, be, settings.default_concurrency, jobs or settings.jobs, processes=processes
    )


async def w2_tuned(settings: Settings, be: Backend, jobs: int | None = None) -> dict[str, Any]:
    """W2 at the tuned concurrency, in one worker process: what one core does."""
    return await _w2(settings, be, settings.tuned_concurrency, jobs or settings.jobs)


# --- W3: enqueue-to-start latency ------------------------------------------------------


async def w3_latency(
    settings: Settings, be: Backend, rate: float | None = None, seconds: float | None = None
) -> dict[str, Any]:
    rate = rate or settings.w3_rate
    n = max(1, round(rate * (seconds or settings.w3_seconds)))
    interval = 1.0 / rate
    async with be.namespace("w3") as ns, conveyor.AsyncClient(be.config(ns)) as client:
        await warm_up(client)
        storage = await client.storage()
        worker = await WorkerProcess.start(
            settings, be, ns, settings.default_concurrency, f"{be.name}_w3", expect=n
        )
        try:
            await worker.wait_claiming(settings)
            await asyncio.sleep(0.3)  # the worker is now idle, blocked waiting for work
            before = await be.snap(storage)
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
            after = await be.snap(storage)  # the producer's side
            _, polls = await wait_succeeded(be, storage, ns, n, settings.deadline, "w3")
            if isinstance(be, RedisBackend):
                after = await be.snap(storage)  # server-wide: both sides
            recorded = await worker.stop()
        except BaseException:
            await worker.kill()
            raise
    latencies = sorted(us / 1000.0 for us in recorded["latencies_us"])
    if len(latencies) != n:
        raise WorkloadError(f"w3: {len(latencies)} latencies recorded, expected {n}")
    result: dict[str, Any] = {
        "jobs": n,
        "rate": rate,
        "achieved_rate": n / produced,
        "late_sends": late,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1],
        "min_ms": latencies[0],
        "mean_ms": sum(latencies) / n,
        "worker_calls": recorded.get("calls", {}),
    }
    _counts(be, result, be.trips(before, after, n, polls=polls, worker=recorded))
    if worker.profiler.path:
        result["profile"] = str(worker.profiler.path)
    return result


# --- W4: family ------------------------------------------------------------------------


@dataclass
class FamilyRun:
    """What one family measurement saw: the worker's record and the harness's side."""

    recorded: dict[str, Any]
    enqueued: float
    trips: dict[str, Any] | None
    profile: str | None


async def _run_family(
    settings: Settings, be: Backend, tag: str, parent: str, children: int, concurrency: int,
    deadline: float,
) -> FamilyRun:  # fmt: skip
    """A ``parent`` job declaring ``children`` children and one heir, one worker process:
    waits until all succeeded and checks that the worker saw every child and the heir."""
    total = children + 2  # the parent, its children, the heir
    async with be.namespace(tag) as ns, conveyor.AsyncClient(be.config(ns)) as client:
        await warm_up(client)
        storage = await client.storage()
        worker = await WorkerProcess.start(
            settings, be, ns, concurrency, f"{be.name}_{tag}", expect=total
        )
        try:
            await worker.wait_claiming(settings)
            await asyncio.sleep(0.3)
            before = await be.snap(storage)
            enqueued = time.time()
            await client.enqueue(BasicJob(name=parent, count=children))
            after = await be.snap(storage)  # the producer's side
            _, polls = await wait_succeeded(be, storage, ns, total, deadline, tag)
            if isinstance(be, RedisBackend):
                after = await be.snap(storage)
            recorded = await worker.stop()
        except BaseException:
            await worker.kill()
            raise
    if recorded.get("heir_start") is None or recorded.get("children") != children:
        raise WorkloadError(
            f"{tag}: worker saw {recorded.get('children')} children, heir {recorded}"
        )
    trips = be.trips(before, after, total, polls=polls, worker=recorded)
    profile = str(worker.profiler.path) if worker.profiler.path else None
    return FamilyRun(recorded, enqueued, trips, profile)


def _children_per_s(recorded: dict[str, Any]) -> float:
    return float(recorded["children"]) / max(1e-9, recorded["child_last"] - recorded["child_first"])


async def w4_family(settings: Settings, be: Backend) -> dict[str, Any]:
    children = settings.w4_children
    conc = settings.default_concurrency
    run = await _run_family(settings, be, "w4", "parent", children, conc, settings.deadline)
    recorded, enqueued = run.recorded, run.enqueued
    heir = recorded["heir_start"]
    result: dict[str, Any] = {
        "jobs": children + 2,
        "children": children,
        "concurrency": conc,
        "heir_seconds": heir - enqueued,
        "phases": {
            "enqueue_to_parent_start": recorded["parent_start"] - enqueued,
            "parent_declaring": recorded["parent_declared"] - recorded["parent_start"],
            "declared_to_first_child": recorded["child_first"] - recorded["parent_declared"],
            "first_to_last_child": recorded["child_last"] - recorded["child_first"],
            "last_child_to_heir": heir - recorded["child_last"],
        },
        "children_per_s": _children_per_s(recorded),
        "worker_calls": recorded.get("calls", {}),
    }
    _counts(be, result, run.trips)
    if run.profile:
        result["profile"] = run.profile
    return result


# --- W6: a parent with 100,000 children (Conveyor alone) ------------------------------


async def w6_big_family(settings: Settings, be: Backend) -> dict[str, Any]:
    """One parent declaring ``w6_children`` children (staged 1,000 at a time with
    ``ctx.flush()``) and one heir, one worker process at the tuned concurrency: the time to
    the heir's start and the worker's peak RSS."""
    children = settings.w6_children
    conc = settings.tuned_concurrency
    run = await _run_family(settings, be, "w6", "bigparent", children, conc, settings.w6_deadline)
    recorded = run.recorded
    result: dict[str, Any] = {
        "jobs": children + 2,
        "children": children,
        "concurrency": conc,
        "heir_seconds": recorded["heir_start"] - run.enqueued,
        "parent_declaring": recorded["parent_declared"] - recorded["parent_start"],
        "children_per_s": _children_per_s(recorded),
        "peak_rss_mib": recorded["peak_rss_kib"] / 1024,
        "rss_at_first_claim_mib": recorded["rss_at_first_claim_kib"] / 1024,
        "worker_calls": recorded.get("calls", {}),
    }
    result["rss_growth_mib"] = result["peak_rss_mib"] - result["rss_at_first_claim_mib"]
    if run.profile:
        result["profile"] = run.profile
    return result


# --- W5: storage per queued job -------------------------------------------------------


async def w5_size(settings: Settings, be: Backend) -> dict[str, Any]:
    """Storage per queued job with a 100-byte payload: Redis memory, the PostgreSQL jobs
    table with its indexes and TOAST, the SQLite file (after a WAL checkpoint)."""
    n = settings.w5_jobs
    name = "m" * (W5_PAYLOAD - 2)  # field tag + length byte + name = 100 bytes
    payload = BasicJob(name=name)
    if payload.ByteSize() != W5_PAYLOAD:
        raise WorkloadError(f"w5 payload is {payload.ByteSize()} bytes, not {W5_PAYLOAD}")
    batches = [
        [BasicJob(name=name) for _ in range(min(BATCH, n - first))] for first in range(0, n, BATCH)
    ]
    async with be.namespace("w5") as ns, conveyor.AsyncClient(be.config(ns)) as client:
        if isinstance(be, RedisBackend):
            async with (
                be.namespace("w5warm") as warm_ns,  # scripts loaded, then its keys gone
                conveyor.AsyncClient(be.config(warm_ns)) as warm,
            ):
                await warm.enqueue_many([BasicJob(name=name)])
        storage = await client.storage()  # the SQL backends create their tables here
        before = await be.size(ns, storage)
        for batch in batches:
            await client.enqueue_many(batch)
        after = await be.size(ns, storage)
        if (have := await queued(storage)) != n:
            raise WorkloadError(f"w5: {have} jobs queued, expected {n}")
        result: dict[str, Any] = {
            "jobs": n,
            "payload_bytes": W5_PAYLOAD,
            "size_before": before["total"],
            "size_after": after["total"],
            "bytes_per_job": (after["total"] - before["total"]) / n,
        }
        if isinstance(be, RedisBackend):
            result.update(await redis_memory_breakdown(be, ns, n, after["total"] - before["total"]))
        else:
            result["parts_per_job"] = _parts_per_job(before, after, n)
            for key in ("pgstattuple", "checkpoint", "page_size", "freelist_pages"):
                if key in after:
                    result[key] = after[key]
            if "pgstattuple" in after:
                st = after["pgstattuple"]
                result["live_tuple_bytes_per_job"] = st["tuple_len"] / n
                result["dead_tuples_per_job"] = st["dead_tuple_count"] / n
                result["dead_tuple_bytes_per_job"] = st["dead_tuple_len"] / n
                result["free_bytes_per_job"] = st["free_space"] / n
    return result


def _parts_per_job(before: Mapping[str, Any], after: Mapping[str, Any], n: int) -> dict[str, float]:
    parts_b, parts_a = before.get("parts", {}), after.get("parts", {})
    grown = {k: (v - parts_b.get(k, 0)) / n for k, v in parts_a.items()}
    return dict(sorted(((k, v) for k, v in grown.items() if v), key=lambda kv: -kv[1]))


async def redis_memory_breakdown(be: RedisBackend, ns: str, n: int, grown: int) -> dict[str, Any]:
    """MEMORY USAGE (SAMPLES 0: exact) summed by kind of key, and each kind's OBJECT ENCODING."""
    admin = be.admin
    assert admin is not None
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
    breakdown = dict(sorted(sizes.items(), key=lambda kv: -kv[1]))
    limits = await admin.config_get("hash-max-listpack-*")
    limits.update(await admin.config_get("zset-max-listpack-*"))
    return {
        "memory_usage_per_job": {k: v / n for k, v in breakdown.items()},
        "job_hash_encoding": encodings.get("job hashes", "?"),
        "encodings": encodings,
        "hash_max_listpack": {_text(k): _text(v) for k, v in sorted(limits.items())},
        "unattributed_per_job": (grown - sum(breakdown.values())) / n,
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# name: (the --workloads group it belongs to, function)
WORKLOADS: dict[str, tuple[str, Workload]] = {
    "w1_single": ("w1", w1_single),
    "w1_batched": ("w1", w1_batched),
    "w1_sync": ("w1", w1_sync),
    "w2_default": ("w2", w2_default),
    "w2_tuned": ("w2", w2_tuned),
    "w3": ("w3", w3_latency),
    "w4": ("w4", w4_family),
    "w5": ("w5", w5_size),
    "w6": ("w6", w6_big_family),
}
