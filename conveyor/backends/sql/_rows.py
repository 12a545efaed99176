"""Rows of the jobs table as ``Job`` snapshots."""

from __future__ import annotations

from typing import Any

from conveyor.core.config import Backoff
from conveyor.core.errors import PayloadDecodeError
from conveyor.core.job import Job, to_datetime
from conveyor.core.progress import Progress
from conveyor.core.queues import QueueControls, QueueLimits, Rate
from conveyor.core.states import JobState, When


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple(value.split(",")) if value else ()


def job_of_row(row: Any) -> Job:
    """A ``Job`` from a jobs-table row (or a ``rules.Rec`` of one).

    Raises:
        PayloadDecodeError: the row is not a valid job (written by other software).
    """
    try:
        return _job(row)
    except (TypeError, ValueError) as exc:
        raise PayloadDecodeError(
            f"job {row.id} in the database is not a valid Conveyor job: {exc!r}"
        ) from exc


def queue_controls_of(row: Any) -> QueueControls:
    """A ``QueueControls`` from a row of the queues table."""
    rate = Rate(row.rate, row.per) if row.rate is not None else None
    return QueueControls(row.name, bool(row.paused), QueueLimits(row.max_running, rate))


def _headers(value: Any) -> dict[str, str]:
    headers = dict(value or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ValueError(f"headers are not strings: {value!r}")
    return headers


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        type=row.type,
        queue=row.queue,
        state=JobState(row.state),
        payload_bytes=bytes(row.payload),
        priority=row.priority,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        timeout=row.timeout,
        parent_id=row.parent_id,
        predecessor_id=row.predecessor_id,
        when=When(row.heir_when) if row.heir_when else None,
        optional=bool(row.optional),
        headers=_headers(row.headers),
        last_error=row.last_error,
        created_at=to_datetime(row.created_at),
        run_at=to_datetime(row.run_at),
        started_at=to_datetime(row.started_at),
        finished_at=to_datetime(row.finished_at),
        worker_id=row.worker_id,
        lost_count=row.lost_count,
        open_children=row.open_children,
        failed_ids=_ids(row.failed_ids),
        reason=row.reason,
        failed_child_id=row.failed_child_id,
        predecessor_state=JobState(row.predecessor_state) if row.predecessor_state else None,
        predecessor_failed_ids=_ids(row.predecessor_failed_ids),
        result_bytes=bytes(row.result) if row.result is not None else None,
        result_type=row.result_type,
        backoff=Backoff.from_text(row.backoff) if row.backoff else None,
        key=row.unique_key,
        progress=Progress.from_text(row.progress) if row.progress else None,
        plan=bytes(row.plan) if row.plan is not None else None,
        root_id=row.root_id,
    )
