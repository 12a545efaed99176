from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.admin import create_app
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


@pytest.fixture
async def admin(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    app = create_app(config, types=[Step, BasicJob])
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


async def csrf_headers(admin: AsyncTestClient) -> dict[str, str]:  # type: ignore[type-arg]
    """What a page's htmx sends: the token from the page, with the cookie the page set."""
    page = await admin.get("/")
    assert page.status_code == 200
    token = admin.cookies.get("conveyor_csrf")
    assert token
    assert token in page.text
    return {"X-CSRF-Token": token, "HX-Request": "true"}
