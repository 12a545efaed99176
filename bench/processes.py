"""What ``conveyor worker`` should default to: the drain rate of the CLI, as users run
it, with 1, 2 or more processes and on asyncio's or uvloop's event loop, for each job body.

python -m bench.processes [--backends redis,postgres] [--bodies noop,redis,cpu]
                          [--processes 1,2] [--loops asyncio,uvloop] [--jobs 10000]
                          [--rounds 3]

Per round, backend, body, process count and loop, in a fresh namespace: ``--jobs``
queued jobs (``--cpu-jobs`` for the cpu body, which is slower), then
``conveyor worker bench.cli_app:worker --processes P --loop L`` with every other option
at its default (concurrency, lease, batching), polled every 20 ms until every job succeeded,
then SIGTERM. Two rates: from the spawn of the command (start-up included: what a
batch feels) and over the drain (from the first poll that saw a job succeed: the
steady rate). The variants are interleaved round by round so drift hits them alike;
medians (min-max). Writes bench/PROCESSES_RESULTS.md. Loopback servers only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

from .backends import succeeded_from_stats
from .repair import URLS, drop

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ENQUEUE_BATCH = 1000
POLL = 0.02
DEADLINE = 300.0  # seconds one drain may take

Variant = tuple[str, str, int, str]  # backend, body, processes, loop


async def drain(
    backend: str, body: str, processes: int, loop: str, jobs: int
) -> tuple[float, float]:
    """(jobs/s from the spawn, jobs/s over the drain) of one CLI run over ``jobs`` jobs."""
    messages = [BasicJob(count=i) for i in range(jobs)]
    return await cli_drain(backend, body, processes, loop, messages, jobs)


async def cli_drain(
    backend: str,
    body: str,
    processes: int,
    loop: str,
    messages: Sequence[BasicJob],
    expect: int,
    *,
    extra: Sequence[str] = (),
) -> tuple[float, float]:
    """Enqueue ``messages``, run ``conveyor worker bench.cli_app:worker`` until ``expect``
    jobs succeeded (children and heirs count), and return (jobs/s from the spawn, jobs/s
    over the drain)."""
    jobs = expect
    url = URLS[backend]
    namespace = f"bench_procs_{uuid.uuid4().hex[:8]}"
    config = conveyor.Config(url=url, namespace=namespace)
    proc: asyncio.subprocess.Process | None = None
    try:
        async with conveyor.AsyncClient(config) as client:
            for start in range(0, len(messages), ENQUEUE_BATCH):
                await client.enqueue_many(messages[start : start + ENQUEUE_BATCH])
            storage = await client.storage()
            env = {**os.environ, "BENCH_BODY": body, "PYTHONPATH": str(REPO)}
            cmd = [sys.executable, "-m", "conveyor", "worker", "bench.cli_app:worker"]
            cmd += ["--url", url, "--namespace", namespace, "--processes", str(processes)]
            cmd += ["--loop", loop, "--log-level", "warning", *extra]
            spawned = time.monotonic()
            proc = await asyncio.create_subprocess_exec(*cmd, cwd=REPO, env=env)
            first: tuple[float, int] | None = None
            while (done := await succeeded_from_stats(storage)) < jobs:
                now = time.monotonic()
                if first is None and done:
                    first = (now, done)
                if now - spawned > DEADLINE or proc.returncode is not None:
                    raise RuntimeError(f"{done} of {jobs} succeeded; worker {proc.returncode}")
                await asyncio.sleep(POLL)
            ended = time.monotonic()
        first_at, first_done = first or (spawned, 0)
        return jobs / (ended - spawned), (jobs - first_done) / max(ended - first_at, 1e-9)
    finally:
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await drop(backend, url, namespace)


def cell(rates: list[float]) -> str:
    return f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="redis,postgres")
    parser.add_argument("--bodies", default="noop,redis,cpu")
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--cpu-jobs", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--report", type=Path, default=HERE / "PROCESSES_RESULTS.md")
    args = parser.parse_args()
    backends, bodies = args.backends.split(","), args.bodies.split(",")
    counts, loops = [int(p) for p in args.processes.split(",")], args.loops.split(",")
    variants = [
        (b, body, p, loop) for b in backends for body in bodies for p in counts for loop in loops
    ]
    spawn: dict[Variant, list[float]] = {v: [] for v in variants}
    steady: dict[Variant, list[float]] = {v: [] for v in variants}
    for round_no in range(args.rounds):
        # Rotate the order each round: no variant always runs first (or after the slowest).
        shift = round_no * len(variants) // max(args.rounds, 1)
        for v in variants[shift:] + variants[:shift]:
            backend, body, p, loop = v
            jobs = args.cpu_jobs if body == "cpu" else args.jobs
            from_spawn, over_drain = await drain(backend, body, p, loop, jobs)
            spawn[v].append(from_spawn)
            steady[v].append(over_drain)
            print(f"round {round_no + 1} {v}: {from_spawn:,.0f} / {over_drain:,.0f}", flush=True)
    command = (
        f"python -m bench.processes --backends {args.backends} --bodies {args.bodies} "
        f"--processes {args.processes} --loops {args.loops} --jobs {args.jobs} "
        f"--cpu-jobs {args.cpu_jobs} --rounds {args.rounds}"
    )
    lines = [
        "# Processes and event loop: what `conveyor worker` gains (bench/processes.py)",
        "",
        f"`{command}`, {time.strftime('%Y-%m-%d')}, on a machine with {os.cpu_count()} CPUs "
        "that also runs the Redis and PostgreSQL servers. The CLI with every option at its "
        "default but `--processes` and `--loop`; jobs/s, median of the rounds (min-max). "
        "*From spawn*: from starting the command to the last job succeeded (start-up "
        "included). *Drain*: from the first job seen succeeded to the last (the steady rate).",
        "",
        f"| backend | body | processes | loop | from spawn | drain | drain / {counts[0]} "
        f"process, {loops[0]} |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        first = statistics.median(steady[(v[0], v[1], counts[0], loops[0])])
        ratio = statistics.median(steady[v]) / first
        lines.append(
            f"| {' | '.join(map(str, v))} | {cell(spawn[v])} | {cell(steady[v])} | {ratio:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.report.write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
