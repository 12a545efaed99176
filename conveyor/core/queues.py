"""Queue controls: pause, and the limits every worker's claim obeys (``docs/rules.md`` rule 14)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import InvalidLimits

#: The longest rate period: a day.
MAX_PERIOD = 86400.0


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``limit`` claims per ``per`` seconds, as a token bucket: ``limit`` tokens
    at most, refilled evenly over ``per`` (a burst of ``limit``, then ``limit/per`` a
    second).

    Raises:
        InvalidLimits: ``limit`` is not a positive integer or ``per`` is not 0-86400 seconds.
    """

    limit: int
    per: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or not self.limit >= 1:
            raise InvalidLimits(f"rate limit must be a positive integer, got {self.limit!r}")
        if self.limit >= 2**31:
            raise InvalidLimits(f"rate limit must be below 2**31, got {self.limit}")
        per = self.per
        if isinstance(per, bool) or not isinstance(per, int | float):
            raise InvalidLimits(f"rate period must be seconds, got {per!r}")
        if not (math.isfinite(per) and 0 < per <= MAX_PERIOD):
            raise InvalidLimits(f"rate period must be over 0 and at most a day, got {per!r}")
        object.__setattr__(self, "per", float(per))


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """What workers may take from one queue, together: at most ``max_running`` of its
    jobs running at once, claimed at most at ``rate``. ``None`` is no limit.

    Raises:
        InvalidLimits: ``max_running`` is not a positive integer, or ``rate`` not a ``Rate``.
    """

    max_running: int | None = None
    rate: Rate | None = None

    def __post_init__(self) -> None:
        cap = self.max_running
        if cap is not None and (
            isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap < 2**31
        ):
            raise InvalidLimits(
                f"max_running must be a positive integer (pause the queue to stop it), got {cap!r}"
            )
        if self.rate is not None and not isinstance(self.rate, Rate):
            raise InvalidLimits(f"rate must be a conveyor.Rate, got {self.rate!r}")

    @property
    def limited(self) -> bool:
        return self.max_running is not None or self.rate is not None

    def describe(self) -> str:
        """The limits in words: "max 3 running, 10 per 2s", or "no limits"."""
        parts = []
        if self.max_running is not None:
            parts.append(f"max {self.max_running} running")
        if self.rate is not None:
            parts.append(f"{self.rate.limit} per {self.rate.per:g}s")
        return ", ".join(parts) or "no limits"


@dataclass(frozen=True, slots=True)
class QueueControls:
    """One queue's controls as stored: paused or not, and its limits."""

    queue: str
    paused: bool = False
    limits: QueueLimits = field(default_factory=QueueLimits)


def refilled(tokens: float, refilled_at: float, rate: Rate, now: float) -> float:
    """Rule 14: the bucket's tokens at ``now``, refilled since ``refilled_at``."""
    return min(float(rate.limit), tokens + max(0.0, now - refilled_at) * rate.limit / rate.per)


def allowance(
    paused: bool, max_running: int | None, running: int, tokens: float | None
) -> int | None:
    """Rule 14: how many of a queue's jobs one claim may take (``None``: no limit)."""
    if paused:
        return 0
    allowed: int | None = None
    if max_running is not None:
        allowed = max(0, max_running - running)
    if tokens is not None:
        whole = int(tokens + 1e-9)  # a float sum of refills may fall a hair short
        allowed = whole if allowed is None else min(allowed, whole)
    return allowed


def next_token_in(tokens: float, rate: Rate) -> float:
    """Seconds until the bucket holds a whole token again."""
    return max(0.0, (1.0 - tokens) * rate.per / rate.limit)


__all__ = ["QueueControls", "QueueLimits", "Rate"]
