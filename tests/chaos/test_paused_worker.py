"""A handler that outlives its lease: its worker is paused with SIGSTOP while the job
runs, the lease lapses, another worker runs the job again; then SIGCONT, and the
paused worker's late outcome is refused. The accounting stays exact (docs/rules.md rule 6).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

import conveyor
from conveyor import JobState
from conveyor._proto.examples.shop_pb2 import Step

from .app import LEASE, read_journal
from .fleet import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def until(predicate: object, what: str, timeout: float = 30.0) -> None:
    stop = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < stop, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_paused_workers_late_outcome_is_refused(
    server_url: str, namespace: str, tmp_path: Path
) -> None:
    config = conveyor.Config(url=server_url, namespace=namespace)
    fleet = Fleet(server_url, namespace, tmp_path, size=2)
    slow = Step(name="slow", sleep_seconds=3 * LEASE)
    tree = Step(name="parent", children=[slow], heirs=[Step(name="after")])
    async with conveyor.AsyncClient(config) as client:
        await client.storage()
        fleet.start()
        try:
            parent = await client.enqueue(tree)

            def starts_of(name: str) -> list[tuple[str, str]]:
                runs = read_journal(str(fleet.journal))["starts"]
                return [
                    (job_id, rest.split(" ", 1)[0])
                    for job_id, items in runs.items()
                    for _, rest in items
                    if rest.endswith(f" {name}")
                ]

            await until(lambda: starts_of("slow"), "the slow job to start")
            [(slow_id, first_pid)] = starts_of("slow")
            paused = next(p for p in fleet.procs if p.pid == int(first_pid))
            paused.send_signal(signal.SIGSTOP)
            try:
                # The lease lapses; the other worker recovers the job and runs it.
                await until(lambda: len(starts_of("slow")) == 2, "the slow job to run again")
                assert len({pid for _, pid in starts_of("slow")}) == 2  # another worker
                done = await client.wait(parent.id, timeout=60)
            finally:
                paused.send_signal(signal.SIGCONT)
            assert done.state is JobState.SUCCEEDED
            # The paused worker wakes, finishes its run, and is told no.
            log = tmp_path / f"worker-{fleet.everyone.index(paused)}.log"
            await until(
                lambda: (
                    f"job {slow_id} abandoned: its lease was lost" in log.read_text()
                    or f"outcome for job {slow_id} refused" in log.read_text()
                ),
                "the paused worker's late outcome to be refused",
            )
        finally:
            fleet.stop()
        job = await client.get(slow_id)
        assert job is not None and job.state is JobState.SUCCEEDED
        assert job.lost_count == 1
        storage = await client.storage()
        minutes = await storage.counters(minutes=10)
        assert sum(m.succeeded for m in minutes) == 3  # parent, slow, after: once each
        assert sum(m.failed for m in minutes) == 0
    journal = read_journal(str(fleet.journal))
    after = [r for r in journal["starts"].values() for _, rest in r if rest.endswith(" after")]
    assert len(after) == 1
