"""Every page, rendered by the admin from the Storage protocol on each backend."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.storage import Storage
from tests.support import Journal, live_workers, running, settle, step, step_worker, wait_for_state

Client = httpx.AsyncClient


def count_on(html: str, state: str) -> int:
    found = re.search(rf'data-state="{state}">([\d,]+)<', html)
    assert found, f"no {state} count on the page"
    return int(found.group(1).replace(",", ""))


def job_ids_on(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([0-9a-f-]{36})">', html)


async def test_dashboard_counts_jobs_by_state(admin: Client, client: conveyor.AsyncClient) -> None:
    for i in range(3):
        await client.enqueue(step(f"q{i}"))
    doomed = await client.enqueue(step("doomed"))
    await client.cancel(doomed.id)

    page = await admin.get("/")

    assert page.status_code == 200
    assert count_on(page.text, "queued") == 3
    assert count_on(page.text, "cancelled") == 1
    assert count_on(page.text, "succeeded") == 0
    assert page.text.count('<svg class="chart"') == 2  # jobs per minute, workers
    assert "conveyor.examples.Step" in page.text  # the queue table


async def test_queue_page_lists_only_its_queue_and_pages_without_overlap(
    admin: Client, client: conveyor.AsyncClient
) -> None:
    ours = [await client.enqueue(step(f"j{i}"), queue="mail") for i in range(60)]
    await client.enqueue(step("other"), queue="billing")

    first = await admin.get("/queues/mail")
    assert first.status_code == 200
    page_one = job_ids_on(first.text)
    assert len(page_one) == 50
    next_link = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert next_link
    second = await admin.get(next_link.group(1).replace("&amp;", "&"))
    page_two = job_ids_on(second.text)
    assert len(page_two) == 10
    assert 'rel="next"' not in second.text
    assert page_one + page_two == [j.id for j in reversed(ours)]  # newest first

    queues = await admin.get("/queues")
    assert queues.status_code == 200
    assert ">mail</a>" in queues.text and ">billing</a>" in queues.text


async def test_jobs_filter_by_state_and_presets(
    config: conveyor.Config, admin: Client, client: conveyor.AsyncClient, journal: Journal
) -> None:
    later = await client.enqueue(step("later"), delay=timedelta(minutes=10))
    now = await client.enqueue(step("now"))
    async with running(step_worker(config, journal)):
        bad = await client.enqueue(step("bad", fail=True), max_attempts=1)
        await settle(client, bad.id)
        await settle(client, now.id)

    scheduled = await admin.get("/scheduled")
    assert job_ids_on(scheduled.text) == [later.id]
    failed = await admin.get("/failed")
    assert job_ids_on(failed.text) == [bad.id]
    assert "step bad fails" in failed.text
    succeeded = await admin.get("/jobs", params={"state": "succeeded"})
    assert job_ids_on(succeeded.text) == [now.id]
    retrying = await admin.get("/retrying")
    assert job_ids_on(retrying.text) == []
    everything = await admin.get("/jobs")
    assert set(job_ids_on(everything.text)) == {later.id, now.id, bad.id}
    wrong = await admin.get("/jobs", params={"state": "exploded"})
    assert wrong.status_code == 400
    assert "no state named" in wrong.text


async def test_job_page_shows_envelope_payload_and_family(
    config: conveyor.Config, admin: Client, client: conveyor.AsyncClient, journal: Journal
) -> None:
    tree = step(
        "parent",
        children=[step("fast"), step("slow", sleep=30.0)],
        heirs=[step("summary")],
    )
    worker = step_worker(config, journal, shutdown_timeout=0.2)
    async with running(worker):
        parent = await client.enqueue(tree)
        await wait_for_state(client, parent.id, JobState.WAITING)
        family = await (await client.storage()).family(parent.id)
        by_name = {journal_name(m): m for m in family}
        await wait_for_state(client, by_name["fast"].id, JobState.SUCCEEDED)
        await wait_for_state(client, by_name["slow"].id, JobState.RUNNING)

        page = await admin.get(f"/jobs/{parent.id}")

        assert page.status_code == 200
        html = page.text
        assert parent.id in html
        assert "state-waiting" in html
        assert "&#34;name&#34;: &#34;parent&#34;" in html or '"name": "parent"' in html
        assert "Waiting for 1 open child" in html
        assert by_name["slow"].id[:8] in html and by_name["fast"].id[:8] in html
        assert by_name["summary"].id[:8] in html and "heir · when succeeded" in html

        child = await admin.get(f"/jobs/{by_name['slow'].id}")
        assert "Parent" in child.text and parent.id[:8] in child.text
        level = await admin.get(f"/jobs/{by_name['slow'].id}/children")
        assert level.status_code == 200 and "no children" in level.text
        await client.cancel(parent.id)


def journal_name(job: conveyor.Job) -> str:
    from conveyor._proto.examples.shop_pb2 import Step

    message = Step()
    message.ParseFromString(job.payload_bytes)
    return message.name


async def test_payload_text_is_escaped_everywhere(
    admin: Client, client: conveyor.AsyncClient
) -> None:
    evil = "<script>alert('x')</script>"
    job = await client.enqueue(BasicJob(name=evil, count=1), queue="<b>q</b>")
    for url in (f"/jobs/{job.id}", "/jobs", "/", "/queues"):
        page = await admin.get(url)
        assert page.status_code == 200
        assert "<script>alert" not in page.text
        assert "<b>q</b>" not in page.text
    page = await admin.get(f"/jobs/{job.id}")
    assert "&lt;script&gt;" in page.text


async def test_workers_page_lists_live_workers(
    config: conveyor.Config, admin: Client, journal: Journal, storage: Storage
) -> None:
    empty = await admin.get("/workers")
    assert "No live workers" in empty.text
    worker = step_worker(config, journal, concurrency=7)
    async with running(worker):
        await live_workers(storage, 1)
        page = await admin.get("/workers")
    assert worker.id in page.text
    assert ">7</td>" in page.text


async def test_search_goes_to_the_job_by_id_or_unique_prefix(
    admin: Client, client: conveyor.AsyncClient
) -> None:
    job = await client.enqueue(step("findme"))
    exact = await admin.get("/search", params={"q": job.id}, follow_redirects=False)
    assert exact.status_code in (301, 302, 303, 307)
    assert exact.headers["location"].endswith(f"/jobs/{job.id}")
    prefix = await admin.get("/search", params={"q": job.id[:20]}, follow_redirects=False)
    assert prefix.headers["location"].endswith(f"/jobs/{job.id}")
    missing = await admin.get("/search", params={"q": "ffffffff"}, follow_redirects=False)
    assert missing.headers["location"].endswith("/jobs?id=ffffffff")
    listed = await admin.get("/jobs", params={"id": job.id[:20]})
    assert job_ids_on(listed.text) == [job.id]


async def test_unknown_job_and_path_are_404_pages_not_tracebacks(admin: Client) -> None:
    missing = await admin.get("/jobs/0190c0de-0000-7000-8000-000000000000")
    assert missing.status_code == 404
    assert "never existed, or it was discarded" in missing.text
    assert "Traceback" not in missing.text
    nowhere = await admin.get("/no/such/page")
    assert nowhere.status_code == 404
    assert "<!doctype html>" in nowhere.text
