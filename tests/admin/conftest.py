from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.admin import create_app
from conveyor.admin.server import AdminServer, bind

# The same four backends, client and storage as the contract suite.
from tests.contract.conftest import client, config, journal, storage


@pytest.fixture
async def admin(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """The admin served by uvicorn in the test's own event loop, and an HTTP client for it.

    A real server, not Litestar's test client: that one answers a request by
    blocking the calling loop, which would stall a worker running in the
    same loop (and, on SQLite, hold the file's write lock against the admin).
    """
    server = AdminServer(create_app(config, types=[Step, BasicJob]), bind("127.0.0.1", 0))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=30) as http:
            yield http
    finally:
        await server.stop()


async def csrf_headers(admin: httpx.AsyncClient) -> dict[str, str]:
    """What a page's htmx sends: the token from the page, with the cookie the page set."""
    page = await admin.get("/")
    assert page.status_code == 200
    token = admin.cookies.get("conveyor_csrf")
    assert token
    assert token in page.text
    return {"X-CSRF-Token": token, "HX-Request": "true"}


__all__ = ["client", "config", "journal", "storage"]
