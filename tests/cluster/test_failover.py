"""A master of the local cluster killed mid-run, again and again: its replica takes over
the namespace's slot, the old master comes back as a replica, and the fleet's families
settle with nothing lost and nothing run twice (the chaos checks, ``tests/chaos``).

Redis replicates asynchronously, so a write a master acknowledged in the instant before
SIGKILL can be missing on its replica; on loopback that window is a few microseconds
(docs/scaling.md says what it means in production). ``CHAOS_FAULT_SECONDS`` sets how
long (20 in CI), ``CHAOS_SEED`` replays a run.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.backends.redis.sharded import shard_namespaces
from tests.chaos.fleet import Fleet
from tests.chaos.scenario import run_scenario
from tools import redis_cluster

pytestmark = [pytest.mark.redis_cluster, pytest.mark.slow, pytest.mark.timeout(600)]

SECONDS = float(os.environ.get("CHAOS_FAULT_SECONDS", "20"))


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("shards", [1, 3])
async def test_families_survive_master_failovers(
    redis_cluster_url: str, namespace: str, tmp_path: Path, shards: int
) -> None:
    """With ``shards=3`` the namespace is spread over the cluster (``?shards=3``): each
    failover hits one shard's master, chosen at random, while the others work on."""
    home = redis_cluster.default_dir()
    ports = sorted(int(p.name) for p in home.iterdir() if p.name.isdigit())
    slot_keys = ["{" + name + "}:" for name in shard_namespaces(namespace, shards)]
    failovers: list[tuple[int, int | None]] = []

    def healed() -> bool:
        return redis_cluster.healthy(ports, masters=3)

    async def failover(rng: random.Random) -> None:
        """Kill the master serving (a shard of) the namespace, see its replica promoted,
        restart it."""
        slot_key = rng.choice(slot_keys)
        old = redis_cluster.master_of(ports[0], slot_key)
        assert old is not None
        os.kill(int((home / str(old) / "redis.pid").read_text()), signal.SIGKILL)
        survivor = next(port for port in ports if port != old)
        try:
            # A replica is promoted once the other masters agree its master is down.
            await until(
                lambda: redis_cluster.master_of(survivor, slot_key) not in (None, old),
                "a replica took over the namespace's slot",
            )
            failovers.append((old, redis_cluster.master_of(survivor, slot_key)))
            await asyncio.sleep(rng.uniform(0.5, 2.0))  # the fleet runs on the new master
        finally:
            redis_cluster.start_node(old, home / str(old))  # its nodes.conf: back as a replica

    cycle: asyncio.Task[None] | None = None

    async def fault(rng: random.Random, fleet: Fleet) -> str:
        # A failover takes seconds: it runs beside the scenario, which goes on enqueueing
        # families meanwhile; the next one waits until the cluster has healed.
        nonlocal cycle
        if (cycle is not None and not cycle.done()) or not await asyncio.to_thread(healed):
            return "none: still healing"
        if cycle is not None:
            await cycle  # its errors, if any
        cycle = asyncio.create_task(failover(rng))
        return "master killed"

    async def heal() -> None:
        if cycle is not None:
            await cycle
        await until(healed, "the cluster healed", timeout=90)  # for the tests after this one

    figures = await run_scenario(
        f"cluster-failover-{shards}",
        f"{redis_cluster_url}?shards={shards}",
        namespace,
        tmp_path,
        seconds=SECONDS,
        fault=fault,
        seed=int(os.environ.get("CHAOS_SEED", str(time.time_ns() % 1_000_000))),
        heal=heal,
        min_faults=1,
    )
    assert figures["faults"].get("master killed", 0) >= 1
    assert all(old != new for old, new in failovers)
    assert figures["worker_starts"] == 3  # no worker died of it
