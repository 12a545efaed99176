"""Waking waiters inside one process, whichever thread or event loop they wait on.

The memory backend and the SQL backend (SQLite wholly, PostgreSQL for its own
process besides LISTEN/NOTIFY) use these to wake a blocked claim when work
arrives and to feed event streams. A wake-up only shortens a wait: every wait
is bounded, so a missed signal costs at most one poll interval, never a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Event]

#: Items an event stream buffers for a slow reader before it drops new ones.
STREAM_BUFFER = 10_000


class LocalSignal:
    """Wakes every waiter of one process, and delivers payloads to listeners."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[Waiter] = set()
        self._listeners: set[Callable[[str], None]] = set()

    def waiter(self) -> Waiter:
        """Register a waiter on the running loop; ``forget`` it when done."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(entry)
        return entry

    def forget(self, entry: Waiter) -> None:
        with self._lock:
            self._waiters.discard(entry)

    def listen(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener`` with every published payload; returns the unsubscribe call."""
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
    """The process-wide signal for one store (e.g. a database URL and namespace)."""
    with _signals_lock:
        found = _signals.get(key)
        if found is None:
            found = _signals[key] = LocalSignal()
        return found


def earliest(*times: float | None) -> float | None:
    """The earliest of the times given, ``None`` when none is."""
    known = [t for t in times if t is not None]
    return min(known) if known else None


async def wait_for_work(
    signal: LocalSignal,
    take: Callable[[], Awaitable[list[T]]],
    next_due: Callable[[], Awaitable[float | None]],
    wait: float,
    poll: float | None = None,
) -> list[T]:
    """Take work, or wait up to ``wait`` seconds for a wake-up and take again.

    The waiter is registered before each look, so a wake-up between the look
    and the wait is not missed. The wait also ends when the next scheduled job
    is due, and every ``poll`` seconds when other processes' work cannot wake
    this one.
    """
    deadline = time.monotonic() + wait
    while True:
        waiter = signal.waiter()
        try:
            taken = await take()
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                return taken
            due = await next_due()
            if due is not None:
                remaining = min(remaining, max(due - time.time(), 0.0) + 0.001)
            if poll is not None:
                remaining = min(remaining, poll)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter[1].wait(), remaining)
        finally:
            signal.forget(waiter)


async def stream(
    subscribe: Callable[[Callable[[T], None]], Callable[[], None]],
) -> AsyncIterator[T]:
    """Items delivered to a listener from any thread, as an async iterator on this loop.

    ``subscribe(deliver)`` registers ``deliver`` and returns the call that
    unregisters it. A reader that falls ``STREAM_BUFFER`` items behind loses
    the newest ones rather than growing without bound.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[T] = asyncio.Queue(STREAM_BUFFER)

    def deliver(item: T) -> None:
        def put() -> None:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(item)

        with contextlib.suppress(RuntimeError):  # this loop has closed
            loop.call_soon_threadsafe(put)

    stop = subscribe(deliver)
    try:
        while True:
            yield await queue.get()
    finally:
        stop()
