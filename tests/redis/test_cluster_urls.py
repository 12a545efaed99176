"""A cluster URL at a lone server, a plain URL at a cluster node, and malformed cluster
URLs: one clear error at start, naming the scheme to use."""

from __future__ import annotations

from pathlib import Path

import pytest

import conveyor
from conveyor.backends.redis._connect import cluster_nodes
from tests.redis.conftest import PrivateRedis, free_port

pytestmark = pytest.mark.redis


async def test_a_cluster_url_at_a_lone_server_names_the_plain_scheme(redis_server: str) -> None:
    config = conveyor.Config(url="redis+cluster://127.0.0.1:6379/0")
    with pytest.raises(conveyor.ConfigurationError, match=r"not a cluster node: use a redis://"):
        await conveyor.AsyncClient(config).connect()


async def test_a_plain_url_at_a_cluster_node_names_the_cluster_scheme(tmp_path: Path) -> None:
    # The bus port is given: port + 10000, its default, is past 65535 for a high free port.
    node = PrivateRedis(tmp_path, "--cluster-enabled", "yes", "--cluster-port", str(free_port()))
    node.start()
    try:
        config = conveyor.Config(url=node.url)
        with pytest.raises(conveyor.ConfigurationError, match=r"use a redis\+cluster://"):
            await conveyor.AsyncClient(config).connect()
    finally:
        node.stop()


async def test_a_cluster_url_with_no_node_answering_is_unavailable_and_masked() -> None:
    port = free_port()
    config = conveyor.Config(url=f"redis+cluster://:hunter2@127.0.0.1:{port}/0")
    with pytest.raises(conveyor.BackendUnavailable) as info:
        await conveyor.AsyncClient(config).connect()
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+cluster:///0", "names no node"),
        ("redis+cluster://127.0.0.1:7000/3", "only database 0"),
        ("redis+cluster://127.0.0.1:7000/0?ssl=true", "no query options but shards=N"),
        ("redis+cluster://127.0.0.1:7000,127.0.0.1:x/0", "'127.0.0.1:x' is not host:port"),
        ("redis+cluster://127.0.0.1:7000,:7001/0", "':7001' is not host:port"),
        ("redis+cluster://:p/w@127.0.0.1:7000/0", "percent-encode"),
    ],
)
async def test_a_malformed_cluster_url_is_a_configuration_error(url: str, why: str) -> None:
    with pytest.raises(conveyor.ConfigurationError, match=why):
        await conveyor.AsyncClient(conveyor.Config(url=url)).connect()


def test_cluster_nodes_reads_every_startup_node() -> None:
    nodes, parts = cluster_nodes("redis+cluster://u:p%40ss@a:7000,b,[::1]:7002/0")
    assert nodes == [("a", 7000), ("b", 6379), ("::1", 7002)]
    assert (parts.username, parts.password) == ("u", "p%40ss")
