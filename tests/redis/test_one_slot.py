"""Every key a Redis script or command touches is in its namespace's one hash slot, so
no operation can ever be cross-slot on a Redis Cluster.

Redis itself only refuses a script's key on another *node*, so the cluster suite alone
would miss a key in another slot of the same node. This test watches the server
(``MONITOR``) while every script and storage command runs, asks the server which
arguments of each command are keys (``COMMAND GETKEYS``), and checks that each starts
with ``{namespace}:``, the hash tag that fixes the slot.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

import conveyor
from conveyor import When
from conveyor.backends.redis._scripts import NAMES, source
from conveyor.core.errors import ConveyorError
from conveyor.core.job import Lease
from conveyor.core.queues import QueueLimits, Rate
from conveyor.core.specs import Family
from conveyor.core.storage import JobFilter, WorkerInfo
from tests.contract.driver import Driver, Kid
from tests.support import FAST_BACKOFF, Journal, running, settle, step, step_worker

_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_SHA_NAMES = {hashlib.sha1(source(name).encode()).hexdigest(): name for name in NAMES}


@contextmanager
def watched(url: str, db: int) -> Iterator[list[list[bytes]]]:
    """Every command the server runs on database ``db`` while the block runs, as its
    arguments (commands inside scripts included)."""
    seen: list[list[bytes]] = []
    client = redis.Redis.from_url(url)
    monitor = client.monitor()
    connection = monitor.__enter__().connection
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            line = connection.read_response()
            if isinstance(line, bytes) and line.split(b" ", 2)[1] in (f"[{db}".encode(),):
                seen.append([codecs.escape_decode(arg)[0] for arg in _QUOTED.findall(line)])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield seen
    finally:
        client.ping()  # lets the reader see a last line after the block's commands
        stop.set()
        with redis.Redis.from_url(url) as other:
            other.ping()  # and wakes it if it is blocked reading
        reader.join(5)
        client.close()


def keys_of(client: redis.Redis, command: list[bytes]) -> list[bytes]:
    name = command[0].upper()
    if name in (b"EVALSHA", b"EVAL"):
        return command[3 : 3 + int(command[2])]
    try:
        found = client.command_getkeys(*command)
        return [key if isinstance(key, bytes) else str(key).encode() for key in found]
    except redis.ResponseError:  # "the command has no key arguments", e.g. TIME, PUBLISH
        return []


async def test_every_key_every_script_touches_is_in_the_namespace_slot(
    redis_url: str, namespace: str
) -> None:
    config = conveyor.Config(url=redis_url, namespace=namespace, backoff=FAST_BACKOFF)
    db = int(redis_url.rsplit("/", 1)[1])
    journal = Journal()
    with watched(redis_url, db) as seen:
        async with conveyor.AsyncClient(config) as client:
            storage = await client.storage()
            await _every_storage_call(Driver(storage, config))
            # A family that runs through a worker: children, heirs, keys, retries.
            family = step(
                "root",
                children=[step("a", fail_times=1), step("b", key="k", optional=True)],
                heirs=[step("after")],
            )
            worker = step_worker(config, journal)
            async with running(worker):
                root = await client.enqueue(family)
                assert (await settle(client, root.id)).state is conveyor.JobState.SUCCEEDED
    with redis.Redis.from_url(redis_url) as client:
        prefix = ("{" + namespace + "}:").encode()
        ran = {_SHA_NAMES.get(c[1].decode()) for c in seen if c[0].upper() == b"EVALSHA"}
        assert ran >= set(NAMES), f"scripts the workload never ran: {set(NAMES) - ran}"
        strays = [c for c in seen if any(not k.startswith(prefix) for k in keys_of(client, c))]
        assert len(seen) > 200
        assert strays == []


async def _every_storage_call(driver: Driver) -> None:
    """Calls that run every script at least once."""
    storage = driver.storage
    await driver.enqueue("p")
    await driver.run("p", Kid("c1"), Kid("c2", optional=True), Kid("h", when=When.SETTLED))
    [claimed] = await storage.claim("w", ["c1"], 1, 30.0, 0.0)
    staged = driver.spec("staged", Family(parent_id=claimed.job.id))
    await storage.stage(claimed.lease, [staged])
    assert await storage.renew([claimed.lease, Lease("nope", 1)], 30.0) != []
    await storage.progress(claimed.lease, 0.5, "half")
    await driver.run("c2", fail=True)
    await storage.discard(driver.ids["c2"])
    await storage.cancel(driver.ids["c1"], "stop")
    with contextlib.suppress(ConveyorError):  # the script runs either way
        await storage.retry(driver.ids["c1"])
    await storage.retry_failed(driver.ids["p"])
    await storage.pause_queue("c1", True)
    await storage.limit_queue("c1", QueueLimits(max_running=2, rate=Rate(5, 1.0)))
    await storage.queue_controls()
    await storage.maintain()
    await storage.register_worker(WorkerInfo("w", "host", 1, ("c1",), 1, 0.0), 10.0)
    await storage.workers()
    await storage.remove_worker("w")
    await storage.oldest_queued()
    await storage.list_jobs(JobFilter(), limit=5)
    await storage.children(driver.ids["p"])
    await storage.family(driver.ids["p"])
    await storage.family_tree(driver.ids["p"])
    await storage.queue_stats()
    await storage.counters(3)
    await storage.get(driver.ids["p"])
    await storage.publish_types({"t": b""})
    await storage.descriptor_sets()
