"""Rule 15 inside the caller's PostgreSQL transaction: a key is taken if and only if
the transaction commits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

pytestmark = pytest.mark.postgres


@pytest.fixture
async def client(postgres_url: str, namespace: str) -> AsyncIterator[conveyor.AsyncClient]:
    async with conveyor.AsyncClient(conveyor.Config(url=postgres_url, namespace=namespace)) as c:
        yield c


async def test_a_key_taken_in_a_rolled_back_transaction_stays_free(
    client: conveyor.AsyncClient,
) -> None:
    engine = create_async_engine(client.config.url)
    try:
        async with engine.connect() as conn:
            trans = await conn.begin()
            dropped = await client.enqueue(BasicJob(name="a"), key="k", connection=conn)
            assert not dropped.duplicate
            await trans.rollback()
            async with conn.begin():
                kept = await client.enqueue(BasicJob(name="b"), key="k", connection=conn)
                again = await client.enqueue(BasicJob(name="c"), key="k", connection=conn)
    finally:
        await engine.dispose()
    assert not kept.duplicate and kept.id != dropped.id
    assert again.duplicate and again.id == kept.id
    assert await client.get(dropped.id) is None
    outside = await client.enqueue(BasicJob(name="d"), key="k")
    assert outside.duplicate and outside.id == kept.id
