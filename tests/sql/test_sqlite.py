"""SQLite specifics."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

import conveyor
from conveyor.backends.sql.storage import WAL_SWITCH_TRIES, _switch_to_wal
from conveyor.core.backend_registry import open_storage

pytestmark = pytest.mark.sqlite


async def test_in_memory_sqlite_is_refused_with_advice() -> None:
    with pytest.raises(conveyor.ConfigurationError, match="memory://"):
        await open_storage(conveyor.Config(url="sqlite:///:memory:"))


async def test_namespaces_are_table_prefixes_in_one_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    from conveyor._proto.examples.basic_pb2 import BasicJob

    async with (
        conveyor.AsyncClient(conveyor.Config(url=url, namespace="one")) as one,
        conveyor.AsyncClient(conveyor.Config(url=url, namespace="two")) as two,
    ):
        job = await one.enqueue(BasicJob(name="x"))
        assert await two.get(job.id) is None
        assert (await one.get(job.id)) is not None


class _LockedCursor:
    """A cursor whose first ``locked`` PRAGMAs fail as SQLite does when another process
    holds the new file's lock while it turns WAL on."""

    def __init__(self, locked: int, error: str = "database is locked") -> None:
        self.locked, self.error, self.calls = locked, error, 0

    def execute(self, sql: str) -> None:
        self.calls += 1
        if self.calls <= self.locked:
            raise sqlite3.OperationalError(self.error)


def test_turning_wal_on_waits_out_another_process_holding_the_lock() -> None:
    cursor = _LockedCursor(locked=3)
    _switch_to_wal(cursor)
    assert cursor.calls == 4


def test_turning_wal_on_gives_up_after_its_tries_and_on_other_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # its 5 s of tries
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _switch_to_wal(_LockedCursor(locked=WAL_SWITCH_TRIES))
    other = _LockedCursor(locked=1, error="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        _switch_to_wal(other)
    assert other.calls == 1
