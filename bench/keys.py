"""What a unique key costs at enqueue (docs/rules.md rule 15), against a plain enqueue.

python -m bench.keys [--backends redis,postgres] [--jobs 1000] [--runs 3]

Per backend and run, in a fresh namespace each, ``--jobs`` jobs are enqueued one
at a time (``AsyncClient.enqueue``, one round trip each: what a web request does)
without a key, then with a distinct key each, then again with the keys just used
(every one a duplicate answered with its holder); the three are interleaved and
timed alone. Medians of the runs and their ratios go to stdout and
bench/KEYS_RESULTS.md. Loopback servers only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from pathlib import Path

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

from .repair import URLS, drop

HERE = Path(__file__).resolve().parent
KINDS = ("plain", "keyed", "duplicate")


async def one_run(backend: str, jobs: int) -> dict[str, float]:
    """Jobs per second of each kind of enqueue, in one fresh namespace."""
    namespace = f"bench_keys_{uuid.uuid4().hex[:8]}"
    config = conveyor.Config(url=URLS[backend], namespace=namespace)
    rates: dict[str, float] = {}
    try:
        async with conveyor.AsyncClient(config) as client:
            await client.enqueue(BasicJob(name="warm-up"))
            for kind in KINDS:
                started = time.perf_counter()
                for i in range(jobs):
                    key = None if kind == "plain" else f"order-{i}"
                    job = await client.enqueue(BasicJob(name="x", count=i), key=key)
                    assert job.duplicate is (kind == "duplicate")
                rates[kind] = jobs / (time.perf_counter() - started)
    finally:
        await drop(backend, URLS[backend], namespace)
    return rates


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="redis,postgres")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--report", type=Path, default=HERE / "KEYS_RESULTS.md")
    args = parser.parse_args()
    backends = args.backends.split(",")
    results: dict[str, list[dict[str, float]]] = {b: [] for b in backends}
    for _ in range(args.runs):
        for backend in backends:  # interleaved: the machine's drift hits all alike
            results[backend].append(await one_run(backend, args.jobs))
    lines = [
        "# Unique keys: enqueue cost (bench/keys.py)",
        "",
        f"`python -m bench.keys --backends {args.backends} --jobs {args.jobs} --runs "
        f"{args.runs}`: one job per call, medians of {args.runs} interleaved runs, jobs/s.",
        "",
        "| backend | plain | with a key | duplicate | plain / keyed (cost of a key) |",
        "|---|---|---|---|---|",
    ]
    for backend, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in KINDS}
        cost = med["plain"] / med["keyed"]
        lines.append(
            f"| {backend} | {med['plain']:,.0f} | {med['keyed']:,.0f} | "
            f"{med['duplicate']:,.0f} | {cost:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.report.write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
