"""The JSON API: reads, actions, bulk, enqueue by type name; errors as JSON."""

from __future__ import annotations

import base64
from datetime import timedelta

import httpx

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.storage import JobFilter, Storage
from tests.support import Journal, basic_worker, live_workers, running, settle, step, step_worker

Client = httpx.AsyncClient
JSON = {"Content-Type": "application/json"}
STEP = "conveyor.examples.Step"


async def test_list_and_page_jobs_with_filters(admin: Client, client: conveyor.AsyncClient) -> None:
    jobs = [await client.enqueue(step(f"j{i}")) for i in range(5)]
    later = await client.enqueue(step("later"), delay=timedelta(minutes=5))

    first = (await admin.get("/api/jobs", params={"limit": 3})).json()
    second = (
        await admin.get("/api/jobs", params={"limit": 3, "after": first["next_cursor"]})
    ).json()

    ids = [j["id"] for j in first["jobs"] + second["jobs"]]
    assert ids == [later.id] + [j.id for j in reversed(jobs)]
    assert second["next_cursor"] is None
    scheduled = (await admin.get("/api/jobs", params={"state": "scheduled"})).json()
    assert [j["id"] for j in scheduled["jobs"]] == [later.id]
    assert scheduled["jobs"][0]["state"] == "scheduled"
    bad = await admin.get("/api/jobs", params={"state": "exploded"})
    assert bad.status_code == 400
    assert bad.json()["status_code"] == 400
    too_many = await admin.get("/api/jobs", params={"limit": 100_000})
    assert too_many.status_code == 400


async def test_get_job_decodes_the_payload(admin: Client, client: conveyor.AsyncClient) -> None:
    job = await client.enqueue(BasicJob(name="bob", count=3))

    found = (await admin.get(f"/api/jobs/{job.id}")).json()

    assert found["id"] == job.id
    assert found["type"] == "conveyor.examples.BasicJob"
    assert found["payload"] == {"name": "bob", "count": "3"}  # int64 is a string in proto JSON
    assert found["payload_error"] is None
    missing = await admin.get("/api/jobs/0190c0de-0000-7000-8000-000000000000")
    assert missing.status_code == 404
    assert "no job" in missing.json()["detail"]


async def test_family_queues_workers_stats_types(
    config: conveyor.Config, admin: Client, client: conveyor.AsyncClient, storage: Storage
) -> None:
    async with running(step_worker(config, Journal())):
        parent = await client.enqueue(step("p", children=[step("a"), step("b")], heirs=[step("h")]))
        await settle(client, parent.id)
        await live_workers(storage, 1)
        workers = (await admin.get("/api/workers")).json()
    assert len(workers) == 1 and workers[0]["queues"] == [STEP]

    family = (await admin.get(f"/api/jobs/{parent.id}/family")).json()
    assert family["job"]["state"] == "succeeded"
    assert len(family["children"]) == 2
    assert {c["state"] for c in family["children"]} == {"succeeded"}
    [heir] = family["heirs"]  # a top-level job's heir is top-level too (it takes no parent)
    assert heir["predecessor_id"] == parent.id and heir["parent_id"] is None
    assert family["waiting_for"] == []

    queues = (await admin.get("/api/queues")).json()
    assert [(q["name"], q["counts"]["succeeded"]) for q in queues] == [(STEP, 4)]
    stats = (await admin.get("/api/stats", params={"minutes": 5})).json()
    assert stats["totals"]["succeeded"] == 4
    assert len(stats["minutes"]) == 5
    assert sum(m["succeeded"] for m in stats["minutes"]) == 4
    assert max(m["workers"] for m in stats["minutes"]) == 1
    types = (await admin.get("/api/types")).json()
    assert STEP in types and "conveyor.examples.BasicJob" in types


async def test_actions_answer_with_the_new_state_or_409(
    config: conveyor.Config, admin: Client, client: conveyor.AsyncClient
) -> None:
    queued = await client.enqueue(step("q"))
    cancelled = await admin.post(
        f"/api/jobs/{queued.id}/cancel", json={"reason": "not needed"}, headers=JSON
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["reason"] == "not needed"
    again = await admin.post(f"/api/jobs/{queued.id}/cancel", json={}, headers=JSON)
    assert again.status_code == 409
    assert "already settled" in again.json()["detail"]

    retried = await admin.post(f"/api/jobs/{queued.id}/retry", json={}, headers=JSON)
    assert retried.json()["state"] == "queued"
    refused = await admin.post(f"/api/jobs/{queued.id}/discard", json={}, headers=JSON)
    assert refused.status_code == 409

    async with running(basic_worker(config, broken={"x"})):
        bad = await client.enqueue(BasicJob(name="x"), max_attempts=1)
        await settle(client, bad.id)
    discarded = await admin.post(f"/api/jobs/{bad.id}/discard", json={}, headers=JSON)
    assert discarded.status_code == 200 and discarded.json()["state"] == "failed"
    assert await client.get(bad.id) is None


async def test_bulk_by_ids_and_by_filter(admin: Client, client: conveyor.AsyncClient) -> None:
    mail = [await client.enqueue(step(f"m{i}"), queue="mail") for i in range(3)]
    keep = await client.enqueue(step("keep"), queue="billing")

    by_ids = await admin.post(
        "/api/jobs/bulk",
        json={"action": "cancel", "ids": [mail[0].id, "0190c0de-0000-7000-8000-000000000000"]},
        headers=JSON,
    )
    body = by_ids.json()
    assert body["done"] == 1
    assert [r["ok"] for r in body["results"]] == [True, False]
    assert "no job with id" in body["results"][1]["error"]

    by_filter = await admin.post(
        "/api/jobs/bulk",
        json={"action": "cancel", "filter": {"queue": "mail", "state": "queued"}},
        headers=JSON,
    )
    assert by_filter.json()["done"] == 2
    assert by_filter.json()["more"] is False
    kept = await client.get(keep.id)
    assert kept is not None and kept.state is JobState.QUEUED


async def test_enqueue_by_type_name_from_json(
    config: conveyor.Config, admin: Client, client: conveyor.AsyncClient
) -> None:
    made = await admin.post(
        "/api/jobs",
        json={"type": "conveyor.examples.BasicJob", "payload": {"name": "from-http", "count": 2}},
        headers=JSON,
    )
    assert made.status_code == 201
    created = made.json()
    assert created["payload"] == {"name": "from-http", "count": "2"}
    stored = await client.get(created["id"])
    assert stored is not None and stored.state is JobState.QUEUED
    message = stored.payload()
    assert isinstance(message, BasicJob)
    assert (message.name, message.count) == ("from-http", 2)

    delayed = await admin.post(
        "/api/jobs",
        json={"type": "conveyor.examples.BasicJob", "payload": {}, "delay_seconds": 60},
        headers=JSON,
    )
    assert delayed.json()["state"] == "scheduled"


async def test_enqueue_refuses_bad_input_and_stores_nothing(
    admin: Client, storage: Storage
) -> None:
    unknown = await admin.post(
        "/api/jobs", json={"type": "acme.NoSuchThing", "payload": {}}, headers=JSON
    )
    assert unknown.status_code == 422
    assert "acme.NoSuchThing" in unknown.json()["detail"]
    mismatched = await admin.post(
        "/api/jobs",
        json={"type": "conveyor.examples.BasicJob", "payload": {"count": "many"}},
        headers=JSON,
    )
    assert mismatched.status_code == 422
    assert "BasicJob" in mismatched.json()["detail"]
    malformed = await admin.post("/api/jobs", content=b"{not json", headers=JSON)
    assert malformed.status_code == 400
    for option, value in [("max_attempts", 0), ("max_attempts", 2**40), ("delay_seconds", 1e30)]:
        options = await admin.post(
            "/api/jobs",
            json={"type": "conveyor.examples.BasicJob", "payload": {}, option: value},
            headers=JSON,
        )
        assert options.status_code == 422, (option, value)
        assert option.removesuffix("_seconds") in options.json()["detail"]
    assert (await storage.list_jobs(conveyor_filter())).jobs == []


def conveyor_filter() -> object:
    from conveyor.core.storage import JobFilter

    return JobFilter()


async def test_api_posts_need_json_or_the_page_token(
    admin: Client, client: conveyor.AsyncClient
) -> None:
    job = await client.enqueue(step("target"))
    form_post = await admin.post(f"/api/jobs/{job.id}/cancel", data={"reason": "x"})
    assert form_post.status_code == 403
    stored = await client.get(job.id)
    assert stored is not None and stored.state is JobState.QUEUED


async def test_openapi_document_lists_the_api(admin: Client) -> None:
    doc = (await admin.get("/api/schema/openapi.json")).json()
    paths = set(doc["paths"])
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/family", "/api/queues"} <= paths
    assert {"/api/workers", "/api/stats", "/api/jobs/bulk", "/api/types"} <= paths
    assert not any(p.startswith("/jobs") or p == "/" for p in paths)  # pages stay out


async def test_enqueue_takes_the_binary_encoding_in_base64(
    admin: Client, client: conveyor.AsyncClient, storage: Storage
) -> None:
    raw = BasicJob(name="binary", count=5).SerializeToString()
    made = await admin.post(
        "/api/jobs",
        json={
            "type": "conveyor.examples.BasicJob",
            "payload_base64": base64.b64encode(raw).decode(),
        },
        headers=JSON,
    )
    assert made.status_code == 201, made.text
    stored = await client.get(made.json()["id"])
    assert stored is not None and stored.payload_bytes == raw
    for body, words in (
        ({"payload": {"name": "x"}, "payload_base64": "eA=="}, "not both"),
        ({"payload_base64": "not base64!"}, "not a conveyor.examples.BasicJob in base64"),
        ({"payload_base64": "Zoë=="}, "in base64"),  # not ASCII: found by the OpenAPI fuzz
        ({"payload_base64": base64.b64encode(b"\xff\xff\xff").decode()}, "in base64"),
    ):
        refused = await admin.post(
            "/api/jobs", json={"type": "conveyor.examples.BasicJob", **body}, headers=JSON
        )
        assert refused.status_code == 422, body
        assert words in refused.json()["detail"]
    assert len((await storage.list_jobs(JobFilter())).jobs) == 1
