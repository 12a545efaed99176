"""Redis faults: unreachable server, killed connections, eviction, script cache flush."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
import redis

import conveyor
from conveyor import JobState
from tests.redis.conftest import PrivateRedis, free_port
from tests.support import (
    FAST_BACKOFF,
    Journal,
    branching_family,
    running,
    settle,
    step,
    step_worker,
    wait_id,
)

pytestmark = pytest.mark.redis


async def test_unreachable_server_is_a_typed_error_with_masked_password() -> None:
    port = free_port()
    config = conveyor.Config(url=f"redis://:hunter2@127.0.0.1:{port}/0")
    with pytest.raises(conveyor.BackendUnavailable) as info:
        await conveyor.AsyncClient(config).connect()
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "hunter2" not in message
    assert "***" in message


async def test_bad_url_is_a_configuration_error() -> None:
    config = conveyor.Config(url="redis://127.0.0.1:notaport/0")
    with pytest.raises(conveyor.ConfigurationError):
        await conveyor.AsyncClient(config).connect()


async def test_evicting_server_is_reported_at_start(
    evicting_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="conveyor.redis")
    async with conveyor.AsyncClient(conveyor.Config(url=evicting_redis.url)) as client:
        await client.storage()
    assert any("allkeys-lru" in r.message and "noeviction" in r.message for r in caplog.records)


async def test_killed_connections_lose_nothing_and_settle_nothing_twice(
    private_redis: PrivateRedis,
) -> None:
    """CLIENT KILL every Conveyor connection, again and again, in the middle of a family."""
    namespace = f"t_{uuid.uuid4().hex[:8]}"
    config = conveyor.Config(url=private_redis.url, namespace=namespace, backoff=FAST_BACKOFF)
    journal = Journal()
    root, names = branching_family(6, 8, sleep=0.01)
    killed = 0

    async def killer() -> None:
        nonlocal killed
        admin = redis.asyncio.Redis.from_url(private_redis.url)
        try:
            while True:
                await asyncio.sleep(0.05)
                for entry in await admin.client_list():
                    if entry.get("name") == f"conveyor:{namespace}":
                        await admin.client_kill_filter(_id=entry["id"])
                        killed += 1
        finally:
            await admin.aclose()

    async with conveyor.AsyncClient(config) as client:
        async with running(step_worker(config, journal, lease=1.0)):
            job = await client.enqueue(root)
            chaos = asyncio.create_task(killer())
            await asyncio.sleep(1.0)
            chaos.cancel()
            settled = await settle(client, job.id, timeout=60)
            final = await settle(client, await wait_id(journal, "final"), timeout=60)
        storage = await client.storage()
        minutes = await storage.counters(minutes=3)

    assert killed > 0
    assert settled.state is JobState.SUCCEEDED
    assert final.state is JobState.SUCCEEDED
    for name in names:
        assert len(journal.succeeded_runs(name)) >= 1, name  # at least once
    assert journal.count("final") == 1
    # Accounting exactly once: one success counted per job, whatever ran twice.
    assert sum(m.succeeded for m in minutes) == len(names)


async def test_script_cache_flush_is_survived(private_redis: PrivateRedis) -> None:
    config = conveyor.Config(url=private_redis.url, backoff=FAST_BACKOFF)
    journal = Journal()
    async with conveyor.AsyncClient(config) as client, running(step_worker(config, journal)):
        first = await client.enqueue(step("before"))
        await settle(client, first.id)
        admin = redis.asyncio.Redis.from_url(private_redis.url)
        await admin.script_flush()
        await admin.aclose()
        second = await client.enqueue(step("after", children=[step("kid")]))
        assert (await settle(client, second.id)).state is JobState.SUCCEEDED
