"""Rules 1, 3, 4 and 5: children, waiting parents, heirs, and how families settle."""

from __future__ import annotations

from collections import Counter

import conveyor
from conveyor import JobState
from conveyor.core.storage import Storage
from tests.support import Journal, running, settle, step, step_worker, wait_id


async def test_nested_five_children_one_heir(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    """The original's nested test: the heir runs once, after all five children."""
    kids = [step(f"kid{i}", sleep=0.02 * i) for i in range(5)]
    root = step("root", children=kids, heirs=[step("heir")])
    async with running(step_worker(config, journal)):
        job = await client.enqueue(root)
        settled = await settle(client, job.id)
        heir = await settle(client, (await wait_id(journal, "heir")))

    assert settled.state is JobState.SUCCEEDED
    assert heir.state is JobState.SUCCEEDED
    assert journal.count("heir") == 1
    assert all(journal.count(f"kid{i}") == 1 for i in range(5))
    latest_kid = max(journal.last_finish(f"kid{i}") for i in range(5))
    assert journal.first_start("heir") >= latest_kid
    predecessor = journal.runs["heir"][0].predecessor
    assert predecessor is not None
    assert predecessor.id == job.id
    assert predecessor.state is JobState.SUCCEEDED
    assert predecessor.failed_ids == ()
    assert heir.parent_id is None  # the root's heir takes the root's parent: none


async def test_parent_waits_until_children_settle(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    root = step("root", children=[step("slow", sleep=0.3), step("quick")])
    async with running(step_worker(config, journal)):
        job = await client.enqueue(root)
        waiting = await _wait_state(client, job.id, JobState.WAITING)
        assert waiting.open_children >= 1
        settled = await settle(client, job.id)
    assert settled.state is JobState.SUCCEEDED
    assert settled.open_children == 0
    assert settled.finished_at is not None
    assert journal.count("slow") == journal.count("quick") == 1


async def test_three_levels_parent_heir_waits_for_childrens_heirs(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    def branch(name: str) -> conveyor.JobContext | object:
        return step(
            name,
            children=[step(f"{name}.a", sleep=0.05), step(f"{name}.b")],
            heirs=[step(f"{name}.heir", sleep=0.1)],
        )

    root = step("root", children=[branch("left"), branch("right")], heirs=[step("final")])
    async with running(step_worker(config, journal)):
        job = await client.enqueue(root)
        settled = await settle(client, job.id)
        final = await settle(client, await wait_id(journal, "final"))

    assert settled.state is JobState.SUCCEEDED
    assert final.state is JobState.SUCCEEDED
    for side in ("left", "right"):
        assert journal.first_start(f"{side}.heir") >= journal.last_finish(f"{side}.a")
        assert journal.first_start(f"{side}.heir") >= journal.last_finish(f"{side}.b")
        # The branch's heir took the root as parent, so the root waited for it.
        heir_job = await client.get(journal.ids[f"{side}.heir"])
        assert heir_job is not None
        assert heir_job.parent_id == job.id
        assert journal.first_start("final") >= journal.last_finish(f"{side}.heir")
    assert sum(journal.count(n) for n in journal.runs) == 10


async def test_failed_child_cancels_succeeded_heirs_and_runs_settled_heirs(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    root = step(
        "root",
        children=[step("ok"), step("bad", fail=True)],
        heirs=[step("on-success"), step("always", settled_heir=True)],
    )
    async with running(step_worker(config, journal)):
        job = await client.enqueue(root, max_attempts=2)
        settled = await settle(client, job.id)
        always = await settle(client, await wait_id(journal, "always"))

    bad_id = journal.ids["bad"]
    assert settled.state is JobState.FAILED
    assert settled.failed_child_id == bad_id
    assert settled.failed_ids == (bad_id,)
    # max_attempts is per job: the child has the config's default, not the root's 2.
    assert journal.count("bad") == config.max_attempts
    assert journal.count("on-success") == 0
    assert always.state is JobState.SUCCEEDED
    predecessor = journal.runs["always"][0].predecessor
    assert predecessor is not None
    assert predecessor.state is JobState.FAILED
    assert predecessor.failed_ids == (bad_id,)
    family = {j.id: j for j in await (await client.storage()).family(job.id)}
    cancelled = [j for j in family.values() if j.state is JobState.CANCELLED]
    assert len(cancelled) == 1
    assert cancelled[0].when is conveyor.When.SUCCEEDED
    assert cancelled[0].reason is not None and job.id in cancelled[0].reason


async def test_optional_child_failure_does_not_fail_parent(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    root = step(
        "root", children=[step("audit", fail=True, optional=True), step("ok")], heirs=[step("heir")]
    )
    async with running(step_worker(config, journal)):
        job = await client.enqueue(root)
        settled = await settle(client, job.id)
        heir = await settle(client, await wait_id(journal, "heir"))
    audit = await client.get(journal.ids["audit"])
    assert audit is not None and audit.state is JobState.FAILED
    assert settled.state is JobState.SUCCEEDED
    assert settled.failed_child_id is None
    assert settled.failed_ids == (audit.id,)  # still reported to heirs
    assert heir.state is JobState.SUCCEEDED
    assert journal.count("heir") == 1


async def test_heir_chain_runs_in_order_once_each(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    third = step("third")
    second = step("second", heirs=[third])
    root = step("first", heirs=[second])
    async with running(step_worker(config, journal)):
        await client.enqueue(root)
        last = await settle(client, await wait_id(journal, "third"))
    assert last.state is JobState.SUCCEEDED
    assert [journal.count(n) for n in ("first", "second", "third")] == [1, 1, 1]
    assert journal.first_start("second") >= journal.last_finish("first")
    assert journal.first_start("third") >= journal.last_finish("second")
    assert last.predecessor_id == journal.ids["second"]


async def test_cancelled_heir_does_not_count_twice_against_parent(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    """A child fails; its SUCCEEDED-heir is cancelled; the parent fails once and settles."""
    child = step("child", fail=True, heirs=[])
    root = step("root", children=[step("mid", children=[child], heirs=[step("mid-heir")])])
    async with running(step_worker(config, journal)):
        job = await client.enqueue(root, max_attempts=1)
        settled = await settle(client, job.id)
    assert settled.state is JobState.FAILED
    assert settled.failed_child_id == journal.ids["mid"]
    assert settled.open_children == 0
    assert journal.count("mid-heir") == 0


async def test_job_without_children_settles_with_its_success(
    client: conveyor.AsyncClient, config: conveyor.Config, journal: Journal, storage: Storage
) -> None:
    async with running(step_worker(config, journal)):
        job = await client.enqueue(step("alone"))
        settled = await settle(client, job.id)
    assert settled.state is JobState.SUCCEEDED
    assert settled.attempt == 1
    assert settled.started_at is not None and settled.finished_at is not None
    assert settled.started_at <= settled.finished_at
    assert await storage.family(job.id) == []


async def _wait_state(client: conveyor.AsyncClient, job_id: str, state: JobState) -> conveyor.Job:
    from tests.support import wait_for_state

    return await wait_for_state(client, job_id, state)


async def test_every_member_that_settles_is_stamped_finished_and_holds_no_lease(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    """However a job settles (it succeeds, fails, loses a heir's condition or its key, is
    cancelled with an ancestor, or is cancelled while scheduled), the step that settles it
    stamps its finish time and leaves it holding no lease: backends write these in the same
    step as the state, so a settled job without them would be a torn transition."""
    failing = step(
        "p",
        children=[step("ok"), step("bad", fail=True), step("dup1", key="k"), step("dup2", key="k")],
        heirs=[step("on-success"), step("always", settled_heir=True)],
    )
    async with running(step_worker(config, journal)):
        p = await client.enqueue(failing)
        await settle(client, p.id)
        await settle(client, await wait_id(journal, "always"))
        q = await client.enqueue(step("q", children=[step("slow", sleep=30)]))
        await wait_id(journal, "slow")  # running, under a lease
        await client.cancel(q.id)
        await settle(client, q.id)
        later = await client.enqueue(step("later"), delay=60)
        await client.cancel(later.id)
    storage = await client.storage()
    jobs = [
        *await storage.family_tree(p.id),
        *await storage.family_tree(q.id),
        await client.get(later.id),
    ]
    # p and its 6 members, q and slow, later.
    assert len(jobs) == 10
    states = Counter(job.state for job in jobs if job)
    assert states == {JobState.SUCCEEDED: 3, JobState.FAILED: 2, JobState.CANCELLED: 5}, states
    for job in jobs:
        assert job is not None
        assert job.finished_at is not None, (job.id, job.state)
        assert job.created_at is not None and job.created_at <= job.finished_at
        assert job.worker_id is None, (job.id, job.state)
