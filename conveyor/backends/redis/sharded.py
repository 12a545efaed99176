"""One namespace spread over several Redis shards: ``?shards=N`` on a Redis URL.

A namespace's keys carry the hash tag ``{namespace}``, so on a Redis Cluster a
namespace lives in one slot and one shard serves it. With ``shards=N`` the
namespace is N sub-namespaces, each a whole ``RedisStorage`` of its own:
shard 0 is the namespace itself and the others are ``namespace~j`` (a name no
user namespace can have), chosen so that their slots fall in N different
ranges of the slot space, which a cluster made by ``redis-cli --cluster create``
serves from N different masters.

What goes where:

- A top-level job goes to the shard its key picks (queue and key hashed, so
  rule 15's "one holder per key" stays exact between top-level jobs), or else
  the shard its id picks. Its whole family follows it: declarations are staged
  and released by scripts of the shard their root lives on, so every
  transition and every cascade stays one atomic script on one slot.
- A worker claims round-robin: one shard after the other until it has what it
  asked for, and when none has work it waits on every shard's wake list at once.
- Reads merge the shards' answers; a job addressed by id is looked up on every
  shard at once (one pipelined round trip each, concurrently).
- Workers, payload types and counters of workers live on shard 0; pausing a
  queue pauses it on every shard; a queue's limits are split between the
  shards in whole shares that add up to them (rule 14's bounds hold over the
  sum), so a limit below N is refused.

What a shard boundary costs (``docs/rules.md``, "A namespace over shards"): a
batch enqueue is atomic per shard, not across them, and a declaration's key
(rule 15) is held on its family's shard only.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from conveyor.core import rules
from conveyor.core.config import Config, mask_url
from conveyor.core.errors import BackendError, ConfigurationError, InvalidLimits, LeaseLost
from conveyor.core.job import Job, JobSpec, Lease
from conveyor.core.queues import QueueControls, QueueLimits, Rate
from conveyor.core.states import JobState
from conveyor.core.storage import (
    CHILDREN_PAGE,
    FAMILY_TREE_LIMIT,
    Claimed,
    HandBack,
    JobEvent,
    JobFilter,
    JobPage,
    MaintenanceReport,
    MinuteCount,
    Outcome,
    QueueStats,
    WorkerInfo,
    check_outcomes,
)

from ._claiming import claim_or_wait
from ._errors import translated

if TYPE_CHECKING:
    from ._connect import Client
    from .storage import RedisStorage

T = TypeVar("T")

#: What separates a namespace from a shard's number in a shard's name.
SHARD_MARK = "~"
#: The most shards one namespace may have.
MAX_SHARDS = 64
#: Items a merged stream buffers for a slow reader.
MERGE_BUFFER = 10_000
#: Leases whose shard a storage remembers, at most (the oldest are forgotten first: a
#: forgotten one is looked up on every shard, since a job never changes shard).
LEASE_MEMORY = 65_536


def split_shards(url: str) -> tuple[str, int]:
    """The URL without its ``shards`` option, and the shard count it names (1 without).

    Raises:
        ConfigurationError: ``shards`` is not a whole number from 1 to MAX_SHARDS.
    """
    parts = urlsplit(url)
    options = parse_qsl(parts.query, keep_blank_values=True)
    counts = [value for name, value in options if name == "shards"]
    if not counts:
        return url, 1
    rest = urlencode([(name, value) for name, value in options if name != "shards"])
    stripped = urlunsplit(parts._replace(query=rest))
    try:
        count = int(counts[-1])
    except ValueError:
        count = 0
    if len(counts) > 1 or not 1 <= count <= MAX_SHARDS:
        raise ConfigurationError(
            f"bad Redis URL {mask_url(url)!r}: shards= takes one whole number "
            f"from 1 to {MAX_SHARDS}, got {', '.join(counts)!r}"
        )
    return stripped, count


def _slot(namespace: str) -> int:
    return int(key_slot(("{" + namespace + "}:").encode()))


def shard_namespaces(namespace: str, count: int) -> list[str]:
    """The names of a namespace's ``count`` shards: the namespace itself first, then
    ``namespace~j`` for the smallest ``j`` whose slot lies in the next of ``count``
    equal ranges of the slot space (so a cluster with its slots split evenly over
    ``count`` masters serves each shard from its own master)."""
    size = REDIS_CLUSTER_HASH_SLOTS
    first = _slot(namespace) * count // size
    names = [namespace]
    suffix = 0
    for shard in range(1, count):
        wanted = (first + shard) % count
        while True:
            suffix += 1
            name = f"{namespace}{SHARD_MARK}{suffix}"
            if _slot(name) * count // size == wanted:
                names.append(name)
                break
    return names


async def check_shard_count(client: Client, config: Config, count: int) -> None:
    """Refuse to open a namespace with another shard count than it was first used with:
    its jobs would be looked for on the wrong shards. A sharded namespace records its
    count on shard 0 when first opened; an unsharded one records nothing, and once it
    holds jobs, controls or workers it stays unsharded.

    Raises:
        ConfigurationError: the namespace was made with another count.
    """
    prefix = "{" + config.namespace + "}:"
    with translated(config.url):
        stored = await client.get(prefix + "shards")
        if count > 1 and stored is None:
            # A namespace already used with one shard keeps it: its keys, controls and
            # ids are all on shard 0, where rules 9, 14 and 15 would no longer see them.
            used = await client.exists(*(prefix + name for name in ("stats", "ctl", "workers")))
            if not used:
                await client.set(prefix + "shards", count, nx=True)
                stored = await client.get(prefix + "shards")
    made = int(stored) if stored else 1
    if made != count:
        raise ConfigurationError(
            f"namespace {config.namespace!r} at {mask_url(config.url)} is spread over {made} "
            f"shard(s), not {count}: open it with shards={made} in the URL (a namespace keeps "
            "the shard count it was first used with; spread a new namespace instead)"
        )


def shares(total: int, count: int) -> list[int]:
    """``total`` split into ``count`` whole shares as even as can be, adding up to it."""
    return [total // count + (1 if shard < total % count else 0) for shard in range(count)]


def _place(key: str) -> int:
    return zlib.crc32(key.encode())


async def _merged(streams: Sequence[AsyncIterator[T]]) -> AsyncIterator[T]:
    """The items of several streams as they come; the first error of any ends it."""
    found: asyncio.Queue[tuple[T] | BaseException] = asyncio.Queue(MERGE_BUFFER)

    async def pump(stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                await found.put((item,))
        except Exception as exc:  # handed to the reader, who raises it
            await found.put(exc)

    tasks = [asyncio.ensure_future(pump(stream)) for stream in streams]
    try:
        while True:
            got = await found.get()
            if isinstance(got, BaseException):
                raise got
            yield got[0]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ShardedStorage:
    """The Storage protocol over the shards of one namespace (see the module's text)."""

    def __init__(self, shards: Sequence[RedisStorage]) -> None:
        self._shards = list(shards)
        self._count = len(self._shards)
        self._turn = 0
        # The shard of each job this storage handed out under a lease, until its outcome
        # is recorded or the lease is lost: outcomes, renewals and declarations go there.
        # A cache (bounded by LEASE_MEMORY): a lease a worker drops without an outcome
        # (its job cancelled, its lease lost) would otherwise stay for ever.
        self._leases: dict[str, int] = {}

    # --- where jobs are ---------------------------------------------------------------

    def _home(self, spec: JobSpec) -> int:
        """Where a top-level job goes: by its queue's key (rule 15), else by its id."""
        basis = f"{spec.queue}\0{spec.key}" if spec.key is not None else spec.id
        return _place(basis) % self._count

    async def _locate(self, job_ids: Sequence[str]) -> list[int]:
        """The shard that holds each job: from the leases it handed out, else asked of
        every shard at once (one pipelined round trip each); 0 when none does (shard 0
        then answers "no such job" or "lease lost")."""
        found = [self._leases.get(job_id, -1) for job_id in job_ids]
        unknown = [job_id for job_id, index in zip(job_ids, found, strict=True) if index < 0]
        if unknown:
            held = await self._everywhere(lambda shard: shard.holds(unknown))
            where = {
                job_id: next((s for s, row in enumerate(held) if row[i]), 0)
                for i, job_id in enumerate(unknown)
            }
            found = [
                where[job_id] if index < 0 else index
                for job_id, index in zip(job_ids, found, strict=True)
            ]
        return found

    async def _find(self, job_id: str) -> RedisStorage:
        """The shard that holds a job (see ``_locate``)."""
        [index] = await self._locate([job_id])
        return self._shards[index]

    async def _grouped(self, job_ids: Sequence[str]) -> dict[int, list[int]]:
        """Positions in ``job_ids`` by the shard that holds each job."""
        groups: dict[int, list[int]] = {}
        for position, index in enumerate(await self._locate(job_ids)):
            groups.setdefault(index, []).append(position)
        return groups

    async def _scattered(
        self,
        groups: dict[int, list[int]],
        call: Callable[[RedisStorage, list[int]], Awaitable[list[T]]],
        answers: list[T],
    ) -> list[T]:
        """Run ``call`` on each shard with its positions, at once, and put each answer in
        its position of ``answers``."""
        replies = await asyncio.gather(*(call(self._shards[s], ps) for s, ps in groups.items()))
        for positions, reply in zip(groups.values(), replies, strict=True):
            for position, answer in zip(positions, reply, strict=True):
                answers[position] = answer
        return answers

    async def _everywhere(self, call: Callable[[RedisStorage], Awaitable[T]]) -> list[T]:
        return list(await asyncio.gather(*(call(shard) for shard in self._shards)))

    # --- producing and working ----------------------------------------------------------

    async def enqueue(self, jobs: Sequence[JobSpec]) -> list[str]:
        rules.check_new_jobs(jobs)
        groups: dict[int, list[int]] = {}
        for position, spec in enumerate(jobs):
            groups.setdefault(self._home(spec), []).append(position)
        return await self._scattered(
            groups,
            lambda shard, ps: shard.enqueue([jobs[p] for p in ps]),
            [spec.id for spec in jobs],
        )

    async def claim(
        self, worker_id: str, queues: Sequence[str], limit: int, lease: float, wait: float
    ) -> list[Claimed]:
        if not queues or limit < 1:
            return []
        first = self._turn  # each claim starts one shard further on, then where woken
        self._turn = (self._turn + 1) % self._count

        async def wait_for_wake(timeout: float) -> None:
            nonlocal first
            first = await self._wait_for_wake(queues, timeout)

        return await claim_or_wait(
            lambda: self._claim_round(worker_id, queues, limit, lease, first),
            wait_for_wake,
            wait,
        )

    async def _claim_round(
        self, worker_id: str, queues: Sequence[str], limit: int, lease: float, first: int
    ) -> tuple[list[Claimed], float | None]:
        """Claim from one shard after the other, from ``first``, until ``limit`` are
        taken. A shard that fails is passed over; its error is raised only when no
        shard had work, so that one shard in failover does not stop the others'."""
        claimed: list[Claimed] = []
        dues: list[float] = []
        failure: BackendError | None = None
        try:
            for step in range(self._count):
                index = (first + step) % self._count
                try:
                    got, due = await self._shards[index].claim_once(
                        worker_id, queues, limit - len(claimed), lease
                    )
                except BackendError as exc:
                    failure = failure or exc
                    continue
                for item in got:
                    self._remember(item.lease.job_id, index)
                claimed += got
                if due is not None:
                    dues.append(due)
                if len(claimed) >= limit:
                    break
        except BaseException:
            # Cancelled, or a later shard failed in a way no shard is passed over for:
            # what earlier shards handed out must not wait out its lease (as
            # ``take_or_hand_back`` does for one shard).
            if claimed:
                await asyncio.shield(self.record([HandBack(c.lease) for c in claimed]))
            raise
        if not claimed and failure is not None:
            raise failure
        return claimed, min(dues, default=None)

    async def _wait_for_wake(self, queues: Sequence[str], timeout: float) -> int:
        """Wait on every shard's wake list at once; the shard that woke first (or 0)."""
        waits = [
            asyncio.ensure_future(shard.wait_for_wake(queues, timeout)) for shard in self._shards
        ]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        woke = [task for task in done if task.exception() is None]
        if not woke:
            # Every wait that ended failed: raising lets the worker back off, where
            # going round again would run claims on every shard with no pause.
            raise next(task.exception() for task in done)  # type: ignore[misc]
        return min(waits.index(task) for task in woke)

    def _remember(self, job_id: str, index: int) -> None:
        if len(self._leases) >= LEASE_MEMORY:
            del self._leases[next(iter(self._leases))]
        self._leases[job_id] = index

    async def stage(self, lease: Lease, declarations: Sequence[JobSpec]) -> None:
        try:
            await (await self._find(lease.job_id)).stage(lease, declarations)
        except LeaseLost:
            self._leases.pop(lease.job_id, None)
            raise

    async def record(self, outcomes: Sequence[Outcome]) -> list[bool]:
        check_outcomes(outcomes)
        groups = await self._grouped([outcome.lease.job_id for outcome in outcomes])
        accepted = await self._scattered(
            groups,
            lambda shard, ps: shard.record([outcomes[p] for p in ps]),
            [False] * len(outcomes),
        )
        for outcome in outcomes:
            self._leases.pop(outcome.lease.job_id, None)
        return accepted

    async def renew(self, leases: Sequence[Lease], lease: float) -> list[Lease]:
        groups = await self._grouped([held.job_id for held in leases])
        answers = await asyncio.gather(
            *(self._shards[s].renew([leases[p] for p in ps], lease) for s, ps in groups.items())
        )
        lost = [held for answer in answers for held in answer]
        for held in lost:
            self._leases.pop(held.job_id, None)
        return lost

    async def progress(self, lease: Lease, fraction: float, note: str | None) -> None:
        try:
            await (await self._find(lease.job_id)).progress(lease, fraction, note)
        except LeaseLost:
            self._leases.pop(lease.job_id, None)
            raise

    async def interrupts(self) -> AsyncIterator[Lease]:
        async for lease in _merged([shard.interrupts() for shard in self._shards]):
            self._leases.pop(lease.job_id, None)  # its worker drops it without an outcome
            yield lease

    async def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        await self._shards[0].register_worker(info, ttl)

    async def remove_worker(self, worker_id: str) -> None:
        await self._shards[0].remove_worker(worker_id)

    async def maintain(self) -> MaintenanceReport:
        reports = await self._everywhere(lambda shard: shard.maintain())
        return MaintenanceReport(
            promoted=sum(r.promoted for r in reports),
            recovered=sum(r.recovered for r in reports),
            lost=[job_id for r in reports for job_id in r.lost],
            pruned=sum(r.pruned for r in reports),
            repaired=[job_id for r in reports for job_id in r.repaired],
        )

    # --- steering ---------------------------------------------------------------------

    async def cancel(self, job_id: str, reason: str = "cancelled") -> Job:
        return await (await self._find(job_id)).cancel(job_id, reason)

    async def retry(self, job_id: str) -> Job:
        return await (await self._find(job_id)).retry(job_id)

    async def retry_failed(self, root_id: str) -> list[Job]:
        return await (await self._find(root_id)).retry_failed(root_id)

    async def discard(self, job_id: str) -> Job:
        return await (await self._find(job_id)).discard(job_id)

    async def pause_queue(self, queue: str, paused: bool) -> None:
        await self._everywhere(lambda shard: shard.pause_queue(queue, paused))

    async def limit_queue(self, queue: str, limits: QueueLimits) -> None:
        count = self._count
        cap, rate = limits.max_running, limits.rate
        checked = (("max_running", cap), ("a rate's limit", rate.limit if rate else None))
        for name, value in checked:
            if value is not None and value < count:
                raise InvalidLimits(
                    f"{name} {value} is below the {count} shards this namespace is spread "
                    f"over: each shard takes a share of at least 1 (keep a queue that must "
                    f"run fewer at once in a namespace that is not sharded)"
                )
        caps = shares(cap, count) if cap is not None else [None] * count
        rates = shares(rate.limit, count) if rate is not None else [None] * count
        await asyncio.gather(
            *(
                shard.limit_queue(
                    queue,
                    QueueLimits(
                        max_running=share_cap,
                        rate=Rate(share_rate, rate.per) if rate and share_rate else None,
                    ),
                )
                for shard, share_cap, share_rate in zip(self._shards, caps, rates, strict=True)
            )
        )

    async def queue_controls(self) -> list[QueueControls]:
        by_queue: dict[str, list[QueueControls]] = {}
        for found in await self._everywhere(lambda shard: shard.queue_controls()):
            for controls in found:
                by_queue.setdefault(controls.queue, []).append(controls)
        return [_summed(queue, parts) for queue, parts in sorted(by_queue.items())]

    # --- inspecting -------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        found = await self._everywhere(lambda shard: shard.get(job_id))
        return next((job for job in found if job is not None), None)

    async def list_jobs(
        self, filter: JobFilter, *, after: str | None = None, limit: int = 50
    ) -> JobPage:
        pages = await self._everywhere(
            lambda shard: shard.list_jobs(filter, after=after, limit=limit)
        )
        # A shard with more to show has answered down to its cursor only: below the
        # highest such cursor another of its jobs may come first, so this page stops there.
        floor = max((page.next_cursor for page in pages if page.next_cursor), default=None)
        jobs = sorted((job for page in pages for job in page.jobs), key=lambda j: j.id)[::-1]
        if floor is not None:
            jobs = [job for job in jobs if job.id >= floor]
        if len(jobs) > limit:
            return JobPage(jobs[:limit], jobs[limit - 1].id)
        return JobPage(jobs, floor)

    async def family(self, job_id: str) -> list[Job]:
        return await (await self._find(job_id)).family(job_id)

    async def children(
        self,
        job_id: str,
        *,
        open_only: bool = False,
        after: str | None = None,
        limit: int = CHILDREN_PAGE,
    ) -> JobPage:
        shard = await self._find(job_id)
        return await shard.children(job_id, open_only=open_only, after=after, limit=limit)

    async def family_tree(self, root_id: str, *, limit: int = FAMILY_TREE_LIMIT) -> list[Job]:
        return await (await self._find(root_id)).family_tree(root_id, limit=limit)

    async def queue_stats(self) -> list[QueueStats]:
        counts: dict[str, dict[JobState, int]] = {}
        for stats in await self._everywhere(lambda shard: shard.queue_stats()):
            for queue in stats:
                summed = counts.setdefault(queue.queue, {})
                for state, n in queue.counts.items():
                    summed[state] = summed.get(state, 0) + n
        return [QueueStats(queue, c) for queue, c in sorted(counts.items())]

    async def oldest_queued(self) -> dict[str, float]:
        oldest: dict[str, float] = {}
        for found in await self._everywhere(lambda shard: shard.oldest_queued()):
            for queue, ready in found.items():
                oldest[queue] = min(oldest.get(queue, ready), ready)
        return oldest

    async def workers(self) -> list[WorkerInfo]:
        return await self._shards[0].workers()

    async def counters(
        self, minutes: int = 60, type: str | None = None, queue: str | None = None
    ) -> list[MinuteCount]:
        rows = await self._everywhere(lambda shard: shard.counters(minutes, type, queue))
        # Each shard reads its own clock: calls on either side of a minute's end answer
        # for windows a minute apart, so the rows are added up by their minute.
        summed: dict[datetime, list[int]] = {}
        for row in rows:
            for m in row:
                total = summed.setdefault(m.minute, [0] * 5)
                # workers report to shard 0 only, so their sum is shard 0's count
                for i, n in enumerate((m.succeeded, m.retried, m.failed, m.workers, m.repaired)):
                    total[i] += n
        return [MinuteCount(m.minute, *summed[m.minute]) for m in rows[0]]

    def events(self) -> AsyncIterator[JobEvent]:
        return _merged([shard.events() for shard in self._shards])

    async def publish_types(self, sets: Mapping[str, bytes]) -> None:
        await self._shards[0].publish_types(sets)

    async def descriptor_sets(self) -> dict[str, bytes]:
        return await self._shards[0].descriptor_sets()

    async def aclose(self) -> None:
        await self._shards[0].aclose()  # the shards share one client


def _summed(queue: str, parts: Sequence[QueueControls]) -> QueueControls:
    """One queue's controls as the user set them: the shards' shares added up."""
    caps = [p.limits.max_running for p in parts if p.limits.max_running is not None]
    rates = [p.limits.rate for p in parts if p.limits.rate is not None]
    rate = Rate(sum(r.limit for r in rates), rates[0].per) if rates else None
    limits = QueueLimits(max_running=sum(caps) if caps else None, rate=rate)
    return QueueControls(queue, paused=any(p.paused for p in parts), limits=limits)


__all__ = [
    "MAX_SHARDS",
    "SHARD_MARK",
    "ShardedStorage",
    "check_shard_count",
    "shard_namespaces",
    "shares",
    "split_shards",
]
