"""Storage backends, one sub-package each, picked by URL scheme.

See ``conveyor.core.backend_registry`` for the table of schemes, and
``docs/rules.md`` for the rules every backend carries out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # The type checker proves here that each backend satisfies the Storage
    # protocol (and its factory): a missing or changed method fails mypy.
    from conveyor.core.storage import Storage, StorageFactory, TransactionalEnqueue

    from .memory import MemoryStorage
    from .redis import RedisStorage
    from .sql import SQLStorage

    def _storages(
        memory: MemoryStorage, redis: RedisStorage, sql: SQLStorage
    ) -> tuple[Storage, Storage, Storage, TransactionalEnqueue]:
        return memory, redis, sql, sql

    _FACTORIES: tuple[type[StorageFactory], ...] = (MemoryStorage, RedisStorage, SQLStorage)
