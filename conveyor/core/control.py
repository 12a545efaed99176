"""What a handler raises to steer its own job: fail for good now, or run again later.

These are not errors of Conveyor's (they do not derive from ``ConveyorError``):
the handler raises them on purpose, and the worker turns them into outcomes.
"""

from __future__ import annotations

from datetime import timedelta

from .errors import ConfigurationError
from .specs import MAX_DELAY_SECONDS


class Fail(Exception):  # a verb, not "...Error": read as `raise conveyor.Fail("why")`
    """Fail the job for good now, whatever attempts it has left.

    The job settles ``failed`` with ``reason`` as its error; its family is
    accounted as for any failure (``docs/rules.md`` rule 3), and ``retry``
    can still repair it (rule 8).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = str(reason)


class RetryIn(Exception):  # read as `raise conveyor.RetryIn(60)`
    """Snooze: run the job again after ``delay``, without counting this attempt.

    The job is handed back scheduled (``docs/rules.md`` rule 6): its attempt
    count and last error stay as they were, its declarations are discarded.
    A job can snooze any number of times; bound it yourself (e.g. on
    ``ctx.job.created_at``) if it should give up.

    Raises:
        ConfigurationError: ``delay`` is negative, not a number, or over 100 years.
    """

    def __init__(self, delay: timedelta | float) -> None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 <= seconds <= MAX_DELAY_SECONDS
        ):
            raise ConfigurationError(
                f"RetryIn takes a delay of 0 to {MAX_DELAY_SECONDS:.0f} seconds "
                f"(a timedelta or a number), got {delay!r}"
            )
        super().__init__(f"retry in {float(seconds)}s")
        self.seconds = float(seconds)


__all__ = ["Fail", "RetryIn"]
