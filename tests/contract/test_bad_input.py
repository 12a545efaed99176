"""Bad input gets a typed error and loses nothing; bad stored jobs fail without stopping workers."""

from __future__ import annotations

from dataclasses import replace

import pytest

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.specs import build_spec
from conveyor.core.storage import JobFilter, Storage
from tests.support import Journal, running, settle, step, step_worker

STEP = step("x").DESCRIPTOR.full_name


async def test_non_protobuf_and_oversized_payloads_store_nothing(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    with pytest.raises(conveyor.PayloadTypeError):
        await client.enqueue({"name": "bob"})
    with pytest.raises(conveyor.PayloadTooLarge) as info:
        await client.enqueue(BasicJob(name="x" * (config.max_payload_bytes + 1)))
    assert "max_payload_bytes" in str(info.value)
    with pytest.raises(conveyor.PayloadTypeError):
        await client.enqueue_many([BasicJob(name="fine"), "not a message"])
    with pytest.raises(conveyor.InvalidJobOptions):
        await client.enqueue(BasicJob(), max_attempts=0)
    assert (await storage.list_jobs(JobFilter())).jobs == []


async def test_undecodable_payload_fails_for_good_and_worker_carries_on(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal, storage: Storage
) -> None:
    garbage = replace(build_spec(config, step("garbage")), payload=b"\xff\xff\xff\xff")
    await storage.enqueue([garbage])
    async with running(step_worker(config, journal)):
        bad = await settle(client, garbage.id)
        good = await client.enqueue(step("after"))
        assert (await settle(client, good.id)).state is JobState.SUCCEEDED
    assert bad.state is JobState.FAILED
    assert bad.attempt == 1  # retrying cannot help: failed for good at once
    assert "does not decode" in (bad.last_error or "")


async def test_unknown_type_on_a_handled_queue_is_retried_then_failed(
    config: conveyor.Config, client: conveyor.AsyncClient, journal: Journal
) -> None:
    stray = await client.enqueue(BasicJob(name="stray"), queue=STEP, max_attempts=2)
    async with running(step_worker(config, journal)):
        settled = await settle(client, stray.id)
        good = await client.enqueue(step("after"))
        assert (await settle(client, good.id)).state is JobState.SUCCEEDED
    assert settled.state is JobState.FAILED
    assert settled.attempt == 2
    assert "no handler for type conveyor.examples.BasicJob" in (settled.last_error or "")


async def test_storage_refuses_top_level_jobs_with_family_ties(
    config: conveyor.Config, storage: Storage
) -> None:
    spec = build_spec(config, step("orphan"))
    tied = replace(spec, parent_id=spec.id)
    with pytest.raises(ValueError, match="declares"):
        await storage.enqueue([tied])
    assert await storage.get(spec.id) is None
