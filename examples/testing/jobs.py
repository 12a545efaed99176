"""The app the testing example tests: a signup declares a welcome mail and an audit
line, and a report (the heir) runs once both are done.

Your app would have its own protobuf messages; this one borrows the examples' ``Step``.
"""

from __future__ import annotations

import conveyor
from conveyor._proto.examples.shop_pb2 import Step

worker = conveyor.Worker(conveyor.Config())  # in production: $CONVEYOR_URL
SENT: list[str] = []  # what the "mail server" received (a real app would call one)


@worker.handler
async def run_step(ctx: conveyor.JobContext, msg: Step) -> None:
    if msg.name.startswith("signup:"):
        email = msg.name.removeprefix("signup:")
        ctx.enqueue_child(Step(name=f"welcome:{email}"))
        ctx.enqueue_child(Step(name=f"audit:{email}"), optional=True)
        ctx.enqueue_heir(Step(name=f"report:{email}"))
    elif msg.name.startswith("welcome:"):
        if ctx.job.attempt == 1 and msg.fail_times:
            raise RuntimeError("the mail server is busy")  # retried after a back-off
        SENT.append(msg.name.removeprefix("welcome:"))
