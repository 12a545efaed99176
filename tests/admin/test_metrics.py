"""The admin's /metrics: the namespace's state read from storage, on every backend."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.admin import BasicAuth, create_app
from conveyor.admin.server import AdminServer, bind
from conveyor.core.storage import Storage, WorkerInfo

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


async def test_metrics_show_queues_their_oldest_job_and_live_workers(
    admin: httpx.AsyncClient, client: conveyor.AsyncClient, storage: Storage
) -> None:
    before = time.time()
    await client.enqueue_many([BasicJob(name="a"), BasicJob(name="b")], queue="mail")
    await client.enqueue(BasicJob(name="later"), queue="mail", delay=3600)
    await client.enqueue(BasicJob(name="c"), queue="idle")
    await client.pause("idle")
    info = WorkerInfo("w1", "host-a", 1, ("mail",), 8, time.time(), running=3)
    await storage.register_worker(info, ttl=60)

    response = await admin.get("/metrics")
    assert response.status_code == 200
    # The text format's type as prometheus_client names it (its version varies).
    content_type = response.headers["content-type"]
    assert content_type.startswith("text/plain; version=")
    assert content_type.count("charset=utf-8") == 1
    found = samples(response.text)
    assert value(found, "conveyor_storage_up") == 1
    assert value(found, "conveyor_queue_jobs", queue="mail", state="queued") == 2
    assert value(found, "conveyor_queue_jobs", queue="mail", state="scheduled") == 1
    age = value(found, "conveyor_queue_oldest_queued_age_seconds", queue="mail")
    assert age is not None and 0 <= age < 60
    assert value(found, "conveyor_queue_paused", queue="idle") == 1
    assert value(found, "conveyor_heartbeat_running_jobs", worker="w1", host="host-a") == 3
    assert value(found, "conveyor_heartbeat_concurrency", worker="w1", host="host-a") == 8
    seen = value(found, "conveyor_heartbeat_age_seconds", worker="w1", host="host-a")
    assert seen is not None and 0 <= seen < 60
    # Worker events are counted by the workers themselves, never here.
    assert not any(name.startswith("conveyor_jobs") for name, _ in found)

    # The same longest wait on the queues page and in the API.
    queues = {q["name"]: q for q in (await admin.get("/api/queues")).json()}
    assert before - 0.01 <= queues["mail"]["oldest_queued_at"] <= time.time()
    page = await admin.get("/queues")
    assert "Longest wait" in page.text


async def test_metrics_sit_behind_the_admins_password(config: conveyor.Config) -> None:
    app = create_app(config, auth=BasicAuth("ops", "s3cret"))
    server = AdminServer(app, bind("127.0.0.1", 0))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=30) as http:
            assert (await http.get("/metrics")).status_code == 401
            scraped = await http.get("/metrics", auth=("ops", "s3cret"))
            assert scraped.status_code == 200
            assert value(samples(scraped.text), "conveyor_storage_up") == 1
    finally:
        await server.stop()


async def test_storage_down_is_a_scrape_with_up_0_not_an_error() -> None:
    config = conveyor.Config(url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    server = AdminServer(create_app(config), bind("127.0.0.1", 0))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=60) as http:
            response = await http.get("/metrics")
    finally:
        await server.stop()
    assert response.status_code == 200
    assert samples(response.text) == {("conveyor_storage_up", frozenset()): 0.0}


def test_a_wait_reads_as_a_duration() -> None:
    from conveyor.admin.render import waited

    assert waited(None) == ""
    assert waited(time.time()) == "<1 s"
    assert waited(time.time() - 90) == "2 min"
