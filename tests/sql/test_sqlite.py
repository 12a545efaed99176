"""SQLite specifics."""

from __future__ import annotations

from pathlib import Path

import pytest

import conveyor
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
