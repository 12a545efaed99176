"""The Storage protocol: the whole contract between Conveyor and a backend.

Operations are semantic state transitions, batch-shaped so that a backend can
serve many jobs per round trip. Every transition is atomic in the backend's
own terms (one Lua script in Redis, one transaction in SQL, one lock in
memory), and every backend must pass ``tests/contract`` identically.

Times are epoch seconds (floats). Payloads are opaque bytes plus the type name;
only ``conveyor.core`` touches protobuf.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from . import rules
from .errors import UnknownQueue
from .job import Job, JobSpec, Lease
from .queues import QueueControls, QueueLimits
from .states import JobState

if TYPE_CHECKING:
    from .config import Config

T = TypeVar("T")

#: Children one ``Storage.children`` call returns by default.
CHILDREN_PAGE = 500
#: Jobs one ``Storage.family_tree`` call returns at most by default.
FAMILY_TREE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job handed to a worker, with the lease that fences its outcome."""

    job: Job
    lease: Lease


@dataclass(frozen=True, slots=True)
class Success:
    """The handler returned: release its children, keep its heirs held.

    ``declarations`` are those not yet staged with ``Storage.stage``;
    ``result`` is what the handler returned, serialized, as a ``result_type``.
    """

    lease: Lease
    declarations: Sequence[JobSpec] = ()
    result: bytes | None = None
    result_type: str | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """The attempt failed and another is due at ``retry_at``."""

    lease: Lease
    error: str
    retry_at: float


@dataclass(frozen=True, slots=True)
class Failure:
    """The handler failed for good: the job settles ``failed``."""

    lease: Lease
    error: str


@dataclass(frozen=True, slots=True)
class HandBack:
    """The job goes back unrun, the attempt not counted: queued again (shutdown), or
    scheduled at ``run_at`` (a snooze: the handler raised ``RetryIn``)."""

    lease: Lease
    run_at: float | None = None


Outcome = Success | Retry | Failure | HandBack


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A running worker, as registered and refreshed by its heartbeat."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: float
    last_seen: float = 0.0
    running: int = 0
    """Jobs the worker reported running (handlers in progress) at its last heartbeat
    (``docs/rules.md`` rule 13)."""
    schedules: tuple[Mapping[str, str], ...] = ()
    """The periodic jobs it enqueues (``Schedule.describe``): name, cron, tz, type, queue."""

    def to_dict(self) -> dict[str, Any]:
        """The registration as JSON-compatible data (``last_seen`` is the storage's own)."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "queues": list(self.queues),
            "concurrency": self.concurrency,
            "started_at": self.started_at,
            "running": self.running,
            "schedules": [dict(s) for s in self.schedules],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], last_seen: float) -> WorkerInfo:
        return cls(
            id=data["id"],
            host=data["host"],
            pid=data["pid"],
            queues=tuple(data["queues"]),
            concurrency=data["concurrency"],
            started_at=data["started_at"],
            last_seen=last_seen,
            running=data["running"],
            schedules=tuple(data.get("schedules", ())),
        )


@dataclass(frozen=True, slots=True)
class QueueStats:
    """How many jobs of one queue are in each state."""

    queue: str
    counts: Mapping[JobState, int]

    def count(self, state: JobState) -> int:
        return self.counts.get(state, 0)


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """Jobs that succeeded, were retried or failed during one minute, and the
    number of distinct workers that reported in during it."""

    minute: datetime
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    workers: int = 0
    repaired: int = 0
    """Accounting mismatches maintenance found and repaired (``docs/rules.md`` rule 7)."""


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A job entered ``state``."""

    job_id: str
    type: str
    queue: str
    state: JobState
    at: float

    def to_line(self) -> str:
        """The event as backends broadcast it (``docs/rules.md`` rule 13):
        ``id|state|at|type|queue``, the queue last because it may hold ``|``."""
        return f"{self.job_id}|{self.state.value}|{self.at!r}|{self.type}|{self.queue}"

    @classmethod
    def from_line(cls, line: str) -> JobEvent:
        """Parse ``to_line``'s format.

        Raises:
            ValueError: the line is not an event.
        """
        job_id, state, at, type_name, queue = line.split("|", 4)
        return cls(job_id, type_name, queue, JobState(state), float(at))


class _Filterable(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def state(self) -> JobState: ...
    @property
    def attempt(self) -> int: ...


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What ``Storage.list_jobs`` selects; ``None`` fields match anything."""

    state: JobState | None = None
    queue: str | None = None
    type: str | None = None
    id_prefix: str | None = None
    retrying: bool = False
    """Only jobs that have run before; with ``state=SCHEDULED``, the retries
    waiting out their back-off."""

    def matches(self, job: _Filterable) -> bool:
        """Whether a job (or a backend's row with the same attributes) is selected."""
        return (
            (self.state is None or job.state == self.state)
            and (self.queue is None or job.queue == self.queue)
            and (self.type is None or job.type == self.type)
            and (self.id_prefix is None or job.id.startswith(self.id_prefix))
            and (not self.retrying or job.attempt > 0)
        )


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of jobs, and the cursor for the next page (``None``: this was the last)."""

    jobs: list[Job]
    next_cursor: str | None = None
    total: int | None = None
    """How many there are in all, where the listing knows it cheaply (children)."""


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one maintenance step did."""

    promoted: int = 0
    recovered: int = 0
    lost: list[str] = field(default_factory=list)
    pruned: int = 0
    repaired: list[str] = field(default_factory=list)
    """Jobs whose accounting the reconciler found wrong and repaired."""


def check_outcomes(outcomes: Sequence[Outcome]) -> None:
    """Rule 9 for the declarations outcomes carry; called before any of them is applied.

    Raises:
        DuplicateJobId, ValueError: see ``rules.check_declarations``.
    """
    for outcome in outcomes:
        if isinstance(outcome, Success) and outcome.declarations:
            rules.check_declarations(outcome.declarations, outcome.lease.job_id)


async def known_queue(storage: Storage, queue: str) -> None:
    """Check that something names ``queue``: a job in it, a live worker on it, or a
    control of it.

    Raises:
        UnknownQueue: nothing does (a typo, or another namespace).
    """
    if any(s.queue == queue for s in await storage.queue_stats()):
        return
    if any(c.queue == queue for c in await storage.queue_controls()):
        return
    if any(queue in w.queues for w in await storage.workers()):
        return
    raise UnknownQueue(queue)


async def set_paused(storage: Storage, queue: str, paused: bool) -> None:
    """Pause or resume a queue that something names (rule 14).

    Raises:
        UnknownQueue: nothing names it; nothing changed.
    """
    await known_queue(storage, queue)
    await storage.pause_queue(queue, paused)


async def take_or_hand_back(
    take: Awaitable[tuple[list[Claimed], T]], storage: Storage
) -> tuple[list[Claimed], T]:
    """Run one claim round trip so that cancelling it never strands jobs.

    Cancelling a claim while it waits for work is harmless; cancelling it
    while the server is handing out leases would leave those jobs running
    under a lease nobody holds until it expires. So the round trip is
    shielded, and if the caller was cancelled meanwhile, what it took is
    handed back at once before the cancellation goes on.
    """
    task = asyncio.ensure_future(take)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        claimed, _ = await task
        if claimed:
            await storage.record([HandBack(c.lease) for c in claimed])
        raise


@runtime_checkable
class Storage(Protocol):
    """Persistence contract every backend satisfies structurally."""

    # --- producing and working -------------------------------------------------

    async def enqueue(self, jobs: Sequence[JobSpec]) -> list[str]:
        """Create top-level jobs, queued (or scheduled when ``run_at`` is later), atomically.

        Ids that exist already are skipped (rule 9 of ``docs/rules.md``), and so is a
        job whose key another job holds (rule 15). Returns, per spec, the id of the
        job that stands for it: its own, or the key's holder.

        Raises:
            DuplicateJobId: an id appears twice in ``jobs``; nothing was stored.
            ValueError: a spec has a parent or predecessor (only running jobs declare those).
        """
        ...

    async def claim(
        self, worker_id: str, queues: Sequence[str], limit: int, lease: float, wait: float
    ) -> list[Claimed]:
        """Claim up to ``limit`` queued jobs, highest priority first, then oldest.

        Blocks up to ``wait`` seconds for work when none is ready, woken by new
        work rather than by polling where the backend can push. Each claimed
        job is ``running`` with ``attempt`` incremented and a fresh fencing
        token valid for ``lease`` seconds.
        """
        ...

    async def stage(self, lease: Lease, declarations: Sequence[JobSpec]) -> None:
        """Store held declarations of a running attempt early, to bound worker memory.

        Raises:
            LeaseLost: the lease is stale; nothing was stored.
        """
        ...

    async def record(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Record attempt outcomes, each atomically with its whole family cascade.

        Returns, per outcome, whether it was accepted; an outcome whose lease
        is stale is refused and changes nothing.
        """
        ...

    async def renew(self, leases: Sequence[Lease], lease: float) -> list[Lease]:
        """Extend leases by ``lease`` seconds; returns the ones no longer held."""
        ...

    async def progress(self, lease: Lease, fraction: float, note: str | None) -> None:
        """Store how far a running attempt has got (``Job.progress``), stamped with
        storage's clock and the attempt's number.

        Raises:
            LeaseLost: the lease is stale; nothing was stored.
        """
        ...

    def interrupts(self) -> AsyncIterator[Lease]:
        """The leases of running attempts as they are cancelled (``docs/rules.md`` rule
        12), from the moment of subscription, so that their workers stop them at once.

        Best effort: a worker that misses one finds the lease gone at its next heartbeat.
        """
        ...

    async def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        """Record or refresh a worker; it disappears ``ttl`` seconds after its last refresh."""
        ...

    async def remove_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped."""
        ...

    async def maintain(self) -> MaintenanceReport:
        """Promote due scheduled jobs, recover expired leases, prune old settled jobs."""
        ...

    # --- steering ------------------------------------------------------------

    async def cancel(self, job_id: str, reason: str = "cancelled") -> Job:
        """Cancel an unsettled job and its unsettled descendants.

        Raises:
            JobNotFound: no such job.
            InvalidState: it has settled, or it is a declaration of an attempt still running.
        """
        ...

    async def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again with fresh attempts, re-opening its
        family (``docs/rules.md`` rule 8).

        Raises:
            JobNotFound: no such job.
            InvalidState: rule 8 refuses it (the message says why); nothing changed.
        """
        ...

    async def retry_failed(self, root_id: str) -> list[Job]:
        """Repair every member of the root's family whose own handler failed for good.

        Returns the jobs queued again.

        Raises:
            JobNotFound: no such root.
        """
        ...

    async def discard(self, job_id: str) -> Job:
        """Delete a settled job and its family below it now, as retention would later.

        Returns the job as it was. Counts and listings forget it at once.

        Raises:
            JobNotFound: no such job.
            InvalidState: it has not settled.
        """
        ...

    async def pause_queue(self, queue: str, paused: bool) -> None:
        """Pause a queue (claims skip it; enqueue, promotion and running jobs go on)
        or resume it, waking workers that wait for its work (``docs/rules.md`` rule 14)."""
        ...

    async def limit_queue(self, queue: str, limits: QueueLimits) -> None:
        """Replace a queue's limits, which every worker's claim obeys (rule 14); a new
        rate starts with a full bucket. ``QueueLimits()`` removes them."""
        ...

    async def queue_controls(self) -> list[QueueControls]:
        """Every queue that is paused or limited, sorted by name."""
        ...

    # --- inspecting ----------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        """One job, or ``None``."""
        ...

    async def list_jobs(
        self, filter: JobFilter, *, after: str | None = None, limit: int = 50
    ) -> JobPage:
        """Jobs matching ``filter``, newest first, after the cursor ``after``."""
        ...

    async def family(self, job_id: str) -> list[Job]:
        """The job's direct children (released heirs included) and its declared heirs."""
        ...

    async def children(
        self,
        job_id: str,
        *,
        open_only: bool = False,
        after: str | None = None,
        limit: int = CHILDREN_PAGE,
    ) -> JobPage:
        """One page of the jobs that count against ``job_id`` (its released children and
        the heirs released into it), in the order they were released; ``after`` is the
        previous page's opaque cursor. With ``open_only``, only those not settled."""
        ...

    async def family_tree(self, root_id: str, *, limit: int = FAMILY_TREE_LIMIT) -> list[Job]:
        """The root and every job reachable from it through children and heirs (the
        heirs of every member, released or not): the root first, then the oldest
        (ids are time-ordered), at most ``limit``.

        Raises:
            JobNotFound: no such root.
        """
        ...

    async def queue_stats(self) -> list[QueueStats]:
        """Per-queue counts by state, sorted by queue name."""
        ...

    async def oldest_queued(self) -> dict[str, float]:
        """Per queue with queued jobs (paused or not), when its longest-waiting queued
        job became queued: rule 10's ready time, in epoch seconds of storage's clock.
        The age of the oldest job, which a queue's latency alerts watch."""
        ...

    async def workers(self) -> list[WorkerInfo]:
        """Live workers, sorted by id."""
        ...

    async def counters(
        self, minutes: int = 60, type: str | None = None, queue: str | None = None
    ) -> list[MinuteCount]:
        """Per-minute counts for the last ``minutes`` minutes, oldest first.

        All jobs by default, or one ``type``'s, or one ``queue``'s; workers are
        counted only in the totals.
        """
        ...

    def events(self) -> AsyncIterator[JobEvent]:
        """State changes as they happen, from the moment of subscription."""
        ...

    async def publish_types(self, sets: Mapping[str, bytes]) -> None:
        """Store ``FileDescriptorSet`` bytes by message type name."""
        ...

    async def descriptor_sets(self) -> dict[str, bytes]:
        """Every published descriptor set by message type name."""
        ...

    async def aclose(self) -> None:
        """Release connections; the storage is unusable afterwards."""
        ...


@runtime_checkable
class TransactionalEnqueue(Protocol):
    """A backend that can enqueue inside the caller's own database transaction."""

    async def enqueue_in(self, connection: Any, jobs: Sequence[JobSpec]) -> list[str]:
        """Enqueue ``jobs`` on ``connection``, the caller's open transaction: they
        exist if and only if it commits. Returns what ``Storage.enqueue`` returns.

        Raises:
            ConfigurationError: ``connection`` is not one this backend can join.
        """
        ...


#: Stores new jobs from the calling thread, blocking: what ``Storage.enqueue`` does.
BlockingEnqueuer = Callable[[Sequence[JobSpec]], list[str]]


@runtime_checkable
class BlockingEnqueue(Protocol):
    """A backend that can also enqueue from a synchronous caller's own thread.

    ``Client``, the synchronous client, otherwise runs each call on its portal loop
    (``portal.py``): handing the call to that thread and the answer back costs about
    as much again as the enqueue's own round trip.
    """

    def blocking_enqueuer(self) -> BlockingEnqueuer | None:
        """A callable, safe from any thread, that does exactly what ``enqueue`` does,
        in one blocking round trip; ``None`` when this storage has none.

        Raises (the callable):
            What ``Storage.enqueue`` raises.
        """
        ...


class StorageFactory(Protocol):
    """What a backend class offers the registry."""

    @classmethod
    async def open(cls, config: Config) -> Storage:
        """Connect (and migrate when ``config.migrate``) and return a ready storage."""
        ...
