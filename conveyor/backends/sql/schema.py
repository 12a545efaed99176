"""The SQL schema, built per namespace: a PostgreSQL schema, or a table prefix on SQLite.

Times are epoch seconds (double precision), as in every backend; ids are the
canonical UUIDv7 text, so ordering by id is ordering by creation.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

SETTLED = ("succeeded", "failed", "cancelled")
OPEN = ("held", "scheduled", "queued", "running", "waiting")


#: The family indexes by column, named without the namespace's prefix.
FAMILY_INDEXES = {
    "parent_id": "jobs_parent",
    "predecessor_id": "jobs_predecessor",
    "declared_by": "jobs_declared",
}


@dataclass(frozen=True)
class Tables:
    """The tables of one namespace."""

    metadata: MetaData
    jobs: Table
    counters: Table
    workers: Table
    types: Table
    version: Table
    worker_minutes: Table
    settled_counts: Table
    queues: Table
    job_keys: Table


def build_tables(namespace: str, *, postgres: bool) -> Tables:
    """Tables for ``namespace``: in its own schema on PostgreSQL, prefixed on SQLite."""
    schema = namespace if postgres else None
    prefix = "" if postgres else f"{namespace}_"
    metadata = MetaData(schema=schema)
    jobs = Table(
        f"{prefix}jobs",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("type", Text, nullable=False),
        Column("queue", Text, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("state", String(10), nullable=False),
        Column("priority", Integer, nullable=False, server_default="0"),
        Column("run_at", Float),
        # When it last became queued (or scheduled): rule 10's ready order.
        Column("ready_at", Float),
        Column("max_attempts", Integer, nullable=False),
        Column("attempt", Integer, nullable=False, server_default="0"),
        Column("timeout", Float),
        Column("headers", JSON),
        Column("parent_id", String(36)),
        Column("predecessor_id", String(36)),
        Column("heir_when", String(10)),
        Column("optional", Boolean, nullable=False, server_default=text("false")),
        Column("declared_by", String(36)),
        Column("last_error", Text),
        Column("created_at", Float, nullable=False),
        Column("started_at", Float),
        Column("finished_at", Float),
        Column("lease_token", BigInteger, nullable=False, server_default="0"),
        Column("lease_expires", Float),
        Column("worker_id", Text),
        Column("lost_count", Integer, nullable=False, server_default="0"),
        Column("open_children", Integer, nullable=False, server_default="0"),
        Column("failed_ids", Text),
        Column("reason", Text),
        Column("failed_child_id", String(36)),
        Column("predecessor_state", String(10)),
        Column("predecessor_failed_ids", Text),
        # What the handler returned, serialized, and its message type (rule 1).
        Column("result", LargeBinary),
        Column("result_type", Text),
        # The job's own back-off, as Backoff.to_text() (null: its handler's or the config's).
        Column("backoff", Text),
        # Rule 15: a top-level job's unique key in its queue, and how long it outlives it.
        Column("unique_key", Text),
        Column("key_ttl", Float),
        # Rule 6: the last progress an attempt reported, as Progress.to_text().
        Column("progress", Text),
        # The members a producer declared for it (core/plan.py), staged by each attempt.
        Column("plan", LargeBinary),
        # A declaration's top-level job (its family's root); null for top-level jobs.
        Column("root_id", String(36)),
    )
    # The claim: the longest ready of the highest priority among a queue's queued jobs.
    Index(
        f"{prefix}jobs_ready",
        jobs.c.queue,
        jobs.c.priority.desc(),
        jobs.c.ready_at,
        jobs.c.id,
        postgresql_where=jobs.c.state == "queued",
        sqlite_where=jobs.c.state == "queued",
    )
    # Promotion of due scheduled jobs, and the next due time.
    Index(
        f"{prefix}jobs_due",
        jobs.c.run_at,
        postgresql_where=jobs.c.state == "scheduled",
        sqlite_where=jobs.c.state == "scheduled",
    )
    # Recovery of expired leases.
    Index(
        f"{prefix}jobs_leases",
        jobs.c.lease_expires,
        postgresql_where=jobs.c.state == "running",
        sqlite_where=jobs.c.state == "running",
    )
    # Families: a parent's children, a predecessor's heirs, an attempt's declarations.
    # Only jobs that have one are indexed: a top-level job, most jobs, then adds no
    # entry to these on insert nor on each change of state (every lookup is by value,
    # which implies the column is not null, so the planners still use them).
    for column in (jobs.c.parent_id, jobs.c.predecessor_id, jobs.c.declared_by):
        Index(
            f"{prefix}{FAMILY_INDEXES[column.name]}",
            column,
            postgresql_where=column.is_not(None),
            sqlite_where=column.is_not(None),
        )
    # Listings by state (and queue), newest first with keyset pagination, and counts.
    Index(f"{prefix}jobs_state", jobs.c.state, jobs.c.id)
    Index(f"{prefix}jobs_queue_state", jobs.c.queue, jobs.c.state, jobs.c.id)
    # Pruning settled jobs past retention.
    Index(
        f"{prefix}jobs_finished",
        jobs.c.finished_at,
        postgresql_where=jobs.c.state.in_(SETTLED),
        sqlite_where=jobs.c.state.in_(SETTLED),
    )
    counters = Table(
        f"{prefix}counters",
        metadata,
        Column("minute", BigInteger, primary_key=True),
        Column("type", Text, primary_key=True),  # '' holds the totals
        Column("succeeded", BigInteger, nullable=False, server_default="0"),
        Column("retried", BigInteger, nullable=False, server_default="0"),
        Column("failed", BigInteger, nullable=False, server_default="0"),
        Column("repaired", BigInteger, nullable=False, server_default="0"),
    )
    workers = Table(
        f"{prefix}workers",
        metadata,
        Column("id", Text, primary_key=True),
        Column("info", JSON, nullable=False),
        Column("last_seen", Float, nullable=False),
        Column("expires_at", Float, nullable=False, index=True),
    )
    types = Table(
        f"{prefix}types",
        metadata,
        Column("name", Text, primary_key=True),
        Column("descriptor_set", LargeBinary, nullable=False),
    )
    version = Table(
        f"{prefix}schema_version",
        metadata,
        Column("version", Integer, primary_key=True),
        Column("applied_at", Float, nullable=False),
    )
    # Distinct workers that reported in each minute (the admin's workers chart).
    worker_minutes = Table(
        f"{prefix}worker_minutes",
        metadata,
        Column("minute", BigInteger, primary_key=True),
        Column("worker_id", Text, primary_key=True),
    )
    # Settled jobs per queue and state, as a ledger of deltas: each transaction
    # that settles, retries or deletes settled jobs appends one row per
    # (queue, state) it changed (no row is updated, so writers never contend),
    # and maintenance folds the rows into one per (queue, state). Counting a
    # million settled jobs is then a sum over a few rows, not a scan.
    settled_counts = Table(
        f"{prefix}settled_counts",
        metadata,
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("queue", Text, nullable=False),
        Column("state", String(10), nullable=False),
        Column("n", BigInteger, nullable=False),
    )
    # Queue controls (docs/rules.md rule 14): a row only for a queue that has one.
    # A claim locks the rows of the limited queues it takes from, so that claims
    # racing on one queue count its running jobs and spend its tokens one at a time.
    queues = Table(
        f"{prefix}queues",
        metadata,
        Column("name", Text, primary_key=True),
        Column("paused", Boolean, nullable=False, server_default=text("false")),
        Column("max_running", Integer),
        Column("rate", Integer),
        Column("per", Float),
        Column("tokens", Float),
        Column("refilled_at", Float),
    )
    # Rule 15: who holds each (queue, key); ``expires_at`` is null while the holder is
    # open, and when it settled plus its key_ttl after (maintenance deletes the expired).
    job_keys = Table(
        f"{prefix}job_keys",
        metadata,
        Column("queue", Text, primary_key=True),
        Column("key", Text, primary_key=True),
        Column("job_id", String(36), nullable=False),
        Column("expires_at", Float, index=True),
    )
    return Tables(
        metadata,
        jobs,
        counters,
        workers,
        types,
        version,
        worker_minutes,
        settled_counts,
        queues,
        job_keys,
    )
