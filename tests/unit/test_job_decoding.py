"""Building a ``Job`` without its dataclass ``__init__`` (``job_of_values``), and the
Redis decoder that does so: every stored field lands in its own attribute."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from conveyor.backends.redis._codec import job_from_hash
from conveyor.backends.redis.layout import FIELD
from conveyor.core.config import Backoff
from conveyor.core.job import Job, job_of_values
from conveyor.core.progress import Progress
from conveyor.core.states import JobState, When

JOB_ID = "019af8a0-1c2b-7def-8123-456789abcdef"  # a UUIDv7: its time is its creation


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


#: A job whose every field differs from its default and from the others.
EVERY_FIELD = Job(
    id=JOB_ID,
    type="examples.BasicJob",
    queue="mail",
    state=JobState.RUNNING,
    payload_bytes=b"\n\x04noop" * 20,  # over 64 bytes: stored in pieces
    priority=7,
    attempt=2,
    max_attempts=9,
    timeout=12.5,
    parent_id="parent-1",
    predecessor_id="pred-1",
    when=When.SETTLED,
    optional=True,
    headers={"trace": "abc"},
    last_error="boom",
    created_at=at(int("019af8a01c2b", 16) / 1000),
    run_at=at(1_765_000_001.5),
    started_at=at(1_765_000_002.25),
    finished_at=at(1_765_000_003.125),
    worker_id="w-1",
    lost_count=3,
    open_children=4,
    failed_ids=("c-1", "c-2"),
    reason="why not",
    failed_child_id="c-1",
    predecessor_state=JobState.FAILED,
    predecessor_failed_ids=("p-1",),
    result_bytes=b"r" * 70,
    result_type="examples.Result",
    backoff=Backoff(base=1.0, factor=3.0, cap=60.0, jitter=False),
    key="unique-1",
    plan=b"plan-bytes",
    root_id="root-1",
    progress=Progress(0.5, "half", 2, at(1_765_000_002.5)),
)


def stored(job: Job) -> dict[bytes, bytes]:
    """``job``'s hash in the layout's format (``layout.FIELD``; the contract suite
    covers what the scripts really write, through this same decoder)."""
    assert job.backoff is not None and job.progress is not None and job.when is not None

    def pieces(field: str, data: bytes) -> dict[str, bytes]:
        chunks = [data[i : i + 64] for i in range(0, len(data), 64)]
        return {FIELD[field] + (str(n) if n else ""): c for n, c in enumerate(chunks)}

    text = {
        "type": job.type,
        "queue": job.queue,
        "state": "r",
        "priority": str(job.priority),
        "attempt": str(job.attempt),
        "max_attempts": str(job.max_attempts),
        "timeout": str(job.timeout),
        "parent": job.parent_id,
        "predecessor": job.predecessor_id,
        "when": job.when.value,
        "optional": "1",
        "headers": '{"trace": "abc"}',
        "error": job.last_error,
        "run_at": "1765000001.5",
        "started": "1765000002.25",
        "finished": "1765000003.125",
        "worker": job.worker_id,
        "lost": str(job.lost_count),
        "open": str(job.open_children),
        "failed_ids": ",".join(job.failed_ids),
        "reason": job.reason,
        "failing_child": job.failed_child_id,
        "predecessor_state": JobState.FAILED.value,
        "predecessor_failed_ids": ",".join(job.predecessor_failed_ids),
        "result_type": job.result_type,
        "backoff": job.backoff.to_text(),
        "key": job.key,
        "progress": job.progress.to_text(),
        "root": job.root_id,
    }
    raw: dict[str, str | bytes] = {FIELD[k]: str(v) for k, v in text.items()}
    raw |= pieces("payload", job.payload_bytes)
    raw |= pieces("result", job.result_bytes or b"")
    raw[FIELD["plan"]] = (job.plan or b"").decode()
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in raw.items()}


def test_job_of_values_equals_the_dataclass_constructor() -> None:
    values = [getattr(EVERY_FIELD, f.name) for f in dataclasses.fields(Job)]
    built = job_of_values(*values)
    assert built == EVERY_FIELD
    assert [getattr(built, f.name) for f in dataclasses.fields(Job)] == values
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.attempt = 3  # type: ignore[misc]


def test_job_of_values_refuses_a_value_too_few_or_too_many() -> None:
    values = [getattr(EVERY_FIELD, f.name) for f in dataclasses.fields(Job)]
    with pytest.raises(ValueError, match="shorter"):
        job_of_values(*values[:-1])
    with pytest.raises(ValueError, match="longer"):
        job_of_values(*values, None)


def test_a_stored_hash_decodes_into_every_field() -> None:
    decoded = job_from_hash(JOB_ID, stored(EVERY_FIELD))
    for f in dataclasses.fields(Job):
        assert getattr(decoded, f.name) == getattr(EVERY_FIELD, f.name), f.name


def test_a_fresh_hash_decodes_to_the_defaults() -> None:
    fields = {b"t": b"examples.BasicJob", b"s": b"q", b"p": b"x"}
    decoded = job_from_hash(JOB_ID, fields)
    assert decoded == Job(
        id=JOB_ID,
        type="examples.BasicJob",
        queue="examples.BasicJob",
        state=JobState.QUEUED,
        payload_bytes=b"x",
        created_at=EVERY_FIELD.created_at,
    )
