"""The Worker that ``python -m bench.processes`` and ``python -m bench.families`` run
through the CLI, as a user would:

    BENCH_BODY=redis conveyor worker bench.cli_app:worker --url URL --namespace NS --processes 2

One async ``BasicJob`` handler and the Worker's defaults throughout; the URL and the
namespace come from the command line. A job named ``parent`` declares ``count``
children and one heir; every other job (children and heirs too) runs the benchmark's
job body (``$BENCH_BODY``, bench/peers/bodies.py).
"""

from __future__ import annotations

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

from .peers.bodies import run_async as run_body

worker = conveyor.Worker(conveyor.Config(url="memory://bench-cli-app"))


@worker.handler
async def handle(ctx: conveyor.JobContext, msg: BasicJob) -> None:
    if msg.name == "parent":
        for i in range(msg.count):
            ctx.enqueue_child(BasicJob(name="child", count=i))
        ctx.enqueue_heir(BasicJob(name="heir"))
        return
    await run_body(msg.count)
