"""Job ids: time-ordered UUIDs (version 7), as text."""

from __future__ import annotations

from uuid_utils import compat


def new_id() -> str:
    """A fresh UUIDv7 in canonical text form; sorts by creation time."""
    return str(compat.uuid7())
