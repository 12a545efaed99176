"""Prometheus metrics, scraped from a live worker's --metrics-port on every backend."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.job import Lease
from conveyor.core.storage import Storage
from tests.support import running, settle, wait_for_state

TYPE = "conveyor.examples.BasicJob"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


async def scrape(port: int) -> Samples:
    """Every sample, by name and labels (the server's collector needs this loop free)."""
    text = await asyncio.to_thread(scrape_text, port)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def serving(worker: conveyor.Worker) -> None:
    """Wait (bounded) until the started worker has its metrics port (0 asks for any)."""
    for _ in range(200):
        if worker.metrics_port:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the worker never served metrics")


def metrics_worker(config: conveyor.Config, queues: list[str], **kwargs: Any) -> conveyor.Worker:
    return conveyor.Worker(
        config,
        concurrency=4,
        queues=queues,
        claim_wait=0.2,
        maintenance_interval=0.05,
        metrics_port=0,
        metrics_host="127.0.0.1",
        **kwargs,
    )


async def test_a_live_worker_serves_outcomes_durations_running_and_its_queues(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    queue = f"m-{uuid.uuid4().hex[:8]}"
    paused = queue + "-paused"
    runs: Counter[str] = Counter()
    release = asyncio.Event()
    worker = metrics_worker(config, [queue, paused])

    @worker.handler
    async def work(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        runs[msg.name] += 1
        if msg.name == "flaky" and runs["flaky"] == 1:
            raise RuntimeError("fails once")
        if msg.name == "fail":
            raise conveyor.Fail("no")
        if msg.name == "slow":
            await release.wait()

    waiting = await client.enqueue(BasicJob(name="waits"), queue=paused)
    await client.pause(paused)
    async with running(worker):
        await serving(worker)
        done = [
            await client.enqueue(BasicJob(name=name), queue=queue)
            for name in ("ok", "flaky", "fail")
        ]
        slow = await client.enqueue(BasicJob(name="slow"), queue=queue)
        for job in done:
            await settle(client, job.id)
        await wait_for_state(client, slow.id, JobState.RUNNING)
        found = await scrape(worker.metrics_port)

        def jobs(outcome: str) -> float | None:
            return value(found, "conveyor_jobs_total", queue=queue, type=TYPE, outcome=outcome)

        assert (jobs("succeeded"), jobs("retried"), jobs("failed")) == (2, 1, 1)
        attempts = value(found, "conveyor_attempt_duration_seconds_count", queue=queue, type=TYPE)
        assert attempts == 4  # ok, flaky twice, fail; slow is still running
        assert value(found, "conveyor_worker_running_jobs", worker=worker.id) == 1
        assert value(found, "conveyor_worker_concurrency", worker=worker.id) == 4
        # Its queues' gauges, read from storage at the scrape.
        assert value(found, "conveyor_storage_up") == 1
        assert value(found, "conveyor_queue_jobs", queue=queue, state="succeeded") == 2
        assert value(found, "conveyor_queue_jobs", queue=queue, state="running") == 1
        assert value(found, "conveyor_queue_jobs", queue=paused, state="queued") == 1
        assert value(found, "conveyor_queue_paused", queue=paused) == 1
        age = value(found, "conveyor_queue_oldest_queued_age_seconds", queue=paused)
        assert age is not None and 0 < age < 60
        assert value(found, "conveyor_queue_oldest_queued_age_seconds", queue=queue) == 0

        await client.cancel(slow.id)
        for _ in range(200):  # the handler stops at once; bounded poll for the count
            found = await scrape(worker.metrics_port)
            running_now = value(found, "conveyor_worker_running_jobs", worker=worker.id)
            if jobs("cancelled") and running_now == 0:  # counted, then its task ends
                break
            await asyncio.sleep(0.05)
        assert jobs("cancelled") == 1
        assert value(found, "conveyor_worker_running_jobs", worker=worker.id) == 0
    assert (await client.get(waiting.id)).state is JobState.QUEUED  # type: ignore[union-attr]


class LosesLeasesOnce:
    """Storage whose first renewal with leases in it says they are all lost, as when
    a worker stalls past its lease; everything else goes to the real storage."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.lost = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    async def renew(self, leases: Sequence[Lease], lease: float) -> list[Lease]:
        if leases and not self.lost:
            self.lost = True
            return list(leases)
        return await self._storage.renew(leases, lease)


async def test_a_lost_lease_is_counted_and_the_job_still_runs(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    queue = f"m-{uuid.uuid4().hex[:8]}"
    attempts: list[int] = []
    worker = metrics_worker(config, [queue], lease=0.6, storage=LosesLeasesOnce(storage))

    @worker.handler
    async def work(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        attempts.append(ctx.job.attempt)
        if len(attempts) == 1:
            await asyncio.sleep(30)  # stopped when the heartbeat finds the lease lost

    async with running(worker):
        await serving(worker)
        job = await client.enqueue(BasicJob(name="stalls"), queue=queue)
        # Storage still holds the first attempt's lease; it expires, maintenance
        # requeues the job, and the second attempt succeeds.
        assert (await settle(client, job.id)).state is JobState.SUCCEEDED
        found = await scrape(worker.metrics_port)  # type: ignore[arg-type]
    assert len(attempts) == 2  # a lost lease does not use up an attempt (rule 6)
    assert value(found, "conveyor_lease_losses_total", queue=queue, type=TYPE) == 1
    assert value(found, "conveyor_jobs_total", queue=queue, type=TYPE, outcome="succeeded") == 1


async def test_a_port_in_use_is_a_warning_and_jobs_still_run(
    config: conveyor.Config, client: conveyor.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = conveyor.Worker(
            config, claim_wait=0.2, metrics_port=port, metrics_host="127.0.0.1"
        )
        worker.handler(noop)
        job = await client.enqueue(BasicJob(name="runs"))
        with caplog.at_level(logging.WARNING, "conveyor.metrics"):
            await worker.run_until_idle(timeout=60)
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
    assert (await client.get(job.id)).state is JobState.SUCCEEDED  # type: ignore[union-attr]


async def noop(ctx: conveyor.JobContext, msg: BasicJob) -> None:
    return None
