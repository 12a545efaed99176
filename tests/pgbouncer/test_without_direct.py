"""Through PgBouncer with no direct address, nothing can LISTEN: workers find new jobs
and cancellations by polling (``pooling.POLL``), and still run every rule."""

from __future__ import annotations

import asyncio

import pytest

import conveyor
from conveyor import JobState
from tests.support import FAST_BACKOFF, Journal, running, settle, step, step_worker, wait_id

pytestmark = pytest.mark.pgbouncer


@pytest.fixture
def config(pgbouncer_url: str, namespace: str) -> conveyor.Config:
    url = pgbouncer_url.replace("&direct=127.0.0.1:5432", "")
    assert "direct=" not in url and "pooler=pgbouncer" in url
    return conveyor.Config(url=url, namespace=namespace, backoff=FAST_BACKOFF)


async def test_a_family_settles_with_workers_polling(config: conveyor.Config) -> None:
    journal = Journal()
    family = step("root", children=[step("a"), step("b")], heirs=[step("after")])
    async with conveyor.AsyncClient(config) as client, running(step_worker(config, journal)):
        root = await client.enqueue(family)
        assert (await settle(client, root.id)).state is JobState.SUCCEEDED
        after = await settle(client, await wait_id(journal, "after"))
    assert after.state is JobState.SUCCEEDED
    assert sorted(journal.runs) == ["a", "after", "b", "root"]


async def test_cancelling_a_running_job_reaches_its_worker_by_polling(
    config: conveyor.Config,
) -> None:
    journal = Journal()
    async with conveyor.AsyncClient(config) as client, running(step_worker(config, journal)):
        job = await client.enqueue(step("long", sleep=30.0))
        await wait_id(journal, "long")
        cancelled = await client.cancel(job.id)
        # The handler is interrupted (a poll later), not left to run its 30 s.
        for _ in range(100):
            if journal.runs["long"][0].finished:
                break
            await asyncio.sleep(0.05)
    assert cancelled.state is JobState.CANCELLED
    assert journal.runs["long"][0].finished, "the running handler was never interrupted"
    assert not journal.runs["long"][0].ok
