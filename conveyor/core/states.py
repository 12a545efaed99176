"""Job states and heir conditions."""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    """Where a job is in its life cycle (docs/rules.md, "Words")."""

    HELD = "held"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def settled(self) -> bool:
        """True for the three final states."""
        return self in _SETTLED


_SETTLED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class When(enum.StrEnum):
    """The condition under which an heir is released when its predecessor settles."""

    SUCCEEDED = "succeeded"
    """Only if the predecessor and its whole family succeeded (the default)."""
    SETTLED = "settled"
    """Whatever the outcome: succeeded, failed or cancelled."""
