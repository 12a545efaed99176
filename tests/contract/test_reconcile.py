"""Rule 7's reconciler: a wrong count or a stranded heir is found, repaired and counted."""

from __future__ import annotations

import conveyor
from conveyor import JobState, When
from conveyor.core.storage import Storage
from tests.contract.driver import Driver, Kid
from tests.contract.tamper import tamper


async def _maintain_until_repaired(storage: Storage, job_id: str) -> list[str]:
    repaired: list[str] = []
    for _ in range(20):  # each step reconciles a bounded slice
        repaired += (await storage.maintain()).repaired
        if job_id in repaired:
            return repaired
    return repaired


async def _repairs_counted(storage: Storage) -> int:
    return sum(minute.repaired for minute in await storage.counters(minutes=2))


async def test_a_waiting_job_counting_too_many_open_children_is_recounted_and_settles(
    config: conveyor.Config, storage: Storage
) -> None:
    fam = Driver(storage, config)
    await fam.enqueue("r")
    await fam.run("r", Kid("a"), Kid("b"), Kid("h", when=When.SUCCEEDED))
    await fam.run("a")
    await tamper(config, storage, fam.ids["r"], open_children=5)
    await fam.run("b")
    stuck = await fam.job("r")
    assert stuck.state is JobState.WAITING and stuck.open_children == 4  # it would wait forever

    assert await _maintain_until_repaired(storage, fam.ids["r"]) == [fam.ids["r"]]

    assert await fam.states("r", "h") == {"r": JobState.SUCCEEDED, "h": JobState.QUEUED}
    assert await _repairs_counted(storage) == 1
    assert (await storage.maintain()).repaired == []  # nothing more to find


async def test_a_wrong_count_with_children_still_open_is_corrected_in_place(
    config: conveyor.Config, storage: Storage
) -> None:
    fam = Driver(storage, config)
    await fam.enqueue("r")
    await fam.run("r", Kid("a"), Kid("b"))
    await tamper(config, storage, fam.ids["r"], open_children=1)
    assert await _maintain_until_repaired(storage, fam.ids["r"]) == [fam.ids["r"]]
    fixed = await fam.job("r")
    assert fixed.state is JobState.WAITING and fixed.open_children == 2
    await fam.run("a")
    assert await fam.state("r") is JobState.WAITING  # a count of 1 would have settled it here
    await fam.run("b")
    assert await fam.state("r") is JobState.SUCCEEDED


async def test_a_held_heir_whose_predecessor_settled_is_released(
    config: conveyor.Config, storage: Storage
) -> None:
    fam = Driver(storage, config)
    await fam.enqueue("r")
    await fam.run("r", Kid("a"), Kid("h", when=When.SUCCEEDED))
    await fam.run("a")
    assert await fam.states("r", "h") == {"r": JobState.SUCCEEDED, "h": JobState.QUEUED}
    await tamper(config, storage, fam.ids["h"], state=JobState.HELD)

    assert await _maintain_until_repaired(storage, fam.ids["h"]) == [fam.ids["h"]]

    assert await fam.state("h") is JobState.QUEUED
    assert await _repairs_counted(storage) == 1
    await fam.run("h")
    assert await fam.state("h") is JobState.SUCCEEDED


async def test_healthy_families_are_never_repaired(
    config: conveyor.Config, storage: Storage
) -> None:
    fam = Driver(storage, config)
    await fam.enqueue("r")
    await fam.run("r", Kid("a"), Kid("b", optional=True), Kid("h", when=When.SETTLED))
    await fam.run("a", Kid("a1"))
    await fam.run("b", fail=True)
    for _ in range(3):
        assert (await storage.maintain()).repaired == []
    assert await _repairs_counted(storage) == 0
