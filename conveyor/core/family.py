"""A family at a glance: its members by state and type, its depth, what is open and
what is held, from one ``Storage.family_tree`` read."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .job import Job
from .states import JobState, When
from .storage import FAMILY_TREE_LIMIT, Storage


@dataclass(frozen=True, slots=True)
class Member:
    """One job of the family and where it sits: ``depth`` 0 is the root; a child is
    one below its parent; an heir is level with its predecessor."""

    job: Job
    depth: int


@dataclass(frozen=True, slots=True)
class HeldHeir:
    """An heir not released yet, and why."""

    job: Job
    why: str


@dataclass(frozen=True, slots=True)
class FamilySummary:
    """Everything a family page shows above its timeline."""

    root: Job
    members: list[Member]
    """The root first, then every other member in the order they were created."""
    complete: bool
    """False when the family has more members than were read."""
    by_state: dict[JobState, int]
    by_type: dict[str, dict[JobState, int]]
    depth: int
    open: int
    held_heirs: list[HeldHeir] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.members)


async def summarize(
    storage: Storage, root_id: str, limit: int = FAMILY_TREE_LIMIT
) -> FamilySummary:
    """Read ``root_id``'s family (at most ``limit`` members) and summarize it.

    Raises:
        JobNotFound: no such job.
    """
    jobs = await storage.family_tree(root_id, limit=limit + 1)
    complete = len(jobs) <= limit
    jobs = jobs[:limit]
    by_id = {job.id: job for job in jobs}
    depth = _depths(jobs, root_id)
    members = [Member(job, depth[job.id]) for job in jobs]
    by_type: dict[str, Counter[JobState]] = defaultdict(Counter)
    for job in jobs:
        by_type[job.type][job.state] += 1
    return FamilySummary(
        root=jobs[0],
        members=members,
        complete=complete,
        by_state=dict(Counter(job.state for job in jobs)),
        by_type={name: dict(counts) for name, counts in sorted(by_type.items())},
        depth=max((m.depth for m in members), default=0),
        open=sum(not job.state.settled for job in jobs),
        held_heirs=[_held(job, by_id) for job in jobs if _is_held_heir(job)],
    )


def _depths(jobs: list[Job], root_id: str) -> dict[str, int]:
    """Each member's level: a child one below its parent, an heir level with its
    predecessor. Passes over the members until every link resolves (a job is
    created after the one that declares it, so one pass usually does; clocks that
    disagree between hosts may need more)."""
    depth = {root_id: 0}
    left = [job for job in jobs if job.id != root_id]
    while left:
        unresolved = []
        for job in left:
            if job.predecessor_id in depth:
                depth[job.id] = depth[job.predecessor_id]
            elif job.parent_id in depth:
                depth[job.id] = depth[job.parent_id] + 1
            else:
                unresolved.append(job)
        if len(unresolved) == len(left):  # their links lie beyond what was read
            depth.update((job.id, 1) for job in unresolved)
            break
        left = unresolved
    return depth


def _is_held_heir(job: Job) -> bool:
    return job.state is JobState.HELD and job.predecessor_id is not None


def _held(job: Job, by_id: dict[str, Job]) -> HeldHeir:
    predecessor = by_id.get(job.predecessor_id or "")
    where = f"now {predecessor.state.value}" if predecessor is not None else "not read"
    runs = "whatever the outcome" if job.when is When.SETTLED else "if its family succeeds"
    return HeldHeir(job, f"until {job.predecessor_id} and its family settle ({where}); runs {runs}")
