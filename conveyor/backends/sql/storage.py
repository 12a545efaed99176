"""``SQLStorage``: the Storage protocol on PostgreSQL (psycopg 3) and SQLite (aiosqlite).

This module is plumbing: connections, transactions and their retries, error
translation, wake-ups and event streams. The transitions themselves are in
``transitions.py``, the reads in ``reads.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from conveyor.core import rules
from conveyor.core.config import Config, mask_url
from conveyor.core.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    ConveyorError,
    MissingExtra,
    PayloadDecodeError,
)
from conveyor.core.job import Job, JobSpec, Lease
from conveyor.core.queues import QueueControls, QueueLimits
from conveyor.core.storage import (
    CHILDREN_PAGE,
    FAMILY_TREE_LIMIT,
    Claimed,
    JobEvent,
    JobFilter,
    JobPage,
    MaintenanceReport,
    MinuteCount,
    Outcome,
    QueueStats,
    Success,
    WorkerInfo,
    check_outcomes,
    take_or_hand_back,
)
from conveyor.core.wakeup import LocalSignal, earliest, local_signal, stream, wait_for_work

try:
    from sqlalchemy import delete, event, func, select, text, update
    from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra(
        "the SQL backend needs SQLAlchemy: pip install 'conveyor-jobs[postgres]' or "
        "'conveyor-jobs[sqlite]'"
    ) from exc

from . import reads, tallies, transitions
from ._rows import job_of_row, queue_controls_of
from ._tx import Tx
from .migrate import CHURNING, check, migrate, vacuum_due_statement
from .pg_claim import claim_params, claim_statement
from .pg_enqueue import (
    NOTIFY_CHUNK,
    enqueue_params,
    enqueue_statement,
    single_enqueue_params,
    single_enqueue_statement,
)
from .pg_settle import settle_params, settle_statement
from .pooling import NO_POOLER, POLL, Pooling, split_pooling
from .schema import SETTLED, build_tables

log = logging.getLogger("conveyor.sql")
T = TypeVar("T")

WORKER_MINUTES_KEPT = 120  # minutes of the workers chart kept
PROMOTE_EVERY = 0.1  # seconds between promotions of due jobs by one storage's claims
RETRYABLE_STATES = ("40P01", "40001")  # deadlock detected, serialization failure
HOT_TRIES = 10  # sends of a one-statement transition that did nothing (_pg_rows)
VACUUM_CHECK = 5.0  # seconds between maintenance's looks for tables to vacuum
CONTROLS_KEPT = 1.0  # seconds claims run in a transaction after a queue had controls
NEVER_BY_ITSELF = 2**31 - 1  # psycopg prepare_threshold: only what asks (prepare=True)
WAL_SWITCH_TRIES = 100  # 5 s of tries at turning WAL on while another process holds the lock


def _driver_url(url: str) -> tuple[str, bool, Pooling]:
    """SQLAlchemy's URL, whether it is PostgreSQL, and what it says of a pooler."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgresql+psycopg"):
        if rest.partition("?")[0].count("@") > 1:
            # SQLAlchemy ends the password at the first '@', psycopg would then
            # report the rest of it as the host name.
            raise ConfigurationError(
                f"bad database URL {mask_url(url)!r}: an '@' in the user name or password "
                "must be percent-encoded as %40"
            )
        plain, pooling = split_pooling(f"postgresql+psycopg://{rest}")
        return plain, True, pooling
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        if rest in ("", "/", "/:memory:"):
            raise ConfigurationError(
                "SQLite needs a file (sqlite:///path.db); for an in-process store use memory://"
            )
        return f"sqlite+aiosqlite://{rest}", False, NO_POOLER
    raise ConfigurationError(f"not a SQL URL: {mask_url(url)}")


def _retryable(exc: DBAPIError) -> bool:
    # A pooled connection that died (server restart, terminated backend) fails
    # at its first statement; the transaction did nothing, so run it again on a
    # fresh one. This replaces a ping per checkout, which cost a round trip.
    if exc.connection_invalidated:
        return True
    if getattr(exc.orig, "sqlstate", None) in RETRYABLE_STATES:
        return True
    return "database is locked" in str(exc.orig)


class SQLStorage:
    """Jobs as rows; every transition one transaction."""

    def __init__(
        self, engine: AsyncEngine, config: Config, *, postgres: bool, pooling: Pooling = NO_POOLER
    ) -> None:
        self._engine = engine
        # Same pool; its connections run one statement per transaction (enqueue).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._url = config.url
        self._namespace = config.namespace
        self._postgres = postgres
        self._t = build_tables(config.namespace, postgres=postgres)
        self._retention = config.retention.total_seconds()
        self._failed_retention = config.failed_retention.total_seconds()
        self._max_lost = config.max_lost
        self._signal: LocalSignal = local_signal(f"{engine.url}|{config.namespace}")
        # PostgreSQL: the interrupts (rule 12) this process's LISTEN connection receives.
        self._interrupted: LocalSignal = local_signal(f"{engine.url}|{config.namespace}|cancel")
        self._write_lock = asyncio.Lock() if not postgres else None
        # The enqueue, claim and settle statements are few, fixed and hot: prepared on
        # each session (every other statement is sent unprepared, see _engine_options),
        # but never through a pooler, where the next transaction may run on another
        # server session.
        self._prepare_hot = postgres and pooling.pooler is None
        # Where LISTEN goes: the server itself, or nowhere (then workers poll every POLL).
        self._listen_dsn = _listen_dsn(engine, pooling) if postgres else None
        self._listener: asyncio.Task[None] | None = None
        self._promoted_at = 0.0
        self._controlled_until = 0.0  # claims run in a transaction until then
        self._vacuum_at = 0.0  # when maintenance next looks for tables to vacuum
        self._vacuum_due = vacuum_due_statement(CHURNING)
        self._reconciled = ("", "")  # where the reconciler's slices ended (waiting, held)
        self._wake_channel = f"conveyor_{config.namespace}_wake"
        self._event_channel = f"conveyor_{config.namespace}_events"
        self._interrupt_channel = f"conveyor_{config.namespace}_cancel"
        self._claim_statement = claim_statement(config.namespace)
        self._settle_statement = settle_statement(config.namespace)
        self._single_enqueue = {
            keyed: single_enqueue_statement(config.namespace, keyed=keyed)
            for keyed in (False, True)
        }

    @classmethod
    async def namespaces(cls, config: Config) -> list[str]:
        """Namespaces with a Conveyor schema in this database (their version table),
        without creating any."""
        driver_url, postgres, pooling = _driver_url(config.url)
        engine = create_async_engine(driver_url, **_engine_options(config, postgres, pooling))
        try:
            if postgres:
                query = text(
                    "SELECT table_schema FROM information_schema.tables "
                    "WHERE table_name = 'schema_version'"
                )
            else:
                query = text(
                    "SELECT substr(name, 1, length(name) - 15) FROM sqlite_master "
                    "WHERE type = 'table' AND name LIKE '%\\_schema_version' ESCAPE '\\'"
                )
            storage = cls(engine, config, postgres=postgres, pooling=pooling)
            with storage._translated():
                async with engine.connect() as conn:
                    return sorted(str(row[0]) for row in (await conn.execute(query)).all())
        finally:
            await engine.dispose()

    @classmethod
    async def open(cls, config: Config) -> SQLStorage:
        """Connect, and create or upgrade the schema unless ``config.migrate`` is false.

        Raises:
            ConfigurationError: a bad URL, or a schema this code cannot use.
            BackendUnavailable: the database does not answer.
        """
        driver_url, postgres, pooling = _driver_url(config.url)
        try:
            engine = create_async_engine(driver_url, **_engine_options(config, postgres, pooling))
        except (ArgumentError, ValueError) as exc:
            raise ConfigurationError(f"bad database URL {mask_url(config.url)!r}: {exc}") from exc
        except ImportError as exc:
            extra = "postgres" if postgres else "sqlite"
            raise MissingExtra(
                f"{exc.name} is missing: pip install 'conveyor-jobs[{extra}]'"
            ) from exc
        if not postgres:
            _sqlite_setup(engine)
        storage = cls(engine, config, postgres=postgres, pooling=pooling)
        try:
            with storage._translated():
                if config.migrate:
                    await migrate(engine, storage._t, config.namespace, postgres=postgres)
                else:
                    async with engine.connect() as conn:
                        await check(conn, storage._t)
        except BaseException:
            await engine.dispose()
            raise
        return storage

    # --- plumbing -------------------------------------------------------------------

    @contextlib.contextmanager
    def _translated(self) -> Any:
        """The one place where driver errors become Conveyor errors."""
        try:
            yield
        except ConveyorError:
            raise
        except (OperationalError, OSError) as exc:
            raise BackendUnavailable(
                f"database at {mask_url(self._url)} is unreachable: {_short(exc)}"
            ) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise BackendUnavailable(
                    f"database at {mask_url(self._url)} dropped the connection: {_short(exc)}"
                ) from exc
            raise BackendError(f"database at {mask_url(self._url)} failed: {_short(exc)}") from exc

    async def _tx(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``body`` in one transaction, with its tallies and notifications, retried
        on deadlock or a busy SQLite file."""
        delay = 0.01
        for attempt in range(10):
            try:
                with self._translated():
                    async with contextlib.AsyncExitStack() as stack:
                        if self._write_lock is not None:
                            await stack.enter_async_context(self._write_lock)
                        conn = await stack.enter_async_context(self._engine.connect())
                        if not self._postgres:  # SQLite: take the write lock up front
                            await conn.execution_options(conveyor_write=True)
                        await stack.enter_async_context(conn.begin())
                        tx = Tx(conn, self._t, time.time(), self._postgres)
                        result = await body(tx)
                        await tallies.add_counts(tx)
                        await tallies.append_settled(tx)
                        await self._notify(conn, tx)
                self._announce(tx)
                return result
            except BackendError as exc:
                cause = exc.__cause__
                if attempt < 9 and isinstance(cause, DBAPIError) and _retryable(cause):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                raise
        raise AssertionError("unreachable")

    async def _read(self, body: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        for attempt in range(3):
            try:
                with self._translated():
                    async with self._engine.connect() as conn:
                        return await body(conn)
            except BackendError as exc:
                cause = exc.__cause__
                if attempt < 2 and isinstance(cause, DBAPIError) and _retryable(cause):
                    continue
                raise
        raise AssertionError("unreachable")

    async def _notify(self, conn: AsyncConnection, tx: Tx) -> None:
        """On PostgreSQL, NOTIFY inside the transaction: delivered when it commits."""
        if not self._postgres:
            return
        for queue in tx.wakes:
            await conn.execute(select(func.pg_notify(self._wake_channel, queue)))
        await self._notify_lines(conn, self._event_channel, tx.event_lines())
        interrupts = [f"{held.job_id} {held.token}" for held in tx.interrupts]
        await self._notify_lines(conn, self._interrupt_channel, interrupts)

    async def _notify_lines(self, conn: AsyncConnection, channel: str, lines: list[str]) -> None:
        """NOTIFY ``lines``, as few payloads as PostgreSQL's size limit allows."""
        chunk: list[str] = []
        size = 0
        for line in lines:
            if size + len(line) > NOTIFY_CHUNK and chunk:
                await conn.execute(select(func.pg_notify(channel, "\n".join(chunk))))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        if chunk:
            await conn.execute(select(func.pg_notify(channel, "\n".join(chunk))))

    def _announce(self, tx: Tx) -> None:
        """After commit: wake this process's waiters at once (and feed SQLite's event stream)."""
        if tx.wakes:
            self._signal.wake()
        if self._listen_dsn is None and tx.events:
            self._signal.publish("\n".join(tx.event_lines()))

    async def _listen(self) -> None:
        """A dedicated LISTEN connection; reconnects forever. A wake-up wakes waiters;
        an interrupt goes to this process's ``interrupts`` streams."""
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._listening_dsn(),
                    autocommit=True,
                    application_name=f"conveyor:{self._namespace}",
                ) as conn:
                    await conn.execute(f'LISTEN "{self._wake_channel}"')
                    await conn.execute(f'LISTEN "{self._interrupt_channel}"')
                    self._signal.wake()  # anything sent while disconnected: look again
                    async for note in conn.notifies():
                        if note.channel == self._interrupt_channel:
                            self._interrupted.publish(note.payload)
                        else:
                            self._signal.wake()
            except (psycopg.Error, OSError) as exc:
                log.warning("LISTEN connection lost, reconnecting: %s", exc)
                await asyncio.sleep(0.5)

    def _listening_dsn(self) -> str:
        """Where LISTEN goes; only asked for when there is somewhere (never an empty DSN,
        which libpq would read as "the local server's defaults")."""
        if self._listen_dsn is None:
            raise AssertionError("LISTEN asked for with no session to listen on")
        return self._listen_dsn

    # --- producing and working ----------------------------------------------------

    async def enqueue(self, jobs: Sequence[JobSpec]) -> list[str]:
        rules.check_new_jobs(jobs)
        if not jobs:
            return []
        keyed = any(job.key is not None for job in jobs)
        if self._postgres and len(jobs) == 1:  # one job: one single-row statement
            params = single_enqueue_params(
                jobs[0], time.time(), wake=self._wake_channel, events=self._event_channel
            )
            taken, holder, _ = await self._pg_run((self._single_enqueue[keyed], params))
            if not keyed or taken is not None or holder is not None:
                return [taken or holder or jobs[0].id]  # unkeyed: skipped when it exists
        elif self._postgres and not keyed:
            await self._pg_run(self._enqueue_statement(jobs))
            return [job.id for job in jobs]
        # Other keyed batches (and a key committed after that statement's snapshot):
        # a few statements in one transaction, which locks the key's row (rule 15).
        return await self._tx(functools.partial(transitions.enqueue, specs=jobs))

    async def enqueue_in(self, connection: Any, jobs: Sequence[JobSpec]) -> list[str]:
        """Enqueue in the caller's transaction (PostgreSQL): the jobs exist if and only if
        it commits, and workers are woken by a NOTIFY delivered on that commit.

        Raises:
            ConfigurationError: this is SQLite, or ``connection`` is not a SQLAlchemy
                ``AsyncConnection``.
        """
        import psycopg

        if not self._postgres:
            raise ConfigurationError("enqueue(connection=...) needs the PostgreSQL backend")
        if not isinstance(connection, AsyncConnection):
            raise ConfigurationError(
                "connection must be a SQLAlchemy AsyncConnection with a transaction open, "
                f"not {type(connection).__name__}"
            )
        rules.check_new_jobs(jobs)
        if not jobs:
            return []
        if any(job.key is not None for job in jobs):
            # Unique keys (rule 15): the transitions, in the caller's transaction; the
            # NOTIFY is delivered when it commits.
            with self._translated():
                tx = Tx(connection, self._t, time.time(), True)
                ids = await transitions.enqueue(tx, jobs)
                await self._notify(connection, tx)
            return ids
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        try:
            await driver.execute(*self._enqueue_statement(jobs), prepare=self._prepare_hot)
        except psycopg.Error as exc:
            raise self._driver_error(exc) from exc
        return [job.id for job in jobs]

    def _enqueue_statement(self, jobs: Sequence[JobSpec]) -> tuple[str, dict[str, Any]]:
        params = enqueue_params(
            jobs, time.time(), wake=self._wake_channel, events=self._event_channel
        )
        return enqueue_statement(self._namespace), params

    async def _pg_run(self, statement: tuple[str, dict[str, Any]]) -> tuple[Any, ...]:
        """An enqueue statement, one round trip; returns its first row (if any)."""
        rows = await self._pg_rows(statement)
        self._signal.wake()
        return tuple(rows[0]) if rows else ()

    async def _pg_rows(
        self, statement: tuple[str, dict[str, Any]], row_factory: Any = None
    ) -> list[Any]:
        """One hot statement in autocommit, one round trip; returns its rows.

        It runs on the driver connection itself: for the hot paths SQLAlchemy's
        execution layer cost as much as the round trip. Each statement is atomic, so
        it is sent again when it did nothing: after a deadlock or serialization
        failure (two settles upserting the same counter rows, as a transaction is
        retried), and on a pooled connection found dead (it had not reached the
        server; an enqueue's ``ON CONFLICT`` would make a re-run harmless anyway,
        and a claim whose answer was lost is a worker lost, rule 6).
        """
        import psycopg
        from psycopg.rows import tuple_row

        for attempt in range(HOT_TRIES):
            undone = False  # the server rolled the statement back: send it again
            async with self._autocommit.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                try:
                    cursor = driver.cursor(row_factory=row_factory or tuple_row)
                    await cursor.execute(*statement, prepare=self._prepare_hot)
                    rows: list[Any] = await cursor.fetchall()
                    return rows
                except psycopg.Error as exc:
                    undone = exc.sqlstate in RETRYABLE_STATES
                    dead = isinstance(exc, psycopg.OperationalError) and not undone
                    if dead:
                        await conn.invalidate()  # never hand a dead connection back
                    if attempt == HOT_TRIES - 1 or not (undone or (dead and driver.closed)):
                        raise self._driver_error(exc) from exc
            if undone:
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _driver_error(self, exc: Exception) -> BackendError:
        import psycopg

        where = f"database at {mask_url(self._url)}"
        if isinstance(exc, psycopg.OperationalError):
            return BackendUnavailable(f"{where} is unreachable: {_short(exc)}")
        return BackendError(f"{where} failed: {_short(exc)}")

    async def claim(
        self, worker_id: str, queues: Sequence[str], limit: int, lease: float, wait: float
    ) -> list[Claimed]:
        if not queues or limit < 1:
            return []
        self._start_listening()

        async def body(tx: Tx) -> tuple[list[Claimed], float | None]:
            # Promoting due jobs costs a statement; a few times a second is plenty
            # (maintenance promotes too, and a waiting claim wakes when one is due).
            promote = tx.now - self._promoted_at >= PROMOTE_EVERY
            if promote:
                self._promoted_at = tx.now
            return await transitions.claim(tx, worker_id, queues, limit, lease, promote=promote)

        look_again: float | None = None  # rule 14: a queue its limits hold back
        # The next due time, as the last take's one-statement claim answered it (a
        # list, empty when the last take ran in a transaction).
        answered: list[float | None] = []
        # One statement, unless a queue's controls called for a transaction lately.
        at_once = self._postgres and time.monotonic() >= self._controlled_until

        async def take() -> list[Claimed]:
            nonlocal look_again, at_once
            answered.clear()
            if at_once and time.time() - self._promoted_at < PROMOTE_EVERY:
                claimed, (controlled, due) = await take_or_hand_back(
                    self._claim_at_once(worker_id, queues, limit, lease), self
                )
                if not controlled:
                    answered.append(due)
                    return claimed
                at_once = False
                self._controlled_until = time.monotonic() + CONTROLS_KEPT
            claimed, look_again = await take_or_hand_back(self._tx(body), self)
            return claimed

        async def next_due() -> float | None:
            if answered:
                return answered[0]
            return earliest(await self._next_due(), look_again)

        poll = None if self._listen_dsn is not None else POLL
        return await wait_for_work(self._signal, take, next_due, wait, poll)

    async def _claim_at_once(
        self, worker_id: str, queues: Sequence[str], limit: int, lease: float
    ) -> tuple[list[Claimed], tuple[bool, float | None]]:
        """PostgreSQL, queues without controls: the claim in one statement
        (``pg_claim``). Returns the claimed jobs, and whether a queue has controls
        (nothing was claimed: a transaction must) with the next due time."""
        from psycopg.rows import namedtuple_row

        now = time.time()
        params = claim_params(
            worker_id, list(queues), limit, lease, now, events=self._event_channel
        )
        rows = await self._pg_rows((self._claim_statement, params), namedtuple_row)
        first = rows[0]
        if first.id is None:
            return [], (first.controlled > 0, first.due)
        claimed: list[Claimed] = []
        garbled: list[tuple[Any, PayloadDecodeError]] = []
        for row in sorted(rows, key=lambda r: (-r.priority, r.ready_at or 0.0, r.id)):
            try:
                claimed.append(Claimed(job_of_row(row), Lease(row.id, row.lease_token)))
            except PayloadDecodeError as exc:
                garbled.append((row, exc))
        for row, why in garbled:
            # Written by other software: failed for good under the lease just taken,
            # as the claim in a transaction does (retrying would garble again).
            log.error("%s", why)
            error = f"stored job is not a valid Conveyor job: {why.__cause__!r}"
            lease_ = Lease(row.id, row.lease_token)
            await self._tx(functools.partial(transitions.fail_held, lease=lease_, error=error))
        return claimed, (False, None)

    def _start_listening(self) -> None:
        # Only a claiming process listens: a producer's own LISTEN connection would be
        # woken by every job it enqueues. The listener wakes waiters once LISTEN is on,
        # so a job enqueued before that is not missed.
        if self._listen_dsn is not None and self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="conveyor-listen")

    async def _next_due(self) -> float | None:
        jobs = self._t.jobs

        async def body(conn: AsyncConnection) -> float | None:
            stmt = select(func.min(jobs.c.run_at)).where(jobs.c.state == "scheduled")
            value = (await conn.execute(stmt)).scalar()
            return float(value) if value is not None else None

        return await self._read(body)

    async def stage(self, lease: Lease, declarations: Sequence[JobSpec]) -> None:
        if declarations:
            await self._tx(functools.partial(transitions.stage, lease=lease, specs=declarations))

    async def record(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []
        settled: set[str] = set()
        if self._postgres:
            check_outcomes(outcomes)
            settled = await self._settle_at_once(outcomes)
        rest = [o for o in outcomes if o.lease.job_id not in settled]
        answers = iter(
            await self._tx(functools.partial(transitions.record, outcomes=rest)) if rest else []
        )
        return [o.lease.job_id in settled or next(answers) for o in outcomes]

    async def _settle_at_once(self, outcomes: Sequence[Outcome]) -> set[str]:
        """PostgreSQL: the successes with nothing to cascade, settled in one statement
        (``pg_settle``). Returns the ids it settled; the rest is a transaction's."""
        seen: set[str] = set()
        leaves: list[Success] = []
        for outcome in outcomes:
            # A repeated lease is the transaction's to refuse.
            repeat = outcome.lease.job_id in seen
            if isinstance(outcome, Success) and not outcome.declarations and not repeat:
                leaves.append(outcome)
            seen.add(outcome.lease.job_id)
        if not leaves:
            return set()
        params = settle_params(leaves, time.time(), events=self._event_channel)
        [(ids, _)] = await self._pg_rows((self._settle_statement, params))
        return set(ids)

    async def renew(self, leases: Sequence[Lease], lease: float) -> list[Lease]:
        if not leases:
            return []
        held = await self._tx(functools.partial(transitions.renew, leases=leases, lease=lease))
        return [lease_ for lease_ in leases if lease_.job_id not in held]

    async def progress(self, lease: Lease, fraction: float, note: str | None) -> None:
        report = functools.partial(transitions.progress, lease=lease, fraction=fraction, note=note)
        await self._tx(report)

    async def interrupts(self) -> AsyncIterator[Lease]:
        if self._listen_dsn is None:
            async for held in self._polled_interrupts():
                yield held
            return
        self._start_listening()
        async for payload in stream(self._interrupted.listen):
            for line in payload.split("\n"):
                job_id, _, token = line.partition(" ")
                yield Lease(job_id, int(token))

    async def _polled_interrupts(self) -> AsyncIterator[Lease]:
        """Without notifications (SQLite, or PostgreSQL through a pooler with no direct
        address): look for attempts cancelled since the last look every ``POLL`` seconds
        (those of every process)."""
        jobs = self._t.jobs
        since = time.time()
        seen: dict[Lease, float] = {}
        while True:
            await asyncio.sleep(POLL)
            looked = time.time()
            stmt = select(jobs.c.id, jobs.c.lease_token, jobs.c.finished_at).where(
                jobs.c.state.in_(SETTLED),  # as the finished-at index says, so it is used
                jobs.c.state == "cancelled",
                jobs.c.finished_at >= since,
                jobs.c.started_at.is_not(None),
            )

            async def body(conn: AsyncConnection, stmt: Any = stmt) -> list[Any]:
                return list((await conn.execute(stmt)).all())

            for row in await self._read(body):
                held = Lease(row.id, row.lease_token)
                if held not in seen:
                    seen[held] = row.finished_at
                    yield held
            # Look again a little before this look, for a transaction committed with an
            # older clock; remember only what that window can find again.
            since = looked - 1.0
            seen = {held: at for held, at in seen.items() if at >= since}

    async def pause_queue(self, queue: str, paused: bool) -> None:
        await self._tx(functools.partial(transitions.pause_queue, queue=queue, paused=paused))

    async def limit_queue(self, queue: str, limits: QueueLimits) -> None:
        await self._tx(functools.partial(transitions.limit_queue, queue=queue, limits=limits))

    async def queue_controls(self) -> list[QueueControls]:
        q = self._t.queues

        async def body(conn: AsyncConnection) -> list[QueueControls]:
            rows = (await conn.execute(select(q).order_by(q.c.name))).all()
            return [queue_controls_of(row) for row in rows]

        return await self._read(body)

    async def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        wt = self._t.workers
        data = info.to_dict()

        async def body(tx: Tx) -> None:
            changed = await tx.conn.execute(
                update(wt)
                .where(wt.c.id == info.id)
                .values(info=data, last_seen=tx.now, expires_at=tx.now + ttl)
            )
            if changed.rowcount == 0:
                await tx.conn.execute(
                    wt.insert().values(
                        id=info.id, info=data, last_seen=tx.now, expires_at=tx.now + ttl
                    )
                )
            seen = tallies.upsert(self._postgres)(self._t.worker_minutes).values(
                minute=int(tx.now // 60), worker_id=info.id
            )
            await tx.conn.execute(seen.on_conflict_do_nothing())

        await self._tx(body)

    async def remove_worker(self, worker_id: str) -> None:
        wt = self._t.workers

        async def body(tx: Tx) -> None:
            await tx.conn.execute(delete(wt).where(wt.c.id == worker_id))

        await self._tx(body)

    async def maintain(self) -> MaintenanceReport:
        async def body(tx: Tx) -> MaintenanceReport:
            report, self._reconciled = await transitions.maintain(
                tx, (self._retention, self._failed_retention), self._max_lost, self._reconciled
            )
            wt, wm = self._t.workers, self._t.worker_minutes
            await tx.conn.execute(delete(wt).where(wt.c.expires_at <= tx.now))
            await tx.conn.execute(
                delete(wm).where(wm.c.minute < int(tx.now // 60) - WORKER_MINUTES_KEPT)
            )
            return report

        report = await self._tx(body)
        if self._postgres and time.monotonic() >= self._vacuum_at:
            self._vacuum_at = time.monotonic() + VACUUM_CHECK
            await self._vacuum_churned()
        return report

    async def _vacuum_churned(self) -> None:
        """PostgreSQL: ``VACUUM`` the churning tables that have as many dead rows as
        their autovacuum settings (``migrate.CHURN_STORAGE``) allow, without waiting
        for autovacuum's next visit (``autovacuum_naptime``, a minute by default, in
        which a busy queue leaves tens of thousands of jobs' row versions behind).

        Any worker's maintenance may look, every ``VACUUM_CHECK`` seconds; ``SKIP_LOCKED``
        passes over a table another session is vacuuming already. Only tables this
        user owns are taken (a vacuum of another's table would be refused). A failure
        is logged: autovacuum still comes.
        """
        import psycopg

        async def due(conn: AsyncConnection) -> list[str]:
            stmt = text(self._vacuum_due).bindparams(schema=self._namespace)
            return list((await conn.execute(stmt)).scalars())

        try:
            tables = await self._read(due)
            async with self._autocommit.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                for table in tables:
                    vacuum = f'VACUUM (SKIP_LOCKED) "{self._namespace}"."{table}"'
                    await driver.execute(vacuum, prepare=False)
        except (BackendError, psycopg.Error) as exc:
            log.warning("vacuuming the job tables failed (autovacuum will): %s", exc)

    # --- steering -------------------------------------------------------------------

    async def cancel(self, job_id: str, reason: str = "cancelled") -> Job:
        return await self._tx(functools.partial(transitions.cancel, job_id=job_id, reason=reason))

    async def retry(self, job_id: str) -> Job:
        return await self._tx(functools.partial(transitions.retry, job_id=job_id))

    async def retry_failed(self, root_id: str) -> list[Job]:
        return await self._tx(functools.partial(transitions.retry_failed, root_id=root_id))

    async def discard(self, job_id: str) -> Job:
        return await self._tx(functools.partial(transitions.discard, job_id=job_id))

    # --- inspecting -----------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        return await self._read(functools.partial(reads.get, t=self._t, job_id=job_id))

    async def list_jobs(
        self, filter: JobFilter, *, after: str | None = None, limit: int = 50
    ) -> JobPage:
        read = functools.partial(reads.list_jobs, t=self._t, flt=filter, after=after, limit=limit)
        return await self._read(read)

    async def family(self, job_id: str) -> list[Job]:
        return await self._read(functools.partial(reads.family, t=self._t, job_id=job_id))

    async def children(
        self,
        job_id: str,
        *,
        open_only: bool = False,
        after: str | None = None,
        limit: int = CHILDREN_PAGE,
    ) -> JobPage:
        read = functools.partial(
            reads.children, t=self._t, job_id=job_id, open_only=open_only, after=after, limit=limit
        )
        return await self._read(read)

    async def family_tree(self, root_id: str, *, limit: int = FAMILY_TREE_LIMIT) -> list[Job]:
        read = functools.partial(reads.family_tree, t=self._t, root_id=root_id, limit=limit)
        return await self._read(read)

    async def queue_stats(self) -> list[QueueStats]:
        return await self._read(functools.partial(reads.queue_stats, t=self._t))

    async def oldest_queued(self) -> dict[str, float]:
        return await self._read(functools.partial(reads.oldest_queued, t=self._t))

    async def workers(self) -> list[WorkerInfo]:
        return await self._read(functools.partial(reads.workers, t=self._t))

    async def counters(
        self, minutes: int = 60, type: str | None = None, queue: str | None = None
    ) -> list[MinuteCount]:
        read = functools.partial(
            reads.counters, t=self._t, minutes=minutes, type_name=type, queue=queue
        )
        return await self._read(read)

    async def events(self) -> AsyncIterator[JobEvent]:
        listening = self._listen_dsn is not None
        payloads = self._pg_event_payloads() if listening else stream(self._signal.listen)
        async for payload in payloads:
            for line in payload.split("\n"):
                if line:
                    yield JobEvent.from_line(line)

    async def _pg_event_payloads(self) -> AsyncIterator[str]:
        import psycopg

        with self._translated():
            conn = await psycopg.AsyncConnection.connect(self._listening_dsn(), autocommit=True)
        try:
            await conn.execute(f'LISTEN "{self._event_channel}"')
            async for note in conn.notifies():
                yield note.payload
        finally:
            await conn.close()

    async def publish_types(self, sets: Mapping[str, bytes]) -> None:
        tt = self._t.types

        async def body(tx: Tx) -> None:
            # One statement per type: workers starting together publish the same types.
            for name, data in sorted(sets.items()):
                stmt = tallies.upsert(self._postgres)(tt).values(name=name, descriptor_set=data)
                await tx.conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[tt.c.name],
                        set_={"descriptor_set": stmt.excluded.descriptor_set},
                    )
                )

        if sets:
            await self._tx(body)

    async def descriptor_sets(self) -> dict[str, bytes]:
        return await self._read(functools.partial(reads.descriptor_sets, t=self._t))

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self._engine.dispose()


def _engine_options(config: Config, postgres: bool, pooling: Pooling) -> dict[str, Any]:
    if not postgres:
        return {}
    # Visible in pg_stat_activity, so operators can tell Conveyor's sessions.
    connect: dict[str, Any] = {"application_name": f"conveyor:{config.namespace}"}
    # psycopg prepares a statement on its fifth run on a session. The transitions are
    # built by SQLAlchemy in many shapes (IN lists of every length), and preparing them
    # cost a worker's drain a sixth of its rate and the server a quarter more CPU per job
    # (one `conveyor worker --burst` over 10,000 jobs: 730 against 867 jobs/s, 506 against
    # 384 µs of server CPU per job). So only the few, fixed, hot enqueue, claim and settle
    # statements are prepared, on purpose (SQLStorage._prepare_hot: one-at-a-time
    # enqueues stay at 1,190 against 1,169 jobs/s). Through a pooler nothing is: a
    # prepared statement would outlive its transaction's server session.
    connect["prepare_threshold"] = None if pooling.pooler is not None else NEVER_BY_ITSELF
    return {"pool_size": 10, "max_overflow": 20, "connect_args": connect}


def _listen_dsn(engine: AsyncEngine, pooling: Pooling) -> str | None:
    """The libpq URL of a session that keeps LISTENing: the server's own (``None``
    through a pooler that was given no direct address)."""
    url = engine.url.set(drivername="postgresql")
    if pooling.pooler is not None:
        if pooling.direct is None:
            return None
        url = url.set(host=pooling.direct[0], port=pooling.direct[1])
    return url.render_as_string(hide_password=False)


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _switch_to_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, again while another process holds the file's lock:
    SQLite answers "database is locked" at once here, busy timeout or not, when two
    processes open a new file together (seen in CI: a worker and a producer starting)."""
    for attempt in range(WAL_SWITCH_TRIES):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "database is locked" not in str(exc) or attempt == WAL_SWITCH_TRIES - 1:
                raise
            time.sleep(0.05)  # on the connection's own thread (aiosqlite), not the loop's


def _sqlite_setup(engine: AsyncEngine) -> None:
    """WAL mode, a busy timeout, and ``BEGIN IMMEDIATE`` for writers so they queue, not fail."""

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        try:
            cursor = dbapi_connection.cursor()
            # The timeout first: switching to WAL takes a lock, and a new connection
            # opened while another process writes must wait for it, not fail.
            cursor.execute("PRAGMA busy_timeout=30000")
            _switch_to_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
        except BaseException:
            # The pool does not close a connection whose set-up failed, and a transaction
            # retried on "database is locked" would leave one open per try.
            dbapi_connection.close()
            raise

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        # Writers queue for the lock at BEGIN instead of failing on upgrade;
        # readers take a plain deferred BEGIN and never block in WAL mode.
        write = conn.get_execution_options().get("conveyor_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
