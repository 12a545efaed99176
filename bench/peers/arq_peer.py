"""arq on Redis: ``ArqRedis.enqueue_job`` (one ``WATCH``/``MULTI`` transaction per job).

arq has no batch enqueue (``enqueue_job`` is its only way in), so W1-batched is
unsupported and the W2 preload enqueues one job at a time. The queue is a sorted set
(``arq:queue``, scored by the time a job may start), so ``queued`` is its ``ZCARD``.

Default worker: ``python -m arq bench.peers.arq_peer.WorkerSettings``, arq's own
``Worker`` with its defaults (``max_jobs=10``, ``poll_delay=0.5`` s, results kept for an
hour: arq documents no fire-and-forget mode, so ``keep_result`` is left alone). It drains
~200 jobs/s whatever the machine: each poll reads at most ``max(5 * max_jobs, 100)`` ids
and the next poll comes 0.5 s after the previous one began. Tuned:
``TunedWorkerSettings``, the same with ``max_jobs=200``: the fastest W2 drain of 10,000
no-op jobs in one process among 10, 50, 100, 150, 200, 300, 500 and 1000 (a busy
2-core machine: 200 ~1,300 jobs/s, 100 ~1,000, 300 ~1,200, 1000 ~770). Both log at
WARNING (``--custom-log-dict``) as the other peers run quiet: arq's default INFO logging
writes two lines per job (~10-20 % of the tuned rate).

Fan-in: none. arq has no construct that starts a job after a group of jobs (no
dependencies, chains or chords), so W4 is unsupported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool

from .base import Peer, Place
from .bodies import run_async
from .ledger import record

QUEUE = "arq:queue"  # arq's default queue name: a sorted set of job ids
TUNED_MAX_JOBS = 200

#: The worker settings classes arq's CLI imports by name, as keyword arguments of
#: ``arq.worker.Worker`` beyond ``functions`` and ``redis_settings`` (none: the defaults).
SETTINGS: dict[str, dict[str, Any]] = {
    "WorkerSettings": {},
    "TunedWorkerSettings": {"max_jobs": TUNED_MAX_JOBS},
}

#: ``--custom-log-dict``: arq's own log format, at WARNING rather than INFO.
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"arq.standard": {"level": "WARNING", "class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["arq.standard"], "level": "WARNING"}},
}


async def noop(ctx: dict[str, Any], index: int, pad: str = "") -> None:
    record(index)
    await run_async(index)


def __getattr__(name: str) -> type:
    """``WorkerSettings`` and ``TunedWorkerSettings``, made when arq's CLI asks for them:
    they read ``$BENCH_URL``, which only the worker's environment has."""
    if name not in SETTINGS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    redis_settings = RedisSettings.from_dsn(os.environ["BENCH_URL"])
    return type(name, (), {"functions": [noop], "redis_settings": redis_settings, **SETTINGS[name]})


class ArqPeer(Peer):
    name = "arq"
    package = "arq"
    backend = "redis"
    default_concurrency = 10  # arq.worker.Worker(max_jobs=10)
    tuned_concurrency = TUNED_MAX_JOBS
    fan_in = None

    async def open(self, place: Place) -> None:
        await super().open(place)
        self.redis: ArqRedis = await create_pool(RedisSettings.from_dsn(place.url))

    async def close(self) -> None:
        await self.redis.aclose(close_connection_pool=True)

    async def enqueue(self, indices: Sequence[int], pad: str = "") -> None:
        for i in indices:
            await self.redis.enqueue_job("noop", i, pad)

    async def queued(self) -> int:
        return int(await self.redis.zcard(QUEUE))

    def worker_argv(self, tuned: bool) -> list[str]:
        settings = "TunedWorkerSettings" if tuned else "WorkerSettings"
        return [
            "-m",
            "arq",
            f"{__name__}.{settings}",
            "--custom-log-dict",
            f"{__name__}.LOG_CONFIG",
        ]


PEER = ArqPeer()
