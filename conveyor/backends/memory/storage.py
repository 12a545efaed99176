"""``MemoryStorage``: the Storage protocol over a process-wide ``MemoryStore``.

Every client and worker of one process that opens the same URL and namespace
shares one store, from any thread or event loop. Waiting for work and event
streams wake through ``loop.call_soon_threadsafe``, so a store mutated on one
loop wakes a waiter on another.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from conveyor.core.config import Config
from conveyor.core.job import Job, JobSpec, Lease
from conveyor.core.states import JobState
from conveyor.core.storage import (
    Claimed,
    JobEvent,
    JobFilter,
    JobPage,
    MaintenanceReport,
    MinuteCount,
    Outcome,
    QueueStats,
    WorkerInfo,
    refuse_connection,
)

from ._store import MemoryStore

_EVENT_BUFFER = 10_000


class _Wakeup:
    """Wakes every waiter, whichever loop it waits on, when the store changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def add(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        return waiter

    def remove(self, waiter: tuple[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    def on_event(self, event: JobEvent) -> None:
        if event.state in (JobState.QUEUED, JobState.SCHEDULED):
            self.notify()

    def notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)


_stores: dict[tuple[str, str], tuple[MemoryStore, _Wakeup]] = {}
_stores_lock = threading.Lock()


def _key(url: str, namespace: str) -> tuple[str, str]:
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest.rstrip('/')}", namespace


def _store_for(config: Config) -> tuple[MemoryStore, _Wakeup]:
    key = _key(config.url, config.namespace)
    with _stores_lock:
        found = _stores.get(key)
        if found is None:
            store = MemoryStore(
                retention=config.retention.total_seconds(), max_lost=config.max_lost
            )
            wakeup = _Wakeup()
            store.listen(wakeup.on_event)
            found = _stores[key] = (store, wakeup)
        return found


def drop_store(url: str, namespace: str = "conveyor") -> None:
    """Forget a shared store (for test suites that create many)."""
    with _stores_lock:
        _stores.pop(_key(url, namespace), None)


class MemoryStorage:
    """In-process storage; a backend with every rule, for tests and single-process use."""

    def __init__(self, store: MemoryStore, wakeup: _Wakeup) -> None:
        self._store = store
        self._wakeup = wakeup

    @classmethod
    async def open(cls, config: Config) -> MemoryStorage:
        """The storage shared by everything in this process with the same URL and namespace."""
        return cls(*_store_for(config))

    async def enqueue(self, jobs: Sequence[JobSpec], *, connection: Any = None) -> None:
        refuse_connection(connection, "memory")
        self._store.enqueue(jobs)

    async def claim(
        self, worker_id: str, queues: Sequence[str], limit: int, lease: float, wait: float
    ) -> list[Claimed]:
        deadline = time.monotonic() + wait
        while True:
            waiter = self._wakeup.add()  # before looking, so no wake-up is missed
            try:
                claimed = self._store.take(worker_id, queues, limit, lease)
                remaining = deadline - time.monotonic()
                if claimed or remaining <= 0:
                    return claimed
                due = self._store.next_due()
                if due is not None:
                    remaining = min(remaining, max(due - time.time(), 0.0) + 0.001)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter[1].wait(), remaining)
            finally:
                self._wakeup.remove(waiter)

    async def stage(self, lease: Lease, declarations: Sequence[JobSpec]) -> None:
        self._store.stage(lease, declarations)

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        return self._store.settle(outcomes)

    async def renew(self, leases: Sequence[Lease], lease: float) -> list[Lease]:
        return self._store.renew(leases, lease)

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

    async def discard(self, job_id: str) -> Job:
        return self._store.discard(job_id)

    async def get(self, job_id: str) -> Job | None:
        return self._store.get(job_id)

    async def list_jobs(
        self, filter: JobFilter, *, after: str | None = None, limit: int = 50
    ) -> JobPage:
        return self._store.list_jobs(filter, after, limit)

    async def family(self, job_id: str) -> list[Job]:
        return self._store.family(job_id)

    async def queue_stats(self) -> list[QueueStats]:
        return self._store.queue_stats()

    async def workers(self) -> list[WorkerInfo]:
        return self._store.workers()

    async def counters(
        self, minutes: int = 60, type: str | None = None, queue: str | None = None
    ) -> list[MinuteCount]:
        return self._store.counters(minutes, type, queue)

    async def events(self) -> AsyncIterator[JobEvent]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[JobEvent] = asyncio.Queue(_EVENT_BUFFER)

        def deliver(event: JobEvent) -> None:
            def put() -> None:
                with contextlib.suppress(asyncio.QueueFull):  # a slow reader loses events
                    queue.put_nowait(event)

            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(put)

        unlisten = self._store.listen(deliver)
        try:
            while True:
                yield await queue.get()
        finally:
            unlisten()

    async def publish_types(self, sets: Mapping[str, bytes]) -> None:
        self._store.publish_types(sets)

    async def descriptor_sets(self) -> dict[str, bytes]:
        return self._store.descriptor_sets()

    async def aclose(self) -> None:
        """Nothing to release: the store outlives this handle."""
