"""The benchmark's worker process: one ``conveyor.Worker`` with one async ``BasicJob`` handler.

    python -m bench.worker_app --url redis://127.0.0.1:6379/14 --namespace NS \\
        --concurrency 10 --out /tmp/w.json

What the handler does is chosen by ``BasicJob.name``:

- ``noop``   (W2) nothing.
- ``lat``    (W3) records ``start - count``: ``count`` is the producer's ``time.time()`` in
  microseconds taken just before it called ``enqueue``.
- ``parent`` (W4) declares ``count`` children (``child``) and one heir (``heir``).
- ``child``  (W4) records its start time (first and last).
- ``heir``   (W4) records its start time.
- ``bigparent`` (W6) as ``parent``, flushing its declarations every ``FLUSH_EVERY``.

The process prints ``CLAIMING <time.time()>`` on stdout when the worker first calls
``Storage.claim`` (the harness waits for it), and on SIGTERM stops gracefully (the worker's
own signal handling, as in ``run_sync()``), then writes everything it recorded to ``--out``
as JSON: latencies, the W4 times, how often it called each storage operation, and its RSS
at the first claim and its peak RSS (``VmHWM``).

On the SQL backends, ``--count-sql`` counts the statements, commits and pool checkouts of
the worker's engine (``bench.sqlcount``) from its first claim until the ``--expect``-th
outcome has been settled (or until it stops, for one of several processes that settles
fewer), and writes that delta too. ``--hold`` makes the first claim wait
for a line on stdin (the harness's wire census starts its count in between).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob

from . import sqlcount
from .peers.bodies import run_async as run_body

FLUSH_EVERY = 1000  # W6: declarations staged per ctx.flush()


def rss_kib() -> int:
    """The process's resident set now (Linux ``/proc``), in KiB; 0 where unavailable."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss_kib() -> int:
    """This process's own peak resident set (``VmHWM``), in KiB.

    Not ``ru_maxrss``: Linux folds the peak of the memory image an ``exec`` replaces
    into it, and a child spawned by vfork (as asyncio's subprocesses are) replaced
    its parent's, so ``ru_maxrss`` reported the harness's peak whenever that was the
    larger (measured: 72 MiB against this process's own 58 with PostgreSQL in the
    harness's plan, 58 against 58 without).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Recorder:
    """What the handler and the storage wrapper observed, written out at stop."""

    def __init__(self) -> None:
        self.first_claim: float | None = None
        self.latencies_us: list[int] = []
        self.parent_start: float | None = None
        self.parent_declared: float | None = None
        self.child_first: float | None = None
        self.child_last: float | None = None
        self.children = 0
        self.heir_start: float | None = None
        self.calls: Counter[str] = Counter()
        self.expect = 0
        self.hold = False
        self.counter: Any = None
        self.sql_start: dict[str, Any] | None = None
        self.sql_counts: dict[str, Any] | None = None
        self.expected_at: float | None = None
        self.rss_at_first_claim_kib = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "first_claim": self.first_claim,
            "latencies_us": self.latencies_us,
            "parent_start": self.parent_start,
            "parent_declared": self.parent_declared,
            "child_first": self.child_first,
            "child_last": self.child_last,
            "children": self.children,
            "heir_start": self.heir_start,
            "calls": dict(self.calls),
            "sql_counts": self.sql_counts,
            "expected_at": self.expected_at,
            "stopped": time.time(),
            "rss_at_first_claim_kib": self.rss_at_first_claim_kib,
            "peak_rss_kib": peak_rss_kib(),
        }


class CountingStorage:
    """Delegates to the real storage; notes the first claim and counts operations.

    Only the harness's view: one extra coroutine frame per call, nothing else.
    """

    def __init__(self, inner: Any, recorder: Recorder) -> None:
        self._inner = inner
        self._rec = recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def claim(
        self, worker_id: str, queues: Sequence[str], limit: int, lease: float, wait: float
    ) -> Any:
        rec = self._rec
        if rec.first_claim is None:
            rec.first_claim = time.time()
            rec.rss_at_first_claim_kib = rss_kib()
            print(f"CLAIMING {rec.first_claim!r}", flush=True)
            if rec.hold:  # wait (bounded) for the harness's "go"
                loop = asyncio.get_running_loop()
                await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), 60)
            if rec.counter is not None:
                rec.sql_start = rec.counter.snapshot()
        claimed = await self._inner.claim(worker_id, queues, limit, lease, wait)
        rec.calls["claim"] += 1
        rec.calls["claim_limit_sum"] += limit
        rec.calls["claimed_jobs"] += len(claimed)
        if not claimed:
            rec.calls["claim_empty"] += 1
        return claimed

    async def record(self, outcomes: Sequence[Any]) -> Any:
        rec = self._rec
        rec.calls["settle"] += 1
        result = await self._inner.record(outcomes)
        rec.calls["settled_outcomes"] += len(outcomes)
        if rec.expected_at is None and rec.expect and rec.calls["settled_outcomes"] >= rec.expect:
            rec.expected_at = time.time()
            if rec.counter is not None and rec.sql_start is not None:
                rec.sql_counts = sqlcount.delta(rec.sql_start, rec.counter.snapshot())
        return result

    async def stage(self, lease: Any, declarations: Sequence[Any]) -> Any:
        self._rec.calls["stage"] += 1
        self._rec.calls["staged_declarations"] += len(declarations)
        return await self._inner.stage(lease, declarations)

    async def maintain(self) -> Any:
        self._rec.calls["maintain"] += 1
        return await self._inner.maintain()

    async def renew(self, leases: Sequence[Any], lease: float) -> Any:
        self._rec.calls["renew"] += 1
        return await self._inner.renew(leases, lease)

    async def register_worker(self, info: Any, ttl: float) -> Any:
        self._rec.calls["register_worker"] += 1
        return await self._inner.register_worker(info, ttl)


def build_worker(
    config: conveyor.Config, storage: Any, concurrency: int, recorder: Recorder
) -> conveyor.Worker:
    worker = conveyor.Worker(config, concurrency=concurrency, storage=storage)
    rec = recorder

    @worker.handler
    async def handle(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        now = time.time()
        name = msg.name
        if name == "noop":
            await run_body(msg.count)  # $BENCH_BODY: nothing, a Redis round trip, or CPU
            return
        if name == "lat":
            rec.latencies_us.append(int(now * 1_000_000) - msg.count)
        elif name == "child":
            rec.children += 1
            if rec.child_first is None:
                rec.child_first = now
            rec.child_last = now
            await run_body(rec.children)
        elif name == "heir":
            rec.heir_start = now
        elif name == "parent":
            rec.parent_start = now
            for _ in range(msg.count):
                ctx.enqueue_child(BasicJob(name="child"))
            ctx.enqueue_heir(BasicJob(name="heir"))
            rec.parent_declared = time.time()
        elif name == "bigparent":
            rec.parent_start = now
            for i in range(msg.count):
                ctx.enqueue_child(BasicJob(name="child"))
                if i % FLUSH_EVERY == FLUSH_EVERY - 1:
                    await ctx.flush()  # staged while the handler runs: bounded memory
            ctx.enqueue_heir(BasicJob(name="heir"))
            rec.parent_declared = time.time()

    return worker


async def amain(args: argparse.Namespace, recorder: Recorder) -> None:
    config = conveyor.Config(url=args.url, namespace=args.namespace)
    client = conveyor.AsyncClient(config)
    inner = await client.storage()
    if args.count_sql:
        recorder.counter = sqlcount.SQLCounter().attach(inner)
    try:
        worker = build_worker(config, CountingStorage(inner, recorder), args.concurrency, recorder)
        # Worker.run() installs the SIGTERM/SIGINT handlers (run_sync() is asyncio.run(run())).
        await worker.run()
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--out", required=True, help="JSON file written when the worker stops")
    parser.add_argument("--expect", type=int, default=0, help="outcomes that end the count")
    parser.add_argument("--count-sql", action="store_true", help="count SQL statements")
    parser.add_argument("--hold", action="store_true", help="first claim waits for stdin")
    args = parser.parse_args(argv)
    recorder = Recorder()
    recorder.expect = args.expect
    recorder.hold = args.hold
    try:
        asyncio.run(amain(args, recorder))
    finally:
        rec = recorder
        if rec.sql_counts is None and rec.counter is not None and rec.sql_start is not None:
            # One of a fleet settles fewer than --expect: it counts until it stops.
            rec.sql_counts = sqlcount.delta(rec.sql_start, rec.counter.snapshot())
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(recorder.to_json(), fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
