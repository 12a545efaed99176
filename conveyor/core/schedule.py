"""Periodic jobs: a cron expression, a message, and a job per tick, exactly once.

Every worker that has a schedule enqueues each of its ticks, and the job of a
tick has an id derived from the schedule's name and the tick's time. Storage
skips an id it already holds (``docs/rules.md`` rule 9), so however many
workers run the schedule, each tick makes one job, and no worker is a leader
that could be lost. Ticks that pass while no worker runs are skipped, unless
the schedule asks for a ``backfill`` window.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .errors import InvalidSchedule
from .job import JobSpec

#: The longest backfill a schedule may ask for.
MAX_BACKFILL = timedelta(days=7)


def zone(tz: str | tzinfo) -> tzinfo:
    """A time zone from its IANA name (or a ``tzinfo`` as is).

    Raises:
        InvalidSchedule: no such zone.
    """
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str) or not tz:
        raise InvalidSchedule(f"tz must be an IANA time zone name, got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"unknown time zone {tz!r} (e.g. 'UTC', 'Europe/Paris')") from None


def check_cron(cron: str, tz: tzinfo) -> None:
    """Raises ``InvalidSchedule`` for an expression cronsim cannot read."""
    if not isinstance(cron, str):
        raise InvalidSchedule(f"a cron expression is a string, got {cron!r}")
    try:
        CronSim(cron, datetime.now(tz))
    except CronSimError as exc:
        raise InvalidSchedule(f"invalid cron expression {cron!r}: {exc}") from None


def tick_id(name: str, tick: datetime) -> str:
    """The id of a tick's job: a UUIDv7 whose time is the tick's and whose other
    bits come from the schedule's name, so every worker derives the same one."""
    ms = int(tick.timestamp() * 1000)
    digest = int.from_bytes(hashlib.sha256(f"{name}\0{ms}".encode()).digest()[:10], "big")
    rand_a, rand_b = digest >> 68, digest & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


@dataclass(frozen=True, slots=True)
class Schedule:
    """One periodic job: ``spec`` (its id replaced per tick) at each tick of ``cron``."""

    name: str
    cron: str
    tz: tzinfo
    spec: JobSpec
    backfill: timedelta | None = None

    def ticks(self, after: datetime) -> Iterator[datetime]:
        """The ticks strictly after ``after``, in the schedule's zone."""
        return iter(CronSim(self.cron, after.astimezone(self.tz)))

    def next_tick(self, after: datetime) -> datetime:
        return next(self.ticks(after))

    def job_at(self, tick: datetime) -> JobSpec:
        """The job of one tick."""
        return dataclasses.replace(self.spec, id=tick_id(self.name, tick), run_at=None)

    def missed(self, now: datetime) -> list[datetime]:
        """The ticks inside the backfill window before ``now`` (none without one)."""
        if self.backfill is None:
            return []
        found = []
        for tick in self.ticks(now - self.backfill):
            if tick > now:
                break
            found.append(tick)
        return found

    def describe(self) -> dict[str, Any]:
        """What a worker publishes of it (``WorkerInfo.schedules``), for the admin."""
        return {
            "name": self.name,
            "cron": self.cron,
            "tz": str(self.tz),
            "type": self.spec.type,
            "queue": self.spec.queue,
        }


def next_run(cron: str, tz: str, now: datetime | None = None) -> datetime | None:
    """When a published schedule runs next (``None`` when it cannot be read here)."""
    try:
        return next(iter(CronSim(cron, (now or datetime.now(UTC)).astimezone(zone(tz)))))
    except (CronSimError, InvalidSchedule, StopIteration):
        return None


def explain(cron: str) -> str:
    """The expression in words ("Every 5 minutes"), or the expression itself."""
    try:
        return CronSim(cron, datetime.now(UTC)).explain()
    except Exception:  # explain covers less than the parser; fall back quietly
        return cron


def default_name(spec: JobSpec, cron: str, tz: tzinfo) -> str:
    """A name that is the same in every worker built from the same code and that
    differs for two schedules of the same type with other payloads or queues."""
    digest = hashlib.sha256(b"\0".join([spec.payload, spec.queue.encode()])).hexdigest()[:8]
    return f"{spec.type} {cron} {tz} {digest}"


__all__ = ["MAX_BACKFILL", "Schedule", "check_cron", "explain", "next_run", "tick_id", "zone"]
