"""Delays, run_at, priorities, and cancellation of queued, scheduled and waiting jobs."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

import conveyor
from conveyor import JobState
from conveyor.core.storage import Storage
from tests.support import Journal, running, settle, step, step_worker, wait_for_state, wait_id

STEP = step("x").DESCRIPTOR.full_name


async def test_delayed_job_is_scheduled_then_runs(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    async with running(step_worker(config, journal)):
        enqueued_at = time.monotonic()
        # A second: room for an enqueue that waits on SQLite's write lock on a busy machine.
        job = await client.enqueue(step("later"), delay=timedelta(seconds=1))
        assert job.state is JobState.SCHEDULED
        stored = await client.get(job.id)
        assert stored is not None and stored.state is JobState.SCHEDULED
        settled = await settle(client, job.id)
    assert settled.state is JobState.SUCCEEDED
    assert journal.first_start("later") - enqueued_at >= 0.98


async def test_run_at_in_the_future_and_in_the_past(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    async with running(step_worker(config, journal)):
        past = await client.enqueue(step("past"), run_at=datetime.now(UTC) - timedelta(days=1))
        assert past.state is JobState.QUEUED
        future = await client.enqueue(
            step("future"),
            run_at=datetime.now(UTC) + timedelta(seconds=1),  # room for a slow enqueue
        )
        assert future.state is JobState.SCHEDULED
        await settle(client, past.id)
        settled = await settle(client, future.id)
    assert settled.state is JobState.SUCCEEDED
    assert journal.first_start("future") >= journal.first_start("past")


async def test_delayed_child_is_released_scheduled(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    root = step("root", children=[step("late-kid", delay=0.3)], heirs=[step("heir")])
    async with running(step_worker(config, journal)):
        job = await client.enqueue(root)
        waiting = await wait_for_state(client, job.id, JobState.WAITING)
        assert waiting.open_children == 1
        family = await (await client.storage()).family(job.id)
        [kid] = [j for j in family if j.parent_id == job.id]
        [heir] = [j for j in family if j.predecessor_id == job.id]
        assert heir.state is JobState.HELD
        assert kid.state in (JobState.SCHEDULED, JobState.QUEUED, JobState.RUNNING)
        settled = await settle(client, job.id)
    assert settled.state is JobState.SUCCEEDED
    assert journal.first_start("late-kid") - journal.last_finish("root") >= 0.25


@pytest.mark.one_shard("rule 10: the ready order holds per shard")
async def test_higher_priority_first_then_oldest(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    low = await client.enqueue(step("low"))
    high = await client.enqueue(step("high"), priority=10)
    low2 = await client.enqueue(step("low2"))
    claimed = await storage.claim("w", [STEP], 3, 30.0, 0.0)
    assert [c.job.id for c in claimed] == [high.id, low.id, low2.id]


@pytest.mark.one_shard("rule 10: the ready order holds per shard")
async def test_claim_respects_limit_and_queues(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    jobs = await client.enqueue_many([step(f"j{i}") for i in range(5)])
    other = await client.enqueue(step("elsewhere"), queue="other")
    first = await storage.claim("w", [STEP], 2, 30.0, 0.0)
    assert [c.job.id for c in first] == [j.id for j in jobs[:2]]
    rest = await storage.claim("w", [STEP, "other"], 10, 30.0, 0.0)
    assert {c.job.id for c in rest} == {*(j.id for j in jobs[2:]), other.id}


async def test_blocking_claim_wakes_on_enqueue(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    waiter = asyncio.create_task(storage.claim("w", [STEP], 1, 30.0, 5.0))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    job = await client.enqueue(step("wake"))
    claimed = await asyncio.wait_for(waiter, 2.0)
    assert [c.job.id for c in claimed] == [job.id]


async def test_blocking_claim_times_out_empty(storage: Storage) -> None:
    started = time.monotonic()
    assert await storage.claim("w", [STEP], 1, 30.0, 0.2) == []
    assert time.monotonic() - started >= 0.15


async def test_cancel_queued_and_scheduled_jobs(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    queued = await client.enqueue(step("queued"))
    scheduled = await client.enqueue(step("scheduled"), delay=0.2)
    assert (await client.cancel(queued.id)).state is JobState.CANCELLED
    cancelled = await client.cancel(scheduled.id)
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.reason == "cancelled by request"
    async with running(step_worker(config, journal)):
        await asyncio.sleep(0.4)
    assert journal.count("queued") == journal.count("scheduled") == 0
    with pytest.raises(conveyor.InvalidState) as info:
        await client.cancel(queued.id)
    assert info.value.current == JobState.CANCELLED


async def test_cancel_waiting_parent_cancels_descendants_and_runs_settled_heir(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal, storage: Storage
) -> None:
    root = step(
        "root",
        children=[step("later", delay=5.0, children=[step("never")]), step("slow", sleep=0.2)],
        heirs=[step("on-success"), step("cleanup", settled_heir=True)],
    )
    async with running(step_worker(config, journal)):
        job = await client.enqueue(root)
        await wait_for_state(client, job.id, JobState.WAITING)
        cancelled = await client.cancel(job.id)
        cleanup = await settle(client, await wait_id(journal, "cleanup"))
    assert cancelled.state is JobState.CANCELLED
    assert cleanup.state is JobState.SUCCEEDED
    predecessor = journal.runs["cleanup"][0].predecessor
    assert predecessor is not None and predecessor.state is JobState.CANCELLED
    family = await storage.family(job.id)
    states = {j.when: j.state for j in family if j.when is not None}
    assert states[conveyor.When.SUCCEEDED] is JobState.CANCELLED
    children = [j for j in family if j.when is None]
    later = next(j for j in children if j.run_at is not None)
    assert later.state is JobState.CANCELLED
    assert journal.count("later") == journal.count("never") == journal.count("on-success") == 0


async def test_cancel_unknown_and_settled(client: conveyor.AsyncClient) -> None:
    with pytest.raises(conveyor.JobNotFound):
        await client.cancel("01900000-0000-7000-8000-000000000000")
    with pytest.raises(conveyor.JobNotFound):
        await client.retry("01900000-0000-7000-8000-000000000000")
    assert await client.get("01900000-0000-7000-8000-000000000000") is None


async def test_retry_of_a_failed_lone_job(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    async with running(step_worker(config, journal)):
        job = await client.enqueue(step("doomed", fail_times=1), max_attempts=1)
        failed = await settle(client, job.id)
        assert failed.state is JobState.FAILED
        again = await client.retry(job.id)
        assert again.state is JobState.QUEUED
        assert again.attempt == 0
        settled = await settle(client, job.id)
    # Fresh attempts: the retry ran as attempt 1 again (and this step fails on attempt 1).
    assert settled.state is JobState.FAILED
    assert settled.attempt == 1
    assert [r.attempt for r in journal.runs["doomed"]] == [1, 1]


async def test_retry_refuses_unsettled_jobs_and_repairs_family_members(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    queued = await client.enqueue(step("queued"))
    with pytest.raises(conveyor.InvalidState):
        await client.retry(queued.id)
    async with running(step_worker(config, journal)):
        job = await client.enqueue(step("root", children=[step("bad", fail=True)]), max_attempts=1)
        settled = await settle(client, job.id)
        assert settled.state is JobState.FAILED
        with pytest.raises(conveyor.InvalidState) as info:
            await client.retry(job.id)  # it failed because of its family
        assert "retry the members that failed" in str(info.value)
        repaired = await client.retry(journal.ids["bad"])  # rule 8: the family re-opens
        assert repaired.state is JobState.QUEUED
        again = await settle(client, job.id)
    assert again.state is JobState.FAILED  # "bad" fails every attempt
    assert journal.count("bad") == 2 * 5
