"""Dramatiq on Redis: ``Actor.send`` (one ``EVALSHA`` of the broker's dispatch script per job).

Dramatiq has no batch enqueue: ``RedisBroker.enqueue`` takes one message, and
``group(...).run()`` calls it once per child, so W1-batched is unsupported and the W2
preload sends one job at a time. The broker keeps a queue as a list of message ids
(``dramatiq:bench``) beside a hash of their bodies (``dramatiq:bench.msgs``); ``queued``
is the list's ``LLEN``: the jobs waiting, not those a worker has fetched (the broker's
own ``do_qsize`` counts those too).

Default worker: ``python -m dramatiq bench.peers.dramatiq_peer``, Dramatiq's CLI
defaults: one worker process per CPU (``--processes``), 8 threads each. Tuned (one
process, what one core does): ``--processes 1 --threads TUNED_THREADS``, the fastest W2
drain of no-op jobs found in one process: 16, 32 and 64 threads drain alike (about 1.5 times the
default 8; 16 and 32 tied over a dozen runs each), and of those 16 contends least for the
group barrier in W4 (``RedisBackend.decr`` is a ``WATCH`` loop retried on every conflict:
the heir came after ~5 s with 8 threads, ~6 s with 16, 8-11 s with 32). Both keep
Dramatiq's default middleware.

Fan-in: a group completion callback, ``group(children).add_completion_callback(heir).run()``.
It needs the ``GroupCallbacks`` middleware with a rate-limiter backend (a Redis
``RedisBackend`` here, holding the group's barrier), not a result backend: each child
decrements the barrier after it runs, and the one that empties it enqueues the heir (the
same no-op actor, with index ``children``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import GroupCallbacks
from dramatiq.rate_limits.backends import RedisBackend

from .base import Peer, Place
from .bodies import run_sync
from .ledger import record

QUEUE = "bench"
DEFAULT_THREADS = 8  # dramatiq's CLI: --threads defaults to 8
TUNED_THREADS = 16


def noop(index: int, pad: str = "") -> None:
    record(index)
    run_sync(index)


def configure(url: str) -> dramatiq.Actor:
    """A ``RedisBroker`` on ``url`` with the ``GroupCallbacks`` middleware, made the global
    broker (the one Dramatiq's CLI runs), and ``noop`` declared on it as an actor."""
    broker = RedisBroker(url=url)
    broker.add_middleware(GroupCallbacks(RedisBackend(client=broker.client)))
    dramatiq.set_broker(broker)
    return dramatiq.actor(noop, broker=broker, queue_name=QUEUE)


# The worker's environment names the place; the driver's does not (it calls configure in
# open), so importing this module there declares nothing.
if url := os.environ.get("BENCH_URL"):
    configure(url)


class DramatiqPeer(Peer):
    name = "dramatiq"
    package = "dramatiq"
    backend = "redis"
    default_concurrency = DEFAULT_THREADS * (os.cpu_count() or 1)  # threads in all processes
    tuned_concurrency = TUNED_THREADS
    fan_in = "Dramatiq group completion callback"

    async def open(self, place: Place) -> None:
        await super().open(place)
        self.actor = configure(place.url)
        self.broker: RedisBroker = self.actor.broker

    async def close(self) -> None:
        self.broker.close()
        self.broker.client.close()

    async def enqueue(self, indices: Sequence[int], pad: str = "") -> None:
        for i in indices:
            self.actor.send(i, pad)

    async def queued(self) -> int:
        return int(self.broker.client.llen(f"{self.broker.namespace}:{QUEUE}"))

    def worker_argv(self, tuned: bool) -> list[str]:
        argv = ["-m", "dramatiq", __name__]
        return [*argv, "--processes", "1", "--threads", str(TUNED_THREADS)] if tuned else argv

    async def submit_fan_in(self, children: int) -> None:
        family = dramatiq.group(
            [self.actor.message(i) for i in range(children)], broker=self.broker
        )
        family.add_completion_callback(self.actor.message(children))
        family.run()


PEER = DramatiqPeer()
