"""Rule 6: leases with fencing tokens; expiry re-queues; stale outcomes change nothing."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import conveyor
from conveyor import JobState
from conveyor.core.specs import build_spec
from conveyor.core.storage import Failure, HandBack, Retry, Storage, Success
from tests.support import Journal, running, settle, step, step_worker


async def _enqueue(storage: Storage, config: conveyor.Config, name: str, **options: object) -> str:
    spec = build_spec(config, step(name), **options)  # type: ignore[arg-type]
    await storage.enqueue([spec])
    return spec.id


async def _expire(storage: Storage, job_id: str) -> None:
    """Let the 0.05 s lease lapse, then run maintenance until the job is back."""
    for _ in range(100):
        await asyncio.sleep(0.06)
        await storage.maintain()
        job = await storage.get(job_id)
        assert job is not None
        if job.state is not JobState.RUNNING:
            return
    raise AssertionError("lease never expired")


async def test_claim_gives_running_job_with_token(
    config: conveyor.Config, storage: Storage
) -> None:
    job_id = await _enqueue(storage, config, "a")
    [claimed] = await storage.claim("w1", [step("a").DESCRIPTOR.full_name], 10, 30.0, 0.0)
    assert claimed.job.id == job_id
    assert claimed.job.state is JobState.RUNNING
    assert claimed.job.attempt == 1
    assert claimed.lease.job_id == job_id
    stored = await storage.get(job_id)
    assert stored is not None
    assert stored.state is JobState.RUNNING
    assert stored.worker_id == "w1"
    assert await storage.claim("w2", [claimed.job.queue], 10, 30.0, 0.0) == []


async def test_expired_lease_requeues_without_counting_and_fences_late_outcome(
    config: conveyor.Config, storage: Storage
) -> None:
    job_id = await _enqueue(storage, config, "a")
    queue = step("a").DESCRIPTOR.full_name
    [first] = await storage.claim("dead", [queue], 1, 0.05, 0.0)
    await _expire(storage, job_id)
    requeued = await storage.get(job_id)
    assert requeued is not None
    assert requeued.state is JobState.QUEUED
    assert requeued.attempt == 0  # the lost attempt is not counted
    assert requeued.lost_count == 1

    [second] = await storage.claim("alive", [queue], 1, 30.0, 0.0)
    assert second.job.attempt == 1
    assert second.lease.token != first.lease.token
    before = await storage.get(job_id)
    # The dead worker wakes up: every kind of late outcome is refused.
    for late in (
        Success(first.lease),
        Failure(first.lease, "late"),
        Retry(first.lease, "late", 0.0),
        HandBack(first.lease),
    ):
        assert await storage.record([late]) == [False]
    assert await storage.get(job_id) == before
    assert await storage.renew([first.lease], 30.0) == [first.lease]
    with_stale = await storage.record([Success(second.lease)])
    assert with_stale == [True]
    done = await storage.get(job_id)
    assert done is not None and done.state is JobState.SUCCEEDED


async def test_stage_with_stale_lease_is_refused(config: conveyor.Config, storage: Storage) -> None:
    job_id = await _enqueue(storage, config, "a")
    [claimed] = await storage.claim("w", [step("a").DESCRIPTOR.full_name], 1, 0.05, 0.0)
    await _expire(storage, job_id)
    child = replace(build_spec(config, step("child")), parent_id=job_id)
    try:
        await storage.stage(claimed.lease, [child])
    except conveyor.LeaseLost as exc:
        assert exc.job_id == job_id
    else:
        raise AssertionError("stage with a stale lease must raise LeaseLost")
    assert await storage.get(child.id) is None


async def test_lost_attempt_discards_its_staged_declarations(
    config: conveyor.Config, storage: Storage
) -> None:
    job_id = await _enqueue(storage, config, "a")
    [claimed] = await storage.claim("w", [step("a").DESCRIPTOR.full_name], 1, 0.05, 0.0)
    child = replace(build_spec(config, step("c")), parent_id=job_id)
    await storage.stage(claimed.lease, [child])
    staged = await storage.get(child.id)
    assert staged is not None and staged.state is JobState.HELD
    await _expire(storage, job_id)
    assert await storage.get(child.id) is None


async def test_job_lost_too_often_fails_as_worker_lost(
    config: conveyor.Config, storage: Storage
) -> None:
    job_id = await _enqueue(storage, config, "a")
    queue = step("a").DESCRIPTOR.full_name
    for _ in range(config.max_lost + 1):
        [claimed] = await storage.claim("crashy", [queue], 1, 0.05, 0.0)
        assert claimed.job.id == job_id
        await _expire(storage, job_id)
    job = await storage.get(job_id)
    assert job is not None
    assert job.state is JobState.FAILED
    assert job.lost_count == config.max_lost + 1
    assert "worker lost" in (job.last_error or "")


async def test_heartbeat_renews_leases_of_long_jobs(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    """A job longer than its lease keeps it while the worker lives: it runs once."""
    # Four beats in the job's run; each may stall up to 1 s (a busy CI machine) and
    # the lease still holds.
    async with running(step_worker(config, journal, lease=1.5)):
        job = await client.enqueue(step("long", sleep=2.0))
        settled = await settle(client, job.id)
    assert settled.state is JobState.SUCCEEDED
    assert settled.lost_count == 0
    assert journal.count("long") == 1


async def test_cancel_of_a_running_job_fences_its_worker(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal, storage: Storage
) -> None:
    async with running(step_worker(config, journal, lease=0.3)):
        job = await client.enqueue(step("long", sleep=2.0, children=[step("never")]))
        for _ in range(500):
            current = await client.get(job.id)
            if current is not None and current.state is JobState.RUNNING:
                break
            await asyncio.sleep(0.01)
        cancelled = await client.cancel(job.id)
        assert cancelled.state is JobState.CANCELLED
        await asyncio.sleep(0.5)  # a heartbeat notices and abandons the handler
    final = await client.get(job.id)
    assert final is not None and final.state is JobState.CANCELLED
    assert journal.count("never") == 0
    assert journal.succeeded_runs("long") == []


async def test_graceful_stop_hands_back_unfinished_jobs(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    worker = step_worker(config, journal, shutdown_timeout=0.1)
    async with running(worker):
        job = await client.enqueue(step("long", sleep=5.0))
        for _ in range(500):
            if journal.count("long"):
                break
            await asyncio.sleep(0.01)
    handed_back = await client.get(job.id)
    assert handed_back is not None
    assert handed_back.state is JobState.QUEUED
    assert handed_back.attempt == 0
    assert handed_back.lost_count == 0
    assert (await (await client.storage()).workers()) == []


async def test_stop_interrupts_a_waiting_claim(config: conveyor.Config, journal: Journal) -> None:
    """A worker blocked in a long claim stops at once and leaves nothing claimed."""
    worker = step_worker(config, journal, claim_wait=60.0)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.3)
    await worker.stop()
    await asyncio.wait_for(task, 10)  # far below the 60 s claim


class SlowSettle:
    """The storage, with every ``settle`` call held back ``delay`` seconds first (a
    backend under load): outcomes wait while the worker goes on running jobs."""

    def __init__(self, storage: Storage, delay: float) -> None:
        self._storage = storage
        self._delay = delay
        self.batches: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._storage, name)

    async def record(self, outcomes: list[object]) -> list[bool]:
        self.batches.append(len(outcomes))
        await asyncio.sleep(self._delay)
        return await self._storage.record(outcomes)  # type: ignore[arg-type]


async def test_a_finished_job_keeps_its_lease_while_its_outcome_is_on_the_way(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal, storage: Storage
) -> None:
    """Found by tests/chaos: outcomes waiting for a slow settle lost their leases, so
    finished jobs ran again and their outcomes were refused."""
    # The settle takes over twice the lease; the lease tolerates a 0.8 s stall of its
    # renewals (0.3 s, then 0.4 s, lost some on SQLite on a slow or loaded CI machine).
    slow = SlowSettle(storage, delay=2.5)
    worker = step_worker(config, journal, lease=1.2, storage=slow)  # maintenance every 0.05 s
    async with running(worker):
        jobs = [await client.enqueue(step(f"quick{i}")) for i in range(5)]
        settled = [await settle(client, job.id) for job in jobs]
    assert [job.state for job in settled] == [JobState.SUCCEEDED] * 5
    assert [job.lost_count for job in settled] == [0] * 5
    assert [journal.count(f"quick{i}") for i in range(5)] == [1] * 5


async def test_a_worker_stops_claiming_while_too_many_outcomes_wait(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal, storage: Storage
) -> None:
    """Outcomes piling up behind a slow settle hold the worker back: it runs at most
    ``concurrency`` jobs and keeps at most ``MAX_UNSETTLED_FACTOR`` times that many
    finished ones waiting, so a struggling backend is not sent ever bigger batches."""
    slow = SlowSettle(storage, delay=0.3)
    worker = step_worker(config, journal, concurrency=2, storage=slow)
    worker.MAX_UNSETTLED_FACTOR = 1  # at most 2 running + 2 waiting: batches of <= 4
    bound = 4
    async with running(worker):
        jobs = await client.enqueue_many([step(f"n{i}") for i in range(24)])
        for job in jobs:
            await settle(client, job.id)
    assert sum(slow.batches) == 24
    assert max(slow.batches) <= bound, slow.batches
