"""Outcomes settled in one batch cascade as if settled one by one (rule 5).

Found by the family property: a batch whose first success settles a parent,
whose settling walks up to an ancestor that a later success of the same batch
also counts against, must leave that ancestor's open count right.
"""

from __future__ import annotations

import asyncio

import conveyor
from conveyor import JobState
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.core.backend_registry import open_storage
from conveyor.core.specs import Family, build_spec
from conveyor.core.storage import Claimed, Storage, Success

from .namespaces import Namespaces

QUEUES = ["conveyor.examples.Step"]


async def claim(storage: Storage, count: int) -> dict[str, Claimed]:
    claimed: dict[str, Claimed] = {}
    for _ in range(20):
        for item in await storage.claim("test-worker", QUEUES, count - len(claimed), 30.0, 0.2):
            claimed[item.job.payload().name] = item  # type: ignore[attr-defined]
        if len(claimed) == count:
            return claimed
    raise AssertionError(f"claimed only {sorted(claimed)}")


async def cascade_then_sibling(config: conveyor.Config) -> dict[str, conveyor.Job]:
    """R declares A and B; A declares A1; then A1 and B succeed in one batch, A1 first.

    A1's success settles A, which counts down R; B's success counts down R again.
    """
    storage = await open_storage(config)
    try:
        root = build_spec(config, Step(name="R"))
        await storage.enqueue([root])
        got = await claim(storage, 1)
        a = build_spec(config, Step(name="A"), family=Family(parent_id=root.id))
        b = build_spec(config, Step(name="B"), family=Family(parent_id=root.id))
        assert await storage.record([Success(got["R"].lease, [a, b])]) == [True]
        got = await claim(storage, 2)
        a1 = build_spec(config, Step(name="A1"), family=Family(parent_id=a.id))
        assert await storage.record([Success(got["A"].lease, [a1])]) == [True]
        leaf = await claim(storage, 1)
        batch = [Success(leaf["A1"].lease, []), Success(got["B"].lease, [])]
        assert await storage.record(batch) == [True, True]
        jobs = {}
        for name, spec in [("R", root), ("A", a), ("B", b), ("A1", a1)]:
            job = await storage.get(spec.id)
            assert job is not None
            jobs[name] = job
        return jobs
    finally:
        await storage.aclose()


def test_a_batch_cascade_leaves_ancestors_counts_right(namespaces: Namespaces) -> None:
    config = namespaces.config()
    try:
        jobs = asyncio.run(cascade_then_sibling(config))
    finally:
        namespaces.drop(config)
    seen = {name: (job.state, job.open_children) for name, job in jobs.items()}
    assert seen == {
        "R": (JobState.SUCCEEDED, 0),
        "A": (JobState.SUCCEEDED, 0),
        "B": (JobState.SUCCEEDED, 0),
        "A1": (JobState.SUCCEEDED, 0),
    }
