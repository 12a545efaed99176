"""Fresh namespaces for property examples, one backend at a time.

Function-scoped fixtures are shared by every Hypothesis example of a test, so
the property tests take a ``Namespaces`` factory (the ``namespaces`` fixture)
and make a fresh namespace, a fresh store, for each example, dropping it right
after.
"""

from __future__ import annotations

import uuid

import conveyor
from conveyor.backends.memory import drop_store
from tests.conftest import drop_postgres_schema, drop_redis_namespace
from tests.support import FAST_BACKOFF


class Namespaces:
    """Makes a ``Config`` with a namespace of its own on one backend, and drops it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._open: set[str] = set()

    def config(self) -> conveyor.Config:
        namespace = f"p_{uuid.uuid4().hex[:16]}"
        self._open.add(namespace)
        return conveyor.Config(url=self.url, namespace=namespace, backoff=FAST_BACKOFF)

    def drop(self, config: conveyor.Config) -> None:
        """Forget everything stored under the config's namespace."""
        self._open.discard(config.namespace)
        if config.scheme == "memory":
            drop_store(config.url, config.namespace)
        elif config.scheme in ("redis", "rediss", "unix", "redis+cluster"):
            drop_redis_namespace(config.url, config.namespace)
        elif config.scheme.startswith("postgresql"):
            drop_postgres_schema(config.namespace)
        # sqlite: the test's database file goes with its fixture.

    def drop_all(self) -> None:
        for namespace in list(self._open):
            self.drop(conveyor.Config(url=self.url, namespace=namespace))
