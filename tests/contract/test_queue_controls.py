"""Rule 14: pause and resume a queue, and the limits every worker's claim obeys."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

import conveyor
from conveyor import JobState, QueueControls, QueueLimits, Rate
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.storage import Storage
from tests.support import running, settle

QUEUE = "controlled"


@dataclass
class Gauge:
    """How many handlers run at once across workers, and when each started."""

    now: int = 0
    peak: int = 0
    starts: list[float] = field(default_factory=list)


def gauged_worker(config: conveyor.Config, gauge: Gauge, sleep: float) -> conveyor.Worker:
    worker = conveyor.Worker(
        config, concurrency=5, queues=[QUEUE], claim_wait=0.5, maintenance_interval=0.2
    )

    @worker.handler
    async def work(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        gauge.now += 1
        gauge.peak = max(gauge.peak, gauge.now)
        gauge.starts.append(time.monotonic())
        try:
            await asyncio.sleep(sleep)
        finally:
            gauge.now -= 1

    return worker


@contextlib.asynccontextmanager
async def fleet(config: conveyor.Config, gauge: Gauge, n: int, sleep: float) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(n):
            await stack.enter_async_context(running(gauged_worker(config, gauge, sleep)))
        yield


async def enqueue(client: conveyor.AsyncClient, n: int) -> list[conveyor.Job]:
    return await client.enqueue_many([BasicJob(name=str(i)) for i in range(n)], queue=QUEUE)


async def test_a_paused_queue_is_not_claimed_and_resumes_at_once(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    await enqueue(client, 1)
    await client.pause(QUEUE)
    assert await client.queue_controls() == [QueueControls(QUEUE, paused=True)]
    gauge = Gauge()
    async with fleet(config, gauge, 1, 0.0):
        jobs = await enqueue(client, 3)  # enqueue still works while paused
        await asyncio.sleep(0.8)  # longer than a claim's wait: workers did look
        assert gauge.starts == []
        [stats] = await storage.queue_stats()
        assert stats.count(JobState.QUEUED) == 4
        await client.resume(QUEUE)
        done = [await settle(client, job.id, timeout=5) for job in jobs]
    assert {job.state for job in done} == {JobState.SUCCEEDED}
    assert len(gauge.starts) == 4
    assert await client.queue_controls() == []  # neither paused nor limited: forgotten


async def test_pause_and_resume_of_an_unknown_queue_are_refused(
    client: conveyor.AsyncClient, storage: Storage
) -> None:
    for call in (client.pause, client.resume):
        with pytest.raises(conveyor.UnknownQueue, match="no queue named 'nowhere'"):
            await call("nowhere")
    assert await storage.queue_controls() == []
    await client.set_queue_limits("later", max_running=3)  # limits may come first
    await client.pause("later")  # and make the queue known
    assert await client.queue_controls() == [
        QueueControls("later", paused=True, limits=QueueLimits(max_running=3))
    ]


@pytest.mark.one_shard("rule 14: limits below the shard count are refused")
async def test_max_running_holds_across_three_workers(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    await client.set_queue_limits(QUEUE, max_running=2)
    jobs = await enqueue(client, 24)
    gauge = Gauge()
    async with fleet(config, gauge, 3, 0.03):
        done = [await settle(client, job.id) for job in jobs]
    assert {job.state for job in done} == {JobState.SUCCEEDED}
    # Fifteen slots in all, never more than two running; and two did run together.
    assert gauge.peak == 2


def assert_within_bucket(
    claimed_at: list[float], capacity: int, per_second: float, backend: str = ""
) -> None:
    """Rule 14's bound: in any stretch of time, at most a full bucket plus what refilled.

    Storage keeps times to the microsecond, so they are compared as whole microseconds:
    as floats of about 1.8e9 seconds, two claims exactly a refill apart can differ by a
    few hundred nanoseconds less and seem to break the bound by a sliver of a job.
    """
    micros = sorted(round(at * 1_000_000) for at in claimed_at)
    for i, first in enumerate(micros):
        for j in range(i, len(micros)):
            # One microsecond of slack for a storage that keeps float seconds.
            refilled = (micros[j] - first + 1) * per_second / 1_000_000
            assert j - i + 1 <= capacity + refilled, (backend, i, j, micros[j] - first)


async def test_rate_spends_a_full_bucket_then_refills_evenly(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    await client.set_queue_limits(QUEUE, rate=Rate(10, per=1.0))
    jobs = await enqueue(client, 16)
    gauge = Gauge()
    async with fleet(config, gauge, 2, 0.0):
        done = [await settle(client, job.id) for job in jobs]
    assert {job.state for job in done} == {JobState.SUCCEEDED}
    # Claimed as storage's clock saw it: ten at once, then one every 0.1 s.
    claimed_at = [job.started_at.timestamp() for job in done if job.started_at]
    assert len(claimed_at) == 16
    assert_within_bucket(claimed_at, 10, 10.0)
    assert max(claimed_at) - min(claimed_at) >= 0.6 - 1e-6


@pytest.mark.one_shard("rule 14: limits below the shard count are refused")
async def test_limits_are_replaced_and_removed_and_a_new_rate_starts_full(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    await client.set_queue_limits(QUEUE, max_running=3, rate=Rate(2, per=60))
    assert await storage.queue_controls() == [
        QueueControls(QUEUE, limits=QueueLimits(max_running=3, rate=Rate(2, per=60.0)))
    ]
    jobs = await enqueue(client, 3)
    gauge = Gauge()
    async with fleet(config, gauge, 1, 0.0):
        await settle(client, jobs[1].id)
        await asyncio.sleep(0.5)
        assert len(gauge.starts) == 2  # the bucket is empty for the next 30 s
        await client.set_queue_limits(QUEUE, max_running=None)  # both limits gone
        assert (await settle(client, jobs[2].id)).state is JobState.SUCCEEDED
    assert await storage.queue_controls() == []


async def test_worker_sets_its_limits_at_start(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    worker = conveyor.Worker(config, queues=[QUEUE], limits={QUEUE: QueueLimits(max_running=4)})

    @worker.handler
    async def work(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        pass

    async with running(worker):
        job = (await enqueue(client, 1))[0]
        await settle(client, job.id)
    assert await storage.queue_controls() == [
        QueueControls(QUEUE, limits=QueueLimits(max_running=4))
    ]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_running": 0}, "max_running must be a positive integer"),
        ({"max_running": -2}, "max_running must be a positive integer"),
        ({"max_running": 1.5}, "max_running must be a positive integer"),
        ({"rate": 5}, "rate must be a conveyor.Rate"),
    ],
)
async def test_bad_limits_are_refused_and_nothing_stored(
    client: conveyor.AsyncClient, storage: Storage, limits: dict[str, object], message: str
) -> None:
    with pytest.raises(conveyor.InvalidLimits, match=message.replace(".", r"\.")):
        await client.set_queue_limits(QUEUE, **limits)  # type: ignore[arg-type]
    assert await storage.queue_controls() == []


def test_bad_rates_are_refused() -> None:
    for limit, per in ((0, 1.0), (-1, 1.0), (2.5, 1.0), (True, 1.0), (5, 0), (5, -1.0)):
        with pytest.raises(conveyor.InvalidLimits, match="rate"):
            Rate(limit, per)  # type: ignore[arg-type]
    for per in (float("inf"), float("nan"), 86401, "1s"):
        with pytest.raises(conveyor.InvalidLimits, match="period"):
            Rate(5, per)  # type: ignore[arg-type]
