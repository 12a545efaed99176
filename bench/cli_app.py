"""The Worker that ``python -m bench.processes`` runs through the CLI, as a user would:

    BENCH_BODY=redis conveyor worker bench.cli_app:worker --url URL --namespace NS --processes 2

One async ``BasicJob`` handler running the benchmark's job body (``$BENCH_BODY``,
bench/peers/bodies.py) and nothing else: the Worker's defaults throughout. The URL and
the namespace come from the command line.
"""

from __future__ import annotations

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

from .peers.bodies import run_async as run_body

worker = conveyor.Worker(conveyor.Config(url="memory://bench-cli-app"))


@worker.handler
async def handle(ctx: conveyor.JobContext, msg: BasicJob) -> None:
    await run_body(msg.count)
