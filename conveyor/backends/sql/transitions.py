"""The accounting rules of DESIGN.md section 4 as SQL, inside one transaction.

Every function here runs on a connection whose transaction the caller owns,
so a transition and its whole family cascade commit together or not at all.
On PostgreSQL, rows are locked ``FOR UPDATE`` before they change: a child
locks itself, then its parent (bottom-up), so siblings settling at once
serialise on their parent instead of losing an update. Bulk changes (a
success releasing ten thousand children) are single set-based statements.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, delete, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.core.job import JobSpec, Lease

from .schema import SETTLED, Tables

MAX_FAILED_IDS = 1000

# Counter rows keyed by queue are stored under this prefix (no protobuf type name has it).
QUEUE_KEY = "@"


class Rec:
    """A job row as a plain object, so a transaction can carry changed copies of it."""

    def __init__(self, mapping: Mapping[Any, Any]) -> None:
        self.__dict__.update(mapping)

    def __getattr__(self, name: str) -> Any:  # declared for the type checker only
        raise AttributeError(name)

    def replace(self, **changes: Any) -> Rec:
        copy = Rec(self.__dict__)
        copy.__dict__.update(changes)
        return copy


@dataclass
class Tx:
    """One transaction: where it runs, its clock, and what to announce after commit."""

    conn: AsyncConnection
    t: Tables
    now: float
    postgres: bool
    events: list[tuple[str, str, str, str]] = field(default_factory=list)
    counts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    wakes: set[str] = field(default_factory=set)
    settled: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    def event(self, job_id: str, state: str, type_name: str, queue: str) -> None:
        self.events.append((job_id, state, type_name, queue))
        if state == "queued":
            self.wakes.add(queue)
        elif state in SETTLED:  # every way into a settled state passes here
            self.settled[queue, state] += 1

    def unsettle(self, queue: str, state: str, n: int = 1) -> None:
        """``n`` jobs left a settled state (retried, discarded or pruned)."""
        self.settled[queue, state] -= n

    def count(self, row: Rec, column: int) -> None:
        """Count a success (0), retry (1) or failure (2) for the row's type and queue."""
        self.counts[row.type][column] += 1
        self.counts[QUEUE_KEY + row.queue][column] += 1


def spec_row(
    spec: JobSpec, state: str, now: float, declared_by: str | None = None
) -> dict[str, Any]:
    return {
        "id": spec.id,
        "type": spec.type,
        "queue": spec.queue,
        "payload": spec.payload,
        "state": state,
        "priority": spec.priority,
        "run_at": spec.run_at,
        "max_attempts": spec.max_attempts,
        "timeout": spec.timeout,
        "headers": dict(spec.headers) or None,
        "parent_id": spec.parent_id,
        "predecessor_id": spec.predecessor_id,
        "heir_when": spec.when.value if spec.when else None,
        "optional": spec.optional,
        "declared_by": declared_by,
        "created_at": now,
    }


def _ids(text: str | None) -> list[str]:
    return text.split(",") if text else []


def _merge_ids(existing: str | None, more: Iterable[str]) -> str | None:
    ids = _ids(existing)
    for item in more:
        if len(ids) >= MAX_FAILED_IDS:
            break
        ids.append(item)
    return ",".join(ids) or None


async def insert_jobs(tx: Tx, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows; ids that exist already are skipped, so a retried call is harmless."""
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


async def release(tx: Tx, where: Any) -> list[str]:
    """Held (or re-armed) jobs become queued, or scheduled when due later; returns their ids."""
    jobs = tx.t.jobs
    stmt = (
        update(jobs)
        .where(where)
        .values(
            state=case((jobs.c.run_at > tx.now, "scheduled"), else_="queued"),
            worker_id=None,
            lease_expires=None,
        )
        .returning(jobs.c.id, jobs.c.state, jobs.c.type, jobs.c.queue)
    )
    released = (await tx.conn.execute(stmt)).all()
    for row in released:
        tx.event(row.id, row.state, row.type, row.queue)
    return [row.id for row in released]


async def lock(tx: Tx, ids: Sequence[str]) -> dict[str, Rec]:
    """Read (and on PostgreSQL lock, in id order to avoid deadlocks) these jobs."""
    if not ids:
        return {}
    jobs = tx.t.jobs
    stmt = select(jobs).where(jobs.c.id.in_(sorted(set(ids)))).order_by(jobs.c.id)
    if tx.postgres:
        stmt = stmt.with_for_update()
    return {row.id: Rec(row._mapping) for row in (await tx.conn.execute(stmt)).all()}


def holds(row: Rec | None, lease: Lease) -> bool:
    return row is not None and row.state == "running" and row.lease_token == lease.token


async def set_state(tx: Tx, row: Rec, state: str, **values: Any) -> None:
    jobs = tx.t.jobs
    await tx.conn.execute(update(jobs).where(jobs.c.id == row.id).values(state=state, **values))
    tx.event(row.id, state, row.type, row.queue)


async def discard_staged(tx: Tx, declarer: str) -> None:
    """Rule 2: declarations of an attempt that did not succeed never run."""
    jobs = tx.t.jobs
    await tx.conn.execute(
        delete(jobs).where(jobs.c.declared_by == declarer, jobs.c.state == "held")
    )


async def settle(tx: Tx, row: Rec, state: str, **values: Any) -> None:
    """Rules 3-5: settle ``row``, release or cancel its heirs, and walk up its parents."""
    jobs = tx.t.jobs
    current: Rec | None = row
    failed_ids = _ids(row.failed_ids)
    while current is not None:
        await set_state(
            tx, current, state, finished_at=tx.now, worker_id=None, lease_expires=None, **values
        )
        values = {}
        if state == "succeeded":
            tx.count(current, 0)
        elif state == "failed":
            tx.count(current, 2)
        # Heirs first: a released heir takes the parent, so the parent's open
        # count rises before it falls for ``current``.
        heirs = (
            await tx.conn.execute(
                select(jobs.c.id, jobs.c.heir_when).where(
                    jobs.c.predecessor_id == current.id, jobs.c.state == "held"
                )
            )
        ).all()
        go = [h.id for h in heirs if h.heir_when == "settled" or state == "succeeded"]
        stop = [h.id for h in heirs if h.id not in go]
        pf = ",".join(failed_ids) or None
        if go:
            await tx.conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(go))
                .values(
                    parent_id=current.parent_id,
                    predecessor_state=state,
                    predecessor_failed_ids=pf,
                    optional=or_(jobs.c.optional, current.optional),
                )
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
                        predecessor_state=state,
                        predecessor_failed_ids=pf,
                        reason=f"predecessor {current.id} {state}",
                    )
                    .returning(jobs.c.id, jobs.c.type, jobs.c.queue)
                )
            ).all()
            for c in cancelled:
                tx.event(c.id, "cancelled", c.type, c.queue)
        if current.parent_id is None:
            return
        parent = (await lock(tx, [current.parent_id])).get(current.parent_id)
        if parent is None or parent.state in SETTLED:
            return
        open_children = parent.open_children + len(go) - 1
        merged = _merge_ids(parent.failed_ids, failed_ids)
        failing = parent.failed_child_id
        changes: dict[str, Any] = {"open_children": open_children, "failed_ids": merged}
        if state != "succeeded" and not current.optional and failing is None:
            failing = current.id
            changes.update(failed_child_id=current.id, reason=f"child {current.id} {state}")
        if parent.state != "waiting" or open_children > 0:
            await tx.conn.execute(update(jobs).where(jobs.c.id == parent.id).values(**changes))
            return
        values = changes
        failed_ids = _ids(merged)
        state = "failed" if failing else "succeeded"
        current = parent


async def succeed(tx: Tx, row: Rec, declarations: Sequence[JobSpec]) -> None:
    """Rule 1: release the attempt's children with its success; heirs stay held."""
    jobs = tx.t.jobs
    await insert_jobs(tx, [spec_row(s, "held", tx.now, row.id) for s in declarations])
    released = await release(
        tx,
        and_(jobs.c.declared_by == row.id, jobs.c.state == "held", jobs.c.parent_id == row.id),
    )
    if released:
        await set_state(
            tx, row, "waiting", open_children=len(released), worker_id=None, lease_expires=None
        )
    else:
        await settle(tx, row, "succeeded")


async def succeed_leaves(tx: Tx, rows: Sequence[Rec]) -> list[Rec]:
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
        tx.count(leaf, 0)
        if leaf.parent_id is not None:
            by_parent[leaf.parent_id].append(leaf)
    # Each parent once per batch: a fan-out of thousands costs one update per batch.
    # Lock them all first, in id order (no deadlocks), but read each again just
    # before use: settling one parent may walk up into another in this list.
    await lock(tx, list(by_parent))
    for parent_id, children in by_parent.items():
        parent = (await lock(tx, [parent_id])).get(parent_id)
        if parent is None or parent.state in SETTLED:
            continue
        open_children = parent.open_children - len(children)
        merged = _merge_ids(parent.failed_ids, [i for c in children for i in _ids(c.failed_ids)])
        if parent.state == "waiting" and open_children <= 0:
            state = "failed" if parent.failed_child_id else "succeeded"
            changed = parent.replace(open_children=0, failed_ids=merged)
            await settle(tx, changed, state, open_children=0, failed_ids=merged)
        else:
            await tx.conn.execute(
                update(jobs)
                .where(jobs.c.id == parent_id)
                .values(open_children=open_children, failed_ids=merged)
            )
    return [r for r in rows if r.id in declaring]


async def fail(tx: Tx, row: Rec, error: str) -> None:
    await discard_staged(tx, row.id)
    failed = _merge_ids(row.failed_ids, [row.id])
    await settle(tx, row.replace(failed_ids=failed), "failed", last_error=error, failed_ids=failed)


async def retry_later(tx: Tx, row: Rec, error: str, retry_at: float) -> None:
    jobs = tx.t.jobs
    await discard_staged(tx, row.id)
    await tx.conn.execute(
        update(jobs).where(jobs.c.id == row.id).values(last_error=error, run_at=retry_at)
    )
    tx.count(row, 1)
    await release(tx, jobs.c.id == row.id)


async def requeue(tx: Tx, row: Rec, **values: Any) -> None:
    """Back to queued without counting the attempt (lease lost, or handed back)."""
    jobs = tx.t.jobs
    await discard_staged(tx, row.id)
    await tx.conn.execute(
        update(jobs)
        .where(jobs.c.id == row.id)
        .values(
            attempt=case((jobs.c.attempt > 0, jobs.c.attempt - 1), else_=0), run_at=None, **values
        )
    )
    await release(tx, jobs.c.id == row.id)


async def promote_due(tx: Tx, limit: int) -> int:
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


async def cancel_below(tx: Tx, root: Rec) -> None:
    """Cancel every unsettled member below ``root``: its children and, below them, their heirs."""
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
                select(jobs.c.id, jobs.c.state).where(below, jobs.c.state.not_in(SETTLED))
            )
        ).all()
        running = [r.id for r in rows if r.state == "running"]
        if running:
            await tx.conn.execute(
                delete(jobs).where(jobs.c.declared_by.in_(running), jobs.c.state == "held")
            )
        ids = [r.id for r in rows]
        if ids:
            cancelled = (
                await tx.conn.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(ids), jobs.c.state.not_in(SETTLED))
                    .values(
                        state="cancelled",
                        finished_at=tx.now,
                        reason=f"ancestor {root.id} cancelled",
                        worker_id=None,
                        lease_expires=None,
                    )
                    .returning(jobs.c.id, jobs.c.type, jobs.c.queue)
                )
            ).all()
            for c in cancelled:
                tx.event(c.id, "cancelled", c.type, c.queue)
        frontier = ids


def leases_match(tx: Tx, leases: Sequence[Lease]) -> Any:
    jobs = tx.t.jobs
    return and_(
        tuple_(jobs.c.id, jobs.c.lease_token).in_(
            [(lease.job_id, lease.token) for lease in leases]
        ),
        jobs.c.state == "running",
    )
