"""The claim loop both Redis storages run: take, else wait for a wake-up or the next
scheduled job, until the claim's own wait is over."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from conveyor.core.storage import Claimed

#: One look: what it took, and when the queues' next scheduled job is due (or None).
Take = Callable[[], Awaitable[tuple[list[Claimed], float | None]]]
#: Block until a wake-up or ``timeout`` seconds.
Wait = Callable[[float], Awaitable[None]]


async def claim_or_wait(take: Take, wait_for_wake: Wait, wait: float) -> list[Claimed]:
    """Take work, or wait up to ``wait`` seconds for some: a wake-up, or a scheduled
    job falling due, ends a wait early."""
    deadline = time.monotonic() + wait
    while True:
        claimed, next_due = await take()
        if claimed:
            return claimed
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return []
        if next_due is not None:
            remaining = min(remaining, max(next_due - time.time(), 0.0) + 0.001)
        await wait_for_wake(remaining)
