"""``Client.enqueue`` on Redis runs in the caller's thread, on a blocking connection of
the storage's own (``RedisStorage.blocking_enqueuer``): the same jobs, the same
rule-15 answer and the same typed errors as the async path, without the hop to the
portal loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core import portal
from tests.conftest import sync_redis
from tests.redis.conftest import PrivateRedis

pytestmark = pytest.mark.redis


@pytest.fixture
def portal_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The coroutines the sync client hands to its portal loop, by name."""
    calls: list[str] = []
    real = portal.run

    def counted(coro: Coroutine[Any, Any, Any]) -> Any:
        calls.append(coro.__qualname__)
        return real(coro)

    monkeypatch.setattr(portal, "run", counted)
    return calls


def queued(config: conveyor.Config, queue: str) -> int:
    """Queued jobs of ``queue``, as storage counts them (read apart, asynchronously)."""

    async def read() -> int:
        async with conveyor.AsyncClient(config) as reader:
            stats = await (await reader.storage()).queue_stats()
        return sum(s.count(conveyor.JobState.QUEUED) for s in stats if s.queue == queue)

    return asyncio.run(read())


@pytest.fixture
def client(redis_url: str, namespace: str) -> Iterator[conveyor.Client]:
    with conveyor.Client(conveyor.Config(url=redis_url, namespace=namespace)) as made:
        yield made


def test_enqueue_stores_the_job_without_the_portal(
    client: conveyor.Client, portal_calls: list[str]
) -> None:
    jobs = [client.enqueue(BasicJob(name=str(i)), priority=i, queue="sync") for i in range(20)]
    assert portal_calls == []  # the storage was opened by connect(), before the count
    assert len({job.id for job in jobs}) == 20
    for i, job in enumerate(jobs):
        assert (job.state, job.queue, job.priority, job.duplicate) == (
            conveyor.JobState.QUEUED,
            "sync",
            i,
            False,
        )
        stored = client.get(job.id)
        assert stored is not None and stored.payload() == BasicJob(name=str(i))
    assert queued(client.config, "sync") == 20


def test_a_held_key_answers_with_its_holder(
    client: conveyor.Client, portal_calls: list[str]
) -> None:
    first = client.enqueue(BasicJob(name="first"), key="report-7")
    again = client.enqueue(BasicJob(name="again"), key="report-7")
    assert again.duplicate and not first.duplicate
    assert (again.id, again.state) == (first.id, conveyor.JobState.QUEUED)
    assert again.payload() == BasicJob(name="first")  # the holder, read back
    assert portal_calls == ["AsyncClient._holders"]  # only the holder's read hops


def test_many_threads_enqueue_at_once(client: conveyor.Client) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def produce(thread: int) -> None:
        for i in range(50):
            job = client.enqueue(BasicJob(name=f"{thread}-{i}"), queue="threads")
            with lock:
                ids.append(job.id)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(set(ids)) == 400
    assert queued(client.config, "threads") == 400


def test_killed_connections_are_made_again(client: conveyor.Client, redis_url: str) -> None:
    client.enqueue(BasicJob(name="before"))
    with sync_redis(redis_url) as admin:
        killed = admin.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    after = client.enqueue(BasicJob(name="after"))
    assert client.get(after.id) is not None


def test_a_server_gone_is_a_typed_error_and_stores_nothing(
    private_redis: PrivateRedis, namespace: str
) -> None:
    config = conveyor.Config(url=private_redis.url, namespace=namespace)
    with conveyor.Client(config) as client:
        kept = client.enqueue(BasicJob(name="kept"))
        private_redis.stop()
        with pytest.raises(conveyor.BackendUnavailable, match=r"127\.0\.0\.1"):
            client.enqueue(BasicJob(name="lost"))
        private_redis.start()  # the same port, empty: nothing came in while it was down
        with sync_redis(private_redis.url) as admin:
            assert admin.dbsize() == 0
        again = client.enqueue(BasicJob(name="again"))
        assert again.id != kept.id and client.get(again.id) is not None


def test_a_spread_namespace_enqueues_through_the_portal(
    redis_sharded_url: str, namespace: str, portal_calls: list[str]
) -> None:
    """A namespace over shards has no blocking enqueue (it routes each job to a
    shard): the sync client goes through its portal loop, as on any other backend."""
    config = conveyor.Config(url=redis_sharded_url, namespace=namespace)
    with conveyor.Client(config) as client:
        job = client.enqueue(BasicJob(name="spread"))
        assert client.get(job.id) is not None
    assert "AsyncClient.enqueue" in portal_calls
