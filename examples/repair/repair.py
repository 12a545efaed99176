"""Repairing a family: a charge fails for good, the order fails; the provider comes
back, one call retries what failed, and the order's heir runs once, reading what
its line items returned.

    python examples/repair/repair.py            # in-process (memory://); or set CONVEYOR_URL

    order ──┬── line item (mug)    returns a Charge
            ├── line item (poster) returns a Charge
            └── line item (tee)    fails for good while the provider is down
    summary (heir, When.SUCCEEDED) ── cancelled while the order has failed,
                                      re-armed by the repair, then runs once
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import conveyor
from conveyor._proto.examples.shop_pb2 import Charge, LineItem, Order, Summary

log = logging.getLogger("examples.repair")
PRICES = {"mug": 1200, "tee": 2200, "poster": 1500}  # cents
provider_down = {"tee"}  # the payment provider refuses these until it is fixed


def build_worker(config: conveyor.Config) -> conveyor.Worker:
    worker = conveyor.Worker(config, concurrency=4, claim_wait=0.1, maintenance_interval=0.2)

    @worker.handler
    async def place_order(ctx: conveyor.JobContext, order: Order) -> None:
        for item in order.items:
            ctx.enqueue_child(item)
        ctx.enqueue_heir(Summary(order_id=order.order_id))  # runs only if the family succeeds

    @worker.handler
    async def line_item(ctx: conveyor.JobContext, item: LineItem) -> Charge:
        if item.sku in provider_down:
            raise ConnectionError(f"payment provider refused {item.sku}")
        amount = PRICES[item.sku] * item.quantity
        return Charge(order_id=item.order_id, amount_cents=amount)  # the job's result

    @worker.handler
    async def summary(ctx: conveyor.JobContext, msg: Summary) -> Summary:
        assert ctx.predecessor is not None
        total = 0
        async for child in ctx.predecessor.children():  # paged: any number of children
            charged = child.result()
            if isinstance(charged, Charge):
                total += charged.amount_cents
        log.info("summary of %s: charged %d cents in all", msg.order_id, total)
        return msg

    return worker


async def main() -> int:
    url = os.environ.get("CONVEYOR_URL") or "memory://repair-example"
    config = conveyor.Config(url=url, backoff=conveyor.Backoff(base=0.05, cap=0.2))
    items = [LineItem(order_id="A-7", sku=s, quantity=2) for s in ("mug", "poster", "tee")]
    worker = build_worker(config)
    running = asyncio.create_task(worker.run())
    try:
        async with conveyor.AsyncClient(config) as client:
            order = await client.enqueue(Order(order_id="A-7", items=items), max_attempts=1)
            failed = await client.wait(order.id, timeout=30)
            log.info("order %s: %s", failed.state, (await client.explain(order.id)).text)

            provider_down.clear()  # the provider is back
            retried = await client.retry_failed(order.id)
            reopened = await client.get(order.id)
            state = reopened.state if reopened else "gone"
            log.info("retried %d job(s); the order is %s again", len(retried), state)
            done = await client.wait(order.id, timeout=30)
            log.info("order %s", done.state)
            for member in await (await client.storage()).family(order.id):
                if member.predecessor_id == order.id:
                    heir = await client.wait(member.id, timeout=30)
                    log.info("summary %s, ran %d time(s)", heir.state, heir.attempt)
        return 0 if done.state is conveyor.JobState.SUCCEEDED else 1
    finally:
        await worker.stop()
        await running


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(main()))
