"""Pausing, resuming and limiting queues from the admin's pages and its API (rule 14)."""

from __future__ import annotations

import httpx

import conveyor
from conveyor import QueueControls, QueueLimits, Rate
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.storage import Storage
from tests.admin.conftest import csrf_headers

JSON = {"Content-Type": "application/json"}


async def test_the_queues_page_pauses_and_resumes_a_queue_and_shows_its_limits(
    admin: httpx.AsyncClient, client: conveyor.AsyncClient, storage: Storage
) -> None:
    await client.enqueue(BasicJob(name="a"), queue="mail")
    await client.set_queue_limits("mail", max_running=3, rate=Rate(10, per=2))
    page = await admin.get("/queues")
    assert "max 3 running, 10 per 2s" in page.text
    assert 'action="/queues/mail/pause"' in page.text
    headers = await csrf_headers(admin)

    paused = await admin.post("/queues/mail/pause", headers=headers)

    assert paused.status_code == 200
    assert ">paused</span>" in paused.text
    assert 'action="/queues/mail/resume"' in paused.text
    [controls] = await storage.queue_controls()
    assert controls.paused
    resumed = await admin.post("/queues/mail/resume", headers=headers)
    assert ">paused</span>" not in resumed.text
    assert await storage.queue_controls() == [
        QueueControls("mail", limits=QueueLimits(max_running=3, rate=Rate(10, per=2.0)))
    ]


async def test_a_plain_form_post_redirects_and_an_unknown_queue_is_404(
    admin: httpx.AsyncClient, client: conveyor.AsyncClient, storage: Storage
) -> None:
    await client.enqueue(BasicJob(name="a"), queue="mail")
    headers = await csrf_headers(admin)
    token = headers["X-CSRF-Token"]
    form = await admin.post("/queues/mail/pause", data={"_csrf": token})
    assert form.status_code in (302, 303), form.text
    assert form.headers["location"].endswith("/queues")
    unknown = await admin.post("/queues/nowhere/pause", headers=headers)
    assert unknown.status_code == 404
    assert "no queue named &#39;nowhere&#39;" in unknown.text
    bad_verb = await admin.post("/queues/mail/explode", headers=headers)
    assert bad_verb.status_code == 404
    assert [c.queue for c in await storage.queue_controls()] == ["mail"]


async def test_the_api_pauses_resumes_and_limits(
    admin: httpx.AsyncClient, client: conveyor.AsyncClient, storage: Storage
) -> None:
    await client.enqueue(BasicJob(name="a"), queue="mail")
    paused = await admin.post("/api/queues/mail/pause", json={}, headers=JSON)
    assert paused.status_code == 200, paused.text
    assert paused.json() == [
        {"queue": "mail", "paused": True, "max_running": None, "rate": None, "per_seconds": None}
    ]
    limited = await admin.put(
        "/api/queues/mail/limits", json={"max_running": 4, "rate": 5, "per_seconds": 60}
    )
    assert limited.json()[0] | {} == {
        "queue": "mail",
        "paused": True,
        "max_running": 4,
        "rate": 5,
        "per_seconds": 60.0,
    }
    listed = (await admin.get("/api/queues")).json()
    assert (listed[0]["paused"], listed[0]["limits"]) == (True, "max 4 running, 5 per 60s")
    resumed = await admin.post("/api/queues/mail/resume", json={}, headers=JSON)
    assert resumed.json()[0]["paused"] is False
    bad = await admin.put("/api/queues/mail/limits", json={"max_running": -1})
    assert bad.status_code == 422
    assert "max_running must be a positive integer" in bad.json()["detail"]
    missing = await admin.post("/api/queues/nowhere/resume", json={}, headers=JSON)
    assert missing.status_code == 404
    assert await storage.queue_controls() == [
        QueueControls("mail", limits=QueueLimits(max_running=4, rate=Rate(5, per=60.0)))
    ]
