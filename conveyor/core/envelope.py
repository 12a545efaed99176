"""The wire envelope (``conveyor.v1.Job``) to and from ``Job``.

Backends that keep jobs as bytes (Redis) store this envelope; other languages
read and write it to produce or inspect jobs.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from conveyor._proto.conveyor.v1 import job_pb2

from .errors import PayloadDecodeError
from .job import Job
from .states import JobState, When

_STATES = {state: getattr(job_pb2, f"JOB_STATE_{state.name}") for state in JobState}
_STATES_BACK = {number: state for state, number in _STATES.items()}
_WHEN = {
    When.SUCCEEDED: job_pb2.HEIR_CONDITION_SUCCEEDED,
    When.SETTLED: job_pb2.HEIR_CONDITION_SETTLED,
}
_WHEN_BACK = {number: when for when, number in _WHEN.items()}


def _stamp(value: datetime | None, target: Timestamp) -> None:
    if value is not None:
        target.FromDatetime(value)


def _time(message: job_pb2.Job, name: str) -> datetime | None:
    if not message.HasField(name):  # type: ignore[arg-type]
        return None
    stamp: Timestamp = getattr(message, name)
    return stamp.ToDatetime(tzinfo=UTC)


def encode_job(job: Job) -> bytes:
    """Serialize a job (payload included) as a ``conveyor.v1.Job`` envelope."""
    message = job_pb2.Job(
        id=job.id,
        type=job.type,
        queue=job.queue,
        payload=job.payload_bytes,
        parent_id=job.parent_id or "",
        predecessor_id=job.predecessor_id or "",
        heir_condition=_WHEN[job.when] if job.when else job_pb2.HEIR_CONDITION_UNSPECIFIED,
        optional=job.optional,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        timeout_seconds=job.timeout or 0.0,
        priority=job.priority,
        last_error=job.last_error or "",
        state=_STATES[job.state],
        headers=dict(job.headers),
        lease_token=job.lease_token,
        lost_count=job.lost_count,
        open_children=job.open_children,
        failed_ids=list(job.failed_ids),
        reason=job.reason or "",
        failed_child_id=job.failed_child_id or "",
        predecessor_state=(
            _STATES[job.predecessor_state]
            if job.predecessor_state
            else job_pb2.JOB_STATE_UNSPECIFIED
        ),
        predecessor_failed_ids=list(job.predecessor_failed_ids),
        worker_id=job.worker_id or "",
    )
    _stamp(job.run_at, message.run_at)
    _stamp(job.created_at, message.created_at)
    _stamp(job.started_at, message.started_at)
    _stamp(job.finished_at, message.finished_at)
    return message.SerializeToString()


def decode_job(data: bytes) -> Job:
    """Parse a ``conveyor.v1.Job`` envelope.

    Raises:
        PayloadDecodeError: the bytes are not an envelope, or name no known state.
    """
    message = job_pb2.Job()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise PayloadDecodeError(f"not a conveyor.v1.Job envelope: {exc}") from exc
    if not message.id or message.state not in _STATES_BACK:
        raise PayloadDecodeError("not a conveyor.v1.Job envelope: missing id or state")
    return Job(
        id=message.id,
        type=message.type,
        queue=message.queue,
        state=_STATES_BACK[message.state],
        payload_bytes=message.payload,
        priority=message.priority,
        attempt=message.attempt,
        max_attempts=message.max_attempts,
        timeout=message.timeout_seconds or None,
        parent_id=message.parent_id or None,
        predecessor_id=message.predecessor_id or None,
        when=_WHEN_BACK.get(message.heir_condition),
        optional=message.optional,
        headers=dict(message.headers),
        last_error=message.last_error or None,
        created_at=_time(message, "created_at"),
        run_at=_time(message, "run_at"),
        started_at=_time(message, "started_at"),
        finished_at=_time(message, "finished_at"),
        lease_token=message.lease_token,
        worker_id=message.worker_id or None,
        lost_count=message.lost_count,
        open_children=message.open_children,
        failed_ids=tuple(message.failed_ids),
        reason=message.reason or None,
        failed_child_id=message.failed_child_id or None,
        predecessor_state=_STATES_BACK.get(message.predecessor_state),
        predecessor_failed_ids=tuple(message.predecessor_failed_ids),
    )
