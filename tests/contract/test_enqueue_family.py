"""Families declared by the producer (client.enqueue_family): stored with the root in
one enqueue, and accounted exactly as if each job had declared its members while it
ran (docs/rules.md rules 1-5 and 9)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

import conveyor
from conveyor import JobState, Member, When
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.plan import MAX_PLANNED
from conveyor.core.storage import Storage
from tests.support import running, settle


@dataclass
class Node:
    """A member of the family under test; ``fail`` makes every attempt raise."""

    name: str
    children: list[Node] = field(default_factory=list)
    heirs: list[Node] = field(default_factory=list)
    optional: bool = False
    when: When = When.SUCCEEDED
    fail: bool = False


# Children, grandchildren, heirs of both conditions, an optional child that fails,
# and a non-optional grandchild that fails (so its parent fails, and the heirs that
# need success are cancelled while the SETTLED ones run).
TREE = Node(
    "root",
    children=[
        Node("a"),
        Node(
            "b",
            children=[Node("b1"), Node("b2", fail=True)],
            heirs=[Node("b-after", when=When.SETTLED), Node("b-then")],
        ),
        Node("c", optional=True, fail=True),
    ],
    heirs=[Node("root-after", when=When.SETTLED, children=[Node("cleanup")]), Node("root-then")],
)


def _index(node: Node, found: dict[str, Node]) -> dict[str, Node]:
    found[node.name] = node
    for below in (*node.children, *node.heirs):
        _index(below, found)
    return found


NODES = _index(TREE, {})


def _member(node: Node, prefix: str) -> Member:
    return Member(
        BasicJob(name=prefix + node.name),
        children=[_member(n, prefix) for n in node.children],
        heirs=[_member(n, prefix) for n in node.heirs],
        optional=node.optional,
        when=node.when,
        max_attempts=1,
    )


def family_worker(
    config: conveyor.Config, order: list[str], fail_first: set[str]
) -> conveyor.Worker:
    """Runs both families: ``rt-`` jobs declare their members at run time from TREE,
    ``p-`` jobs were declared by the producer. ``fail_first`` names fail once."""
    worker = conveyor.Worker(config, concurrency=8, claim_wait=0.2, maintenance_interval=0.05)

    @worker.handler
    async def run(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        order.append(msg.name)
        prefix, _, name = msg.name.partition("-")
        node = NODES[name]
        if prefix == "rt":
            for child in node.children:
                ctx.enqueue_child(
                    BasicJob(name="rt-" + child.name), optional=child.optional, max_attempts=1
                )
            for heir in node.heirs:
                ctx.enqueue_heir(BasicJob(name="rt-" + heir.name), when=heir.when, max_attempts=1)
        if msg.name in fail_first:
            fail_first.discard(msg.name)
            raise RuntimeError(f"{msg.name} fails its first attempt")
        if node.fail:
            raise RuntimeError(f"{msg.name} fails")

    return worker


def _shape(jobs: Sequence[conveyor.Job], prefix: str) -> dict[str, tuple[object, ...]]:
    """Each member by name: its state, parent, predecessor, open count, failed members and
    reason, with ids replaced by names so that two families compare."""
    names = {job.id: job.payload().name.removeprefix(prefix) for job in jobs}  # type: ignore[attr-defined]

    def named(text: str | None) -> str | None:
        for job_id, name in names.items():
            text = text.replace(job_id, name) if text else text
        return text

    return {
        names[job.id]: (
            job.state,
            names.get(job.parent_id or ""),
            names.get(job.predecessor_id or ""),
            job.open_children,
            sorted(names[i] for i in job.failed_ids if i in names),
            named(job.reason),
            job.optional,
        )
        for job in jobs
    }


async def test_a_declared_family_is_accounted_as_if_its_jobs_had_declared_it(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    order: list[str] = []
    async with running(family_worker(config, order, fail_first=set())):
        planned = await client.enqueue_family(
            BasicJob(name="p-root"),
            children=_member(TREE, "p-").children,
            heirs=_member(TREE, "p-").heirs,
            max_attempts=1,
        )
        declared = await client.enqueue(BasicJob(name="rt-root"), max_attempts=1)
        for root in (planned.job.id, declared.id):
            await settle(client, root)
        await _quiet(storage, [planned.job.id, declared.id])
        planned_tree = await storage.family_tree(planned.job.id)
        declared_tree = await storage.family_tree(declared.id)
    assert len(planned_tree) == len(NODES)
    assert _shape(planned_tree, "p-") == _shape(declared_tree, "rt-")
    shape = _shape(planned_tree, "p-")
    assert shape["root"][0] is JobState.FAILED  # through b, whose child b2 failed
    assert shape["b"][5] == "child b2 failed"
    assert shape["c"][0] is JobState.FAILED and shape["c"][6]  # optional: does not fail root
    assert shape["b-then"][0] is JobState.CANCELLED and shape["b-after"][0] is JobState.SUCCEEDED
    assert (
        shape["root-after"][0] is JobState.SUCCEEDED and shape["cleanup"][0] is JobState.SUCCEEDED
    )
    assert shape["b-after"][1] == "root"  # a released heir takes its predecessor's parent
    # Each ran once, in the order the rules give: a declarer before its members.
    ran = [name.removeprefix("p-") for name in order if name.startswith("p-")]
    assert sorted(ran) == sorted(n for n in NODES if n not in ("b-then", "root-then"))
    for name, node in NODES.items():
        for below in (*node.children, *node.heirs):
            if below.name in ran:
                assert ran.index(name) < ran.index(below.name)
    assert ran.index("b-after") > max(ran.index("b1"), ran.index("b2"))
    # The ids enqueue_family returned are the stored jobs'.
    returned = {job.payload().name: job.id for job in planned.jobs()}  # type: ignore[attr-defined]
    stored = {job.payload().name: job.id for job in planned_tree}  # type: ignore[attr-defined]
    assert returned == stored


async def test_a_failed_attempt_discards_its_members_and_the_next_stages_the_same_ones(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    order: list[str] = []
    fail_first = {"p-b"}
    async with running(family_worker(config, order, fail_first)):
        planned = await client.enqueue_family(
            BasicJob(name="p-b"),
            children=[Member(BasicJob(name=f"p-{n}"), max_attempts=1) for n in ("b1", "b2")],
            heirs=[Member(BasicJob(name="p-b-after"), when=When.SETTLED)],
            max_attempts=2,
        )
        done = await settle(client, planned.job.id)
        await _quiet(storage, [planned.job.id])
        tree = await storage.family_tree(planned.job.id)
    assert done.attempt == 2
    assert order.count("p-b") == 2
    assert sorted(n for n in order if n != "p-b") == ["p-b-after", "p-b1", "p-b2"]  # once each
    assert {job.id for job in tree} == {job.id for job in planned.jobs()}
    assert done.state is JobState.FAILED  # b2 fails for good
    assert done.reason is not None and done.reason.startswith("child ")


async def test_members_appear_held_when_the_root_starts(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    planned = await client.enqueue_family(
        BasicJob(name="root"), children=[BasicJob(name="kid")], heirs=[BasicJob(name="next")]
    )
    assert planned.job.state is JobState.QUEUED
    [kid], [heir] = planned.children, planned.heirs
    assert (kid.job.state, kid.job.parent_id) == (JobState.HELD, planned.job.id)
    assert (heir.job.state, heir.job.predecessor_id) == (JobState.HELD, planned.job.id)
    assert await storage.get(kid.job.id) is None  # not before its declarer runs
    stored = await storage.get(planned.job.id)
    assert stored is not None and stored.plan is not None
    started = asyncio.Event()
    release = asyncio.Event()
    worker = conveyor.Worker(config, claim_wait=0.2)

    @worker.handler
    async def hold(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        if msg.name == "root":
            started.set()
            await release.wait()

    async with running(worker):
        await asyncio.wait_for(started.wait(), 10)
        held = await storage.get(kid.job.id)
        assert held is not None and held.state is JobState.HELD
        release.set()
        await settle(client, heir.job.id)
    assert (await settle(client, planned.job.id)).state is JobState.SUCCEEDED


async def test_a_key_on_the_root_answers_with_its_holder(
    client: conveyor.AsyncClient, storage: Storage
) -> None:
    first = await client.enqueue_family(
        BasicJob(name="root"), children=[BasicJob(name="kid")], key="nightly"
    )
    again = await client.enqueue_family(
        BasicJob(name="root"), children=[BasicJob(name="kid")], key="nightly"
    )
    assert again.job.duplicate and again.job.id == first.job.id
    assert again.children == []
    assert len((await storage.list_jobs(conveyor.core.storage.JobFilter())).jobs) == 1


@pytest.mark.parametrize(
    ("children", "words"),
    [
        ([Member(BasicJob(name="kid"), key="x" * 257)], "key must be 1-256 bytes"),
        (
            [Member(BasicJob(name="kid"), children=[Member(BasicJob(), max_attempts=0)])],
            "max_attempts",
        ),
        ([Member(BasicJob(name="kid"), children=["not a message"])], "protobuf"),
        ([BasicJob()] * (MAX_PLANNED + 1), f"at most {MAX_PLANNED} members"),
    ],
)
async def test_a_bad_member_stores_nothing(
    client: conveyor.AsyncClient, storage: Storage, children: list[object], words: str
) -> None:
    with pytest.raises(conveyor.ConveyorError, match=words):
        await client.enqueue_family(BasicJob(name="root"), children=children)
    assert (await storage.list_jobs(conveyor.core.storage.JobFilter())).jobs == []


async def _quiet(storage: Storage, roots: list[str]) -> None:
    """Until every member of these families has settled (heirs settle after roots)."""
    for _ in range(400):
        trees = [await storage.family_tree(root) for root in roots]
        if all(job.state.settled for tree in trees for job in tree):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the families never settled")
