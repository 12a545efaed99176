"""``JobContext``: what a handler gets besides its payload."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Unpack

from . import tracing
from .cancellation import Cancellation
from .errors import BackendError, LeaseLost, NotInJob
from .job import Job, JobSpec, Lease, Predecessor
from .joblog import JobLogger
from .progress import check_progress
from .specs import EnqueueOptions, Family, build_spec, job_of
from .states import JobState, When

if TYPE_CHECKING:
    from .client import AsyncClient
    from .storage import JobPage

log = logging.getLogger("conveyor.worker")

Stager = Callable[[Lease, Sequence[JobSpec]], Coroutine[Any, Any, None]]
Reporter = Callable[[Lease, float, str | None], Coroutine[Any, Any, None]]


class JobContext:
    """The running attempt: its job, a client, and the declarations it makes.

    ``enqueue_child`` and ``enqueue_heir`` only declare: children are released
    when the handler returns successfully, heirs when this job's whole family
    has settled. If the attempt fails, its declarations are discarded.
    Declarations are staged to storage in batches as they accumulate, so a
    job with a million children keeps the worker's memory bounded; a sync
    handler waits for each batch, an async handler's batches are written in
    the background whenever it awaits (``await ctx.flush()`` waits for them).

    ``cancelled`` is set when the attempt should stop (``Cancellation``), and
    ``progress`` reports how far it has got.
    """

    def __init__(
        self,
        *,
        job: Job,
        lease: Lease,
        client: AsyncClient,
        stage: Stager,
        stage_batch: int,
        loop: asyncio.AbstractEventLoop,
        report: Reporter,
    ) -> None:
        self.job = job
        self.client = client
        self._lease = lease
        self._stage = stage
        self._stage_batch = stage_batch
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._buffer: list[JobSpec] = []
        self._staging: set[asyncio.Task[None]] = set()
        self._last_staged: asyncio.Task[None] | None = None
        self._open = True
        self.peak_buffered = 0
        """The most declarations held in memory at once (for tests and tuning)."""
        self.cancelled = Cancellation(loop)
        self.log = JobLogger(logging.getLogger("conveyor.job"), job)
        """A logger whose records carry this job's id, type, queue, attempt and root."""
        self._report = report
        self._progress_next: tuple[float, str | None] | None = None
        self._progress_task: asyncio.Task[None] | None = None

    @property
    def predecessor(self) -> Predecessor | None:
        """In an heir: how its predecessor's family settled, and its children
        (``async for child in ctx.predecessor.children()``); otherwise ``None``."""
        job = self.job
        if job.predecessor_id is None or job.predecessor_state is None:
            return None
        return Predecessor(
            job.predecessor_id,
            job.predecessor_state,
            job.predecessor_failed_ids,
            _pages=self._children_pages,
        )

    async def _children_pages(self, job_id: str, *, after: str | None, limit: int) -> JobPage:
        storage = await self.client.storage()
        return await storage.children(job_id, after=after, limit=limit)

    def enqueue_child(
        self, message: object, *, optional: bool = False, **options: Unpack[EnqueueOptions]
    ) -> Job:
        """Declare a child, released when this attempt succeeds.

        This job then waits (``waiting``) until every child has settled, and
        fails if a child that is not ``optional`` fails or is cancelled.

        Raises:
            NotInJob: the attempt is over.
            PayloadTypeError, PayloadTooLarge, InvalidJobOptions: bad input.
        """
        family = Family(parent_id=self.job.id, optional=optional, root_id=self.job.family_root)
        return self._declare(message, family, options)

    def enqueue_heir(
        self, message: object, *, when: When = When.SUCCEEDED, **options: Unpack[EnqueueOptions]
    ) -> Job:
        """Declare an heir, released after this job and its whole family settle.

        With ``When.SUCCEEDED`` (the default) it runs only if the family
        succeeded, else it is cancelled; with ``When.SETTLED`` it always runs.
        A released heir takes this job's parent, so the parent waits for it.

        Raises:
            NotInJob: the attempt is over.
            PayloadTypeError, PayloadTooLarge, InvalidJobOptions: bad input.
        """
        family = Family(predecessor_id=self.job.id, when=When(when), root_id=self.job.family_root)
        return self._declare(message, family, options)

    def progress(self, fraction: float, note: str | None = None) -> None:
        """Report how far the attempt has got: ``fraction`` from 0 to 1, and a note.

        Returns at once, from a sync or an async handler: the report is written in
        the background, and reports made faster than storage takes them are merged
        (the latest wins). The last one is stored before the attempt's outcome.
        ``client.get(job_id).progress`` and the admin's job page show it.

        Raises:
            InvalidProgress: ``fraction`` is not from 0 to 1, or ``note`` is not a
                string of at most 1000 characters.
            NotInJob: the attempt is over.
        """
        report = check_progress(fraction, note)
        self._check_open()
        self._progress_next = report
        if threading.get_ident() == self._loop_thread:
            self._write_progress_soon()
        else:
            self._loop.call_soon_threadsafe(self._write_progress_soon)

    def _write_progress_soon(self) -> None:
        if self._progress_task is None or self._progress_task.done():
            self._progress_task = self._loop.create_task(self._write_progress())

    async def _write_progress(self) -> None:
        while self._progress_next is not None:
            (fraction, note), self._progress_next = self._progress_next, None
            try:
                await self._report(self._lease, fraction, note)
            except LeaseLost:
                return  # the attempt is over for storage; the worker learns it apart
            except BackendError as exc:
                log.warning("progress of job %s not stored: %s", self.job.id, exc)
                return

    async def flush(self) -> None:
        """Stage buffered declarations now and wait until every batch is stored.

        Raises:
            LeaseLost: this worker no longer holds the job.
        """
        self._check_open()
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self._stage_in_order(batch)
        await self._drain()

    def _declare(self, message: object, family: Family, options: EnqueueOptions) -> Job:
        self._check_open()
        traced = tracing.with_headers(options, tracing.carried())  # the family is one trace
        spec = build_spec(self.client.config, message, family=family, **traced)
        self._buffer.append(spec)
        self.peak_buffered = max(self.peak_buffered, len(self._buffer))
        if len(self._buffer) >= self._stage_batch:
            batch, self._buffer = self._buffer, []
            if threading.get_ident() == self._loop_thread:
                self._stage_in_order(batch)
            else:  # a sync handler's thread: wait, which bounds memory strictly
                asyncio.run_coroutine_threadsafe(
                    self._stage(self._lease, batch), self._loop
                ).result()
        return job_of(spec, JobState.HELD)

    def _stage_in_order(self, batch: list[JobSpec]) -> None:
        """Stage ``batch`` in the background, after the batch before it is stored.

        Batches sent at once could reach storage in either order (each takes a
        connection of its own), and the order of declarations is the order that
        siblings take a shared unique key in (rule 15) and join the ready order in
        (rule 10).
        """
        previous = self._last_staged

        async def stage() -> None:
            if previous is not None:
                await asyncio.wait({previous})
                if previous.cancelled() or previous.exception() is not None:
                    return  # staging failed (a lost lease): _drain raises that error
            await self._stage(self._lease, batch)

        task = self._loop.create_task(stage())
        self._last_staged = task
        self._staging.add(task)
        task.add_done_callback(self._staging.discard)

    def _check_open(self) -> None:
        if not self._open:
            raise NotInJob(
                f"job {self.job.id}'s attempt is over; enqueue_child and enqueue_heir "
                "work only while its handler runs (use ctx.client.enqueue for unrelated jobs)"
            )

    async def _drain(self) -> None:
        """Wait until no batch is being staged, then raise the first batch's error."""
        failed: BaseException | None = None
        while self._staging:
            pending = list(self._staging)
            await asyncio.wait(pending)
            for task in pending:
                error = task.exception() if not task.cancelled() else asyncio.CancelledError()
                failed = failed or error
        if failed is not None:
            raise failed

    async def _finish(self) -> list[JobSpec]:
        """End the attempt successfully: wait for staging and the last progress report,
        return what is left to send."""
        await self._drain()
        await self._last_progress()
        self._open = False
        rest, self._buffer = self._buffer, []
        return rest

    async def _last_progress(self) -> None:
        """Wait until the last progress report is stored (before the attempt's outcome,
        so that a failed job shows how far it got)."""
        if self._progress_next is not None:
            self._write_progress_soon()
        if self._progress_task is not None:
            await self._progress_task

    async def _close(self) -> None:
        """End the attempt: later declarations raise; staging in flight is let finish.

        A staging write is never cancelled mid-transaction (that can strand a
        database connection inside its transaction). It is fenced by the lease,
        so one that lands after a failed attempt's outcome is refused, and one
        that lands before it is discarded with the attempt.
        """
        self._open = False
        self._buffer = []
        pending = list(self._staging)
        if pending:
            await asyncio.wait(pending)
            for task in pending:
                if not task.cancelled():
                    task.exception()  # retrieved: a LeaseLost here changes nothing
