"""Rule 15: a job enqueued with a key holds it; while it does, the same key in the same
queue answers with that job instead of making another."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

import conveyor
from conveyor import JobState, When
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.job import JobSpec, Lease
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


@pytest.mark.one_shard("rule 15: a declaration's key is held on its family's shard")
async def test_declarations_take_their_keys_when_released(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    """Rule 15 for declarations: a child takes its key when its declarer succeeds, an heir
    when it is released; one whose key is held then settles cancelled as a duplicate,
    optional, and its family does not wait for the holder."""
    blocker = asyncio.Event()
    worker = conveyor.Worker(config, queues=["parents", "keyed"], claim_wait=0.2)

    @worker.handler
    async def run(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        if msg.name == "holder":
            await blocker.wait()
        elif msg.name == "parent":
            ctx.enqueue_child(BasicJob(name="c1"), queue="keyed", key="a")
            ctx.enqueue_child(BasicJob(name="c2"), queue="keyed", key="a")
            ctx.enqueue_child(BasicJob(name="c3"), queue="keyed", key="b")
            ctx.enqueue_heir(BasicJob(name="h1"), queue="keyed", key="b")
            ctx.enqueue_heir(BasicJob(name="h2"), queue="keyed", key="z", when=When.SETTLED)

    async with running(worker):
        holder = await client.enqueue(BasicJob(name="holder"), queue="keyed", key="b")
        parent = await client.enqueue(BasicJob(name="parent"), queue="parents")
        done = await settle(client, parent.id)
        tree = {j.payload().name: j for j in await storage.family_tree(parent.id)}  # type: ignore[attr-defined]
        for name in ("h1", "h2"):
            await settle(client, tree[name].id)
        tree = {j.payload().name: j for j in await storage.family_tree(parent.id)}  # type: ignore[attr-defined]
        still = await client.get(holder.id)
        blocker.set()
    assert done.state is JobState.SUCCEEDED  # the duplicates failed nothing
    c1, c2, c3, h1, h2 = (tree[n] for n in ("c1", "c2", "c3", "h1", "h2"))
    assert c1.state is JobState.SUCCEEDED and c1.key == "a"
    assert (c2.state, c2.reason, c2.optional) == (
        JobState.CANCELLED,
        f"duplicate: key a held by {c1.id}",
        True,
    )
    assert (c3.state, c3.reason) == (JobState.CANCELLED, f"duplicate: key b held by {holder.id}")
    assert c2.attempt == c3.attempt == 0  # they never ran
    assert (h1.state, h1.reason) == (JobState.CANCELLED, f"duplicate: key b held by {holder.id}")
    assert h2.state is JobState.SUCCEEDED  # key z was free
    assert still is not None and still.state is JobState.RUNNING  # not waited for
    # c1 settled: its key is free again.
    again = await client.enqueue(BasicJob(name="again"), queue="keyed", key="a")
    assert not again.duplicate


async def test_a_keyed_child_of_a_failed_attempt_takes_no_key(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    worker = conveyor.Worker(config, queues=["parents"], claim_wait=0.2)

    @worker.handler
    async def parent(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        ctx.enqueue_child(BasicJob(name="child"), queue="keyed", key="k")
        raise RuntimeError("the attempt fails: its declarations are discarded (rule 2)")

    async with running(worker):
        failed = await settle(
            client, (await client.enqueue(BasicJob(), queue="parents", max_attempts=1)).id
        )
    assert failed.state is JobState.FAILED
    fresh = await client.enqueue(BasicJob(name="top"), queue="keyed", key="k")
    assert not fresh.duplicate


class FirstStageLate:
    """Storage whose first ``stage`` call waits a while before it is stored, as a call
    on a slower connection does; everything else goes to the real storage."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.staged: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    async def stage(self, lease: Lease, declarations: Sequence[JobSpec]) -> None:
        if not self.staged:
            self.staged.append("(late)")
            await asyncio.sleep(0.2)
        await self._storage.stage(lease, declarations)
        self.staged += [BasicJob.FromString(d.payload).name for d in declarations]


async def test_siblings_take_a_shared_key_in_declaration_order_whatever_the_batches(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    # One declaration per staging batch, the first batch slow: the worker stages the
    # batches one after another, so "first" still comes first (rule 15's order).
    slow = FirstStageLate(storage)
    worker = conveyor.Worker(config, claim_wait=0.2, stage_batch=1, storage=slow)

    @worker.handler
    async def run(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        if msg.name == "parent":
            for name in ("first", "second", "third"):
                ctx.enqueue_child(BasicJob(name=name), key="shared")
            await asyncio.sleep(0.3)  # the batches are in flight while the handler runs

    parent = await client.enqueue(BasicJob(name="parent"))
    await worker.run_until_idle(timeout=30)
    tree = {j.payload().name: j for j in await storage.family_tree(parent.id)}  # type: ignore[attr-defined]
    assert slow.staged == ["(late)", "first", "second", "third"]
    assert tree["first"].state is JobState.SUCCEEDED
    assert [tree[n].state for n in ("second", "third")] == [JobState.CANCELLED] * 2
