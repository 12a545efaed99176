"""Rule 15: a job enqueued with a key holds it; while it does, the same key in the same
queue answers with that job instead of making another."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.storage import JobFilter, Storage
from tests.support import basic_worker, running, settle


async def count_jobs(storage: Storage) -> int:
    return len((await storage.list_jobs(JobFilter(), limit=500)).jobs)


async def test_fifty_racing_enqueues_of_one_key_make_one_job(
    config: conveyor.Config, storage: Storage
) -> None:
    clients = [conveyor.AsyncClient(config) for _ in range(5)]
    try:
        jobs = await asyncio.gather(
            *(clients[i % 5].enqueue(BasicJob(name=str(i)), key="order-42") for i in range(50))
        )
    finally:
        for c in clients:
            await c.aclose()
    assert len({job.id for job in jobs}) == 1
    assert [job.duplicate for job in jobs].count(False) == 1
    assert await count_jobs(storage) == 1
    [stored] = (await storage.list_jobs(JobFilter())).jobs
    assert stored.key == "order-42"


async def test_a_duplicate_answers_with_the_holder_as_it_is(
    client: conveyor.AsyncClient, storage: Storage
) -> None:
    first = await client.enqueue(BasicJob(name="a"), key="k", priority=3)
    again = await client.enqueue(BasicJob(name="b"), key="k")
    assert not first.duplicate
    assert again.duplicate
    assert again.id == first.id and again.priority == 3
    assert again.state is JobState.QUEUED
    assert (await client.get(first.id)).payload().name == "a"  # type: ignore[union-attr]
    other_queue = await client.enqueue(BasicJob(name="c"), key="k", queue="elsewhere")
    assert not other_queue.duplicate  # keys are per queue
    batch = await client.enqueue_many([BasicJob(name="d"), BasicJob(name="e")], key="batch")
    assert batch[0].id == batch[1].id and [j.duplicate for j in batch] == [False, True]
    assert await count_jobs(storage) == 3


async def test_the_key_is_freed_when_its_holder_settles(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    async with running(basic_worker(config, broken=set())):
        first = await client.enqueue(BasicJob(name="a"), key="k")
        await settle(client, first.id)
        second = await client.enqueue(BasicJob(name="a"), key="k")
        assert not second.duplicate and second.id != first.id
        await settle(client, second.id)


async def test_key_ttl_holds_the_key_after_settling(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    async with running(basic_worker(config, broken=set())):
        first = await client.enqueue(BasicJob(name="a"), key="k", key_ttl=timedelta(seconds=1))
        await settle(client, first.id)
        held = await client.enqueue(BasicJob(name="a"), key="k", key_ttl=1)
        assert held.duplicate and held.id == first.id and held.state is JobState.SUCCEEDED
        await asyncio.sleep(1.1)
        fresh = await client.enqueue(BasicJob(name="a"), key="k")
        assert not fresh.duplicate and fresh.id != first.id


async def test_pruning_or_discarding_the_holder_frees_its_key(config: conveyor.Config) -> None:
    config = replace(config, retention=timedelta(seconds=0.1))
    async with conveyor.AsyncClient(config) as client:
        storage = await client.storage()
        pruned = await client.enqueue(BasicJob(name="a"), key="pruned", key_ttl=3600)
        discarded = await client.enqueue(BasicJob(name="b"), key="discarded", key_ttl=3600)
        await client.cancel(pruned.id)
        await client.cancel(discarded.id)
        assert (await client.enqueue(BasicJob(name="a"), key="pruned")).duplicate
        await storage.discard(discarded.id)
        await asyncio.sleep(0.2)
        await storage.maintain()
        assert await client.get(pruned.id) is None
        assert not (await client.enqueue(BasicJob(name="a"), key="pruned")).duplicate
        assert not (await client.enqueue(BasicJob(name="b"), key="discarded")).duplicate


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"key": "x" * 257}, "key must be 1-256 bytes"),
        ({"key": "é" * 129}, "key must be 1-256 bytes"),
        ({"key": ""}, "key must be 1-256 bytes"),
        ({"key": 42}, "key must be 1-256 bytes"),
        ({"key_ttl": 5}, "key_ttl needs a key"),
        ({"key": "k", "key_ttl": -1}, "key_ttl must be a non-negative duration"),
    ],
)
async def test_bad_keys_are_refused_and_nothing_stored(
    client: conveyor.AsyncClient, storage: Storage, options: dict[str, object], message: str
) -> None:
    with pytest.raises(conveyor.InvalidJobOptions, match=message):
        await client.enqueue(BasicJob(name="x"), **options)  # type: ignore[arg-type]
    assert await count_jobs(storage) == 0


async def test_a_running_job_cannot_declare_a_keyed_child(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    worker = conveyor.Worker(config, claim_wait=0.2)

    @worker.handler
    async def parent(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        with pytest.raises(conveyor.InvalidJobOptions, match="top-level"):
            ctx.enqueue_child(BasicJob(name="child"), key="k")

    async with running(worker):
        done = await settle(client, (await client.enqueue(BasicJob(name="p"))).id)
    assert done.state is JobState.SUCCEEDED and done.open_children == 0
