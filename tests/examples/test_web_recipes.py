"""The FastAPI and Litestar recipes (examples/web): the lifespan opens the client, a
request enqueues a job a worker then runs, the mounted admin shows it, and shutdown
closes what was opened."""

from __future__ import annotations

import importlib
import re
from types import ModuleType

import httpx
import pytest
from asgi_lifespan import LifespanManager

import conveyor
from conveyor._proto.examples.shop_pb2 import Step


def fresh(module: str, url: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import the recipe afresh, configured by ``CONVEYOR_URL`` as a user would."""
    monkeypatch.setenv("CONVEYOR_URL", url)
    return importlib.reload(importlib.import_module(module))


@pytest.mark.parametrize("recipe", ["examples.web.fastapi_app", "examples.web.litestar_app"])
async def test_a_web_recipe_enqueues_and_mounts_the_admin(
    recipe: str, memory_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = fresh(recipe, memory_url, monkeypatch)
    app = example.app
    worker = conveyor.Worker(conveyor.Config(url=memory_url), claim_wait=0.2)

    @worker.handler
    async def run(ctx: conveyor.JobContext, msg: Step) -> None:
        pass

    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as http:
            made = await http.post("/signup", params={"email": "ann@example.com"})
            assert made.status_code in (200, 201), made.text
            job_id = made.json()["job"]
            assert made.json()["state"] == "queued"
            await worker.run_until_idle(timeout=30)
            assert (await http.get(f"/jobs/{job_id}")).json()["state"] == "succeeded"
            page = await http.get(f"/admin/jobs/{job_id}")
            assert page.status_code == 200
            assert job_id in page.text
            links = set(re.findall(r'href="(/[^"]*)"', page.text))
            assert links and all(link.startswith("/admin") for link in links)
    assert example.client._storage is None  # the lifespan closed the client
