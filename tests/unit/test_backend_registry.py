"""Choosing a backend by URL scheme, and the memory backend's sharing by URL and namespace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.backends.memory import MemoryStorage, drop_store
from conveyor.core.backend_registry import backend_class, known_schemes, open_storage
from conveyor.core.specs import build_spec
from conveyor.core.storage import JobFilter


@pytest.fixture
def unique_name() -> Iterator[str]:
    """A fresh memory URL name; every store opened under it is dropped afterwards."""
    name = f"reg_{uuid.uuid4().hex[:12]}"
    yield name
    for namespace in ("conveyor", "ns_a", "ns_b"):
        drop_store(f"memory://{name}", namespace)
        drop_store(f"memory://{name}_other", namespace)


def test_known_schemes() -> None:
    schemes = known_schemes()
    assert schemes == sorted(schemes)
    assert {
        "memory",
        "redis",
        "rediss",
        "unix",
        "postgresql",
        "postgresql+psycopg",
        "sqlite",
    } <= set(schemes)


def test_unknown_scheme_lists_known_schemes() -> None:
    with pytest.raises(conveyor.UnsupportedURL) as info:
        backend_class(conveyor.Config(url="mysql://x"))
    error = info.value
    assert isinstance(error, conveyor.ConfigurationError)
    assert isinstance(error, ValueError)
    message = str(error)
    assert "'mysql://x'" in message
    assert "scheme 'mysql'" in message
    assert "use one of: " + ", ".join(known_schemes()) in message


async def test_unknown_scheme_masks_the_password() -> None:
    config = conveyor.Config(url="mysql://admin:hunter2@db.example:3306/jobs")
    with pytest.raises(conveyor.UnsupportedURL) as info:
        await open_storage(config)
    message = str(info.value)
    assert "hunter2" not in message
    assert "mysql://admin:***@db.example:3306/jobs" in message


def test_memory_scheme_is_the_memory_backend() -> None:
    assert backend_class(conveyor.Config(url="memory://x")) is MemoryStorage
    assert backend_class(conveyor.Config(url="MEMORY://x")) is MemoryStorage


async def test_open_memory_storage(unique_name: str) -> None:
    storage = await open_storage(conveyor.Config(url=f"memory://{unique_name}"))
    try:
        assert isinstance(storage, MemoryStorage)
        assert await storage.get("no-such-id") is None
        assert (await storage.list_jobs(JobFilter())).jobs == []
    finally:
        await storage.aclose()


async def test_same_url_and_namespace_share_state(unique_name: str) -> None:
    config = conveyor.Config(url=f"memory://{unique_name}", namespace="ns_a")
    first = await open_storage(config)
    second = await open_storage(conveyor.Config(url=f"memory://{unique_name}", namespace="ns_a"))
    spec = build_spec(config, BasicJob(name="shared", count=2))
    await first.enqueue([spec])
    job = await second.get(spec.id)
    assert job is not None
    assert job.id == spec.id
    assert job.type == "conveyor.examples.BasicJob"
    assert job.state is conveyor.JobState.QUEUED
    assert job.payload() == BasicJob(name="shared", count=2)
    assert [j.id for j in (await second.list_jobs(JobFilter())).jobs] == [spec.id]


async def test_trailing_slash_is_the_same_store(unique_name: str) -> None:
    config = conveyor.Config(url=f"memory://{unique_name}")
    first = await open_storage(config)
    spec = build_spec(config, BasicJob())
    await first.enqueue([spec])
    second = await open_storage(conveyor.Config(url=f"memory://{unique_name}/"))
    assert await second.get(spec.id) is not None


async def test_different_namespaces_do_not_share(unique_name: str) -> None:
    config_a = conveyor.Config(url=f"memory://{unique_name}", namespace="ns_a")
    config_b = conveyor.Config(url=f"memory://{unique_name}", namespace="ns_b")
    a = await open_storage(config_a)
    b = await open_storage(config_b)
    spec = build_spec(config_a, BasicJob())
    await a.enqueue([spec])
    assert await a.get(spec.id) is not None
    assert await b.get(spec.id) is None
    assert (await b.list_jobs(JobFilter())).jobs == []


async def test_different_urls_do_not_share(unique_name: str) -> None:
    config = conveyor.Config(url=f"memory://{unique_name}")
    a = await open_storage(config)
    b = await open_storage(conveyor.Config(url=f"memory://{unique_name}_other"))
    spec = build_spec(config, BasicJob())
    await a.enqueue([spec])
    assert await b.get(spec.id) is None


async def test_drop_store_forgets_the_state(unique_name: str) -> None:
    config = conveyor.Config(url=f"memory://{unique_name}")
    spec = build_spec(config, BasicJob())
    await (await open_storage(config)).enqueue([spec])
    drop_store(config.url, config.namespace)
    assert await (await open_storage(config)).get(spec.id) is None
