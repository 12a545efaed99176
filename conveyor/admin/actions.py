"""Cancel, retry and discard: one job, a selection, or everything a filter matches."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from conveyor.core.errors import InvalidState, JobNotFound
from conveyor.core.job import Job
from conveyor.core.storage import JobFilter, Storage

BULK_LIMIT = 10_000  # jobs per bulk request; the answer says when more remain
PAGE = 500


class Action(enum.StrEnum):
    CANCEL = "cancel"
    RETRY = "retry"
    RETRY_FAILED = "retry-failed"
    """Every member of the job's workflow whose own handler failed (rule 8)."""
    DISCARD = "discard"


@dataclass(slots=True)
class ActionResult:
    """What one action did: the job's new state, or why it was refused."""

    id: str
    ok: bool
    state: str | None = None
    error: str | None = None


@dataclass(slots=True)
class BulkResult:
    results: list[ActionResult]
    more: bool = False  # the filter matched more than one request may change

    @property
    def done(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def refused(self) -> list[ActionResult]:
        return [r for r in self.results if not r.ok]


async def apply(storage: Storage, action: Action, job_id: str) -> Job:
    """Do ``action`` to one job; returns it afterwards (as it was, for discard).

    Raises:
        JobNotFound, InvalidState: as the storage does.
    """
    match action:
        case Action.CANCEL:
            return await storage.cancel(job_id, "cancelled from the admin")
        case Action.RETRY:
            return await storage.retry(job_id)
        case Action.RETRY_FAILED:
            await storage.retry_failed(job_id)
            job = await storage.get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            return job
        case Action.DISCARD:
            return await storage.discard(job_id)


async def apply_each(storage: Storage, action: Action, ids: Iterable[str]) -> BulkResult:
    """Do ``action`` to each job; a refusal is reported, never stops the rest."""
    results = []
    for job_id in dict.fromkeys(ids):  # each once, in the order given
        try:
            job = await apply(storage, action, job_id)
        except (JobNotFound, InvalidState) as exc:
            results.append(ActionResult(job_id, False, error=str(exc)))
        else:
            state = "discarded" if action is Action.DISCARD else job.state.value
            results.append(ActionResult(job_id, True, state=state))
    return BulkResult(results)


async def apply_matching(
    storage: Storage, action: Action, selection: JobFilter, limit: int = BULK_LIMIT
) -> BulkResult:
    """Do ``action`` to every job ``selection`` matches, up to ``limit`` of them."""
    ids: list[str] = []
    cursor: str | None = None
    while len(ids) < limit:
        page = await storage.list_jobs(selection, after=cursor, limit=min(PAGE, limit - len(ids)))
        ids.extend(job.id for job in page.jobs)
        cursor = page.next_cursor
        if cursor is None:
            break
    result = await apply_each(storage, action, ids)
    result.more = cursor is not None
    return result
