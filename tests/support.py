"""Test support: a worker that runs ``Step`` trees, and a journal of what ran.

A ``Step`` payload describes a job and, recursively, the children and heirs
it declares, when it fails and how long it sleeps, so one handler can build
any family the tests need.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.core.storage import Storage, WorkerInfo

FAST_BACKOFF = conveyor.Backoff(base=0.01, factor=1.0, cap=0.01, jitter=False)


def step(
    name: str,
    *,
    children: list[Step] | None = None,
    heirs: list[Step] | None = None,
    fail: bool = False,
    fail_times: int = 0,
    sleep: float = 0.0,
    optional: bool = False,
    settled_heir: bool = False,
    delay: float = 0.0,
    key: str = "",
) -> Step:
    return Step(
        key=key,
        name=name,
        children=children or [],
        heirs=heirs or [],
        fail=fail,
        fail_times=fail_times,
        sleep_seconds=sleep,
        optional=optional,
        settled_heir=settled_heir,
        delay_seconds=delay,
    )


@dataclass
class Run:
    name: str
    job_id: str
    attempt: int
    started: float
    finished: float = 0.0
    ok: bool = False
    predecessor: conveyor.Predecessor | None = None
    phase: int = 1


@dataclass
class Journal:
    runs: dict[str, list[Run]] = field(default_factory=lambda: defaultdict(list))
    ids: dict[str, str] = field(default_factory=dict)
    cured: set[str] = field(default_factory=set)
    """Steps whose ``fail`` no longer holds (a repair's fix: rule 8)."""
    phase: int = 1
    """Which part of a test the runs belong to (recorded with each run)."""

    def count(self, name: str) -> int:
        return len(self.runs.get(name, []))

    def succeeded_runs(self, name: str) -> list[Run]:
        return [r for r in self.runs.get(name, []) if r.ok]

    def first_start(self, name: str) -> float:
        return min(r.started for r in self.runs[name])

    def last_finish(self, name: str) -> float:
        return max(r.finished for r in self.runs[name])


def declare(ctx: conveyor.JobContext, msg: Step) -> None:
    for child in msg.children:
        options: dict[str, Any] = {"delay": child.delay_seconds} if child.delay_seconds else {}
        if child.key:
            options["key"] = child.key
        ctx.enqueue_child(child, optional=child.optional, **options)
    for heir in msg.heirs:
        when = conveyor.When.SETTLED if heir.settled_heir else conveyor.When.SUCCEEDED
        options = {"delay": heir.delay_seconds} if heir.delay_seconds else {}
        ctx.enqueue_heir(heir, when=when, **options)


def step_worker(config: conveyor.Config, journal: Journal, **kwargs: Any) -> conveyor.Worker:
    """A worker whose async handler runs ``Step`` jobs and records them in ``journal``."""
    settings: dict[str, Any] = {
        "concurrency": 16,
        "claim_wait": 0.2,
        "maintenance_interval": 0.05,
        "shutdown_timeout": 5.0,
    }
    settings.update(kwargs)
    worker = conveyor.Worker(config, **settings)

    @worker.handler
    async def run_step(ctx: conveyor.JobContext, msg: Step) -> None:
        run = Run(
            msg.name,
            ctx.job.id,
            ctx.job.attempt,
            time.monotonic(),
            predecessor=ctx.predecessor,
            phase=journal.phase,
        )
        journal.runs[msg.name].append(run)
        journal.ids[msg.name] = ctx.job.id
        try:
            declare(ctx, msg)
            if msg.sleep_seconds:
                await asyncio.sleep(msg.sleep_seconds)
            if (msg.fail and msg.name not in journal.cured) or ctx.job.attempt <= msg.fail_times:
                raise RuntimeError(f"step {msg.name} fails on attempt {ctx.job.attempt}")
            run.ok = True
        finally:
            run.finished = time.monotonic()

    return worker


@contextlib.asynccontextmanager
async def running(worker: conveyor.Worker) -> AsyncIterator[conveyor.Worker]:
    """Run ``worker`` in the background for the block; stop it and re-raise its errors after."""
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.stop()
        await asyncio.wait_for(task, timeout=30)


async def settle(client: conveyor.AsyncClient, job_id: str, timeout: float = 20.0) -> conveyor.Job:
    return await client.wait(job_id, timeout=timeout)


async def wait_for_state(
    client: conveyor.AsyncClient, job_id: str, state: conveyor.JobState, timeout: float = 10.0
) -> conveyor.Job:
    deadline = time.monotonic() + timeout
    while True:
        job = await client.get(job_id)
        if job is not None and job.state is state:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {job and job.state}, never became {state}")
        await asyncio.sleep(0.01)


async def live_workers(storage: Storage, count: int, timeout: float = 20.0) -> list[WorkerInfo]:
    """The live workers once ``count`` of them have registered.

    A worker registers a moment after ``run()`` starts, longer on a loaded machine or a
    cluster, so tests poll for it rather than sleeping a fixed time.
    """
    deadline = time.monotonic() + timeout
    while True:
        live = await storage.workers()
        if len(live) >= count:
            return live
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(live)} workers registered, expected {count}")
        await asyncio.sleep(0.02)


async def wait_id(journal: Journal, name: str, timeout: float = 20.0) -> str:
    """The id of the job that ran step ``name``, once it has started."""
    deadline = time.monotonic() + timeout
    while name not in journal.ids:
        if time.monotonic() > deadline:
            raise AssertionError(f"step {name} never ran")
        await asyncio.sleep(0.01)
    return journal.ids[name]


def branching_family(branches: int, kids: int, sleep: float) -> tuple[Step, list[str]]:
    """A root with ``branches`` children, each with ``kids`` children and an heir, and a
    final heir after everything; returns it and the names of every step in it."""
    tree = [
        step(
            f"b{i}",
            children=[step(f"b{i}.{j}", sleep=sleep) for j in range(kids)],
            heirs=[step(f"b{i}.heir")],
        )
        for i in range(branches)
    ]
    names = [f"b{i}" for i in range(branches)]
    names += [f"b{i}.{j}" for i in range(branches) for j in range(kids)]
    names += [f"b{i}.heir" for i in range(branches)] + ["root", "final"]
    return step("root", children=tree, heirs=[step("final")]), names


def basic_worker(config: conveyor.Config, broken: set[str], **kwargs: Any) -> conveyor.Worker:
    """A worker for ``BasicJob``: a job whose ``name`` is in ``broken`` raises.

    Emptying the set (or giving another worker an empty one) mends them, so a
    job can fail for good, be retried from the admin, and then succeed.
    """
    settings: dict[str, Any] = {"concurrency": 4, "claim_wait": 0.2, "maintenance_interval": 0.05}
    worker = conveyor.Worker(config, **(settings | kwargs))

    @worker.handler
    async def run_basic(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        if msg.name in broken:
            raise RuntimeError(f"{msg.name} is broken")

    return worker
