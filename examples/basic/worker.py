"""The original Conveyor README's worker, ported: run ``run_basic_job`` for every BasicJob.

    python examples/basic/worker.py                       # Ctrl+C stops it gracefully
    conveyor worker examples.basic.worker:worker          # the same, through the CLI

Storage comes from $CONVEYOR_URL (default: Redis at localhost:6379).
"""

from __future__ import annotations

import logging
import sys

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

log = logging.getLogger("examples.basic")

worker = conveyor.Worker(conveyor.Config())


@worker.handler
async def run_basic_job(ctx: conveyor.JobContext, job: BasicJob) -> None:
    """The job type comes from the annotation: this handler runs every BasicJob."""
    log.info(
        "hello %s, count %d (job %s, attempt %d)", job.name, job.count, ctx.job.id, ctx.job.attempt
    )


def main() -> int:
    try:
        worker.run_sync()  # until SIGTERM or Ctrl+C: finishes running jobs, then returns
    except conveyor.ConveyorError as exc:
        log.error("worker stopped: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(main())
