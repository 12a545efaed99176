"""One in-process store: a ``MemoryState`` under one lock.

Every public method takes the lock once, so each transition (and each batch)
is atomic; the transitions themselves are in ``transitions.py``. Methods never
block on I/O, so holding a ``threading.Lock`` while they run is safe from any
thread or event loop; waiting for work happens outside the lock, in
``MemoryStorage.claim``.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

from conveyor.core.errors import JobNotFound
from conveyor.core.job import Job, JobSpec, Lease, to_datetime
from conveyor.core.queues import QueueControls, QueueLimits
from conveyor.core.states import JobState
from conveyor.core.storage import (
    Claimed,
    JobFilter,
    JobPage,
    MaintenanceReport,
    MinuteCount,
    Outcome,
    QueueStats,
    WorkerInfo,
)

from . import transitions
from ._state import COUNTER_MINUTES, InterruptListener, Listener, MemoryState

L = TypeVar("L")


class MemoryStore:
    """The state of one namespace and the lock that makes its transitions atomic."""

    def __init__(self, *, retention: float, failed_retention: float, max_lost: int) -> None:
        self._lock = threading.Lock()
        self._s = MemoryState(
            retention=retention, failed_retention=failed_retention, max_lost=max_lost
        )

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` (under the lock: it must not block) on every state change."""
        return self._subscribe(self._s.listeners, listener)

    def listen_interrupts(self, listener: InterruptListener) -> Callable[[], None]:
        """Call ``listener`` (under the lock) with each running attempt's lease as it
        is cancelled."""
        return self._subscribe(self._s.interrupt_listeners, listener)

    def _subscribe(self, listeners: list[L], listener: L) -> Callable[[], None]:
        with self._lock:
            listeners.append(listener)

        def unlisten() -> None:
            with self._lock:
                if listener in listeners:
                    listeners.remove(listener)

        return unlisten

    # --- transitions -----------------------------------------------------------------

    def enqueue(self, specs: Sequence[JobSpec]) -> list[str]:
        with self._lock:
            return transitions.enqueue(self._s, specs, time.time())

    def claim(
        self, worker_id: str, queues: Sequence[str], limit: int, lease: float
    ) -> tuple[list[Claimed], float | None]:
        with self._lock:
            return transitions.claim(self._s, worker_id, queues, limit, lease, time.time())

    def next_due(self) -> float | None:
        with self._lock:
            return self._s.scheduled[0][0] if self._s.scheduled else None

    def stage(self, lease: Lease, declarations: Sequence[JobSpec]) -> None:
        with self._lock:
            transitions.stage(self._s, lease, declarations, time.time())

    def record(self, outcomes: Sequence[Outcome]) -> list[bool]:
        with self._lock:
            return transitions.record(self._s, outcomes, time.time())

    def renew(self, leases: Sequence[Lease], lease: float) -> list[Lease]:
        with self._lock:
            return transitions.renew(self._s, leases, lease, time.time())

    def progress(self, lease: Lease, fraction: float, note: str | None) -> None:
        with self._lock:
            transitions.progress(self._s, lease, fraction, note, time.time())

    def maintain(self) -> MaintenanceReport:
        with self._lock:
            return transitions.maintain(self._s, time.time())

    def cancel(self, job_id: str, reason: str) -> Job:
        with self._lock:
            return transitions.cancel(self._s, job_id, reason, time.time())

    def retry(self, job_id: str) -> Job:
        with self._lock:
            return transitions.retry(self._s, job_id, time.time())

    def retry_failed(self, root_id: str) -> list[Job]:
        with self._lock:
            return transitions.retry_failed(self._s, root_id, time.time())

    def discard(self, job_id: str) -> Job:
        with self._lock:
            return transitions.discard(self._s, job_id)

    def pause_queue(self, queue: str, paused: bool) -> None:
        with self._lock:
            transitions.pause_queue(self._s, queue, paused)

    def limit_queue(self, queue: str, limits: QueueLimits) -> None:
        with self._lock:
            transitions.limit_queue(self._s, queue, limits, time.time())

    def queue_controls(self) -> list[QueueControls]:
        with self._lock:
            return [self._s.controls[q] for q in sorted(self._s.controls)]

    # --- workers -----------------------------------------------------------------------

    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        with self._lock:
            now = time.time()
            self._s.workers[info.id] = (replace(info, last_seen=now), now + ttl)
            minutes = self._s.worker_minutes
            minute = int(now // 60)
            for old in [m for m in minutes if m <= minute - COUNTER_MINUTES]:
                del minutes[old]
            minutes.setdefault(minute, set()).add(info.id)

    def remove_worker(self, worker_id: str) -> None:
        with self._lock:
            self._s.workers.pop(worker_id, None)

    # --- inspection ----------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._s.rows.get(job_id)
            return row.snapshot() if row else None

    def list_jobs(self, flt: JobFilter, after: str | None, limit: int) -> JobPage:
        with self._lock:
            rows = sorted(
                (r for r in self._s.rows.values() if flt.matches(r)),
                key=lambda r: r.id,
                reverse=True,
            )
        if after is not None:
            rows = [r for r in rows if r.id < after]
        page = rows[:limit]
        cursor = page[-1].id if len(rows) > limit else None
        return JobPage([r.snapshot() for r in page], cursor)

    def family(self, job_id: str) -> list[Job]:
        with self._lock:
            ids = [*self._s.children.get(job_id, ()), *self._s.heirs.get(job_id, ())]
            ids.extend(self._s.declarations.get(job_id, ()))
            seen: dict[str, Job] = {}
            for member in ids:
                row = self._s.rows.get(member)
                if row is not None and member not in seen:
                    seen[member] = row.snapshot()
            return list(seen.values())

    def children(self, job_id: str, open_only: bool, after: str | None, limit: int) -> JobPage:
        """A page of the jobs counting against ``job_id``, in release order; the cursor
        is a position in that order."""
        with self._lock:
            kids = self._s.children.get(job_id, [])
            start = int(after) if after else 0
            found: list[Job] = []
            position = start
            while position < len(kids) and len(found) < limit:
                row = self._s.rows.get(kids[position])
                position += 1
                if row is not None and not (open_only and row.state.settled):
                    found.append(row.snapshot())
            return JobPage(found, str(position) if position < len(kids) else None, len(kids))

    def family_tree(self, root_id: str, limit: int) -> list[Job]:
        with self._lock:
            s = self._s
            if root_id not in s.rows:
                raise JobNotFound(root_id)
            found, seen = [root_id], {root_id}
            for member in found:  # grows as it goes
                for below in (*s.children.get(member, ()), *s.heirs.get(member, ())):
                    if below in s.rows and below not in seen:
                        seen.add(below)
                        found.append(below)
            oldest = [root_id, *sorted(found[1:])][:limit]
            return [s.rows[job_id].snapshot() for job_id in oldest]

    def queue_stats(self) -> list[QueueStats]:
        with self._lock:
            counts: dict[str, dict[JobState, int]] = defaultdict(lambda: defaultdict(int))
            for row in self._s.rows.values():
                counts[row.queue][row.state] += 1
        return [QueueStats(q, dict(c)) for q, c in sorted(counts.items())]

    def oldest_queued(self) -> dict[str, float]:
        with self._lock:
            oldest: dict[str, float] = {}
            for row in self._s.rows.values():
                if row.state is JobState.QUEUED:
                    oldest[row.queue] = min(oldest.get(row.queue, row.ready_at), row.ready_at)
        return oldest

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            now = time.time()
            live = [info for info, until in self._s.workers.values() if until > now]
        return sorted(live, key=lambda w: w.id)

    def counters(self, minutes: int, type_name: str | None, queue: str | None) -> list[MinuteCount]:
        with self._lock:
            last = int(time.time() // 60)
            result = []
            for minute in range(last - minutes + 1, last + 1):
                key = "@" + queue if queue is not None else type_name or ""
                cells = self._s.counters.get(minute, {}).get(key, [0, 0, 0, 0])
                stamp = to_datetime(minute * 60.0)
                assert stamp is not None
                workers = 0
                if type_name is None and queue is None:
                    workers = len(self._s.worker_minutes.get(minute, ()))
                succeeded, retried, failed, repaired = cells
                result.append(MinuteCount(stamp, succeeded, retried, failed, workers, repaired))
            return result

    def publish_types(self, sets: Mapping[str, bytes]) -> None:
        with self._lock:
            self._s.descriptors.update(sets)

    def descriptor_sets(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._s.descriptors)
