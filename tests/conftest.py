"""Backend URLs for the suites.

Each test gets its own namespace; server-backed URLs are resolved lazily, so
``-m memory`` never connects to a server, and a server that is down fails the
tests that need it (it is never skipped).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conveyor.backends.memory import drop_store

if TYPE_CHECKING:
    import redis

BACKENDS = ["memory", "sqlite", "redis", "postgres"]
#: Backends on servers that ``nox -s cluster`` and ``nox -s pgbouncer`` start: the suites
#: that run on them name them in ``$CONVEYOR_TEST_BACKENDS`` (comma-separated), which
#: replaces the list above.
SERVER_BACKENDS = ["redis_cluster", "pgbouncer", "redis_sharded", "redis_cluster_sharded"]
#: How many shards the ``*_sharded`` backends spread a namespace over.
TEST_SHARDS = 3


#: Backends that spread one namespace over shards, which relax the rules a shard boundary
#: cuts (docs/rules.md, "A namespace over shards"): tests marked ``one_shard`` assert those
#: rules as one shard keeps them and are deselected for these, whose own versions of the
#: rules tests/redis/test_sharded.py checks.
SHARDED_BACKENDS = {"redis_sharded", "redis_cluster_sharded"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("config") if callspec is not None else None
        sharded = backend in SHARDED_BACKENDS
        (dropped if sharded and item.get_closest_marker("one_shard") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def selected_backends() -> list[str]:
    chosen = os.environ.get("CONVEYOR_TEST_BACKENDS", "")
    names = [name.strip() for name in chosen.split(",") if name.strip()] or BACKENDS
    unknown = sorted(set(names) - {*BACKENDS, *SERVER_BACKENDS})
    if unknown:
        raise pytest.UsageError(f"CONVEYOR_TEST_BACKENDS names unknown backends: {unknown}")
    return names


def backend_params() -> list[object]:
    return [
        pytest.param(name, marks=getattr(pytest.mark, name), id=name)
        for name in selected_backends()
    ]


@pytest.fixture
def namespace() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def memory_url(namespace: str) -> Iterator[str]:
    url = f"memory://{namespace}"
    yield url
    drop_store(url, namespace)


REDIS_URL = "redis://127.0.0.1:6379/15"
#: The cluster ``tools/redis_cluster.py start`` makes.
REDIS_CLUSTER_URL = os.environ.get(
    "CONVEYOR_TEST_CLUSTER_URL", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/0"
)
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: The same database through ``tools/pgbouncer.py``'s transaction pooler; LISTEN goes to
#: the server directly.
PGBOUNCER_URL = os.environ.get(
    "CONVEYOR_TEST_PGBOUNCER_URL",
    "postgresql+psycopg://postgres@127.0.0.1:6432/test?pooler=pgbouncer&direct=127.0.0.1:5432",
)


@pytest.fixture(scope="session")
def redis_server() -> str:
    """Redis for the suite; unreachable fails (never skips) the tests that need it."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required at {REDIS_URL} and is unreachable: {exc}", pytrace=False)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """PostgreSQL for the suite; unreachable fails (never skips) the tests that need it."""
    import psycopg

    dsn = POSTGRES_URL.replace("+psycopg", "")
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is required at {dsn} and is unreachable: {exc}", pytrace=False)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_cluster_server() -> str:
    """The local Redis Cluster (``python tools/redis_cluster.py start``); unreachable
    fails the tests that need it."""
    import redis

    try:
        with sync_redis(REDIS_CLUSTER_URL) as client:
            client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"a Redis Cluster is required at {REDIS_CLUSTER_URL} and is unreachable ({exc}); "
            "start one with: python tools/redis_cluster.py start",
            pytrace=False,
        )
    return REDIS_CLUSTER_URL


def sync_redis(url: str) -> redis.Redis | redis.RedisCluster:
    """A blocking client for a test's own reads and clean-up, cluster or not."""
    import redis

    from conveyor.backends.redis.sharded import split_shards

    url = split_shards(url)[0]
    if url.startswith("redis+cluster://"):
        from conveyor.backends.redis._connect import cluster_nodes

        nodes, _ = cluster_nodes(url)
        startup = [redis.cluster.ClusterNode(host, port) for host, port in nodes]
        return redis.RedisCluster(startup_nodes=startup)
    return redis.Redis.from_url(url)


def drop_redis_namespace(url: str, namespace: str) -> None:
    """Delete every key of a namespace and of its shards (each in its one hash slot)."""
    with sync_redis(url) as client:
        for pattern in ("{" + namespace + "}:*", "{" + namespace + "~*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 500):
                # a DEL per key: a cluster refuses one DEL across slots
                pipe = client.pipeline(transaction=False)
                for key in keys[start : start + 500]:
                    pipe.delete(key)
                pipe.execute()


@pytest.fixture
def redis_url(redis_server: str, namespace: str) -> Iterator[str]:
    """The shared test server; the test's namespace is its key prefix, deleted afterwards."""
    yield redis_server
    drop_redis_namespace(redis_server, namespace)


@pytest.fixture
def redis_cluster_url(redis_cluster_server: str, namespace: str) -> Iterator[str]:
    """The local cluster; the test's namespace is its key prefix, deleted afterwards."""
    yield redis_cluster_server
    drop_redis_namespace(redis_cluster_server, namespace)


@pytest.fixture
def redis_sharded_url(redis_server: str, namespace: str) -> Iterator[str]:
    """The test's namespace spread over TEST_SHARDS shards of the shared server."""
    yield f"{redis_server}?shards={TEST_SHARDS}"
    drop_redis_namespace(redis_server, namespace)


@pytest.fixture
def redis_cluster_sharded_url(redis_cluster_server: str, namespace: str) -> Iterator[str]:
    """The test's namespace spread over TEST_SHARDS shards of the local cluster."""
    yield f"{redis_cluster_server}?shards={TEST_SHARDS}"
    drop_redis_namespace(redis_cluster_server, namespace)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'conveyor.db'}"


def drop_postgres_schema(namespace: str) -> None:
    """Drop a namespace's schema from the test database (directly, not through PgBouncer)."""
    import psycopg

    with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')


@pytest.fixture
def postgres_url(postgres_server: str, namespace: str) -> Iterator[str]:
    """The shared test database; the test's namespace is its schema, dropped afterwards."""
    yield postgres_server
    drop_postgres_schema(namespace)


@pytest.fixture(scope="session")
def pgbouncer_server(postgres_server: str) -> str:
    """The test database through the local PgBouncer (``python tools/pgbouncer.py
    start``); unreachable fails the tests that need it."""
    import psycopg

    dsn = PGBOUNCER_URL.replace("+psycopg", "").partition("?")[0]
    try:
        with psycopg.connect(dsn, connect_timeout=2, prepare_threshold=None) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        pytest.fail(
            f"PgBouncer is required at {dsn} and is unreachable ({exc}); "
            "start it with: python tools/pgbouncer.py start",
            pytrace=False,
        )
    return PGBOUNCER_URL


@pytest.fixture
def pgbouncer_url(pgbouncer_server: str, namespace: str) -> Iterator[str]:
    """The test database through PgBouncer; the test's schema is dropped afterwards."""
    yield pgbouncer_server
    drop_postgres_schema(namespace)


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("postgres", marks=pytest.mark.postgres)])  # fmt: skip
def server_url(request: pytest.FixtureRequest) -> str:
    """Redis, then PostgreSQL (the test's namespace on each): for the suites that run
    real worker processes, which the memory backend cannot serve."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url
