"""A worker module that fails on import, for the CLI's error message."""

from __future__ import annotations

RATIO = 1 / 0
