"""A worker for the CLI tests: records BasicJob runs in files named by the job.

A job's ``name`` is a path: the handler appends ``"<pid> <job id>"`` to
``<name>.started`` when it starts, sleeps ``count`` milliseconds, then appends
the same line to ``<name>`` when it finishes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

worker = conveyor.Worker(conveyor.Config(), claim_wait=0.2)
not_a_worker = 42


@worker.handler
def record(ctx: conveyor.JobContext, msg: BasicJob) -> None:  # sync: runs in a thread
    line = f"{os.getpid()} {ctx.job.id}\n"
    with Path(f"{msg.name}.started").open("a") as out:
        out.write(line)
    if msg.count:
        time.sleep(msg.count / 1000)
    with Path(msg.name).open("a") as out:
        out.write(line)
