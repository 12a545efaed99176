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
                                 max_attempts, timeout, headers, created_at, ready_at, backoff,
                                 plan)
            SELECT id, type, queue, payload, state, priority, run_at, max_attempts, timeout,
                   CAST(headers AS json), CAST(%(now)s AS float8), CAST(%(now)s AS float8),
                   backoff, plan
            FROM unnest(CAST(%(ids)s AS text[]), CAST(%(types)s AS text[]),
                        CAST(%(queues)s AS text[]), CAST(%(payloads)s AS bytea[]),
                        CAST(%(states)s AS text[]),
                        CAST(%(priorities)s AS int[]), CAST(%(run_ats)s AS float8[]),
                        CAST(%(max_attempts)s AS int[]), CAST(%(timeouts)s AS float8[]),
                        CAST(%(headers)s AS text[]), CAST(%(backoffs)s AS text[]),
                        CAST(%(plans)s AS bytea[]))
                 AS t(id, type, queue, payload, state, priority, run_at, max_attempts, timeout,
                      headers, backoff, plan)
            ON CONFLICT (id) DO NOTHING
            RETURNING id, state, type, queue
        ), {event_notes("ins", "state")}
        SELECT pg_notify(%(wake)s, queue) FROM (SELECT DISTINCT queue FROM ins
                                             WHERE state = 'queued') AS woken
        UNION ALL
        SELECT * FROM notified
        """


def event_notes(source: str, state: str) -> str:
    """Three queries of a ``WITH`` (``lines``, ``chunks``, ``notified``): each row of
    ``source`` (its ``id``, ``type`` and ``queue``) as an event line in ``state`` (an
    SQL expression), NOTIFYed on ``%(events)s`` in payloads of at most about
    NOTIFY_CHUNK bytes, stamped ``%(stamp)s``. The statement must read ``notified``:
    a ``WITH`` query nobody reads is not run."""
    return f"""lines AS (
            -- JobEvent.to_line's format: id|state|at|type|queue
            SELECT id || '|' || {state} || '|' || %(stamp)s || '|' || type || '|' || queue
                   AS line, id
            FROM {source}
        ), chunks AS (
            SELECT line, sum(length(line) + 1) OVER (ORDER BY id) / {NOTIFY_CHUNK} AS chunk
            FROM lines
        ), notified AS (
            SELECT pg_notify(%(events)s, string_agg(line, E'\\n')) FROM chunks GROUP BY chunk
        )"""


def single_enqueue_statement(schema: str, *, keyed: bool) -> str:
    """One job in one statement: a ``VALUES`` row costs the server less than the
    arrays of ``enqueue_statement`` (measured: about 15% more jobs a second, one at
    a time). It answers with the job's id, and ``NULL`` when it was skipped.

    With ``keyed`` (rule 15), it takes the job's unique key if the key is free or
    expired, inserts the job only if it took it, and answers with the id that took
    the key, else the live holder the statement's snapshot sees. Only the key row's
    own columns decide a take: ``ON CONFLICT`` reads the row's latest version, but a
    subquery would read the statement's snapshot, in which a holder committed a
    moment ago is missing. So both answers are null when the holder is not visible
    (a racing enqueue committed after the snapshot) or is gone: the caller then asks
    again in a transaction that locks the key's row.
    """
    keys, jobs = f'"{schema}".job_keys', f'"{schema}".jobs'
    taken = f"""
        taken AS (
            INSERT INTO {keys} AS k (queue, key, job_id, expires_at)
            VALUES (%(queue)s, %(key)s, %(id)s, NULL)
            ON CONFLICT (queue, key) DO UPDATE SET job_id = EXCLUDED.job_id, expires_at = NULL
            WHERE k.expires_at IS NOT NULL AND k.expires_at <= %(now)s
            RETURNING k.job_id
        ),"""
    holder = f"""(SELECT k.job_id FROM {keys} k JOIN {jobs} j ON j.id = k.job_id
                WHERE k.queue = %(queue)s AND k.key = %(key)s
                  AND (k.expires_at IS NULL OR k.expires_at > %(now)s))"""
    return f"""
        WITH {taken if keyed else ""} ins AS (
            INSERT INTO {jobs} (id, type, queue, payload, state, priority, run_at, max_attempts,
                                timeout, headers, created_at, ready_at, backoff, plan,
                                unique_key, key_ttl)
            SELECT %(id)s, %(type)s, %(queue)s, %(payload)s, %(state)s, %(priority)s,
                   %(run_at)s, %(max_attempts)s, %(timeout)s, CAST(%(headers)s AS json),
                   %(now)s, %(now)s, %(backoff)s, %(plan)s, %(key)s, %(key_ttl)s
            {"FROM taken" if keyed else ""}
            ON CONFLICT (id) DO NOTHING
            RETURNING id, state, type, queue
        ), notified AS (
            SELECT pg_notify(%(wake)s, queue) FROM ins WHERE state = 'queued'
            UNION ALL
            -- JobEvent.to_line's format: id|state|at|type|queue
            SELECT pg_notify(%(events)s,
                             id || '|' || state || '|' || %(stamp)s || '|' || type || '|' || queue)
            FROM ins
        )
        SELECT {"(SELECT job_id FROM taken)" if keyed else "(SELECT id FROM ins)"},
               {holder if keyed else "NULL"},
               (SELECT count(*) FROM notified)
        """


def single_enqueue_params(spec: JobSpec, now: float, *, wake: str, events: str) -> dict[str, Any]:
    params = enqueue_params([spec], now, wake=wake, events=events)
    one = {name: params[plural][0] for name, plural in _SINGULAR.items()}
    return {
        **{k: params[k] for k in ("now", "stamp", "wake", "events")},
        **one,
        "key": spec.key,
        "key_ttl": spec.key_ttl,
    }


# enqueue_params' array names, by the name keyed_enqueue_statement gives one value.
_SINGULAR = {
    "id": "ids",
    "type": "types",
    "queue": "queues",
    "payload": "payloads",
    "state": "states",
    "priority": "priorities",
    "run_at": "run_ats",
    "max_attempts": "max_attempts",
    "timeout": "timeouts",
    "headers": "headers",
    "backoff": "backoffs",
    "plan": "plans",
}


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
        "plans": [s.plan for s in specs],
    }
