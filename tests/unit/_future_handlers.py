"""Handlers defined under postponed annotations (PEP 563), for test_handlers.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import conveyor
from conveyor._proto.examples import shop_pb2
from conveyor._proto.examples.basic_pb2 import BasicJob

if TYPE_CHECKING:
    # Only the type checker sees this import, so the annotation cannot resolve at run time.
    from conveyor._proto.examples.shop_pb2 import Summary


async def handle_basic(ctx: conveyor.JobContext, msg: BasicJob) -> None:
    del ctx, msg


def handle_order(ctx: conveyor.JobContext, msg: shop_pb2.Order) -> None:
    del ctx, msg


async def handle_summary(ctx: conveyor.JobContext, msg: Summary) -> None:
    del ctx, msg


async def handle_int(ctx: conveyor.JobContext, msg: int) -> None:
    del ctx, msg
