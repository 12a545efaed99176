"""How far a running attempt has got: what ``ctx.progress`` stores and ``Job.progress`` reads."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from .errors import InvalidProgress

#: Characters a progress note may hold.
MAX_NOTE = 1000


@dataclass(frozen=True, slots=True)
class Progress:
    """The last progress an attempt reported: ``fraction`` done (0 to 1), an optional
    ``note``, which ``attempt`` reported it, and when storage recorded it.

    It stays with the job after the attempt ends, so a failed job shows how far it
    got; a later attempt's first report replaces it.
    """

    fraction: float
    note: str | None
    attempt: int
    at: datetime

    def to_text(self) -> str:
        """One stored value: ``fraction|attempt|at|note`` (the note last: it may hold ``|``)."""
        return stored_progress(self.fraction, self.note, self.attempt, self.at.timestamp())

    @classmethod
    def from_text(cls, text: str) -> Progress:
        """Parse ``to_text``'s form.

        Raises:
            ValueError: the text is not in that form.
        """
        from .job import to_datetime

        fraction, attempt, at, note = text.split("|", 3)
        stamp = to_datetime(float(at))
        assert stamp is not None
        return cls(float(fraction), note or None, int(attempt), stamp)


def stored_progress(fraction: float, note: str | None, attempt: int, at: float) -> str:
    """The stored text of a report, as a backend writes it with its own clock."""
    return f"{fraction!r}|{attempt}|{at!r}|{note or ''}"


def check_progress(fraction: object, note: object) -> tuple[float, str | None]:
    """``ctx.progress``'s arguments, checked.

    Raises:
        InvalidProgress: ``fraction`` is not a number from 0 to 1, or ``note`` is not a
            string of at most ``MAX_NOTE`` characters.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise InvalidProgress(f"progress must be a number from 0 to 1, got {fraction!r}")
    value = float(fraction)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise InvalidProgress(f"progress must be a number from 0 to 1, got {fraction!r}")
    if note is not None and not isinstance(note, str):
        raise InvalidProgress(f"a progress note must be a string, got {type(note).__name__}")
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidProgress(
            f"a progress note holds at most {MAX_NOTE} characters, got {len(note)}"
        )
    # PostgreSQL refuses NUL in text; the note is for people, so it is shown escaped.
    return value, note.replace("\x00", "\\x00") if note else None
