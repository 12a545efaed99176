"""How the admin is served: basic auth, mounting under any path, two admins, live events."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any

import pytest
from litestar import Litestar, asgi
from litestar.testing import AsyncTestClient

import conveyor
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.admin import BasicAuth, admin_router, create_app
from conveyor.admin.events import EventHub
from conveyor.core.backend_registry import open_storage
from tests.support import step


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def memory_config(memory_url: str, namespace: str) -> conveyor.Config:
    return conveyor.Config(url=memory_url, namespace=namespace)


async def test_basic_auth_guards_pages_api_and_schema(memory_config: conveyor.Config) -> None:
    app = create_app(memory_config, auth=BasicAuth("admin", "s3cret"))
    async with AsyncTestClient(app=app) as client:
        for path in ("/", "/jobs", "/api/jobs", "/api/schema/openapi.json", "/static/admin.css"):
            anonymous = await client.get(path)
            assert anonymous.status_code == 401, path
            assert anonymous.headers["www-authenticate"].startswith('Basic realm="Conveyor admin"')
            wrong = await client.get(path, headers=basic("admin", "guess"))
            assert wrong.status_code == 401, path
            right = await client.get(path, headers=basic("admin", "s3cret"))
            assert right.status_code == 200, path
        garbage = await client.get("/", headers={"Authorization": "Basic !!!"})
        assert garbage.status_code == 401


async def test_a_host_guard_runs_too(memory_config: conveyor.Config) -> None:
    def only_staff(connection: Any, _: Any) -> None:
        from litestar.exceptions import PermissionDeniedException

        if connection.headers.get("x-staff") != "yes":
            raise PermissionDeniedException("staff only")

    router = admin_router(memory_config, path="/ops", guards=[only_staff])
    host = Litestar([router], on_shutdown=[router.opt["conveyor_admin"].aclose])
    async with AsyncTestClient(app=host) as client:
        assert (await client.get("/ops/")).status_code == 403
        assert (await client.get("/ops/", headers={"x-staff": "yes"})).status_code == 200


def links(html: str) -> set[str]:
    return set(re.findall(r'(?:href|src|hx-get|hx-post|data-events)="(/[^"]*)"', html))


async def test_links_follow_the_mount_path(memory_config: conveyor.Config) -> None:
    async with conveyor.AsyncClient(memory_config) as producer:
        job = await producer.enqueue(step("linked"))
    standalone = create_app(memory_config)
    router = admin_router(memory_config, path="/ops/jobs-admin")
    host = Litestar(
        [router, asgi("/mounted", is_mount=True, copy_scope=True)(standalone)],
        on_shutdown=[router.opt["conveyor_admin"].aclose],
    )

    async def plain(scope: Any, receive: Any, send: Any) -> None:
        """A bare ASGI app that mounts the admin at /deep/admin, as the ASGI spec says."""
        if scope["type"] == "http":
            scope = dict(scope, root_path=scope.get("root_path", "") + "/deep/admin")
        await standalone(scope, receive, send)

    cases = [(host, "/ops/jobs-admin"), (host, "/mounted"), (plain, "/deep/admin")]
    for app, prefix in cases:
        async with AsyncTestClient(app=app) as client:
            for path in ("/", f"/jobs/{job.id}", "/jobs"):
                page = await client.get(prefix + path)
                assert page.status_code == 200, prefix + path
                found = links(page.text)
                assert found, prefix + path
                assert all(link == prefix or link.startswith(prefix + "/") for link in found), (
                    prefix,
                    found,
                )
            css = await client.get(prefix + "/static/admin.css")
            assert css.status_code == 200
            assert "--succeeded" in css.text


async def test_two_admins_in_one_process_see_their_own_stores(
    memory_url: str, redis_url: str, namespace: str
) -> None:
    mem = conveyor.Config(url=memory_url, namespace=namespace)
    red = conveyor.Config(url=redis_url, namespace=namespace)
    async with conveyor.AsyncClient(mem) as a, conveyor.AsyncClient(red) as b:
        for _ in range(2):
            await a.enqueue(step("in memory"))
        for _ in range(5):
            await b.enqueue(step("in redis"))
    routers = [admin_router(mem, path="/mem"), admin_router(red, path="/red")]
    host = Litestar(routers, on_shutdown=[r.opt["conveyor_admin"].aclose for r in routers])
    async with AsyncTestClient(app=host) as client:
        in_memory = (await client.get("/mem/api/stats")).json()
        in_redis = (await client.get("/red/api/stats")).json()
        page = await client.get("/red/")
    assert in_memory["totals"]["queued"] == 2
    assert in_redis["totals"]["queued"] == 5
    assert 'data-state="queued">5<' in page.text


async def test_a_server_that_is_down_is_a_503_with_a_message(namespace: str) -> None:
    down = conveyor.Config(url="redis://127.0.0.1:1/0", namespace=namespace)
    async with AsyncTestClient(app=create_app(down)) as client:
        page = await client.get("/")
        api = await client.get("/api/jobs")
    assert page.status_code == 503
    assert "storage is unreachable" in page.text and "Traceback" not in page.text
    assert api.status_code == 503
    assert "storage is unreachable" in api.json()["detail"]


async def test_event_hub_ticks_once_per_interval_with_the_changed_ids(
    memory_config: conveyor.Config,
) -> None:
    storage = await open_storage(memory_config)

    async def opener() -> Any:
        return storage

    hub = EventHub(opener, interval=0.05)
    ticks = hub.subscribe()
    first = asyncio.ensure_future(anext(ticks))
    await asyncio.sleep(0.05)  # the pump subscribes
    async with conveyor.AsyncClient(memory_config) as producer:
        jobs = [await producer.enqueue(step(f"e{i}")) for i in range(3)]
        tick = await asyncio.wait_for(first, timeout=5)
        assert tick.ids == {j.id for j in jobs}
        assert not tick.everything
        await producer.cancel(jobs[0].id)
        tick = await asyncio.wait_for(anext(ticks), timeout=5)
        assert tick.ids == {jobs[0].id}
    await ticks.aclose()
    await hub.aclose()
    await storage.aclose()


async def test_events_endpoint_streams_ticks(memory_config: conveyor.Config) -> None:
    """Driven over raw ASGI: a test client would wait for the endless body to end."""
    app = create_app(memory_config, types=[Step])
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    disconnect = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await sent.put(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/events",
        "raw_path": b"/events",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "state": {},
    }
    async with AsyncTestClient(app=app):  # runs the app's startup and shutdown
        serving = asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
        start = await asyncio.wait_for(sent.get(), timeout=5)
        assert start["status"] == 200
        assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"] or any(
            k == b"content-type" and v.startswith(b"text/event-stream") for k, v in start["headers"]
        )
        await asyncio.sleep(0.1)  # the hub subscribes to storage events
        async with conveyor.AsyncClient(memory_config) as producer:
            job = await producer.enqueue(step("streamed"))
        data = None
        async with asyncio.timeout(10):
            while data is None:
                chunk = (await sent.get()).get("body", b"").decode()
                for line in chunk.splitlines():
                    if line.startswith("data:"):
                        data = json.loads(line[5:])
        disconnect.set()
        await asyncio.wait_for(serving, timeout=5)
    assert data == {"ids": [job.id], "all": False}
