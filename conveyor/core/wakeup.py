"""Waking idle workers: LISTEN/NOTIFY on PostgreSQL, in-process signals on SQLite.

Notifications only wake workers; the claim's wait is bounded, so a missed
signal costs at most one poll interval, never a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("conveyor.sql")


class LocalSignal:
    """Wakes every waiter of one process, whichever event loop it waits on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._listeners: set[Callable[[str], None]] = set()

    def waiter(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(entry)
        return entry

    def forget(self, entry: tuple[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
        with self._lock:
            self._waiters.discard(entry)

    def listen(self, listener: Callable[[str], None]) -> Callable[[], None]:
        with self._lock:
            self._listeners.add(listener)

        def stop() -> None:
            with self._lock:
                self._listeners.discard(listener)

        return stop

    def wake(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)

    def publish(self, payload: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(payload)


_signals: dict[str, LocalSignal] = {}
_signals_lock = threading.Lock()


def local_signal(key: str) -> LocalSignal:
    """The process-wide signal for one database and namespace."""
    with _signals_lock:
        found = _signals.get(key)
        if found is None:
            found = _signals[key] = LocalSignal()
        return found
