"""Rule 1's results: what a handler returns is kept with its job, and an heir reads
its predecessor's children (and their results) a page at a time."""

from __future__ import annotations

import dataclasses

import pytest

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.storage import Storage
from tests.contract.driver import Driver, Kid
from tests.support import running


def _worker(config: conveyor.Config, seen: list[tuple[JobState, str | None]]) -> conveyor.Worker:
    worker = conveyor.Worker(config, concurrency=8, claim_wait=0.2, maintenance_interval=0.05)

    @worker.handler
    async def handle(ctx: conveyor.JobContext, msg: BasicJob) -> BasicJob | None:
        if msg.name == "root":
            for i in range(7):
                ctx.enqueue_child(BasicJob(name=f"kid{i}"))
            ctx.enqueue_child(BasicJob(name="quiet"))
            ctx.enqueue_heir(BasicJob(name="sum"))
            return None
        if msg.name == "sum":
            assert ctx.predecessor is not None
            async for child in ctx.predecessor.children(page_size=3):
                result = child.result()
                seen.append((child.state, result.name if isinstance(result, BasicJob) else None))
            return BasicJob(name=f"total {len(seen)}")
        if msg.name == "big":
            return BasicJob(name="x" * 500)
        if msg.name == "wrong":
            return "not a message"  # type: ignore[return-value]
        if msg.name == "quiet":
            return None
        return BasicJob(name=msg.name.upper())

    return worker


async def _heir(storage: Storage, job_id: str) -> conveyor.Job:
    [heir] = [j for j in await storage.family(job_id) if j.predecessor_id == job_id]
    return heir


async def test_results_are_kept_and_an_heir_pages_through_its_predecessors_children(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    seen: list[tuple[JobState, str | None]] = []
    async with running(_worker(config, seen)):
        root = await client.enqueue(BasicJob(name="root"))
        done = await client.wait(root.id, timeout=20)
        heir = await client.wait((await _heir(storage, root.id)).id, timeout=20)
    assert done.state is JobState.SUCCEEDED
    assert done.result() is None and done.result_bytes is None
    assert sorted(seen, key=lambda s: s[1] or "") == [
        (JobState.SUCCEEDED, None),
        *[(JobState.SUCCEEDED, f"KID{i}") for i in range(7)],
    ]
    assert heir.result() == BasicJob(name="total 8")


async def test_a_result_over_the_size_limit_fails_the_attempt_like_any_error(
    config: conveyor.Config,
) -> None:
    small = dataclasses.replace(config, max_payload_bytes=100)
    async with conveyor.AsyncClient(small) as client, running(_worker(small, [])):
        big = await client.enqueue(BasicJob(name="big"), max_attempts=2)
        wrong = await client.enqueue(BasicJob(name="wrong"), max_attempts=1)
        big_done = await client.wait(big.id, timeout=20)
        wrong_done = await client.wait(wrong.id, timeout=20)
    assert big_done.state is JobState.FAILED and big_done.attempt == 2
    assert "over the limit of 100" in (big_done.last_error or "")
    assert big_done.result_bytes is None
    assert wrong_done.state is JobState.FAILED
    assert "returned str" in (wrong_done.last_error or "")


async def test_children_pages_cover_every_child_once_and_filter_the_open_ones(
    config: conveyor.Config, storage: Storage
) -> None:
    fam = Driver(storage, config)
    await fam.enqueue("r")
    names = [f"c{i}" for i in range(12)]
    await fam.run("r", *(Kid(n) for n in names))
    for name in names[:9]:
        await fam.run(name, result=b"")
    seen: list[str] = []
    after = None
    while True:
        page = await storage.children(fam.ids["r"], after=after, limit=5)
        assert page.total == 12
        seen += [j.id for j in page.jobs]
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert sorted(seen) == sorted(fam.ids[n] for n in names)
    opened = await storage.children(fam.ids["r"], open_only=True, limit=50)
    assert sorted(j.id for j in opened.jobs) == sorted(fam.ids[n] for n in names[9:])
    assert all(j.state is JobState.QUEUED for j in opened.jobs)
    done = await fam.job("c0")
    assert done.result_bytes == b"" and done.result() is not None  # an empty message is a result


@pytest.mark.parametrize("returned", [None, b"\x0a\x03abc"])
async def test_a_repaired_member_forgets_its_old_result(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage, returned: bytes | None
) -> None:
    fam = Driver(storage, config)
    await fam.enqueue("r")
    await fam.run("r", Kid("a"))
    await fam.run("a", fail=True)
    repaired = await client.retry(fam.ids["a"])
    assert repaired.result_bytes is None
    await fam.run("a", result=returned)
    assert (await fam.job("a")).result_bytes == returned
