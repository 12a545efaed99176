"""What the admin and clients read: each function one read-only query batch on a connection."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.core.errors import JobNotFound
from conveyor.core.job import Job
from conveyor.core.states import JobState
from conveyor.core.storage import JobFilter, JobPage, MinuteCount, QueueStats, WorkerInfo

from ._rows import job_of_row
from ._tx import QUEUE_KEY
from .schema import OPEN, Tables


async def get(conn: AsyncConnection, t: Tables, job_id: str) -> Job | None:
    jobs = t.jobs
    row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
    return job_of_row(row) if row is not None else None


async def list_jobs(
    conn: AsyncConnection, t: Tables, flt: JobFilter, after: str | None, limit: int
) -> JobPage:
    jobs = t.jobs
    stmt = select(jobs).order_by(jobs.c.id.desc()).limit(limit + 1)
    if flt.state is not None:
        stmt = stmt.where(jobs.c.state == flt.state.value)
    if flt.queue is not None:
        stmt = stmt.where(jobs.c.queue == flt.queue)
    if flt.type is not None:
        stmt = stmt.where(jobs.c.type == flt.type)
    if flt.id_prefix:
        stmt = stmt.where(jobs.c.id.startswith(flt.id_prefix, autoescape=True))
    if flt.retrying:
        stmt = stmt.where(jobs.c.attempt > 0)
    if after is not None:
        stmt = stmt.where(jobs.c.id < after)
    rows = (await conn.execute(stmt)).all()
    found = [job_of_row(r) for r in rows[:limit]]
    return JobPage(found, found[-1].id if len(rows) > limit else None)


async def family(conn: AsyncConnection, t: Tables, job_id: str) -> list[Job]:
    """Children (released heirs included), heirs, and declarations of a running attempt."""
    jobs = t.jobs
    stmt = (
        select(jobs)
        .where(
            or_(
                jobs.c.parent_id == job_id,
                jobs.c.predecessor_id == job_id,
                and_(jobs.c.declared_by == job_id, jobs.c.state == "held"),
            )
        )
        .order_by(jobs.c.id)
    )
    return [job_of_row(r) for r in (await conn.execute(stmt)).all()]


async def children(
    conn: AsyncConnection,
    t: Tables,
    job_id: str,
    open_only: bool,
    after: str | None,
    limit: int,
) -> JobPage:
    """A page of the jobs counting against ``job_id``, by id; the cursor is the last id."""
    jobs = t.jobs
    stmt = select(jobs).where(jobs.c.parent_id == job_id).order_by(jobs.c.id).limit(limit + 1)
    if open_only:
        stmt = stmt.where(jobs.c.state.in_(OPEN))
    if after is not None:
        stmt = stmt.where(jobs.c.id > after)
    rows = (await conn.execute(stmt)).all()
    found = [job_of_row(r) for r in rows[:limit]]
    count = select(func.count()).select_from(jobs).where(jobs.c.parent_id == job_id)
    total = int((await conn.execute(count)).scalar_one())
    return JobPage(found, found[-1].id if len(rows) > limit else None, total)


async def family_tree(conn: AsyncConnection, t: Tables, root_id: str, limit: int) -> list[Job]:
    """The root and every job reachable through children and heirs, breadth first.

    Raises:
        JobNotFound: no such root.
    """
    jobs = t.jobs
    # UNION, not UNION ALL: each job once, however many ways lead to it (a released
    # heir is both its predecessor's heir and its parent's child).
    tree = select(jobs.c.id).where(jobs.c.id == root_id).cte("tree", recursive=True)
    tree = tree.union(
        select(jobs.c.id).where(
            or_(jobs.c.parent_id == tree.c.id, jobs.c.predecessor_id == tree.c.id)
        )
    )
    # Ids grow with creation, and a job is created after the one that declares it.
    stmt = (
        select(jobs)
        .where(jobs.c.id.in_(select(tree.c.id)))
        .order_by(jobs.c.id != root_id, jobs.c.id)
        .limit(limit)
    )
    rows = (await conn.execute(stmt)).all()
    if not rows or rows[0].id != root_id:
        raise JobNotFound(root_id)
    return [job_of_row(r) for r in rows]


async def queue_stats(conn: AsyncConnection, t: Tables) -> list[QueueStats]:
    jobs, ledger = t.jobs, t.settled_counts
    # Open jobs are counted where they are (few, through the state index);
    # settled ones, however many, from the ledger.
    open_jobs = (
        select(jobs.c.queue, jobs.c.state, func.count())
        .where(jobs.c.state.in_(OPEN))  # IN, not NOT IN: ranges of the state index
        .group_by(jobs.c.queue, jobs.c.state)
    )
    settled = select(ledger.c.queue, ledger.c.state, func.sum(ledger.c.n)).group_by(
        ledger.c.queue, ledger.c.state
    )
    counts: dict[str, dict[JobState, int]] = {}
    for stmt in (open_jobs, settled):
        for queue, state, number in (await conn.execute(stmt)).all():
            if number:
                counts.setdefault(queue, {})[JobState(state)] = int(number)
    return [QueueStats(q, c) for q, c in sorted(counts.items())]


#: Priorities of one queue looked at one by one; beyond them, one aggregate.
HEADS_PER_QUEUE = 32


async def oldest_queued(conn: AsyncConnection, t: Tables) -> dict[str, float]:
    """Each queue's longest-waiting queued job, found at the heads of the claim index
    (queue, priority desc, ready_at): one index probe per queue and priority, where a
    plain ``min(ready_at) GROUP BY queue`` would read every queued job."""
    jobs = t.jobs
    queued = jobs.c.state == "queued"
    oldest: dict[str, float] = {}
    queue: str | None = ""
    while True:
        after = select(func.min(jobs.c.queue)).where(queued, jobs.c.queue > queue)
        queue = (await conn.execute(after)).scalar()
        if queue is None:
            return oldest
        of_queue = and_(queued, jobs.c.queue == queue)
        below: int | None = None
        for _ in range(HEADS_PER_QUEUE):
            head = select(jobs.c.priority, jobs.c.ready_at).where(of_queue)
            if below is not None:
                head = head.where(jobs.c.priority < below)
            found = (
                await conn.execute(head.order_by(jobs.c.priority.desc(), jobs.c.ready_at).limit(1))
            ).first()
            if found is None:
                break
            below = found.priority
            oldest[queue] = min(oldest.get(queue, found.ready_at), found.ready_at)
        else:  # more priorities than probes: the rest in one aggregate
            rest = select(func.min(jobs.c.ready_at)).where(of_queue, jobs.c.priority < below)
            earliest = (await conn.execute(rest)).scalar()
            if earliest is not None:
                oldest[queue] = min(oldest[queue], earliest)


async def workers(conn: AsyncConnection, t: Tables) -> list[WorkerInfo]:
    wt = t.workers
    stmt = select(wt).where(wt.c.expires_at > time.time()).order_by(wt.c.id)
    rows = (await conn.execute(stmt)).all()
    return [WorkerInfo.from_dict(row.info, row.last_seen) for row in rows]


async def counters(
    conn: AsyncConnection, t: Tables, minutes: int, type_name: str | None, queue: str | None
) -> list[MinuteCount]:
    ct, wm = t.counters, t.worker_minutes
    last = int(time.time() // 60)
    first = last - minutes + 1
    key = QUEUE_KEY + queue if queue is not None else type_name or ""
    stmt = select(ct).where(ct.c.minute >= first, ct.c.type == key)
    found = {row.minute: row for row in (await conn.execute(stmt)).all()}
    seen: dict[int, int] = {}
    if type_name is None and queue is None:  # workers are counted only in the totals
        per_minute = (
            select(wm.c.minute, func.count()).where(wm.c.minute >= first).group_by(wm.c.minute)
        )
        seen = {int(m): int(n) for m, n in (await conn.execute(per_minute)).all()}
    result = []
    for minute in range(first, last + 1):
        row = found.get(minute)
        stamp = datetime.fromtimestamp(minute * 60, UTC)
        workers_seen = seen.get(minute, 0)
        if row is None:
            result.append(MinuteCount(stamp, workers=workers_seen))
        else:
            result.append(
                MinuteCount(
                    stamp, row.succeeded, row.retried, row.failed, workers_seen, row.repaired
                )
            )
    return result


async def descriptor_sets(conn: AsyncConnection, t: Tables) -> dict[str, bytes]:
    rows = (await conn.execute(select(t.types))).all()
    return {row.name: bytes(row.descriptor_set) for row in rows}
