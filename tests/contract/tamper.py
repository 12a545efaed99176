"""Corrupt a job's accounting behind storage's back, as a bug or a hand edit would.

The one place in the contract suite that knows how each backend stores a job:
the reconciler's tests need a wrong count to find.
"""

from __future__ import annotations

from typing import Any

import conveyor
from conveyor import JobState
from conveyor.core.storage import Storage


async def tamper(
    config: conveyor.Config,
    storage: Storage,
    job_id: str,
    *,
    open_children: int | None = None,
    state: JobState | None = None,
) -> None:
    """Overwrite a job's open count and/or state (its state index follows, nothing else)."""
    scheme = config.scheme
    if scheme == "memory":
        row = storage._store._s.rows[job_id]  # type: ignore[attr-defined]
        if open_children is not None:
            row.open_children = open_children
        if state is not None:
            row.state = state
    elif scheme.startswith("redis"):
        await _redis(storage, job_id, open_children, state)
    else:
        await _sql(storage, job_id, open_children, state)


async def _redis(
    storage: Any, job_id: str, open_children: int | None, state: JobState | None
) -> None:
    from conveyor.backends.redis.layout import FIELD, STATE_CODE

    client, prefix = await _redis_home(storage, job_id)
    key = f"{prefix}job:{job_id}"
    if open_children is not None:
        await client.hset(key, FIELD["open"], open_children)
    if state is not None:
        old = {code: s for s, code in STATE_CODE.items()}[(await client.hget(key, "s")).decode()]
        await client.zrem(f"{prefix}idx:{old.value}", job_id)
        await client.zadd(f"{prefix}idx:{state.value}", {job_id: 0})
        await client.hset(key, FIELD["state"], STATE_CODE[state])


async def _redis_home(storage: Any, job_id: str) -> tuple[Any, str]:
    """The client and key prefix of the shard that holds a job (the namespace's own
    prefix unless it is spread over shards)."""
    from conveyor.backends.redis.sharded import ShardedStorage

    if isinstance(storage, ShardedStorage):
        storage = await storage._find(job_id)
    return storage._redis, storage._prefix


async def _sql(
    storage: Any, job_id: str, open_children: int | None, state: JobState | None
) -> None:
    from sqlalchemy import update

    jobs = storage._t.jobs
    values: dict[str, Any] = {}
    if open_children is not None:
        values["open_children"] = open_children
    if state is not None:
        values["state"] = state.value
    async with storage._engine.begin() as conn:
        await conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))


async def forget(config: conveyor.Config, storage: Storage, job_id: str) -> None:
    """Delete one job's record, as if retention had pruned it alone."""
    scheme = config.scheme
    if scheme == "memory":
        storage._store._s.forget(job_id)  # type: ignore[attr-defined]
    elif scheme.startswith("redis"):
        client, prefix = await _redis_home(storage, job_id)
        await client.delete(f"{prefix}job:{job_id}")
    else:
        from sqlalchemy import delete

        jobs = storage._t.jobs  # type: ignore[attr-defined]
        async with storage._engine.begin() as conn:  # type: ignore[attr-defined]
            await conn.execute(delete(jobs).where(jobs.c.id == job_id))
