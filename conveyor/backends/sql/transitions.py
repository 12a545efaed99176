"""The rulebook (``docs/rules.md``) carried out in SQL, one transaction per call.

Every function runs on a ``Tx`` whose transaction the caller (``SQLStorage``)
owns, so a transition and its whole family cascade commit together or not at
all. The names and their order match the memory (``memory/transitions.py``) and
Redis (``lua/transitions.lua``) executors.

On PostgreSQL, rows are locked ``FOR UPDATE`` before they change: a child locks
itself, then its parent (bottom-up), so siblings settling at once serialise on
their parent instead of losing an update. Bulk changes (a success releasing ten
thousand children) are single set-based statements.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, select, tuple_, update

from conveyor.core import rules
from conveyor.core.errors import InvalidState, JobNotFound, LeaseLost, PayloadDecodeError
from conveyor.core.job import Job, JobSpec, Lease
from conveyor.core.progress import stored_progress
from conveyor.core.queues import QueueLimits, Rate, next_token_in, refilled
from conveyor.core.queues import allowance as queue_allowance
from conveyor.core.states import JobState, When
from conveyor.core.storage import (
    Claimed,
    Failure,
    HandBack,
    MaintenanceReport,
    Outcome,
    Retry,
    Success,
    check_outcomes,
)

from . import tallies
from ._rows import job_of_row
from ._tx import FAILED, REPAIRED, RETRIED, SUCCEEDED, Rec, Tx, ids_of, spec_row, text_of
from .schema import SETTLED

log = logging.getLogger("conveyor.sql")


async def _insert(tx: Tx, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows; ids that exist already are skipped, so a call sent again is harmless."""
    if not rows:
        return
    jobs = tx.t.jobs
    existing = set(
        (await tx.conn.execute(select(jobs.c.id).where(jobs.c.id.in_([r["id"] for r in rows]))))
        .scalars()
        .all()
    )
    fresh = [r for r in rows if r["id"] not in existing]
    if fresh:
        await tx.conn.execute(insert(jobs), fresh)


async def _lock(tx: Tx, ids: Sequence[str | None]) -> dict[str, Rec]:
    """Read (and on PostgreSQL lock, in id order to avoid deadlocks) these jobs."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    jobs = tx.t.jobs
    stmt = select(jobs).where(jobs.c.id.in_(wanted)).order_by(jobs.c.id)
    if tx.postgres:
        stmt = stmt.with_for_update()
    return {row.id: Rec(row._mapping) for row in (await tx.conn.execute(stmt)).all()}


async def _get(tx: Tx, job_id: str) -> Rec:
    row = (await _lock(tx, [job_id])).get(job_id)
    if row is None:
        raise JobNotFound(job_id)
    return row


async def _snapshot(tx: Tx, job_id: str) -> Job:
    jobs = tx.t.jobs
    return job_of_row((await tx.conn.execute(select(jobs).where(jobs.c.id == job_id))).one())


async def _set_state(tx: Tx, row: Rec, state: str, **values: Any) -> None:
    jobs = tx.t.jobs
    await tx.conn.execute(update(jobs).where(jobs.c.id == row.id).values(state=state, **values))
    tx.event(row.id, state, row.type, row.queue)


async def release(tx: Tx, where: Any) -> list[str]:
    """Rule 1 and 10: held (or returned) jobs become queued, or scheduled when due later.

    Their ready time is now, so they run behind the jobs already queued. Returns their ids.
    """
    jobs = tx.t.jobs
    stmt = (
        update(jobs)
        .where(where)
        .values(
            state=case((jobs.c.run_at > tx.now, "scheduled"), else_="queued"),
            ready_at=tx.now,
            worker_id=None,
            lease_expires=None,
        )
        .returning(jobs.c.id, jobs.c.state, jobs.c.type, jobs.c.queue)
    )
    released = (await tx.conn.execute(stmt)).all()
    for row in released:
        tx.event(row.id, row.state, row.type, row.queue)
    return [row.id for row in released]


def holds(row: Rec | None, lease: Lease) -> bool:
    """Rule 6: whether ``row`` runs under exactly this lease."""
    return row is not None and row.state == "running" and row.lease_token == lease.token


def _leases_match(tx: Tx, leases: Sequence[Lease]) -> Any:
    jobs = tx.t.jobs
    return and_(
        tuple_(jobs.c.id, jobs.c.lease_token).in_(
            [(lease.job_id, lease.token) for lease in leases]
        ),
        jobs.c.state == "running",
    )


async def discard_declarations(tx: Tx, declarers: Sequence[str]) -> None:
    """Rule 2: declarations of attempts that did not succeed never run.

    Only for running declarers: a waiting job's held rows are its heirs.
    """
    if declarers:
        jobs = tx.t.jobs
        await tx.conn.execute(
            delete(jobs).where(jobs.c.declared_by.in_(declarers), jobs.c.state == "held")
        )


async def take_key(tx: Tx, queue: str, key: str, job_id: str, batch: set[str]) -> str:
    """Rule 15: the id of the job holding ``key`` in ``queue``; ``job_id`` if it takes it.
    ``batch`` holds the ids that took keys earlier in this batch (not inserted yet)."""
    k, jobs = tx.t.job_keys, tx.t.jobs
    new = {"queue": queue, "key": key, "job_id": job_id, "expires_at": None}
    stmt = tallies.upsert(tx.postgres)(k).values(new).on_conflict_do_nothing()
    if (await tx.conn.execute(stmt)).rowcount == 1:
        return job_id
    slot = and_(k.c.queue == queue, k.c.key == key)
    held = select(k.c.job_id, k.c.expires_at).where(slot)
    if tx.postgres:  # racing enqueues of one key take its row in turn
        held = held.with_for_update()
    row = (await tx.conn.execute(held)).one()
    alive = row.expires_at is None or row.expires_at > tx.now
    if alive and (
        row.job_id in batch
        or await tx.conn.scalar(select(jobs.c.id).where(jobs.c.id == row.job_id))
    ):
        return str(row.job_id)
    await tx.conn.execute(update(k).where(slot).values(job_id=job_id, expires_at=None))
    return job_id


async def free_key(tx: Tx, row: Rec) -> None:
    """Rule 15: a holder that settles keeps its key ``key_ttl`` longer, then frees it."""
    if getattr(row, "unique_key", None) is None:
        return
    k = tx.t.job_keys
    mine = and_(k.c.queue == row.queue, k.c.key == row.unique_key, k.c.job_id == row.id)
    if row.key_ttl:
        await tx.conn.execute(update(k).where(mine).values(expires_at=tx.now + row.key_ttl))
    else:
        await tx.conn.execute(delete(k).where(mine))


async def enqueue(tx: Tx, specs: Sequence[JobSpec]) -> list[str]:
    """Rules 9 and 15: create top-level jobs; ids that exist already are skipped, and so
    are jobs whose key is held. Returns the id standing for each spec."""
    rules.check_new_jobs(specs)
    jobs = tx.t.jobs
    ids = [spec.id for spec in specs]
    keyed = [i for i, spec in enumerate(specs) if spec.key is not None]
    if keyed:
        present = await tx.conn.execute(
            select(jobs.c.id).where(jobs.c.id.in_([specs[i].id for i in keyed]))
        )
        existing = set(present.scalars().all())
        taken: set[str] = set()
        for i in keyed:
            spec = specs[i]
            if spec.id not in existing:
                assert spec.key is not None
                ids[i] = await take_key(tx, spec.queue, spec.key, spec.id, taken)
                taken.add(ids[i])
    fresh = [spec for spec, held_by in zip(specs, ids, strict=True) if held_by == spec.id]
    await _insert(tx, [spec_row(spec, "held", tx.now) for spec in fresh])
    await release(tx, and_(jobs.c.id.in_([spec.id for spec in fresh]), jobs.c.state == "held"))
    return ids


@dataclass
class Allowance:
    """Rule 14 for one claim: what it may take from each controlled queue (a queue
    not named has no limit), the rates whose tokens it spends, and when to look again
    at a queue whose limits hold back ready jobs."""

    allowed: dict[str, int] = field(default_factory=dict)
    rates: dict[str, tuple[Rate, float, float]] = field(default_factory=dict)
    """By queue: its rate, its tokens now, and the bucket's clock (never set back)."""
    look_again: float | None = None


async def allowance(tx: Tx, queues: Sequence[str]) -> Allowance:
    """Rule 14: read (and, for limited queues, lock) the claimed queues' controls."""
    q, jobs = tx.t.queues, tx.t.jobs
    rows = (await tx.conn.execute(select(q).where(q.c.name.in_(list(queues))))).all()
    limited = [r.name for r in rows if r.max_running is not None or r.rate is not None]
    if limited and tx.postgres:
        # Claims racing on a limited queue take its row in turn; each then counts the
        # running jobs the previous one committed (a fresh snapshot per statement).
        locked = select(q).where(q.c.name.in_(limited)).order_by(q.c.name).with_for_update()
        rows = [r for r in rows if r.name not in limited]
        rows += (await tx.conn.execute(locked)).all()
        # The claim happens now that it holds the queues, not when the transaction
        # began: a bucket's clock must not go back behind the claim before it.
        tx.now = max(tx.now, time.time())
    capped = [r.name for r in rows if r.max_running is not None and not r.paused]
    running: dict[str, int] = {}
    if capped:
        counted = (
            select(jobs.c.queue, func.count())
            .where(jobs.c.state == "running", jobs.c.queue.in_(capped))
            .group_by(jobs.c.queue)
        )
        running = {row[0]: row[1] for row in (await tx.conn.execute(counted)).all()}
    found = Allowance()
    for row in rows:
        rate = Rate(row.rate, row.per) if row.rate is not None else None
        tokens = None
        if rate is not None:
            tokens = refilled(row.tokens, row.refilled_at, rate, tx.now)
            found.rates[row.name] = (rate, tokens, max(tx.now, row.refilled_at))
        n = queue_allowance(row.paused, row.max_running, running.get(row.name, 0), tokens)
        if n is None:
            continue
        found.allowed[row.name] = n
        if n == 0 and not row.paused and await _has_ready(tx, row.name):
            wait = rules.LIMIT_POLL
            if rate is not None and tokens is not None and tokens < 1:
                wait = next_token_in(tokens, rate)
            found.look_again = min(found.look_again or math.inf, tx.now + wait)
    return found


async def _has_ready(tx: Tx, queue: str) -> bool:
    jobs = tx.t.jobs
    stmt = select(jobs.c.id).where(jobs.c.state == "queued", jobs.c.queue == queue).limit(1)
    return (await tx.conn.execute(stmt)).first() is not None


def _pick(tx: Tx, queues: Sequence[str], limit: int) -> Any:
    """The ids of the first ``limit`` ready jobs of ``queues`` in rule 10's order."""
    jobs = tx.t.jobs
    pick = (
        select(jobs.c.id, jobs.c.priority, jobs.c.ready_at)
        .where(jobs.c.state == "queued", jobs.c.queue.in_(list(queues)))
        .order_by(jobs.c.priority.desc(), jobs.c.ready_at, jobs.c.id)
        .limit(limit)
    )
    if tx.postgres:
        # Concurrent workers skip each other's rows instead of waiting on them.
        pick = pick.with_for_update(skip_locked=True)
    return pick


async def claim(
    tx: Tx, worker_id: str, queues: Sequence[str], limit: int, lease: float, *, promote: bool
) -> tuple[list[Claimed], float | None]:
    """Rules 6, 10 and 14: up to ``limit`` queued jobs, highest priority first, then
    ready order, within each queue's limits; and when to look again at a held-back queue."""
    jobs = tx.t.jobs
    if promote:
        await promote_due(tx, rules.MAINTENANCE_BATCH)
    found = await allowance(tx, queues)
    free = [q for q in queues if q not in found.allowed]
    if len(free) == len(queues):  # no controls: one statement picks and claims
        chosen: Any = _pick(tx, queues, limit).with_only_columns(jobs.c.id).scalar_subquery()
    else:
        # Candidates from the free queues together and from each limited queue up to
        # its allowance, merged in rule 10's order: the first ``limit`` are claimed.
        candidates: list[Any] = []
        if free:
            candidates += (await tx.conn.execute(_pick(tx, free, limit))).all()
        for queue, n in found.allowed.items():
            if n > 0:
                candidates += (await tx.conn.execute(_pick(tx, [queue], min(n, limit)))).all()
        candidates.sort(key=lambda r: (-r.priority, r.ready_at or 0.0, r.id))
        chosen = [r.id for r in candidates[:limit]]
        if not chosen:
            return [], found.look_again
    stmt = (
        update(jobs)
        .where(jobs.c.id.in_(chosen))
        .values(
            state="running",
            attempt=jobs.c.attempt + 1,
            lease_token=jobs.c.lease_token + 1,
            lease_expires=tx.now + lease,
            worker_id=worker_id,
            started_at=tx.now,
        )
        .returning(*jobs.c)
    )
    rows = (await tx.conn.execute(stmt)).all()
    rows = sorted(rows, key=lambda r: (-r.priority, r.ready_at or 0.0, r.id))
    claimed = []
    for row in rows:
        tx.event(row.id, "running", row.type, row.queue)
        try:
            job = job_of_row(row)
        except PayloadDecodeError as exc:
            # A row other software garbled fails here, in this transaction:
            # raising would undo the claim of every job, again on every claim.
            log.error("%s", exc)
            error = f"stored job is not a valid Conveyor job: {exc.__cause__!r}"
            await fail(tx, Rec(row._mapping), error)
            continue
        claimed.append(Claimed(job, Lease(row.id, row.lease_token)))
    await _spend(tx, found, rows)
    return claimed, found.look_again


async def _spend(tx: Tx, found: Allowance, rows: Sequence[Any]) -> None:
    """Rule 14: take a token for each job claimed from a rate-limited queue."""
    q = tx.t.queues
    for queue, (_, tokens, clock) in found.rates.items():
        taken = sum(row.queue == queue for row in rows)
        if taken:
            await tx.conn.execute(
                update(q).where(q.c.name == queue).values(tokens=tokens - taken, refilled_at=clock)
            )


async def stage(tx: Tx, lease: Lease, specs: Sequence[JobSpec]) -> None:
    """Rule 1: store a running attempt's declarations, held."""
    row = (await _lock(tx, [lease.job_id])).get(lease.job_id)
    if not holds(row, lease):
        raise LeaseLost(lease.job_id)
    rules.check_declarations(specs, lease.job_id)
    await _insert(tx, [spec_row(s, "held", tx.now, lease.job_id) for s in specs])


async def renew(tx: Tx, leases: Sequence[Lease], lease: float) -> set[str]:
    """Rule 6: extend the leases still held; returns the ids still held."""
    jobs = tx.t.jobs
    match = _leases_match(tx, leases)
    if not tx.postgres:
        stmt = update(jobs).where(match).values(lease_expires=tx.now + lease)
        return set((await tx.conn.execute(stmt.returning(jobs.c.id))).scalars().all())
    # A row another transaction has locked (this worker's own record of a finished
    # job, most often) is skipped, not waited for: a heartbeat stuck behind a slow
    # record would let every other lease of this worker lapse. The next beat renews
    # it if it is still running. Lost are only the leases that no longer match.
    mine = select(jobs.c.id).where(match).with_for_update(skip_locked=True)
    stmt = update(jobs).where(jobs.c.id.in_(mine.scalar_subquery()))
    await tx.conn.execute(stmt.values(lease_expires=tx.now + lease))
    return set((await tx.conn.execute(select(jobs.c.id).where(match))).scalars().all())


async def progress(tx: Tx, lease: Lease, fraction: float, note: str | None) -> None:
    """Rule 6: store a running attempt's progress under its lease."""
    row = (await _lock(tx, [lease.job_id])).get(lease.job_id)
    if row is None or not holds(row, lease):
        raise LeaseLost(lease.job_id)
    jobs = tx.t.jobs
    text = stored_progress(fraction, note, row.attempt, tx.now)
    await tx.conn.execute(update(jobs).where(jobs.c.id == row.id).values(progress=text))


async def _takes_keys(tx: Tx, where: Any) -> set[str]:
    """Rule 15: the held declarations ``where`` selects, about to be released, take their
    keys; those whose key another job holds settle cancelled as optional duplicates
    instead. Returns the ids of those."""
    jobs = tx.t.jobs
    keyed = (
        await tx.conn.execute(
            select(jobs.c.id, jobs.c.queue, jobs.c.type, jobs.c.unique_key)
            .where(where, jobs.c.unique_key.is_not(None))
            .order_by(jobs.c.id)  # in the order they were declared (ids are time-ordered)
        )
    ).all()
    duplicates: set[str] = set()
    for row in keyed:
        holder = await take_key(tx, row.queue, row.unique_key, row.id, set())
        if holder == row.id:
            continue
        await tx.conn.execute(
            update(jobs)
            .where(jobs.c.id == row.id)
            .values(
                state="cancelled",
                finished_at=tx.now,
                optional=True,
                reason=rules.duplicate_reason(row.unique_key, holder),
            )
        )
        tx.event(row.id, "cancelled", row.type, row.queue)
        duplicates.add(row.id)
    return duplicates


async def succeed(tx: Tx, row: Rec, declarations: Sequence[JobSpec]) -> None:
    """Rule 1: release the attempt's children with its success; heirs stay held."""
    jobs = tx.t.jobs
    await _insert(tx, [spec_row(s, "held", tx.now, row.id) for s in declarations])
    children = and_(
        jobs.c.declared_by == row.id, jobs.c.state == "held", jobs.c.parent_id == row.id
    )
    await _takes_keys(tx, children)
    released = await release(tx, children)
    if released:
        await _set_state(
            tx, row, "waiting", open_children=len(released), worker_id=None, lease_expires=None
        )
    else:
        await settle(tx, row, "succeeded")


async def _store_results(tx: Tx, successes: Sequence[Success]) -> None:
    """Rule 1: keep what the handlers returned, in one statement for the batch."""
    results = [
        {"b_id": o.lease.job_id, "b_result": o.result, "b_type": o.result_type}
        for o in successes
        if o.result is not None
    ]
    if results:
        jobs = tx.t.jobs
        stmt = (
            update(jobs)
            .where(jobs.c.id == bindparam("b_id"))
            .values(result=bindparam("b_result"), result_type=bindparam("b_type"))
        )
        await tx.conn.execute(stmt, results)


async def _succeed_leaves(tx: Tx, rows: Sequence[Rec]) -> list[Rec]:
    """Rule 1 in bulk for successes that declared nothing: they settle at once.

    Returns the rows that turned out to have staged declarations after all;
    the caller takes those through ``succeed`` one by one.
    """
    jobs = tx.t.jobs
    if not rows:
        return []
    ids = [r.id for r in rows]
    declaring = set(
        (
            await tx.conn.execute(
                select(jobs.c.declared_by)
                .where(jobs.c.declared_by.in_(ids), jobs.c.state == "held")
                .distinct()
            )
        )
        .scalars()
        .all()
    )
    leaves = [r for r in rows if r.id not in declaring]
    if leaves:
        await tx.conn.execute(
            update(jobs)
            .where(jobs.c.id.in_([r.id for r in leaves]))
            .values(state="succeeded", finished_at=tx.now, worker_id=None, lease_expires=None)
        )
    by_parent: dict[str, list[Rec]] = defaultdict(list)
    for leaf in leaves:
        tx.event(leaf.id, "succeeded", leaf.type, leaf.queue)
        tx.count(leaf, SUCCEEDED)
        await free_key(tx, leaf)  # as settle does (rule 15)
        if leaf.parent_id is not None:
            by_parent[leaf.parent_id].append(leaf)
    # Each parent once per batch: a fan-out of thousands costs one update per batch.
    # Lock them all first, in id order (no deadlocks), but read each again just
    # before use: settling one parent may walk up into another in this list.
    await _lock(tx, list(by_parent))
    for parent_id, children in by_parent.items():
        parent = (await _lock(tx, [parent_id])).get(parent_id)
        if parent is None or parent.state in SETTLED:
            continue
        open_children = parent.open_children - len(children)
        merged = text_of(
            rules.merge_failed_ids(
                ids_of(parent.failed_ids), [i for c in children for i in ids_of(c.failed_ids)]
            )
        )
        if parent.state == "waiting" and open_children <= 0:
            state = rules.settles_as(parent.failed_child_id).value
            changed = parent.replace(open_children=0, failed_ids=merged)
            await settle(tx, changed, state, open_children=0, failed_ids=merged)
        else:
            await tx.conn.execute(
                update(jobs)
                .where(jobs.c.id == parent_id)
                .values(open_children=open_children, failed_ids=merged)
            )
    return [r for r in rows if r.id in declaring]


async def retry_later(tx: Tx, row: Rec, error: str, retry_at: float) -> None:
    """Rule 2: the attempt failed and another is due at ``retry_at``."""
    jobs = tx.t.jobs
    await discard_declarations(tx, [row.id])
    await tx.conn.execute(
        update(jobs).where(jobs.c.id == row.id).values(last_error=error, run_at=retry_at)
    )
    tx.count(row, RETRIED)
    await release(tx, jobs.c.id == row.id)


async def fail_held(tx: Tx, lease: Lease, error: str) -> None:
    """Rule 3 for a claimed job that cannot run (its row is not a valid job): failed
    for good, if its attempt still holds ``lease``."""
    row = (await _lock(tx, [lease.job_id])).get(lease.job_id)
    if row is not None and holds(row, lease):
        await fail(tx, row, error)


async def fail(tx: Tx, row: Rec, error: str) -> None:
    """Rule 3: the handler failed for good."""
    await discard_declarations(tx, [row.id])
    failed = text_of(rules.merge_failed_ids(ids_of(row.failed_ids), [row.id]))
    await settle(tx, row.replace(failed_ids=failed), "failed", last_error=error, failed_ids=failed)


async def hand_back(tx: Tx, row: Rec, run_at: float | None = None, **values: Any) -> None:
    """Rule 6: back unrun, the attempt not counted: queued, or scheduled at ``run_at``."""
    jobs = tx.t.jobs
    await discard_declarations(tx, [row.id])
    await tx.conn.execute(
        update(jobs)
        .where(jobs.c.id == row.id)
        .values(
            attempt=case((jobs.c.attempt > 0, jobs.c.attempt - 1), else_=0),
            run_at=run_at,
            **values,
        )
    )
    await release(tx, jobs.c.id == row.id)


async def lose_lease(tx: Tx, row: Rec, max_lost: int) -> bool:
    """Rule 6: the lease expired; returns whether the job failed for good ("worker lost")."""
    count = row.lost_count + 1
    if rules.lease_loss_fails(count, max_lost):
        jobs = tx.t.jobs
        await tx.conn.execute(update(jobs).where(jobs.c.id == row.id).values(lost_count=count))
        await fail(tx, row.replace(lost_count=count), rules.worker_lost(count))
        return True
    await hand_back(tx, row, lost_count=count)
    return False


async def record(tx: Tx, outcomes: Sequence[Outcome]) -> list[bool]:
    """Rule 6: apply each outcome whose lease is still held; refuse the others."""
    check_outcomes(outcomes)
    rows = await _lock(tx, [o.lease.job_id for o in outcomes])
    accepted = [holds(rows.get(o.lease.job_id), o.lease) for o in outcomes]
    held = [(o, rows[o.lease.job_id]) for o, ok in zip(outcomes, accepted, strict=True) if ok]
    # Outcomes never touch another running job (cascades reach only waiting
    # parents and held heirs), so the rows read above stay current.
    await _store_results(tx, [o for o, _ in held if isinstance(o, Success)])
    leaves = [r for o, r in held if isinstance(o, Success) and not o.declarations]
    declaring = {r.id for r in await _succeed_leaves(tx, leaves)}
    for outcome, row in held:
        match outcome:
            case Success(declarations=declarations):
                if declarations or row.id in declaring:
                    await succeed(tx, row, declarations)
            case Retry(error=error, retry_at=retry_at):
                await retry_later(tx, row, error, retry_at)
            case Failure(error=error):
                await fail(tx, row, error)
            case HandBack(run_at=run_at):
                await hand_back(tx, row, run_at)
    return accepted


async def settle(tx: Tx, row: Rec, state: str, **values: Any) -> None:
    """Rules 3-5: settle ``row``, release or cancel its heirs, and walk up its parents."""
    current: Rec | None = row
    while current is not None:
        await _set_state(
            tx, current, state, finished_at=tx.now, worker_id=None, lease_expires=None, **values
        )
        if state == "succeeded":
            tx.count(current, SUCCEEDED)
        elif state == "failed":
            tx.count(current, FAILED)
        released = await release_heirs(tx, current, state)
        await free_key(tx, current)
        if current.parent_id is None:
            return
        parent = (await _lock(tx, [current.parent_id])).get(current.parent_id)
        if parent is None:
            return
        settles = await close_child(tx, parent, current, state, released)
        if settles is None:
            return
        current, state, values = settles


async def release_heirs(tx: Tx, row: Rec, state: str) -> int:
    """Rule 4: ``row`` settled as ``state``; each held heir runs or is cancelled.

    Returns how many were released: each takes ``row``'s parent, which
    ``close_child`` adds to that parent's open count.
    """
    jobs = tx.t.jobs
    heirs = (
        await tx.conn.execute(
            select(jobs.c.id, jobs.c.heir_when)
            .where(jobs.c.predecessor_id == row.id, jobs.c.state == "held")
            .order_by(jobs.c.id)  # in the order they were declared, as keys are taken
        )
    ).all()
    outcome = JobState(state)
    go = [h.id for h in heirs if rules.heir_runs(When(h.heir_when or When.SUCCEEDED), outcome)]
    stop = [h.id for h in heirs if h.id not in go]
    told = {"predecessor_state": state, "predecessor_failed_ids": row.failed_ids}
    if go:
        duplicates = await _takes_keys(tx, jobs.c.id.in_(go))
        if duplicates:
            await tx.conn.execute(update(jobs).where(jobs.c.id.in_(duplicates)).values(**told))
            go = [h for h in go if h not in duplicates]
    if go:
        await tx.conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(go))
            .values(parent_id=row.parent_id, optional=or_(jobs.c.optional, row.optional), **told)
        )
        await release(tx, jobs.c.id.in_(go))
    if stop:
        cancelled = (
            await tx.conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(stop))
                .values(
                    state="cancelled",
                    finished_at=tx.now,
                    reason=rules.predecessor_reason(row.id, state),
                    **told,
                )
                .returning(jobs.c.id, jobs.c.type, jobs.c.queue)
            )
        ).all()
        for c in cancelled:
            tx.event(c.id, "cancelled", c.type, c.queue)
    return len(go)


async def close_child(
    tx: Tx, parent: Rec, child: Rec, state: str, heirs_released: int
) -> tuple[Rec, str, dict[str, Any]] | None:
    """Rule 5: ``child`` settled as ``state`` (and released ``heirs_released`` heirs
    into ``parent``); returns the parent and how it settles now, if it does."""
    if parent.state in SETTLED:
        return None
    open_children = parent.open_children + heirs_released - 1
    merged = text_of(rules.merge_failed_ids(ids_of(parent.failed_ids), ids_of(child.failed_ids)))
    changes: dict[str, Any] = {"open_children": open_children, "failed_ids": merged}
    failing = parent.failed_child_id
    if rules.fails_parent(JobState(state), child.optional) and failing is None:
        failing = child.id
        changes.update(failed_child_id=child.id, reason=rules.child_reason(child.id, state))
    if parent.state != "waiting" or open_children > 0:
        jobs = tx.t.jobs
        await tx.conn.execute(update(jobs).where(jobs.c.id == parent.id).values(**changes))
        return None
    return parent.replace(**changes), rules.settles_as(failing).value, changes


def interrupt(tx: Tx, job_id: str, token: int) -> None:
    """Rule 12: tell the worker of a running attempt that was cancelled, on commit."""
    tx.interrupts.append(Lease(job_id, token))


async def cancel(tx: Tx, job_id: str, reason: str) -> Job:
    """Rule 3 and 12: cancel an open job and every open member below it."""
    row = await _get(tx, job_id)
    if row.state in SETTLED:
        raise InvalidState(job_id, row.state, "cancel", "it has already settled")
    if row.state == "held":
        declarer = (await _lock(tx, [row.declared_by])).get(row.declared_by or "")
        if row.predecessor_id is None or (declarer and declarer.state == "running"):
            raise InvalidState(
                job_id,
                row.state,
                "cancel",
                "it is a declaration of an attempt still running; cancel the job that declared it",
            )
        # A held heir counts in no parent yet: it settles on its own.
        await _set_state(tx, row, "cancelled", finished_at=tx.now, reason=reason)
    else:
        await _cancel_below(tx, row)
        if row.state == "running":
            interrupt(tx, row.id, row.lease_token)
            await discard_declarations(tx, [row.id])
        await settle(tx, row, "cancelled", reason=reason)
    return await _snapshot(tx, job_id)


async def _cancel_below(tx: Tx, root: Rec) -> None:
    """Every open member below ``root``: its children and, below them, their heirs.

    ``root``'s own heirs are not below it: its settling settles them.
    """
    jobs = tx.t.jobs
    frontier = [root.id]
    first = True
    while frontier:
        below: Any = jobs.c.parent_id.in_(frontier)
        if not first:
            below = or_(below, jobs.c.predecessor_id.in_(frontier))
        first = False
        rows = (
            await tx.conn.execute(
                select(jobs.c.id, jobs.c.state, jobs.c.lease_token).where(
                    below, jobs.c.state.not_in(SETTLED)
                )
            )
        ).all()
        running = [r for r in rows if r.state == "running"]
        for r in running:
            interrupt(tx, r.id, r.lease_token)
        await discard_declarations(tx, [r.id for r in running])
        ids = [r.id for r in rows]
        if ids:
            cancelled = (
                await tx.conn.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(ids), jobs.c.state.not_in(SETTLED))
                    .values(
                        state="cancelled",
                        finished_at=tx.now,
                        reason=rules.ancestor_cancelled(root.id),
                        worker_id=None,
                        lease_expires=None,
                    )
                    .returning(jobs.c.id, jobs.c.type, jobs.c.queue)
                )
            ).all()
            for c in cancelled:
                tx.event(c.id, "cancelled", c.type, c.queue)
        frontier = ids


async def repair(tx: Tx, ids: Sequence[str], *, strict: bool) -> list[Job]:
    """Rule 8: queue these failed members again and re-count their families upward.

    With ``strict``, the first member rule 8 refuses raises and nothing changes;
    otherwise such members are left out. Members are locked, then their
    ancestors bottom-up, in the order every settle locks them.
    """
    jobs = tx.t.jobs
    rows = await _lock(tx, ids)
    chosen: list[Rec] = []
    for job_id in dict.fromkeys(ids):
        row = rows.get(job_id)
        if row is None:
            raise JobNotFound(job_id)
        why = await _unrepairable(tx, row)
        if why is None:
            chosen.append(row)
        elif strict:
            raise InvalidState(job_id, row.state, "retry", why)
    if not chosen:
        return []
    chosen_ids = [row.id for row in chosen]
    await tx.conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(chosen_ids))
        .values(
            attempt=0,
            lost_count=0,
            failed_ids=None,
            reason=None,
            failed_child_id=None,
            finished_at=None,
            run_at=None,
            result=None,
            result_type=None,
        )
    )
    for row in chosen:
        tx.unsettle(row.queue, row.state)
    await release(tx, jobs.c.id.in_(chosen_ids))
    frontier = {row.parent_id for row in chosen if row.parent_id}
    while frontier:  # children before parents: a parent may be re-counted twice, alike
        reopened = [p for p in (await _lock(tx, list(frontier))).values() if await _recount(tx, p)]
        frontier = {p.parent_id for p in reopened if p.parent_id}
    found = (await tx.conn.execute(select(jobs).where(jobs.c.id.in_(chosen_ids)))).all()
    by_id = {r.id: job_of_row(r) for r in found}
    return [by_id[i] for i in chosen_ids]


async def _unrepairable(tx: Tx, row: Rec) -> str | None:
    """Rule 8: why ``row`` cannot be repaired, or ``None``."""
    jobs = tx.t.jobs
    if row.state not in ("failed", "cancelled"):
        return rules.NOT_FAILED
    kid = await tx.conn.execute(select(jobs.c.id).where(jobs.c.parent_id == row.id).limit(1))
    if kid.first() is not None:
        return rules.failed_by_family(row.state)
    when = When(row.heir_when) if row.heir_when else None
    told = JobState(row.predecessor_state) if row.predecessor_state else None
    if row.predecessor_id and not rules.released_heir(when, told):
        return rules.NEVER_RELEASED
    parent_id = row.parent_id
    while parent_id:
        parent = (await _lock(tx, [parent_id])).get(parent_id)
        if parent is None:
            return rules.family_pruned(parent_id)
        if parent.state == "waiting":
            return None
        if parent.state != "failed":
            return rules.ancestor_settled(parent_id, parent.state)
        parent_id = parent.parent_id
    return None


async def _recount(tx: Tx, parent: Rec) -> bool:
    """Rule 8: re-count ``parent`` from its children; True if it went back to waiting."""
    jobs = tx.t.jobs
    kids = (
        await tx.conn.execute(
            select(jobs.c.id, jobs.c.state, jobs.c.optional, jobs.c.failed_ids)
            .where(jobs.c.parent_id == parent.id)
            .order_by(jobs.c.id)
        )
    ).all()
    settled = [k for k in kids if k.state in SETTLED]
    failing = [k for k in settled if rules.fails_parent(JobState(k.state), k.optional)]
    failed_ids: list[str] = []
    for kid in settled:
        failed_ids = rules.merge_failed_ids(failed_ids, ids_of(kid.failed_ids))
    first = failing[0] if failing else None
    open_children = len(kids) - len(settled)
    changes: dict[str, Any] = {
        "failed_ids": text_of(failed_ids),
        "failed_child_id": first.id if first else None,
        "reason": rules.child_reason(first.id, first.state) if first else None,
    }
    reopen = parent.state == "failed" and rules.reopens(open_children, len(failing))
    if parent.state == "waiting" or reopen:  # one that stays failed keeps its count: none open
        changes["open_children"] = open_children
    if reopen:
        changes.update(state="waiting", finished_at=None)
        tx.unsettle(parent.queue, parent.state)
        tx.event(parent.id, "waiting", parent.type, parent.queue)
    await tx.conn.execute(update(jobs).where(jobs.c.id == parent.id).values(**changes))
    if reopen:
        await rearm_heirs(tx, parent)
    return reopen


async def rearm_heirs(tx: Tx, row: Rec) -> None:
    """Rule 8: ``row`` is open again; the heirs its failure cancelled are held again."""
    jobs = tx.t.jobs
    rearmed = (
        await tx.conn.execute(
            update(jobs)
            .where(
                jobs.c.predecessor_id == row.id,
                jobs.c.state == "cancelled",
                # rules.cancelled_by_condition: only When.SUCCEEDED heirs fail their condition
                jobs.c.heir_when == When.SUCCEEDED.value,
                jobs.c.predecessor_state.in_(["failed", "cancelled"]),
            )
            .values(
                state="held",
                finished_at=None,
                reason=None,
                predecessor_state=None,
                predecessor_failed_ids=None,
            )
            .returning(jobs.c.id, jobs.c.type, jobs.c.queue)
        )
    ).all()
    for heir in rearmed:
        tx.unsettle(heir.queue, "cancelled")
        tx.event(heir.id, "held", heir.type, heir.queue)


async def retry(tx: Tx, job_id: str) -> Job:
    """Rule 8: repair one member (refused with ``InvalidState`` when rule 8 says no)."""
    [job] = await repair(tx, [job_id], strict=True)
    return job


async def retry_failed(tx: Tx, root_id: str) -> list[Job]:
    """Rule 8: repair every member of the root's family, and of its heirs' families,
    whose own handler failed."""
    jobs = tx.t.jobs
    await _get(tx, root_id)
    # The family below, and the heirs' families: UNION (not ALL) visits each job once.
    family = select(jobs.c.id).where(jobs.c.id == root_id).cte("family", recursive=True)
    family = family.union(
        select(jobs.c.id).where(
            or_(jobs.c.parent_id == family.c.id, jobs.c.predecessor_id == family.c.id)
        )
    )
    has_kids = select(jobs.c.parent_id).where(jobs.c.parent_id.is_not(None))
    failed = (
        (
            await tx.conn.execute(
                select(jobs.c.id)
                .where(
                    jobs.c.id.in_(select(family.c.id)),
                    jobs.c.state == "failed",
                    jobs.c.id.not_in(has_kids.where(jobs.c.parent_id.in_(select(family.c.id)))),
                )
                .order_by(jobs.c.id)
            )
        )
        .scalars()
        .all()
    )
    return await repair(tx, list(failed), strict=False)


async def discard(tx: Tx, job_id: str) -> Job:
    """Rule 12: delete a settled job and its family below it."""
    jobs = tx.t.jobs
    row = await _get(tx, job_id)
    if row.state not in SETTLED:
        raise InvalidState(job_id, row.state, "discard", "it has not settled")
    job = await _snapshot(tx, job_id)
    # The family below: a settled job's children, theirs, and so on (heirs
    # released into it are children too); all settled before it did.
    below = select(jobs.c.id).where(jobs.c.id == job_id).cte("below", recursive=True)
    below = below.union_all(select(jobs.c.id).where(jobs.c.parent_id == below.c.id))
    gone = await tx.conn.execute(
        delete(jobs).where(jobs.c.id.in_(select(below.c.id))).returning(jobs.c.queue, jobs.c.state)
    )
    tallies.unsettle_deleted(tx, gone.all())
    return job


async def pause_queue(tx: Tx, queue: str, paused: bool) -> None:
    """Rule 14: a paused queue is not claimed from; resuming it wakes workers."""
    q = tx.t.queues
    stmt = tallies.upsert(tx.postgres)(q).values(name=queue, paused=paused)
    await tx.conn.execute(
        stmt.on_conflict_do_update(index_elements=["name"], set_={"paused": paused})
    )
    await _forget_uncontrolled(tx, queue)
    if not paused:
        tx.wakes.add(queue)


async def limit_queue(tx: Tx, queue: str, limits: QueueLimits) -> None:
    """Rule 14: replace a queue's limits; a new rate starts with a full bucket."""
    q = tx.t.queues
    rate = limits.rate
    old = (await tx.conn.execute(select(q).where(q.c.name == queue).with_for_update())).first()
    values: dict[str, Any] = {
        "max_running": limits.max_running,
        "rate": rate.limit if rate else None,
        "per": rate.per if rate else None,
    }
    if rate is None:
        values.update(tokens=None, refilled_at=None)
    elif old is None or (old.rate, old.per) != (rate.limit, rate.per):
        values.update(tokens=float(rate.limit), refilled_at=tx.now)
    stmt = tallies.upsert(tx.postgres)(q).values(name=queue, **values)
    await tx.conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=values))
    await _forget_uncontrolled(tx, queue)
    tx.wakes.add(queue)


async def _forget_uncontrolled(tx: Tx, queue: str) -> None:
    """Keep a queue's row while it is paused or limited, else delete it."""
    q = tx.t.queues
    await tx.conn.execute(
        delete(q).where(
            q.c.name == queue,
            q.c.paused.is_(False),
            q.c.max_running.is_(None),
            q.c.rate.is_(None),
        )
    )


async def promote_due(tx: Tx, limit: int) -> int:
    """Rule 7 and 10: scheduled jobs whose time has come join the ready order."""
    jobs = tx.t.jobs
    due = (
        select(jobs.c.id)
        .where(jobs.c.state == "scheduled", jobs.c.run_at <= tx.now)
        .order_by(jobs.c.run_at)
        .limit(limit)
    )
    if tx.postgres:
        due = due.with_for_update(skip_locked=True)
    return len(await release(tx, jobs.c.id.in_(due.scalar_subquery())))


async def prune(tx: Tx, before: float, failed_before: float, limit: int) -> int:
    """Rule 12: delete up to ``limit`` jobs settled at or before ``before``, or, for
    failed jobs, at or before ``failed_before``."""
    jobs = tx.t.jobs
    old = (
        select(jobs.c.id)
        .where(
            jobs.c.state.in_(SETTLED),
            jobs.c.finished_at <= max(before, failed_before),
            or_(
                and_(jobs.c.state != "failed", jobs.c.finished_at <= before),
                and_(jobs.c.state == "failed", jobs.c.finished_at <= failed_before),
            ),
        )
        .limit(limit)
    )
    gone = await tx.conn.execute(
        delete(jobs)
        .where(jobs.c.id.in_(old.scalar_subquery()))
        .returning(jobs.c.queue, jobs.c.state)
    )
    return tallies.unsettle_deleted(tx, gone.all())


async def reconcile(tx: Tx, limit: int, after: tuple[str, str]) -> tuple[list[str], str, str]:
    """Rule 7: re-count a slice of waiting jobs and of held heirs.

    ``after`` is where the previous slices ended (waiting, held); returns the
    jobs repaired and where these slices ended ('' once a slice runs out).
    """
    jobs = tx.t.jobs
    repaired: list[str] = []
    waiting_stmt = (
        select(jobs.c.id)
        .where(jobs.c.state == "waiting", jobs.c.id > after[0])
        .order_by(jobs.c.id)
        .limit(limit)
    )
    if tx.postgres:  # a waiting job being settled right now is looked at next time
        waiting_stmt = waiting_stmt.with_for_update(skip_locked=True)
    waiting = list((await tx.conn.execute(waiting_stmt)).scalars().all())
    for job_id in waiting:
        row = (await _lock(tx, [job_id])).get(job_id)
        if row is None or row.state != "waiting":
            continue
        kids = (
            await tx.conn.execute(
                select(jobs.c.id, jobs.c.state, jobs.c.optional).where(jobs.c.parent_id == job_id)
            )
        ).all()
        open_children = sum(k.state not in SETTLED for k in kids)
        if open_children == row.open_children:
            continue
        repaired.append(job_id)
        tx.count(row, REPAIRED)
        await tx.conn.execute(
            update(jobs).where(jobs.c.id == job_id).values(open_children=open_children)
        )
        if open_children == 0:
            failing = row.failed_child_id or next(
                (k.id for k in kids if rules.fails_parent(JobState(k.state), k.optional)), None
            )
            state = rules.settles_as(failing).value
            await settle(tx, row.replace(open_children=0), state, failed_child_id=failing)
    predecessor = jobs.alias("predecessor")
    held = (
        await tx.conn.execute(
            select(jobs.c.id, jobs.c.predecessor_id)
            .join(predecessor, predecessor.c.id == jobs.c.predecessor_id)
            .where(jobs.c.state == "held", jobs.c.id > after[1])
            .where(predecessor.c.state.in_(SETTLED))
            .order_by(jobs.c.id)
            .limit(limit)
        )
    ).all()
    for heir_id, predecessor_id in held:
        settled = (await _lock(tx, [predecessor_id])).get(predecessor_id)
        if settled is None or settled.state not in SETTLED:
            continue
        repaired.append(heir_id)
        heir = (await _lock(tx, [heir_id]))[heir_id]
        tx.count(heir, REPAIRED)
        released = await release_heirs(tx, settled, settled.state)
        parent = (await _lock(tx, [settled.parent_id])).get(settled.parent_id or "")
        if released and parent is not None and parent.state not in SETTLED:
            await tx.conn.execute(
                update(jobs)
                .where(jobs.c.id == parent.id)
                .values(open_children=jobs.c.open_children + released)
            )
    ends = (
        waiting[-1] if len(waiting) == limit else "",
        held[-1][0] if len(held) == limit else "",
    )
    return repaired, *ends


async def maintain(
    tx: Tx, retention: tuple[float, float], max_lost: int, reconciled: tuple[str, str]
) -> tuple[MaintenanceReport, tuple[str, str]]:
    """Rule 7: promote due jobs, recover expired leases, prune, reconcile, fold the
    ledger. ``reconciled`` is where the reconciler's previous slices ended; returns
    the report and where these ended."""
    jobs = tx.t.jobs
    limit = rules.MAINTENANCE_BATCH
    promoted = await promote_due(tx, limit)
    expired = (
        select(jobs)
        .where(jobs.c.state == "running", jobs.c.lease_expires <= tx.now)
        .order_by(jobs.c.id)
        .limit(limit)
    )
    if tx.postgres:
        expired = expired.with_for_update(skip_locked=True)
    recovered = 0
    lost: list[str] = []
    for row in (await tx.conn.execute(expired)).all():
        if await lose_lease(tx, Rec(row._mapping), max_lost):
            lost.append(row.id)
        else:
            recovered += 1
    pruned = await prune(tx, tx.now - retention[0], tx.now - retention[1], limit)
    k = tx.t.job_keys
    expired = select(k.c.queue, k.c.key).where(k.c.expires_at <= tx.now).limit(limit)
    await tx.conn.execute(delete(k).where(tuple_(k.c.queue, k.c.key).in_(expired)))
    repaired, waiting_end, held_end = await reconcile(tx, rules.RECONCILE_BATCH, reconciled)
    await tallies.fold_settled(tx)
    report = MaintenanceReport(promoted, recovered, lost, pruned, repaired)
    return report, (waiting_end, held_end)
