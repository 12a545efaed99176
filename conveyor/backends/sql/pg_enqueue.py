"""PostgreSQL enqueue in one statement, so that a single job costs one round trip.

The rows go in as arrays (``unnest``), ``ON CONFLICT DO NOTHING`` makes a
retried call harmless, and the same statement sends the wake-up and event
notifications, which PostgreSQL delivers when the statement's transaction
commits: in autocommit, at once; inside a caller's transaction, on its commit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from conveyor.core.job import JobSpec

#: Event lines are grouped into NOTIFY payloads of at most about this many bytes
#: (the server refuses payloads of 8000 bytes or more); ``SQLStorage`` does the same.
NOTIFY_CHUNK = 7000


def enqueue_statement(schema: str) -> str:
    """The statement in psycopg's ``%(name)s`` style: it runs on the driver connection."""
    table = f'"{schema}".jobs'
    return f"""
        WITH ins AS (
            INSERT INTO {table} (id, type, queue, payload, state, priority, run_at,
                                 max_attempts, timeout, headers, created_at, ready_at, backoff)
            SELECT id, type, queue, payload, state, priority, run_at, max_attempts, timeout,
                   CAST(headers AS json), CAST(%(now)s AS float8), CAST(%(now)s AS float8),
                   backoff
            FROM unnest(CAST(%(ids)s AS text[]), CAST(%(types)s AS text[]),
                        CAST(%(queues)s AS text[]), CAST(%(payloads)s AS bytea[]),
                        CAST(%(states)s AS text[]),
                        CAST(%(priorities)s AS int[]), CAST(%(run_ats)s AS float8[]),
                        CAST(%(max_attempts)s AS int[]), CAST(%(timeouts)s AS float8[]),
                        CAST(%(headers)s AS text[]), CAST(%(backoffs)s AS text[]))
                 AS t(id, type, queue, payload, state, priority, run_at, max_attempts, timeout,
                      headers, backoff)
            ON CONFLICT (id) DO NOTHING
            RETURNING id, state, type, queue
        ), lines AS (
            -- JobEvent.to_line's format: id|state|at|type|queue
            SELECT id || '|' || state || '|' || %(stamp)s || '|' || type || '|' || queue AS line,
                   id
            FROM ins
        ), chunks AS (
            SELECT line, sum(length(line) + 1) OVER (ORDER BY id) / {NOTIFY_CHUNK} AS chunk
            FROM lines
        )
        SELECT pg_notify(%(wake)s, queue) FROM (SELECT DISTINCT queue FROM ins
                                             WHERE state = 'queued') AS woken
        UNION ALL
        SELECT pg_notify(%(events)s, string_agg(line, E'\\n')) FROM chunks GROUP BY chunk
        """


def enqueue_params(
    specs: Sequence[JobSpec], now: float, *, wake: str, events: str
) -> dict[str, Any]:
    return {
        "now": now,
        "stamp": repr(now),
        "wake": wake,
        "events": events,
        "ids": [s.id for s in specs],
        "types": [s.type for s in specs],
        "queues": [s.queue for s in specs],
        "payloads": [s.payload for s in specs],
        "states": [
            "scheduled" if s.run_at is not None and s.run_at > now else "queued" for s in specs
        ],
        "priorities": [s.priority for s in specs],
        "run_ats": [s.run_at for s in specs],
        "max_attempts": [s.max_attempts for s in specs],
        "timeouts": [s.timeout for s in specs],
        "headers": [json.dumps(dict(s.headers)) if s.headers else None for s in specs],
        "backoffs": [s.backoff.to_text() if s.backoff else None for s in specs],
    }
