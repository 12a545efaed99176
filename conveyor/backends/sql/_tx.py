"""One SQL transaction as the transitions see it: its connection, its clock, and
what it must announce or tally when it commits."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.core.job import JobSpec, Lease
from conveyor.core.states import JobState
from conveyor.core.storage import JobEvent

from .schema import SETTLED, Tables

# Counter rows keyed by queue are stored under this prefix (no protobuf type name has it).
QUEUE_KEY = "@"
SUCCEEDED, RETRIED, FAILED, REPAIRED = 0, 1, 2, 3  # columns of the per-minute counters


class Rec:
    """A job row as a plain object, so a transaction can carry changed copies of it."""

    def __init__(self, mapping: Mapping[Any, Any]) -> None:
        self.__dict__.update(mapping)

    def __getattr__(self, name: str) -> Any:  # declared for the type checker only
        raise AttributeError(name)

    def replace(self, **changes: Any) -> Rec:
        copy = Rec(self.__dict__)
        copy.__dict__.update(changes)
        return copy


@dataclass
class Tx:
    """One transaction: where it runs, its clock, and what to announce after commit."""

    conn: AsyncConnection
    t: Tables
    now: float
    postgres: bool
    max_lost: int = 0
    events: list[tuple[str, str, str, str]] = field(default_factory=list)
    counts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0]))
    wakes: set[str] = field(default_factory=set)
    settled: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    # Running attempts this transaction cancelled, announced on commit (rule 12).
    interrupts: list[Lease] = field(default_factory=list)

    def event(self, job_id: str, state: str, type_name: str, queue: str) -> None:
        self.events.append((job_id, state, type_name, queue))
        if state == "queued":
            self.wakes.add(queue)
        elif state in SETTLED:  # every way into a settled state passes here
            self.settled[queue, state] += 1

    def event_lines(self) -> list[str]:
        """This transaction's events in the format every backend broadcasts."""
        return [
            JobEvent(job_id, type_name, queue, JobState(state), self.now).to_line()
            for job_id, state, type_name, queue in self.events
        ]

    def unsettle(self, queue: str, state: str, n: int = 1) -> None:
        """``n`` jobs left a settled state (retried, discarded or pruned)."""
        self.settled[queue, state] -= n

    def count(self, row: Rec, column: int) -> None:
        """Count a success, retry, failure or repair for the row's type and queue."""
        self.counts[row.type][column] += 1
        self.counts[QUEUE_KEY + row.queue][column] += 1


def spec_row(
    spec: JobSpec, state: str, now: float, declared_by: str | None = None
) -> dict[str, Any]:
    """A job spec as a row of the jobs table."""
    return {
        "id": spec.id,
        "type": spec.type,
        "queue": spec.queue,
        "payload": spec.payload,
        "state": state,
        "priority": spec.priority,
        "run_at": spec.run_at,
        "max_attempts": spec.max_attempts,
        "timeout": spec.timeout,
        "headers": dict(spec.headers) or None,
        "parent_id": spec.parent_id,
        "predecessor_id": spec.predecessor_id,
        "heir_when": spec.when.value if spec.when else None,
        "optional": spec.optional,
        "declared_by": declared_by,
        "created_at": now,
        "backoff": spec.backoff.to_text() if spec.backoff else None,
        "unique_key": spec.key,
        "key_ttl": spec.key_ttl,
        "plan": spec.plan,
        "root_id": spec.root_id,
    }


def ids_of(text: str | None) -> list[str]:
    """A comma-separated id list as stored."""
    return text.split(",") if text else []


def text_of(ids: list[str]) -> str | None:
    return ",".join(ids) or None
