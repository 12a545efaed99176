"""The job model shared by clients, workers, backends and the admin."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from google.protobuf.message import Message

from .config import Backoff
from .progress import Progress
from .states import JobState, When

if TYPE_CHECKING:
    from .storage import JobPage


def to_datetime(epoch: float | None) -> datetime | None:
    """Epoch seconds (as backends store them) to an aware UTC datetime."""
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """A job to create: what a client enqueues or a running job declares.

    Times are epoch seconds; ``run_at=None`` means as soon as it is released.
    A child has ``parent_id``; an heir has ``predecessor_id`` and ``when``.
    """

    id: str
    type: str
    queue: str
    payload: bytes
    run_at: float | None = None
    max_attempts: int = 5
    timeout: float | None = None
    priority: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    parent_id: str | None = None
    predecessor_id: str | None = None
    when: When | None = None
    optional: bool = False
    backoff: Backoff | None = None
    """This job's own wait between attempts, instead of its handler's or the config's."""
    key: str | None = None
    """A unique key in its queue (rule 15), held until it settles and ``key_ttl`` after."""
    key_ttl: float | None = None
    plan: bytes | None = None
    """The children and heirs a producer declared for it (``core/plan.py``): its
    worker stages them at the start of every attempt, as if its handler had."""
    root_id: str | None = None
    """The top-level job whose family this declaration belongs to (``None``: top-level)."""

    @property
    def is_heir(self) -> bool:
        return self.predecessor_id is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A snapshot of one job as storage last saw it.

    Attributes beyond the payload and its options (``open_children``,
    ``failed_ids``, ``reason``, ``failed_child_id``) are the accounting the
    rulebook (``docs/rules.md``) keeps with the job; the admin shows them.
    ``worker_id`` names the worker running the job, while it runs. The lease's
    fencing token is not part of a job: a worker holds it in its ``Lease``.
    """

    id: str
    type: str
    queue: str
    state: JobState
    payload_bytes: bytes = b""
    priority: int = 0
    attempt: int = 0
    max_attempts: int = 5
    timeout: float | None = None
    parent_id: str | None = None
    predecessor_id: str | None = None
    when: When | None = None
    optional: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    last_error: str | None = None
    created_at: datetime | None = None
    run_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_id: str | None = None
    lost_count: int = 0
    open_children: int = 0
    failed_ids: tuple[str, ...] = ()
    reason: str | None = None
    failed_child_id: str | None = None
    predecessor_state: JobState | None = None
    predecessor_failed_ids: tuple[str, ...] = ()
    result_bytes: bytes | None = None
    result_type: str | None = None
    backoff: Backoff | None = None
    key: str | None = None
    plan: bytes | None = None
    """The members its producer declared (``enqueue_family``), staged by each attempt."""
    root_id: str | None = None
    """The top-level job of its family (``None``: it is one); see ``family_root``."""
    progress: Progress | None = None
    """The last progress its handler reported (``ctx.progress``), by whichever attempt."""
    duplicate: bool = False
    """Set on what ``enqueue`` returns when the key was held: this is the holder."""

    @property
    def family_root(self) -> str:
        """The id of the top-level job its family hangs from: its own when it is one."""
        return self.root_id or self.id

    def payload(self) -> Message:
        """Decode the payload with the message class linked into this process.

        Raises:
            UnknownType: the payload's message type is not imported here.
            PayloadDecodeError: the bytes do not parse as that type.
        """
        from .payloads import decode_payload

        return decode_payload(self.type, self.payload_bytes)

    def result(self) -> Message | None:
        """Decode what the handler returned, or ``None`` when it returned nothing.

        Raises:
            UnknownType: the result's message type is not imported here.
            PayloadDecodeError: the stored bytes do not parse as that type.
        """
        if self.result_type is None or self.result_bytes is None:
            return None
        from .payloads import decode_payload

        return decode_payload(self.result_type, self.result_bytes)

    def replace(self, **changes: object) -> Job:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# Job's fields in declaration order, as the slot descriptors that write them.
_JOB_SLOTS = tuple(getattr(Job, f.name).__set__ for f in dataclasses.fields(Job))


def job_of_values(*values: object) -> Job:
    """A ``Job`` from every field's value, in declaration order, for a backend's decoder.

    The frozen dataclass's ``__init__`` sets each of the 35 fields through
    ``object.__setattr__``: about 40 % of what decoding a claimed Redis job cost a
    busy worker (4 of 10 µs). Writing the slots directly takes half as long. The
    values are positional, so a caller must follow ``dataclasses.fields(Job)``
    (tests/unit/test_job_decoding.py holds the Redis decoder to it).

    Raises:
        ValueError: not one value per field.
    """
    job = object.__new__(Job)
    for write, value in zip(_JOB_SLOTS, values, strict=True):
        write(job, value)
    return job


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim on a running job: the job and the fencing token of this claim."""

    job_id: str
    token: int


class ChildPages(Protocol):
    """Reads one page of a job's children (``Storage.children``)."""

    def __call__(self, job_id: str, *, after: str | None, limit: int) -> Awaitable[JobPage]: ...


@dataclass(frozen=True, slots=True)
class Predecessor:
    """What an heir learns about how its predecessor's family settled."""

    id: str
    state: JobState
    failed_ids: tuple[str, ...]
    _pages: ChildPages | None = field(default=None, repr=False, compare=False)

    async def children(self, page_size: int = 500) -> AsyncIterator[Job]:
        """The predecessor's children (the heirs released into it included), each as a
        ``Job`` with its ``state`` and ``result()``, in the order they were released.

        Read from storage a page at a time, so a family of 100,000 keeps memory bounded.
        """
        if self._pages is None:
            return
        after: str | None = None
        while True:
            page = await self._pages(self.id, after=after, limit=page_size)
            for job in page.jobs:
                yield job
            if page.next_cursor is None:
                return
            after = page.next_cursor
