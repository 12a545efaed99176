"""Why a job is where it is, in a few sentences a person can read (``client.explain``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from .errors import JobNotFound
from .job import Job
from .states import JobState, When
from .storage import Storage

#: Ids an explanation lists at most as what the job waits for.
MAX_WAITING_FOR = 1000
#: Ids its text names at most.
NAMED = 3


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a job is in its state and, if it is open, what it waits for."""

    job_id: str
    state: JobState
    text: str
    waiting_for: tuple[str, ...] = ()
    """Jobs it waits on (its open children, its predecessor, its declarer), at most 1,000."""


async def explain(storage: Storage, job_id: str) -> Explanation:
    """Explain ``job_id``'s state from storage as it is now.

    Raises:
        JobNotFound: no such job.
    """
    job = await storage.get(job_id)
    if job is None:
        raise JobNotFound(job_id)
    match job.state:
        case JobState.HELD:
            text, waiting = await _held(storage, job)
        case JobState.SCHEDULED:
            text, waiting = _scheduled(job), ()
        case JobState.QUEUED:
            text, waiting = await _queued(storage, job), ()
        case JobState.RUNNING:
            text, waiting = _running(job), ()
        case JobState.WAITING:
            text, waiting = await _waiting(storage, job)
        case _:
            text, waiting = _settled(job), ()
    return Explanation(job.id, job.state, text, tuple(waiting))


async def _held(storage: Storage, job: Job) -> tuple[str, tuple[str, ...]]:
    if job.predecessor_id is None:
        parent = job.parent_id or "its parent"
        return (
            f"Declared by the running attempt of {parent}; released when that attempt "
            "succeeds, discarded if it fails.",
            (job.parent_id,) if job.parent_id else (),
        )
    predecessor = await storage.get(job.predecessor_id)
    condition = (
        "whatever the outcome"
        if job.when is When.SETTLED
        else "if that family succeeds (cancelled otherwise)"
    )
    where = f"now {predecessor.state}" if predecessor is not None else "it is gone"
    return (
        f"Heir held until {job.predecessor_id} and everything below it settle ({where}); "
        f"it then runs {condition}.",
        (job.predecessor_id,),
    )


def _scheduled(job: Job) -> str:
    due = _when(job.run_at)
    if job.attempt > 0:
        error = (job.last_error or "an error").strip().splitlines()[-1]
        return (
            f"Scheduled for retry {job.attempt + 1} of {job.max_attempts} {due}, "
            f"after attempt {job.attempt} failed: {error}"
        )
    return f"Scheduled to run {due}."


async def _queued(storage: Storage, job: Job) -> str:
    workers = [w for w in await storage.workers() if job.queue in w.queues]
    text = f"Queued in {job.queue!r}"
    if job.attempt > 0:
        text += f" for attempt {job.attempt + 1} of {job.max_attempts}"
    if not workers:
        return f"{text}; no live worker listens on this queue, so nothing will claim it yet."
    busy = sum(w.running for w in workers)
    room = sum(w.concurrency for w in workers)
    return f"{text}; {len(workers)} live worker(s) listen on it, running {busy} of {room} slots."


def _running(job: Job) -> str:
    worker = f" on worker {job.worker_id}" if job.worker_id else ""
    since = _stamp(job.started_at)
    return f"Running attempt {job.attempt} of {job.max_attempts}{worker} since {since}."


async def _waiting(storage: Storage, job: Job) -> tuple[str, tuple[str, ...]]:
    waiting: list[str] = []
    total: int | None = None
    after: str | None = None
    while len(waiting) < MAX_WAITING_FOR:
        page = await storage.children(job.id, open_only=True, after=after)
        total = page.total if total is None else total
        waiting += [child.id for child in page.jobs]
        if page.next_cursor is None:
            break
        after = page.next_cursor
    waiting = waiting[:MAX_WAITING_FOR]
    count = job.open_children
    of = f" of {total:,}" if total is not None else ""
    named = ", ".join(waiting[:NAMED]) + (", …" if len(waiting) > NAMED else "")
    text = f"Its handler succeeded; waiting for {count:,}{of} children"
    text += f": {named}." if named else "."
    if job.failed_child_id:
        text += f" Child {job.failed_child_id} has failed, so it will settle failed."
    heirs = [m for m in await storage.family(job.id) if m.predecessor_id == job.id]
    held = [h for h in heirs if h.state is JobState.HELD]
    if held:
        names = ", ".join(h.id for h in held[:NAMED]) + (", …" if len(held) > NAMED else "")
        text += f" Heir(s) {names} held until then."
    return text, tuple(waiting)


def _settled(job: Job) -> str:
    when = _stamp(job.finished_at)
    if job.state is JobState.SUCCEEDED:
        return f"Succeeded at {when}, with everything below it."
    last_line = (job.last_error or "").strip().splitlines()[-1:]
    reason = job.reason or (last_line[0] if last_line else "no reason kept")
    text = f"{job.state.value.capitalize()} at {when}: {reason}."
    if job.failed_ids:
        text += f" {len(job.failed_ids):,} member(s) failed for good."
    return text


def _when(at: datetime | None) -> str:
    if at is None:
        return "when it is due"
    seconds = at.timestamp() - time.time()
    if seconds <= 0:
        return f"at {_stamp(at)} (due now)"
    return f"at {_stamp(at)} (in {seconds:,.0f} s)"


def _stamp(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at is not None else "an unknown time"
