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

from sqlalchemy import Connection, delete, func, insert, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from conveyor.core.errors import ConfigurationError

from .schema import SETTLED, Tables

SCHEMA_VERSION = 3


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


MIGRATIONS: dict[int, Callable[[Connection, Tables], None]] = {
    1: _create_v1,
    2: _add_worker_minutes_v2,
    3: _add_settled_counts_v3,
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
