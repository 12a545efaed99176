"""What a job does after its ledger record, the same for Conveyor and every peer:
chosen by ``$BENCH_BODY`` (``python -m bench.run --body``), read once per process.

- ``noop``: nothing (the default): the queue's own cost, at its largest share.
- ``redis``: one Redis round trip of five pipelined commands to another database
  (``$BENCH_BODY_REDIS``, default db 13): redis-py asyncio in async handlers, redis-py
  in sync ones, one client per process (per event loop).
- ``cpu``: ``CPU_ROUNDS`` turns of a pure-Python loop, about 1 ms on the machine
  bench/RESULTS.md names; the same work for everyone, whatever it takes.

Standard library only until a body needs redis-py, which every Redis peer's
virtualenv has (and procrastinate's, for this).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

ENV = "BENCH_BODY"
BODIES = ("noop", "redis", "cpu")
BODY = os.environ.get(ENV, "noop")
REDIS_URL = os.environ.get("BENCH_BODY_REDIS", "redis://127.0.0.1:6379/13")
CPU_ROUNDS = 20_000
if BODY not in BODIES:
    raise SystemExit(f"{ENV}={BODY!r}: expected one of {', '.join(BODIES)}")

_sync_client: Any = None
_async_clients: dict[int, Any] = {}


def cpu() -> int:
    total = 0
    for i in range(CPU_ROUNDS):
        total += i * i % 7
    return total


def _commands(pipe: Any, index: int) -> None:
    key = f"bench:body:{index}"
    pipe.set(key, index, ex=60)
    pipe.get(key)
    pipe.incr("bench:body:count")
    pipe.expire("bench:body:count", 60)
    pipe.delete(key)


def run_sync(index: int) -> None:
    """The body, in a sync handler."""
    global _sync_client
    if BODY == "cpu":
        cpu()
    elif BODY == "redis":
        if _sync_client is None:
            import redis

            _sync_client = redis.Redis.from_url(REDIS_URL)
        pipe = _sync_client.pipeline(transaction=False)
        _commands(pipe, index)
        pipe.execute()


async def run_async(index: int) -> None:
    """The body, in an async handler."""
    if BODY == "cpu":
        cpu()
    elif BODY == "redis":
        loop = id(asyncio.get_running_loop())
        client = _async_clients.get(loop)
        if client is None:
            import redis.asyncio as aioredis

            client = _async_clients[loop] = aioredis.Redis.from_url(REDIS_URL)
        async with client.pipeline(transaction=False) as pipe:
            _commands(pipe, index)
            await pipe.execute()
