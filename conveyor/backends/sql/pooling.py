"""PostgreSQL behind a transaction-pooling PgBouncer: Conveyor's own URL options.

    postgresql+psycopg://app@pgbouncer:6432/app?pooler=pgbouncer&direct=db:5432

``pooler=pgbouncer`` says that a connection is a server session only for the length of
one transaction. Every statement Conveyor runs is then sent unprepared (psycopg would
otherwise prepare a statement run five times on a session, and the next transaction may
run on a server session that never saw it). Conveyor's transactions and its schema lock
(``pg_advisory_xact_lock``) are transaction-scoped, so they work as they are.

LISTEN is not: a notification reaches only the server session that listened, and the
pooler hands that session to someone else after each transaction. ``direct=host:port``
names where the same database answers without the pooler (same user, password and
database); the one LISTEN connection of a worker process goes there. Without it,
workers find new jobs and cancellations by polling every ``POLL`` seconds, as on SQLite.

The options are read and removed here, before the URL reaches SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from conveyor.core.config import mask_url
from conveyor.core.errors import ConfigurationError

POOLERS = ("pgbouncer",)
#: Seconds between looks for new jobs and cancellations when no notification can come.
POLL = 0.5


@dataclass(frozen=True, slots=True)
class Pooling:
    """What a PostgreSQL URL says about a pooler in front of the server."""

    pooler: str | None = None
    direct: tuple[str, int] | None = None
    """Host and port of the server itself, for LISTEN."""


NO_POOLER = Pooling()


def split_pooling(url: str) -> tuple[str, Pooling]:
    """The URL without Conveyor's pooling options, and those options.

    Raises:
        ConfigurationError: an unknown pooler, a ``direct`` that is not host:port, or
            ``direct`` without ``pooler``.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    found = {name: value for name, value in query if name in ("pooler", "direct")}
    if not found:
        return url, NO_POOLER
    rest = urlencode([(name, value) for name, value in query if name not in found])
    pooler = found.get("pooler")
    if pooler not in POOLERS:
        raise ConfigurationError(
            f"bad database URL {mask_url(url)!r}: pooler={pooler or ''!r} is not one of "
            f"{', '.join(POOLERS)} (direct= is for a URL through a pooler)"
        )
    direct = None
    if "direct" in found:
        try:
            node = urlsplit("//" + found["direct"])
            host, port = node.hostname, node.port or 5432
        except ValueError:
            host = None
        if not host:
            raise ConfigurationError(
                f"bad database URL {mask_url(url)!r}: direct={found['direct']!r} is not host:port"
            )
        direct = (host, port)
    return urlunsplit(parts._replace(query=rest)), Pooling(pooler, direct)
