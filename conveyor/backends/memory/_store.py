"""One in-process store: the accounting rules of DESIGN.md section 4 under one lock.

Every public method takes the lock once, so each transition (and each batch)
is atomic. Methods never block on I/O, so holding a ``threading.Lock`` while
they run is safe from any thread or event loop; waiting for work happens
outside the lock, in ``MemoryStorage.claim``.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from conveyor.core.errors import InvalidState, JobNotFound, LeaseLost
from conveyor.core.job import Job, JobSpec, Lease
from conveyor.core.states import JobState, When
from conveyor.core.storage import (
    Claimed,
    Failure,
    JobEvent,
    JobFilter,
    JobPage,
    MaintenanceReport,
    MinuteCount,
    Outcome,
    QueueStats,
    Release,
    Retry,
    Success,
    WorkerInfo,
)

from ._rows import Row

Listener = Callable[[JobEvent], None]
_COUNTER_MINUTES = 24 * 60


class MemoryStore:
    """Jobs, queues, families, counters, workers and descriptors of one namespace."""

    def __init__(self, *, retention: float, max_lost: int) -> None:
        self.retention = retention
        self.max_lost = max_lost
        self._lock = threading.Lock()
        self._rows: dict[str, Row] = {}
        self._ready: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        self._scheduled: list[tuple[float, int, str]] = []
        self._running: set[str] = set()
        self._children: dict[str, list[str]] = defaultdict(list)
        self._heirs: dict[str, list[str]] = defaultdict(list)
        self._staged: dict[str, list[str]] = defaultdict(list)
        self._counters: dict[int, dict[str, list[int]]] = {}
        self._worker_minutes: dict[int, set[str]] = {}
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}
        self._descriptors: dict[str, bytes] = {}
        self._listeners: list[Listener] = []
        self._seq = 0
        self._token = 0

    # --- plumbing --------------------------------------------------------------

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` (under the lock: it must not block) on every state change."""
        with self._lock:
            self._listeners.append(listener)

        def unlisten() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unlisten

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _emit(self, row: Row, now: float) -> None:
        if not self._listeners:
            return
        event = JobEvent(row.id, row.type, row.queue, row.state, now)
        for listener in list(self._listeners):
            listener(event)

    def _count(self, row: Row, column: int, now: float) -> None:
        """Count a success (0), retry (1) or failure (2) in the minute's totals,
        and for the row's type and its queue (``@queue``)."""
        minute = int(now // 60)
        bucket = self._counters.get(minute)
        if bucket is None:
            bucket = self._counters[minute] = {}
            for old in [m for m in self._counters if m <= minute - _COUNTER_MINUTES]:
                del self._counters[old]
        for key in ("", row.type, "@" + row.queue):
            bucket.setdefault(key, [0, 0, 0])[column] += 1

    def _push_ready(self, row: Row) -> None:
        heapq.heappush(self._ready[row.queue], (-row.priority, row.seq, row.id))

    def _release(self, row: Row, now: float) -> None:
        """Make a held or re-armed row runnable: queued, or scheduled if it is due later."""
        if row.run_at is not None and row.run_at > now:
            row.state = JobState.SCHEDULED
            heapq.heappush(self._scheduled, (row.run_at, row.seq, row.id))
        else:
            row.state = JobState.QUEUED
            self._push_ready(row)
        self._emit(row, now)

    def _clear_lease(self, row: Row) -> None:
        self._running.discard(row.id)
        row.worker_id = None
        row.lease_expires = 0.0

    def _holds(self, lease: Lease) -> Row | None:
        row = self._rows.get(lease.job_id)
        if row is None or row.state is not JobState.RUNNING or row.lease_token != lease.token:
            return None
        return row

    def _discard_staged(self, declarer: str) -> None:
        """Rule 2: declarations of an attempt that did not succeed never run."""
        for decl_id in self._staged.pop(declarer, ()):
            self._rows.pop(decl_id, None)

    def _insert_held(self, declarer: Row, specs: Iterable[JobSpec], now: float) -> None:
        staged = self._staged[declarer.id]
        for spec in specs:
            if spec.id in self._rows:
                raise ValueError(f"job id {spec.id} already exists")
            if spec.parent_id != declarer.id and spec.predecessor_id != declarer.id:
                raise ValueError(f"declaration {spec.id} does not belong to job {declarer.id}")
            row = Row.from_spec(spec, JobState.HELD, self._next_seq(), now, declared_by=declarer.id)
            self._rows[row.id] = row
            staged.append(row.id)

    # --- the accounting rules ----------------------------------------------------

    def _settle(self, row: Row, state: JobState, now: float) -> None:
        """Rules 3-5: settle ``row``, release or cancel its heirs, and walk up its parents."""
        current: Row | None = row
        while current is not None:
            current.state = state
            current.finished_at = now
            self._clear_lease(current)
            if state is JobState.SUCCEEDED:
                self._count(current, 0, now)
            elif state is JobState.FAILED:
                self._count(current, 2, now)
            self._emit(current, now)
            # Heirs first: a released heir takes the parent, so the parent's open
            # count goes up before it comes down for ``current``.
            parent = self._rows.get(current.parent_id) if current.parent_id else None
            for heir_id in self._heirs.get(current.id, ()):
                heir = self._rows[heir_id]
                if heir.state is not JobState.HELD:
                    continue  # cancelled by a person while it was held
                heir.predecessor_state = state
                heir.predecessor_failed_ids = tuple(current.failed_ids)
                if heir.when is When.SETTLED or state is JobState.SUCCEEDED:
                    heir.parent_id = current.parent_id
                    heir.optional = heir.optional or current.optional
                    if parent is not None:
                        parent.open_children += 1
                        self._children[parent.id].append(heir.id)
                    self._release(heir, now)
                else:
                    heir.state = JobState.CANCELLED
                    heir.finished_at = now
                    heir.reason = f"predecessor {current.id} {state}"
                    self._emit(heir, now)
            if parent is None or parent.state.settled:
                return
            parent.open_children -= 1
            parent.add_failed(current.failed_ids)
            failed = state is not JobState.SUCCEEDED and not current.optional
            if failed and parent.failed_child_id is None:
                parent.failed_child_id = current.id
                parent.reason = f"child {current.id} {state}"
            if parent.state is not JobState.WAITING or parent.open_children > 0:
                return
            state = JobState.FAILED if parent.failed_child_id else JobState.SUCCEEDED
            current = parent

    def _succeed(self, row: Row, declarations: Sequence[JobSpec], now: float) -> None:
        """Rule 1: release the attempt's children with its success; heirs stay held."""
        self._insert_held(row, declarations, now)
        released = 0
        for decl_id in self._staged.pop(row.id, ()):
            decl = self._rows[decl_id]
            if decl.predecessor_id == row.id:
                self._heirs[row.id].append(decl_id)
            else:
                self._children[row.id].append(decl_id)
                self._release(decl, now)
                released += 1
        row.open_children += released
        self._clear_lease(row)
        if row.open_children == 0:
            self._settle(row, JobState.SUCCEEDED, now)
        else:
            row.state = JobState.WAITING
            self._emit(row, now)

    def _fail(self, row: Row, error: str, now: float) -> None:
        self._discard_staged(row.id)
        row.last_error = error
        row.add_failed([row.id])
        self._settle(row, JobState.FAILED, now)

    def _requeue(self, row: Row, now: float) -> None:
        """Back to queued without counting an attempt (lease lost or handed back)."""
        self._discard_staged(row.id)
        self._clear_lease(row)
        row.attempt = max(row.attempt - 1, 0)
        row.run_at = None
        self._release(row, now)

    def _promote_due(self, now: float) -> int:
        promoted = 0
        while self._scheduled and self._scheduled[0][0] <= now:
            _, _, job_id = heapq.heappop(self._scheduled)
            row = self._rows.get(job_id)
            if row is None or row.state is not JobState.SCHEDULED or (row.run_at or 0) > now:
                continue  # stale heap entry
            row.state = JobState.QUEUED
            self._push_ready(row)
            self._emit(row, now)
            promoted += 1
        return promoted

    # --- Storage operations --------------------------------------------------------

    def enqueue(self, specs: Sequence[JobSpec]) -> None:
        with self._lock:
            ids = {spec.id for spec in specs}
            if len(ids) != len(specs) or any(i in self._rows for i in ids):
                raise ValueError("job ids must be new and unique")
            for spec in specs:
                if spec.parent_id or spec.predecessor_id:
                    raise ValueError("only a running job declares children and heirs")
            now = time.time()
            for spec in specs:
                row = Row.from_spec(spec, JobState.QUEUED, self._next_seq(), now)
                self._rows[row.id] = row
                self._release(row, now)

    def take(
        self, worker_id: str, queues: Sequence[str], limit: int, lease: float
    ) -> list[Claimed]:
        with self._lock:
            now = time.time()
            self._promote_due(now)
            claimed: list[Claimed] = []
            heaps = [self._ready[q] for q in dict.fromkeys(queues) if self._ready.get(q)]
            while len(claimed) < limit and heaps:
                best = min(heaps, key=lambda h: h[0])
                _, _, job_id = heapq.heappop(best)
                if not best:
                    heaps.remove(best)
                row = self._rows.get(job_id)
                if row is None or row.state is not JobState.QUEUED:
                    continue  # stale heap entry
                self._token += 1
                row.state = JobState.RUNNING
                row.attempt += 1
                row.lease_token = self._token
                row.lease_expires = now + lease
                row.worker_id = worker_id
                row.started_at = now
                self._running.add(row.id)
                self._emit(row, now)
                claimed.append(Claimed(row.snapshot(), Lease(row.id, row.lease_token)))
            return claimed

    def next_due(self) -> float | None:
        with self._lock:
            return self._scheduled[0][0] if self._scheduled else None

    def stage(self, lease: Lease, declarations: Sequence[JobSpec]) -> None:
        with self._lock:
            row = self._holds(lease)
            if row is None:
                raise LeaseLost(lease.job_id)
            self._insert_held(row, declarations, time.time())

    def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        with self._lock:
            now = time.time()
            accepted: list[bool] = []
            for outcome in outcomes:
                row = self._holds(outcome.lease)
                accepted.append(row is not None)
                if row is None:
                    continue
                match outcome:
                    case Success(declarations=declarations):
                        self._succeed(row, declarations, now)
                    case Retry(error=error, retry_at=retry_at):
                        self._discard_staged(row.id)
                        self._clear_lease(row)
                        row.last_error = error
                        row.run_at = retry_at
                        self._count(row, 1, now)
                        self._release(row, now)
                    case Failure(error=error):
                        self._fail(row, error, now)
                    case Release():
                        self._requeue(row, now)
            return accepted

    def renew(self, leases: Sequence[Lease], lease: float) -> list[Lease]:
        with self._lock:
            now = time.time()
            lost: list[Lease] = []
            for held in leases:
                row = self._holds(held)
                if row is None:
                    lost.append(held)
                else:
                    row.lease_expires = now + lease
            return lost

    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        with self._lock:
            now = time.time()
            self._workers[info.id] = (replace(info, last_seen=now), now + ttl)
            minute = int(now // 60)
            for old in [m for m in self._worker_minutes if m <= minute - _COUNTER_MINUTES]:
                del self._worker_minutes[old]
            self._worker_minutes.setdefault(minute, set()).add(info.id)

    def remove_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def maintain(self) -> MaintenanceReport:
        with self._lock:
            now = time.time()
            promoted = self._promote_due(now)
            recovered = 0
            lost: list[str] = []
            for job_id in [j for j in self._running if self._rows[j].lease_expires <= now]:
                row = self._rows[job_id]
                row.lost_count += 1
                if row.lost_count > self.max_lost:
                    self._clear_lease(row)
                    lost.append(job_id)
                    self._fail(row, f"worker lost: lease expired {row.lost_count} times", now)
                else:
                    recovered += 1
                    self._requeue(row, now)
            pruned = self._prune(now - self.retention)
            for worker_id in [w for w, (_, until) in self._workers.items() if until <= now]:
                del self._workers[worker_id]
            return MaintenanceReport(promoted, recovered, lost, pruned)

    def _prune(self, before: float) -> int:
        old = [
            r.id
            for r in self._rows.values()
            if r.state.settled and r.finished_at is not None and r.finished_at <= before
        ]
        for job_id in old:
            self._forget(job_id)
        return len(old)

    def _forget(self, job_id: str) -> None:
        """Drop a settled job's row and its place in family indexes."""
        row = self._rows.pop(job_id, None)
        self._children.pop(job_id, None)
        self._heirs.pop(job_id, None)
        if row is not None and row.parent_id and row.parent_id in self._children:
            siblings = self._children[row.parent_id]
            if job_id in siblings:
                siblings.remove(job_id)

    def discard(self, job_id: str) -> Job:
        with self._lock:
            row = self._get_row(job_id)
            if not row.state.settled:
                raise InvalidState(job_id, row.state, "discard", "it has not settled")
            job = row.snapshot()
            doomed = [job_id]
            for member in doomed:  # grows as it goes: the settled family below
                doomed.extend(self._children.get(member, ()))
            for member in doomed:
                self._forget(member)
            return job

    def cancel(self, job_id: str, reason: str) -> Job:
        with self._lock:
            row = self._get_row(job_id)
            if row.state.settled:
                raise InvalidState(job_id, row.state, "cancel", "it has already settled")
            now = time.time()
            if row.state is JobState.HELD:
                declarer = self._rows.get(row.declared_by or "")
                if row.predecessor_id is None or (declarer and declarer.state is JobState.RUNNING):
                    raise InvalidState(
                        job_id,
                        row.state,
                        "cancel",
                        "it is a declaration of an attempt still "
                        "running; cancel the job that declared it",
                    )
                # A held heir counts in no parent yet: it settles on its own.
                row.state = JobState.CANCELLED
                row.finished_at = now
                row.reason = reason
                self._emit(row, now)
                return row.snapshot()
            for descendant in self._open_descendants(row):
                descendant.state = JobState.CANCELLED
                descendant.finished_at = now
                descendant.reason = f"ancestor {job_id} cancelled"
                self._clear_lease(descendant)
                self._discard_staged(descendant.id)
                self._emit(descendant, now)
            self._discard_staged(row.id)
            row.reason = reason
            self._settle(row, JobState.CANCELLED, now)
            return row.snapshot()

    def _open_descendants(self, root: Row) -> list[Row]:
        """Unsettled members below ``root``: its children and, below them, their heirs too.

        ``root``'s own heirs are not below it: they are settled by its settling.
        """
        found: list[Row] = []
        stack = [root.id]
        while stack:
            node = stack.pop()
            heirs = self._heirs.get(node, ()) if node != root.id else ()
            for child_id in (*self._children.get(node, ()), *heirs):
                child = self._rows.get(child_id)
                if child is not None and not child.state.settled:
                    found.append(child)
                    stack.append(child.id)
        return found

    def retry(self, job_id: str) -> Job:
        with self._lock:
            row = self._get_row(job_id)
            if row.state not in (JobState.FAILED, JobState.CANCELLED):
                raise InvalidState(job_id, row.state, "retry", "only failed or cancelled jobs")
            if (
                row.parent_id
                or row.predecessor_id
                or self._children.get(job_id)
                or self._heirs.get(job_id)
            ):
                raise InvalidState(
                    job_id,
                    row.state,
                    "retry",
                    "it belongs to a family; family repair is not supported yet",
                )
            now = time.time()
            row.attempt = 0
            row.lost_count = 0
            row.failed_ids = []
            row.reason = None
            row.failed_child_id = None
            row.finished_at = None
            row.run_at = None
            self._release(row, now)
            return row.snapshot()

    def _get_row(self, job_id: str) -> Row:
        row = self._rows.get(job_id)
        if row is None:
            raise JobNotFound(job_id)
        return row

    # --- inspection ----------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._rows.get(job_id)
            return row.snapshot() if row else None

    def list_jobs(self, flt: JobFilter, after: str | None, limit: int) -> JobPage:
        with self._lock:
            rows = sorted(
                (r for r in self._rows.values() if flt.matches(r)),
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
            ids = [*self._children.get(job_id, ()), *self._heirs.get(job_id, ())]
            ids.extend(self._staged.get(job_id, ()))
            seen: dict[str, Job] = {}
            for member in ids:
                row = self._rows.get(member)
                if row is not None and member not in seen:
                    seen[member] = row.snapshot()
            return list(seen.values())

    def queue_stats(self) -> list[QueueStats]:
        with self._lock:
            counts: dict[str, dict[JobState, int]] = defaultdict(lambda: defaultdict(int))
            for row in self._rows.values():
                counts[row.queue][row.state] += 1
        return [QueueStats(q, dict(c)) for q, c in sorted(counts.items())]

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            now = time.time()
            live = [info for info, until in self._workers.values() if until > now]
            running: dict[str, int] = defaultdict(int)
            for job_id in self._running:
                running[self._rows[job_id].worker_id or ""] += 1
        return sorted((replace(w, running=running[w.id]) for w in live), key=lambda w: w.id)

    def counters(self, minutes: int, type_name: str | None, queue: str | None) -> list[MinuteCount]:
        from conveyor.core.job import to_datetime

        with self._lock:
            last = int(time.time() // 60)
            result = []
            for minute in range(last - minutes + 1, last + 1):
                key = "@" + queue if queue is not None else type_name or ""
                cells = self._counters.get(minute, {}).get(key, [0, 0, 0])
                stamp = to_datetime(minute * 60.0)
                assert stamp is not None
                workers = 0
                if type_name is None and queue is None:
                    workers = len(self._worker_minutes.get(minute, ()))
                succeeded, retried, failed = cells
                result.append(MinuteCount(stamp, succeeded, retried, failed, workers))
            return result

    def publish_types(self, sets: Mapping[str, bytes]) -> None:
        with self._lock:
            self._descriptors.update(sets)

    def descriptor_sets(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._descriptors)
