"""A worker for the event-loop tests: each BasicJob writes the module of the running
loop's class (``asyncio`` or ``uvloop``) to the file its ``name`` gives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

worker = conveyor.Worker(conveyor.Config(), claim_wait=0.2)


@worker.handler
async def record_loop(ctx: conveyor.JobContext, msg: BasicJob) -> None:
    module = type(asyncio.get_running_loop()).__module__.split(".")[0]
    await asyncio.to_thread(Path(msg.name).write_text, module)
