"""Counting the SQL backend's statements and transactions in-process (SQLAlchemy events).

``SQLCounter.attach(storage)`` listens on the engine of an open ``SQLStorage`` (the
harness's client, or the worker process's storage): every statement SQLAlchemy sends
(``before_cursor_execute``; an ``executemany`` counts once, its rows separately), every
COMMIT and ROLLBACK, every statement run in autocommit (its own transaction), and every pool
checkout (the engine has ``pool_pre_ping=True``, so
each checkout also sends a ``SELECT 1`` that bypasses the statement events). psycopg's
implicit ``BEGIN`` is not visible here; the wire census (``bench.pgwire``) sees it.

Only the harness's view: a counter increment per event, nothing else.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

TABLES = ("schema_version", "counters", "workers", "types", "jobs")
_NAME = r'([\w."]+)'


def _table(name: str) -> str:
    """``"bench_x".jobs`` or ``bench_x_jobs`` -> ``jobs``."""
    bare = name.replace('"', "").rsplit(".", 1)[-1]
    for table in TABLES:
        if bare == table or bare.endswith("_" + table):
            return table
    return bare


def classify(sql: str) -> str:
    """A short label for a statement: its verb, its table and what sets it apart."""
    text = " ".join(sql.split())
    upper = text.upper()
    if not upper:
        return "empty"
    if upper in ("SELECT 1", "SELECT 1;"):
        return "SELECT 1 (pool pre-ping)"
    # The library's one-statement paths (pg_enqueue, pg_claim, pg_settle), by their
    # first data-modifying step.
    first_step = upper.partition(" AS (")[2][:40]
    if upper.startswith("WITH") and "INSERT INTO" in first_step:
        return "enqueue (one statement)"
    if upper.startswith("WITH CONTROLLED AS ("):
        return "claim (one statement)"
    if upper.startswith("WITH O AS (") and "DONE AS (" in upper:
        return "settle (one statement)"
    if "PG_NOTIFY" in upper:
        return "SELECT pg_notify"
    verb = upper.split(" ", 1)[0]
    if verb == "SELECT":
        found = re.search(r"\bFROM " + _NAME, text, re.IGNORECASE)
        label = f"SELECT {_table(found.group(1))}" if found else "SELECT"
        if "FOR UPDATE" in upper:
            label += " FOR UPDATE"
        if "COUNT(" in upper or "MIN(" in upper or "MAX(" in upper or "SUM(" in upper:
            label += " (aggregate)"
        return label
    if verb == "INSERT":
        found = re.search(r"\bINTO " + _NAME, text, re.IGNORECASE)
        label = f"INSERT {_table(found.group(1))}" if found else "INSERT"
        return label + (" ON CONFLICT" if "ON CONFLICT" in upper else "")
    if verb == "UPDATE":
        found = re.match(r"UPDATE " + _NAME, text, re.IGNORECASE)
        return f"UPDATE {_table(found.group(1))}" if found else "UPDATE"
    if verb == "DELETE":
        found = re.search(r"\bFROM " + _NAME, text, re.IGNORECASE)
        return f"DELETE {_table(found.group(1))}" if found else "DELETE"
    if verb in ("BEGIN", "COMMIT", "ROLLBACK", "LISTEN", "PRAGMA"):
        return " ".join(upper.split(" ", 2)[:2]) if verb == "BEGIN" else verb
    return verb


class SQLCounter:
    """Statement, transaction and checkout counts of one engine."""

    def __init__(self) -> None:
        self.statements: Counter[str] = Counter()
        self.executemany_rows = 0
        self.commits = 0
        self.rollbacks = 0
        self.autocommits = 0
        self.checkouts = 0
        self._attached = False

    def attach(self, storage: Any) -> SQLCounter:
        """Listen on ``storage``'s engine (a ``SQLStorage``; anything else is ignored)."""
        from sqlalchemy import event

        engine = getattr(storage, "_engine", None)
        if engine is None or self._attached:
            return self
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._on_execute)
        event.listen(sync, "commit", self._on_commit)
        event.listen(sync, "rollback", self._on_rollback)
        event.listen(sync.pool, "checkout", self._on_checkout)
        self._attached = True
        return self

    def _on_execute(
        self, conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        self.statements[classify(statement)] += 1
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            self.autocommits += 1
        if many and isinstance(params, list | tuple):
            self.executemany_rows += len(params)

    def _on_commit(self, _conn: Any) -> None:
        self.commits += 1

    def _on_rollback(self, _conn: Any) -> None:
        self.rollbacks += 1

    def _on_checkout(self, *_args: Any) -> None:
        self.checkouts += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "statements": dict(self.statements),
            "executemany_rows": self.executemany_rows,
            "commits": self.commits,
            "rollbacks": self.rollbacks,
            "autocommits": self.autocommits,
            "checkouts": self.checkouts,
        }


COUNTS = ("executemany_rows", "commits", "rollbacks", "autocommits", "checkouts")


def delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """``after - before`` of two ``snapshot()``s."""
    statements = Counter(after["statements"])
    statements.subtract(before["statements"])
    out: dict[str, Any] = {"statements": {k: v for k, v in sorted(statements.items()) if v}}
    for key in COUNTS:
        out[key] = after.get(key, 0) - before.get(key, 0)
    return out


def add(*deltas: Mapping[str, Any] | None) -> dict[str, Any]:
    """The sum of several deltas (the producer's and the worker's)."""
    total: dict[str, Any] = {"statements": Counter(), **dict.fromkeys(COUNTS, 0)}
    for d in deltas:
        if not d:
            continue
        total["statements"].update(d["statements"])
        for key in COUNTS:
            total[key] += d.get(key, 0)
    total["statements"] = dict(sorted(total["statements"].items()))
    return total


def per_job(counts: Mapping[str, Any], jobs: int) -> dict[str, Any]:
    """Counts per job: statements SQLAlchemy sent, transactions (COMMIT, ROLLBACK and
    autocommit statements), and pre-pings."""
    per = float(jobs) if jobs else 1.0
    statements = dict(counts["statements"])
    sent = sum(statements.values())
    autocommits = counts.get("autocommits", 0)
    return {
        "jobs": jobs,
        "statements_per_job": sent / per,
        "transactions_per_job": (counts["commits"] + counts["rollbacks"] + autocommits) / per,
        "autocommit_statements_per_job": autocommits / per,
        "commits_per_job": counts["commits"] / per,
        "rollbacks_per_job": counts["rollbacks"] / per,
        "pre_pings_per_job": counts["checkouts"] / per,
        "executemany_rows_per_job": counts["executemany_rows"] / per,
        "statements": {
            k: v / per for k, v in sorted(statements.items(), key=lambda kv: (-kv[1], kv[0]))
        },
        "raw": dict(counts),
    }
