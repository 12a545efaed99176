"""The demo's family: an order fans out to line items, each reserves stock and
charges, and a summary (the order's heir) runs once the whole family settled.

One reservation fails on its first attempt, the way a flaky warehouse API
would, and is retried with back-off; the family still succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from google.protobuf.message import Message

from .._proto.examples.shop_pb2 import Charge, LineItem, Order, Reserve, Summary
from ..core.config import Backoff, Config
from ..core.context import JobContext
from ..core.states import JobState, When
from ..core.worker import Worker

log = logging.getLogger("conveyor.demo")

SHOP_TYPES: tuple[type[Message], ...] = (Order, LineItem, Reserve, Charge, Summary)
"""The payload types of the family, for ``create_app(types=...)``."""

_PRODUCTS = {
    "mug": 1200,
    "tee": 2200,
    "hoodie": 4800,
    "cap": 1800,
    "poster": 1500,
    "tote": 1400,
    "socks": 900,
    "notebook": 1100,
}
_VARIANTS = ("black", "white", "blue", "green", "red", "grey", "s", "m", "l")
_DIGITAL = {"ebook-guide": 1900, "ebook-recipes": 1500, "gift-card": 2500, "course": 9900}

CATALOG: dict[str, int] = {
    **{
        f"{product}-{variant}": cents
        for product, cents in _PRODUCTS.items()
        for variant in _VARIANTS
    },
    **_DIGITAL,
}
"""Price in cents by SKU."""


def is_digital(sku: str) -> bool:
    """Digital goods need no stock reservation: their line item only charges."""
    return sku in _DIGITAL


@dataclass(frozen=True, slots=True)
class Pace:
    """How long handlers pretend to work, and how retries back off."""

    min_seconds: float = 0.05
    max_seconds: float = 0.3
    retry_after: float = 1.0

    @classmethod
    def fast(cls) -> Pace:
        return cls(0.0, 0.0, 0.05)

    async def work(self) -> None:
        if self.max_seconds > 0:
            await asyncio.sleep(random.uniform(self.min_seconds, self.max_seconds))


@dataclass
class Outcome:
    """What the family's summary wrote, for the demo to print at the end."""

    summary: str | None = None


def build_order(rng: random.Random, lines: int) -> tuple[Order, str]:
    """An order of ``lines`` distinct SKUs, and the SKU whose reservation will fail once."""
    skus = rng.sample(sorted(CATALOG), k=min(lines, len(CATALOG)))
    order_id = f"ord-{rng.randrange(10_000, 99_999)}"
    items = [LineItem(order_id=order_id, sku=sku, quantity=rng.randint(1, 4)) for sku in skus]
    physical = [item.sku for item in items if not is_digital(item.sku)]
    flaky = rng.choice(physical) if physical else ""
    return Order(order_id=order_id, items=items), flaky


def demo_config(url: str, namespace: str, pace: Pace) -> Config:
    backoff = Backoff(base=pace.retry_after, factor=2.0, cap=pace.retry_after * 4, jitter=False)
    return Config(url=url, namespace=namespace, backoff=backoff, max_attempts=3)


def shop_worker(
    config: Config, *, pace: Pace, flaky_sku: str, outcome: Outcome, concurrency: int = 4
) -> Worker:
    """A worker with a handler for each job type of the family."""
    worker = Worker(
        config,
        concurrency=concurrency,
        claim_wait=0.5,
        maintenance_interval=0.2,
        shutdown_timeout=5.0,
    )

    @worker.handler
    async def place_order(ctx: JobContext, order: Order) -> None:
        await pace.work()
        for item in order.items:
            ctx.enqueue_child(item)  # released together when this handler returns
        # Runs after the order *and everything below it* has settled, whatever the outcome.
        ctx.enqueue_heir(Summary(order_id=order.order_id), when=When.SETTLED)

    @worker.handler
    async def line_item(ctx: JobContext, item: LineItem) -> None:
        await pace.work()
        if not is_digital(item.sku):
            ctx.enqueue_child(Reserve(sku=item.sku, quantity=item.quantity))
        amount = CATALOG.get(item.sku, 0) * item.quantity
        ctx.enqueue_child(Charge(order_id=item.order_id, amount_cents=amount))

    @worker.handler
    async def reserve(ctx: JobContext, msg: Reserve) -> None:
        await pace.work()
        if msg.sku == flaky_sku and ctx.job.attempt == 1:
            raise RuntimeError(f"warehouse API timed out reserving {msg.sku}")

    @worker.handler
    async def charge(ctx: JobContext, msg: Charge) -> None:
        await pace.work()

    @worker.handler
    async def summary(ctx: JobContext, msg: Summary) -> None:
        await pace.work()
        before = ctx.predecessor
        assert before is not None  # an heir always knows its predecessor
        order_job = await ctx.client.get(before.id)
        order = order_job.payload() if order_job is not None else Order()
        assert isinstance(order, Order)
        units = sum(item.quantity for item in order.items)
        cents = sum(CATALOG.get(item.sku, 0) * item.quantity for item in order.items)
        if before.state is JobState.SUCCEEDED:
            verdict = "every line reserved and charged"
        else:
            verdict = f"{before.state}, {len(before.failed_ids)} job(s) failed for good"
        outcome.summary = (
            f"order {msg.order_id}: {len(order.items)} lines, {units} units, "
            f"${cents / 100:,.2f}; {verdict}"
        )
        log.info("%s", outcome.summary)

    return worker
