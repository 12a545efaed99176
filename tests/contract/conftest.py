from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import conveyor
from conveyor.core.backend_registry import open_storage
from conveyor.core.storage import Storage
from tests.conftest import backend_params
from tests.support import FAST_BACKOFF, Journal


@pytest.fixture(params=backend_params())
def config(request: pytest.FixtureRequest, namespace: str) -> conveyor.Config:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return conveyor.Config(url=url, namespace=namespace, backoff=FAST_BACKOFF)


@pytest.fixture
async def client(config: conveyor.Config) -> AsyncIterator[conveyor.AsyncClient]:
    async with conveyor.AsyncClient(config) as client:
        yield client


@pytest.fixture
async def storage(client: conveyor.AsyncClient) -> Storage:
    return await client.storage()


@pytest.fixture
def journal() -> Journal:
    return Journal()


__all__ = ["open_storage"]
