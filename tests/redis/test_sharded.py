"""One namespace spread over shards (``?shards=N``): where jobs go, and the rules a
shard boundary relaxes (``docs/rules.md``, "A namespace over shards"), as the
sharded storage keeps them instead.

The contract and property suites run on a sharded namespace too
(``CONVEYOR_TEST_BACKENDS=redis_sharded`` in ``nox -s cluster``); the tests they
mark ``one_shard`` are checked here in their sharded form.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.backends.redis import RedisStorage
from conveyor.backends.redis.sharded import ShardedStorage, shard_namespaces, split_shards
from conveyor.core.backend_registry import open_storage
from conveyor.core.ids import new_id
from conveyor.core.job import JobSpec
from conveyor.core.queues import QueueControls, QueueLimits, Rate
from conveyor.core.storage import JobFilter
from tests.conftest import TEST_SHARDS
from tests.contract.test_queue_controls import QUEUE, Gauge, enqueue, fleet
from tests.support import FAST_BACKOFF, running, settle

pytestmark = pytest.mark.redis
N = TEST_SHARDS


@pytest.fixture
def config(redis_sharded_url: str, namespace: str) -> conveyor.Config:
    return conveyor.Config(url=redis_sharded_url, namespace=namespace, backoff=FAST_BACKOFF)


@pytest.fixture
async def client(config: conveyor.Config) -> AsyncIterator[conveyor.AsyncClient]:
    async with conveyor.AsyncClient(config) as client:
        yield client


@pytest.fixture
async def sharded(client: conveyor.AsyncClient) -> ShardedStorage:
    storage = await client.storage()
    assert isinstance(storage, ShardedStorage)
    return storage


def spec(name: str, queue: str = "q", **options: object) -> JobSpec:
    return JobSpec(
        id=new_id(),
        type=BasicJob.DESCRIPTOR.full_name,
        queue=queue,
        payload=BasicJob(name=name).SerializeToString(),
        **options,  # type: ignore[arg-type]
    )


async def shard_of(storage: ShardedStorage, job_id: str) -> int:
    held = [(await shard.holds([job_id]))[0] for shard in storage._shards]
    assert held.count(True) == 1, held
    return held.index(True)


# --- the URL and the shards' names ------------------------------------------------------


def test_the_shards_option_is_read_and_taken_off_the_url() -> None:
    assert split_shards("redis://h:6379/3") == ("redis://h:6379/3", 1)
    assert split_shards("redis://h:6379/3?shards=4") == ("redis://h:6379/3", 4)
    assert split_shards("redis://h/0?socket_timeout=5&shards=2") == (
        "redis://h/0?socket_timeout=5",
        2,
    )
    assert split_shards("redis+cluster://a:7000,b:7001/0?shards=3")[1] == 3
    for bad in ("0", "65", "x", "2.5", ""):
        with pytest.raises(conveyor.ConfigurationError, match="shards= takes one whole number"):
            split_shards(f"redis://h/0?shards={bad}")
    with pytest.raises(conveyor.ConfigurationError, match="shards= takes one whole number"):
        split_shards("redis://h/0?shards=2&shards=3")


def test_shards_are_named_after_the_namespace_in_different_slot_ranges() -> None:
    for namespace in ("conveyor", "t_0123456789ab", "a"):
        for count in (2, 3, 5):
            names = shard_namespaces(namespace, count)
            assert names[0] == namespace and len(set(names)) == count
            assert all(name.startswith(namespace + "~") for name in names[1:])
            ranges = {
                key_slot(("{" + name + "}:").encode()) * count // REDIS_CLUSTER_HASH_SLOTS
                for name in names
            }
            assert len(ranges) == count  # a slot range, so a master, each
            assert shard_namespaces(namespace, count) == names  # fixed by name and count


async def test_one_shard_is_the_plain_storage(redis_url: str, namespace: str) -> None:
    for url in (redis_url, f"{redis_url}?shards=1"):
        storage = await open_storage(conveyor.Config(url=url, namespace=namespace))
        try:
            assert isinstance(storage, RedisStorage)
        finally:
            await storage.aclose()


async def test_a_namespace_keeps_the_shard_count_it_was_first_used_with(
    redis_url: str, namespace: str
) -> None:
    plain = conveyor.Config(url=redis_url, namespace=namespace)
    spread = replace(plain, url=f"{redis_url}?shards=3")
    async with conveyor.AsyncClient(spread) as client:
        made = await client.enqueue(BasicJob(name="spread"))
    for url in (redis_url, f"{redis_url}?shards=2", f"{redis_url}?shards=4"):
        with pytest.raises(conveyor.ConfigurationError, match=r"spread over 3 shard.*shards=3"):
            await open_storage(replace(plain, url=url))
    async with conveyor.AsyncClient(spread) as client:
        assert (await client.get(made.id)) is not None
    # The namespaces listing shows the namespace once, not its shards.
    names = await RedisStorage.namespaces(spread)
    assert namespace in names and not [n for n in names if "~" in n]


async def test_a_namespace_used_with_one_shard_is_not_spread_later(
    redis_url: str, namespace: str
) -> None:
    """Its keys and controls are all on shard 0, where rules 9, 14 and 15 on the other
    shards would not see them: each of a job, a control and a worker keeps it unsharded."""
    plain = conveyor.Config(url=redis_url, namespace=namespace)
    spread = replace(plain, url=f"{redis_url}?shards=3")
    storage = await open_storage(plain)
    try:
        uses = [
            storage.enqueue([spec("old")]),
            storage.limit_queue("q", QueueLimits(max_running=5)),
            storage.register_worker(
                conveyor.core.storage.WorkerInfo("w", "h", 1, ("q",), 1, 0.0), 60
            ),
        ]
        for use in uses:
            await use
            with pytest.raises(conveyor.ConfigurationError, match=r"spread over 1 shard"):
                await open_storage(spread)
            # Undo this use, so that the next one is what keeps it unsharded.
            drop = f"{{{namespace}}}:"
            await storage._redis.delete(drop + "stats", drop + "ctl", drop + "workers")  # type: ignore[attr-defined]
    finally:
        await storage.aclose()
    fresh = await open_storage(spread)  # nothing left: it may be spread now
    await fresh.aclose()


# --- placement --------------------------------------------------------------------------


async def test_top_level_jobs_spread_and_a_family_stays_on_its_roots_shard(
    config: conveyor.Config, client: conveyor.AsyncClient, sharded: ShardedStorage
) -> None:
    worker = conveyor.Worker(config, queues=["roots", "kids"], claim_wait=0.2)

    @worker.handler
    async def run(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        if msg.name == "root":
            for i in range(3):
                ctx.enqueue_child(BasicJob(name=f"kid{i}"), queue="kids")
            ctx.enqueue_heir(BasicJob(name="heir"), queue="kids")

    roots = await client.enqueue_many([BasicJob(name="root") for _ in range(24)], queue="roots")
    async with running(worker):
        done = [await settle(client, root.id) for root in roots]
        assert {job.state for job in done} == {JobState.SUCCEEDED}
        homes = Counter()
        for root in roots:
            home = await shard_of(sharded, root.id)
            homes[home] += 1
            tree = await sharded.family_tree(root.id)
            assert len(tree) == 5
            for member in tree:
                assert await shard_of(sharded, member.id) == home
            heir = next(j for j in tree if j.payload().name == "heir")  # type: ignore[attr-defined]
            await settle(client, heir.id)
    assert set(homes) == set(range(N)), homes  # 24 roots by id: every shard has some


async def test_a_top_level_key_is_held_across_the_whole_namespace(
    client: conveyor.AsyncClient, sharded: ShardedStorage
) -> None:
    holders = {key: await client.enqueue(BasicJob(name=key), key=key) for key in "abcdefgh"}
    assert len({await shard_of(sharded, job.id) for job in holders.values()}) > 1
    for key, holder in holders.items():
        again = await client.enqueue(BasicJob(name="again"), key=key)
        assert again.duplicate and again.id == holder.id
    batch = await sharded.enqueue([spec("x", key="k"), spec("y"), spec("z", key="k")])
    assert batch[2] == batch[0] != batch[1]


async def test_a_declarations_key_is_held_on_its_familys_shard(
    config: conveyor.Config, client: conveyor.AsyncClient, sharded: ShardedStorage
) -> None:
    """Rule 15 in a sharded namespace: a child's key conflicts with a holder on its
    family's shard, and not with one on another shard."""
    worker = conveyor.Worker(config, queues=["parents", "keyed"], claim_wait=0.2)
    blocker = asyncio.Event()

    @worker.handler
    async def run(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        if msg.name == "holder":
            await blocker.wait()
        elif msg.name == "parent":
            ctx.enqueue_child(BasicJob(name="kid"), queue="keyed", key="shared")

    async with running(worker):
        holder = await client.enqueue(BasicJob(name="holder"), queue="keyed", key="shared")
        home = await shard_of(sharded, holder.id)
        parents: dict[bool, str] = {}
        while len(parents) < 2:  # one family on the holder's shard, one elsewhere
            [parent_id] = await sharded.enqueue([spec("parent", queue="parents")])
            parents.setdefault(await shard_of(sharded, parent_id) == home, parent_id)
        kids = {}
        for same, parent_id in parents.items():
            assert (await settle(client, parent_id)).state is JobState.SUCCEEDED
            [kid] = [j for j in await sharded.family_tree(parent_id) if j.id != parent_id]
            kids[same] = await settle(client, kid.id)
        blocker.set()
    assert (kids[True].state, kids[True].reason) == (
        JobState.CANCELLED,
        f"duplicate: key shared held by {holder.id}",
    )
    assert kids[False].state is JobState.SUCCEEDED


# --- claims -----------------------------------------------------------------------------


async def test_one_claim_takes_from_every_shard_until_it_has_enough(
    sharded: ShardedStorage,
) -> None:
    ids = await sharded.enqueue([spec(str(i)) for i in range(30)])
    assert len({await shard_of(sharded, job_id) for job_id in ids}) == N
    claimed = await sharded.claim("w", ["q"], 30, 30, 0)
    assert sorted(c.job.id for c in claimed) == sorted(ids)
    assert await sharded.claim("w", ["q"], 30, 30, 0) == []
    assert all(await sharded.record([conveyor.core.storage.HandBack(c.lease) for c in claimed]))


async def test_the_ready_order_holds_within_each_shard(sharded: ShardedStorage) -> None:
    """Rule 10 per shard: by priority, then oldest ready first."""
    specs = [spec(str(i), priority=i % 3) for i in range(18)]
    for one in specs:  # one at a time: each its own creation time
        await sharded.enqueue([one])
    order = []
    while claimed := await sharded.claim("w", ["q"], 1, 30, 0):
        order += claimed
    assert len(order) == len(specs)
    by_shard: dict[int, list[tuple[int, str]]] = {}
    for item in order:
        by_shard.setdefault(await shard_of(sharded, item.job.id), []).append(
            (-item.job.priority, item.job.id)
        )
    assert len(by_shard) > 1
    for taken in by_shard.values():
        assert taken == sorted(taken)


async def test_a_waiting_claim_wakes_for_work_on_any_shard(sharded: ShardedStorage) -> None:
    for shard in range(N):
        job = spec(f"for shard {shard}")
        while sharded._home(job) != shard:
            job = spec(f"for shard {shard}")
        waiting = asyncio.create_task(sharded.claim("w", ["q"], 1, 30, 60))
        await asyncio.sleep(0.1)  # the claim is blocked on every shard's wake list
        await sharded.enqueue([job])
        # Woken, not timed out: a claim that missed the wake-up would block for 60 s.
        [claimed] = await asyncio.wait_for(waiting, 20)
        assert claimed.job.id == job.id
        assert await sharded.record([conveyor.core.storage.Success(claimed.lease)]) == [True]


# --- queue controls ---------------------------------------------------------------------


async def test_limits_are_split_into_shares_that_add_up_to_them(
    client: conveyor.AsyncClient, sharded: ShardedStorage
) -> None:
    await enqueue(client, 1)
    await client.set_queue_limits(QUEUE, max_running=7, rate=Rate(10, per=2))
    assert await sharded.queue_controls() == [
        QueueControls(QUEUE, limits=QueueLimits(max_running=7, rate=Rate(10, per=2.0)))
    ]
    parts = [(await shard.queue_controls())[0].limits for shard in sharded._shards]
    assert [p.max_running for p in parts] == [3, 2, 2]
    assert [p.rate for p in parts] == [Rate(4, 2.0), Rate(3, 2.0), Rate(3, 2.0)]
    await client.pause(QUEUE)
    assert [(await shard.queue_controls())[0].paused for shard in sharded._shards] == [True] * N
    for limits in ({"max_running": 2}, {"rate": Rate(2, per=60)}):
        with pytest.raises(conveyor.InvalidLimits, match="below the 3 shards"):
            await client.set_queue_limits(QUEUE, **limits)  # type: ignore[arg-type]
    await client.resume(QUEUE)
    await client.set_queue_limits(QUEUE, max_running=None)
    assert await sharded.queue_controls() == []


async def test_max_running_holds_over_the_shards_together(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    """Rule 14's bound over the shards: each runs at most its share."""
    await client.set_queue_limits(QUEUE, max_running=N)
    jobs = await enqueue(client, 30)
    gauge = Gauge()
    async with fleet(config, gauge, 3, 0.03):
        done = [await settle(client, job.id) for job in jobs]
    assert {job.state for job in done} == {JobState.SUCCEEDED}
    assert 1 <= gauge.peak <= N  # fifteen slots, never more than N running


# --- reads ------------------------------------------------------------------------------


async def test_listings_page_through_every_shard_newest_first(sharded: ShardedStorage) -> None:
    ids = [(await sharded.enqueue([spec(str(i))]))[0] for i in range(25)]
    for one in ids[::4]:
        await sharded.cancel(one)
    for filter, expected in (
        (JobFilter(), ids),
        (JobFilter(state=JobState.QUEUED), [i for i in ids if i not in ids[::4]]),
        (JobFilter(state=JobState.CANCELLED), ids[::4]),
    ):
        seen: list[str] = []
        cursor = None
        for _ in range(20):
            page = await sharded.list_jobs(filter, after=cursor, limit=4)
            assert len(page.jobs) <= 4
            seen += [job.id for job in page.jobs]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == sorted(expected, reverse=True)


async def test_stats_add_up_over_the_shards(sharded: ShardedStorage) -> None:
    ids = await sharded.enqueue([spec(str(i), queue="a" if i % 2 else "b") for i in range(20)])
    await sharded.cancel(ids[0])
    stats = {s.queue: dict(s.counts) for s in await sharded.queue_stats()}
    assert stats == {
        "a": {JobState.QUEUED: 10},
        "b": {JobState.QUEUED: 9, JobState.CANCELLED: 1},
    }
    assert set(await sharded.oldest_queued()) == {"a", "b"}


async def test_a_shard_that_fails_is_passed_over_while_others_have_work(
    sharded: ShardedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard in failover must not stop the others' work; its error reaches the worker
    (which backs off) only when no other shard had any."""
    ids = await sharded.enqueue([spec(str(i)) for i in range(30)])
    down = await shard_of(sharded, ids[0])

    async def unavailable(*args: object, **kwargs: object) -> object:
        raise conveyor.BackendUnavailable("shard in failover")

    monkeypatch.setattr(sharded._shards[down], "claim_once", unavailable)
    monkeypatch.setattr(sharded._shards[down], "wait_for_wake", unavailable)
    claimed = await sharded.claim("w", ["q"], 30, 30, 0)
    elsewhere = [i for i in ids if await shard_of(sharded, i) != down]
    assert sorted(c.job.id for c in claimed) == sorted(elsewhere)
    with pytest.raises(conveyor.BackendUnavailable, match="shard in failover"):
        await sharded.claim("w", ["q"], 30, 30, 0.2)
    monkeypatch.undo()
    rest = await sharded.claim("w", ["q"], 30, 30, 0)
    assert sorted(c.job.id for c in rest) == sorted(set(ids) - set(elsewhere))


async def test_a_cancelled_claim_hands_back_what_earlier_shards_gave(
    sharded: ShardedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await sharded.enqueue([spec(str(i)) for i in range(30)])
    gate = asyncio.Event()
    last = sharded._shards[(sharded._turn + N - 1) % N]  # the round's last shard
    real = last.claim_once

    async def stuck(*args: object, **kwargs: object) -> object:
        await gate.wait()
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(last, "claim_once", stuck)
    claiming = asyncio.create_task(sharded.claim("w", ["q"], 30, 30, 0))
    await asyncio.sleep(0.2)  # the earlier shards have answered; the last one hangs
    claiming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claiming
    monkeypatch.undo()
    # Nothing stays leased to a claim nobody received: every job is queued again.
    states = {(await sharded.get(i)).state for i in ids}  # type: ignore[union-attr]
    assert states == {JobState.QUEUED}
    assert sharded._leases == {}


async def test_counters_add_up_by_minute_even_across_a_minutes_end(
    sharded: ShardedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    from conveyor.core.storage import MinuteCount

    def at(minute: int) -> datetime:
        return datetime.fromtimestamp(minute * 60, UTC)

    answers = [  # shard 0 read minutes 10-11, the others already 11-12
        [MinuteCount(at(10), 1, workers=2), MinuteCount(at(11), 2, workers=2)],
        [MinuteCount(at(11), 3), MinuteCount(at(12), 5)],
        [MinuteCount(at(11), 4, failed=1), MinuteCount(at(12), 6)],
    ]
    for shard, answer in zip(sharded._shards, answers, strict=True):

        async def counters(*args: object, answer: list[MinuteCount] = answer) -> object:
            return answer

        monkeypatch.setattr(shard, "counters", counters)
    assert await sharded.counters(2) == [
        MinuteCount(at(10), 1, workers=2),
        MinuteCount(at(11), 9, failed=1, workers=2),
    ]


async def test_the_memory_of_leases_is_bounded_and_a_forgotten_one_is_found(
    sharded: ShardedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.backends.redis import sharded as module

    monkeypatch.setattr(module, "LEASE_MEMORY", 4)
    await sharded.enqueue([spec(str(i)) for i in range(12)])
    claimed = await sharded.claim("w", ["q"], 12, 30, 0)
    assert len(claimed) == 12 and len(sharded._leases) == 4
    # Outcomes of leases it no longer remembers go to the right shard all the same.
    accepted = await sharded.record([conveyor.core.storage.Success(c.lease) for c in claimed])
    assert accepted == [True] * 12
    assert sharded._leases == {}


async def test_a_claim_waiting_on_shards_that_all_fail_raises_instead_of_spinning(
    sharded: ShardedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks = 0

    async def nothing(*args: object, **kwargs: object) -> object:
        nonlocal looks
        looks += 1
        return [], None

    async def refused(*args: object, **kwargs: object) -> object:
        raise conveyor.BackendUnavailable("max number of clients reached")

    for shard in sharded._shards:
        monkeypatch.setattr(shard, "claim_once", nothing)
        monkeypatch.setattr(shard, "wait_for_wake", refused)
    with pytest.raises(conveyor.BackendUnavailable, match="max number of clients"):
        await sharded.claim("w", ["q"], 1, 30, 5)
    assert looks == N  # one round of claims, then the error: no busy loop
