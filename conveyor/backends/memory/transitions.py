"""The rulebook (``docs/rules.md``) carried out on a ``MemoryState``.

Each function is one transition or a step of one; ``MemoryStore`` calls them
with its lock held, so each call is atomic. The names and their order match
the Redis (``lua/transitions.lua``) and SQL (``sql/transitions.py``) executors.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import replace

from conveyor.core import rules
from conveyor.core.errors import InvalidState, JobNotFound, LeaseLost
from conveyor.core.job import Job, JobSpec, Lease, to_datetime
from conveyor.core.progress import Progress
from conveyor.core.queues import QueueControls, QueueLimits, next_token_in, refilled
from conveyor.core.queues import allowance as queue_allowance
from conveyor.core.states import JobState
from conveyor.core.storage import (
    Claimed,
    Failure,
    HandBack,
    MaintenanceReport,
    Outcome,
    Retry,
    Success,
    check_outcomes,
)

from ._rows import Row
from ._state import FAILED, REPAIRED, RETRIED, SUCCEEDED, MemoryState


def release(s: MemoryState, row: Row, now: float) -> None:
    """Rule 1 and 10: make a held (or returned) row runnable: queued, or scheduled if due later."""
    if row.run_at is not None and row.run_at > now:
        row.state = JobState.SCHEDULED
        s.push_scheduled(row, row.run_at)
    else:
        row.state = JobState.QUEUED
        s.push_ready(row, now)
    s.emit(row, now)


def holds(s: MemoryState, lease: Lease) -> Row | None:
    """Rule 6: the row, if it runs under exactly this lease."""
    row = s.rows.get(lease.job_id)
    if row is None or row.state is not JobState.RUNNING or row.lease_token != lease.token:
        return None
    return row


def discard_declarations(s: MemoryState, declarer: str) -> None:
    """Rule 2: declarations of an attempt that did not succeed never run."""
    for decl_id in s.declarations.pop(declarer, ()):
        s.rows.pop(decl_id, None)


def _insert_held(s: MemoryState, declarer: Row, specs: Sequence[JobSpec], now: float) -> None:
    staged = s.declarations[declarer.id]
    for spec in specs:
        if spec.id in s.rows:
            continue  # staged already by a call sent again
        row = Row.from_spec(spec, JobState.HELD, s.next_seq(), now, declared_by=declarer.id)
        s.rows[row.id] = row
        staged.append(row.id)


def take_key(s: MemoryState, spec: JobSpec | Row, now: float) -> str:
    """Rule 15: the id of the job holding the spec's key, the spec's own if it takes it."""
    assert spec.key is not None
    slot = (spec.queue, spec.key)
    holder, expires = s.keys.get(slot, (None, None))
    if holder is not None and holder in s.rows and (expires is None or expires > now):
        return holder
    s.keys[slot] = (spec.id, None)
    return spec.id


def free_key(s: MemoryState, row: Row, now: float) -> None:
    """Rule 15: a holder that settles keeps its key ``key_ttl`` longer, then frees it."""
    slot = (row.queue, row.key or "")
    if row.key is not None and s.keys.get(slot, ("",))[0] == row.id:
        if row.key_ttl:
            s.keys[slot] = (row.id, now + row.key_ttl)
        else:
            del s.keys[slot]


def enqueue(s: MemoryState, specs: Sequence[JobSpec], now: float) -> list[str]:
    """Rules 9 and 15: create top-level jobs; ids that exist already are skipped, and so
    are jobs whose key is held. Returns the id standing for each spec."""
    rules.check_new_jobs(specs)
    ids: list[str] = []
    for spec in specs:
        if spec.id not in s.rows and spec.key is not None:
            holder = take_key(s, spec, now)
            if holder != spec.id:
                ids.append(holder)
                continue
        ids.append(spec.id)
        if spec.id not in s.rows:
            row = Row.from_spec(spec, JobState.HELD, s.next_seq(), now)
            s.rows[row.id] = row
            release(s, row, now)
    return ids


def allowance(
    s: MemoryState, queues: Sequence[str], now: float
) -> tuple[dict[str, int | None], float | None]:
    """Rule 14: how many jobs a claim may take from each queue (``None``: no limit), and
    when to look again at a queue with ready jobs that its limits hold back."""
    allowed: dict[str, int | None] = {}
    look_again: float | None = None
    for queue in queues:
        controls = s.controls.get(queue)
        if controls is None:
            allowed[queue] = None
            continue
        limits = controls.limits
        running = 0
        if limits.max_running is not None:
            running = sum(s.rows[j].queue == queue for j in s.running)
        tokens = None
        if limits.rate is not None:
            tokens = refilled(*s.buckets[queue], limits.rate, now)
        allowed[queue] = n = queue_allowance(controls.paused, limits.max_running, running, tokens)
        if n == 0 and not controls.paused and s.ready.get(queue):
            wait = rules.LIMIT_POLL
            if limits.rate is not None and tokens is not None and tokens < 1:
                wait = next_token_in(tokens, limits.rate)
            look_again = min(look_again or math.inf, now + wait)
    return allowed, look_again


def claim(
    s: MemoryState, worker_id: str, queues: Sequence[str], limit: int, lease: float, now: float
) -> tuple[list[Claimed], float | None]:
    """Rules 6, 10 and 14: up to ``limit`` queued jobs, highest priority first, then ready
    order, within each queue's limits; and when to look again at a held-back queue."""
    promote_due(s, now)
    claimed: list[Claimed] = []
    allowed, look_again = allowance(s, queues, now)
    taken: dict[str, int] = {}
    heaps = {q: s.ready[q] for q in dict.fromkeys(queues) if s.ready.get(q) and allowed[q] != 0}
    while len(claimed) < limit and heaps:
        queue = min(heaps, key=lambda q: heaps[q][0])
        best = heaps[queue]
        _, _, job_id = heapq.heappop(best)
        if not best:
            del heaps[queue]
        row = s.rows.get(job_id)
        if row is None or row.state is not JobState.QUEUED:
            continue  # a stale entry: cancelled, or queued again further back
        taken[queue] = taken.get(queue, 0) + 1
        if taken[queue] == allowed[queue]:
            heaps.pop(queue, None)
        s.token += 1
        row.state = JobState.RUNNING
        row.attempt += 1
        row.lease_token = s.token
        row.lease_expires = now + lease
        row.worker_id = worker_id
        row.started_at = now
        s.running.add(row.id)
        s.emit(row, now)
        claimed.append(Claimed(row.snapshot(), Lease(row.id, row.lease_token)))
    for queue, n in taken.items():
        controls = s.controls.get(queue)
        if controls is not None and controls.limits.rate is not None:
            tokens, clock = s.buckets[queue]
            tokens = refilled(tokens, clock, controls.limits.rate, now)
            s.buckets[queue] = (tokens - n, max(now, clock))  # a clock set back stays put
    return claimed, look_again


def stage(s: MemoryState, lease: Lease, specs: Sequence[JobSpec], now: float) -> None:
    """Rule 1: store a running attempt's declarations, held."""
    row = holds(s, lease)
    if row is None:
        raise LeaseLost(lease.job_id)
    rules.check_declarations(specs, row.id)
    _insert_held(s, row, specs, now)


def renew(s: MemoryState, leases: Sequence[Lease], lease: float, now: float) -> list[Lease]:
    """Rule 6: extend the leases still held; returns the others."""
    lost: list[Lease] = []
    for held in leases:
        row = holds(s, held)
        if row is None:
            lost.append(held)
        else:
            row.lease_expires = now + lease
    return lost


def progress(s: MemoryState, lease: Lease, fraction: float, note: str | None, now: float) -> None:
    """Rule 6: store a running attempt's progress under its lease."""
    row = holds(s, lease)
    if row is None:
        raise LeaseLost(lease.job_id)
    at = to_datetime(now)
    assert at is not None
    row.progress = Progress(fraction, note, row.attempt, at)


def succeed(s: MemoryState, row: Row, success: Success, now: float) -> None:
    """Rule 1: release the attempt's children with its success; heirs stay held."""
    _insert_held(s, row, success.declarations, now)
    row.result_bytes, row.result_type = success.result, success.result_type
    released = 0
    for decl_id in s.declarations.pop(row.id, ()):
        decl = s.rows[decl_id]
        if decl.predecessor_id == row.id:
            s.heirs[row.id].append(decl_id)
        else:
            s.children[row.id].append(decl_id)
            if _takes_key(s, decl, now):
                release(s, decl, now)
                released += 1
    row.open_children += released
    s.clear_lease(row)
    if row.open_children == 0:
        settle(s, row, JobState.SUCCEEDED, now)
    else:
        row.state = JobState.WAITING
        s.emit(row, now)


def _takes_key(s: MemoryState, row: Row, now: float) -> bool:
    """Rule 15: a declaration being released takes its key; if another job holds it, the
    declaration settles cancelled as an optional duplicate instead (returns False)."""
    if row.key is None:
        return True
    holder = take_key(s, row, now)
    if holder == row.id:
        return True
    row.state = JobState.CANCELLED
    row.finished_at = now
    row.optional = True
    row.reason = rules.duplicate_reason(row.key, holder)
    s.emit(row, now)
    return False


def retry_later(s: MemoryState, row: Row, error: str, retry_at: float, now: float) -> None:
    """Rule 2: the attempt failed and another is due at ``retry_at``."""
    discard_declarations(s, row.id)
    s.clear_lease(row)
    row.last_error = error
    row.run_at = retry_at
    s.count(row, RETRIED, now)
    release(s, row, now)


def fail(s: MemoryState, row: Row, error: str, now: float) -> None:
    """Rule 3: the handler failed for good."""
    discard_declarations(s, row.id)
    row.last_error = error
    row.failed_ids = rules.merge_failed_ids(row.failed_ids, [row.id])
    settle(s, row, JobState.FAILED, now)


def hand_back(s: MemoryState, row: Row, now: float, run_at: float | None = None) -> None:
    """Rule 6: back unrun, the attempt not counted: queued, or scheduled at ``run_at``."""
    discard_declarations(s, row.id)
    s.clear_lease(row)
    row.attempt = max(row.attempt - 1, 0)
    row.run_at = run_at
    release(s, row, now)


def lose_lease(s: MemoryState, row: Row, now: float) -> bool:
    """Rule 6: the lease expired; returns whether the job failed for good ("worker lost")."""
    row.lost_count += 1
    if rules.lease_loss_fails(row.lost_count, s.max_lost):
        s.clear_lease(row)
        fail(s, row, rules.worker_lost(row.lost_count), now)
        return True
    hand_back(s, row, now)
    return False


def record(s: MemoryState, outcomes: Sequence[Outcome], now: float) -> list[bool]:
    """Rule 6: apply each outcome whose lease is still held; refuse the others."""
    check_outcomes(outcomes)
    accepted: list[bool] = []
    for outcome in outcomes:
        row = holds(s, outcome.lease)
        accepted.append(row is not None)
        if row is None:
            continue
        match outcome:
            case Success():
                succeed(s, row, outcome, now)
            case Retry(error=error, retry_at=retry_at):
                retry_later(s, row, error, retry_at, now)
            case Failure(error=error):
                fail(s, row, error, now)
            case HandBack(run_at=run_at):
                hand_back(s, row, now, run_at)
    return accepted


def settle(s: MemoryState, row: Row, state: JobState, now: float) -> None:
    """Rules 3-5: settle ``row``, release or cancel its heirs, and walk up its parents."""
    current: Row | None = row
    while current is not None:
        current.state = state
        current.finished_at = now
        s.clear_lease(current)
        if state is JobState.SUCCEEDED:
            s.count(current, SUCCEEDED, now)
        elif state is JobState.FAILED:
            s.count(current, FAILED, now)
        s.emit(current, now)
        free_key(s, current, now)
        release_heirs(s, current, state, now)
        parent = s.rows.get(current.parent_id) if current.parent_id else None
        if parent is None:
            return
        settles = close_child(s, parent, current, state)
        if settles is None:
            return
        current, state = parent, settles


def release_heirs(s: MemoryState, row: Row, state: JobState, now: float) -> None:
    """Rule 4: ``row`` settled as ``state``; each held heir runs or is cancelled.

    A released heir takes ``row``'s parent, so that parent's open count rises
    here, before ``close_child`` lowers it for ``row``.
    """
    parent = s.rows.get(row.parent_id) if row.parent_id else None
    for heir_id in s.heirs.get(row.id, ()):
        heir = s.rows[heir_id]
        if heir.state is not JobState.HELD:
            continue  # cancelled by a person while it was held
        heir.predecessor_state = state
        heir.predecessor_failed_ids = tuple(row.failed_ids)
        if rules.heir_runs(heir.when, state):
            if not _takes_key(s, heir, now):
                continue
            heir.parent_id = row.parent_id
            heir.optional = heir.optional or row.optional
            if parent is not None:
                s.children[parent.id].append(heir.id)
                if not parent.state.settled:  # one that stays failed after a repair: rule 8
                    parent.open_children += 1
            release(s, heir, now)
        else:
            heir.state = JobState.CANCELLED
            heir.finished_at = now
            heir.reason = rules.predecessor_reason(row.id, state)
            s.emit(heir, now)


def close_child(s: MemoryState, parent: Row, child: Row, state: JobState) -> JobState | None:
    """Rule 5: ``child`` settled as ``state``; returns how ``parent`` settles now, if it does."""
    if parent.state.settled:
        return None
    parent.open_children -= 1
    parent.failed_ids = rules.merge_failed_ids(parent.failed_ids, child.failed_ids)
    if rules.fails_parent(state, child.optional) and parent.failed_child_id is None:
        parent.failed_child_id = child.id
        parent.reason = rules.child_reason(child.id, state)
    if parent.state is not JobState.WAITING or parent.open_children > 0:
        return None
    return rules.settles_as(parent.failed_child_id)


def interrupt(s: MemoryState, row: Row) -> None:
    """Rule 12: tell the worker of a running attempt that was cancelled, at once."""
    held = Lease(row.id, row.lease_token)
    for listener in list(s.interrupt_listeners):
        listener(held)


def cancel(s: MemoryState, job_id: str, reason: str, now: float) -> Job:
    """Rule 3 and 12: cancel an open job and every open member below it."""
    row = _get(s, job_id)
    if row.state.settled:
        raise InvalidState(job_id, row.state, "cancel", "it has already settled")
    if row.state is JobState.HELD:
        declarer = s.rows.get(row.declared_by or "")
        if row.predecessor_id is None or (declarer and declarer.state is JobState.RUNNING):
            raise InvalidState(
                job_id,
                row.state,
                "cancel",
                "it is a declaration of an attempt still running; cancel the job that declared it",
            )
        # A held heir counts in no parent yet: it settles on its own.
        row.state = JobState.CANCELLED
        row.finished_at = now
        row.reason = reason
        s.emit(row, now)
        return row.snapshot()
    for member in _open_below(s, row):
        if member.state is JobState.RUNNING:
            interrupt(s, member)
        member.state = JobState.CANCELLED
        member.finished_at = now
        member.reason = rules.ancestor_cancelled(job_id)
        s.clear_lease(member)
        discard_declarations(s, member.id)
        s.emit(member, now)
    if row.state is JobState.RUNNING:
        interrupt(s, row)
    discard_declarations(s, row.id)
    row.reason = reason
    settle(s, row, JobState.CANCELLED, now)
    return row.snapshot()


def _open_below(s: MemoryState, root: Row) -> list[Row]:
    """Open members below ``root``: its children and, below them, their heirs too.

    ``root``'s own heirs are not below it: its settling settles them.
    """
    found: list[Row] = []
    stack = [root.id]
    while stack:
        node = stack.pop()
        heirs = s.heirs.get(node, ()) if node != root.id else ()
        for member_id in (*s.children.get(node, ()), *heirs):
            member = s.rows.get(member_id)
            if member is not None and not member.state.settled:
                found.append(member)
                stack.append(member.id)
    return found


def repair(s: MemoryState, ids: Sequence[str], now: float, *, strict: bool) -> list[Job]:
    """Rule 8: queue these failed members again and re-count their families upward.

    With ``strict``, the first member rule 8 refuses raises and nothing changes;
    otherwise such members are left out.
    """
    chosen: list[Row] = []
    for job_id in dict.fromkeys(ids):
        row = _get(s, job_id)
        why = _unrepairable(s, row)
        if why is None:
            chosen.append(row)
        elif strict:
            raise InvalidState(job_id, row.state, "retry", why)
    for row in chosen:
        row.attempt = 0
        row.lost_count = 0
        row.failed_ids = []
        row.reason = None
        row.failed_child_id = None
        row.finished_at = None
        row.run_at = None
        row.result_bytes = row.result_type = None
        release(s, row, now)
    frontier = {row.parent_id for row in chosen if row.parent_id}
    while frontier:  # children before parents: a parent may be re-counted twice, alike
        reopened = [p for p in (s.rows[pid] for pid in sorted(frontier)) if _recount(s, p, now)]
        frontier = {p.parent_id for p in reopened if p.parent_id}
    return [row.snapshot() for row in chosen]


def _unrepairable(s: MemoryState, row: Row) -> str | None:
    """Rule 8: why ``row`` cannot be repaired, or ``None``."""
    if row.state not in (JobState.FAILED, JobState.CANCELLED):
        return rules.NOT_FAILED
    if s.children.get(row.id):
        return rules.failed_by_family(row.state)
    if row.predecessor_id and not rules.released_heir(row.when, row.predecessor_state):
        return rules.NEVER_RELEASED
    parent_id = row.parent_id
    while parent_id:
        parent = s.rows.get(parent_id)
        if parent is None:
            return rules.family_pruned(parent_id)
        if parent.state is JobState.WAITING:
            return None
        if parent.state is not JobState.FAILED:
            return rules.ancestor_settled(parent_id, parent.state)
        parent_id = parent.parent_id
    return None


def _recount(s: MemoryState, parent: Row, now: float) -> bool:
    """Rule 8: re-count ``parent`` from its children; True if it went back to waiting."""
    kids = sorted((s.rows[k] for k in s.children.get(parent.id, ()) if k in s.rows), key=_id)
    settled = [k for k in kids if k.state.settled]
    failing = [k for k in settled if rules.fails_parent(k.state, k.optional)]
    open_children = len(kids) - len(settled)
    failed_ids: list[str] = []
    for kid in settled:
        failed_ids = rules.merge_failed_ids(failed_ids, kid.failed_ids)
    parent.failed_ids = failed_ids
    first = failing[0] if failing else None
    parent.failed_child_id = first.id if first else None
    parent.reason = rules.child_reason(first.id, first.state) if first else None
    if parent.state is JobState.WAITING:
        parent.open_children = open_children
    if parent.state is not JobState.FAILED or not rules.reopens(open_children, len(failing)):
        return False  # one that stays failed keeps the count it settled with: none open
    parent.open_children = open_children
    parent.state = JobState.WAITING
    parent.finished_at = None
    s.emit(parent, now)
    rearm_heirs(s, parent, now)
    return True


def rearm_heirs(s: MemoryState, row: Row, now: float) -> None:
    """Rule 8: ``row`` is open again; the heirs its failure cancelled are held again."""
    for heir_id in s.heirs.get(row.id, ()):
        heir = s.rows.get(heir_id)
        if (
            heir is not None
            and heir.state is JobState.CANCELLED
            and rules.cancelled_by_condition(heir.when, heir.predecessor_state)
        ):
            heir.state = JobState.HELD
            heir.finished_at = None
            heir.reason = None
            heir.predecessor_state = None
            heir.predecessor_failed_ids = ()
            s.emit(heir, now)


def retry(s: MemoryState, job_id: str, now: float) -> Job:
    """Rule 8: repair one member (refused with ``InvalidState`` when rule 8 says no)."""
    [job] = repair(s, [job_id], now, strict=True)
    return job


def retry_failed(s: MemoryState, root_id: str, now: float) -> list[Job]:
    """Rule 8: repair every member of the root's family, and of its heirs' families,
    whose own handler failed."""
    root = _get(s, root_id)
    members, seen = [root], {root_id}
    for member in members:  # grows as it goes: the family below, and the heirs' families
        for below in (*s.children.get(member.id, ()), *s.heirs.get(member.id, ())):
            if below in s.rows and below not in seen:
                seen.add(below)
                members.append(s.rows[below])
    failed = [m.id for m in members if m.state is JobState.FAILED and not s.children.get(m.id)]
    return repair(s, failed, now, strict=False)


def discard(s: MemoryState, job_id: str) -> Job:
    """Rule 12: delete a settled job and its family below it."""
    row = _get(s, job_id)
    if not row.state.settled:
        raise InvalidState(job_id, row.state, "discard", "it has not settled")
    job = row.snapshot()
    doomed = [job_id]
    for member in doomed:  # grows as it goes: the settled family below
        doomed.extend(s.children.get(member, ()))
    for member in doomed:
        s.forget(member)
    return job


def pause_queue(s: MemoryState, queue: str, paused: bool) -> None:
    """Rule 14: a paused queue is not claimed from; resuming it wakes workers."""
    controls = s.controls.get(queue, QueueControls(queue))
    _store_controls(s, replace(controls, paused=paused))


def limit_queue(s: MemoryState, queue: str, limits: QueueLimits, now: float) -> None:
    """Rule 14: replace a queue's limits; a new rate starts with a full bucket."""
    controls = s.controls.get(queue, QueueControls(queue))
    _store_controls(s, replace(controls, limits=limits))
    if limits.rate is None:
        s.buckets.pop(queue, None)
    elif limits.rate != controls.limits.rate:
        s.buckets[queue] = (float(limits.rate.limit), now)


def _store_controls(s: MemoryState, controls: QueueControls) -> None:
    """Keep a queue's controls while it is paused or limited, else forget them."""
    if controls.paused or controls.limits.limited:
        s.controls[controls.queue] = controls
    else:
        s.controls.pop(controls.queue, None)


def promote_due(s: MemoryState, now: float) -> int:
    """Rule 7 and 10: scheduled jobs whose time has come join the ready order."""
    promoted = 0
    while s.scheduled and s.scheduled[0][0] <= now:
        _, _, job_id = heapq.heappop(s.scheduled)
        row = s.rows.get(job_id)
        if row is None or row.state is not JobState.SCHEDULED or (row.run_at or 0) > now:
            continue  # a stale entry
        row.state = JobState.QUEUED
        s.push_ready(row, now)
        s.emit(row, now)
        promoted += 1
    return promoted


def prune(s: MemoryState, before: float, failed_before: float) -> int:
    """Rule 12: forget jobs settled at or before ``before``, or, for failed jobs, at or
    before ``failed_before``."""
    old = [
        r.id
        for r in s.rows.values()
        if r.state.settled
        and r.finished_at is not None
        and r.finished_at <= (failed_before if r.state is JobState.FAILED else before)
    ]
    for job_id in old:
        s.forget(job_id)
    return len(old)


def reconcile(s: MemoryState, now: float, limit: int) -> list[str]:
    """Rule 7: re-count a slice of waiting jobs and of held heirs; returns those repaired."""
    repaired: list[str] = []
    waiting = sorted(
        r.id for r in s.rows.values() if r.state is JobState.WAITING and r.id > s.reconciled_waiting
    )[:limit]
    s.reconciled_waiting = waiting[-1] if len(waiting) == limit else ""
    for job_id in waiting:
        row = s.rows[job_id]
        if row.state is not JobState.WAITING:
            continue  # settled by an earlier repair in this slice
        kids = [s.rows[k] for k in s.children.get(job_id, ()) if k in s.rows]
        open_children = sum(not k.state.settled for k in kids)
        if open_children == row.open_children:
            continue
        repaired.append(job_id)
        s.count(row, REPAIRED, now)
        row.open_children = open_children
        if open_children == 0:
            failing = [k.id for k in kids if rules.fails_parent(k.state, k.optional)]
            if failing and row.failed_child_id is None:
                row.failed_child_id = failing[0]
            settle(s, row, rules.settles_as(row.failed_child_id), now)
    held = sorted(
        r.id
        for r in s.rows.values()
        if r.state is JobState.HELD and r.predecessor_id and r.id > s.reconciled_held
    )[:limit]
    s.reconciled_held = held[-1] if len(held) == limit else ""
    for job_id in held:
        heir = s.rows[job_id]
        predecessor = s.rows.get(heir.predecessor_id or "")
        if heir.state is not JobState.HELD or predecessor is None:
            continue
        if not predecessor.state.settled or heir.id not in s.heirs.get(predecessor.id, ()):
            continue
        repaired.append(job_id)
        s.count(heir, REPAIRED, now)
        release_heirs(s, predecessor, predecessor.state, now)
    return repaired


def maintain(s: MemoryState, now: float) -> MaintenanceReport:
    """Rule 7: promote due jobs, recover expired leases, prune, reconcile, forget silent
    workers."""
    promoted = promote_due(s, now)
    recovered = 0
    lost: list[str] = []
    for job_id in [j for j in s.running if s.rows[j].lease_expires <= now]:
        if lose_lease(s, s.rows[job_id], now):
            lost.append(job_id)
        else:
            recovered += 1
    pruned = prune(s, now - s.retention, now - s.failed_retention)
    repaired = reconcile(s, now, rules.RECONCILE_BATCH)
    for worker_id in [w for w, (_, until) in s.workers.items() if until <= now]:
        del s.workers[worker_id]
    return MaintenanceReport(promoted, recovered, lost, pruned, repaired)


def _id(row: Row) -> str:
    return row.id


def _get(s: MemoryState, job_id: str) -> Row:
    row = s.rows.get(job_id)
    if row is None:
        raise JobNotFound(job_id)
    return row
