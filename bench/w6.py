"""W6: one parent with 100,000 children and one heir, one worker process: time and peak RSS.

python -m bench.w6 [CHILDREN] [URL]    (default 100000 on redis://127.0.0.1:6379/14)
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
import uuid

import redis

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

DEADLINE = 600.0


async def run(children: int, url: str) -> str:
    namespace = f"w6_{uuid.uuid4().hex[:6]}"
    config = conveyor.Config(url=url, namespace=namespace)
    worker = conveyor.Worker(config, concurrency=64)
    heir_at: list[float] = []

    @worker.handler
    async def handle(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        if msg.name == "parent":
            for i in range(children):
                ctx.enqueue_child(BasicJob(name="child", count=i))
                if i % 1000 == 999:
                    await ctx.flush()  # staged in batches: memory stays bounded
            ctx.enqueue_heir(BasicJob(name="heir"))
        elif msg.name == "heir":
            heir_at.append(time.monotonic())

    try:
        async with conveyor.AsyncClient(config) as client:
            started = time.monotonic()
            task = asyncio.create_task(worker.run())
            parent = await client.enqueue(BasicJob(name="parent"))
            while not heir_at:
                if time.monotonic() - started > DEADLINE:
                    raise SystemExit(f"the heir did not start within {DEADLINE:.0f}s")
                await asyncio.sleep(0.1)
            settled = await client.get(parent.id)
            await worker.stop()
            await task
    finally:
        if url.startswith("redis"):
            with redis.Redis.from_url(url) as admin:
                for key in admin.scan_iter(match="{" + namespace + "}:*", count=5000):
                    admin.delete(key)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    state = settled.state if settled else "gone"
    return (
        f"W6 {url.split(':')[0]} children={children} heir_start={heir_at[0] - started:.1f}s "
        f"parent={state} peak_rss={rss:.0f}MiB"
    )


def main() -> None:
    children = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    url = sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379/14"
    print(asyncio.run(run(children, url)))


if __name__ == "__main__":
    main()
