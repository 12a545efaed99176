"""The job page and the API show a running job's progress, and the page refreshes
itself while the job runs."""

from __future__ import annotations

import asyncio

import httpx

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.storage import Storage


async def test_the_job_page_and_api_show_progress_while_it_runs(
    admin: httpx.AsyncClient, client: conveyor.AsyncClient, storage: Storage
) -> None:
    job = await client.enqueue(BasicJob(name="export"), queue="progress")
    (claimed,) = await storage.claim("w", ["progress"], 1, 60, 1.0)
    await storage.progress(claimed.lease, 0.375, "page 3 of 8 <b>")
    page = await admin.get(f"/jobs/{job.id}")
    api = (await admin.get(f"/api/jobs/{job.id}")).json()
    assert page.status_code == 200
    assert '<progress max="100" value="37.5"' in page.text
    assert "37.5%" in page.text and "page 3 of 8 &lt;b&gt;" in page.text  # escaped
    assert "reported by attempt 1" in page.text
    assert "every 2s" in page.text  # a running job's summary refreshes itself
    assert api["progress"]["fraction"] == 0.375
    assert (api["progress"]["note"], api["progress"]["attempt"]) == ("page 3 of 8 <b>", 1)

    await client.cancel(job.id)
    await asyncio.sleep(0)
    settled = await admin.get(f"/jobs/{job.id}")
    assert "37.5%" in settled.text  # kept after the attempt
    assert "every 2s" not in settled.text


async def test_a_job_without_progress_shows_no_bar(
    admin: httpx.AsyncClient, client: conveyor.AsyncClient
) -> None:
    job = await client.enqueue(BasicJob(name="plain"))
    page = await admin.get(f"/jobs/{job.id}")
    api = (await admin.get(f"/api/jobs/{job.id}")).json()
    assert "<progress" not in page.text
    assert api["progress"] is None


async def test_the_job_page_says_what_the_producer_declared(
    admin: httpx.AsyncClient, client: conveyor.AsyncClient
) -> None:
    family = await client.enqueue_family(
        BasicJob(name="root"),
        children=[BasicJob(name="a"), BasicJob(name="b")],
        heirs=[BasicJob(name="after")],
    )
    page = await admin.get(f"/jobs/{family.job.id}")
    assert "Declared by the producer" in page.text
    assert "2 children, 1 heir" in page.text
