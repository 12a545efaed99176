"""``RedisStorage``: the Storage protocol on Redis, one Lua script per transition."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from conveyor.core import rules
from conveyor.core.config import Config, mask_url
from conveyor.core.errors import (
    MissingExtra,
    PayloadDecodeError,
)
from conveyor.core.job import Job, JobSpec, Lease
from conveyor.core.queues import QueueControls, QueueLimits
from conveyor.core.states import JobState
from conveyor.core.storage import (
    CHILDREN_PAGE,
    FAMILY_TREE_LIMIT,
    BlockingEnqueuer,
    Claimed,
    Failure,
    HandBack,
    JobEvent,
    JobFilter,
    JobPage,
    MaintenanceReport,
    MinuteCount,
    Outcome,
    QueueStats,
    Retry,
    Success,
    WorkerInfo,
    check_outcomes,
    take_or_hand_back,
)

try:
    import redis.asyncio as aioredis
    from redis import exceptions as redis_errors
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra(
        "the Redis backend needs redis-py: pip install 'conveyor-jobs[redis]'"
    ) from exc

from ._claiming import claim_or_wait
from ._codec import (
    ArgValue,
    controls_from_field,
    created_at,
    job_from_hash,
    pairs,
    specs_args,
)
from ._connect import Client, blocking_client, connect
from ._direct import BlockingCalls, DirectCalls
from ._errors import translated
from ._scripts import Scripts
from .layout import FIELD, OUTCOME_KIND
from .sharded import SHARD_MARK, ShardedStorage, check_shard_count, shard_namespaces, split_shards

if TYPE_CHECKING:
    from redis.commands.core import Script

log = logging.getLogger("conveyor.redis")
#: Keys ``namespaces`` looks at, at most: it only feeds a hint.
NAMESPACE_SCAN = 100_000
Fields = dict[bytes, bytes]  # replies are bytes: the client runs with decode_responses=False

LIST_BATCH = 200
LIST_SCAN_LIMIT = 5000  # a filtered listing examines at most this many jobs per page
_TOKEN = FIELD["token"].encode()


class RedisStorage:
    """Jobs in Redis hashes; queues in lists; every transition one Lua script."""

    def __init__(
        self,
        client: Client,
        config: Config,
        *,
        namespace: str | None = None,
        direct: DirectCalls | None = None,
    ) -> None:
        self._redis = client
        # Scripts run past redis-py's command layer on one server (``_direct``); a
        # cluster client routes each call to its slot's master, so it keeps its own.
        # The shards of a spread namespace share their client's.
        if direct is None and isinstance(client, aioredis.Redis):
            direct = DirectCalls(client.connection_pool)
        self._direct = direct
        self._url = config.url
        # ``namespace``: one shard of a namespace spread over several (``sharded.py``)
        self._prefix = "{" + (namespace or config.namespace) + "}:"
        self._keys = [self._prefix]
        self._retention = config.retention.total_seconds()
        self._failed_retention = config.failed_retention.total_seconds()
        self._max_lost = config.max_lost
        self._scripts = Scripts(client)
        self._config = config
        # The sync producer's calls and its enqueue script, made at its first enqueue.
        self._blocking: tuple[BlockingCalls, Script] | None = None
        self._blocking_lock = threading.Lock()

    @classmethod
    async def open(cls, config: Config) -> RedisStorage | ShardedStorage:
        """Connect and check the server; a URL with ``?shards=N`` (N > 1) spreads the
        namespace over N shards (``sharded.py``).

        Raises:
            ConfigurationError: the URL is malformed, or names another shard count than
                the namespace was made with.
            BackendUnavailable: Redis does not answer.
        """
        url, count = split_shards(config.url)
        config = replace(config, url=url)
        client = await connect(config)
        try:
            await check_shard_count(client, config, count)
        except BaseException:
            await client.aclose()
            raise
        storage = cls(client, config)
        await storage._warn_if_evicting()
        if count == 1:
            return storage
        names = shard_namespaces(config.namespace, count)
        shards = [cls(client, config, namespace=n, direct=storage._direct) for n in names[1:]]
        return ShardedStorage([storage, *shards])

    @classmethod
    async def namespaces(cls, config: Config) -> list[str]:
        """Namespaces with jobs or workers in this database: a bounded ``SCAN`` for their
        ``stats`` and ``workers`` keys (a hint, so it stops after NAMESPACE_SCAN keys)."""
        client = await connect(replace(config, url=split_shards(config.url)[0]))
        storage = cls(client, config)
        found: set[str] = set()
        scanned = 0
        try:
            with translated(config.url):
                # scan_iter walks every master of a cluster, and the one server otherwise.
                keys = storage._redis.scan_iter(match="{*}:*", count=1000)
                async for key in keys:
                    scanned += 1
                    name, _, rest = cast(bytes, key).decode(errors="replace").partition("}:")
                    if rest in ("stats", "workers"):
                        # a shard of a spread namespace stands for the namespace
                        found.add(name.removeprefix("{").partition(SHARD_MARK)[0])
                    if scanned >= NAMESPACE_SCAN:
                        break
            return sorted(found)
        finally:
            await storage.aclose()

    async def _warn_if_evicting(self) -> None:
        try:
            policy = await self._redis.config_get("maxmemory-policy")
        except redis_errors.RedisError:
            return  # CONFIG is often disabled on managed Redis
        found = cast(dict[Any, Any], policy)
        value = found.get(b"maxmemory-policy") or found.get("maxmemory-policy")
        if value not in (None, b"noeviction", "noeviction"):
            log.warning(
                "Redis at %s evicts keys (maxmemory-policy=%s): jobs can vanish under memory "
                "pressure; set maxmemory-policy noeviction",
                mask_url(self._url),
                value.decode() if isinstance(value, bytes) else value,
            )

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    async def _call(self, script: Any, args: Sequence[ArgValue]) -> Any:
        with translated(self._url):
            if self._direct is not None:
                return await self._direct.run(script, self._keys, args)
            return await script(keys=self._keys, args=args)

    # --- producing and working ----------------------------------------------------

    async def enqueue(self, jobs: Sequence[JobSpec]) -> list[str]:
        rules.check_new_jobs(jobs)
        if not jobs:
            return []
        held = await self._call(self._scripts.enqueue, [len(jobs), *specs_args(jobs)])
        return _ids_or_holders(jobs, held)

    def blocking_enqueuer(self) -> BlockingEnqueuer | None:
        """The enqueue for ``Client`` (sync) on a blocking client of its own; none on a
        cluster, whose routing only the async client does here."""
        return self._enqueue_blocking if self._direct is not None else None

    def _enqueue_blocking(self, jobs: Sequence[JobSpec]) -> list[str]:
        rules.check_new_jobs(jobs)
        if not jobs:
            return []
        made = self._blocking
        if made is None:
            with self._blocking_lock:
                if self._blocking is None:
                    client = blocking_client(self._config)
                    script = client.register_script(self._scripts.enqueue.script)
                    self._blocking = (BlockingCalls(client), script)
                made = self._blocking
        calls, script = made
        with translated(self._url):
            held = calls.run(script, self._keys, [len(jobs), *specs_args(jobs)])
        return _ids_or_holders(jobs, held)

    async def claim(
        self, worker_id: str, queues: Sequence[str], limit: int, lease: float, wait: float
    ) -> list[Claimed]:
        if not queues or limit < 1:
            return []
        return await claim_or_wait(
            lambda: self.claim_once(worker_id, queues, limit, lease),
            lambda timeout: self.wait_for_wake(queues, timeout),
            wait,
        )

    async def claim_once(
        self, worker_id: str, queues: Sequence[str], limit: int, lease: float
    ) -> tuple[list[Claimed], float | None]:
        """One claim round trip, never blocking: what it took, and when the queues'
        next scheduled job is due (``None``: none is)."""
        claimed, next_due = await take_or_hand_back(
            self._take(worker_id, queues, limit, lease), self
        )
        return claimed, float(next_due) if next_due else None

    async def wait_for_wake(self, queues: Sequence[str], timeout: float) -> None:
        """Block on the server until an enqueue or release pushes a wake token for one of
        ``queues``, or ``timeout`` seconds pass."""
        wake_keys = [self._key("wake", q) for q in queues]
        with translated(self._url):
            await self._redis.blpop(wake_keys, timeout=max(timeout, 0.001))

    async def _take(
        self, worker_id: str, queues: Sequence[str], limit: int, lease: float
    ) -> tuple[list[Claimed], str]:
        offset = random.randrange(len(queues))
        rows, next_due = await self._call(
            self._scripts.claim, [worker_id, lease, limit, offset, *queues]
        )
        return await self._decode_claims(rows), next_due.decode() if next_due else ""

    async def holds(self, job_ids: Sequence[str]) -> list[bool]:
        """Whether each job is stored here (one pipelined round trip)."""
        if not job_ids:
            return []
        with translated(self._url):
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.exists(self._key("job", job_id))
                found = await pipe.execute()
        return [bool(n) for n in found]

    async def _decode_claims(self, rows: list[list[Any]]) -> list[Claimed]:
        claimed: list[Claimed] = []
        broken: list[Outcome] = []
        for raw_id, flat in rows:
            job_id = raw_id.decode()
            fields = pairs(flat)
            lease = Lease(job_id, int(fields.get(_TOKEN, b"0")))
            try:
                job = job_from_hash(job_id, fields)
            except (KeyError, ValueError) as exc:
                log.error("job %s is not a valid Conveyor job in Redis: %r", job_id, exc)
                broken.append(Failure(lease, f"stored job is not a valid Conveyor job: {exc!r}"))
                continue
            claimed.append(Claimed(job, lease))
        if broken:
            await self.record(broken)
        return claimed

    async def stage(self, lease: Lease, declarations: Sequence[JobSpec]) -> None:
        if not declarations:
            return
        rules.check_declarations(declarations, lease.job_id)
        args = [lease.job_id, lease.token, len(declarations), *specs_args(declarations)]
        await self._call(self._scripts.stage, args)  # LeaseLost when the lease is gone

    async def record(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []
        check_outcomes(outcomes)
        args: list[ArgValue] = [len(outcomes)]
        for outcome in outcomes:
            lease = outcome.lease
            match outcome:
                case Success(declarations=declarations, result=result, result_type=rtype):
                    kind = OUTCOME_KIND["success"]
                    args += [kind, lease.job_id, lease.token, "", "", result or b"", rtype or ""]
                    args += [len(declarations), *specs_args(declarations)]
                case Retry(error=error, retry_at=retry_at):
                    kind = OUTCOME_KIND["retry"]
                    args += [kind, lease.job_id, lease.token, error, repr(retry_at), "", "", 0]
                case Failure(error=error):
                    kind = OUTCOME_KIND["failure"]
                    args += [kind, lease.job_id, lease.token, error, "", "", "", 0]
                case HandBack(run_at=run_at):
                    kind = OUTCOME_KIND["hand_back"]
                    when = "" if run_at is None else repr(run_at)
                    args += [kind, lease.job_id, lease.token, "", when, "", "", 0]
        results = await self._call(self._scripts.record, args)
        return [bool(r) for r in results]

    async def renew(self, leases: Sequence[Lease], lease: float) -> list[Lease]:
        if not leases:
            return []
        args: list[ArgValue] = [lease]
        for held in leases:
            args += [held.job_id, held.token]
        lost = {raw.decode() for raw in await self._call(self._scripts.renew, args)}
        return [held for held in leases if held.job_id in lost]

    async def progress(self, lease: Lease, fraction: float, note: str | None) -> None:
        args: list[ArgValue] = [lease.job_id, lease.token, repr(fraction), note or ""]
        await self._call(self._scripts.progress, args)  # LeaseLost when the lease is gone

    async def interrupts(self) -> AsyncIterator[Lease]:
        async for data in self._subscribe("cancels"):
            job_id, _, token = data.decode().partition(" ")
            yield Lease(job_id, int(token))

    async def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        payload = json.dumps(info.to_dict())
        await self._call(self._scripts.workers, ["register", info.id, payload, ttl])

    async def remove_worker(self, worker_id: str) -> None:
        with translated(self._url):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._key("w", worker_id))
                pipe.zrem(self._key("workers"), worker_id)
                await pipe.execute()

    async def maintain(self) -> MaintenanceReport:
        promoted, recovered, lost, pruned, repaired = await self._call(
            self._scripts.maintain,
            [self._retention, self._failed_retention, self._max_lost, rules.MAINTENANCE_BATCH],
        )
        return MaintenanceReport(
            promoted,
            recovered,
            [raw.decode() for raw in lost],
            pruned,
            [raw.decode() for raw in repaired],
        )

    # --- steering -------------------------------------------------------------------

    async def cancel(self, job_id: str, reason: str = "cancelled") -> Job:
        return await self._steer(self._scripts.cancel, job_id, [job_id, reason])

    async def retry(self, job_id: str) -> Job:
        return await self._steer(self._scripts.retry, job_id, [job_id])

    async def retry_failed(self, root_id: str) -> list[Job]:
        ids = [raw.decode() for raw in await self._call(self._scripts.retry_failed, [root_id])]
        return [job for job in await self._fetch(ids) if job is not None]

    async def discard(self, job_id: str) -> Job:
        return await self._steer(self._scripts.discard, job_id, [job_id])

    async def pause_queue(self, queue: str, paused: bool) -> None:
        await self._call(self._scripts.queue_controls, ["pause", queue, int(paused)])

    async def limit_queue(self, queue: str, limits: QueueLimits) -> None:
        rate = limits.rate
        args: list[ArgValue] = ["limit", queue, limits.max_running or ""]
        args += [rate.limit, repr(rate.per)] if rate else ["", ""]
        await self._call(self._scripts.queue_controls, args)

    async def queue_controls(self) -> list[QueueControls]:
        with translated(self._url):
            stored = cast(Fields, await self._redis.hgetall(self._key("ctl")))
        found = []
        for raw_queue, value in stored.items():
            queue = raw_queue.decode()
            try:
                found.append(controls_from_field(queue, value))
            except ValueError:
                log.error("queue %s has controls Conveyor did not write: %r", queue, value)
        return sorted(found, key=lambda c: c.queue)

    async def _steer(self, script: Any, job_id: str, args: list[ArgValue]) -> Job:
        """Run a steering script; it answers with the job's fields (or a typed error)."""
        return self._decode(job_id, pairs(await self._call(script, args)))

    # --- inspecting -----------------------------------------------------------------

    def _decode(self, job_id: str, fields: dict[bytes, bytes]) -> Job:
        try:
            return job_from_hash(job_id, fields)
        except (KeyError, ValueError) as exc:
            raise PayloadDecodeError(
                f"job {job_id} in Redis is not a valid Conveyor job: {exc!r}"
            ) from exc

    async def get(self, job_id: str) -> Job | None:
        with translated(self._url):
            fields = cast(Fields, await self._redis.hgetall(self._key("job", job_id)))
        return self._decode(job_id, fields) if fields else None

    async def _fetch(self, ids: Sequence[str]) -> list[Job | None]:
        if not ids:
            return []
        with translated(self._url):
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(self._key("job", job_id))
                rows = await pipe.execute()
        return [self._decode(i, f) if f else None for i, f in zip(ids, rows, strict=True)]

    async def list_jobs(
        self, filter: JobFilter, *, after: str | None = None, limit: int = 50
    ) -> JobPage:
        states = [filter.state] if filter.state else list(JobState)
        upper = f"({after}" if after else "+"
        lower = "-"
        if filter.id_prefix:
            lower = f"[{filter.id_prefix}"
            prefix_end = filter.id_prefix + "\xff"
            if after is None or after >= prefix_end:
                upper = f"({prefix_end}"
        found: list[Job] = []
        examined = 0
        last_seen: str | None = None
        exhausted = False
        while len(found) <= limit and examined < LIST_SCAN_LIMIT:
            page = await self._page_below(states, upper, lower, LIST_BATCH)
            if len(page) < LIST_BATCH:
                exhausted = True
            for job_id, job in page:
                examined += 1
                last_seen = job_id
                if job is not None and filter.matches(job):
                    found.append(job)
                    if len(found) > limit:
                        break
            if exhausted or len(found) > limit or last_seen is None:
                break
            upper = f"({last_seen}"
        if len(found) > limit:
            return JobPage(found[:limit], found[limit - 1].id)
        more = not exhausted and last_seen is not None
        return JobPage(found, last_seen if more else None)

    async def _page_below(
        self, states: list[JobState], upper: str, lower: str, n: int
    ) -> list[tuple[str, Job | None]]:
        """The ``n`` greatest ids in the states' indexes within the lexical bounds, with
        their jobs, read in one atomic step (``list.lua``)."""
        args = [upper, lower, n, *(state.value for state in states)]
        flat = await self._call(self._scripts.list, args)
        page: list[tuple[str, Job | None]] = []
        for raw_id, fields in zip(flat[::2], flat[1::2], strict=True):
            job_id = raw_id.decode()
            page.append((job_id, self._decode(job_id, pairs(fields)) if fields else None))
        return page

    async def family(self, job_id: str) -> list[Job]:
        with translated(self._url):
            async with self._redis.pipeline(transaction=False) as pipe:
                for kind in ("kids", "heirs", "staged"):
                    pipe.lrange(self._key(kind, job_id), 0, -1)
                rows = await pipe.execute()
        ids = list(dict.fromkeys(raw.decode() for row in rows for raw in row))
        return [job for job in await self._fetch(ids) if job is not None]

    async def children(
        self,
        job_id: str,
        *,
        open_only: bool = False,
        after: str | None = None,
        limit: int = CHILDREN_PAGE,
    ) -> JobPage:
        args: list[ArgValue] = [job_id, int(after or 0), limit, "1" if open_only else ""]
        cursor, flat, total = await self._call(self._scripts.children, args)
        found = [
            self._decode(raw.decode(), pairs(fields))
            for raw, fields in zip(flat[::2], flat[1::2], strict=True)
        ]
        return JobPage(found, cursor.decode() or None, total)

    async def family_tree(self, root_id: str, *, limit: int = FAMILY_TREE_LIMIT) -> list[Job]:
        flat = await self._call(self._scripts.family_tree, [root_id, limit])
        return [
            self._decode(raw.decode(), pairs(fields))
            for raw, fields in zip(flat[::2], flat[1::2], strict=True)
        ]

    async def queue_stats(self) -> list[QueueStats]:
        with translated(self._url):
            raw = cast(Fields, await self._redis.hgetall(self._key("stats")))
        counts: dict[str, dict[JobState, int]] = {}
        for field, value in raw.items():
            # errors="replace": a queue name garbled into bytes that are not UTF-8
            state, _, queue = field.decode(errors="replace").partition(":")
            number = int(value)
            if number:
                counts.setdefault(queue, {})[JobState(state)] = number
        return [QueueStats(q, c) for q, c in sorted(counts.items())]

    async def oldest_queued(self) -> dict[str, float]:
        oldest: dict[str, float] = {}
        for raw_queue, ready_ms, job_id in await self._call(self._scripts.oldest_queued, []):
            queue = raw_queue.decode(errors="replace")
            # No ready time stored: it became queued within READY_FROM_ID_MS of its
            # creation (transitions.lua), or before ready times were kept.
            ready = int(ready_ms) / 1000 if ready_ms else created_at(job_id.decode())
            if ready is not None:
                oldest[queue] = min(oldest.get(queue, ready), ready)
        return oldest

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._call(self._scripts.workers, ["list"])
        found = [WorkerInfo.from_dict(json.loads(info), float(seen)) for info, seen in rows]
        return sorted(found, key=lambda w: w.id)

    async def counters(
        self, minutes: int = 60, type: str | None = None, queue: str | None = None
    ) -> list[MinuteCount]:
        last = int(time.time() // 60)
        span = range(last - minutes + 1, last + 1)
        suffix = f"@{queue}" if queue is not None else f":{type}" if type is not None else ""
        fields = [f"{column}{suffix}" for column in ("s", "r", "f", "x")]
        with translated(self._url):
            async with self._redis.pipeline(transaction=False) as pipe:
                for minute in span:
                    pipe.hmget(self._key("cnt", str(minute)), fields)
                for minute in span:
                    # by name: redis-py refuses pfcount in a cluster pipeline, since it
                    # may name several keys (one key here, in the namespace's slot)
                    pipe.execute_command("PFCOUNT", self._key("wmin", str(minute)))
                replies = await pipe.execute()
        rows, workers = replies[:minutes], replies[minutes:]
        return [
            MinuteCount(
                datetime.fromtimestamp(minute * 60, UTC),
                int(succeeded or 0),
                int(retried or 0),
                int(failed or 0),
                int(seen) if not suffix else 0,
                int(repaired or 0),
            )
            for minute, (succeeded, retried, failed, repaired), seen in zip(
                span, rows, workers, strict=True
            )
        ]

    async def events(self) -> AsyncIterator[JobEvent]:
        async for data in self._subscribe("events"):
            yield JobEvent.from_line(data.decode(errors="replace"))

    async def _subscribe(self, channel: str) -> AsyncIterator[bytes]:
        """Messages published on one of the namespace's channels, from now on."""
        pubsub = self._redis.pubsub()
        with translated(self._url):
            await pubsub.subscribe(self._key(channel))
        try:
            while True:
                with translated(self._url):
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None or message["type"] != "message":
                    continue
                yield message["data"]
        finally:
            with contextlib.suppress(redis_errors.RedisError):
                await pubsub.aclose()

    async def publish_types(self, sets: Mapping[str, bytes]) -> None:
        if sets:
            with translated(self._url):
                await self._redis.hset(self._key("types"), mapping=dict(sets))  # type: ignore[arg-type]

    async def descriptor_sets(self) -> dict[str, bytes]:
        with translated(self._url):
            raw = cast(Fields, await self._redis.hgetall(self._key("types")))
        return {name.decode(): data for name, data in raw.items()}

    async def aclose(self) -> None:
        if self._blocking is not None:
            self._blocking[0].close()
        if self._direct is not None:
            await self._direct.close()
        await self._redis.aclose()


def _ids_or_holders(jobs: Sequence[JobSpec], held: list[Any]) -> list[str]:
    """``Storage.enqueue``'s answer from the enqueue script's: the index and holder of
    each job whose key was held (rule 15)."""
    ids = [job.id for job in jobs]
    for index, holder in zip(held[::2], held[1::2], strict=True):
        ids[index] = holder.decode()
    return ids
