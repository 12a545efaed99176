"""``Client``: the synchronous face of ``AsyncClient``, usable from any thread."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Self, Unpack

from . import portal
from .client import AsyncClient
from .config import Config
from .explain import Explanation
from .job import Job
from .plan import PlannedFamily
from .queues import QueueControls, QueueLimits, Rate
from .specs import EnqueueOptions


class Client:
    """Enqueue and inspect jobs from synchronous code.

    It drives an ``AsyncClient`` on a private event-loop thread, so it works
    in scripts, threads and web frameworks alike. Options are those of
    ``AsyncClient``.
    """

    def __init__(self, config: Config | None = None) -> None:
        self._async = AsyncClient(config)
        self.config = self._async.config

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
        """See ``AsyncClient.enqueue``."""
        return portal.run(self._async.enqueue(message, **options))

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
