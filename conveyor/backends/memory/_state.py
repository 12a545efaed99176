"""Everything one memory namespace holds, and the bookkeeping every transition shares.

``MemoryStore`` guards a ``MemoryState`` with its lock; the transitions in
``transitions.py`` change it only while that lock is held.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from conveyor.core.job import Lease
from conveyor.core.queues import QueueControls
from conveyor.core.storage import JobEvent, WorkerInfo

from ._rows import Row

Listener = Callable[[JobEvent], None]
InterruptListener = Callable[[Lease], None]
COUNTER_MINUTES = 24 * 60
SUCCEEDED, RETRIED, FAILED, REPAIRED = 0, 1, 2, 3  # columns of the per-minute counters


@dataclass
class MemoryState:
    """Jobs, queues, families, counters, workers and descriptors of one namespace."""

    retention: float
    failed_retention: float
    max_lost: int
    rows: dict[str, Row] = field(default_factory=dict)
    # Per queue, a heap of (-priority, ready sequence, id): rule 10's ready order.
    ready: dict[str, list[tuple[int, int, str]]] = field(default_factory=lambda: defaultdict(list))
    scheduled: list[tuple[float, int, str]] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    children: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    heirs: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    declarations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    counters: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    worker_minutes: dict[int, set[str]] = field(default_factory=dict)
    workers: dict[str, tuple[WorkerInfo, float]] = field(default_factory=dict)
    descriptors: dict[str, bytes] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)
    interrupt_listeners: list[InterruptListener] = field(default_factory=list)
    seq: int = 0
    token: int = 0
    # Rule 14: each controlled queue's controls, and its rate's bucket (tokens, when).
    controls: dict[str, QueueControls] = field(default_factory=dict)
    # Rule 15: (queue, key) -> the holder's id, and when the key expires (None: open).
    keys: dict[tuple[str, str], tuple[str, float | None]] = field(default_factory=dict)
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    # Where the reconciler's last slice ended, per kind (rule 7).
    reconciled_waiting: str = ""
    reconciled_held: str = ""

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def emit(self, row: Row, now: float) -> None:
        """Tell listeners (under the lock: they must not block) that ``row`` changed state."""
        if not self.listeners:
            return
        event = JobEvent(row.id, row.type, row.queue, row.state, now)
        for listener in list(self.listeners):
            listener(event)

    def count(self, row: Row, column: int, now: float) -> None:
        """Count a success, retry or failure in the minute's totals, and for the
        row's type and its queue (``@queue``)."""
        minute = int(now // 60)
        bucket = self.counters.get(minute)
        if bucket is None:
            bucket = self.counters[minute] = {}
            for old in [m for m in self.counters if m <= minute - COUNTER_MINUTES]:
                del self.counters[old]
        for key in ("", row.type, "@" + row.queue):
            bucket.setdefault(key, [0, 0, 0, 0])[column] += 1

    def push_ready(self, row: Row, now: float) -> None:
        """Queue ``row`` behind everything already ready at its priority (rule 10)."""
        row.ready_at = now
        heapq.heappush(self.ready[row.queue], (-row.priority, self.next_seq(), row.id))

    def push_scheduled(self, row: Row, run_at: float) -> None:
        heapq.heappush(self.scheduled, (run_at, self.next_seq(), row.id))

    def clear_lease(self, row: Row) -> None:
        self.running.discard(row.id)
        row.worker_id = None
        row.lease_expires = 0.0

    def forget(self, job_id: str) -> None:
        """Drop a settled job's row and its place in the family indexes."""
        row = self.rows.pop(job_id, None)
        if row is not None and row.key is not None:
            slot = (row.queue, row.key)
            if self.keys.get(slot, ("",))[0] == job_id:  # rule 15: pruned frees its key
                del self.keys[slot]
        self.children.pop(job_id, None)
        self.heirs.pop(job_id, None)
        if row is not None and row.parent_id and row.parent_id in self.children:
            siblings = self.children[row.parent_id]
            if job_id in siblings:
                siblings.remove(job_id)
