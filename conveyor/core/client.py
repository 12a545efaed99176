"""``AsyncClient``: enqueue, inspect and steer jobs from async code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Self, Unpack

from . import tracing
from .backend_registry import open_storage
from .config import Config
from .errors import (
    BackendUnavailable,
    ConfigurationError,
    InvalidState,
    JobNotFound,
    PayloadTypeError,
)
from .explain import Explanation, explain
from .job import Job, JobSpec
from .payloads import type_name_of
from .plan import PlannedFamily, build_family
from .queues import QueueControls, QueueLimits, Rate
from .specs import EnqueueOptions, build_spec, initial_state, job_of, validate_queue
from .states import JobState
from .storage import JobFilter, Storage, TransactionalEnqueue, known_queue, set_paused

#: Jobs one page of ``purge`` reads at a time.
PURGE_PAGE = 500
#: Why ``purge`` cancelled a job.
PURGED = "queue purged"


def as_enqueued(
    specs: Sequence[JobSpec], ids: Sequence[str], holders: Mapping[str, Job | None]
) -> list[Job]:
    """What an enqueue returns: each job as created, or, where storage answered with
    another id, the holder of its key standing for it (rule 15; as it was, if pruned
    meanwhile), marked ``duplicate``."""
    jobs = []
    for spec, held_by in zip(specs, ids, strict=True):
        job = job_of(spec, initial_state(spec))
        if held_by != spec.id:
            job = (holders.get(held_by) or job.replace(id=held_by)).replace(duplicate=True)
        jobs.append(job)
    return jobs


class AsyncClient:
    """Produces and inspects jobs.

    Use it as an async context manager, or call ``connect()`` and ``aclose()``.
    A ``storage`` passed in stays the caller's to close; one the client opened
    from ``config.url`` is closed by ``aclose()``.

    Args:
        config: where jobs live; defaults to ``Config()``.
        storage: an already opened storage to use instead of ``config.url``.
    """

    def __init__(self, config: Config | None = None, *, storage: Storage | None = None) -> None:
        self.config = config or Config()
        self._storage = storage
        self._owns_storage = storage is None
        self._opening = asyncio.Lock()  # concurrent first calls open one storage, not several

    async def connect(self) -> Self:
        """Open the storage now (otherwise the first call opens it)."""
        await self.storage()
        return self

    async def storage(self) -> Storage:
        """The underlying storage, opened on first use."""
        if self._storage is None:
            async with self._opening:
                if self._storage is None:
                    self._storage = await open_storage(self.config)
        return self._storage

    async def aclose(self) -> None:
        """Close the storage if this client opened it."""
        if self._owns_storage and self._storage is not None:
            storage, self._storage = self._storage, None
            await storage.aclose()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def enqueue(
        self,
        message: object,
        *,
        connection: Any = None,
        **options: Unpack[EnqueueOptions],
    ) -> Job:
        """Enqueue one job; its type (and default queue) is the message's full name.

        Args:
            message: a protobuf message instance.
            connection: on PostgreSQL, your own SQLAlchemy ``AsyncConnection``
                inside a transaction: the job exists if and only if it commits.
            **options: see ``EnqueueOptions`` (queue, delay, run_at, max_attempts,
                timeout, priority, headers).

        Returns:
            The job as created; its ``id`` is final.

        Raises:
            PayloadTypeError, PayloadTooLarge, InvalidJobOptions: bad input; nothing stored.
            BackendUnavailable: storage could not be reached.
        """
        with tracing.producing(type_name_of(message), options.get("queue")) as carry:
            spec = build_spec(self.config, message, **tracing.with_headers(options, carry))
            [job] = await self._enqueue([spec], connection)
            tracing.sent(job)
        return job

    async def enqueue_many(
        self,
        messages: Iterable[object],
        *,
        connection: Any = None,
        **options: Unpack[EnqueueOptions],
    ) -> list[Job]:
        """Enqueue a batch in one atomic step (one round trip), with shared options.

        Every message is validated before anything is stored: one bad message
        stores none.

        Raises:
            PayloadTypeError: ``messages`` is not an iterable of protobuf messages.
            PayloadTooLarge, InvalidJobOptions: bad input; nothing stored.
            BackendUnavailable: storage could not be reached.
        """
        if not isinstance(messages, Iterable):  # e.g. one message instead of a list
            raise PayloadTypeError(
                f"enqueue_many takes an iterable of protobuf messages, not "
                f"{type(messages).__name__}; use enqueue for one message"
            )
        messages = list(messages)
        first = type_name_of(messages[0]) if messages else ""
        with tracing.producing(first, options.get("queue")) as carry:
            traced = tracing.with_headers(options, carry)
            specs = [build_spec(self.config, message, **traced) for message in messages]
            return await self._enqueue(specs, connection) if specs else []

    async def enqueue_family(
        self,
        root: object,
        *,
        children: Sequence[object] = (),
        heirs: Sequence[object] = (),
        connection: Any = None,
        **options: Unpack[EnqueueOptions],
    ) -> PlannedFamily:
        """Enqueue a job with the children and heirs it declares, and theirs, at once.

        ``children`` and ``heirs`` hold messages, or ``conveyor.Member``s that give a
        member its options and its own children and heirs. The family is accounted
        exactly as if each job had declared its members while it ran
        (``enqueue_child``/``enqueue_heir``): the root runs first; its children are
        released when it succeeds and its heirs when its family has settled, and so
        on down. The whole tree is stored with the root in one atomic enqueue; each
        job's worker stages its members at the start of every attempt, so a failed
        attempt's members are discarded and the next attempt's are the same jobs
        (same ids). ``options`` are the root's (a ``key`` too).

        Returns:
            The family: the root as stored, and every member with its final id
            (``held``; in storage once its declarer's attempt starts).

        Raises:
            InvalidJobOptions: a bad option, a ``key`` on a member, or more than
                ``conveyor.core.plan.MAX_PLANNED`` members.
            PayloadTypeError, PayloadTooLarge: a message cannot be a payload.
            BackendUnavailable: storage could not be reached. Nothing is stored on error.
        """
        with tracing.producing(type_name_of(root), options.get("queue")) as carry:
            traced = tracing.with_headers(options, carry)
            spec, family = build_family(self.config, root, children, heirs, traced)  # type: ignore[arg-type]
            [job] = await self._enqueue([spec], connection)
            tracing.sent(job)
        if job.duplicate:  # rule 15: the key's holder stands for the whole family
            return PlannedFamily(job)
        return replace(family, job=job)

    async def _enqueue(self, specs: list[JobSpec], connection: Any) -> list[Job]:
        """Store the specs; the jobs as created, or the holders of keys that were held."""
        storage = await self.storage()
        if connection is None:
            ids = await storage.enqueue(specs)
        elif isinstance(storage, TransactionalEnqueue):
            ids = await storage.enqueue_in(connection, specs)
        else:
            raise ConfigurationError(
                "enqueue(connection=...) joins a PostgreSQL transaction; the "
                f"{self.config.scheme} backend has none"
            )
        return as_enqueued(specs, ids, await self._holders(storage, specs, ids))

    @staticmethod
    async def _holders(
        storage: Storage, specs: Sequence[JobSpec], ids: Sequence[str]
    ) -> dict[str, Job | None]:
        """The jobs that hold the keys some of ``specs`` asked for (rule 15), by id."""
        held = {held_by for spec, held_by in zip(specs, ids, strict=True) if held_by != spec.id}
        return {job_id: await storage.get(job_id) for job_id in held}

    async def get(self, job_id: str) -> Job | None:
        """The job's current state, or ``None`` if there is no such job."""
        return await (await self.storage()).get(job_id)

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job that has not settled, with everything below it.

        Raises:
            JobNotFound: no such job.
            InvalidState: it has already settled.
        """
        return await (await self.storage()).cancel(job_id, "cancelled by request")

    async def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again, with fresh attempts, and re-open its
        family: ancestors that failed only because of it wait again, and heirs their
        failure cancelled are re-armed (``docs/rules.md`` rule 8).

        Raises:
            JobNotFound: no such job.
            InvalidState: it has not failed or been cancelled, its handler succeeded
                (retry the members that failed instead), or its family cannot be
                re-opened; the message says which. Nothing changed.
        """
        return await (await self.storage()).retry(job_id)

    async def retry_failed(self, root_id: str) -> list[Job]:
        """Retry, in one atomic step, every member of ``root_id``'s family (itself
        included) whose own handler failed for good.

        Returns:
            The jobs queued again (none if nothing had failed).

        Raises:
            JobNotFound: no such job.
        """
        return await (await self.storage()).retry_failed(root_id)

    async def pause(self, queue: str) -> None:
        """Stop every worker claiming from ``queue`` (``docs/rules.md`` rule 14).

        Enqueue still works, scheduled jobs still become due, and jobs already
        running finish; ``resume`` lets workers claim again at once.

        Raises:
            UnknownQueue: no job, worker or control names ``queue``; nothing changed.
        """
        await self._set_paused(queue, True)

    async def resume(self, queue: str) -> None:
        """Let workers claim from a paused queue again, waking those that wait.

        Raises:
            UnknownQueue: no job, worker or control names ``queue``; nothing changed.
        """
        await self._set_paused(queue, False)

    async def purge(self, queue: str) -> int:
        """Cancel every job of ``queue`` waiting to run (``queued`` or ``scheduled``),
        each with its family below it, as ``cancel`` does (reason ``queue purged``).

        Jobs running, held declarations and jobs enqueued meanwhile are left alone.
        One cancel per job: meant for an operator's clean-up, not a hot path.

        Returns:
            How many jobs it cancelled.

        Raises:
            UnknownQueue: no job, worker or control names ``queue``.
        """
        storage = await self.storage()
        await known_queue(storage, validate_queue(queue))
        cancelled = 0
        for state in (JobState.QUEUED, JobState.SCHEDULED):
            waiting = JobFilter(state=state, queue=queue)
            after: str | None = None
            while True:  # one pass, newest first: jobs enqueued meanwhile are newer
                page = await storage.list_jobs(waiting, after=after, limit=PURGE_PAGE)
                for job in page.jobs:
                    try:
                        await storage.cancel(job.id, PURGED)
                    except (InvalidState, JobNotFound):
                        continue  # it started, settled or went meanwhile
                    cancelled += 1
                if page.next_cursor is None:
                    break
                after = page.next_cursor
        return cancelled

    async def _set_paused(self, queue: str, paused: bool) -> None:
        await set_paused(await self.storage(), validate_queue(queue), paused)

    async def set_queue_limits(
        self, queue: str, *, max_running: int | None = None, rate: Rate | None = None
    ) -> QueueLimits:
        """Limit what all workers together take from ``queue`` (rule 14): at most
        ``max_running`` of its jobs running at once, claimed at most at ``rate``
        (e.g. ``Rate(50, per=1.0)``). ``None`` removes a limit; the call replaces
        both. Queues need not exist yet: limits may be set before the first job.

        Raises:
            InvalidLimits: a limit out of range; nothing changed.
            InvalidJobOptions: a queue name that cannot be one.
        """
        limits = QueueLimits(max_running=max_running, rate=rate)
        await (await self.storage()).limit_queue(validate_queue(queue), limits)
        return limits

    async def queue_controls(self) -> list[QueueControls]:
        """Every paused or limited queue and its controls."""
        return await (await self.storage()).queue_controls()

    async def explain(self, job_id: str) -> Explanation:
        """Why the job is in its state: ``.text`` for people, ``.waiting_for`` the ids it
        waits on (at most 1,000).

        Raises:
            JobNotFound: no such job.
        """
        return await explain(await self.storage(), job_id)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job settles and return it.

        Connection failures are retried until the deadline.

        Raises:
            JobNotFound: no such job.
            TimeoutError: it did not settle within ``timeout`` seconds.
            BackendUnavailable: storage was still unreachable at the deadline.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            try:
                job = await self.get(job_id)
            except BackendUnavailable:  # a blip: keep waiting until the deadline
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.25)
                continue
            if job is None:
                raise JobNotFound(job_id)
            if job.state.settled:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout}s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)
