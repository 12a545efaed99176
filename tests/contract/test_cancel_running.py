"""Cancelling a running job reaches its handler at once, and handlers report progress
(docs/rules.md rules 6 and 12)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.errors import InvalidProgress, LeaseLost
from conveyor.core.job import Lease
from conveyor.core.storage import Storage
from tests.support import running, settle, wait_for_state

# A long lease puts the next heartbeat 20 s away: a handler stopped well before
# that was stopped by the interrupt, not by the heartbeat finding the lease gone.
LEASE = 60.0
BOUND = 5.0  # far below the heartbeat; the interrupt itself takes milliseconds


def slow_worker(config: conveyor.Config, **kwargs: object) -> conveyor.Worker:
    return conveyor.Worker(
        config, concurrency=4, lease=LEASE, claim_wait=0.2, maintenance_interval=0.05, **kwargs
    )  # type: ignore[arg-type]


async def test_cancel_cancels_a_running_async_handler_at_once(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    started = asyncio.Event()
    seen: list[tuple[bool, str | None]] = []
    stopped = asyncio.Event()
    worker = slow_worker(config)

    @worker.handler
    async def sleepy(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        started.set()
        try:
            await asyncio.sleep(120)
        except asyncio.CancelledError:
            seen.append((ctx.cancelled.is_set(), ctx.cancelled.reason))
            stopped.set()
            raise

    async with running(worker):
        job = await client.enqueue(BasicJob(name="sleepy"))
        await asyncio.wait_for(started.wait(), 10)
        cancelled = await client.cancel(job.id)
        assert cancelled.state is JobState.CANCELLED
        await asyncio.wait_for(stopped.wait(), BOUND)
        assert seen == [(True, "the job was cancelled")]
        assert (await client.get(job.id)).state is JobState.CANCELLED  # type: ignore[union-attr]


async def test_a_sync_handler_sees_the_flag_and_its_outcome_is_dropped(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    started = threading.Event()
    stopped = threading.Event()
    waited: list[float] = []
    worker = slow_worker(config)

    @worker.handler
    def polite(ctx: conveyor.JobContext, msg: BasicJob) -> BasicJob:
        started.set()
        begin = time.monotonic()
        while not ctx.cancelled.wait_blocking(0.02):
            if time.monotonic() - begin > 60:
                break
        waited.append(time.monotonic() - begin)
        stopped.set()
        return BasicJob(name="returned after the cancel")

    async with running(worker):
        job = await client.enqueue(BasicJob(name="polite"))
        await asyncio.to_thread(started.wait, 10)
        await client.cancel(job.id)
        assert await asyncio.to_thread(stopped.wait, BOUND)
        assert waited[0] < BOUND
        # Its slot is free again: the next job runs on this worker.
        started.clear()
        second = await client.enqueue(BasicJob(name="second"))
        await asyncio.to_thread(started.wait, 10)
        await client.cancel(second.id)
    done = await client.get(job.id)
    assert done is not None and done.state is JobState.CANCELLED
    assert done.result() is None  # the late return was not recorded


async def test_cancelling_a_parent_interrupts_its_running_children(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    children_started: list[str] = []
    interrupted: list[str] = []
    all_started, all_interrupted = asyncio.Event(), asyncio.Event()
    worker = slow_worker(config)

    @worker.handler
    async def family(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        if msg.name == "parent":
            for i in range(3):
                ctx.enqueue_child(BasicJob(name=f"child-{i}"))
            return
        children_started.append(msg.name)
        if len(children_started) == 3:
            all_started.set()
        try:
            await asyncio.sleep(120)
        except asyncio.CancelledError:
            interrupted.append(msg.name)
            if len(interrupted) == 3:
                all_interrupted.set()
            raise

    async with running(worker):
        parent = await client.enqueue(BasicJob(name="parent"))
        await asyncio.wait_for(all_started.wait(), 10)
        assert sorted(children_started) == ["child-0", "child-1", "child-2"]
        await client.cancel(parent.id)
        await asyncio.wait_for(all_interrupted.wait(), BOUND)
        assert sorted(interrupted) == ["child-0", "child-1", "child-2"]
        kids = (await storage.children(parent.id)).jobs
        assert {k.state for k in kids} == {JobState.CANCELLED}
        assert {k.reason for k in kids} == {f"ancestor {parent.id} cancelled"}


async def test_the_interrupt_stream_names_the_cancelled_lease(
    storage: Storage, client: conveyor.AsyncClient
) -> None:
    await client.enqueue(BasicJob(name="claimed"), queue="interrupts")
    heard: list[Lease] = []
    subscribed = asyncio.Event()

    async def listen() -> None:
        stream = storage.interrupts()
        subscribed.set()
        async for lease in stream:
            heard.append(lease)
            return

    listener = asyncio.create_task(listen())
    await subscribed.wait()
    await asyncio.sleep(0.3)  # the subscription is live (Redis SUBSCRIBE, LISTEN)
    (claimed,) = await storage.claim("w", ["interrupts"], 1, 60, 1.0)
    await client.cancel(claimed.job.id)
    await asyncio.wait_for(listener, BOUND)
    assert heard == [claimed.lease]


async def test_progress_is_stored_under_the_lease_and_read_by_get(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    reported = asyncio.Event()
    go_on = asyncio.Event()
    worker = slow_worker(config)

    @worker.handler
    async def steps(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        ctx.progress(0.25, "page 1 of 4")
        reported.set()
        await go_on.wait()
        for i in range(200):  # faster than storage takes them: merged, the last one kept
            ctx.progress(i / 200)
        ctx.progress(1.0, "all 4 pages")

    async with running(worker):
        job = await client.enqueue(BasicJob(name="steps"))
        await asyncio.wait_for(reported.wait(), 10)
        deadline = time.monotonic() + 10
        while True:
            seen = await client.get(job.id)
            assert seen is not None
            if seen.progress is not None or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        assert seen.state is JobState.RUNNING
        assert seen.progress is not None
        assert (seen.progress.fraction, seen.progress.note) == (0.25, "page 1 of 4")
        assert seen.progress.attempt == 1
        assert abs(seen.progress.at.timestamp() - time.time()) < 60
        go_on.set()
        done = await settle(client, job.id)
    assert done.state is JobState.SUCCEEDED
    assert done.progress is not None
    assert (done.progress.fraction, done.progress.note, done.progress.attempt) == (
        1.0,
        "all 4 pages",
        1,
    )


async def test_a_sync_handler_reports_progress_and_a_retry_keeps_the_last_report(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    runs: list[int] = []
    worker = slow_worker(config)

    @worker.handler
    def halfway(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        runs.append(ctx.job.attempt)
        if len(runs) == 1:
            ctx.progress(0.5, "run 1")
            raise RuntimeError("breaks halfway")

    async with running(worker):
        job = await client.enqueue(BasicJob(name="halfway"), max_attempts=1)
        failed = await settle(client, job.id)
        assert failed.state is JobState.FAILED
        assert failed.progress is not None  # it shows how far the failed attempt got
        assert (failed.progress.fraction, failed.progress.note) == (0.5, "run 1")
        await client.retry(job.id)
        done = await settle(client, job.id)
    assert done.state is JobState.SUCCEEDED
    assert done.progress is not None
    assert (done.progress.note, done.progress.attempt) == (
        "run 1",
        1,
    )  # the second run reported none


@pytest.mark.parametrize(
    ("fraction", "note", "words"),
    [
        (1.5, None, "from 0 to 1"),
        (-0.1, None, "from 0 to 1"),
        (float("nan"), None, "from 0 to 1"),
        (True, None, "from 0 to 1"),
        ("half", None, "from 0 to 1"),
        (0.5, 42, "must be a string"),
        (0.5, "x" * 1001, "at most 1000"),
    ],
)
async def test_bad_progress_is_refused_and_stores_nothing(
    config: conveyor.Config,
    client: conveyor.AsyncClient,
    fraction: object,
    note: object,
    words: str,
) -> None:
    errors: list[Exception] = []
    worker = slow_worker(config)

    @worker.handler
    async def bad(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        try:
            ctx.progress(fraction, note)  # type: ignore[arg-type]
        except InvalidProgress as exc:
            errors.append(exc)

    async with running(worker):
        job = await client.enqueue(BasicJob(name="bad"))
        done = await settle(client, job.id)
    assert done.state is JobState.SUCCEEDED
    assert done.progress is None
    assert len(errors) == 1 and words in str(errors[0])
    assert isinstance(errors[0], ValueError)  # InvalidProgress is a ValueError too


async def test_progress_on_a_stale_lease_is_refused(
    storage: Storage, client: conveyor.AsyncClient
) -> None:
    await client.enqueue(BasicJob(name="stale"), queue="stale")
    (claimed,) = await storage.claim("w", ["stale"], 1, 60, 1.0)
    await storage.progress(claimed.lease, 0.1, None)
    await client.cancel(claimed.job.id)
    with pytest.raises(LeaseLost):
        await storage.progress(claimed.lease, 0.2, "too late")
    job = await storage.get(claimed.job.id)
    assert job is not None and job.progress is not None
    assert (job.state, job.progress.fraction, job.progress.note) == (JobState.CANCELLED, 0.1, None)


async def test_a_handler_of_a_cancelled_job_cannot_report_after_its_attempt(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    contexts: list[conveyor.JobContext] = []
    worker = slow_worker(config)

    @worker.handler
    async def quick(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        contexts.append(ctx)

    async with running(worker):
        job = await client.enqueue(BasicJob(name="quick"))
        await settle(client, job.id)
    with pytest.raises(conveyor.NotInJob):
        contexts[0].progress(0.5)
    await wait_for_state(client, job.id, JobState.SUCCEEDED)
