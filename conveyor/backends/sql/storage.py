"""``SQLStorage``: the Storage protocol on PostgreSQL (psycopg 3) and SQLite (aiosqlite)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from conveyor.core.config import Config, mask_url
from conveyor.core.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    ConveyorError,
    InvalidState,
    JobNotFound,
    LeaseLost,
    MissingExtra,
    PayloadDecodeError,
)
from conveyor.core.job import Job, JobSpec, Lease
from conveyor.core.states import JobState
from conveyor.core.storage import (
    Claimed,
    Failure,
    JobEvent,
    JobFilter,
    JobPage,
    MaintenanceReport,
    MinuteCount,
    Outcome,
    QueueStats,
    Release,
    Retry,
    Success,
    WorkerInfo,
    take_or_hand_back,
)

try:
    from sqlalchemy import Table, and_, delete, event, func, insert, or_, select, update
    from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra(
        "the SQL backend needs SQLAlchemy: pip install 'conveyor-jobs[postgres]' or "
        "'conveyor-jobs[sqlite]'"
    ) from exc

from . import rules
from ._rows import job_of_row
from .migrate import check, migrate
from .pg_enqueue import enqueue_params, enqueue_statement
from .schema import OPEN, SETTLED, build_tables
from .wakeup import LocalSignal, local_signal

log = logging.getLogger("conveyor.sql")
T = TypeVar("T")

MAINTENANCE_BATCH = 1000
WORKER_MINUTES_KEPT = 120  # minutes of the workers chart kept
NOTIFY_CHUNK = 7000  # bytes per NOTIFY payload (the server's limit is 8000)
SQLITE_POLL = 0.5  # other processes' work on SQLite is found by polling this often
PROMOTE_EVERY = 0.1  # seconds between promotions of due jobs by one storage's claims


def _driver_url(url: str) -> tuple[str, bool]:
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
        return f"postgresql+psycopg://{rest}", True
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        if rest in ("", "/", "/:memory:"):
            raise ConfigurationError(
                "SQLite needs a file (sqlite:///path.db); for an in-process store use memory://"
            )
        return f"sqlite+aiosqlite://{rest}", False
    raise ConfigurationError(f"not a SQL URL: {mask_url(url)}")


def _retryable(exc: DBAPIError) -> bool:
    # A pooled connection that died (server restart, terminated backend) fails
    # at its first statement; the transaction did nothing, so run it again on a
    # fresh one. This replaces a ping per checkout, which cost a round trip.
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "sqlstate", None)
    if code in ("40P01", "40001"):  # deadlock detected, serialization failure
        return True
    return "database is locked" in str(exc.orig)


class SQLStorage:
    """Jobs as rows; every transition one transaction."""

    def __init__(self, engine: AsyncEngine, config: Config, *, postgres: bool) -> None:
        self._engine = engine
        # Same pool; its connections run one statement per transaction (enqueue).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._url = config.url
        self._namespace = config.namespace
        self._postgres = postgres
        self._t = build_tables(config.namespace, postgres=postgres)
        self._retention = config.retention.total_seconds()
        self._max_lost = config.max_lost
        self._signal: LocalSignal = local_signal(f"{engine.url}|{config.namespace}")
        self._write_lock = asyncio.Lock() if not postgres else None
        self._listener: asyncio.Task[None] | None = None
        self._promoted_at = 0.0
        self._wake_channel = f"conveyor_{config.namespace}_wake"
        self._event_channel = f"conveyor_{config.namespace}_events"

    @classmethod
    async def open(cls, config: Config) -> SQLStorage:
        """Connect, and create or upgrade the schema unless ``config.migrate`` is false.

        Raises:
            ConfigurationError: a bad URL, or a schema this code cannot use.
            BackendUnavailable: the database does not answer.
        """
        driver_url, postgres = _driver_url(config.url)
        try:
            options: dict[str, Any] = {}
            if postgres:
                options.update(
                    pool_size=10,
                    max_overflow=20,
                    # Visible in pg_stat_activity, so operators can tell Conveyor's sessions.
                    connect_args={"application_name": f"conveyor:{config.namespace}"},
                )
            engine = create_async_engine(driver_url, **options)
        except (ArgumentError, ValueError) as exc:
            raise ConfigurationError(f"bad database URL {mask_url(config.url)!r}: {exc}") from exc
        except ImportError as exc:
            extra = "postgres" if postgres else "sqlite"
            raise MissingExtra(
                f"{exc.name} is missing: pip install 'conveyor-jobs[{extra}]'"
            ) from exc
        if not postgres:
            _sqlite_setup(engine)
        storage = cls(engine, config, postgres=postgres)
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

    async def _tx(self, body: Callable[[rules.Tx], Awaitable[T]]) -> T:
        """Run ``body`` in one transaction, retried on deadlock or a busy SQLite file."""
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
                        tx = rules.Tx(conn, self._t, time.time(), self._postgres)
                        result = await body(tx)
                        await self._record_settled(tx)
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

    @staticmethod
    def _unsettle_deleted(tx: rules.Tx, rows: Sequence[Any]) -> int:
        """Take deleted settled jobs out of the ledger; returns how many there were."""
        for queue, state in rows:
            tx.unsettle(queue, state)
        return len(rows)

    async def _record_settled(self, tx: rules.Tx) -> None:
        """Append this transaction's changes to the settled-count ledger."""
        rows = [
            {"queue": queue, "state": state, "n": n}
            for (queue, state), n in tx.settled.items()
            if n
        ]
        if rows:
            await tx.conn.execute(insert(self._t.settled_counts), rows)

    async def _fold_settled(self, tx: rules.Tx) -> None:
        """Fold the ledger into one row per (queue, state), in one statement."""
        ledger = self._t.settled_counts
        if self._postgres:
            # The rows summed are exactly the rows deleted, whatever commits meanwhile.
            gone = delete(ledger).returning(ledger.c.queue, ledger.c.state, ledger.c.n).cte()
            folded = (
                select(gone.c.queue, gone.c.state, func.sum(gone.c.n))
                .group_by(gone.c.queue, gone.c.state)
                .having(func.sum(gone.c.n) != 0)
            )
            await tx.conn.execute(insert(ledger).from_select(["queue", "state", "n"], folded))
            return
        # SQLite: this transaction holds the only write lock.
        totals = (
            await tx.conn.execute(
                select(ledger.c.queue, ledger.c.state, func.sum(ledger.c.n)).group_by(
                    ledger.c.queue, ledger.c.state
                )
            )
        ).all()
        await tx.conn.execute(delete(ledger))
        rows = [{"queue": q, "state": s, "n": n} for q, s, n in totals if n]
        if rows:
            await tx.conn.execute(insert(ledger), rows)

    async def _notify(self, conn: AsyncConnection, tx: rules.Tx) -> None:
        """On PostgreSQL, NOTIFY inside the transaction: delivered when it commits."""
        if not self._postgres:
            return
        for queue in tx.wakes:
            await conn.execute(select(func.pg_notify(self._wake_channel, queue)))
        chunk: list[str] = []
        size = 0
        for line in self._event_lines(tx):
            if size + len(line) > NOTIFY_CHUNK and chunk:
                await conn.execute(select(func.pg_notify(self._event_channel, "\n".join(chunk))))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        if chunk:
            await conn.execute(select(func.pg_notify(self._event_channel, "\n".join(chunk))))

    def _event_lines(self, tx: rules.Tx) -> list[str]:
        return [f"{i}|{s}|{t}|{q}|{tx.now}" for i, s, t, q in tx.events]

    def _announce(self, tx: rules.Tx) -> None:
        """After commit: wake this process's waiters at once (and feed SQLite's event stream)."""
        if tx.wakes:
            self._signal.wake()
        if not self._postgres and tx.events:
            self._signal.publish("\n".join(self._event_lines(tx)))

    async def _listen(self) -> None:
        """A dedicated LISTEN connection; reconnects forever; every notification wakes waiters."""
        import psycopg

        dsn = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    dsn, autocommit=True, application_name=f"conveyor:{self._namespace}"
                ) as conn:
                    await conn.execute(f'LISTEN "{self._wake_channel}"')
                    self._signal.wake()  # anything sent while disconnected: look again
                    async for _ in conn.notifies():
                        self._signal.wake()
            except (psycopg.Error, OSError) as exc:
                log.warning("LISTEN connection lost, reconnecting: %s", exc)
                await asyncio.sleep(0.5)

    # --- producing and working ----------------------------------------------------

    async def enqueue(self, jobs: Sequence[JobSpec], *, connection: Any = None) -> None:
        for spec in jobs:
            if spec.parent_id or spec.predecessor_id:
                raise ValueError("only a running job declares children and heirs")
        if not jobs:
            return

        if self._postgres:
            await self._pg_enqueue(jobs, connection)
            return
        if connection is not None:
            raise ConfigurationError("enqueue(connection=...) needs the PostgreSQL backend")

        async def body(tx: rules.Tx) -> None:
            rows = [rules.spec_row(spec, "held", tx.now) for spec in jobs]
            await rules.insert_jobs(tx, rows)
            ids = [spec.id for spec in jobs]
            jt = self._t.jobs
            await rules.release(tx, and_(jt.c.id.in_(ids), jt.c.state == "held"))

        await self._tx(body)

    async def _pg_enqueue(self, jobs: Sequence[JobSpec], connection: Any) -> None:
        """One statement, one round trip; in the caller's transaction when ``connection``.

        It runs on the driver connection itself: for this hot path SQLAlchemy's
        execution layer cost as much as the round trip.
        """
        import psycopg

        now = time.time()
        params = enqueue_params(jobs, now, wake=self._wake_channel, events=self._event_channel)
        statement = enqueue_statement(self._namespace)
        if connection is not None:
            # Transactional enqueue: the caller's transaction decides whether the jobs exist.
            if not isinstance(connection, AsyncConnection):
                raise ConfigurationError(
                    "connection must be a SQLAlchemy AsyncConnection with a transaction open, "
                    f"not {type(connection).__name__}"
                )
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            try:
                await driver.execute(statement, params)
            except psycopg.Error as exc:
                raise self._driver_error(exc) from exc
            return
        for attempt in range(3):
            async with self._autocommit.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                try:
                    await driver.execute(statement, params)
                    break
                except psycopg.OperationalError as exc:
                    await conn.invalidate()  # never hand a dead connection back to the pool
                    if attempt == 2 or not driver.closed:
                        raise self._driver_error(exc) from exc
                    # A pooled connection had died; ON CONFLICT makes the re-run harmless.
                except psycopg.Error as exc:
                    raise self._driver_error(exc) from exc
        self._signal.wake()

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
        jt = self._t.jobs

        async def body(tx: rules.Tx) -> list[Claimed]:
            # Promoting due jobs costs a statement; a few times a second is plenty
            # (maintenance promotes too, and a waiting claim wakes when one is due).
            if tx.now - self._promoted_at >= PROMOTE_EVERY:
                self._promoted_at = tx.now
                await rules.promote_due(tx, MAINTENANCE_BATCH)
            pick = (
                select(jt.c.id)
                .where(jt.c.state == "queued", jt.c.queue.in_(list(queues)))
                .order_by(jt.c.priority.desc(), jt.c.id)
                .limit(limit)
            )
            if self._postgres:
                # Concurrent workers skip each other's rows instead of waiting on them.
                pick = pick.with_for_update(skip_locked=True)
            stmt = (
                update(jt)
                .where(jt.c.id.in_(pick.scalar_subquery()))
                .values(
                    state="running",
                    attempt=jt.c.attempt + 1,
                    lease_token=jt.c.lease_token + 1,
                    lease_expires=tx.now + lease,
                    worker_id=worker_id,
                    started_at=tx.now,
                )
                .returning(*jt.c)
            )
            rows = sorted((await tx.conn.execute(stmt)).all(), key=lambda r: (-r.priority, r.id))
            claimed = []
            for row in rows:
                tx.event(row.id, "running", row.type, row.queue)
                try:
                    job = job_of_row(row)
                except PayloadDecodeError as exc:
                    # A row other software garbled fails here, in this transaction:
                    # raising would undo the claim of every job, again on every claim.
                    log.error("%s", exc)
                    error = f"stored job is not a valid Conveyor job: {exc.__cause__!r}"
                    await rules.fail(tx, rules.Rec(row._mapping), error)
                    continue
                claimed.append(Claimed(job, Lease(row.id, row.lease_token)))
            await self._count(tx)
            return claimed

        if self._postgres and self._listener is None:
            # Only a claiming process listens: a producer's own LISTEN connection would be
            # woken by every job it enqueues. The listener wakes waiters once LISTEN is on,
            # so a job enqueued before that is not missed.
            self._listener = asyncio.create_task(self._listen(), name="conveyor-listen")
        deadline = time.monotonic() + wait
        while True:
            waiter = self._signal.waiter()  # before looking, so no wake-up is missed
            try:
                claimed, _ = await take_or_hand_back(self._take(body), self)
                remaining = deadline - time.monotonic()
                if claimed or remaining <= 0:
                    return claimed
                due = await self._next_due()
                if due is not None:
                    remaining = min(remaining, max(due - time.time(), 0.0) + 0.001)
                if not self._postgres:
                    remaining = min(remaining, SQLITE_POLL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter[1].wait(), remaining)
            finally:
                self._signal.forget(waiter)

    async def _take(
        self, body: Callable[[rules.Tx], Awaitable[list[Claimed]]]
    ) -> tuple[list[Claimed], None]:
        return await self._tx(body), None

    async def _next_due(self) -> float | None:
        jt = self._t.jobs

        async def body(conn: AsyncConnection) -> float | None:
            stmt = select(func.min(jt.c.run_at)).where(jt.c.state == "scheduled")
            value = (await conn.execute(stmt)).scalar()
            return float(value) if value is not None else None

        return await self._read(body)

    async def stage(self, lease: Lease, declarations: Sequence[JobSpec]) -> None:
        if not declarations:
            return

        async def body(tx: rules.Tx) -> None:
            row = (await rules.lock(tx, [lease.job_id])).get(lease.job_id)
            if not rules.holds(row, lease):
                raise LeaseLost(lease.job_id)
            await rules.insert_jobs(
                tx, [rules.spec_row(s, "held", tx.now, lease.job_id) for s in declarations]
            )

        await self._tx(body)

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []

        async def body(tx: rules.Tx) -> list[bool]:
            rows = await rules.lock(tx, [o.lease.job_id for o in outcomes])
            accepted = [rules.holds(rows.get(o.lease.job_id), o.lease) for o in outcomes]
            held = [
                (o, rows[o.lease.job_id]) for o, ok in zip(outcomes, accepted, strict=True) if ok
            ]
            # Outcomes never touch another running job (cascades reach only waiting
            # parents and held heirs), so the rows read above stay current.
            leaves = [r for o, r in held if isinstance(o, Success) and not o.declarations]
            declaring = {r.id for r in await rules.succeed_leaves(tx, leaves)}
            for outcome, row in held:
                match outcome:
                    case Success(declarations=declarations):
                        if declarations or row.id in declaring:
                            await rules.succeed(tx, row, declarations)
                    case Retry(error=error, retry_at=retry_at):
                        await rules.retry_later(tx, row, error, retry_at)
                    case Failure(error=error):
                        await rules.fail(tx, row, error)
                    case Release():
                        await rules.requeue(tx, row)
            await self._count(tx)
            return accepted

        return await self._tx(body)

    @property
    def _upsert(self) -> Callable[[Table], Any]:
        """The dialect's ``INSERT`` with ``ON CONFLICT`` clauses."""
        if self._postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert

    async def _count(self, tx: rules.Tx) -> None:
        """Add this transaction's successes, retries and failures to the minute's counters."""
        if not tx.counts:
            return
        minute = int(tx.now // 60)
        totals = [0, 0, 0]
        rows: list[tuple[str, list[int]]] = []
        for key, cells in tx.counts.items():
            if key:  # '' is the totals' row: a job whose type is '' counts only there
                rows.append((key, cells))
            if not key.startswith(rules.QUEUE_KEY):
                totals = [a + b for a, b in zip(totals, cells, strict=True)]
        rows.append(("", totals))
        ct = self._t.counters
        upsert = self._upsert
        values = [
            {"minute": minute, "type": name, "succeeded": s, "retried": r, "failed": f}
            for name, (s, r, f) in rows
        ]
        # One statement for every type touched.
        stmt = upsert(ct).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[ct.c.minute, ct.c.type],
            set_={
                "succeeded": ct.c.succeeded + stmt.excluded.succeeded,
                "retried": ct.c.retried + stmt.excluded.retried,
                "failed": ct.c.failed + stmt.excluded.failed,
            },
        )
        await tx.conn.execute(stmt)
        tx.counts.clear()

    async def renew(self, leases: Sequence[Lease], lease: float) -> list[Lease]:
        if not leases:
            return []
        jt = self._t.jobs

        async def body(tx: rules.Tx) -> set[str]:
            match = rules.leases_match(tx, leases)
            if not self._postgres:
                stmt = update(jt).where(match).values(lease_expires=tx.now + lease)
                return set((await tx.conn.execute(stmt.returning(jt.c.id))).scalars().all())
            # A row another transaction has locked (this worker's own settle of a finished
            # job, most often) is skipped, not waited for: a heartbeat stuck behind a slow
            # settle would let every other lease of this worker lapse. The next beat renews
            # it if it is still running. Lost are only the leases that no longer match.
            mine = select(jt.c.id).where(match).with_for_update(skip_locked=True)
            stmt = update(jt).where(jt.c.id.in_(mine.scalar_subquery()))
            await tx.conn.execute(stmt.values(lease_expires=tx.now + lease))
            return set((await tx.conn.execute(select(jt.c.id).where(match))).scalars().all())

        held = await self._tx(body)
        return [lease_ for lease_ in leases if lease_.job_id not in held]

    async def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        wt = self._t.workers
        data = info.to_dict()

        async def body(tx: rules.Tx) -> None:
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
            seen = self._upsert(self._t.worker_minutes).values(
                minute=int(tx.now // 60), worker_id=info.id
            )
            await tx.conn.execute(seen.on_conflict_do_nothing())

        await self._tx(body)

    async def remove_worker(self, worker_id: str) -> None:
        wt = self._t.workers

        async def body(tx: rules.Tx) -> None:
            await tx.conn.execute(delete(wt).where(wt.c.id == worker_id))

        await self._tx(body)

    async def maintain(self) -> MaintenanceReport:
        jt = self._t.jobs

        async def body(tx: rules.Tx) -> MaintenanceReport:
            promoted = await rules.promote_due(tx, MAINTENANCE_BATCH)
            expired = (
                select(jt)
                .where(jt.c.state == "running", jt.c.lease_expires <= tx.now)
                .order_by(jt.c.id)
                .limit(MAINTENANCE_BATCH)
            )
            if self._postgres:
                expired = expired.with_for_update(skip_locked=True)
            recovered = 0
            lost: list[str] = []
            for row in (await tx.conn.execute(expired)).all():
                count = row.lost_count + 1
                if count > self._max_lost:
                    lost.append(row.id)
                    await tx.conn.execute(
                        update(jt).where(jt.c.id == row.id).values(lost_count=count)
                    )
                    await rules.fail(
                        tx,
                        rules.Rec(row._mapping).replace(lost_count=count),
                        f"worker lost: lease expired {count} times",
                    )
                else:
                    recovered += 1
                    await rules.requeue(tx, rules.Rec(row._mapping), lost_count=count)
            await self._count(tx)
            old = (
                select(jt.c.id)
                .where(jt.c.state.in_(SETTLED), jt.c.finished_at <= tx.now - self._retention)
                .limit(MAINTENANCE_BATCH)
            )
            gone = await tx.conn.execute(
                delete(jt)
                .where(jt.c.id.in_(old.scalar_subquery()))
                .returning(jt.c.queue, jt.c.state)
            )
            pruned = self._unsettle_deleted(tx, gone.all())
            await self._fold_settled(tx)
            wt, wm = self._t.workers, self._t.worker_minutes
            await tx.conn.execute(delete(wt).where(wt.c.expires_at <= tx.now))
            await tx.conn.execute(
                delete(wm).where(wm.c.minute < int(tx.now // 60) - WORKER_MINUTES_KEPT)
            )
            return MaintenanceReport(promoted, recovered, lost, pruned or 0)

        return await self._tx(body)

    # --- steering -------------------------------------------------------------------

    async def cancel(self, job_id: str, reason: str = "cancelled") -> Job:
        jt = self._t.jobs

        async def body(tx: rules.Tx) -> Job:
            row = (await rules.lock(tx, [job_id])).get(job_id)
            if row is None:
                raise JobNotFound(job_id)
            if row.state in SETTLED:
                raise InvalidState(job_id, row.state, "cancel", "it has already settled")
            if row.state == "held":
                declarer = (await rules.lock(tx, [row.declared_by])).get(row.declared_by or "")
                if row.predecessor_id is None or (declarer and declarer.state == "running"):
                    raise InvalidState(
                        job_id,
                        row.state,
                        "cancel",
                        "it is a declaration of an attempt still running; "
                        "cancel the job that declared it",
                    )
                # A held heir counts in no parent yet: it settles on its own.
                await rules.set_state(tx, row, "cancelled", finished_at=tx.now, reason=reason)
            else:
                await rules.cancel_below(tx, row)
                if row.state == "running":  # a waiting job's held rows are its heirs: keep them
                    await rules.discard_staged(tx, row.id)
                await rules.settle(tx, row, "cancelled", reason=reason)
            await self._count(tx)
            final = (await tx.conn.execute(select(jt).where(jt.c.id == job_id))).one()
            return job_of_row(final)

        return await self._tx(body)

    async def discard(self, job_id: str) -> Job:
        jt = self._t.jobs
        # The family below: a settled job's children, theirs, and so on (heirs
        # released into it are children too); all settled before it did.
        below = select(jt.c.id).where(jt.c.id == job_id).cte("below", recursive=True)
        below = below.union_all(select(jt.c.id).where(jt.c.parent_id == below.c.id))

        async def body(tx: rules.Tx) -> Job:
            row = (await rules.lock(tx, [job_id])).get(job_id)
            if row is None:
                raise JobNotFound(job_id)
            if row.state not in SETTLED:
                raise InvalidState(job_id, row.state, "discard", "it has not settled")
            job = job_of_row((await tx.conn.execute(select(jt).where(jt.c.id == job_id))).one())
            gone = await tx.conn.execute(
                delete(jt).where(jt.c.id.in_(select(below.c.id))).returning(jt.c.queue, jt.c.state)
            )
            self._unsettle_deleted(tx, gone.all())
            return job

        return await self._tx(body)

    async def retry(self, job_id: str) -> Job:
        jt = self._t.jobs

        async def body(tx: rules.Tx) -> Job:
            row = (await rules.lock(tx, [job_id])).get(job_id)
            if row is None:
                raise JobNotFound(job_id)
            if row.state not in ("failed", "cancelled"):
                raise InvalidState(job_id, row.state, "retry", "only failed or cancelled jobs")
            family = await tx.conn.execute(
                select(func.count())
                .select_from(jt)
                .where(or_(jt.c.parent_id == job_id, jt.c.predecessor_id == job_id))
            )
            if row.parent_id or row.predecessor_id or family.scalar():
                raise InvalidState(
                    job_id,
                    row.state,
                    "retry",
                    "it belongs to a family; family repair is not supported yet",
                )
            await tx.conn.execute(
                update(jt)
                .where(jt.c.id == job_id)
                .values(
                    attempt=0,
                    lost_count=0,
                    failed_ids=None,
                    reason=None,
                    failed_child_id=None,
                    finished_at=None,
                    run_at=None,
                )
            )
            tx.unsettle(row.queue, row.state)
            await rules.release(tx, jt.c.id == job_id)
            final = (await tx.conn.execute(select(jt).where(jt.c.id == job_id))).one()
            return job_of_row(final)

        return await self._tx(body)

    # --- inspecting -----------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        jt = self._t.jobs

        async def body(conn: AsyncConnection) -> Job | None:
            row = (await conn.execute(select(jt).where(jt.c.id == job_id))).first()
            return job_of_row(row) if row is not None else None

        return await self._read(body)

    async def list_jobs(
        self, filter: JobFilter, *, after: str | None = None, limit: int = 50
    ) -> JobPage:
        jt = self._t.jobs
        stmt = select(jt).order_by(jt.c.id.desc()).limit(limit + 1)
        if filter.state is not None:
            stmt = stmt.where(jt.c.state == filter.state.value)
        if filter.queue is not None:
            stmt = stmt.where(jt.c.queue == filter.queue)
        if filter.type is not None:
            stmt = stmt.where(jt.c.type == filter.type)
        if filter.id_prefix:
            stmt = stmt.where(jt.c.id.startswith(filter.id_prefix, autoescape=True))
        if filter.retrying:
            stmt = stmt.where(jt.c.attempt > 0)
        if after is not None:
            stmt = stmt.where(jt.c.id < after)

        async def body(conn: AsyncConnection) -> JobPage:
            rows = (await conn.execute(stmt)).all()
            jobs = [job_of_row(r) for r in rows[:limit]]
            return JobPage(jobs, jobs[-1].id if len(rows) > limit else None)

        return await self._read(body)

    async def family(self, job_id: str) -> list[Job]:
        jt = self._t.jobs
        stmt = (
            select(jt)
            .where(
                or_(
                    jt.c.parent_id == job_id,
                    jt.c.predecessor_id == job_id,
                    and_(jt.c.declared_by == job_id, jt.c.state == "held"),
                )
            )
            .order_by(jt.c.id)
        )

        async def body(conn: AsyncConnection) -> list[Job]:
            return [job_of_row(r) for r in (await conn.execute(stmt)).all()]

        return await self._read(body)

    async def queue_stats(self) -> list[QueueStats]:
        jt, ledger = self._t.jobs, self._t.settled_counts
        # Open jobs are counted where they are (few, through the state index);
        # settled ones, however many, from the ledger.
        open_jobs = (
            select(jt.c.queue, jt.c.state, func.count())
            .where(jt.c.state.in_(OPEN))  # IN, not NOT IN: ranges of the state index
            .group_by(jt.c.queue, jt.c.state)
        )
        settled = select(ledger.c.queue, ledger.c.state, func.sum(ledger.c.n)).group_by(
            ledger.c.queue, ledger.c.state
        )

        async def body(conn: AsyncConnection) -> list[QueueStats]:
            counts: dict[str, dict[JobState, int]] = {}
            for stmt in (open_jobs, settled):
                for queue, state, number in (await conn.execute(stmt)).all():
                    if number:
                        counts.setdefault(queue, {})[JobState(state)] = int(number)
            return [QueueStats(q, c) for q, c in sorted(counts.items())]

        return await self._read(body)

    async def workers(self) -> list[WorkerInfo]:
        wt = self._t.workers
        stmt = select(wt).where(wt.c.expires_at > time.time()).order_by(wt.c.id)

        async def body(conn: AsyncConnection) -> list[WorkerInfo]:
            rows = (await conn.execute(stmt)).all()
            return [WorkerInfo.from_dict(row.info, row.last_seen) for row in rows]

        return await self._read(body)

    async def counters(
        self, minutes: int = 60, type: str | None = None, queue: str | None = None
    ) -> list[MinuteCount]:
        ct = self._t.counters
        last = int(time.time() // 60)
        first = last - minutes + 1
        key = rules.QUEUE_KEY + queue if queue is not None else type or ""
        stmt = select(ct).where(ct.c.minute >= first, ct.c.type == key)
        wm = self._t.worker_minutes
        seen = select(wm.c.minute, func.count()).where(wm.c.minute >= first).group_by(wm.c.minute)

        async def body(conn: AsyncConnection) -> list[MinuteCount]:
            found = {row.minute: row for row in (await conn.execute(stmt)).all()}
            workers: dict[int, int] = {}
            if type is None and queue is None:
                workers = {int(row[0]): int(row[1]) for row in (await conn.execute(seen)).all()}
            result = []
            for minute in range(first, last + 1):
                row = found.get(minute)
                stamp = datetime.fromtimestamp(minute * 60, UTC)
                seen_workers = workers.get(minute, 0)
                if row is None:
                    result.append(MinuteCount(stamp, workers=seen_workers))
                else:
                    result.append(
                        MinuteCount(stamp, row.succeeded, row.retried, row.failed, seen_workers)
                    )
            return result

        return await self._read(body)

    async def events(self) -> AsyncIterator[JobEvent]:
        if self._postgres:
            async for event_ in self._pg_events():
                yield event_
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue(10_000)

        def deliver(payload: str) -> None:
            def put() -> None:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(payload)

            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(put)

        stop = self._signal.listen(deliver)
        try:
            while True:
                for event_ in _parse_events(await queue.get()):
                    yield event_
        finally:
            stop()

    async def _pg_events(self) -> AsyncIterator[JobEvent]:
        import psycopg

        dsn = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with self._translated():
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:
            await conn.execute(f'LISTEN "{self._event_channel}"')
            async for note in conn.notifies():
                for event_ in _parse_events(note.payload):
                    yield event_
        finally:
            await conn.close()

    async def publish_types(self, sets: Mapping[str, bytes]) -> None:
        tt = self._t.types

        async def body(tx: rules.Tx) -> None:
            # One statement per type: workers starting together publish the same types.
            for name, data in sorted(sets.items()):
                stmt = self._upsert(tt).values(name=name, descriptor_set=data)
                await tx.conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[tt.c.name],
                        set_={"descriptor_set": stmt.excluded.descriptor_set},
                    )
                )

        if sets:
            await self._tx(body)

    async def descriptor_sets(self) -> dict[str, bytes]:
        tt = self._t.types

        async def body(conn: AsyncConnection) -> dict[str, bytes]:
            rows = (await conn.execute(select(tt))).all()
            return {row.name: bytes(row.descriptor_set) for row in rows}

        return await self._read(body)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self._engine.dispose()


def _parse_events(payload: str) -> list[JobEvent]:
    found = []
    for line in payload.split("\n"):
        if not line:
            continue
        job_id, state, type_name, rest = line.split("|", 3)
        queue, _, at = rest.rpartition("|")  # a queue name may hold '|'
        found.append(JobEvent(job_id, type_name, queue, JobState(state), float(at)))
    return found


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _sqlite_setup(engine: AsyncEngine) -> None:
    """WAL mode, a busy timeout, and ``BEGIN IMMEDIATE`` for writers so they queue, not fail."""

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        # The timeout first: switching to WAL takes a lock, and a new connection
        # opened while another process writes must wait for it, not fail.
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        # Writers queue for the lock at BEGIN instead of failing on upgrade;
        # readers take a plain deferred BEGIN and never block in WAL mode.
        write = conn.get_execution_options().get("conveyor_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
