"""Run by test_signals: a worker in its own process receives SIGTERM (twice, if asked)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob


async def main(signals: int) -> None:
    config = conveyor.Config(url="memory://signals")
    worker = conveyor.Worker(config, claim_wait=0.1, shutdown_timeout=10)
    started = asyncio.Event()

    @worker.handler
    async def slow(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        started.set()
        await asyncio.sleep(msg.count / 1000)

    async with conveyor.AsyncClient(config) as client:
        job = await client.enqueue(BasicJob(name="slow", count=500))
        run = asyncio.create_task(worker.run())
        await started.wait()
        for _ in range(signals):
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0.05)
        await asyncio.wait_for(run, 15)
        final = await client.get(job.id)
        assert final is not None
        print(
            f"state={final.state} attempt={final.attempt} workers={len(await (await client.storage()).workers())}"
        )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
