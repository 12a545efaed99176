"""The mutable rows the memory store keeps, and their public snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from conveyor.core.config import Backoff
from conveyor.core.job import Job, JobSpec, to_datetime
from conveyor.core.progress import Progress
from conveyor.core.states import JobState, When


@dataclass(slots=True)
class Row:
    id: str
    type: str
    queue: str
    payload: bytes
    state: JobState
    seq: int
    created_at: float
    priority: int = 0
    run_at: float | None = None
    max_attempts: int = 5
    timeout: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    parent_id: str | None = None
    predecessor_id: str | None = None
    when: When | None = None
    optional: bool = False
    declared_by: str | None = None
    attempt: int = 0
    last_error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    lease_token: int = 0
    lease_expires: float = 0.0
    worker_id: str | None = None
    lost_count: int = 0
    open_children: int = 0
    failed_ids: list[str] = field(default_factory=list)
    reason: str | None = None
    failed_child_id: str | None = None
    predecessor_state: JobState | None = None
    predecessor_failed_ids: tuple[str, ...] = ()
    result_bytes: bytes | None = None
    result_type: str | None = None
    backoff: Backoff | None = None
    key: str | None = None
    key_ttl: float | None = None
    progress: Progress | None = None
    plan: bytes | None = None
    root_id: str | None = None
    ready_at: float = 0.0  # when it last became queued (rule 10)

    @classmethod
    def from_spec(
        cls, spec: JobSpec, state: JobState, seq: int, now: float, declared_by: str | None = None
    ) -> Row:
        return cls(
            id=spec.id,
            type=spec.type,
            queue=spec.queue,
            payload=spec.payload,
            state=state,
            seq=seq,
            created_at=now,
            priority=spec.priority,
            run_at=spec.run_at,
            max_attempts=spec.max_attempts,
            timeout=spec.timeout,
            headers=dict(spec.headers),
            parent_id=spec.parent_id,
            predecessor_id=spec.predecessor_id,
            when=spec.when,
            optional=spec.optional,
            declared_by=declared_by,
            backoff=spec.backoff,
            key=spec.key,
            key_ttl=spec.key_ttl,
            plan=spec.plan,
            root_id=spec.root_id,
        )

    def snapshot(self) -> Job:
        return Job(
            id=self.id,
            type=self.type,
            queue=self.queue,
            state=self.state,
            payload_bytes=self.payload,
            priority=self.priority,
            attempt=self.attempt,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            parent_id=self.parent_id,
            predecessor_id=self.predecessor_id,
            when=self.when,
            optional=self.optional,
            headers=dict(self.headers),
            last_error=self.last_error,
            created_at=to_datetime(self.created_at),
            run_at=to_datetime(self.run_at),
            started_at=to_datetime(self.started_at),
            finished_at=to_datetime(self.finished_at),
            worker_id=self.worker_id,
            lost_count=self.lost_count,
            open_children=self.open_children,
            failed_ids=tuple(self.failed_ids),
            reason=self.reason,
            failed_child_id=self.failed_child_id,
            predecessor_state=self.predecessor_state,
            predecessor_failed_ids=self.predecessor_failed_ids,
            backoff=self.backoff,
            key=self.key,
            progress=self.progress,
            plan=self.plan,
            root_id=self.root_id,
            result_bytes=self.result_bytes,
            result_type=self.result_type,
        )
