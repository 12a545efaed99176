"""bench/peers/bodies.py: each body does what the report says it does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from bench.peers import bodies

URL = "redis://127.0.0.1:6379/15"  # the test suite's database, not the bench's


@pytest.fixture
def redis_body(monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    monkeypatch.setattr(bodies, "BODY", "redis")
    monkeypatch.setattr(bodies, "REDIS_URL", URL)
    monkeypatch.setattr(bodies, "_sync_client", None)
    monkeypatch.setattr(bodies, "_async_clients", {})
    client = redis.Redis.from_url(URL)
    client.delete("bench:body:count")
    yield client
    client.delete("bench:body:count")
    client.close()
    if bodies._sync_client is not None:
        bodies._sync_client.close()


async def close_async_clients() -> None:
    for client in bodies._async_clients.values():
        await client.aclose()


async def test_the_redis_body_is_one_pipelined_round_trip_leaving_only_a_counter(
    redis_body: redis.Redis,
) -> None:
    before = redis_body.info("commandstats")
    try:
        await bodies.run_async(7)
    finally:
        await close_async_clients()
    bodies.run_sync(8)
    assert redis_body.get("bench:body:count") == b"2"
    assert not redis_body.exists("bench:body:7", "bench:body:8")  # deleted by the body
    assert 0 < redis_body.ttl("bench:body:count") <= 60  # and the counter expires
    after = redis_body.info("commandstats")
    for command in ("set", "get", "incrby", "expire", "del"):  # redis-py's incr is INCRBY
        calls = after[f"cmdstat_{command}"]["calls"] - before.get(f"cmdstat_{command}", {}).get(
            "calls", 0
        )
        assert calls >= 2, command  # once per body run (other clients may add more)


def test_the_cpu_body_is_the_same_work_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bodies, "BODY", "cpu")
    assert bodies.cpu() == sum(i * i % 7 for i in range(bodies.CPU_ROUNDS))
    bodies.run_sync(1)  # returns after the loop, touching nothing else
