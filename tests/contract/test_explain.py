"""client.explain: why a job is where it is, and what it waits for."""

from __future__ import annotations

import time

import pytest

import conveyor
from conveyor import JobState, When
from conveyor.core.specs import Family
from conveyor.core.storage import Retry, Storage, WorkerInfo
from tests.contract.driver import Driver, Kid


async def test_each_open_state_is_explained(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    fam = Driver(storage, config)
    r = await fam.enqueue("r")
    queued = await client.explain(r)
    assert queued.state is JobState.QUEUED
    assert "no live worker listens" in queued.text and queued.waiting_for == ()
    await storage.register_worker(WorkerInfo("w9", "h", 1, ("r",), 4, time.time(), running=1), 30)
    assert "1 live worker(s) listen on it, running 1 of 4 slots" in (await client.explain(r)).text

    [claimed] = await storage.claim("w9", ["r"], 1, 30.0, 0.0)
    running = await client.explain(r)
    assert running.text.startswith("Running attempt 1 of 5 on worker w9 since ")
    declared = fam.spec("early", Family(parent_id=r))
    await storage.stage(claimed.lease, [declared])
    held_child = await client.explain(declared.id)
    assert "Declared by the running attempt of " + r in held_child.text
    assert held_child.waiting_for == (r,)
    await storage.record([Retry(claimed.lease, "Traceback …\nValueError: boom", time.time() + 60)])
    scheduled = await client.explain(r)
    assert "Scheduled for retry 2 of 5 at " in scheduled.text
    assert scheduled.text.endswith("after attempt 1 failed: ValueError: boom")
    with pytest.raises(conveyor.JobNotFound):
        await client.explain(declared.id)  # discarded with the failed attempt


async def test_a_waiting_parent_names_its_open_children_and_held_heirs(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    fam = Driver(storage, config)
    await fam.enqueue("r")
    kids = [f"k{i}" for i in range(1200)]
    await fam.run("r", *(Kid(k) for k in kids), Kid("h", when=When.SUCCEEDED))
    for start in range(0, 1197, 300):
        batch = kids[start : min(start + 300, 1197)]
        claimed = await storage.claim("w", batch, len(batch), 30.0, 0.0)
        assert len(claimed) == len(batch)
        from conveyor.core.storage import Success

        await storage.record([Success(c.lease) for c in claimed])
    waiting = await client.explain(fam.ids["r"])
    assert waiting.state is JobState.WAITING
    assert "waiting for 3 of 1,200 children: " in waiting.text
    assert sorted(waiting.waiting_for) == sorted(fam.ids[k] for k in kids[1197:])
    assert f"Heir(s) {fam.ids['h']} held until then." in waiting.text
    heir = await client.explain(fam.ids["h"])
    assert heir.text.startswith(f"Heir held until {fam.ids['r']} and everything below it settle")
    assert "(now waiting)" in heir.text and heir.waiting_for == (fam.ids["r"],)


async def test_settled_jobs_say_how_they_ended(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    fam = Driver(storage, config)
    await fam.enqueue("r")
    await fam.run("r", Kid("a"))
    await fam.run("a", fail=True)
    failed = await client.explain(fam.ids["r"])
    assert failed.state is JobState.FAILED
    assert f"child {fam.ids['a']} failed" in failed.text
    assert "1 member(s) failed for good" in failed.text
    assert (await client.explain(fam.ids["a"])).text.endswith(
        ": a failed. 1 member(s) failed for good."
    )
