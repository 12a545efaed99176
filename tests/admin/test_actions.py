"""Cancel, retry and discard from the pages: one job, a selection, every match; CSRF."""

from __future__ import annotations

from datetime import timedelta

import httpx

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.storage import Storage
from tests.admin.conftest import csrf_headers
from tests.support import (
    Journal,
    basic_worker,
    running,
    settle,
    step,
    step_worker,
    wait_for_state,
)

Client = httpx.AsyncClient


async def failed_job(config: conveyor.Config, client: conveyor.AsyncClient, name: str) -> str:
    """A top-level job that failed for good on its only attempt."""
    async with running(basic_worker(config, broken={name})):
        job = await client.enqueue(BasicJob(name=name), max_attempts=1)
        done = await settle(client, job.id)
    assert done.state is JobState.FAILED
    return job.id


async def test_cancel_a_scheduled_job_answers_with_its_new_state(
    admin: Client, client: conveyor.AsyncClient
) -> None:
    job = await client.enqueue(step("later"), delay=timedelta(minutes=10))
    headers = await csrf_headers(admin)

    answer = await admin.post(f"/jobs/{job.id}/cancel", headers=headers)

    assert answer.status_code == 200
    assert "state-cancelled" in answer.text
    assert "Cancelled, with its open family below it; it is now cancelled." in answer.text
    stored = await client.get(job.id)
    assert stored is not None and stored.state is JobState.CANCELLED


async def test_a_refused_action_says_why_and_changes_nothing(
    admin: Client, client: conveyor.AsyncClient
) -> None:
    job = await client.enqueue(step("queued"))
    headers = await csrf_headers(admin)

    answer = await admin.post(f"/jobs/{job.id}/retry", headers=headers)

    assert answer.status_code == 409
    assert "cannot retry job" in answer.text and "while it is queued" in answer.text
    stored = await client.get(job.id)
    assert stored is not None and stored.state is JobState.QUEUED
    missing = await admin.post("/jobs/0190c0de-0000-7000-8000-000000000000/cancel", headers=headers)
    assert missing.status_code == 404
    unknown = await admin.post(f"/jobs/{job.id}/explode", headers=headers)
    assert unknown.status_code == 404


async def test_retry_a_failed_job_and_it_succeeds(
    config: conveyor.Config, admin: Client, client: conveyor.AsyncClient
) -> None:
    job_id = await failed_job(config, client, "flaky")
    headers = await csrf_headers(admin)

    answer = await admin.post(f"/jobs/{job_id}/retry", headers=headers)

    assert answer.status_code == 200
    assert (
        "Queued again with fresh attempts, its family re-opened; it is now queued." in answer.text
    )
    async with running(basic_worker(config, broken=set())):
        done = await settle(client, job_id)
    assert done.state is JobState.SUCCEEDED
    assert done.attempt == 1  # fresh attempts


async def test_discard_deletes_and_sends_the_page_to_the_failed_list(
    config: conveyor.Config, admin: Client, client: conveyor.AsyncClient
) -> None:
    job_id = await failed_job(config, client, "hopeless")
    headers = await csrf_headers(admin)

    answer = await admin.post(f"/jobs/{job_id}/discard", headers=headers)

    assert answer.status_code == 200
    assert answer.headers["HX-Redirect"].endswith("/failed")
    assert await client.get(job_id) is None
    gone = await admin.get(f"/jobs/{job_id}")
    assert gone.status_code == 404


async def test_discard_of_a_cancelled_job_goes_back_to_the_cancelled_list(
    admin: Client, client: conveyor.AsyncClient
) -> None:
    job = await client.enqueue(step("never"), delay=timedelta(minutes=10))
    assert (await client.cancel(job.id)).state is JobState.CANCELLED
    headers = await csrf_headers(admin)

    answer = await admin.post(f"/jobs/{job.id}/discard", headers=headers)

    assert answer.status_code == 200
    assert answer.headers["HX-Redirect"].endswith("/jobs?state=cancelled")
    assert await client.get(job.id) is None


async def test_bulk_on_a_selection_reports_each_refusal(
    config: conveyor.Config, admin: Client, client: conveyor.AsyncClient
) -> None:
    failed = [await failed_job(config, client, f"f{i}") for i in range(2)]
    queued = await client.enqueue(step("busy"), delay=timedelta(minutes=5))
    headers = await csrf_headers(admin)

    answer = await admin.post(
        "/bulk",
        data={"action": "retry", "scope": "selected", "ids": [*failed, queued.id]},
        headers=headers,
    )

    assert answer.status_code == 200
    assert "2 jobs done, 1 refused" in answer.text
    assert queued.id[:8] in answer.text
    for job_id in failed:
        stored = await client.get(job_id)
        assert stored is not None and stored.state is JobState.QUEUED
    still = await client.get(queued.id)
    assert still is not None and still.state is JobState.SCHEDULED


async def test_bulk_on_everything_matching_needs_confirmation(
    admin: Client, client: conveyor.AsyncClient, storage: Storage
) -> None:
    mail = [await client.enqueue(step(f"m{i}"), queue="mail") for i in range(5)]
    other = await client.enqueue(step("keep"), queue="billing")
    headers = await csrf_headers(admin)
    form = {"action": "cancel", "scope": "matching", "queue": "mail", "state": "queued"}

    unconfirmed = await admin.post("/bulk", data=form, headers=headers)
    assert unconfirmed.status_code == 400
    assert "needs confirmation" in unconfirmed.text
    for job in mail:
        untouched = await client.get(job.id)
        assert untouched is not None and untouched.state is JobState.QUEUED

    confirmed = await admin.post("/bulk", data=form | {"confirm": "yes"}, headers=headers)

    assert confirmed.status_code == 200
    assert "5 jobs done" in confirmed.text
    for job in mail:
        stored = await client.get(job.id)
        assert stored is not None and stored.state is JobState.CANCELLED
    kept = await client.get(other.id)
    assert kept is not None and kept.state is JobState.QUEUED


async def test_bulk_without_a_selection_or_action_is_a_clear_400(admin: Client) -> None:
    headers = await csrf_headers(admin)
    none = await admin.post("/bulk", data={"action": "retry", "scope": "selected"}, headers=headers)
    assert none.status_code == 400 and "select at least one job" in none.text
    bad = await admin.post("/bulk", data={"action": "explode"}, headers=headers)
    assert bad.status_code == 400 and "choose cancel, retry, retry-failed or discard" in bad.text


async def test_posts_without_the_page_token_are_refused(
    admin: Client, client: conveyor.AsyncClient
) -> None:
    job = await client.enqueue(step("target"))
    await csrf_headers(admin)  # the browser has the cookie...

    forged = await admin.post(f"/jobs/{job.id}/cancel")  # ...but another site can't read it
    wrong = await admin.post(f"/jobs/{job.id}/cancel", headers={"X-CSRF-Token": "x" * 43})
    form = await admin.post("/bulk", data={"action": "cancel", "ids": [job.id]})

    assert [forged.status_code, wrong.status_code, form.status_code] == [403, 403, 403]
    assert "reload the page" in forged.text
    stored = await client.get(job.id)
    assert stored is not None and stored.state is JobState.QUEUED


async def test_a_plain_form_post_with_the_hidden_field_works(
    admin: Client, client: conveyor.AsyncClient
) -> None:
    job = await client.enqueue(step("plain"))
    token = (await csrf_headers(admin))["X-CSRF-Token"]

    answer = await admin.post("/bulk", data={"_csrf": token, "action": "cancel", "ids": [job.id]})

    assert answer.status_code == 200
    stored = await client.get(job.id)
    assert stored is not None and stored.state is JobState.CANCELLED


async def test_cancel_a_waiting_parent_cancels_its_family_below(
    config: conveyor.Config, admin: Client, client: conveyor.AsyncClient
) -> None:
    worker = step_worker(config, Journal(), shutdown_timeout=0.2)
    async with running(worker):
        parent = await client.enqueue(step("p", children=[step("slow", sleep=30.0)]))
        await wait_for_state(client, parent.id, JobState.WAITING)
        headers = await csrf_headers(admin)
        answer = await admin.post(f"/jobs/{parent.id}/cancel", headers=headers)
        assert answer.status_code == 200
        [child] = await (await client.storage()).family(parent.id)
        assert child.state is JobState.CANCELLED
