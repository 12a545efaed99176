"""Rule 8: family repair, step by step, on every backend."""

from __future__ import annotations

import pytest

import conveyor
from conveyor import JobState, When
from conveyor.core.storage import JobFilter, Storage
from tests.contract.driver import Driver, Kid
from tests.contract.tamper import forget

S, F, C = JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED
H, Q, W = JobState.HELD, JobState.QUEUED, JobState.WAITING


@pytest.fixture
def fam(storage: Storage, config: conveyor.Config) -> Driver:
    return Driver(storage, config)


async def test_retrying_a_failed_child_reopens_its_parent_and_rearms_its_heirs(
    fam: Driver, client: conveyor.AsyncClient
) -> None:
    await fam.enqueue("r")
    await fam.run("r", Kid("a"), Kid("b"), Kid("h", when=When.SUCCEEDED))
    await fam.run("a")
    await fam.run("b", fail=True)
    assert await fam.states("r", "a", "b", "h") == {"r": F, "a": S, "b": F, "h": C}
    assert (await fam.job("r")).failed_ids == (fam.ids["b"],)

    retried = await client.retry(fam.ids["b"])

    assert retried.state is Q and retried.attempt == 0 and retried.failed_ids == ()
    assert await fam.states("r", "a", "b", "h") == {"r": W, "a": S, "b": Q, "h": H}
    root = await fam.job("r")
    assert root.open_children == 1
    assert root.failed_ids == () and root.failed_child_id is None and root.finished_at is None
    heir = await fam.job("h")
    assert heir.predecessor_state is None and heir.reason is None
    await fam.run("b")
    assert await fam.states("r", "h") == {"r": S, "h": Q}
    await fam.run("h")
    assert await fam.state("h") is S
    assert (await fam.job("h")).predecessor_state is S


async def test_settled_heirs_that_already_ran_do_not_run_again(
    fam: Driver, client: conveyor.AsyncClient, storage: Storage
) -> None:
    await fam.enqueue("r")
    await fam.run("r", Kid("b"), Kid("always", when=When.SETTLED), Kid("h", when=When.SUCCEEDED))
    await fam.run("b", fail=True)
    assert await fam.states("r", "always", "h") == {"r": F, "always": Q, "h": C}
    await fam.run("always")

    await client.retry(fam.ids["b"])
    await fam.run("b")

    assert await fam.states("r", "always", "h") == {"r": S, "always": S, "h": Q}
    assert (await fam.job("always")).attempt == 1
    assert await storage.claim("w", ["always"], 1, 30.0, 0.0) == []


async def test_an_ancestor_that_failed_for_another_branch_stays_failed_until_it_is_repaired(
    fam: Driver, client: conveyor.AsyncClient
) -> None:
    await fam.enqueue("r")
    await fam.run("r", Kid("a"), Kid("b"), Kid("h", when=When.SUCCEEDED))
    await fam.run("a", fail=True)
    await fam.run("b", fail=True)
    assert (await fam.job("r")).failed_child_id == fam.ids["a"]

    await client.retry(fam.ids["a"])
    root = await fam.job("r")
    assert root.state is F
    assert root.failed_child_id == fam.ids["b"]
    assert root.failed_ids == (fam.ids["b"],)
    assert await fam.state("h") is C
    await fam.run("a")
    assert await fam.states("r", "a", "h") == {"r": F, "a": S, "h": C}

    await client.retry(fam.ids["b"])
    assert await fam.states("r", "h") == {"r": W, "h": H}
    assert (await fam.job("r")).open_children == 1
    await fam.run("b")
    assert await fam.states("r", "h") == {"r": S, "h": Q}


async def test_repair_reopens_every_level_that_failed_because_of_the_branch(
    fam: Driver, client: conveyor.AsyncClient
) -> None:
    await fam.enqueue("g")
    await fam.run("g", Kid("p"), Kid("q"), Kid("gh", when=When.SUCCEEDED))
    await fam.run("q")
    await fam.run("p", Kid("leaf"), Kid("ph", when=When.SUCCEEDED))
    await fam.run("leaf", fail=True)
    assert await fam.states("g", "p", "gh", "ph") == {"g": F, "p": F, "gh": C, "ph": C}
    assert (await fam.job("g")).failed_ids == (fam.ids["leaf"],)

    await client.retry(fam.ids["leaf"])
    assert await fam.states("g", "p", "gh", "ph", "q") == {
        "g": W,
        "p": W,
        "gh": H,
        "ph": H,
        "q": S,
    }
    assert (await fam.job("g")).open_children == 1
    assert (await fam.job("p")).open_children == 1

    await fam.run("leaf")
    assert await fam.states("p", "ph", "g") == {"p": S, "ph": Q, "g": W}  # ph counts in g
    await fam.run("ph")
    assert await fam.states("g", "gh") == {"g": S, "gh": Q}
    await fam.run("gh")
    assert await fam.state("gh") is S


async def test_a_cancelled_member_is_repaired_like_a_failed_one(
    fam: Driver, client: conveyor.AsyncClient
) -> None:
    await fam.enqueue("r")
    await fam.run("r", Kid("a"), Kid("h", when=When.SUCCEEDED))
    await client.cancel(fam.ids["a"])
    assert await fam.states("r", "a", "h") == {"r": F, "a": C, "h": C}
    await client.retry(fam.ids["a"])
    assert await fam.states("r", "a", "h") == {"r": W, "a": Q, "h": H}


async def test_an_optional_members_retry_reopens_nothing_that_had_failed(
    fam: Driver, client: conveyor.AsyncClient
) -> None:
    await fam.enqueue("r")
    await fam.run("r", Kid("opt", optional=True), Kid("slow"))
    await fam.run("opt", fail=True)
    root = await fam.job("r")
    assert root.state is W and root.open_children == 1 and root.failed_ids == (fam.ids["opt"],)
    await client.retry(fam.ids["opt"])
    root = await fam.job("r")
    assert root.state is W and root.open_children == 2 and root.failed_ids == ()
    await fam.run("opt")
    await fam.run("slow")
    assert await fam.state("r") is S


async def test_retry_failed_repairs_every_member_whose_own_handler_failed(
    fam: Driver, client: conveyor.AsyncClient
) -> None:
    await fam.enqueue("r")
    await fam.run("r", Kid("p"), Kid("x"), Kid("ok"), Kid("h", when=When.SUCCEEDED))
    await fam.run("ok")
    await fam.run("x", fail=True)
    await fam.run("p", Kid("l1"), Kid("l2"), Kid("l3"))
    await fam.run("l1", fail=True)
    await fam.run("l2", fail=True)
    await fam.run("l3")
    assert await fam.states("r", "p") == {"r": F, "p": F}

    retried = await client.retry_failed(fam.ids["r"])

    assert sorted(j.id for j in retried) == sorted(fam.ids[n] for n in ("x", "l1", "l2"))
    assert all(j.state is Q and j.attempt == 0 for j in retried)
    assert await fam.states("r", "p", "h", "ok", "l3") == {
        "r": W,
        "p": W,
        "h": H,
        "ok": S,
        "l3": S,
    }
    for name in ("x", "l1", "l2"):
        await fam.run(name)
    assert await fam.states("r", "p", "h") == {"r": S, "p": S, "h": Q}


async def test_retry_failed_on_a_family_with_nothing_failed_changes_nothing(
    fam: Driver, client: conveyor.AsyncClient
) -> None:
    await fam.enqueue("r")
    await fam.run("r", Kid("a"))
    assert await client.retry_failed(fam.ids["r"]) == []
    assert await fam.states("r", "a") == {"r": W, "a": Q}
    with pytest.raises(conveyor.JobNotFound):
        await client.retry_failed("no-such-job")


async def test_a_top_level_job_is_queued_again_as_before(
    fam: Driver, client: conveyor.AsyncClient
) -> None:
    await fam.enqueue("solo")
    await fam.run("solo", fail=True)
    job = await client.retry(fam.ids["solo"])
    assert job.state is Q and job.attempt == 0 and job.last_error == "solo failed"
    await fam.run("solo")
    assert await fam.state("solo") is S


@pytest.mark.parametrize("state", ["queued", "running", "succeeded"])
async def test_retry_refuses_a_job_that_has_not_failed(
    fam: Driver, client: conveyor.AsyncClient, state: str
) -> None:
    await fam.enqueue("j")
    if state == "running":
        await fam.storage.claim("w", ["j"], 1, 30.0, 0.0)
    elif state == "succeeded":
        await fam.run("j")
    before = await fam.job("j")
    assert before.state.value == state
    with pytest.raises(conveyor.InvalidState, match="only failed or cancelled"):
        await client.retry(fam.ids["j"])
    assert await fam.job("j") == before


async def test_retry_refuses_a_parent_that_failed_because_of_its_family(
    fam: Driver, client: conveyor.AsyncClient
) -> None:
    await fam.enqueue("r")
    await fam.run("r", Kid("a"))
    await fam.run("a", fail=True)
    with pytest.raises(conveyor.InvalidState, match="retry the members that failed"):
        await client.retry(fam.ids["r"])
    assert await fam.states("r", "a") == {"r": F, "a": F}


async def test_retry_refuses_an_heir_that_never_ran(
    fam: Driver, client: conveyor.AsyncClient
) -> None:
    await fam.enqueue("r")
    await fam.run("r", Kid("a"), Kid("h", when=When.SUCCEEDED))
    await fam.run("a", fail=True)
    with pytest.raises(conveyor.InvalidState, match="never ran"):
        await client.retry(fam.ids["h"])
    assert await fam.states("r", "h") == {"r": F, "h": C}


async def test_retry_refuses_a_member_below_a_cancelled_ancestor(
    fam: Driver, client: conveyor.AsyncClient
) -> None:
    await fam.enqueue("r")
    await fam.run("r", Kid("a"), Kid("b"))
    await fam.run("a", fail=True)
    await client.cancel(fam.ids["r"])
    assert await fam.states("r", "a", "b") == {"r": C, "a": F, "b": C}
    for name in ("a", "b"):
        with pytest.raises(conveyor.InvalidState, match=f"ancestor {fam.ids['r']} is cancelled"):
            await client.retry(fam.ids[name])
    assert await fam.states("r", "a", "b") == {"r": C, "a": F, "b": C}


async def test_retry_refuses_an_optional_member_whose_parent_succeeded_without_it(
    fam: Driver, client: conveyor.AsyncClient
) -> None:
    await fam.enqueue("r")
    await fam.run("r", Kid("opt", optional=True))
    await fam.run("opt", fail=True)
    assert await fam.state("r") is S
    with pytest.raises(conveyor.InvalidState, match="is succeeded"):
        await client.retry(fam.ids["opt"])


async def test_retry_of_an_unknown_or_pruned_job_is_not_found(
    fam: Driver, client: conveyor.AsyncClient, storage: Storage
) -> None:
    with pytest.raises(conveyor.JobNotFound):
        await client.retry("no-such-job")
    await fam.enqueue("r")
    await fam.run("r", Kid("a"))
    await fam.run("a", fail=True)
    await storage.discard(fam.ids["r"])  # as retention would: the family goes with it
    with pytest.raises(conveyor.JobNotFound):
        await client.retry(fam.ids["a"])
    assert (await storage.list_jobs(JobFilter())).jobs == []


async def test_retry_refuses_a_member_whose_parent_was_pruned(
    fam: Driver, client: conveyor.AsyncClient, config: conveyor.Config, storage: Storage
) -> None:
    await fam.enqueue("r")
    await fam.run("r", Kid("a"))
    await fam.run("a", fail=True)
    await forget(config, storage, fam.ids["r"])
    with pytest.raises(conveyor.InvalidState, match=f"parent {fam.ids['r']} is gone"):
        await client.retry(fam.ids["a"])
    assert await fam.state("a") is F


async def test_an_heir_released_into_a_parent_that_stays_failed_counts_when_it_reopens(
    fam: Driver, client: conveyor.AsyncClient
) -> None:
    await fam.enqueue("r")
    await fam.run("r", Kid("x"), Kid("y"), Kid("h", when=When.SUCCEEDED))
    await fam.run("x", fail=True)
    await fam.run("y", fail=True)
    await client.retry(fam.ids["x"])
    await fam.run("x", Kid("xh", when=When.SUCCEEDED))  # its heir is released into r
    root = await fam.job("r")
    assert root.state is F and root.open_children == 0  # r stays failed: y still is
    assert (await fam.job("xh")).parent_id == fam.ids["r"]
    await fam.run("xh")
    await client.retry(fam.ids["y"])
    reopened = await fam.job("r")
    assert reopened.state is W and reopened.open_children == 1  # y alone: xh has settled
    await fam.run("y")
    assert await fam.states("r", "h") == {"r": S, "h": Q}
