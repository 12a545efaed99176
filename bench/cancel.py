"""How long ``client.cancel`` of a running job takes to reach its handler (docs/rules.md
rule 12), per backend, for an async handler (cancelled) and a sync one (its flag).

python -m bench.cancel [--backends memory,redis,postgres,sqlite] [--jobs 30]

Per backend, in a fresh namespace, one worker with a 60 s lease (its heartbeat, which
would also find the lease gone, is 20 s away) runs ``--jobs`` jobs one at a time; each
handler waits until it is told to stop. The time is from just before ``client.cancel``
to the moment the handler sees it. Medians and maxima go to stdout and
bench/CANCEL_RESULTS.md. Loopback servers only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor._proto.examples.shop_pb2 import Step

from .repair import URLS, drop

HERE = Path(__file__).resolve().parent


async def one_backend(backend: str, url: str, jobs: int) -> dict[str, list[float]]:
    """Milliseconds from cancel to handler, for async and sync handlers."""
    namespace = f"bench_cancel_{uuid.uuid4().hex[:8]}"
    config = conveyor.Config(url=url, namespace=namespace)
    worker = conveyor.Worker(config, lease=60, claim_wait=0.5, queues=["async", "sync"])
    started = asyncio.Event()
    sync_started = threading.Event()
    seen: list[float] = []
    stopped = threading.Event()

    @worker.handler
    async def wait(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        started.set()
        try:
            await asyncio.sleep(120)
        except asyncio.CancelledError:
            seen.append(time.perf_counter())
            stopped.set()
            raise

    @worker.handler
    def blocking(ctx: conveyor.JobContext, msg: Step) -> None:
        sync_started.set()
        ctx.cancelled.wait_blocking(120)
        seen.append(time.perf_counter())
        stopped.set()

    took: dict[str, list[float]] = {"async": [], "sync": []}
    task = asyncio.create_task(worker.run())
    try:
        async with conveyor.AsyncClient(config) as client:
            for kind in ("async", "sync") * jobs:
                started.clear()
                sync_started.clear()
                seen.clear()
                stopped.clear()
                message = BasicJob(name=kind) if kind == "async" else Step(name=kind)
                job = await client.enqueue(message, queue=kind)
                if kind == "async":
                    await asyncio.wait_for(started.wait(), 30)
                else:
                    await asyncio.to_thread(sync_started.wait, 30)
                await asyncio.sleep(0.05)  # settled into its wait
                before = time.perf_counter()
                await client.cancel(job.id)
                await asyncio.to_thread(stopped.wait, 30)  # the time is the handler's own
                took[kind].append((seen[0] - before) * 1000 if seen else float("inf"))
    finally:
        await worker.stop()
        await task
        await drop(backend, url, namespace)
    return took


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="memory,redis,postgres,sqlite")
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--report", type=Path, default=HERE / "CANCEL_RESULTS.md")
    args = parser.parse_args()
    lines = [
        "# Cancel of a running job: time to reach its handler (bench/cancel.py)",
        "",
        f"`python -m bench.cancel --backends {args.backends} --jobs {args.jobs}`: "
        f"{args.jobs} jobs of each kind, one at a time, milliseconds from just before "
        "`client.cancel` to the handler seeing it. The worker's lease is 60 s, so its "
        "heartbeat (20 s away) plays no part.",
        "",
        "| backend | async handler: median | max | sync handler (its flag): median | max |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        urls = {**URLS, "sqlite": f"sqlite:///{folder}/cancel.db"}
        for backend in args.backends.split(","):
            took = await one_backend(backend, urls[backend], args.jobs)
            a, s = took["async"], took["sync"]
            lines.append(
                f"| {backend} | {statistics.median(a):.1f} | {max(a):.1f} | "
                f"{statistics.median(s):.1f} | {max(s):.1f} |"
            )
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    args.report.write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
