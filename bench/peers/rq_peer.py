"""RQ on Redis: ``Queue.enqueue`` / ``enqueue_many`` (one pipeline), ``depends_on`` a list.

Default worker: ``rq worker`` (the forking ``Worker``: one job at a time, a fork per
job). Tuned: ``SimpleWorker`` (no fork; still one job at a time: RQ has no in-process
concurrency).
"""

from __future__ import annotations

from collections.abc import Sequence

from redis import Redis
from rq import Queue

from .base import Peer, Place
from .bodies import run_sync
from .ledger import record

QUEUE = "bench"


def noop(index: int, pad: str = "") -> None:
    record(index)
    run_sync(index)


class RQPeer(Peer):
    name = "rq"
    package = "rq"
    backend = "redis"
    default_concurrency = 1
    tuned_concurrency = 1
    default_drain_jobs = 100  # 20-30 ms per job for the fork: a rate either way
    fan_in = "RQ depends_on=[...]"

    async def open(self, place: Place) -> None:
        await super().open(place)
        self.redis = Redis.from_url(place.url)
        self.queue = Queue(QUEUE, connection=self.redis)

    async def close(self) -> None:
        self.redis.close()

    async def enqueue(self, indices: Sequence[int], pad: str = "") -> None:
        for i in indices:
            self.queue.enqueue(noop, i, pad)

    async def enqueue_batch(self, indices: Sequence[int], size: int, pad: str = "") -> None:
        for at in range(0, len(indices), size):
            self.queue.enqueue_many(
                [Queue.prepare_data(noop, (i, pad)) for i in indices[at : at + size]]
            )

    async def queued(self) -> int:
        return self.queue.count

    def worker_argv(self, tuned: bool) -> list[str]:
        argv = ["-m", "rq.cli", "worker", "--url", self.place.url, "--quiet"]
        if tuned:
            argv += ["--worker-class", "rq.worker.SimpleWorker"]
        return [*argv, QUEUE]

    async def submit_fan_in(self, children: int) -> None:
        jobs = self.queue.enqueue_many([Queue.prepare_data(noop, (i,)) for i in range(children)])
        self.queue.enqueue(noop, children, depends_on=jobs)


PEER = RQPeer()
