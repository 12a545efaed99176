"""The two mounting examples in examples/admin serve the admin under their paths."""

from __future__ import annotations

import base64
import importlib
import re

import pytest
from litestar.testing import AsyncTestClient


def reload(module: str, url: str, monkeypatch: pytest.MonkeyPatch) -> object:
    """Import the example afresh, configured by ``CONVEYOR_URL`` as a user would."""
    monkeypatch.setenv("CONVEYOR_URL", url)
    imported = importlib.import_module(module)
    return importlib.reload(imported)


async def test_admin_in_a_litestar_host(memory_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    example = reload("examples.admin.in_litestar_host", memory_url, monkeypatch)
    auth = "Basic " + base64.b64encode(b"ops:change-me").decode()
    async with AsyncTestClient(app=example.app) as client:  # type: ignore[attr-defined]
        assert (await client.get("/")).json()["admin"] == "/admin/"
        assert (await client.get("/admin/")).status_code == 401
        page = await client.get("/admin/", headers={"Authorization": auth})
        assert page.status_code == 200
        assert 'href="/admin/queues"' in page.text


async def test_admin_in_a_plain_asgi_app(memory_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    example = reload("examples.admin.in_plain_asgi", memory_url, monkeypatch)
    async with AsyncTestClient(app=example.app) as client:  # type: ignore[attr-defined]
        assert "job admin is at /ops/conveyor/" in (await client.get("/")).text
        page = await client.get("/ops/conveyor/jobs")
        assert page.status_code == 200
        links = set(re.findall(r'href="(/[^"]*)"', page.text))
        assert links and all(link.startswith("/ops/conveyor") for link in links)
