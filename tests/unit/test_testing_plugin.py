"""The pytest plugin for users' tests (conveyor/testing.py): registered, and its
fixtures give each test its own memory-backed storage and give workers back."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

APP_CONFIG = conveyor.Config(url="redis://127.0.0.1:6379/9", namespace="app")
app_worker = conveyor.Worker(APP_CONFIG)


@app_worker.handler
async def _noop(ctx: conveyor.JobContext, msg: BasicJob) -> None:
    pass


def test_the_plugin_is_registered_for_pytest() -> None:
    [found] = entry_points(group="pytest11", name="conveyor")
    assert found.value == "conveyor.testing"


def test_each_test_gets_memory_storage_of_its_own(
    conveyor_config: conveyor.Config, conveyor_client: conveyor.Client, conveyor_worker: object
) -> None:
    assert conveyor_config.scheme == "memory"
    assert conveyor_client.config is conveyor_config
    worker = conveyor_worker(app_worker)  # type: ignore[operator]
    assert worker is app_worker and worker.config is conveyor_config
    job = conveyor_client.enqueue(BasicJob(name="x"))
    worker.drain(timeout=30)
    assert conveyor_client.get(job.id).state is conveyor.JobState.SUCCEEDED  # type: ignore[union-attr]
    with pytest.raises(TypeError, match=r"takes a conveyor\.Worker"):
        conveyor_worker("myapp.jobs:worker")  # type: ignore[operator]


def test_the_worker_has_its_own_config_back_after_the_test() -> None:
    assert app_worker.config is APP_CONFIG  # the test above borrowed it


def test_another_test_sees_none_of_the_first_ones_jobs(conveyor_client: conveyor.Client) -> None:
    assert conveyor_client.queue_controls() == []
    storage_jobs = conveyor.core.portal.run(_count(conveyor_client))
    assert storage_jobs == 0


async def _count(client: conveyor.Client) -> int:
    storage = await client._async.storage()
    return len((await storage.list_jobs(conveyor.core.storage.JobFilter())).jobs)
