"""What must hold once the dust has settled (docs/rules.md rules 3, 4, 6 and 7), checked
against the stored jobs and the workers' journal; and the figures the report gives."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import conveyor
from conveyor import JobState, When
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.core.storage import JobFilter, Storage

SETTLED = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}


async def all_jobs(storage: Storage, limit: int = 1_000_000) -> list[conveyor.Job]:
    jobs: list[conveyor.Job] = []
    cursor: str | None = None
    while len(jobs) < limit:
        page = await storage.list_jobs(JobFilter(), after=cursor, limit=500)
        jobs += page.jobs
        if page.next_cursor is None:
            return jobs
        cursor = page.next_cursor
    raise AssertionError(f"more than {limit} jobs: not what the test made")


@dataclass
class Findings:
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:  # enough to see the pattern
            self.problems.append(text)
        self.figures["problems"] = self.figures.get("problems", 0) + 1


def name_of(job: conveyor.Job) -> str:
    msg = Step()
    msg.ParseFromString(job.payload_bytes)
    return msg.name


async def check(
    storage: Storage,
    journal: dict[str, Any],
    run: Any,
    *,
    before_repair: dict[str, int] | None = None,
    failed_before_repair: frozenset[str] = frozenset(),
) -> Findings:
    """``run`` (a ``scenario.Run``) says which families were made and which enqueues
    raised (a family whose enqueue raised may or may not be stored: either way it is
    whole or absent). After a repair (rule 8), ``before_repair`` gives each job's
    handler starts up to it (a repaired job's attempts start again from 1), and
    ``failed_before_repair`` the jobs that had settled failed then (each counted by
    the per-minute counters, though it may have settled otherwise since)."""
    earlier = before_repair or {}
    found = Findings()
    jobs = await all_jobs(storage)
    by_id = {j.id: j for j in jobs}
    tags = {name_of(j).split("/", 1)[0] for j in jobs}
    for tag in run.uncertain:
        if tag not in tags:
            run.families.pop(tag)
    roots = [j.id for j in jobs if name_of(j).endswith("/root")]
    expected_jobs = sum(run.families.values())
    starts: dict[str, list[tuple[int, str]]] = journal["starts"]
    done: dict[str, list[tuple[int, str]]] = journal["done"]
    states = Counter(j.state.value for j in jobs)
    names = Counter(name_of(j) for j in jobs)
    f = found.figures
    f.update(jobs=len(jobs), expected_jobs=expected_jobs, states=dict(states))

    # Nothing lost, nothing made twice: one job per step of every family.
    if len(jobs) != expected_jobs:
        found.problem(f"{len(jobs)} jobs stored, the families have {expected_jobs}")
    for name, count in names.items():
        if count > 1:
            found.problem(f"step {name} exists {count} times")

    children: dict[str, list[conveyor.Job]] = {}
    for j in jobs:
        if j.parent_id is not None:
            children.setdefault(j.parent_id, []).append(j)

    f["families"] = len(roots)
    f["families_settled"] = sum(1 for r in roots if r in by_id and by_id[r].state in SETTLED)
    f["handler_starts"] = sum(len(v) for v in starts.values())
    f["jobs_rerun"] = sum(1 for v in starts.values() if len(v) > 1)
    f["heirs"] = f["heirs_ran"] = f["heirs_cancelled"] = 0
    f["heirs_completed_twice"] = f["heirs_never_run"] = f["heirs_run_wrongly"] = 0
    for j in jobs:
        ran = starts.get(j.id, [])
        finished = done.get(j.id, [])
        if j.state not in SETTLED:
            found.problem(f"job {j.id} ({name_of(j)}) is still {j.state.value}")
        # Each start needs a claim: the attempts counted, plus those a lost lease gave
        # back (a lost attempt does not count against max_attempts).
        if len(ran) - earlier.get(j.id, 0) > j.attempt + j.lost_count:
            found.problem(
                f"job {j.id} started {len(ran)} times in {j.attempt} attempts "
                f"and {j.lost_count} lost leases"
            )
        if j.state is JobState.SUCCEEDED and not any(o == "ok" for _, o in finished):
            found.problem(f"job {j.id} ({name_of(j)}) succeeded without a handler that did")
        if j.predecessor_id is None:
            if not finished:
                found.problem(f"job {j.id} ({name_of(j)}) never completed a handler run")
            continue
        f["heirs"] += 1
        before = by_id.get(j.predecessor_id)
        if before is None:
            found.problem(f"heir {j.id}: its predecessor {j.predecessor_id} is gone")
            continue
        holds = j.when is When.SETTLED or before.state is JobState.SUCCEEDED
        if holds:
            f["heirs_ran"] += 1
            if not ran:
                f["heirs_never_run"] += 1
                found.problem(f"heir {j.id} ({name_of(j)}) never ran though its condition held")
            if sum(1 for _, o in finished if o == "ok") > 1:
                f["heirs_completed_twice"] += 1
                if j.lost_count == 0:  # a second run is only for a lost lease
                    found.problem(f"heir {j.id} completed twice without a lost lease")
        else:
            f["heirs_cancelled"] += 1
            if ran:
                f["heirs_run_wrongly"] += 1
                found.problem(f"heir {j.id} ran though {before.state.value} predecessor")
            if j.state is not JobState.CANCELLED:
                found.problem(f"heir {j.id} is {j.state.value}, its condition did not hold")

    # Rule 3: a parent's outcome agrees with its family's.
    for parent_id, kids in children.items():
        parent = by_id.get(parent_id)
        if parent is None:
            found.problem(f"{len(kids)} jobs name a parent {parent_id} that is gone")
            continue
        counted = [k for k in kids if not (k.predecessor_id and k.state is JobState.CANCELLED)]
        bad = [k for k in counted if k.state is not JobState.SUCCEEDED and not k.optional]
        if parent.state is JobState.SUCCEEDED and bad:
            found.problem(f"parent {parent_id} succeeded with {len(bad)} children not succeeded")
        own_ok = any(o == "ok" for _, o in done.get(parent_id, []))
        if parent.state is JobState.FAILED and own_ok and not bad:
            found.problem(f"parent {parent_id} failed though its handler and children succeeded")

    # The per-minute counters add up to the final states.
    minutes = await storage.counters(minutes=120)
    counted_ok = sum(m.succeeded for m in minutes)
    counted_failed = sum(m.failed for m in minutes)
    f["counters"] = {"succeeded": counted_ok, "failed": counted_failed}
    reopened = sum(1 for i in failed_before_repair if by_id[i].state is not JobState.FAILED)
    failed_settles = states.get("failed", 0) + reopened
    if counted_ok != states.get("succeeded", 0) or counted_failed != failed_settles:
        found.problem(
            f"counters say {counted_ok} succeeded / {counted_failed} failed, the jobs "
            f"{states.get('succeeded', 0)} / {failed_settles} (with {reopened} failed before "
            "a repair re-opened them)"
        )
    f["lost_leases"] = sum(j.lost_count for j in jobs)
    return found
