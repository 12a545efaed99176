"""Rule 14 over time: a rate of 50 jobs a second holds within 10 % over 10 seconds.

Memory, Redis and PostgreSQL run at once (one namespace each, two workers each),
so the ten seconds are spent once for the three; SQLite, whose claims and
outcomes queue on one file lock in this one process, runs after them alone.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

import conveyor
from conveyor import JobState, Rate
from conveyor._proto.examples.basic_pb2 import BasicJob
from tests.conftest import BACKENDS
from tests.contract.test_queue_controls import assert_within_bucket
from tests.support import running

QUEUE = "rated"
RATE, SECONDS = 50, 10


async def drain_at_rate(config: conveyor.Config) -> list[float]:
    """Enqueue a burst and ten seconds' worth, drain them with two workers; returns
    when storage claimed each."""
    async with conveyor.AsyncClient(config) as client:
        await client.set_queue_limits(QUEUE, rate=Rate(RATE, per=1.0))
        jobs = await client.enqueue_many(
            [BasicJob(name=str(i)) for i in range(RATE * (SECONDS + 1))], queue=QUEUE
        )
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(2):
                worker = conveyor.Worker(config, queues=[QUEUE], concurrency=8, claim_wait=0.5)

                @worker.handler
                async def work(ctx: conveyor.JobContext, msg: BasicJob) -> None:
                    pass

                await stack.enter_async_context(running(worker))
            done = [await client.wait(job.id, timeout=SECONDS * 3) for job in jobs]
    assert {job.state for job in done} == {JobState.SUCCEEDED}
    return [job.started_at.timestamp() for job in done if job.started_at]


@pytest.mark.slow
async def test_fifty_a_second_holds_within_ten_percent_over_ten_seconds(
    request: pytest.FixtureRequest,
) -> None:
    configs = {
        name: conveyor.Config(
            url=request.getfixturevalue(f"{name}_url"),
            namespace=request.getfixturevalue("namespace"),
        )
        for name in BACKENDS
    }
    together = [name for name in configs if name != "sqlite"]
    drained = await asyncio.gather(*(drain_at_rate(configs[n]) for n in together))
    results = dict(zip(together, drained, strict=True))
    results["sqlite"] = await drain_at_rate(configs["sqlite"])
    for name, claimed_at in results.items():
        assert len(claimed_at) == RATE * (SECONDS + 1), name
        assert_within_bucket(claimed_at, RATE, RATE, name)
        # After the first full bucket, the rest came at 50 a second, within 10 %.
        steady = (len(claimed_at) - RATE) / (max(claimed_at) - min(claimed_at))
        assert RATE * 0.9 <= steady <= RATE * 1.1, (name, steady)
