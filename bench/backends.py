"""The benchmarked backends: Redis, PostgreSQL and SQLite.

Each ``Backend`` knows how to give a measurement a fresh Conveyor namespace and remove it
afterwards, how to count that measurement's round trips or statements, how to poll progress
cheaply, how to measure storage per job (W5), which other clients are on its server, and
its versions. The workloads (``bench.workloads``) are written once against this interface.

- **redis**: namespace = key prefix ``{ns}:``; cleanup SCAN MATCH + DEL; round trips from
  ``INFO commandstats`` deltas; W5 from ``INFO memory``.
- **postgres**: namespace = a PostgreSQL schema, dropped afterwards with ``DROP SCHEMA "ns"
  CASCADE``; statements and transactions counted in-process (``bench.sqlcount``) and once per
  run on the wire (``bench.pgwire``); W5 from ``pg_total_relation_size`` of the jobs table.
- **sqlite**: namespace = table prefix, in a fresh database file per measurement, deleted
  afterwards (with its -wal and -shm); statements counted in-process; W5 from the file's
  growth after a WAL checkpoint (and ``dbstat`` per table and index).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis

import conveyor

from . import sqlcount
from .common import (
    QUEUE,
    _dist_version,
    commandstats,
    commandstats_delta,
    delete_namespace,
    new_namespace,
    round_trips,
)

NAMES = ("redis", "postgres", "sqlite")
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BENCH_CLIENT_PREFIXES = ("bench:", "conveyor:bench_")
MAX_WAIT = 30.0  # seconds: a bound on any one cleanup wait


async def succeeded_from_stats(storage: Any) -> int:
    for stats in await storage.queue_stats():
        if stats.queue == QUEUE:
            return int(stats.count(conveyor.JobState.SUCCEEDED))
    return 0


class Backend:
    """What the workloads need from a backend."""

    name = "?"
    #: the key a run's round-trip counts are stored under in the JSON
    counts_key = "commandstats"

    def __init__(self, counting: bool) -> None:
        self.counting = counting

    def url(self, ns: str) -> str:
        raise NotImplementedError

    def config(self, ns: str) -> conveyor.Config:
        return conveyor.Config(url=self.url(ns), namespace=ns)

    async def open(self) -> None:
        """Connect the harness's admin connection."""

    async def aclose(self) -> None:
        """Close it."""

    @contextlib.asynccontextmanager
    async def namespace(self, tag: str) -> AsyncIterator[str]:
        """A fresh namespace, removed afterwards whatever happened."""
        ns = new_namespace(tag)
        try:
            yield ns
        finally:
            await self.drop(ns)

    async def drop(self, ns: str) -> None:
        raise NotImplementedError

    async def foreign_clients(self) -> int:
        """Clients of this backend's server that are not the harness's (Redis: connected;
        PostgreSQL: running a statement right now)."""
        return 0

    async def versions(self) -> dict[str, Any]:
        return {}

    # progress --------------------------------------------------------------------------

    async def succeeded(self, storage: Any, ns: str) -> int:
        """How many jobs of the benchmark queue have succeeded (one cheap query)."""
        return await succeeded_from_stats(storage)

    def poll_commands(self, polls: int) -> dict[str, int]:
        """Server commands the harness's progress polls added (subtracted from counts)."""
        return {}

    async def last_settle(self, ns: str) -> float | None:
        """The time of the last settle, as the backend recorded it."""
        return None

    # round trips ---------------------------------------------------------------------

    async def snap(self, storage: Any) -> Any:
        """A snapshot of the counts for ``storage`` (None when not counting)."""
        return None

    def trips(
        self,
        before: Any,
        after: Any,
        jobs: int,
        *,
        polls: int = 0,
        worker: Mapping[str, Any] | None = None,
        library_client: Mapping[str, int] | None = None,
    ) -> dict[str, Any] | None:
        """Counts per job from two snapshots (the harness's side) and the worker's own."""
        return None

    # W5 --------------------------------------------------------------------------------

    async def size(self, ns: str, storage: Any) -> dict[str, Any]:
        """Storage used now: ``{"total": bytes, "parts": {name: bytes}, ...}``."""
        raise NotImplementedError


# --- Redis ----------------------------------------------------------------------------


class RedisBackend(Backend):
    name = "redis"
    counts_key = "commandstats"

    def __init__(self, url: str, counting: bool) -> None:
        super().__init__(counting)
        self._url = url
        self.admin: aioredis.Redis | None = None

    def url(self, ns: str) -> str:
        return self._url

    async def open(self) -> None:
        self.admin = aioredis.Redis.from_url(self._url, client_name="bench:admin")
        await self.admin.ping()

    async def aclose(self) -> None:
        if self.admin is not None:
            await self.admin.aclose()

    async def drop(self, ns: str) -> None:
        assert self.admin is not None
        await delete_namespace(self.admin, ns)

    async def foreign_clients(self) -> int:
        assert self.admin is not None
        clients = await self.admin.client_list()
        return sum(
            1 for c in clients if not str(c.get("name", "")).startswith(BENCH_CLIENT_PREFIXES)
        )

    async def versions(self) -> dict[str, Any]:
        import redis as redis_pkg
        from redis.utils import HIREDIS_AVAILABLE

        from .common import _run

        assert self.admin is not None
        server = await self.admin.info("server")
        return {
            "redis_server": server.get("redis_version"),
            "redis_py": redis_pkg.__version__,
            "hiredis": _dist_version("hiredis"),
            "hiredis_in_use": bool(HIREDIS_AVAILABLE),
            "redis_benchmark": _run(["redis-benchmark", "--version"]).strip() or None,
        }

    def poll_commands(self, polls: int) -> dict[str, int]:
        return {"hgetall": polls}  # queue_stats() is one HGETALL

    async def last_settle(self, ns: str) -> float | None:
        assert self.admin is not None
        last = await self.admin.zrange("{" + ns + "}:finished", -1, -1, withscores=True)
        return float(last[0][1]) if last else None

    async def snap(self, storage: Any) -> Any:
        assert self.admin is not None
        return await commandstats(self.admin) if self.counting else None

    def trips(
        self,
        before: Any,
        after: Any,
        jobs: int,
        *,
        polls: int = 0,
        worker: Mapping[str, Any] | None = None,
        library_client: Mapping[str, int] | None = None,
    ) -> dict[str, Any] | None:
        if before is None or after is None:
            return None
        delta = commandstats_delta(before, after)
        result = round_trips(
            delta, jobs, harness=self.poll_commands(polls), library_client=library_client
        )
        result["delta"] = delta
        return result

    async def size(self, ns: str, storage: Any) -> dict[str, Any]:
        assert self.admin is not None
        return {"total": int((await self.admin.info("memory"))["used_memory"])}


# --- SQL (PostgreSQL and SQLite) --------------------------------------------------------


class SQLBackend(Backend):
    """Shared by PostgreSQL and SQLite: in-process statement counts."""

    counts_key = "sql_counts"

    def __init__(self, counting: bool) -> None:
        super().__init__(counting)
        self._counters: dict[int, sqlcount.SQLCounter] = {}

    async def snap(self, storage: Any) -> Any:
        if not self.counting:
            return None
        counter = self._counters.get(id(storage))
        if counter is None:
            counter = self._counters[id(storage)] = sqlcount.SQLCounter().attach(storage)
        return counter.snapshot()

    def trips(
        self,
        before: Any,
        after: Any,
        jobs: int,
        *,
        polls: int = 0,
        worker: Mapping[str, Any] | None = None,
        library_client: Mapping[str, int] | None = None,
    ) -> dict[str, Any] | None:
        if not self.counting:
            return None
        parts = []
        if before is not None and after is not None:
            parts.append(sqlcount.delta(before, after))
        worker_counts = (worker or {}).get("sql_counts")
        if worker_counts:
            parts.append(worker_counts)
        if not parts:
            return None
        result = sqlcount.per_job(sqlcount.add(*parts), jobs)
        result["sides"] = len(parts)
        return result


class PostgresBackend(SQLBackend):
    name = "postgres"

    def __init__(self, url: str, counting: bool) -> None:
        super().__init__(counting)
        self._url = url
        self.admin: Any = None  # psycopg.AsyncConnection, autocommit
        self._have_pgstattuple: bool | None = None

    @property
    def dsn(self) -> str:
        """The libpq DSN of ``url`` (no driver suffix)."""
        _scheme, rest = self._url.split("://", 1)
        return "postgresql://" + rest

    def url(self, ns: str) -> str:
        return self._url

    def proxied_url(self, port: int) -> str:
        """The same database through the counting proxy on ``port`` (plain TCP)."""
        parts = urlsplit(self._url)
        user = f"{parts.username}@" if parts.username else ""
        query = "sslmode=disable&gssencmode=disable"
        return f"postgresql+psycopg://{user}127.0.0.1:{port}{parts.path}?{query}"

    @property
    def port(self) -> int:
        return urlsplit(self._url).port or 5432

    async def open(self) -> None:
        import psycopg

        self.admin = await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, application_name="bench:admin"
        )

    async def aclose(self) -> None:
        if self.admin is not None:
            await self.admin.close()

    async def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = await self.admin.execute(sql, params)
        return await cur.fetchall() if cur.description else []

    async def drop(self, ns: str) -> None:
        # The namespace's connections are closed by now; a straggler's lock would make
        # DROP wait, so bound the wait instead of hanging.
        await self.execute("SET lock_timeout = '30s'")
        await self.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE')

    async def foreign_clients(self) -> int:
        rows = await self.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() AND state = 'active' "
            "AND coalesce(application_name, '') NOT LIKE 'bench:%%' "
            "AND coalesce(application_name, '') NOT LIKE 'conveyor:bench\\_%%'"
        )
        return int(rows[0][0])

    async def versions(self) -> dict[str, Any]:
        import psycopg
        import sqlalchemy

        settings = {}
        for name in (
            "server_version",
            "synchronous_commit",
            "fsync",
            "wal_sync_method",
            "full_page_writes",
            "shared_buffers",
            "max_connections",
            "autovacuum",
        ):
            settings[name] = (await self.execute(f"SHOW {name}"))[0][0]
        return {
            "postgres_server": settings.pop("server_version"),
            "postgres_settings": settings,
            "psycopg": psycopg.__version__,
            "psycopg_impl": psycopg.pq.__impl__,
            "libpq": psycopg.pq.version(),
            "sqlalchemy": sqlalchemy.__version__,
        }

    async def succeeded(self, storage: Any, ns: str) -> int:
        # The per-minute counters table (upserted in the settle's own transaction): a few
        # rows, where queue_stats() would count the whole jobs table every 20 ms.
        try:
            rows = await self.execute(
                f"SELECT coalesce(sum(succeeded), 0) FROM \"{ns}\".counters WHERE type = ''"
            )
        except Exception as exc:  # the table does not exist yet
            if "does not exist" in str(exc):
                return 0
            raise
        return int(rows[0][0])

    async def last_settle(self, ns: str) -> float | None:
        rows = await self.execute(f'SELECT max(finished_at) FROM "{ns}".jobs')
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    async def size(self, ns: str, storage: Any) -> dict[str, Any]:
        table = f'"{ns}".jobs'
        total = (await self.execute("SELECT pg_total_relation_size(%s::regclass)", (table,)))[0][0]
        heap = (await self.execute("SELECT pg_table_size(%s::regclass)", (table,)))[0][0]
        main = (await self.execute("SELECT pg_relation_size(%s::regclass)", (table,)))[0][0]
        rows = await self.execute(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass "
            "ORDER BY c.relname",
            (table,),
        )
        parts = {"heap (main fork)": int(main), "heap FSM+VM+TOAST": int(heap) - int(main)}
        for name, size in rows:
            parts[f"index {name}"] = int(size)
        out: dict[str, Any] = {"total": int(total), "parts": parts}
        tuples = await self._pgstattuple(ns, table)
        if tuples:
            out["pgstattuple"] = tuples
        return out

    async def _pgstattuple(self, ns: str, table: str) -> dict[str, Any] | None:
        """Live and dead tuples of the jobs table (pgstattuple, created in the namespace's
        schema so that DROP SCHEMA takes it away), or None if unavailable."""
        if self._have_pgstattuple is None:
            found = await self.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = %s", ("pgstattuple",)
            )
            self._have_pgstattuple = bool(found)
        if not self._have_pgstattuple:
            return None
        schema = await self.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pgstattuple'"
        )
        if not schema:
            await self.execute(f'CREATE EXTENSION pgstattuple SCHEMA "{ns}"')
            where = ns
        else:
            where = schema[0][0]
        cur = await self.admin.execute(
            f'SELECT * FROM "{where}".pgstattuple(%s::regclass)', (table,)
        )
        row = await cur.fetchone()
        names = [d.name for d in cur.description]
        return dict(
            zip(names, (float(v) if isinstance(v, float) else int(v) for v in row), strict=True)
        )


def _bare(name: str, ns: str) -> str:
    """A SQLite table or index name without the namespace prefix."""
    bare = name.replace(f"{ns}_", "")
    return "primary key (sqlite_autoindex_jobs_1)" if bare == "sqlite_autoindex_jobs_1" else bare


class SQLiteBackend(SQLBackend):
    name = "sqlite"

    def __init__(self, folder: Path, counting: bool) -> None:
        super().__init__(counting)
        self.folder = folder
        self._readers: dict[str, sqlite3.Connection] = {}

    def path(self, ns: str) -> Path:
        return self.folder / f"{ns}.db"

    def url(self, ns: str) -> str:
        return f"sqlite:///{self.path(ns)}"

    async def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    async def drop(self, ns: str) -> None:
        reader = self._readers.pop(ns, None)
        if reader is not None:
            reader.close()
        base = self.path(ns)
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{base}{suffix}")

    def _reader(self, ns: str) -> sqlite3.Connection:
        conn = self._readers.get(ns)
        if conn is None:
            conn = sqlite3.connect(
                self.path(ns), isolation_level=None, check_same_thread=False, timeout=MAX_WAIT
            )
            self._readers[ns] = conn
        return conn

    async def _query(self, ns: str, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            return self._reader(ns).execute(sql, params).fetchall()

        return await asyncio.to_thread(run)

    async def versions(self) -> dict[str, Any]:
        return {
            "sqlite_library": sqlite3.sqlite_version,
            "aiosqlite": _dist_version("aiosqlite"),
            "sqlite_pragmas": "journal_mode=WAL, synchronous=NORMAL, busy_timeout=30000, "
            "BEGIN IMMEDIATE (set by the library)",
        }

    async def succeeded(self, storage: Any, ns: str) -> int:
        try:
            rows = await self._query(
                ns, f"SELECT coalesce(sum(succeeded), 0) FROM \"{ns}_counters\" WHERE type = ''"
            )
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise
        return int(rows[0][0])

    async def last_settle(self, ns: str) -> float | None:
        rows = await self._query(ns, f'SELECT max(finished_at) FROM "{ns}_jobs"')
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    async def size(self, ns: str, storage: Any) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            conn = self._reader(ns)
            busy, log, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            freelist = conn.execute("PRAGMA freelist_count").fetchone()[0]
            parts: dict[str, int] = {}
            with contextlib.suppress(sqlite3.OperationalError):  # no dbstat compiled in
                for name, size in conn.execute(
                    "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY name"
                ):
                    parts[_bare(name, ns)] = int(size)
            return {
                "total": os.path.getsize(self.path(ns)),
                "parts": parts,
                "checkpoint": {"busy": busy, "wal_frames": log, "checkpointed": done},
                "page_size": page_size,
                "freelist_pages": freelist,
            }

        return await asyncio.to_thread(run)
