"""Retry control: Fail, RetryIn (snooze), back-off per handler and per job, and the
longer retention of failed jobs (docs/rules.md rules 3, 6 and 12)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest

import conveyor
from conveyor import Backoff, JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.storage import Storage
from tests.support import FAST_BACKOFF, running, settle, step, wait_for_state

SLOW = Backoff(base=600.0, factor=1.0, cap=600.0, jitter=False)


def steering_worker(
    config: conveyor.Config, runs: Counter[str], **kwargs: object
) -> conveyor.Worker:
    """BasicJob handler: the job's ``name`` says what it does on attempt ``count`` and before."""
    worker = conveyor.Worker(config, concurrency=4, claim_wait=0.2, maintenance_interval=0.05)

    async def steer(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        runs[msg.name] += 1
        early = runs[msg.name] <= msg.count
        if msg.name.startswith("fail"):
            ctx.enqueue_child(BasicJob(name="never"))
            raise conveyor.Fail(f"{msg.name}: the input is wrong")
        if msg.name.startswith("snooze") and early:
            ctx.enqueue_child(BasicJob(name="never"))
            raise conveyor.RetryIn(timedelta(seconds=0.05))
        if msg.name.startswith("flaky") and early:
            raise RuntimeError(f"{msg.name} breaks on run {runs[msg.name]}")

    worker.register(steer, **kwargs)  # type: ignore[arg-type]
    return worker


async def test_fail_settles_failed_at_once_and_can_still_be_repaired(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    runs: Counter[str] = Counter()
    async with running(steering_worker(config, runs)):
        job = await client.enqueue(BasicJob(name="fail"), max_attempts=5)
        failed = await settle(client, job.id)
        assert failed.state is JobState.FAILED
        assert failed.attempt == 1
        assert runs["fail"] == 1  # no retry, though four attempts were left
        assert failed.last_error == "fail: the input is wrong"
        assert failed.failed_ids == (job.id,)
        assert await storage.family(job.id) == []  # its declaration was discarded (rule 2)
        again = await client.retry(job.id)  # rule 8 still applies
        assert again.state is JobState.QUEUED and again.attempt == 0
        assert (await settle(client, job.id)).state is JobState.FAILED
    assert runs["fail"] == 2
    assert runs["never"] == 0


async def test_retry_in_snoozes_without_counting_an_attempt_or_an_error(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    runs: Counter[str] = Counter()
    async with running(steering_worker(config, runs)):
        # One attempt allowed, three snoozes: snoozing spends none of it.
        job = await client.enqueue(BasicJob(name="snooze", count=3), max_attempts=1)
        done = await settle(client, job.id)
    assert done.state is JobState.SUCCEEDED
    assert runs["snooze"] == 4
    assert done.attempt == 1
    assert done.last_error is None
    assert runs["never"] == 0  # each snoozed run's declaration was discarded
    assert await storage.family(job.id) == []


async def test_a_snoozed_job_waits_scheduled_for_its_time(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    worker = conveyor.Worker(config, concurrency=2, claim_wait=0.2, maintenance_interval=0.05)

    @worker.handler
    async def later(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        raise conveyor.RetryIn(600)

    async with running(worker):
        job = await client.enqueue(BasicJob(name="later"))
        before = time.time()
        snoozed = await wait_for_state(client, job.id, JobState.SCHEDULED)
    assert snoozed.attempt == 0
    assert snoozed.last_error is None
    assert snoozed.run_at is not None
    assert 590 < snoozed.run_at.timestamp() - before < 610


async def test_backoff_per_handler_and_per_job(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    runs: Counter[str] = Counter()
    async with running(steering_worker(config, runs, backoff=SLOW)):
        slow = await client.enqueue(BasicJob(name="flaky-slow", count=1))
        fast = await client.enqueue(BasicJob(name="flaky-fast", count=1), backoff=FAST_BACKOFF)
        assert (await settle(client, fast.id)).state is JobState.SUCCEEDED
        waiting = await wait_for_state(client, slow.id, JobState.SCHEDULED)
    # The handler's back-off replaced the config's (FAST_BACKOFF) for the first job...
    assert waiting.run_at is not None and waiting.run_at.timestamp() - time.time() > 500
    assert waiting.attempt == 1 and waiting.backoff is None
    # ...and the second job's own back-off, stored with it, replaced the handler's.
    stored = await client.get(fast.id)
    assert stored is not None and stored.backoff == FAST_BACKOFF
    assert stored.attempt == 2


async def test_failed_jobs_are_kept_longer_than_other_settled_jobs(
    config: conveyor.Config,
) -> None:
    config = replace(
        config, retention=timedelta(seconds=0.1), failed_retention=timedelta(seconds=1.5)
    )
    runs: Counter[str] = Counter()
    async with conveyor.AsyncClient(config) as client:
        storage = await client.storage()
        cancelled = await client.enqueue(BasicJob(name="cancelled"))
        await client.cancel(cancelled.id)
        async with running(steering_worker(config, runs)):
            failed = await client.enqueue(BasicJob(name="fail"))
            await settle(client, failed.id)
        await asyncio.sleep(0.3)
        await storage.maintain()
        assert await client.get(cancelled.id) is None
        kept = await client.get(failed.id)
        assert kept is not None and kept.state is JobState.FAILED
        await asyncio.sleep(1.4)
        report = await storage.maintain()
        assert report.pruned == 1
        assert await client.get(failed.id) is None


def test_bad_retry_controls_are_typed_errors(config: conveyor.Config) -> None:
    for delay in (-1, float("nan"), "soon", True, timedelta(days=-1)):
        with pytest.raises(conveyor.ConfigurationError, match="RetryIn takes a delay"):
            conveyor.RetryIn(delay)  # type: ignore[arg-type]
    worker = conveyor.Worker(config)
    with pytest.raises(conveyor.HandlerError, match=r"backoff must be a conveyor\.Backoff"):
        worker.register(lambda ctx, msg: None, backoff=5)  # type: ignore[arg-type]
    with pytest.raises(conveyor.ConfigurationError, match="failed_retention"):
        replace(config, failed_retention=timedelta(seconds=-1))


async def test_bad_job_backoff_is_refused_and_nothing_stored(
    client: conveyor.AsyncClient, storage: Storage
) -> None:
    with pytest.raises(conveyor.InvalidJobOptions, match=r"backoff must be a conveyor\.Backoff"):
        await client.enqueue(step("x"), backoff=2.0)  # type: ignore[typeddict-item]
    assert await storage.queue_stats() == []
