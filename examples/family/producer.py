"""Enqueue an order; the worker turns it into a family of jobs.

    python examples/family/producer.py

Prints the order job's id. Storage comes from $CONVEYOR_URL (default: Redis
at localhost:6379).
"""

from __future__ import annotations

import logging
import sys

import conveyor
from conveyor._proto.examples.shop_pb2 import LineItem, Order

log = logging.getLogger("examples.family")


def main() -> int:
    order = Order(
        order_id="A-1001",
        items=[
            LineItem(order_id="A-1001", sku="mug", quantity=2),
            LineItem(order_id="A-1001", sku="tee", quantity=3),
            LineItem(order_id="A-1001", sku="poster", quantity=1),
        ],
    )
    try:
        with conveyor.Client(conveyor.Config()) as client:
            job = client.enqueue(order)
    except conveyor.ConveyorError as exc:
        log.error("failed to enqueue the order: %s", exc)
        return 1
    log.info("order %s enqueued as job %s", order.order_id, job.id)
    print(job.id)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
