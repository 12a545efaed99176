"""Burst mode (worker.run_until_idle / drain) and client.purge, on every backend."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.storage import Claimed, JobFilter, Storage


def burst_worker(
    config: conveyor.Config, runs: Counter[str], storage: Storage | None = None
) -> conveyor.Worker:
    """``parent`` declares two children and an heir; ``flaky`` fails its first attempt;
    ``slow`` sleeps ``count`` seconds."""
    worker = conveyor.Worker(
        config, concurrency=4, claim_wait=1.0, maintenance_interval=0.05, storage=storage
    )

    @worker.handler
    async def run(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        runs[msg.name] += 1
        if msg.name == "parent":
            ctx.enqueue_child(BasicJob(name="child"))
            ctx.enqueue_child(BasicJob(name="child"))
            ctx.enqueue_heir(BasicJob(name="heir"))
        elif msg.name == "flaky" and runs["flaky"] == 1:
            raise RuntimeError("fails once")
        elif msg.name == "slow":
            await asyncio.sleep(msg.count)

    return worker


async def test_run_until_idle_drains_families_and_retries_then_returns(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    runs: Counter[str] = Counter()
    parent = await client.enqueue(BasicJob(name="parent"))
    flaky = await client.enqueue(BasicJob(name="flaky"))
    later = await client.enqueue(BasicJob(name="later"), delay=3600)
    worker = burst_worker(config, runs)
    await worker.run_until_idle(timeout=60)
    assert runs == Counter({"parent": 1, "child": 2, "heir": 1, "flaky": 2})
    assert (await client.get(parent.id)).state is JobState.SUCCEEDED  # type: ignore[union-attr]
    assert (await client.get(flaky.id)).state is JobState.SUCCEEDED  # type: ignore[union-attr]
    # A job delayed to later is not waited for.
    assert (await client.get(later.id)).state is JobState.SCHEDULED  # type: ignore[union-attr]
    assert await storage.workers() == []  # it stopped and deregistered


async def test_run_until_idle_with_nothing_to_do_returns(
    config: conveyor.Config, storage: Storage
) -> None:
    worker = burst_worker(config, Counter())
    await worker.run_until_idle(timeout=30)  # raises TimeoutError if it waited it out
    assert await storage.workers() == []


async def test_run_until_idle_raises_when_work_outlasts_the_timeout(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    job = await client.enqueue(BasicJob(name="slow", count=30))
    worker = conveyor.Worker(config, claim_wait=0.2, shutdown_timeout=0.1)
    worker.register(burst_worker(config, Counter())._handlers[job.type].func)
    with pytest.raises(TimeoutError, match="still had work"):
        await worker.run_until_idle(timeout=1.0)
    handed_back = await client.get(job.id)
    assert handed_back is not None and handed_back.state is JobState.QUEUED


class FirstClaimMisses:
    """Storage whose first claim comes back empty, as a claim does that ran just
    before a retry's back-off ended; everything else goes to the real storage."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.missed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    async def claim(self, worker: str, queues: Sequence[str], *args: Any) -> list[Claimed]:
        if not self.missed:
            self.missed = True
            return []
        return await self._storage.claim(worker, queues, *args)


async def test_run_until_idle_runs_a_job_that_became_ready_after_an_empty_claim(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    # The job is queued, not waiting out a back-off, when the worker first asks
    # whether it is idle: only a claim after that question may say so.
    runs: Counter[str] = Counter()
    job = await client.enqueue(BasicJob(name="ready"))
    worker = burst_worker(config, runs, FirstClaimMisses(storage))
    await worker.run_until_idle(timeout=60)
    assert runs == Counter({"ready": 1})
    assert (await client.get(job.id)).state is JobState.SUCCEEDED  # type: ignore[union-attr]


def test_drain_runs_without_an_event_loop(config: conveyor.Config) -> None:
    runs: Counter[str] = Counter()
    with conveyor.Client(config) as client:
        client.enqueue(BasicJob(name="flaky"))
    burst_worker(config, runs).drain(timeout=60)
    assert runs["flaky"] == 2


async def test_purge_cancels_waiting_jobs_and_their_families(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    queued = [await client.enqueue(BasicJob(name=str(i)), queue="mail") for i in range(3)]
    scheduled = await client.enqueue(BasicJob(name="later"), queue="mail", delay=3600)
    kept = await client.enqueue(BasicJob(name="kept"), queue="other")
    assert await client.purge("mail") == 4
    for job in [*queued, scheduled]:
        found = await client.get(job.id)
        assert found is not None
        assert (found.state, found.reason) == (JobState.CANCELLED, "queue purged")
    assert (await client.get(kept.id)).state is JobState.QUEUED  # type: ignore[union-attr]
    assert await client.purge("mail") == 0
    with pytest.raises(conveyor.UnknownQueue):
        await client.purge("nowhere")
    waiting = await storage.list_jobs(JobFilter(state=JobState.QUEUED, queue="mail"))
    assert waiting.jobs == []
