"""Celery on Redis: ``Task.apply_async`` (one ``LPUSH`` per job), and in batches
``apply_async(producer=p)`` inside kombu's ``p.batch(max_size)``; a Redis result backend
for the chord.

Celery itself has no batch enqueue (a ``group`` publishes its members one by one), but
kombu 5.7, which Celery 5.7 requires, added ``Producer.batch``: publications through the
producer keep their routing and serialization and only the final Redis commands wait in
a non-transactional pipeline, flushed every ``max_size`` commands and at the end. With
Celery's default queue that is one ``LPUSH`` per job (a direct queue is published to the
anonymous exchange, so no binding lookup), so a batch of ``size`` jobs is one round trip.
The Redis transport keeps a queue as a list named after it (``celery``, Celery's default
queue; one more list per priority step, for messages with a priority only), so
``queued`` is its ``LLEN``.

Default worker: ``python -m celery -A bench.peers.celery_peer worker``, Celery's CLI
defaults: the prefork pool with one child process per CPU running the jobs, prefetch
multiplier 4, mingle, gossip and event heartbeats on. Tuned (one process running jobs,
what one core does): ``TUNED_ARGS``, the fastest W2 drain of no-op jobs found with one
process running jobs:
the solo pool (jobs run in the worker's own process, no pipe to a child) without mingle,
gossip and heartbeats (a second less at start-up, less broker chatter). The threads pool
(4 to 64 threads) and other prefetch multipliers were no faster. Both log at WARNING.

Fan-in: a chord, ``chord(child.s(i) for i in range(children))(noop.si(children))``. The
Redis result backend counts the header's results (``on_chord_part_return``) and the last
child to finish sends the callback. The no-op task ignores its result; the header's
``child`` task keeps it, as Celery requires of a chord's header tasks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from celery import Celery, chord
from redis import Redis

from .base import Peer, Place
from .bodies import run_sync
from .ledger import record

QUEUE = "celery"  # Celery's default queue (task_default_queue), a Redis list of that name
#: Default: prefork with one child per CPU (Celery's own default); tuned: the worker's
#: own process runs the jobs (solo).
DEFAULT_ARGS: list[str] = []
TUNED_ARGS = ["--pool", "solo", "--without-mingle", "--without-gossip", "--without-heartbeat"]

app = Celery(__name__)  # Celery's defaults, but for the broker and result backend


def configure(url: str) -> None:
    """The broker and the result backend: the same Redis database."""
    app.conf.update(broker_url=url, result_backend=url)


# The worker's environment names the place; the driver's does not (it calls configure in
# open, before the app first connects).
if url := os.environ.get("BENCH_URL"):
    configure(url)


@app.task(ignore_result=True)
def noop(index: int, pad: str = "") -> None:
    record(index)
    run_sync(index)


@app.task(ignore_result=False)
def child(index: int) -> None:
    """A chord's header task: the same no-op, its result kept for the chord."""
    record(index)
    run_sync(index)


class CeleryPeer(Peer):
    name = "celery"
    package = "celery"
    backend = "redis"
    default_concurrency = os.cpu_count() or 1  # prefork children, one job at a time each
    tuned_concurrency = 1  # the solo pool runs one job at a time, in the worker's process
    fan_in = "Celery chord"

    async def open(self, place: Place) -> None:
        await super().open(place)
        configure(place.url)
        self.redis = Redis.from_url(place.url)

    async def close(self) -> None:
        self.redis.close()
        app.close()

    async def enqueue(self, indices: Sequence[int], pad: str = "") -> None:
        for i in indices:
            noop.apply_async((i, pad))

    async def enqueue_batch(self, indices: Sequence[int], size: int, pad: str = "") -> None:
        with app.producer_or_acquire() as producer, producer.batch(max_size=size):
            for i in indices:
                noop.apply_async((i, pad), producer=producer)

    async def queued(self) -> int:
        return int(self.redis.llen(QUEUE))

    def worker_argv(self, tuned: bool) -> list[str]:
        argv = ["-m", "celery", "-A", __name__, "worker", "--loglevel", "WARNING"]
        return [*argv, *(TUNED_ARGS if tuned else DEFAULT_ARGS)]

    async def submit_fan_in(self, children: int) -> None:
        chord(child.s(i) for i in range(children))(noop.si(children))


PEER = CeleryPeer()
