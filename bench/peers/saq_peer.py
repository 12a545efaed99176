"""SAQ on Redis: ``Queue.enqueue`` (one Lua script call per job).

SAQ has no batch enqueue: ``Queue.batch()`` only tracks the jobs enqueued inside it (to
abort them all if the block raises) and ``Queue.map`` gathers one ``enqueue`` per job and
then waits for their results, so neither makes fewer round trips. W1-batched is
unsupported and the W2 preload enqueues one job at a time. ``queued`` is SAQ's own
``Queue.count("queued")`` (on Redis, the length of the ``saq:default:queued`` list).

Default worker: ``python -m saq bench.peers.saq_peer.settings``, SAQ's ``Worker`` with its
defaults (``concurrency=10``; SAQ's CLI logs at WARNING unless ``-v``). Tuned:
``tuned_settings``, the same with ``concurrency=50``: the fastest W2 drain of 10,000
no-op jobs in one process among 10, 20, 30, 50, 80 and 100 (a busy 2-core machine: 50
drained ~1,450 jobs/s, 10 and 30 ~850-1,450, 80 and 100 slower). At 200 the worker's
blocking ``BLMOVE`` per slot exhausted redis-py's default pool of 100 connections and
jobs failed ("Too many connections"). Each adapter module has its own
``settings``/``tuned_settings`` callables, so ``saq_postgres_peer`` reuses this class.

Fan-in: none. SAQ has no construct that starts a job after a group of jobs (no
dependencies or callbacks; ``Queue.map`` waits in the caller), so W4 is unsupported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from saq import Queue

from .base import Peer, Place
from .bodies import run_async
from .ledger import record


async def noop(ctx: dict[str, Any], *, index: int, pad: str = "") -> None:
    record(index)
    await run_async(index)


class SAQPeer(Peer):
    """SAQ on the backend of ``place.url`` (``Queue.from_url`` picks Redis or PostgreSQL)."""

    name = "saq"
    package = "saq"
    backend = "redis"
    default_concurrency = 10  # saq.Worker(concurrency=10)
    tuned_concurrency = 50
    fan_in = None

    async def open(self, place: Place) -> None:
        await super().open(place)
        self.queue = Queue.from_url(place.url)
        await self.queue.connect()  # PostgreSQL: opens the pool and creates SAQ's tables

    async def close(self) -> None:
        await self.queue.disconnect()

    async def enqueue(self, indices: Sequence[int], pad: str = "") -> None:
        for i in indices:
            await self.queue.enqueue("noop", index=i, pad=pad)

    async def queued(self) -> int:
        return await self.queue.count("queued")

    def worker_argv(self, tuned: bool) -> list[str]:
        module = type(self).__module__  # the adapter's module, with its own two callables
        return ["-m", "saq", f"{module}.{'tuned_settings' if tuned else 'settings'}"]

    def worker_settings(self, tuned: bool) -> dict[str, Any]:
        """SAQ's worker settings (made in the worker, where ``$BENCH_URL`` is set)."""
        return {
            "queue": Queue.from_url(os.environ["BENCH_URL"]),
            "functions": [noop],
            "concurrency": self.tuned_concurrency if tuned else self.default_concurrency,
        }


PEER = SAQPeer()


def settings() -> dict[str, Any]:
    """The default worker's settings: SAQ's CLI calls a callable it is given."""
    return PEER.worker_settings(tuned=False)


def tuned_settings() -> dict[str, Any]:
    """The tuned worker's settings."""
    return PEER.worker_settings(tuned=True)
