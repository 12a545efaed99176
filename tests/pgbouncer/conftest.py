"""PgBouncer's own tests run only in its session (``nox -s pgbouncer``, where
``CONVEYOR_TEST_BACKENDS=pgbouncer``): elsewhere they are not collected, since the pooler
is a server that session starts."""

from __future__ import annotations

from tests.conftest import selected_backends

collect_ignore_glob = [] if "pgbouncer" in selected_backends() else ["test_*.py"]
