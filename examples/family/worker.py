"""An order and its family of jobs:

    order ──┬── line item ──┬── reserve stock
            │               └── charge
            ├── line item ──── …
            └── …
    summary (the order's heir) ── runs once the whole family has settled

    python examples/family/worker.py          # Ctrl+C stops it gracefully

Children are released when their parent's handler returns; the order waits
until every line item has settled, and each line item until its reservation
and its charge have. The first attempt of a large charge fails (a flaky
payment provider) and is retried with back-off: the family still succeeds,
and the summary runs once, after everything else.
"""

from __future__ import annotations

import logging
import sys

import conveyor
from conveyor._proto.examples.shop_pb2 import Charge, LineItem, Order, Reserve, Summary

log = logging.getLogger("examples.family")

PRICES = {"mug": 1200, "tee": 2200, "poster": 1500}  # cents

worker = conveyor.Worker(conveyor.Config(), concurrency=8)


@worker.handler
async def place_order(ctx: conveyor.JobContext, order: Order) -> None:
    for item in order.items:
        ctx.enqueue_child(item)  # held until this handler returns, then released together
    # After the order and everything below it, whatever the outcome.
    ctx.enqueue_heir(Summary(order_id=order.order_id), when=conveyor.When.SETTLED)


@worker.handler
async def line_item(ctx: conveyor.JobContext, item: LineItem) -> None:
    ctx.enqueue_child(Reserve(sku=item.sku, quantity=item.quantity))
    amount = PRICES.get(item.sku, 1000) * item.quantity
    ctx.enqueue_child(Charge(order_id=item.order_id, amount_cents=amount))


@worker.handler
def reserve(ctx: conveyor.JobContext, msg: Reserve) -> None:  # a sync handler runs in a thread
    log.info("reserved %d x %s", msg.quantity, msg.sku)


@worker.handler
async def charge(ctx: conveyor.JobContext, msg: Charge) -> None:
    if msg.amount_cents > 5000 and ctx.job.attempt == 1:
        # Raising fails this attempt; it is retried after a back-off (Config(backoff=...)).
        raise TimeoutError(f"payment provider timed out charging {msg.amount_cents} cents")
    log.info(
        "charged %d cents for order %s (attempt %d)",
        msg.amount_cents,
        msg.order_id,
        ctx.job.attempt,
    )


@worker.handler
async def summary(ctx: conveyor.JobContext, msg: Summary) -> None:
    before = ctx.predecessor  # how the order's family settled
    assert before is not None
    log.info(
        "summary: order %s %s, %d job(s) failed for good",
        msg.order_id,
        before.state,
        len(before.failed_ids),
    )


def main() -> int:
    try:
        worker.run_sync()
    except conveyor.ConveyorError as exc:
        log.error("worker stopped: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(main())
