"""``ctx.cancelled``: its waits are made only when a handler waits, and a ``_set``
from any thread, before or after, reaches every kind of waiter."""

from __future__ import annotations

import asyncio
import threading

from conveyor.core.cancellation import CANCELLED, LEASE_LOST, Cancellation


async def test_told_before_anyone_waits_both_waits_return_at_once() -> None:
    flag = Cancellation(asyncio.get_running_loop())
    assert not flag and not flag.is_set() and flag.reason is None
    flag._set(CANCELLED)
    flag._set(LEASE_LOST)  # the first reason stays
    assert flag and flag.is_set() and flag.reason == CANCELLED
    await asyncio.wait_for(flag.wait(), timeout=1)
    assert await asyncio.to_thread(flag.wait_blocking, 5) is True


async def test_an_async_waiter_wakes_when_told_from_another_thread() -> None:
    flag = Cancellation(asyncio.get_running_loop())
    waiter = asyncio.create_task(flag.wait())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    threading.Thread(target=flag._set, args=(LEASE_LOST,)).start()
    await asyncio.wait_for(waiter, timeout=2)
    assert flag.reason == LEASE_LOST


async def test_a_thread_waiting_wakes_when_told_from_the_loop() -> None:
    flag = Cancellation(asyncio.get_running_loop())
    assert await asyncio.to_thread(flag.wait_blocking, 0.01) is False  # timed out
    sleeper = asyncio.create_task(asyncio.to_thread(flag.wait_blocking, 10))
    await asyncio.sleep(0.05)
    flag._set(CANCELLED)
    assert await asyncio.wait_for(sleeper, timeout=2) is True


def test_many_threads_told_while_they_start_waiting_all_wake() -> None:
    """The race the lazy waits must not lose: ``_set`` between a waiter's look and
    its making of the wait."""
    loop = asyncio.new_event_loop()
    try:
        for _ in range(200):
            flag = Cancellation(loop)
            woke: list[bool] = []
            waiters = [
                threading.Thread(target=lambda f=flag, out=woke: out.append(f.wait_blocking(5)))
                for _ in range(3)
            ]
            for thread in waiters:
                thread.start()
            flag._set(CANCELLED)
            for thread in waiters:
                thread.join(6)
            assert woke == [True, True, True]
    finally:
        loop.close()
