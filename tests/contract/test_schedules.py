"""Periodic jobs: each tick of a schedule makes one job, however many workers run it."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.schedule import tick_id
from conveyor.core.storage import JobFilter, Storage
from tests.support import live_workers, running

EVERY_SECOND = "* * * * * *"


def ticking_worker(
    config: conveyor.Config, runs: Counter[str], **schedule: object
) -> conveyor.Worker:
    worker = conveyor.Worker(config, concurrency=4, claim_wait=0.2, maintenance_interval=0.2)

    @worker.handler
    async def tick(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        runs[ctx.job.id] += 1

    worker.schedule(EVERY_SECOND, BasicJob(name="tick"), name="ticker", **schedule)  # type: ignore[arg-type]
    return worker


async def all_jobs(storage: Storage) -> list[conveyor.Job]:
    return (await storage.list_jobs(JobFilter(), limit=500)).jobs


async def test_three_workers_make_one_job_per_tick(
    config: conveyor.Config, storage: Storage
) -> None:
    runs: Counter[str] = Counter()
    started = datetime.now(UTC)
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(3):
            await stack.enter_async_context(running(ticking_worker(config, runs)))
        # 2.6 s once all three run their schedules: starting takes a while on a loaded
        # machine, and a window counted from before could hold a single tick.
        await live_workers(storage, 3)
        await asyncio.sleep(2.6)
    ended = datetime.now(UTC)  # the workers have stopped: no tick after this
    jobs = await all_jobs(storage)
    whole_seconds = [
        started.replace(microsecond=0) + timedelta(seconds=s)
        for s in range(1, int((ended - started).total_seconds()) + 2)
    ]
    ticks = {tick_id("ticker", t) for t in whole_seconds if started < t <= ended}
    # At least two whole seconds passed with all three running; one job per tick at
    # most, each with the id of its tick.
    assert 2 <= len(jobs) <= len(ticks), [j.id for j in jobs]
    assert {j.id for j in jobs} <= ticks
    assert all(started < j.created_at <= ended for j in jobs if j.created_at)
    done = [j for j in jobs if j.state is JobState.SUCCEEDED]
    assert all(runs[j.id] == 1 for j in done)
    assert sum(runs.values()) == len(done)


async def test_backfill_enqueues_the_ticks_missed_before_start(
    config: conveyor.Config, storage: Storage
) -> None:
    runs: Counter[str] = Counter()
    worker = ticking_worker(config, runs, backfill=timedelta(seconds=3))
    start = datetime.now(UTC)
    async with running(worker):
        await asyncio.sleep(0.3)
    end = datetime.now(UTC)
    ids = {j.id for j in await all_jobs(storage)}
    # The worker started at some moment between start and end (opening storage takes a
    # while), and backfilled the three seconds before it: every whole second in each
    # such window has its job, and none from before any of them.
    second = start.replace(microsecond=0)
    in_every_window = {
        tick_id("ticker", second - timedelta(seconds=s))
        for s in range(3)
        if second - timedelta(seconds=s) > end - timedelta(seconds=3)
    }
    assert in_every_window
    assert in_every_window <= ids
    assert tick_id("ticker", second - timedelta(seconds=4)) not in ids


async def test_a_worker_publishes_its_schedules(config: conveyor.Config, storage: Storage) -> None:
    worker = ticking_worker(config, Counter())
    async with running(worker):
        [info] = await live_workers(storage, 1)
    assert info.schedules == (
        {
            "name": "ticker",
            "cron": EVERY_SECOND,
            "tz": "UTC",
            "type": "conveyor.examples.BasicJob",
            "queue": "conveyor.examples.BasicJob",
        },
    )


@pytest.mark.parametrize(
    ("cron", "options", "message"),
    [
        ("*/5 * * *", {}, "invalid cron expression '\\*/5 \\* \\* \\*'"),
        ("61 * * * *", {}, "Bad minute"),
        ("@daily", {}, "invalid cron expression"),
        ("* * * * *", {"tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ("* * * * *", {"delay": 5}, "no delay or run_at"),
        ("* * * * *", {"backfill": timedelta(days=8)}, "backfill must be"),
        ("* * * * *", {"backfill": 60}, "backfill must be"),
        ("* * * * *", {"name": ""}, "non-empty string"),
    ],
)
def test_bad_schedules_are_refused(
    config: conveyor.Config, cron: str, options: dict[str, object], message: str
) -> None:
    worker = conveyor.Worker(config)
    with pytest.raises(conveyor.InvalidSchedule, match=message):
        worker.schedule(cron, BasicJob(name="x"), **options)  # type: ignore[arg-type]
    assert worker.schedules == []


def test_two_schedules_may_not_share_a_name(config: conveyor.Config) -> None:
    worker = conveyor.Worker(config)
    first = worker.schedule("0 * * * *", BasicJob(name="a"), tz="Europe/Paris")
    second = worker.schedule("0 * * * *", BasicJob(name="b"), tz="Europe/Paris")
    assert first.name != second.name  # other payloads, other default names
    with pytest.raises(conveyor.InvalidSchedule, match="already has a schedule named"):
        worker.schedule("0 * * * *", BasicJob(name="a"), tz="Europe/Paris")
    assert len(worker.schedules) == 2


def test_tick_ids_are_time_ordered_uuid7s_shared_by_name() -> None:
    tick = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
    first = tick_id("report", tick)
    assert first == tick_id("report", tick)
    assert first != tick_id("other", tick)
    assert first[14] == "7" and first[19] in "89ab"
    assert first < tick_id("report", tick + timedelta(minutes=1))
    assert int(first.replace("-", "")[:12], 16) == int(tick.timestamp() * 1000)
