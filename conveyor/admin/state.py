"""What one admin instance holds: its storage, its type registry, its event hub."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from google.protobuf.message import Message

from conveyor.core.backend_registry import open_storage
from conveyor.core.config import Config
from conveyor.core.storage import Storage
from conveyor.core.type_registry import TypeRegistry

from .events import EventHub

REGISTRY_TTL = 10.0  # seconds before newly published descriptor sets are read again


class AdminState:
    """One admin's connection to its store; no globals, so two admins can share a process.

    The storage opens on first use, in the event loop that serves the request,
    and opens again if the app is later served from another loop (a test
    client starts one per run).
    """

    def __init__(self, config: Config, types: Iterable[type[Message]] = ()) -> None:
        self.config = config
        self._types = tuple(types)
        self._storage: Storage | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._registry: TypeRegistry | None = None
        self._registry_at = 0.0
        self.hub = EventHub(self.storage)

    async def storage(self) -> Storage:
        loop = asyncio.get_running_loop()
        if self._storage is None or self._loop is not loop:
            # Opening is idempotent enough that two first requests racing to it
            # only cost one spare connection, closed at once.
            storage = await open_storage(self.config)
            if self._storage is not None and self._loop is loop:
                await storage.aclose()
            else:
                if self._storage is not None:  # left behind by a loop that has ended
                    self.hub.reset()
                self._storage, self._loop = storage, loop
        assert self._storage is not None
        return self._storage

    async def registry(self, *, fresh: bool = False) -> TypeRegistry:
        """Published descriptor sets plus ``types=``, read again every few seconds."""
        now = time.monotonic()
        if fresh or self._registry is None or now - self._registry_at > REGISTRY_TTL:
            sets = await (await self.storage()).descriptor_sets()
            self._registry = TypeRegistry(sets, self._types)
            self._registry_at = now
        return self._registry

    async def aclose(self) -> None:
        await self.hub.aclose()
        storage, self._storage, self._loop = self._storage, None, None
        if storage is not None:
            await storage.aclose()
