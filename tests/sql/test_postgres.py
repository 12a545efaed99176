"""PostgreSQL specifics: transactional enqueue, schema versions, faults."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

import conveyor
from conveyor import JobState, When
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.backends.sql.migrate import CHURN_STORAGE, SCHEMA_VERSION, SchemaMismatch
from conveyor.core.backend_registry import open_storage
from conveyor.core.job import Lease
from conveyor.core.storage import Failure, Success
from tests.contract.driver import Driver, Kid
from tests.support import (
    FAST_BACKOFF,
    Journal,
    branching_family,
    running,
    settle,
    step,
    step_worker,
    wait_id,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def config(postgres_url: str, namespace: str) -> conveyor.Config:
    return conveyor.Config(url=postgres_url, namespace=namespace, backoff=FAST_BACKOFF)


@pytest.fixture
async def client(config: conveyor.Config) -> AsyncIterator[conveyor.AsyncClient]:
    async with conveyor.AsyncClient(config) as client:
        yield client


async def test_transactional_enqueue_exists_only_if_the_transaction_commits(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    engine = create_async_engine(config.url)
    try:
        async with engine.connect() as conn:
            async with conn.begin():
                kept = await client.enqueue(BasicJob(name="kept"), connection=conn)
                await conn.execute(text("select 1"))
            trans = await conn.begin()
            dropped = await client.enqueue(BasicJob(name="dropped"), connection=conn)
            assert await client.get(dropped.id) is None  # not visible outside the transaction
            await trans.rollback()
    finally:
        await engine.dispose()
    stored = await client.get(kept.id)
    assert stored is not None
    assert stored.state is JobState.QUEUED
    assert await client.get(dropped.id) is None


async def test_transactional_enqueue_wakes_a_waiting_worker(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    worker = conveyor.Worker(config, claim_wait=30.0)  # only NOTIFY can wake it in time
    ran = asyncio.Event()

    @worker.handler
    async def handle(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        ran.set()

    engine = create_async_engine(config.url)
    try:
        async with running(worker):
            await asyncio.sleep(0.3)  # the worker is now blocked in its claim
            async with engine.begin() as conn:
                await client.enqueue(BasicJob(name="x"), connection=conn)
            await asyncio.wait_for(ran.wait(), 5)
            await worker.stop()
    finally:
        await engine.dispose()


async def test_connection_option_refused_elsewhere(memory_url: str) -> None:
    async with conveyor.AsyncClient(conveyor.Config(url=memory_url)) as client:
        with pytest.raises(conveyor.ConfigurationError, match="PostgreSQL"):
            await client.enqueue(BasicJob(), connection=object())


async def test_unreachable_database_is_typed_and_masks_the_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = conveyor.Config(url=f"postgresql://postgres:hunter2@127.0.0.1:{port}/test")
    with pytest.raises(conveyor.BackendUnavailable) as info:
        await open_storage(config)
    assert "hunter2" not in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)


async def test_schema_newer_than_the_code_is_refused(config: conveyor.Config) -> None:
    storage = await open_storage(config)
    await storage.aclose()
    with psycopg.connect(config.url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{config.namespace}".schema_version VALUES ({SCHEMA_VERSION + 1}, 0)'
        )
    with pytest.raises(SchemaMismatch, match="newer than this Conveyor"):
        await open_storage(config)


async def test_migrate_false_on_an_empty_database_says_what_to_do(config: conveyor.Config) -> None:
    from dataclasses import replace

    with pytest.raises(SchemaMismatch, match="conveyor migrate"):
        await open_storage(replace(config, migrate=False))


async def test_many_starting_at_once_migrate_once(config: conveyor.Config) -> None:
    storages = await asyncio.gather(*(open_storage(config) for _ in range(6)))
    for storage in storages:
        await storage.aclose()
    with psycopg.connect(config.url.replace("+psycopg", "")) as conn:
        rows = conn.execute(f'SELECT version FROM "{config.namespace}".schema_version').fetchall()
    assert rows == [(version,) for version in range(1, SCHEMA_VERSION + 1)]


async def test_a_version_1_schema_is_upgraded_in_place(config: conveyor.Config) -> None:
    async with conveyor.AsyncClient(config) as client:
        done = await client.enqueue(step("done"))
        await client.cancel(done.id)
        opened = await client.enqueue(step("open"))
    plain = config.url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:  # back to how version 1 left it
        ns = config.namespace
        conn.execute(f'DROP TABLE "{ns}".worker_minutes')
        conn.execute(f'DROP TABLE "{ns}".settled_counts')
        conn.execute(f'ALTER TABLE "{ns}".jobs DROP COLUMN ready_at')  # its index goes with it
        conn.execute(
            f'CREATE INDEX jobs_claim ON "{ns}".jobs (queue, priority DESC, id) '
            "WHERE state = 'queued'"
        )
        conn.execute(f'DELETE FROM "{ns}".schema_version WHERE version > 1')
    storage = await open_storage(config)
    try:
        assert all(m.workers == 0 for m in await storage.counters(minutes=2))
        [stats] = await storage.queue_stats()  # the ledger opens with what had settled
        assert dict(stats.counts) == {JobState.CANCELLED: 1, JobState.QUEUED: 1}
        # Version 4: the job queued before the upgrade keeps its place in the ready order.
        later = await conveyor.AsyncClient(config, storage=storage).enqueue(step("later"))
        claimed = await storage.claim("w", [later.queue], 2, 30.0, 0.0)
        assert [c.job.id for c in claimed] == [opened.id, later.id]
    finally:
        await storage.aclose()
    with psycopg.connect(plain) as conn:
        rows = conn.execute(f'SELECT version FROM "{config.namespace}".schema_version').fetchall()
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (config.namespace,)
        ).fetchall()
    assert [v for (v,) in rows] == list(range(1, SCHEMA_VERSION + 1))
    assert ("jobs_ready",) in indexes and ("jobs_claim",) not in indexes


async def test_terminated_backends_lose_nothing_and_settle_nothing_twice(
    config: conveyor.Config,
) -> None:
    """pg_terminate_backend every Conveyor session, repeatedly, in the middle of a family."""
    journal = Journal()
    root, names = branching_family(5, 6, sleep=0.02)
    killed = 0

    async def killer() -> None:
        nonlocal killed
        async with await psycopg.AsyncConnection.connect(
            config.url.replace("+psycopg", ""), autocommit=True
        ) as admin:
            while True:
                await asyncio.sleep(0.1)
                cursor = await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (f"conveyor:{config.namespace}",),
                )
                killed += sum(1 for (ok,) in await cursor.fetchall() if ok)

    async with conveyor.AsyncClient(config) as client:
        async with running(step_worker(config, journal, lease=1.0)):
            job = await client.enqueue(root)
            chaos = asyncio.create_task(killer())
            await asyncio.sleep(1.5)
            chaos.cancel()
            settled = await settle(client, job.id, timeout=60)
            final = await settle(client, await wait_id(journal, "final"), timeout=60)
        minutes = await (await client.storage()).counters(minutes=3)

    assert killed > 0
    assert settled.state is JobState.SUCCEEDED
    assert final.state is JobState.SUCCEEDED
    for name in names:
        assert journal.succeeded_runs(name), name
    assert journal.count("final") == 1
    assert sum(m.succeeded for m in minutes) == len(names)


async def test_enqueue_survives_dead_pooled_connections(
    config: conveyor.Config, client: conveyor.AsyncClient
) -> None:
    """Pooled connections killed between calls: the next enqueue and get still work."""
    first = await client.enqueue(BasicJob(name="before"))
    assert await client.get(first.id) is not None
    with psycopg.connect(config.url.replace("+psycopg", ""), autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (f"conveyor:{config.namespace}",),
        ).fetchone()
    assert killed is not None
    assert killed[0] >= 1
    second = await client.enqueue(BasicJob(name="after"))
    stored = await client.get(second.id)
    assert stored is not None
    assert stored.state is JobState.QUEUED


async def test_tables_that_churn_are_vacuumed_early(client: conveyor.AsyncClient) -> None:
    """Schema v10: autovacuum takes the churning tables at 1 % dead rows, unthrottled."""
    await client.storage()
    namespace = client.config.namespace
    with psycopg.connect(client.config.url.replace("+psycopg", "")) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (namespace,),
        ).fetchall()
    options = {name: set(opts or []) for name, opts in rows}
    for table in ("jobs", "counters", "settled_counts", "job_keys", "workers", "worker_minutes"):
        assert {p.replace(" ", "") for p in CHURN_STORAGE} <= options[table], table
    assert options["schema_version"] == set()  # written once: the defaults


async def test_only_the_hot_statements_are_prepared_on_a_session(
    client: conveyor.AsyncClient,
) -> None:
    """Preparing SQLAlchemy's many-shaped transition statements cost a worker's drain a
    sixth of its rate (storage._engine_options): a session keeps only the fixed ones
    it runs on the driver connection: the enqueue, the one-statement claim and settle."""
    storage = await client.storage()
    for i in range(12):  # psycopg would prepare any statement run five times
        await client.enqueue(BasicJob(count=i))
        [claimed] = await storage.claim("w", [BasicJob.DESCRIPTOR.full_name], 1, 30.0, 0.0)
        assert await storage.record([Success(claimed.lease, [])]) == [True]
    engine = storage._engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:  # the pool's one session, used by every call above
        prepared = [
            row[0]
            for row in await conn.execute(text("SELECT statement FROM pg_prepared_statements"))
        ]
    enqueues = [statement for statement in prepared if "WITH  ins AS (" in statement]
    claims = [statement for statement in prepared if "claimed AS (" in statement]
    settles = [statement for statement in prepared if "done AS (" in statement]
    assert (len(enqueues), len(claims), len(settles)) == (1, 1, 1), prepared
    assert len(prepared) == 3, prepared  # not the transactions' statements


async def test_a_mixed_batch_settles_leaves_at_once_and_the_rest_in_a_transaction(
    client: conveyor.AsyncClient,
) -> None:
    """The one-statement settle (pg_settle) takes only leaf successes whose lease is
    held; a stale lease and a failure go to the transaction, and every answer, state,
    result and count comes out as one transaction's would."""
    storage = await client.storage()
    queue = BasicJob.DESCRIPTOR.full_name
    for i in range(4):
        await client.enqueue(BasicJob(count=i))
    leaf, stale, failing, quiet = await storage.claim("w", [queue], 4, 30.0, 0.0)
    stale_lease = Lease(stale.lease.job_id, stale.lease.token - 1)
    answers = await storage.record(
        [
            Success(leaf.lease, [], result=b"\x08\x07", result_type=queue),
            Success(stale_lease, []),
            Failure(failing.lease, "boom"),
            Success(quiet.lease, []),  # returned nothing: no result stored
        ]
    )
    assert answers == [True, False, True, True]
    got = {}
    for claimed in (leaf, stale, failing, quiet):
        job = await client.get(claimed.job.id)
        assert job is not None
        got[claimed.job.id] = job
    assert got[leaf.job.id].state is JobState.SUCCEEDED
    assert got[leaf.job.id].result_bytes == b"\x08\x07"
    assert got[stale.job.id].state is JobState.RUNNING  # its attempt still runs
    assert got[failing.job.id].state is JobState.FAILED
    assert got[quiet.job.id].state is JobState.SUCCEEDED
    assert got[quiet.job.id].result_bytes is None
    [stats] = await storage.queue_stats()
    assert (stats.count(JobState.SUCCEEDED), stats.count(JobState.FAILED)) == (2, 1)
    assert stats.count(JobState.RUNNING) == 1
    for counted in (None, queue):  # the totals, and the queue's own row
        minutes = await storage.counters(minutes=2, queue=counted)
        assert sum(m.succeeded for m in minutes) == 2
        assert sum(m.failed for m in minutes) == 1
    by_type = await storage.counters(minutes=2, type=queue)
    assert sum(m.succeeded for m in by_type) == 2


def _vacuums(dsn: str, namespace: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = %s "
            "AND relname = 'jobs'",
            (namespace,),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_maintenance_vacuums_a_jobs_table_full_of_dead_rows(
    client: conveyor.AsyncClient,
) -> None:
    """Autovacuum visits a table once a minute at most; a busy queue leaves tens of
    thousands of row versions behind meanwhile. Maintenance vacuums the churning
    tables as soon as they are as dead as their storage parameters allow."""
    storage = await client.storage()
    namespace = client.config.namespace
    dsn = client.config.url.replace("+psycopg", "")
    await storage.maintain()  # nothing dead yet: no vacuum
    assert _vacuums(dsn, namespace) == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{namespace}".jobs (id, type, queue, payload, state, max_attempts, '
            "created_at) SELECT 'dead-' || i, 't', 'q', '', 'succeeded', 1, 0 "
            "FROM generate_series(1, 3000) AS i"
        )
        conn.execute(f"DELETE FROM \"{namespace}\".jobs WHERE id LIKE 'dead-%%'")
        conn.execute("SELECT pg_stat_force_next_flush()")  # the dead rows, counted now
        conn.execute("SELECT 1")
    await storage.maintain()  # within VACUUM_CHECK of the last look: not yet
    assert _vacuums(dsn, namespace) == 0
    storage._vacuum_at = 0.0  # type: ignore[attr-defined]  # VACUUM_CHECK has passed
    await storage.maintain()
    assert _vacuums(dsn, namespace) == 1


async def test_children_settled_at_once_count_their_parent_down_until_the_last(
    config: conveyor.Config,
) -> None:
    """The one-statement settle counts a parent down once for its children in the
    batch while the parent stays open; the child that closes the family goes to the
    transaction, which settles the parent and releases its heir."""
    storage = await open_storage(config)
    try:
        drive = Driver(storage, config)
        await drive.enqueue("p")
        await drive.run("p", Kid("a"), Kid("b"), Kid("c"), Kid("d"), Kid("h", when=When.SUCCEEDED))
        claimed = [(await storage.claim("w", [k], 1, 30.0, 0.0))[0] for k in "abcd"]
        a, b, c, d = (Success(x.lease, []) for x in claimed)
        in_transactions: list[str] = []  # SQLAlchemy sees the transactions' statements only
        engine = storage._engine.sync_engine  # type: ignore[attr-defined]
        event.listen(engine, "before_cursor_execute", lambda *a: in_transactions.append(a[2]))
        assert await storage.record([a, b]) == [True, True]
        assert in_transactions == []  # one statement on the driver connection
        parent = await drive.job("p")
        assert (parent.state, parent.open_children) == (JobState.WAITING, 2)
        assert await drive.states("a", "b", "c", "h") == {
            "a": JobState.SUCCEEDED,
            "b": JobState.SUCCEEDED,
            "c": JobState.RUNNING,
            "h": JobState.HELD,
        }
        assert await storage.record([c, d]) == [True, True]  # closes the family
        assert in_transactions  # in a transaction
        parent = await drive.job("p")
        assert (parent.state, parent.open_children) == (JobState.SUCCEEDED, 0)
        assert await drive.state("h") is JobState.QUEUED
        [stats] = [s for s in await storage.queue_stats() if s.queue == "a"]
        assert stats.count(JobState.SUCCEEDED) == 1
    finally:
        await storage.aclose()


async def test_version_11_makes_the_family_indexes_partial(config: conveyor.Config) -> None:
    """A top-level job adds no entry to the parent, predecessor and declarer indexes; a
    version 10 schema's full indexes are rebuilt, and the family lookups still use them."""
    storage = await open_storage(config)
    await storage.aclose()
    plain, ns = config.url.replace("+psycopg", ""), config.namespace
    family = {
        "jobs_parent": "parent_id",
        "jobs_predecessor": "predecessor_id",
        "jobs_declared": "declared_by",
    }
    with psycopg.connect(plain, autocommit=True) as conn:  # back to how version 10 left them
        for name, column in family.items():
            conn.execute(f'DROP INDEX "{ns}".{name}')
            conn.execute(f'CREATE INDEX {name} ON "{ns}".jobs ({column})')
        conn.execute(f'DELETE FROM "{ns}".schema_version WHERE version > 10')
    async with conveyor.AsyncClient(config) as client:
        await client.enqueue(step("top"))
    with psycopg.connect(plain, autocommit=True) as conn:
        found = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s",
                (ns,),
            ).fetchall()
        )
        for name, column in family.items():
            assert f"WHERE ({column} IS NOT NULL)" in found[name], found[name]
        conn.execute("SET enable_seqscan = off")  # an empty table: ask what may be used
        plan = conn.execute(
            f"EXPLAIN SELECT id FROM \"{ns}\".jobs WHERE parent_id = 'x' OR predecessor_id = 'x'"
        ).fetchall()
        text_plan = " ".join(line for (line,) in plan)
        assert "jobs_parent" in text_plan and "jobs_predecessor" in text_plan, text_plan


async def test_a_one_statement_transition_the_server_undid_is_sent_again(
    client: conveyor.AsyncClient,
) -> None:
    """A deadlock or serialization failure undoes the whole statement, so the hot
    one-statement paths send it again (as a transaction is retried); any other error
    is raised at once, typed."""
    storage = await client.storage()
    ns = client.config.namespace
    with psycopg.connect(client.config.url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE SEQUENCE "{ns}".tries')
        conn.execute(
            f'CREATE FUNCTION "{ns}".undone_until(n int, code text) RETURNS bigint '
            "LANGUAGE plpgsql AS $$ DECLARE t bigint; BEGIN "
            f"t := nextval('\"{ns}\".tries'); "
            "IF t <= n THEN RAISE EXCEPTION 'undone %', t USING ERRCODE = code; END IF; "
            "RETURN t; END $$"
        )
    run = storage._pg_rows  # type: ignore[attr-defined]
    # Two deadlocks, then it goes through: the third send answers.
    assert await run((f'SELECT "{ns}".undone_until(2, %(code)s)', {"code": "40P01"})) == [(3,)]
    # A serialization failure is retried alike.
    assert await run((f'SELECT "{ns}".undone_until(4, %(code)s)', {"code": "40001"})) == [(5,)]
    # Another error is not: one send, and a typed error.
    with pytest.raises(conveyor.BackendError, match="undone 6"):
        await run((f'SELECT "{ns}".undone_until(6, %(code)s)', {"code": "22012"}))
    # One that never stops being undone gives up after HOT_TRIES sends.
    with pytest.raises(conveyor.BackendError, match="undone 16"):
        await run((f'SELECT "{ns}".undone_until(100, %(code)s)', {"code": "40P01"}))
