"""What Prometheus metrics cost: a worker's throughput with them off, counted, and
served while scraped; a scrape's storage read against a backlog; and, on Redis, the
bytes a queued job's ready time adds to its hash.

python -m bench.metrics [--backends redis,postgres] [--jobs 5000] [--rounds 3] [--backlog 100000]

Per backend, in fresh namespaces: ``--jobs`` queued no-op jobs drained by one worker
(concurrency 10, the defaults otherwise) in burst mode, for each variant in turn,
``--rounds`` times, interleaved so drift hits every variant alike; jobs/s medians.
No-op bodies show the per-job cost at its largest: a body with real I/O hides it.
Then ``--backlog`` queued jobs over 4 queues and 3 priorities, and the time of the
reads one scrape makes (``read_namespace``: queue counts, oldest queued job per
queue, controls, workers), median of 20. Writes bench/METRICS_RESULTS.md.
Loopback servers only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.core.metrics import read_namespace

from .repair import URLS, drop

HERE = Path(__file__).resolve().parent
VARIANTS = ("off", "counted", "served+scraped")
ENQUEUE_BATCH = 1000


async def noop(ctx: conveyor.JobContext, msg: BasicJob) -> None:
    return None


def _scraper(port: list[int], stop: threading.Event) -> None:
    """Scrape every 0.5 s (ten times faster than a usual 5-15 s interval)."""
    while not stop.wait(0.5):
        if port[0]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port[0]}/metrics", timeout=10) as r:
                r.read()


async def drain(backend: str, url: str, jobs: int, variant: str) -> float:
    """Jobs/s of one burst-mode worker over ``jobs`` queued no-op jobs."""
    namespace = f"bench_metrics_{uuid.uuid4().hex[:8]}"
    config = conveyor.Config(url=url, namespace=namespace)
    try:
        async with conveyor.AsyncClient(config) as client:
            for start in range(0, jobs, ENQUEUE_BATCH):
                count = min(ENQUEUE_BATCH, jobs - start)
                await client.enqueue_many([BasicJob(name=str(i)) for i in range(count)])
        options: dict[str, object] = {}
        if variant == "counted":
            options["metrics"] = True
        elif variant == "served+scraped":
            options.update(metrics_port=0, metrics_host="127.0.0.1")
        worker = conveyor.Worker(config, **options)  # type: ignore[arg-type]
        worker.handler(noop)
        port = [0]
        stop = threading.Event()
        scraper = threading.Thread(target=_scraper, args=(port, stop), daemon=True)
        if variant == "served+scraped":
            scraper.start()

        async def watch_port() -> None:
            while not port[0]:
                port[0] = worker.metrics_port or 0
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch_port()) if variant == "served+scraped" else None
        started = time.perf_counter()
        await worker.run_until_idle(timeout=600)
        took = time.perf_counter() - started
        stop.set()
        if watcher is not None:
            watcher.cancel()
        return jobs / took
    finally:
        await drop(backend, url, namespace)


async def scrape_reads(backend: str, url: str, backlog: int) -> tuple[float, float]:
    """Milliseconds (median of 20) of one scrape's storage reads, and of
    ``oldest_queued`` alone, over ``backlog`` queued jobs."""
    namespace = f"bench_metrics_{uuid.uuid4().hex[:8]}"
    config = conveyor.Config(url=url, namespace=namespace)
    try:
        async with conveyor.AsyncClient(config) as client:
            for start in range(0, backlog, ENQUEUE_BATCH):
                batch = [BasicJob(name=str(start + i)) for i in range(ENQUEUE_BATCH)]
                queue, priority = f"q{start // ENQUEUE_BATCH % 4}", start // ENQUEUE_BATCH % 3
                await client.enqueue_many(batch, queue=queue, priority=priority)
            storage = await client.storage()
            whole, oldest = [], []
            for _ in range(20):
                began = time.perf_counter()
                await read_namespace(storage)
                whole.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                await storage.oldest_queued()
                oldest.append((time.perf_counter() - began) * 1000)
        return statistics.median(whole), statistics.median(oldest)
    finally:
        await drop(backend, url, namespace)


async def ready_time_bytes(url: str) -> float:
    """Redis: mean MEMORY USAGE of a queued job's hash with a ready time, minus the
    same hash without it (100 fresh jobs, which store none: it is set here)."""
    import redis.asyncio as aioredis

    namespace = f"bench_metrics_{uuid.uuid4().hex[:8]}"
    config = conveyor.Config(url=url, namespace=namespace)
    raw = aioredis.Redis.from_url(url)
    try:
        async with conveyor.AsyncClient(config) as client:
            jobs = await client.enqueue_many([BasicJob(name=f"job {i}") for i in range(100)])
        saved = []
        for job in jobs:
            key = "{" + namespace + "}:job:" + job.id
            without = await raw.memory_usage(key, samples=0)
            await raw.hset(key, "rd", int(time.time() * 1000))
            saved.append(await raw.memory_usage(key, samples=0) - without)
        return statistics.mean(saved)
    finally:
        await raw.aclose()
        await drop("redis", url, namespace)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="redis,postgres")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--report", type=Path, default=HERE / "METRICS_RESULTS.md")
    args = parser.parse_args()
    command = (
        f"python -m bench.metrics --backends {args.backends} --jobs {args.jobs} "
        f"--rounds {args.rounds} --backlog {args.backlog}"
    )
    lines = [
        "# What metrics cost (bench/metrics.py)",
        "",
        f"`{command}`, {time.strftime('%Y-%m-%d')}. Worker: one process, concurrency 10, "
        f"burst mode over {args.jobs} queued no-op jobs; jobs/s, median of {args.rounds} "
        "interleaved rounds (min-max). `served+scraped` serves `--metrics-port` and is "
        "scraped every 0.5 s.",
        "",
        "| backend | off | counted | ratio | served+scraped | ratio |",
        "|---|---|---|---|---|---|",
    ]
    reads = [
        "",
        f"One scrape's storage reads over {args.backlog} queued jobs (4 queues, 3 priorities), "
        "median of 20:",
        "",
        "| backend | read_namespace (ms) | of which oldest_queued (ms) |",
        "|---|---|---|",
    ]
    for backend in args.backends.split(","):
        url = URLS[backend]
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                rates[variant].append(await drain(backend, url, args.jobs, variant))
        med = {v: statistics.median(r) for v, r in rates.items()}
        cell = {v: f"{med[v]:,.0f} ({min(r):,.0f}-{max(r):,.0f})" for v, r in rates.items()}
        lines.append(
            f"| {backend} | {cell['off']} | {cell['counted']} | "
            f"{med['counted'] / med['off']:.2f} | {cell['served+scraped']} | "
            f"{med['served+scraped'] / med['off']:.2f} |"
        )
        print(lines[-1], flush=True)
        whole, oldest = await scrape_reads(backend, url, args.backlog)
        reads.append(f"| {backend} | {whole:.1f} | {oldest:.1f} |")
        print(reads[-1], flush=True)
    lines += reads
    if "redis" in args.backends.split(","):
        extra = await ready_time_bytes(URLS["redis"])
        lines += [
            "",
            f"Redis: a queued job's ready time (field `rd`, integer ms) adds {extra:.0f} bytes "
            "to its hash (MEMORY USAGE with and without it, mean of 100 jobs). It is stored "
            "only when a job became queued more than 50 ms after its creation (promoted, "
            "retried, handed back, released late): otherwise the UUIDv7 id says it. It is "
            "removed when the job leaves `queued`.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.report.write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
