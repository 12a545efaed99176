"""Testing your own jobs: a pytest plugin, and what it gives.

Installed with Conveyor (entry point ``pytest11``), it only adds fixtures, which do
nothing until a test asks for them (``-p no:conveyor`` turns it off):

- ``conveyor_config``: a ``Config`` of the test's own, on the in-process memory
  backend (no server), with retries that back off 10 ms; forgotten after the test.
- ``conveyor_client``: a ``conveyor.Client`` on it (sync: works in sync and async tests).
- ``conveyor_worker``: ``conveyor_worker(myapp.jobs.worker)`` points your app's worker at
  the test's config for the test, and gives it back; then ``worker.drain()`` (sync
  tests) or ``await worker.run_until_idle()`` (async tests) runs every job there is,
  with the children, heirs and retries they lead to, and returns.

The page "Testing your jobs" (``docs/testing.md``) shows them at work.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from .backends.memory import drop_store
from .core.config import Backoff, Config
from .core.sync_client import Client
from .core.worker import Worker

#: Retries in tests: 10 ms, then 20 ms, at most 100 ms, no jitter.
TEST_BACKOFF = Backoff(base=0.01, factor=2.0, cap=0.1, jitter=False)
NAMESPACE = "test"


@pytest.fixture
def conveyor_config() -> Iterator[Config]:
    """A memory-backed ``Config`` of the test's own (fast retries); forgotten after it."""
    url = f"memory://pytest-{uuid.uuid4().hex}"
    yield Config(url=url, namespace=NAMESPACE, backoff=TEST_BACKOFF)
    drop_store(url, NAMESPACE)


@pytest.fixture
def conveyor_client(conveyor_config: Config) -> Iterator[Client]:
    """A ``conveyor.Client`` on the test's config."""
    with Client(conveyor_config) as client:
        yield client


@pytest.fixture
def conveyor_worker(conveyor_config: Config) -> Iterator[Callable[[Worker], Worker]]:
    """Points workers at the test's config for the test (their own config comes back
    after it): ``worker = conveyor_worker(myapp.jobs.worker)``."""
    borrowed: list[tuple[Worker, Config]] = []

    def use(worker: Worker) -> Worker:
        if not isinstance(worker, Worker):
            raise TypeError(f"conveyor_worker takes a conveyor.Worker, not {worker!r}")
        borrowed.append((worker, worker.config))
        worker.config = conveyor_config
        return worker

    yield use
    for worker, config in reversed(borrowed):
        worker.config = config


__all__ = ["TEST_BACKOFF", "conveyor_client", "conveyor_config", "conveyor_worker"]
