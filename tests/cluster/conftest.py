"""The cluster's own tests run only in the cluster session (``nox -s cluster``, where
``CONVEYOR_TEST_BACKENDS=redis_cluster``): elsewhere they are not collected, since the
cluster is a server that session starts."""

from __future__ import annotations

from tests.conftest import selected_backends

collect_ignore_glob = [] if "redis_cluster" in selected_backends() else ["test_*.py"]
