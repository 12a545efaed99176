"""PostgreSQL settle in one statement, for successes with nothing to cascade.

Recording outcomes in a transaction costs BEGIN, the rows' lock, a look for
staged declarations, the update, the counters, the settled-count ledger, the
events ``NOTIFY`` and COMMIT: eight round trips a batch. Most successes cascade
no further than a count: no staged declarations to release (rule 1), no unique
key to free (rule 15), no failed descendants to pass up, and either no parent
or a parent that stays open after counting them down (rule 5). This statement
settles exactly those in one autocommit round trip, as the transaction's bulk
path (``transitions._succeed_leaves``) does:

- it takes only jobs whose attempt still holds the lease (rule 6), locked in id
  order, then their parents, in id order, like every transaction;
- it counts each parent down once for all its children in the batch, and only
  a parent that stays open: the child that closes a family is the
  transaction's, which settles the parent and walks on up;
- it stores each handler's result (only when it returned one);
- it counts them in the minute's counters (their type, their queue, the totals,
  in key order, as ``tallies.add_counts`` does) and in the settled-count ledger;
- it sends their events, delivered at once.

It answers the ids it settled; every other outcome of the batch is the
transaction's to record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.core.storage import Success

from ._tx import QUEUE_KEY
from .pg_enqueue import event_notes


def settle_statement(schema: str) -> str:
    """The statement in psycopg's ``%(name)s`` style: it runs on the driver connection.
    It answers one row: the settled ids, and the notifications sent (which makes
    the server send them: a ``WITH`` query nobody reads is not run)."""
    jobs, counters = f'"{schema}".jobs', f'"{schema}".counters'
    ledger = f'"{schema}".settled_counts'
    return f"""
        WITH o AS (
            SELECT * FROM unnest(CAST(%(ids)s AS text[]), CAST(%(tokens)s AS bigint[]),
                                 CAST(%(results)s AS bytea[]), CAST(%(result_types)s AS text[]))
                 AS o(id, token, result, result_type)
        ), simple AS (
            SELECT j.id, j.parent_id FROM {jobs} j JOIN o ON j.id = o.id
            WHERE j.state = 'running' AND j.lease_token = o.token
              AND j.unique_key IS NULL AND j.failed_ids IS NULL AND j.open_children = 0
              AND NOT EXISTS (SELECT 1 FROM {jobs} d WHERE d.declared_by = j.id
                                                       AND d.state = 'held')
            ORDER BY j.id
            FOR UPDATE OF j
        ), siblings AS (
            SELECT parent_id AS id, count(*) AS n FROM simple
            WHERE parent_id IS NOT NULL GROUP BY parent_id
        ), parents AS (
            SELECT p.id, siblings.n FROM {jobs} p JOIN siblings ON p.id = siblings.id
            WHERE p.open_children > siblings.n
              AND p.state NOT IN ('succeeded', 'failed', 'cancelled')
            ORDER BY p.id
            FOR UPDATE OF p
        ), counted_down AS (
            UPDATE {jobs} AS p SET open_children = p.open_children - parents.n
            FROM parents WHERE p.id = parents.id
        ), leaves AS (
            SELECT id FROM simple
            WHERE parent_id IS NULL OR parent_id IN (SELECT id FROM parents)
        ), done AS (
            UPDATE {jobs} AS j
            SET state = 'succeeded', finished_at = %(now)s, worker_id = NULL,
                lease_expires = NULL, result = coalesce(o.result, j.result),
                result_type = CASE WHEN o.result IS NULL THEN j.result_type
                                   ELSE o.result_type END
            FROM leaves JOIN o ON o.id = leaves.id
            WHERE j.id = leaves.id
            RETURNING j.id, j.type, j.queue
        ), counted AS (
            -- tallies.add_counts: a row per type ('' counts only in the totals), per
            -- queue, and the totals; in key order, as the transactions upsert them
            INSERT INTO {counters} (minute, type, succeeded, retried, failed, repaired)
            SELECT %(minute)s, k, count(*), 0, 0, 0 FROM (
                SELECT type AS k FROM done WHERE type <> ''
                UNION ALL SELECT '{QUEUE_KEY}' || queue FROM done
                UNION ALL SELECT '' FROM done
            ) AS keys GROUP BY k ORDER BY k
            ON CONFLICT (minute, type)
            DO UPDATE SET succeeded = {counters}.succeeded + EXCLUDED.succeeded
        ), ledgered AS (
            INSERT INTO {ledger} (queue, state, n)
            SELECT queue, 'succeeded', count(*) FROM done GROUP BY queue
        ), {event_notes("done", "'succeeded'")}
        SELECT ARRAY(SELECT id FROM done), (SELECT count(*) FROM notified)
        """


def settle_params(successes: Sequence[Success], now: float, *, events: str) -> dict[str, Any]:
    return {
        "ids": [s.lease.job_id for s in successes],
        "tokens": [s.lease.token for s in successes],
        "results": [s.result for s in successes],
        "result_types": [s.result_type for s in successes],
        "now": now,
        "minute": int(now // 60),
        "stamp": repr(now),
        "events": events,
    }
