"""Making the client a Redis URL names: one server (``redis://``, ``rediss://``,
``unix://``) or a Redis Cluster (``redis+cluster://host:port[,host:port...]/0``).

Every key of a namespace carries the hash tag ``{namespace}``, so a namespace lives in
one slot of a cluster and every script's keys are in that slot; redis-py's
``RedisCluster`` follows MOVED and ASK redirects and re-reads the slot map after a
failover.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster

from conveyor.core.config import Config, mask_url
from conveyor.core.errors import BackendError, ConfigurationError

from ._errors import translated

#: The cluster scheme.
CLUSTER_SCHEME = "redis+cluster"
#: Either client: commands, scripts, pipelines and pub/sub are the same for both.
Client = aioredis.Redis | RedisCluster

# TCP options for every Redis connection (those this platform has): probe an idle
# connection after 30 s, every 5 s, give up after 3; and fail a send that the server has
# not acknowledged within 30 s.
KEEPALIVE: dict[int, int] = {
    option: value
    for name, value in (
        ("TCP_KEEPIDLE", 30),
        ("TCP_KEEPINTVL", 5),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", 30_000),
    )
    if (option := getattr(socket, name, None)) is not None
}


def _options(config: Config) -> dict[str, Any]:
    """Connection options shared by both clients."""
    return {
        "decode_responses": False,  # replies stay bytes: payloads are binary
        "socket_connect_timeout": 5,
        # No per-command timeout: redis-py enforces it by wrapping every send in
        # asyncio.wait_for, a task per command, which cost a third of a one-round-trip
        # enqueue (bench/README.md). Dead connections are found by the kernel instead
        # (keepalive probes, and TCP_USER_TIMEOUT for unacknowledged sends). A URL's own
        # ?socket_timeout= still wins.
        "socket_timeout": None,
        "socket_keepalive": True,
        "socket_keepalive_options": KEEPALIVE,
        "client_name": f"conveyor:{config.namespace}",  # visible in CLIENT LIST
    }


def _password_misread(url: str) -> bool:
    """Whether a '/', '?' or '#' in the password ends the host part early, so that
    redis-py would take a piece of the password for the host or port (and show it
    in its error)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("redis", "rediss", CLUSTER_SCHEME):
        return False
    if parts.password is not None or "@" not in url.partition("://")[2]:
        return False
    try:
        parts.port  # noqa: B018 (it parses the port)
    except ValueError:
        return True
    return parts.hostname is None


def _bad(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"bad Redis Cluster URL {mask_url(url)!r}: {why}")


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], SplitResult]:
    """The startup nodes a ``redis+cluster://`` URL names, and the URL split.

    Raises:
        ConfigurationError: no node, a bad port, a database other than 0, or a query.
    """
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    if not hosts:
        raise _bad(url, "it names no node; use redis+cluster://host:port[,host:port...]/0")
    nodes: list[tuple[str, int]] = []
    for entry in hosts.split(","):
        try:
            node = urlsplit("//" + entry)  # parses "host", "host:port" and "[::1]:port"
            host, port = node.hostname, node.port or 6379
        except ValueError:
            host = None
        if not host:
            raise _bad(url, f"{entry!r} is not host:port")
        nodes.append((host, port))
    database = parts.path.strip("/")
    if database not in ("", "0"):
        raise _bad(url, f"a cluster has only database 0, not {database!r}")
    if parts.query:
        raise _bad(url, "it takes no query options but shards=N")
    return nodes, parts


def _cluster_client(config: Config) -> RedisCluster:
    nodes, parts = cluster_nodes(config.url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        **_options(config),
    )


def blocking_client(config: Config) -> redis.Redis:
    """A synchronous client for the one server ``config.url`` names, with the options
    of ``connect``'s (the sync producer's enqueue: ``RedisStorage.blocking_enqueuer``).
    The URL is ``connect``'s to check: it has been, when a storage asks for this."""
    return redis.Redis.from_url(config.url, **_options(config))


async def connect(config: Config) -> Client:
    """A client for ``config.url``, its server checked: it answers, and it is a cluster
    node exactly when the URL says so.

    Raises:
        ConfigurationError: the URL is malformed, or names the wrong kind of server.
        BackendUnavailable: Redis does not answer.
    """
    url = config.url
    if _password_misread(url):
        raise ConfigurationError(
            f"bad Redis URL {mask_url(url)!r}: its password holds '/', '?' or '#', "
            "which end the host part of a URL; percent-encode it (urllib.parse.quote)"
        )
    if config.scheme == CLUSTER_SCHEME:
        return await _open_cluster(config)
    try:
        client = aioredis.Redis.from_url(url, **_options(config))
    except ValueError as exc:
        raise ConfigurationError(f"bad Redis URL {mask_url(url)!r}: {exc}") from exc
    try:
        with translated(url):
            await client.ping()
        if await _cluster_enabled(client):
            raise ConfigurationError(
                f"Redis at {mask_url(url)} is a Redis Cluster node: use a "
                f"{CLUSTER_SCHEME}://host:port[,host:port...]/0 URL for it"
            )
    except (BackendError, ConfigurationError):
        await client.aclose()
        raise
    return client


async def _open_cluster(config: Config) -> RedisCluster:
    url = config.url
    client = _cluster_client(config)
    try:
        with translated(url):
            await client.initialize()  # reads the slot map from a startup node
    except BackendError as exc:
        await client.aclose()
        if "cluster mode is not enabled" in str(exc).lower():
            raise ConfigurationError(
                f"Redis at {mask_url(url)} is not a cluster node: use a redis://host:port/db "
                "URL for a single server"
            ) from None
        raise
    return client


async def _cluster_enabled(client: aioredis.Redis) -> bool:
    try:
        info = await client.info("cluster")
    except redis_errors.ResponseError:
        return False  # INFO renamed or disabled, as some managed services do
    return bool(info.get("cluster_enabled"))
