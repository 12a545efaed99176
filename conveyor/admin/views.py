"""What pages and the JSON API show, built from the Storage protocol alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from litestar.exceptions import NotFoundException

from conveyor.core import schedule
from conveyor.core.errors import ConveyorError
from conveyor.core.explain import Explanation
from conveyor.core.family import FamilySummary
from conveyor.core.job import Job
from conveyor.core.progress import Progress
from conveyor.core.states import JobState
from conveyor.core.storage import JobFilter, MinuteCount, QueueStats, Storage, WorkerInfo
from conveyor.core.type_registry import TypeRegistry

FAMILY_ROWS = 200  # members shown per level of a family tree
ORDER = list(JobState)


@dataclass(slots=True)
class ProgressOut:
    """The last progress a job's handler reported (``ctx.progress``)."""

    fraction: float
    note: str | None
    attempt: int
    at: datetime

    @classmethod
    def of(cls, progress: Progress) -> ProgressOut:
        return cls(progress.fraction, progress.note, progress.attempt, progress.at)


@dataclass(slots=True)
class JobOut:
    """A job as the JSON API returns it."""

    id: str
    type: str
    queue: str
    state: str
    attempt: int
    max_attempts: int
    priority: int
    parent_id: str | None
    predecessor_id: str | None
    when: str | None
    optional: bool
    last_error: str | None
    reason: str | None
    failed_ids: list[str]
    open_children: int
    worker_id: str | None
    headers: dict[str, str]
    created_at: datetime | None
    run_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    payload: dict[str, Any] | None = None
    payload_error: str | None = None
    result_type: str | None = None
    result: dict[str, Any] | None = None
    result_error: str | None = None
    progress: ProgressOut | None = None

    @classmethod
    def of(cls, job: Job, registry: TypeRegistry | None = None) -> JobOut:
        out = cls(
            id=job.id,
            type=job.type,
            queue=job.queue,
            state=job.state.value,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            priority=job.priority,
            parent_id=job.parent_id,
            predecessor_id=job.predecessor_id,
            when=job.when.value if job.when else None,
            optional=job.optional,
            last_error=job.last_error,
            reason=job.reason,
            failed_ids=list(job.failed_ids),
            open_children=job.open_children,
            worker_id=job.worker_id,
            headers=dict(job.headers),
            created_at=job.created_at,
            run_at=job.run_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            result_type=job.result_type,
            progress=ProgressOut.of(job.progress) if job.progress else None,
        )
        if registry is not None:
            out.payload, out.payload_error = decode(registry, job)
            out.result, out.result_error = decode_result(registry, job)
        return out


async def existing(storage: Storage, job_id: str) -> Job:
    """The job, or a 404 that says it may have been discarded.

    Raises:
        NotFoundException: no such job (any more).
    """
    job = await storage.get(job_id)
    if job is None:
        raise NotFoundException(f"no job {job_id}: it never existed, or it was discarded")
    return job


def decode(registry: TypeRegistry, job: Job) -> tuple[dict[str, Any] | None, str | None]:
    """The payload as JSON-ready data, or why it cannot be shown."""
    try:
        return registry.to_dict(job.type, job.payload_bytes), None
    except ConveyorError as exc:
        return None, str(exc)


def decode_result(registry: TypeRegistry, job: Job) -> tuple[dict[str, Any] | None, str | None]:
    """What the handler returned, as JSON-ready data, or why it cannot be shown
    (``(None, None)`` when it returned nothing)."""
    if job.result_type is None or job.result_bytes is None:
        return None, None
    try:
        return registry.to_dict(job.result_type, job.result_bytes), None
    except ConveyorError as exc:
        return None, str(exc)


@dataclass(slots=True)
class ExplanationOut:
    """Why a job is in its state, as the JSON API returns it."""

    job_id: str
    state: str
    text: str
    waiting_for: list[str]

    @classmethod
    def of(cls, e: Explanation) -> ExplanationOut:
        return cls(e.job_id, e.state.value, e.text, list(e.waiting_for))


@dataclass(slots=True)
class HeldHeirOut:
    id: str
    why: str


@dataclass(slots=True)
class FamilySummaryOut:
    """A family at a glance, as the JSON API returns it."""

    root_id: str
    members: int
    complete: bool
    depth: int
    open: int
    by_state: dict[str, int]
    by_type: dict[str, dict[str, int]]
    held_heirs: list[HeldHeirOut]

    @classmethod
    def of(cls, s: FamilySummary) -> FamilySummaryOut:
        return cls(
            root_id=s.root.id,
            members=s.size,
            complete=s.complete,
            depth=s.depth,
            open=s.open,
            by_state={state.value: n for state, n in s.by_state.items()},
            by_type={t: {st.value: n for st, n in c.items()} for t, c in s.by_type.items()},
            held_heirs=[HeldHeirOut(h.job.id, h.why) for h in s.held_heirs],
        )


@dataclass(slots=True)
class Totals:
    """Jobs by state across every queue."""

    by_state: dict[str, int]
    queues: list[QueueStats]

    @classmethod
    def of(cls, stats: Sequence[QueueStats]) -> Totals:
        by_state = {state.value: 0 for state in ORDER}
        for queue in stats:
            for state, n in queue.counts.items():
                by_state[JobState(state).value] += n
        return cls(by_state, list(stats))


@dataclass(slots=True)
class QueueRow:
    """One row of the queues page."""

    name: str
    counts: dict[str, int]
    last_minute: int  # jobs settled or retried in the last whole minute
    paused: bool = False
    limits: str = ""  # rule 14's limits, in words ("" for none)
    oldest_queued_at: float | None = None  # when its longest-waiting queued job became queued


async def queue_rows(storage: Storage, stats: Sequence[QueueStats]) -> list[QueueRow]:
    """Every queue with jobs, and every controlled queue (even before its first job)."""
    controls = {c.queue: c for c in await storage.queue_controls()}
    oldest = await storage.oldest_queued()
    by_name = {s.queue: s for s in stats}
    rows = []
    for name in sorted(by_name.keys() | controls.keys()):
        queue = by_name.get(name, QueueStats(name, {}))
        minutes = await storage.counters(minutes=2, queue=name)
        last = minutes[0]  # the last complete minute; the current one is still filling
        control = controls.get(name)
        rows.append(
            QueueRow(
                name,
                {state.value: queue.count(state) for state in ORDER},
                last.succeeded + last.retried + last.failed,
                paused=control is not None and control.paused,
                limits=control.limits.describe() if control and control.limits.limited else "",
                oldest_queued_at=oldest.get(name),
            )
        )
    return rows


@dataclass(slots=True)
class ScheduleRow:
    """A periodic job as the live workers that enqueue it published it."""

    name: str
    cron: str
    tz: str
    type: str
    queue: str
    explained: str
    next_run: datetime | None
    workers: int


def schedule_rows(workers: Sequence[WorkerInfo]) -> list[ScheduleRow]:
    """Each schedule of the live workers once, sorted by when it runs next."""
    seen: dict[str, tuple[Mapping[str, str], int]] = {}
    for worker in workers:
        for published in worker.schedules:
            _, count = seen.get(published["name"], (published, 0))
            seen[published["name"]] = (published, count + 1)
    rows = [
        ScheduleRow(
            name=s["name"],
            cron=s["cron"],
            tz=s["tz"],
            type=s["type"],
            queue=s["queue"],
            explained=schedule.explain(s["cron"]),
            next_run=schedule.next_run(s["cron"], s["tz"]),
            workers=count,
        )
        for s, count in seen.values()
    ]
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: (r.next_run or far, r.name))


@dataclass(slots=True)
class Family:
    """A job's place in its family: who is above it, and one level below."""

    job: Job
    parent: Job | None
    predecessor: Job | None
    children: list[Job]
    heirs: list[Job]
    hidden: int = 0  # children beyond FAMILY_ROWS
    waiting_for: list[Job] = field(default_factory=list)


async def family(storage: Storage, job: Job) -> Family:
    members = await storage.family(job.id)
    heirs = [m for m in members if m.predecessor_id == job.id and m.parent_id != job.id]
    children = [m for m in members if m not in heirs]
    # Open members first (they are what the family waits for), then oldest first.
    children.sort(key=lambda m: (m.state.settled, m.id))
    open_children = [m for m in children if not m.state.settled]
    parent = await storage.get(job.parent_id) if job.parent_id else None
    predecessor = await storage.get(job.predecessor_id) if job.predecessor_id else None
    return Family(
        job=job,
        parent=parent,
        predecessor=predecessor,
        children=children[:FAMILY_ROWS],
        heirs=heirs,
        hidden=max(0, len(children) - FAMILY_ROWS),
        waiting_for=open_children if job.state is JobState.WAITING else [],
    )


@dataclass(slots=True)
class FamilyOut:
    """A job's family as the JSON API returns it."""

    job: JobOut
    parent: JobOut | None
    predecessor: JobOut | None
    children: list[JobOut]
    heirs: list[JobOut]
    hidden_children: int
    waiting_for: list[str]

    @classmethod
    def of(cls, f: Family) -> FamilyOut:
        return cls(
            job=JobOut.of(f.job),
            parent=JobOut.of(f.parent) if f.parent else None,
            predecessor=JobOut.of(f.predecessor) if f.predecessor else None,
            children=[JobOut.of(c) for c in f.children],
            heirs=[JobOut.of(h) for h in f.heirs],
            hidden_children=f.hidden,
            waiting_for=[j.id for j in f.waiting_for],
        )


@dataclass(slots=True)
class WorkerOut:
    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    running: int
    started_at: datetime
    last_seen: datetime

    @classmethod
    def of(cls, info: WorkerInfo) -> WorkerOut:
        from conveyor.core.job import to_datetime

        started, seen = to_datetime(info.started_at), to_datetime(info.last_seen)
        assert started is not None
        assert seen is not None
        return cls(
            info.id,
            info.host,
            info.pid,
            list(info.queues),
            info.concurrency,
            info.running,
            started,
            seen,
        )


@dataclass(slots=True)
class MinuteOut:
    minute: datetime
    succeeded: int
    retried: int
    failed: int
    workers: int
    repaired: int

    @classmethod
    def of(cls, m: MinuteCount) -> MinuteOut:
        return cls(m.minute, m.succeeded, m.retried, m.failed, m.workers, m.repaired)


def job_filter(
    state: str | None = None,
    queue: str | None = None,
    type: str | None = None,
    id_prefix: str | None = None,
    retrying: bool = False,
) -> JobFilter:
    """A filter from query parameters; empty strings mean "any".

    Raises:
        ValueError: ``state`` names no state.
    """
    chosen = JobState(state) if state else None
    return JobFilter(
        state=chosen,
        queue=queue or None,
        type=type or None,
        id_prefix=id_prefix.strip() if id_prefix and id_prefix.strip() else None,
        retrying=retrying,
    )
