"""procrastinate on PostgreSQL (psycopg 3, ``PsycopgConnector``): ``Task.defer_async`` /
``Task.batch_defer_async`` (one statement per batch), no fan-in.

Enqueue: ``noop.defer_async(index=i, pad=pad)``, one ``SELECT procrastinate_defer_jobs_v1``
statement per job; batches: ``noop.batch_defer_async(*kwargs)``, which sends the whole
batch as one array argument of that same statement (one statement, one transaction).
Either way each call also costs the pool's connection check and psycopg's ``BEGIN`` and
``COMMIT``: four round trips a call, per job or per batch.

``open`` points the module's ``app`` at the fresh database (``App.replace_connector``: the
driver process has no ``$BENCH_URL``), opens it (``App.open_async``: psycopg's pool with
procrastinate's defaults) and creates procrastinate's tables with the library's own
``app.schema_manager.apply_schema_async()``. ``queued`` counts the ``procrastinate_jobs``
rows with status ``todo``.

Default worker: ``python -m procrastinate --app bench.peers.procrastinate_peer.app worker``
with procrastinate's defaults (``concurrency=1``; ``LISTEN``/``NOTIFY`` on, polling every
5 s as a fallback; finished jobs kept, no ``--delete-jobs``). Tuned: the same with
``--concurrency 30``, the best one-process setting found for no-op jobs: the worker fetches
one job per query, one fetch at a time, so concurrency only overlaps the next fetch with
the previous job's completion; 10, 30 and 100 drained alike (within noise), all above 1.
Both log at WARNING (``--log-level warning``), as the other peers run quiet:
procrastinate's CLI logs at INFO, two lines per job. ``noop`` is an ``async`` task:
procrastinate's worker is an asyncio loop that would run a synchronous task in a thread.

Fan-in: none. procrastinate has no construct that starts a job after a group of jobs
(no dependencies, chains or chords; procrastinate-org/procrastinate#1198 asks for one),
so W4 reports ``unsupported`` rather than an orchestrating task of our own.

The worker stops on SIGTERM: procrastinate's SIGINT/SIGTERM handlers stop fetching, wait
for running jobs and unregister the worker (it exits in well under a second).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

import procrastinate
from procrastinate import PsycopgConnector

from .base import Peer, Place
from .bodies import run_async
from .ledger import record

#: The worker process's app: ``$BENCH_URL`` is its place (unset in the driver process,
#: whose ``open`` gives the app a connector of its own).
app = procrastinate.App(connector=PsycopgConnector(conninfo=os.environ.get("BENCH_URL", "")))


@app.task(name="noop")
async def noop(index: int, pad: str = "") -> None:
    record(index)
    await run_async(index)


class ProcrastinatePeer(Peer):
    name = "procrastinate"
    package = "procrastinate"
    backend = "postgres"
    default_concurrency = 1
    tuned_concurrency = 30

    async def open(self, place: Place) -> None:
        await super().open(place)
        self.stack = contextlib.AsyncExitStack()
        try:
            self.stack.enter_context(app.replace_connector(PsycopgConnector(conninfo=place.url)))
            await self.stack.enter_async_context(app.open_async())
            await app.schema_manager.apply_schema_async()
        except BaseException:
            await self.stack.aclose()
            raise

    async def close(self) -> None:
        await self.stack.aclose()

    async def enqueue(self, indices: Sequence[int], pad: str = "") -> None:
        for i in indices:
            await noop.defer_async(index=i, pad=pad)

    async def enqueue_batch(self, indices: Sequence[int], size: int, pad: str = "") -> None:
        for at in range(0, len(indices), size):
            await noop.batch_defer_async(
                *({"index": i, "pad": pad} for i in indices[at : at + size])
            )

    async def queued(self) -> int:
        row = await app.connector.execute_query_one_async(
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'todo'"
        )
        return int(row["n"])

    def worker_argv(self, tuned: bool) -> list[str]:
        argv = ["-m", "procrastinate", "--log-level", "warning", "--app", f"{__name__}.app"]
        argv.append("worker")
        return [*argv, "--concurrency", str(self.tuned_concurrency)] if tuned else argv


PEER = ProcrastinatePeer()
