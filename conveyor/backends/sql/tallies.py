"""Counts kept beside the jobs: per-minute counters and the settled-count ledger.

Both are written inside the transaction whose changes they count, so they can
never disagree with the jobs table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, delete, func, insert, select

from ._tx import QUEUE_KEY, Tx


def upsert(postgres: bool) -> Callable[[Table], Any]:
    """The dialect's ``INSERT`` with ``ON CONFLICT`` clauses."""
    if postgres:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


async def add_counts(tx: Tx) -> None:
    """Add this transaction's successes, retries, failures and repairs to the minute's
    counters."""
    if not tx.counts:
        return
    minute = int(tx.now // 60)
    totals = [0, 0, 0, 0]
    rows: list[tuple[str, list[int]]] = []
    for key, cells in tx.counts.items():
        if key:  # '' is the totals' row: a job whose type is '' counts only there
            rows.append((key, cells))
        if not key.startswith(QUEUE_KEY):
            totals = [a + b for a, b in zip(totals, cells, strict=True)]
    rows.append(("", totals))
    # In key order, as the one-statement settle (pg_settle) upserts them: two
    # settles racing on the same rows then lock them in the same order.
    rows.sort()
    ct = tx.t.counters
    values = [
        {"minute": minute, "type": name, "succeeded": s, "retried": r, "failed": f, "repaired": x}
        for name, (s, r, f, x) in rows
    ]
    # One statement for every type touched.
    stmt = upsert(tx.postgres)(ct).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[ct.c.minute, ct.c.type],
        set_={
            "succeeded": ct.c.succeeded + stmt.excluded.succeeded,
            "retried": ct.c.retried + stmt.excluded.retried,
            "failed": ct.c.failed + stmt.excluded.failed,
            "repaired": ct.c.repaired + stmt.excluded.repaired,
        },
    )
    await tx.conn.execute(stmt)
    tx.counts.clear()


def unsettle_deleted(tx: Tx, rows: Sequence[Any]) -> int:
    """Take deleted settled jobs, as (queue, state) rows, out of the ledger; returns how many."""
    for queue, state in rows:
        tx.unsettle(queue, state)
    return len(rows)


async def append_settled(tx: Tx) -> None:
    """Append this transaction's changes to the settled-count ledger."""
    rows = [
        {"queue": queue, "state": state, "n": n} for (queue, state), n in tx.settled.items() if n
    ]
    if rows:
        await tx.conn.execute(insert(tx.t.settled_counts), rows)


async def fold_settled(tx: Tx) -> None:
    """Fold the ledger into one row per (queue, state), in one statement."""
    ledger = tx.t.settled_counts
    if tx.postgres:
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
