"""``Client``: the synchronous face of ``AsyncClient``, usable from any thread."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Self, Unpack

from . import portal, tracing
from .client import AsyncClient, as_enqueued
from .config import Config
from .explain import Explanation
from .job import Job
from .payloads import type_name_of
from .plan import PlannedFamily
from .queues import QueueControls, QueueLimits, Rate
from .specs import EnqueueOptions, build_spec
from .storage import BlockingEnqueue, BlockingEnqueuer, Storage


class Client:
    """Enqueue and inspect jobs from synchronous code.

    It drives an ``AsyncClient`` on a private event-loop thread, so it works
    in scripts, threads and web frameworks alike. Options are those of
    ``AsyncClient``.
    """

    def __init__(self, config: Config | None = None) -> None:
        self._async = AsyncClient(config)
        self.config = self._async.config
        # The storage's own blocking enqueue, if it has one, and the storage it is of.
        self._blocking: tuple[Storage, BlockingEnqueuer | None] | None = None

    def connect(self) -> Self:
        """Open the storage now (otherwise the first call opens it)."""
        portal.run(self._async.connect())
        return self

    def close(self) -> None:
        """Close the storage."""
        portal.run(self._async.aclose())

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def enqueue(
        self,
        message: object,
        **options: Unpack[EnqueueOptions],
    ) -> Job:
        """See ``AsyncClient.enqueue``.

        On a backend with a blocking enqueue of its own (Redis on one server), the
        enqueue runs in the calling thread, in its tracing context; otherwise on the
        portal loop.
        """
        storage, enqueue_now = self._blocking_enqueue()
        if enqueue_now is None:
            return portal.run(self._async.enqueue(message, **options))
        with tracing.producing(type_name_of(message), options.get("queue")) as carry:
            specs = [build_spec(self.config, message, **tracing.with_headers(options, carry))]
            ids = enqueue_now(specs)
            holders = (
                portal.run(self._async._holders(storage, specs, ids))
                if ids != [specs[0].id]
                else {}
            )
            [job] = as_enqueued(specs, ids, holders)
            tracing.sent(job)
        return job

    def _blocking_enqueue(self) -> tuple[Storage, BlockingEnqueuer | None]:
        """The open storage, and its blocking enqueue (``None``: it has none)."""
        storage = self._async._storage or portal.run(self._async.storage())
        known = self._blocking
        if known is None or known[0] is not storage:  # first call, or opened again
            enqueuer = storage.blocking_enqueuer() if isinstance(storage, BlockingEnqueue) else None
            known = self._blocking = (storage, enqueuer)
        return known

    def enqueue_many(
        self,
        messages: Iterable[object],
        **options: Unpack[EnqueueOptions],
    ) -> list[Job]:
        """See ``AsyncClient.enqueue_many``."""
        return portal.run(self._async.enqueue_many(list(messages), **options))

    def enqueue_family(
        self,
        root: object,
        *,
        children: Sequence[object] = (),
        heirs: Sequence[object] = (),
        **options: Unpack[EnqueueOptions],
    ) -> PlannedFamily:
        """See ``AsyncClient.enqueue_family``."""
        family = self._async.enqueue_family(root, children=children, heirs=heirs, **options)
        return portal.run(family)

    def get(self, job_id: str) -> Job | None:
        """See ``AsyncClient.get``."""
        return portal.run(self._async.get(job_id))

    def cancel(self, job_id: str) -> Job:
        """See ``AsyncClient.cancel``."""
        return portal.run(self._async.cancel(job_id))

    def retry(self, job_id: str) -> Job:
        """See ``AsyncClient.retry``."""
        return portal.run(self._async.retry(job_id))

    def retry_failed(self, root_id: str) -> list[Job]:
        """See ``AsyncClient.retry_failed``."""
        return portal.run(self._async.retry_failed(root_id))

    def pause(self, queue: str) -> None:
        """See ``AsyncClient.pause``."""
        portal.run(self._async.pause(queue))

    def resume(self, queue: str) -> None:
        """See ``AsyncClient.resume``."""
        portal.run(self._async.resume(queue))

    def purge(self, queue: str) -> int:
        """See ``AsyncClient.purge``."""
        return portal.run(self._async.purge(queue))

    def set_queue_limits(
        self, queue: str, *, max_running: int | None = None, rate: Rate | None = None
    ) -> QueueLimits:
        """See ``AsyncClient.set_queue_limits``."""
        return portal.run(self._async.set_queue_limits(queue, max_running=max_running, rate=rate))

    def queue_controls(self) -> list[QueueControls]:
        """See ``AsyncClient.queue_controls``."""
        return portal.run(self._async.queue_controls())

    def explain(self, job_id: str) -> Explanation:
        """See ``AsyncClient.explain``."""
        return portal.run(self._async.explain(job_id))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """See ``AsyncClient.wait``."""
        return portal.run(self._async.wait(job_id, timeout))
