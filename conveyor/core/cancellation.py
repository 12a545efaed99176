"""``ctx.cancelled``: the flag that tells a running handler to stop."""

from __future__ import annotations

import asyncio
import contextlib
import threading

#: Why an attempt was told to stop (``Cancellation.reason``).
CANCELLED = "the job was cancelled"
LEASE_LOST = "its lease was lost"
STOPPING = "the worker is stopping"


class Cancellation:
    """Set when the attempt should stop: the job was cancelled, the worker lost its
    lease, or the worker is stopping and its shutdown timeout is over.

    An async handler is also cancelled (``asyncio.CancelledError`` at its next
    ``await``); a sync handler runs on in its thread, so it polls ``is_set()`` (or
    sleeps with ``wait_blocking``) and returns early. Whatever the attempt does
    after this is set is dropped: storage has moved on (``reason`` says why).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._flag = threading.Event()
        self._event = asyncio.Event()
        self.reason: str | None = None

    def is_set(self) -> bool:
        return self._flag.is_set()

    def __bool__(self) -> bool:
        return self._flag.is_set()

    async def wait(self) -> None:
        """Return once the attempt is told to stop (from an async handler)."""
        await self._event.wait()

    def wait_blocking(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds, waking when told to stop (from a sync
        handler's thread); returns whether it was."""
        return self._flag.wait(timeout)

    def _set(self, reason: str) -> None:
        """Tell the attempt to stop; from the worker's loop, or any thread."""
        if self._flag.is_set():
            return
        self.reason = reason
        self._flag.set()
        with contextlib.suppress(RuntimeError):  # that loop has closed
            self._loop.call_soon_threadsafe(self._event.set)


__all__ = ["Cancellation"]
