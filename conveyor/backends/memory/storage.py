"""``MemoryStorage``: the Storage protocol over a process-wide ``MemoryStore``.

Every client and worker of one process that opens the same URL and namespace
shares one store, from any thread or event loop. Waiting for work and event
streams wake through ``loop.call_soon_threadsafe`` (``core/wakeup.py``), so a
store changed on one loop wakes a waiter on another.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Mapping, Sequence

from conveyor.core.config import Config
from conveyor.core.job import Job, JobSpec, Lease
from conveyor.core.queues import QueueControls, QueueLimits
from conveyor.core.states import JobState
from conveyor.core.storage import (
    CHILDREN_PAGE,
    FAMILY_TREE_LIMIT,
    Claimed,
    JobEvent,
    JobFilter,
    JobPage,
    MaintenanceReport,
    MinuteCount,
    Outcome,
    QueueStats,
    WorkerInfo,
)
from conveyor.core.wakeup import LocalSignal, earliest, stream, wait_for_work

from ._store import MemoryStore

_stores: dict[tuple[str, str], tuple[MemoryStore, LocalSignal]] = {}
_stores_lock = threading.Lock()


def _key(url: str, namespace: str) -> tuple[str, str]:
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest.rstrip('/')}", namespace


def _store_for(config: Config) -> tuple[MemoryStore, LocalSignal]:
    key = _key(config.url, config.namespace)
    with _stores_lock:
        found = _stores.get(key)
        if found is None:
            store = MemoryStore(
                retention=config.retention.total_seconds(),
                failed_retention=config.failed_retention.total_seconds(),
                max_lost=config.max_lost,
            )
            signal = LocalSignal()

            def wake_on_work(event: JobEvent) -> None:
                if event.state in (JobState.QUEUED, JobState.SCHEDULED):
                    signal.wake()

            store.listen(wake_on_work)
            found = _stores[key] = (store, signal)
        return found


def drop_store(url: str, namespace: str = "conveyor") -> None:
    """Forget a shared store (for test suites that create many)."""
    with _stores_lock:
        _stores.pop(_key(url, namespace), None)


class MemoryStorage:
    """In-process storage; a backend with every rule, for tests and single-process use."""

    def __init__(self, store: MemoryStore, signal: LocalSignal) -> None:
        self._store = store
        self._signal = signal

    @classmethod
    async def namespaces(cls, config: Config) -> list[str]:
        """The namespaces this process holds stores of at ``config.url``."""
        url = _key(config.url, config.namespace)[0]
        with _stores_lock:
            return [namespace for (at, namespace) in _stores if at == url]

    @classmethod
    async def open(cls, config: Config) -> MemoryStorage:
        """The storage shared by everything in this process with the same URL and namespace."""
        return cls(*_store_for(config))

    async def enqueue(self, jobs: Sequence[JobSpec]) -> list[str]:
        return self._store.enqueue(jobs)

    async def claim(
        self, worker_id: str, queues: Sequence[str], limit: int, lease: float, wait: float
    ) -> list[Claimed]:
        look_again: float | None = None

        async def take() -> list[Claimed]:
            nonlocal look_again
            claimed, look_again = self._store.claim(worker_id, queues, limit, lease)
            return claimed

        async def next_due() -> float | None:
            return earliest(self._store.next_due(), look_again)

        return await wait_for_work(self._signal, take, next_due, wait)

    async def stage(self, lease: Lease, declarations: Sequence[JobSpec]) -> None:
        self._store.stage(lease, declarations)

    async def record(self, outcomes: Sequence[Outcome]) -> list[bool]:
        return self._store.record(outcomes)

    async def renew(self, leases: Sequence[Lease], lease: float) -> list[Lease]:
        return self._store.renew(leases, lease)

    async def progress(self, lease: Lease, fraction: float, note: str | None) -> None:
        self._store.progress(lease, fraction, note)

    async def interrupts(self) -> AsyncIterator[Lease]:
        async for lease in stream(self._store.listen_interrupts):
            yield lease

    async def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        self._store.register_worker(info, ttl)

    async def remove_worker(self, worker_id: str) -> None:
        self._store.remove_worker(worker_id)

    async def maintain(self) -> MaintenanceReport:
        return self._store.maintain()

    async def cancel(self, job_id: str, reason: str = "cancelled") -> Job:
        return self._store.cancel(job_id, reason)

    async def retry(self, job_id: str) -> Job:
        return self._store.retry(job_id)

    async def retry_failed(self, root_id: str) -> list[Job]:
        return self._store.retry_failed(root_id)

    async def discard(self, job_id: str) -> Job:
        return self._store.discard(job_id)

    async def pause_queue(self, queue: str, paused: bool) -> None:
        self._store.pause_queue(queue, paused)
        self._signal.wake()

    async def limit_queue(self, queue: str, limits: QueueLimits) -> None:
        self._store.limit_queue(queue, limits)
        self._signal.wake()

    async def queue_controls(self) -> list[QueueControls]:
        return self._store.queue_controls()

    async def get(self, job_id: str) -> Job | None:
        return self._store.get(job_id)

    async def list_jobs(
        self, filter: JobFilter, *, after: str | None = None, limit: int = 50
    ) -> JobPage:
        return self._store.list_jobs(filter, after, limit)

    async def family(self, job_id: str) -> list[Job]:
        return self._store.family(job_id)

    async def children(
        self,
        job_id: str,
        *,
        open_only: bool = False,
        after: str | None = None,
        limit: int = CHILDREN_PAGE,
    ) -> JobPage:
        return self._store.children(job_id, open_only, after, limit)

    async def family_tree(self, root_id: str, *, limit: int = FAMILY_TREE_LIMIT) -> list[Job]:
        return self._store.family_tree(root_id, limit)

    async def queue_stats(self) -> list[QueueStats]:
        return self._store.queue_stats()

    async def oldest_queued(self) -> dict[str, float]:
        return self._store.oldest_queued()

    async def workers(self) -> list[WorkerInfo]:
        return self._store.workers()

    async def counters(
        self, minutes: int = 60, type: str | None = None, queue: str | None = None
    ) -> list[MinuteCount]:
        return self._store.counters(minutes, type, queue)

    async def events(self) -> AsyncIterator[JobEvent]:
        async for event in stream(self._store.listen):
            yield event

    async def publish_types(self, sets: Mapping[str, bytes]) -> None:
        self._store.publish_types(sets)

    async def descriptor_sets(self) -> dict[str, bytes]:
        return self._store.descriptor_sets()

    async def aclose(self) -> None:
        """Nothing to release: the store outlives this handle."""
