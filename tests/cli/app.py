"""A worker for the CLI tests: counts BasicJob runs into a file named by the job."""

from __future__ import annotations

import os
from pathlib import Path

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

worker = conveyor.Worker(conveyor.Config(), claim_wait=0.2)
not_a_worker = 42


@worker.handler
def record(ctx: conveyor.JobContext, msg: BasicJob) -> None:  # sync: runs in a thread
    with Path(msg.name).open("a") as out:
        out.write(f"{os.getpid()} {ctx.job.id}\n")
