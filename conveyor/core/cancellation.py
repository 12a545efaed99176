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
        self._told = False
        # Made when a handler first waits: most attempts never do, and a worker
        # makes one of these per job (a threading.Event is a Condition and two locks).
        self._flag: threading.Event | None = None
        self._event: asyncio.Event | None = None
        self.reason: str | None = None

    def is_set(self) -> bool:
        return self._told

    def __bool__(self) -> bool:
        return self._told

    async def wait(self) -> None:
        """Return once the attempt is told to stop (from an async handler)."""
        with _MAKING:
            if self._told:
                return
            if self._event is None:
                self._event = asyncio.Event()
            event = self._event
        await event.wait()

    def wait_blocking(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds, waking when told to stop (from a sync
        handler's thread); returns whether it was."""
        with _MAKING:
            if self._flag is None:
                self._flag = threading.Event()
                if self._told:
                    self._flag.set()
            flag = self._flag
        return flag.wait(timeout)

    def _set(self, reason: str) -> None:
        """Tell the attempt to stop; from the worker's loop, or any thread."""
        with _MAKING:
            if self._told:
                return
            self.reason = reason
            self._told = True
            flag, event = self._flag, self._event
        if flag is not None:
            flag.set()
        if event is not None:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                self._loop.call_soon_threadsafe(event.set)


#: Guards the lazy making of the waits against a ``_set`` from another thread: a
#: waiter either sees the flag set or leaves a wait that ``_set`` will find.
_MAKING = threading.Lock()


__all__ = ["Cancellation"]
