"""W6: one parent with 100,000 children and one heir, one worker process: time and peak RSS.

python -m bench.w6 [CHILDREN] [URL]    (default 100000 on redis://127.0.0.1:6379/14)
"""

import asyncio
import resource
import sys
import time
import uuid

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import redis

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
URL = sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379/14"


async def main():
    ns = f"w6_{uuid.uuid4().hex[:6]}"
    config = conveyor.Config(url=URL, namespace=ns)
    worker = conveyor.Worker(config, concurrency=64)
    heir_at = []

    @worker.handler
    async def h(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        if msg.name == "parent":
            for i in range(N):
                ctx.enqueue_child(BasicJob(name="c", count=i))
                if i % 1000 == 999:
                    await ctx.flush()
            ctx.enqueue_heir(BasicJob(name="heir"))
        elif msg.name == "heir":
            heir_at.append(time.monotonic())

    async with conveyor.AsyncClient(config) as client:
        t0 = time.monotonic()
        task = asyncio.create_task(worker.run())
        parent = await client.enqueue(BasicJob(name="parent"))
        while not heir_at:
            await asyncio.sleep(0.1)
            if time.monotonic() - t0 > 600:
                raise SystemExit("timeout")
        settled = await client.get(parent.id)
        await worker.stop()
        await task
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"W6 {URL.split(':')[0]} children={N} heir_start={heir_at[0] - t0:.1f}s parent={settled.state} peak_rss={rss:.0f}MiB"
    )
    if URL.startswith("redis"):
        r = redis.Redis.from_url(URL)
        for k in r.scan_iter(match="{" + ns + "}:*", count=5000):
            r.delete(k)


asyncio.run(main())
