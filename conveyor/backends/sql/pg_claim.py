"""PostgreSQL claim in one statement, for queues without controls.

A claim in a transaction costs BEGIN, a read of the queues' controls, the
``UPDATE … RETURNING``, the events ``NOTIFY`` and COMMIT: five round trips,
while an idle worker re-claims after every job it takes. This statement does
the same in one autocommit round trip:

- it claims only when none of the queues is paused or limited (rule 14); when
  one is, it claims nothing and says so, and the caller claims in a
  transaction that reads and locks the controls;
- it picks and claims as the transaction does (rule 10's order, ``SKIP
  LOCKED``, rule 6's lease and fencing token);
- it sends the claimed jobs' events, delivered at once (autocommit);
- when it claims nothing it answers the next scheduled job's due time, which a
  waiting claim needs next.

Reading the controls in the same statement as the claim is what a transaction
would give: a pause committed after the statement's snapshot orders after the
claim, as a pause committed after a transaction's claim does.
"""

from __future__ import annotations

from typing import Any

from .pg_enqueue import event_notes


def claim_statement(schema: str) -> str:
    """The statement in psycopg's ``%(name)s`` style: it runs on the driver connection.

    It answers at least one row: the claimed jobs' columns (all null when none
    was claimed), ``controlled`` (queues with controls, so nothing was claimed),
    ``due`` (the earliest scheduled run time, asked only when none was claimed)
    and ``notified`` (which makes the server send the notifications: a ``WITH``
    query nobody reads is not run).
    """
    jobs, queues = f'"{schema}".jobs', f'"{schema}".queues'
    return f"""
        WITH controlled AS (
            SELECT count(*) AS n FROM {queues}
            WHERE name = ANY(CAST(%(queues)s AS text[]))
              AND (paused OR max_running IS NOT NULL OR rate IS NOT NULL)
        ), picked AS (
            SELECT id FROM {jobs}
            WHERE state = 'queued' AND queue = ANY(CAST(%(queues)s AS text[]))
              AND (SELECT n FROM controlled) = 0
            ORDER BY priority DESC, ready_at, id
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE {jobs} AS j
            SET state = 'running', attempt = j.attempt + 1, lease_token = j.lease_token + 1,
                lease_expires = %(expires)s, worker_id = %(worker)s, started_at = %(now)s
            FROM picked WHERE j.id = picked.id
            RETURNING j.*
        ), {event_notes("claimed", "'running'")}, answer AS (
            SELECT (SELECT n FROM controlled) AS controlled,
                   (SELECT count(*) FROM notified) AS notified,
                   CASE WHEN NOT EXISTS (SELECT 1 FROM claimed)
                        THEN (SELECT min(run_at) FROM {jobs} WHERE state = 'scheduled')
                   END AS due
        )
        SELECT claimed.*, answer.controlled, answer.notified, answer.due
        FROM answer LEFT JOIN claimed ON true
        """


def claim_params(
    worker_id: str, queues: list[str], limit: int, lease: float, now: float, *, events: str
) -> dict[str, Any]:
    return {
        "queues": queues,
        "limit": limit,
        "expires": now + lease,
        "worker": worker_id,
        "now": now,
        "stamp": repr(now),
        "events": events,
    }
