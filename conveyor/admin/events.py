"""Live updates: one storage event stream per admin, fanned out to every open page.

A busy installation changes thousands of jobs a second; pages need to know
only that something changed, and which jobs. The hub gathers events and
sends each subscriber at most one ``Tick`` per interval, with the ids that
changed (up to a cap, past which the tick just says "everything").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field

from conveyor.core.storage import Storage

log = logging.getLogger("conveyor.admin")

TICK_INTERVAL = 1.0
MAX_IDS = 200


@dataclass(slots=True)
class Tick:
    """What changed since the last tick."""

    ids: set[str] = field(default_factory=set)
    everything: bool = False

    def add(self, job_id: str) -> None:
        if self.everything:
            return
        self.ids.add(job_id)
        if len(self.ids) > MAX_IDS:
            self.everything, self.ids = True, set()

    def merge(self, other: Tick) -> None:
        if other.everything:
            self.everything, self.ids = True, set()
        for job_id in other.ids:
            self.add(job_id)

    def to_dict(self) -> dict[str, object]:
        return {"ids": sorted(self.ids), "all": self.everything}


class EventHub:
    """Reads the storage's events while anyone listens; stops when nobody does."""

    def __init__(
        self, storage: Callable[[], Awaitable[Storage]], interval: float = TICK_INTERVAL
    ) -> None:
        self._storage = storage
        self._interval = interval
        self._subscribers: set[asyncio.Queue[Tick]] = set()
        self._pending = Tick()
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        """Forget a pump that belonged to another event loop."""
        self._task, self._changed, self._subscribers = None, None, set()

    async def subscribe(self) -> AsyncGenerator[Tick, None]:
        """Ticks until the caller stops iterating."""
        inbox: asyncio.Queue[Tick] = asyncio.Queue(maxsize=1)
        self._subscribers.add(inbox)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._pump(), name="conveyor-admin-events")
        try:
            while True:
                yield await inbox.get()
        finally:
            self._subscribers.discard(inbox)
            if not self._subscribers and self._task is not None:
                self._task.cancel()
                self._task = None

    async def _pump(self) -> None:
        storage = await self._storage()
        self._changed = asyncio.Event()
        flusher = asyncio.create_task(self._flush_every_interval())
        try:
            async for event in storage.events():
                self._pending.add(event.job_id)
                self._changed.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # the page keeps working, only without live updates
            log.exception("the admin's event stream stopped")
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher

    async def _flush_every_interval(self) -> None:
        assert self._changed is not None
        while True:
            await self._changed.wait()
            await asyncio.sleep(self._interval)
            self._changed.clear()
            tick, self._pending = self._pending, Tick()
            for inbox in list(self._subscribers):
                if inbox.full():  # a slow page gets one merged tick, not a backlog
                    tick_for = inbox.get_nowait()
                    tick_for.merge(tick)
                    inbox.put_nowait(tick_for)
                else:
                    inbox.put_nowait(Tick(set(tick.ids), tick.everything))

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
