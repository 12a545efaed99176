"""The synchronous Client: from the main thread, from many threads, and from inside event loops."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor._proto.examples.shop_pb2 import Order
from conveyor.backends.memory import MemoryStorage
from conveyor.core import portal
from conveyor.core.storage import JobFilter

BASIC = "conveyor.examples.BasicJob"


@pytest.fixture
def config(memory_url: str, namespace: str) -> conveyor.Config:
    # memory_url (tests/conftest.py) drops the store of this URL and namespace afterwards
    return conveyor.Config(url=memory_url, namespace=namespace)


@pytest.fixture
def client(config: conveyor.Config) -> Iterator[conveyor.Client]:
    with conveyor.Client(config) as client:
        yield client


def stored_ids(config: conveyor.Config) -> list[str]:
    """Every job id in the shared memory store, read through a separate storage."""

    async def read() -> list[str]:
        storage = await MemoryStorage.open(config)
        page = await storage.list_jobs(JobFilter(), limit=10_000)
        return [job.id for job in page.jobs]

    return asyncio.run(read())


def test_enqueue_get_cancel(client: conveyor.Client, config: conveyor.Config) -> None:
    job = client.enqueue(BasicJob(name="hello", count=1))
    assert isinstance(job, conveyor.Job)
    assert job.state is conveyor.JobState.QUEUED
    assert (job.type, job.queue, job.max_attempts) == (BASIC, BASIC, 5)
    assert job.payload() == BasicJob(name="hello", count=1)

    fetched = client.get(job.id)
    assert fetched is not None
    assert (fetched.id, fetched.state, fetched.type) == (job.id, conveyor.JobState.QUEUED, BASIC)
    assert stored_ids(config) == [job.id]

    cancelled = client.cancel(job.id)
    assert cancelled.id == job.id
    assert cancelled.state is conveyor.JobState.CANCELLED
    after = client.get(job.id)
    assert after is not None and after.state is conveyor.JobState.CANCELLED


def test_options_are_passed_through(client: conveyor.Client) -> None:
    job = client.enqueue(
        BasicJob(name="later"), queue="mail", delay=timedelta(hours=1), max_attempts=3, priority=7
    )
    assert job.state is conveyor.JobState.SCHEDULED
    stored = client.get(job.id)
    assert stored is not None
    assert (stored.queue, stored.max_attempts, stored.priority) == ("mail", 3, 7)
    assert stored.state is conveyor.JobState.SCHEDULED


def test_get_unknown_id_is_none(client: conveyor.Client) -> None:
    assert client.get("01900000-0000-7000-8000-000000000000") is None


def test_cancel_unknown_id(client: conveyor.Client) -> None:
    with pytest.raises(conveyor.JobNotFound) as info:
        client.cancel("missing-id")
    assert info.value.job_id == "missing-id"


def test_cancel_twice_is_invalid_state(client: conveyor.Client) -> None:
    job = client.enqueue(BasicJob())
    client.cancel(job.id)
    with pytest.raises(conveyor.InvalidState) as info:
        client.cancel(job.id)
    assert info.value.job_id == job.id
    assert info.value.current == "cancelled"
    assert info.value.requested == "cancel"
    assert "already settled" in str(info.value)


def test_retry_of_a_queued_job_is_invalid_state(client: conveyor.Client) -> None:
    job = client.enqueue(BasicJob())
    with pytest.raises(conveyor.InvalidState) as info:
        client.retry(job.id)
    assert (info.value.current, info.value.requested) == ("queued", "retry")


def test_retry_of_a_cancelled_job_queues_it_again(client: conveyor.Client) -> None:
    job = client.enqueue(BasicJob())
    client.cancel(job.id)
    again = client.retry(job.id)
    assert again.id == job.id
    assert again.state is conveyor.JobState.QUEUED


def test_bad_input_raises_in_the_caller_and_stores_nothing(
    client: conveyor.Client, config: conveyor.Config
) -> None:
    with pytest.raises(conveyor.PayloadTypeError):
        client.enqueue({"name": "x"})
    with pytest.raises(conveyor.InvalidJobOptions, match="not both"):
        client.enqueue(BasicJob(), delay=1, run_at=datetime.now(UTC))
    assert stored_ids(config) == []


def test_enqueue_many_returns_distinct_jobs(
    client: conveyor.Client, config: conveyor.Config
) -> None:
    jobs = client.enqueue_many(BasicJob(name=f"n{i}", count=i) for i in range(100))
    assert len(jobs) == 100
    ids = [job.id for job in jobs]
    assert len(set(ids)) == 100
    assert ids == sorted(ids)
    assert {job.state for job in jobs} == {conveyor.JobState.QUEUED}
    assert sorted(stored_ids(config)) == sorted(ids)
    last = client.get(ids[-1])
    assert last is not None and last.payload() == BasicJob(name="n99", count=99)


def test_enqueue_many_shares_options(client: conveyor.Client) -> None:
    jobs = client.enqueue_many([BasicJob(), Order()], queue="mixed", priority=2)
    assert [job.queue for job in jobs] == ["mixed", "mixed"]
    assert [job.type for job in jobs] == [BASIC, "conveyor.examples.Order"]


def test_enqueue_many_of_nothing(client: conveyor.Client, config: conveyor.Config) -> None:
    assert client.enqueue_many([]) == []
    assert stored_ids(config) == []


def test_enqueue_many_with_a_bad_payload_stores_nothing(
    client: conveyor.Client, config: conveyor.Config
) -> None:
    batch: list[object] = [BasicJob(name=f"ok{i}") for i in range(10)]
    batch.insert(5, "not a message")
    with pytest.raises(conveyor.PayloadTypeError):
        client.enqueue_many(batch)
    assert stored_ids(config) == []


def test_enqueue_many_with_a_too_large_payload_stores_nothing(
    memory_url: str, namespace: str
) -> None:
    config = conveyor.Config(url=memory_url, namespace=namespace, max_payload_bytes=32)
    with conveyor.Client(config) as client:
        with pytest.raises(conveyor.PayloadTooLarge):
            client.enqueue_many([BasicJob(name="small"), BasicJob(name="x" * 100)])
        assert stored_ids(config) == []


def test_from_many_threads(client: conveyor.Client, config: conveyor.Config) -> None:
    def produce(worker: int) -> list[str]:
        ids = []
        for i in range(25):
            job = client.enqueue(BasicJob(name=f"w{worker}", count=i))
            got = client.get(job.id)
            assert got is not None and got.id == job.id
            ids.append(job.id)
        cancelled = client.cancel(ids[0])
        assert cancelled.state is conveyor.JobState.CANCELLED
        return ids

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(produce, range(8)))
    all_ids = [job_id for ids in results for job_id in ids]
    assert len(all_ids) == 200
    assert len(set(all_ids)) == 200
    assert sorted(stored_ids(config)) == sorted(all_ids)
    states = {job_id: client.get(job_id) for job_id in all_ids}
    cancelled = {ids[0] for ids in results}
    for job_id, job in states.items():
        assert job is not None
        expected = conveyor.JobState.CANCELLED if job_id in cancelled else conveyor.JobState.QUEUED
        assert job.state is expected


def test_from_a_running_loop_in_another_thread(client: conveyor.Client) -> None:
    results: dict[str, object] = {}

    async def inside_loop() -> None:
        asyncio.get_running_loop()  # really inside a loop
        job = client.enqueue(BasicJob(name="from-loop"))
        results["job"] = job
        results["got"] = client.get(job.id)
        results["cancelled"] = client.cancel(job.id)

    def thread_main() -> None:
        try:
            asyncio.run(inside_loop())
        except BaseException as exc:  # surfaced below in the test thread
            results["error"] = exc

    thread = threading.Thread(target=thread_main)
    thread.start()
    thread.join()
    assert "error" not in results, results.get("error")
    job = results["job"]
    assert isinstance(job, conveyor.Job)
    assert job.state is conveyor.JobState.QUEUED
    got = results["got"]
    assert isinstance(got, conveyor.Job) and got.id == job.id
    cancelled = results["cancelled"]
    assert isinstance(cancelled, conveyor.Job)
    assert cancelled.state is conveyor.JobState.CANCELLED


async def test_from_the_test_event_loop(client: conveyor.Client) -> None:
    job = client.enqueue(BasicJob(name="from-async-test"))
    got = client.get(job.id)
    assert got is not None and got.state is conveyor.JobState.QUEUED


def test_client_without_context_manager_opens_lazily(config: conveyor.Config) -> None:
    client = conveyor.Client(config)
    try:
        job = client.enqueue(BasicJob())
        assert client.get(job.id) is not None
    finally:
        client.close()
    # a closed client reopens on the next call and sees the same shared store
    assert client.get(job.id) is not None
    client.close()


def test_two_clients_share_the_store(config: conveyor.Config) -> None:
    with conveyor.Client(config) as producer, conveyor.Client(config) as reader:
        job = producer.enqueue(BasicJob(name="shared"))
        got = reader.get(job.id)
        assert got is not None and got.payload() == BasicJob(name="shared")


def test_config_is_exposed(config: conveyor.Config) -> None:
    assert conveyor.Client(config).config is config


def test_portal_refuses_calls_from_its_own_loop(client: conveyor.Client) -> None:
    async def reenter() -> None:
        client.get("x")

    loop = portal._portal_loop()
    future = asyncio.run_coroutine_threadsafe(reenter(), loop)
    with pytest.raises(RuntimeError, match="cannot be called from its own portal loop"):
        future.result()


def test_unrepresentable_delay_is_refused_before_storing(
    client: conveyor.Client, config: conveyor.Config
) -> None:
    with pytest.raises(conveyor.InvalidJobOptions):
        client.enqueue(BasicJob(name="never"), delay=float("inf"))
    assert stored_ids(config) == []
