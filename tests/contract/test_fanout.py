"""A parent with 10,000 children: declarations are staged in batches, memory stays bounded."""

from __future__ import annotations

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.storage import JobFilter, Storage
from tests.support import running, settle

CHILDREN = 10_000
BATCH = 500


async def test_ten_thousand_children_staged_in_batches(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    worker = conveyor.Worker(config, concurrency=32, claim_wait=0.2, stage_batch=BATCH)
    peaks: list[int] = []
    ran: list[int] = []
    heir_runs: list[conveyor.Predecessor | None] = []

    @worker.handler
    def fan_out(ctx: conveyor.JobContext, msg: BasicJob) -> None:  # sync: waits for each batch
        if msg.name == "parent":
            for i in range(CHILDREN):
                ctx.enqueue_child(BasicJob(name="child", count=i))
            ctx.enqueue_heir(BasicJob(name="heir"))
            peaks.append(ctx.peak_buffered)
        elif msg.name == "child":
            ran.append(msg.count)
        else:
            heir_runs.append(ctx.predecessor)

    async with running(worker):
        parent = await client.enqueue(BasicJob(name="parent"))
        settled = await settle(client, parent.id, timeout=120)
        for _ in range(1000):
            if heir_runs:
                break
            await _sleep()

    assert settled.state is JobState.SUCCEEDED
    assert peaks == [BATCH]  # never more than one batch held in the worker's memory
    assert sorted(ran) == list(range(CHILDREN))  # each child exactly once
    assert len(heir_runs) == 1
    assert heir_runs[0] is not None and heir_runs[0].state is JobState.SUCCEEDED
    succeeded = 0
    cursor = None
    while True:
        page = await storage.list_jobs(
            JobFilter(state=JobState.SUCCEEDED), after=cursor, limit=1000
        )
        succeeded += len(page.jobs)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert succeeded == CHILDREN + 2


async def test_async_handler_bounds_memory_with_flush(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    worker = conveyor.Worker(config, claim_wait=0.2, stage_batch=100)
    peaks: list[int] = []

    @worker.handler
    async def fan_out(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        if msg.name != "parent":
            return
        for i in range(1000):
            ctx.enqueue_child(BasicJob(name="child", count=i))
            if i % 100 == 99:
                await ctx.flush()
        peaks.append(ctx.peak_buffered)

    async with running(worker):
        parent = await client.enqueue(BasicJob(name="parent"))
        settled = await settle(client, parent.id, timeout=60)
    assert settled.state is JobState.SUCCEEDED
    assert peaks == [100]


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.01)
