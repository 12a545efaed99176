"""SAQ on PostgreSQL: ``saq_peer``'s adapter (see there) on SAQ's ``PostgresQueue``.

Enqueue: ``Queue.enqueue``, one ``INSERT ... ON CONFLICT`` and a ``NOTIFY`` per job (no
batch enqueue). ``open`` calls ``Queue.connect``, which opens SAQ's connection pool and
creates its tables (``saq_jobs``, ``saq_stats``, ``saq_versions``) in the fresh database.
``queued`` counts the ``saq_jobs`` rows with status ``queued`` (``Queue.count("queued")``).

Default worker: ``python -m saq bench.peers.saq_postgres_peer.settings``, SAQ's ``Worker``
with its defaults (``concurrency=10``; it waits for jobs on ``LISTEN``, SAQ's default
``poll_interval=0``). Tuned: ``tuned_settings``, ``concurrency=100``: the fastest W2 drain
of 10,000 no-op jobs in one process among 10, 20, 50, 100, 200 and 400 (~440-480 jobs/s
against ~370 at 10 and ~400-430 at 50 on a busy 2-core machine; 200 and 400 no faster).
SAQ's pool keeps at most 20 connections whatever the concurrency. Fan-in: none, as on
Redis.
"""

from __future__ import annotations

from typing import Any

from .saq_peer import SAQPeer, noop

__all__ = ["PEER", "noop", "settings", "tuned_settings"]


class SAQPostgresPeer(SAQPeer):
    name = "saq_postgres"
    backend = "postgres"
    tuned_concurrency = 100


PEER = SAQPostgresPeer()


def settings() -> dict[str, Any]:
    """The default worker's settings: SAQ's CLI calls a callable it is given."""
    return PEER.worker_settings(tuned=False)


def tuned_settings() -> dict[str, Any]:
    """The tuned worker's settings."""
    return PEER.worker_settings(tuned=True)
