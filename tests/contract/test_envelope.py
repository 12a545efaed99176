"""The wire envelope round-trips every field of a stored job."""

from __future__ import annotations

import pytest

import conveyor
from conveyor.core.envelope import decode_job, encode_job
from tests.support import Journal, running, settle, step, step_worker, wait_id


async def test_stored_jobs_round_trip_through_the_envelope(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    root = step("root", children=[step("bad", fail=True)], heirs=[step("after", settled_heir=True)])
    async with running(step_worker(config, journal)):
        job = await client.enqueue(root, headers={"traceparent": "00-abc-def-01"}, priority=3)
        await settle(client, job.id)
        await settle(client, await wait_id(journal, "after"))
    storage = await client.storage()
    members = [await client.get(job.id), *await storage.family(job.id)]
    for member in members:
        assert member is not None
        again = decode_job(encode_job(member))
        assert again == member


def test_garbage_is_not_an_envelope() -> None:
    with pytest.raises(conveyor.PayloadDecodeError):
        decode_job(b"\xff\x00garbage")
    with pytest.raises(conveyor.PayloadDecodeError):
        decode_job(b"")
