"""The admin lists the schedules live workers run, with when each runs next."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.storage import Storage
from tests.support import live_workers, running


async def test_the_schedules_page_and_api_list_live_workers_schedules(
    admin: httpx.AsyncClient, config: conveyor.Config, storage: Storage
) -> None:
    empty = await admin.get("/schedules")
    assert "No schedules" in empty.text
    workers = [conveyor.Worker(config, claim_wait=0.2) for _ in range(2)]
    for worker in workers:
        worker.handler(_noop)
        worker.schedule(
            "0 9 * * MON-FRI", BasicJob(name="report"), tz="Europe/Paris", name="report"
        )
    async with running(workers[0]), running(workers[1]):
        await live_workers(storage, 2)
        page = await admin.get("/schedules")
        api = (await admin.get("/api/schedules")).json()
    assert page.status_code == 200
    assert "report" in page.text and "0 9 * * MON-FRI" in page.text and "Europe/Paris" in page.text
    [row] = api
    assert (row["name"], row["workers"], row["queue"]) == (
        "report",
        2,
        "conveyor.examples.BasicJob",
    )
    next_run = datetime.fromisoformat(row["next_run"])
    assert next_run > datetime.now(UTC)
    assert next_run.astimezone(conveyor.core.schedule.zone("Europe/Paris")).hour == 9
    assert next_run.weekday() < 5


async def _noop(ctx: conveyor.JobContext, msg: BasicJob) -> None:
    pass
