"""The worker the chaos tests run as real processes: ``conveyor worker tests.chaos.app:worker``.

It runs ``Step`` trees like the in-process test worker (``tests.support``), with short
leases so that a killed worker's jobs come back within a second or two, and writes
a journal of every handler start and finish to ``$CHAOS_JOURNAL`` (a folder; one
append-only file per process, one ``write`` per line, so a SIGKILL loses at most
the line being written, never a whole buffer).

Journal lines: ``S <job id> <attempt> <pid> <name>`` when a handler starts, ``D <job
id> <attempt> <ok|err>`` when it returns or raises.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from typing import Any

import conveyor
from conveyor._proto.examples.shop_pb2 import Step

JOURNAL_ENV = "CHAOS_JOURNAL"
CURED_ENV = "CHAOS_CURED"  # a file of step names, one a line, whose ``fail`` no longer holds
LEASE = 1.0  # seconds: a killed worker's jobs are recovered after about this long

config = conveyor.Config(
    url=os.environ.get("CONVEYOR_URL", "redis://127.0.0.1:6379/15"),
    namespace=os.environ.get("CONVEYOR_NAMESPACE", "chaos"),
    backoff=conveyor.Backoff(base=0.05, factor=2.0, cap=0.5),
    max_attempts=5,
    max_lost=1000,  # the test kills often; "worker lost" is not what it is about
    retention=timedelta(seconds=float(os.environ.get("CHAOS_RETENTION", "86400"))),
)
# Rule 14 under fire: at most this many Step jobs running across the fleet (0: no limit).
MAX_RUNNING = int(os.environ.get("CHAOS_MAX_RUNNING", "0"))
worker = conveyor.Worker(
    config,
    concurrency=int(os.environ.get("CHAOS_CONCURRENCY", "16")),
    lease=LEASE,
    claim_wait=0.2,
    maintenance_interval=0.2,
    shutdown_timeout=2.0,
    limits={Step.DESCRIPTOR.full_name: conveyor.QueueLimits(max_running=MAX_RUNNING)}
    if MAX_RUNNING
    else None,
)

_fd: int | None = None


def journal(line: str) -> None:
    global _fd
    if _fd is None:
        folder = os.environ[JOURNAL_ENV]
        path = os.path.join(folder, f"{os.getpid()}-{time.monotonic_ns()}.log")
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_fd, (line + "\n").encode())


def declare(ctx: conveyor.JobContext, msg: Step) -> None:
    for child in msg.children:
        ctx.enqueue_child(child, optional=child.optional)
    for heir in msg.heirs:
        when = conveyor.When.SETTLED if heir.settled_heir else conveyor.When.SUCCEEDED
        ctx.enqueue_heir(heir, when=when)


def cured(name: str) -> bool:
    """Whether the test has fixed what made step ``name`` fail (a repair's fix: rule 8)."""
    path = os.environ.get(CURED_ENV)
    if not path or not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        return name in f.read().split("\n")


@worker.handler
async def run_step(ctx: conveyor.JobContext, msg: Step) -> None:
    job = ctx.job
    journal(f"S {job.id} {job.attempt} {os.getpid()} {msg.name}")
    outcome = "err"
    try:
        declare(ctx, msg)
        if msg.sleep_seconds:
            await asyncio.sleep(msg.sleep_seconds)
        if (msg.fail and not cured(msg.name)) or job.attempt <= msg.fail_times:
            raise RuntimeError(f"step {msg.name} fails on attempt {job.attempt}")
        outcome = "ok"
    finally:
        journal(f"D {job.id} {job.attempt} {outcome}")


def read_journal(folder: str) -> dict[str, Any]:
    """Every job id's starts (attempt, "<pid> <name>") and finishes (attempt, outcome)."""
    starts: dict[str, list[tuple[int, str]]] = {}
    done: dict[str, list[tuple[int, str]]] = {}
    for entry in os.scandir(folder):
        with open(entry.path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    continue  # the line a SIGKILL cut short
                kind, job_id, attempt, rest = line.rstrip("\n").split(" ", 3)
                target = starts if kind == "S" else done
                target.setdefault(job_id, []).append((int(attempt), rest))
    return {"starts": starts, "done": done}
