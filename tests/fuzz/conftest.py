"""Fixtures of the hostile-input suite: the contract suite's four backends."""

from __future__ import annotations

# The same four backends, client and storage as the contract suite.
from tests.contract.conftest import client, config, journal, storage

__all__ = ["client", "config", "journal", "storage"]
