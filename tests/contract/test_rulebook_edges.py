"""Edges the backends once disagreed on, decided in docs/rules.md and held here on each.

Rule 9 (an enqueue batch that repeats an id), rule 10 (the ready order of a
retried or handed-back job), rule 11 (the bound on failed ids) and rule 13
(what ``WorkerInfo.running`` counts).
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

import conveyor
from conveyor import JobState
from conveyor.core import rules
from conveyor.core.job import JobSpec
from conveyor.core.specs import Family, build_spec
from conveyor.core.storage import (
    Claimed,
    Failure,
    HandBack,
    JobFilter,
    Retry,
    Storage,
    Success,
    WorkerInfo,
)
from tests.support import step

QUEUE = step("x").DESCRIPTOR.full_name


def _spec(config: conveyor.Config, name: str, **options: object) -> JobSpec:
    return build_spec(config, step(name), **options)  # type: ignore[arg-type]


async def _claim(storage: Storage, limit: int) -> list[Claimed]:
    return await storage.claim("w1", [QUEUE], limit, 30.0, 0.0)


async def test_a_batch_that_repeats_an_id_is_refused_whole(
    config: conveyor.Config, storage: Storage
) -> None:
    a, b = _spec(config, "a"), _spec(config, "b")
    twin = replace(_spec(config, "twin"), id=a.id)
    with pytest.raises(conveyor.DuplicateJobId) as refused:
        await storage.enqueue([a, b, twin])
    assert refused.value.job_id == a.id
    assert isinstance(refused.value, ValueError)
    assert await storage.get(a.id) is None
    assert await storage.get(b.id) is None
    assert (await storage.list_jobs(JobFilter())).jobs == []


async def test_an_id_that_exists_is_skipped_so_a_batch_sent_again_adds_nothing(
    config: conveyor.Config, storage: Storage
) -> None:
    a = _spec(config, "a")
    await storage.enqueue([a])
    b = _spec(config, "b")
    await storage.enqueue([replace(a, queue="elsewhere"), b])
    kept = await storage.get(a.id)
    assert kept is not None and kept.queue == QUEUE
    assert (await storage.get(b.id)) is not None
    assert [j.id for j in (await storage.list_jobs(JobFilter())).jobs] == [b.id, a.id]


async def test_a_repeated_declaration_is_refused_and_stores_nothing(
    config: conveyor.Config, storage: Storage
) -> None:
    await storage.enqueue([_spec(config, "parent")])
    [parent] = await _claim(storage, 1)
    child = build_spec(config, step("c"), family=Family(parent_id=parent.job.id))
    with pytest.raises(conveyor.DuplicateJobId):
        await storage.stage(parent.lease, [child, child])
    assert await storage.get(child.id) is None


@pytest.mark.one_shard("rule 10: the ready order holds per shard")
async def test_a_handed_back_job_goes_behind_the_jobs_already_queued(
    config: conveyor.Config, storage: Storage
) -> None:
    first, second, third = (_spec(config, n) for n in ("first", "second", "third"))
    await storage.enqueue([first, second])
    [taken] = await _claim(storage, 1)
    assert taken.job.id == first.id
    await storage.enqueue([third])
    assert await storage.record([HandBack(taken.lease)]) == [True]
    order = [c.job.id for c in await _claim(storage, 3)]
    assert order == [second.id, third.id, first.id]


@pytest.mark.one_shard("rule 10: the ready order holds per shard")
async def test_a_retried_job_goes_behind_the_jobs_already_queued(
    config: conveyor.Config, storage: Storage
) -> None:
    first, second, third = (_spec(config, n) for n in ("first", "second", "third"))
    await storage.enqueue([first, second, third])
    [taken] = await _claim(storage, 1)
    due_now = time.time() - 1.0  # its back-off is over at once
    assert await storage.record([Retry(taken.lease, "boom", due_now)]) == [True]
    retried = await storage.get(first.id)
    assert retried is not None and retried.state is JobState.QUEUED
    order = [c.job.id for c in await _claim(storage, 3)]
    assert order == [second.id, third.id, first.id]


@pytest.mark.one_shard("rule 10: the ready order holds per shard")
async def test_priority_still_comes_before_the_ready_order(
    config: conveyor.Config, storage: Storage
) -> None:
    low, high = _spec(config, "low"), _spec(config, "high", priority=5)
    await storage.enqueue([low])
    [taken] = await _claim(storage, 1)
    await storage.enqueue([high])
    await storage.record([HandBack(taken.lease)])
    assert [c.job.id for c in await _claim(storage, 2)] == [high.id, low.id]


@pytest.mark.slow
async def test_failed_ids_keep_the_first_thousand_recorded(
    config: conveyor.Config, storage: Storage
) -> None:
    await storage.enqueue([_spec(config, "parent")])
    [parent] = await _claim(storage, 1)
    family = Family(parent_id=parent.job.id, optional=True)
    kids = [
        build_spec(config, step(f"k{i}"), family=family) for i in range(rules.MAX_FAILED_IDS + 5)
    ]
    heir = build_spec(
        config, step("heir"), queue="heirs", family=Family(predecessor_id=parent.job.id)
    )
    assert await storage.record([Success(parent.lease, [*kids, heir])]) == [True]
    failed_in_order: list[str] = []
    while claimed := await _claim(storage, 300):
        failed_in_order += [c.job.id for c in claimed]
        await storage.record([Failure(c.lease, "no") for c in claimed])
    assert len(failed_in_order) == len(kids)
    settled = await storage.get(parent.job.id)
    assert settled is not None
    assert settled.state is JobState.SUCCEEDED  # every child was optional
    assert settled.failed_ids == tuple(failed_in_order[: rules.MAX_FAILED_IDS])
    released = await storage.get(heir.id)
    assert released is not None
    assert released.predecessor_failed_ids == settled.failed_ids


async def test_a_repeated_declaration_in_an_outcome_is_refused_before_anything_changes(
    config: conveyor.Config, storage: Storage
) -> None:
    await storage.enqueue([_spec(config, "p1"), _spec(config, "p2")])
    first, second = await _claim(storage, 2)
    child = build_spec(config, step("c"), family=Family(parent_id=second.job.id))
    with pytest.raises(conveyor.DuplicateJobId):
        await storage.record([Success(first.lease), Success(second.lease, [child, child])])
    untouched = await storage.get(first.job.id)
    assert untouched is not None and untouched.state is JobState.RUNNING
    assert await storage.get(child.id) is None


async def test_worker_running_is_what_the_worker_reported(
    config: conveyor.Config, storage: Storage
) -> None:
    await storage.enqueue([_spec(config, "a"), _spec(config, "b")])
    claimed = await storage.claim("w1", [QUEUE], 2, 30.0, 0.0)
    assert len(claimed) == 2
    now = time.time()
    busy = WorkerInfo("w1", "host", 1, (QUEUE,), 10, now, running=0)
    idle = WorkerInfo("w2", "host", 2, (QUEUE,), 10, now, running=3)
    await storage.register_worker(busy, ttl=30.0)
    await storage.register_worker(idle, ttl=30.0)
    assert [(w.id, w.running) for w in await storage.workers()] == [("w1", 0), ("w2", 3)]
