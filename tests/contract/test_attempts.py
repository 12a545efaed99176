"""Rule 2 and retries: failed attempts discard their declarations; back-off; timeouts."""

from __future__ import annotations

from dataclasses import replace

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.storage import JobFilter, Storage
from tests.support import Journal, running, settle, step, step_worker, wait_id


async def test_failed_attempt_declarations_discarded_and_declared_again(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal, storage: Storage
) -> None:
    root = step("root", fail_times=2, children=[step("child")], heirs=[step("heir")])
    async with running(step_worker(config, journal)):
        job = await client.enqueue(root)
        settled = await settle(client, job.id)
        await settle(client, await wait_id(journal, "heir"))
    assert settled.state is JobState.SUCCEEDED
    assert settled.attempt == 3
    assert journal.count("root") == 3
    assert journal.count("child") == 1
    assert journal.count("heir") == 1
    family = await storage.family(job.id)
    assert sorted(j.state for j in family) == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    everything = await storage.list_jobs(JobFilter(), limit=100)
    assert len(everything.jobs) == 3  # root, one child, one heir: nothing from failed attempts


async def test_retry_keeps_last_error_and_counts_attempts(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    async with running(step_worker(config, journal)):
        job = await client.enqueue(step("flaky", fail_times=1))
        settled = await settle(client, job.id)
    assert settled.state is JobState.SUCCEEDED
    assert settled.attempt == 2
    assert settled.last_error is not None
    assert "fails on attempt 1" in settled.last_error
    assert [r.attempt for r in journal.runs["flaky"]] == [1, 2]


async def test_fails_for_good_after_max_attempts(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    async with running(step_worker(config, journal)):
        job = await client.enqueue(
            step("doomed", fail=True, children=[step("never")]), max_attempts=3
        )
        settled = await settle(client, job.id)
    assert settled.state is JobState.FAILED
    assert settled.attempt == 3
    assert settled.failed_ids == (job.id,)
    assert "RuntimeError" in (settled.last_error or "")
    assert journal.count("doomed") == 3
    assert journal.count("never") == 0


async def test_timeout_counts_as_an_error(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    async with running(step_worker(config, journal)):
        job = await client.enqueue(
            step("sleepy", sleep=5, children=[step("never")]), timeout=0.1, max_attempts=2
        )
        settled = await settle(client, job.id)
    assert settled.state is JobState.FAILED
    assert settled.attempt == 2
    assert "timed out" in (settled.last_error or "")
    assert journal.count("never") == 0


async def test_backoff_delays_the_retry(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    slow = replace(config, backoff=conveyor.Backoff(base=0.4, factor=1, jitter=False))
    async with running(step_worker(slow, journal)):
        job = await client.enqueue(step("flaky", fail_times=1))
        retrying = await _wait_for(client, job.id, JobState.SCHEDULED)
        assert retrying.attempt == 1
        assert retrying.run_at is not None and retrying.created_at is not None
        settled = await settle(client, job.id)
    first, second = journal.runs["flaky"]
    assert settled.state is JobState.SUCCEEDED
    assert second.started - first.finished >= 0.35


async def test_sync_handlers_run_in_threads_and_declare(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    import threading

    worker = conveyor.Worker(config, claim_wait=0.1, maintenance_interval=0.05)
    threads: list[str] = []

    @worker.handler
    def handle(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        threads.append(threading.current_thread().name)
        if msg.count < 3:
            ctx.enqueue_child(BasicJob(name=msg.name, count=msg.count + 1))

    async with running(worker):
        job = await client.enqueue(BasicJob(name="sync", count=0))
        settled = await settle(client, job.id)
    assert settled.state is JobState.SUCCEEDED
    assert len(threads) == 4
    assert all(name.startswith("conveyor-job") for name in threads)


async def test_enqueue_child_after_the_attempt_raises(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    worker = conveyor.Worker(config, claim_wait=0.1)
    kept: list[conveyor.JobContext] = []

    @worker.handler
    async def handle(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        kept.append(ctx)

    async with running(worker):
        job = await client.enqueue(BasicJob(name="x"))
        await settle(client, job.id)
    try:
        kept[0].enqueue_child(BasicJob(name="late"))
    except conveyor.NotInJob as exc:
        assert "ctx.client.enqueue" in str(exc)
    else:
        raise AssertionError("enqueue_child after the attempt must raise NotInJob")


async def test_middleware_wraps_handlers_in_order(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    worker = conveyor.Worker(config, claim_wait=0.1)
    calls: list[str] = []

    async def outer(ctx: conveyor.JobContext, msg: object, call_next: object) -> None:
        calls.append("outer-in")
        await call_next()  # type: ignore[operator]
        calls.append("outer-out")

    async def inner(ctx: conveyor.JobContext, msg: object, call_next: object) -> None:
        calls.append("inner-in")
        await call_next()  # type: ignore[operator]
        calls.append("inner-out")

    worker.use(outer)  # type: ignore[arg-type]
    worker.use(inner)  # type: ignore[arg-type]

    @worker.handler
    async def handle(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        calls.append("handler")

    async with running(worker):
        job = await client.enqueue(BasicJob(name="x"))
        await settle(client, job.id)
    assert calls == ["outer-in", "inner-in", "handler", "inner-out", "outer-out"]


async def _wait_for(client: conveyor.AsyncClient, job_id: str, state: JobState) -> conveyor.Job:
    from tests.support import wait_for_state

    return await wait_for_state(client, job_id, state)
