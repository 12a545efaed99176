"""A small versioned schema runner.

Why not Alembic: every namespace is its own PostgreSQL schema (or table prefix
on SQLite), built from one parameterised ``MetaData``; Alembic's scripts and
version table assume one fixed schema. Migrations here are plain functions of
a connection and the namespace's tables, applied in order under a lock (an
advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so many workers
starting at once upgrade exactly once.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

from sqlalchemy import Connection, Table, delete, func, insert, inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from conveyor.core.errors import ConfigurationError

from .schema import FAMILY_INDEXES, SETTLED, Tables

SCHEMA_VERSION = 11


class SchemaMismatch(ConfigurationError):
    """The database's schema is not the one this version of Conveyor uses."""


def _create_v1(conn: Connection, tables: Tables) -> None:
    # A fresh database gets today's tables at once; the later steps find
    # their work done (each checks first).
    tables.metadata.create_all(conn)


def _add_worker_minutes_v2(conn: Connection, tables: Tables) -> None:
    tables.worker_minutes.create(conn, checkfirst=True)


def _add_settled_counts_v3(conn: Connection, tables: Tables) -> None:
    ledger, jobs = tables.settled_counts, tables.jobs
    if inspect(conn).has_table(ledger.name, schema=ledger.schema):
        conn.execute(delete(ledger))  # created empty by version 1 just now
    else:
        ledger.create(conn)
    # Open the ledger with what is settled now (under the migration lock).
    conn.execute(
        insert(ledger).from_select(
            ["queue", "state", "n"],
            select(jobs.c.queue, jobs.c.state, func.count())
            .where(jobs.c.state.in_(SETTLED))
            .group_by(jobs.c.queue, jobs.c.state),
        )
    )


def _ready_order_v4(conn: Connection, tables: Tables) -> None:
    """Rule 10: claims follow the order jobs became queued (a ``ready_at`` column
    and its index), not their ids, so that a retried job waits its turn."""
    jobs = tables.jobs
    columns = {c["name"] for c in inspect(conn).get_columns(jobs.name, schema=jobs.schema)}
    if "ready_at" not in columns:  # version 1 just created it otherwise
        conn.execute(text(f"ALTER TABLE {_qualified(conn, jobs)} ADD COLUMN ready_at FLOAT"))
        # Jobs queued before the upgrade keep their order: ids are creation order.
        conn.execute(update(jobs).values(ready_at=jobs.c.created_at))
    indexes = {i["name"] for i in inspect(conn).get_indexes(jobs.name, schema=jobs.schema)}
    old = jobs.name.removesuffix("jobs") + "jobs_claim"
    if old in indexes:
        conn.execute(text(f"DROP INDEX {_qualified(conn, jobs, old)}"))
    for index in jobs.indexes:
        if index.name not in indexes:
            index.create(conn)


def _results_and_repairs_v5(conn: Connection, tables: Tables) -> None:
    """Rule 1's results (two job columns) and rule 7's repair counts (a counters column)."""
    added = {
        tables.jobs: ("result BYTEA" if conn.dialect.name == "postgresql" else "result BLOB",
                      "result_type TEXT"),
        tables.counters: ("repaired BIGINT NOT NULL DEFAULT 0",),
    }  # fmt: skip
    _add_columns(conn, added)


def _controls_v6(conn: Connection, tables: Tables) -> None:
    """Rule 14's queue controls (a table) and a job's own back-off (a column)."""
    tables.queues.create(conn, checkfirst=True)
    _add_columns(conn, {tables.jobs: ("backoff TEXT",)})


def _unique_keys_v7(conn: Connection, tables: Tables) -> None:
    """Rule 15's unique keys: a table of holders, and two job columns."""
    tables.job_keys.create(conn, checkfirst=True)
    _add_columns(conn, {tables.jobs: ("unique_key TEXT", "key_ttl FLOAT")})


def _progress_and_plans_v8(conn: Connection, tables: Tables) -> None:
    """Rule 6's progress reports, and producer-declared families: two job columns."""
    binary = "BYTEA" if conn.dialect.name == "postgresql" else "BLOB"
    _add_columns(conn, {tables.jobs: ("progress TEXT", f"plan {binary}")})


def _family_roots_v9(conn: Connection, tables: Tables) -> None:
    """Each declaration's family root (logs, traces): a job column."""
    _add_columns(conn, {tables.jobs: ("root_id VARCHAR(36)",)})


#: PostgreSQL storage parameters of the tables that churn. Every job is inserted,
#: updated a few times and deleted once retention passes, so dead row versions pile
#: up fastest there: autovacuum takes them once 1 % of a table is dead (not the
#: default 20 %, which a table bloated by a burst only raises), at full speed (no
#: cost-based pauses). Measured: bench/README.md, "Soak".
CHURN_STORAGE = (
    "autovacuum_vacuum_scale_factor = 0.01",  # vacuum_due_statement says the same
    "autovacuum_vacuum_threshold = 1000",
    "autovacuum_vacuum_insert_scale_factor = 0.01",
    "autovacuum_vacuum_cost_delay = 0",
    "autovacuum_analyze_scale_factor = 0.02",
)


#: The tables CHURN_STORAGE is set on (PostgreSQL names them without a prefix).
CHURNING = ("jobs", "counters", "settled_counts", "job_keys", "workers", "worker_minutes")


def vacuum_due_statement(tables: tuple[str, ...]) -> str:
    """The churning tables of a schema (``:schema``) with as many dead rows as
    CHURN_STORAGE lets autovacuum leave, that the current user may vacuum: what
    ``SQLStorage`` vacuums itself between autovacuum's visits."""
    names = ", ".join(f"'{name}'" for name in tables)
    return f"""
        SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
        WHERE s.schemaname = :schema AND s.relname IN ({names})
          AND s.n_dead_tup > 1000 + 0.01 * s.n_live_tup
          AND pg_has_role(c.relowner, 'USAGE')
        ORDER BY s.relname
        """


def _vacuum_churn_v10(conn: Connection, tables: Tables) -> None:
    """PostgreSQL: autovacuum keeps up with the tables that churn (``CHURN_STORAGE``)."""
    if conn.dialect.name != "postgresql":
        return
    parameters = ", ".join(CHURN_STORAGE)
    for name in CHURNING:
        table = getattr(tables, name)
        conn.execute(text(f"ALTER TABLE {_qualified(conn, table)} SET ({parameters})"))


def _partial_family_indexes_v11(conn: Connection, tables: Tables) -> None:
    """The family indexes hold only jobs that have a parent, a predecessor or a
    declarer (``schema.FAMILY_INDEXES``): rebuilt as partial indexes."""
    jobs = tables.jobs
    prefix = jobs.name.removesuffix("jobs")
    wanted = {prefix + name for name in FAMILY_INDEXES.values()}
    present = {i["name"] for i in inspect(conn).get_indexes(jobs.name, schema=jobs.schema)}
    for index in jobs.indexes:
        if index.name in wanted:
            if index.name in present:
                conn.execute(text(f"DROP INDEX {_qualified(conn, jobs, index.name)}"))
            index.create(conn)


def _add_columns(conn: Connection, added: dict[Table, tuple[str, ...]]) -> None:
    for table, columns in added.items():
        present = {c["name"] for c in inspect(conn).get_columns(table.name, schema=table.schema)}
        for column in columns:
            if column.split()[0] not in present:  # version 1 just created it otherwise
                conn.execute(text(f"ALTER TABLE {_qualified(conn, table)} ADD COLUMN {column}"))


def _qualified(conn: Connection, table: Table, name: str | None = None) -> str:
    quote = conn.dialect.identifier_preparer.quote
    bare = quote(name or table.name)
    return f"{quote(table.schema)}.{bare}" if table.schema else bare


MIGRATIONS: dict[int, Callable[[Connection, Tables], None]] = {
    1: _create_v1,
    2: _add_worker_minutes_v2,
    3: _add_settled_counts_v3,
    4: _ready_order_v4,
    5: _results_and_repairs_v5,
    6: _controls_v6,
    7: _unique_keys_v7,
    8: _progress_and_plans_v8,
    9: _family_roots_v9,
    10: _vacuum_churn_v10,
    11: _partial_family_indexes_v11,
}


def _current(conn: Connection, tables: Tables) -> int:
    version = tables.version
    if not inspect(conn).has_table(version.name, schema=version.schema):
        return 0
    found = conn.execute(select(func.max(version.c.version))).scalar()
    return int(found or 0)


def lock_key(namespace: str) -> int:
    """A stable 32-bit advisory lock key per namespace."""
    return zlib.crc32(f"conveyor:{namespace}".encode())


async def migrate(engine: AsyncEngine, tables: Tables, namespace: str, *, postgres: bool) -> int:
    """Create or upgrade the namespace's schema; returns the version now in place.

    Raises:
        SchemaMismatch: the database is newer than this code.
    """
    async with engine.connect() as conn:
        if not postgres:  # BEGIN IMMEDIATE: concurrent starters queue on the file lock
            await conn.execution_options(conveyor_write=True)
        async with conn.begin():
            if postgres:
                # Held until commit: concurrent starters wait here, then find it done.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(namespace)}
                )
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{namespace}"'))
            current = await conn.run_sync(_current, tables)
            _refuse_newer(current)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                await conn.run_sync(MIGRATIONS[version], tables)
                await conn.execute(
                    insert(tables.version).values(version=version, applied_at=time.time())
                )
    return SCHEMA_VERSION


async def check(conn: AsyncConnection, tables: Tables) -> None:
    """With ``migrate=False``: the schema must already be exactly this version."""
    current = await conn.run_sync(_current, tables)
    _refuse_newer(current)
    if current < SCHEMA_VERSION:
        raise SchemaMismatch(
            f"the database schema is at version {current}, this Conveyor needs {SCHEMA_VERSION}; "
            "run `conveyor migrate` (or connect with migrate=True)"
        )


def _refuse_newer(current: int) -> None:
    if current > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"the database schema is at version {current}, newer than this Conveyor "
            f"understands ({SCHEMA_VERSION}); upgrade Conveyor before connecting"
        )
