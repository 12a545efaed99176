"""Storage.oldest_queued: when each queue's longest-waiting queued job became queued
(rule 10's ready time), the source of the age-of-oldest-job metric."""

from __future__ import annotations

import asyncio
import time

import pytest

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.ids import new_id
from conveyor.core.job import JobSpec
from conveyor.core.storage import HandBack, Storage

# Ready times come from the backend's clock (Redis's TIME, PostgreSQL's host): the
# same machine's, so only rounding separates them from time.time() here.
SLACK = 0.01


async def test_no_queued_jobs_means_no_entry(
    client: conveyor.AsyncClient, storage: Storage
) -> None:
    assert await storage.oldest_queued() == {}
    await client.enqueue(BasicJob(name="later"), queue="a", delay=3600)
    assert await storage.oldest_queued() == {}


async def test_the_oldest_queued_job_of_each_queue_across_priorities(
    client: conveyor.AsyncClient, storage: Storage
) -> None:
    before = time.time()
    await client.enqueue(BasicJob(name="low"), queue="a", priority=0)
    between = time.time()
    await asyncio.sleep(0.05)
    await client.enqueue(BasicJob(name="high"), queue="a", priority=9)
    await client.enqueue(BasicJob(name="b"), queue="b")
    after = time.time()
    oldest = await storage.oldest_queued()
    assert set(oldest) == {"a", "b"}
    # The high-priority job runs first, but the low one has waited longer.
    assert before - SLACK <= oldest["a"] <= between + SLACK
    assert between + 0.05 - SLACK <= oldest["b"] <= after + SLACK


@pytest.mark.one_shard("rule 10: the ready order holds per shard")
async def test_a_claimed_or_cancelled_job_no_longer_counts(
    client: conveyor.AsyncClient, storage: Storage
) -> None:
    first = await client.enqueue(BasicJob(name="first"), queue="a")
    second = await client.enqueue(BasicJob(name="second"), queue="a")
    await asyncio.sleep(0.05)
    mark = time.time()
    third = await client.enqueue(BasicJob(name="third"), queue="a")
    claimed = await storage.claim("w", ["a"], 1, 30, 0)
    assert [c.job.id for c in claimed] == [first.id]
    await client.cancel(second.id)
    assert mark - SLACK <= (await storage.oldest_queued())["a"]
    await client.cancel(third.id)
    assert await storage.oldest_queued() == {}


async def test_ready_time_is_when_it_became_queued_not_when_it_was_created(
    client: conveyor.AsyncClient, storage: Storage
) -> None:
    due = time.time() + 0.2
    await client.enqueue(BasicJob(name="delayed"), queue="a", delay=0.2)
    handed = await client.enqueue(BasicJob(name="handed back"), queue="b")
    await asyncio.sleep(0.3)
    [claimed] = await storage.claim("w", ["b"], 1, 30, 0)
    assert claimed.job.id == handed.id
    back = time.time()
    assert await storage.record([HandBack(claimed.lease)]) == [True]
    await storage.maintain()  # promotes the delayed job, if the claim did not
    promoted = time.time()
    oldest = await storage.oldest_queued()
    assert back - SLACK <= oldest["b"] <= promoted + SLACK
    assert due - SLACK <= oldest["a"] <= promoted + SLACK


async def test_the_oldest_is_found_below_many_priorities(
    client: conveyor.AsyncClient, storage: Storage
) -> None:
    # SQL probes the heads of the first 32 priorities one by one, then aggregates.
    before = time.time()
    await client.enqueue(BasicJob(name="lowest"), queue="a", priority=0)
    mark = time.time()
    await asyncio.sleep(0.05)
    for priority in range(1, 41):
        await client.enqueue(BasicJob(name=str(priority)), queue="a", priority=priority)
    assert before - SLACK <= (await storage.oldest_queued())["a"] <= mark + SLACK


async def test_a_job_enqueued_after_its_id_was_made_is_ready_from_its_enqueue(
    storage: Storage,
) -> None:
    # A producer may make its ids (or retry an enqueue) well before the job is stored:
    # the id's time is then no measure of when the job became queued.
    spec = JobSpec(
        id=new_id(),
        type=BasicJob.DESCRIPTOR.full_name,
        queue="a",
        payload=BasicJob(name="made early").SerializeToString(),
    )
    await asyncio.sleep(0.3)
    enqueued = time.time()
    assert await storage.enqueue([spec]) == [spec.id]
    stored = time.time()
    assert enqueued - SLACK <= (await storage.oldest_queued())["a"] <= stored + SLACK
