"""One chaos run: a fleet of real workers, families enqueued as it goes, a fault every
1-3 s for a while, then the dust settles and everything is checked.

The fault is the caller's: SIGKILL a worker, restart the server, kill connections.
Each run writes its figures to ``test-output/chaos/<name>.json`` and prints them.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import conveyor

from .app import read_journal
from .checks import SETTLED, check
from .families import family, size
from .fleet import Fleet

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "chaos"
FAMILY_EVERY = 10.0  # seconds between new families while the faults go on
SETTLE_WITHIN = 240.0  # seconds, after the faults stop
Fault = Callable[[random.Random, Fleet], Awaitable[str]]


@dataclass
class Run:
    name: str
    seed: int
    seconds: float
    faults: dict[str, int] = field(default_factory=dict)
    families: dict[str, int] = field(default_factory=dict)  # tag -> jobs in it
    roots: list[str] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)  # tags whose enqueue raised
    peak_running: int = 0  # the most jobs seen running at once (sampled)


async def patiently(what: Callable[[], Awaitable[Any]], limit: float = 60.0) -> Any:
    """Call ``what`` until the storage answers (the server may be down right now)."""
    stop = time.monotonic() + limit
    while True:
        try:
            return await what()
        except conveyor.BackendUnavailable:
            if time.monotonic() > stop:
                raise
            await asyncio.sleep(0.2)


async def open_jobs(client: conveyor.AsyncClient, run: Run | None = None) -> int:
    """Jobs not settled yet, in every queue (held heirs included); notes the most
    seen running at once."""
    storage = await client.storage()
    stats = await patiently(storage.queue_stats)
    if run is not None:
        running = sum(q.count(conveyor.JobState.RUNNING) for q in stats)
        run.peak_running = max(run.peak_running, running)
    return sum(n for q in stats for state, n in q.counts.items() if state not in SETTLED)


async def wait_registered(client: conveyor.AsyncClient, fleet: Fleet, limit: float = 60) -> None:
    """Faults start once every worker has connected and registered: a worker that cannot
    reach the server at start-up exits by design (its supervisor restarts it), which is
    not what these scenarios test."""
    storage = await client.storage()
    deadline = time.monotonic() + limit
    while len(await storage.workers()) < fleet.size:
        fleet.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"the workers did not register within {limit:.0f}s")
        await asyncio.sleep(0.1)


async def run_scenario(
    name: str,
    url: str,
    namespace: str,
    folder: Path,
    *,
    seconds: float,
    fault: Fault,
    seed: int,
    heal: Callable[[], Awaitable[None]] | None = None,
    max_running: int = 0,
) -> dict[str, Any]:
    """Run the fleet under ``fault`` for ``seconds``; returns the figures, and raises
    with every problem the checks found. With ``max_running``, the workers limit their
    queue to it (rule 14), and more running at once, sampled all along, is a problem."""
    rng = random.Random(seed)
    run = Run(name, seed, seconds)
    config = conveyor.Config(url=url, namespace=namespace)
    fleet = Fleet(url, namespace, folder, CHAOS_MAX_RUNNING=str(max_running))
    async with conveyor.AsyncClient(config) as client:
        await client.storage()  # the schema exists before three workers race to make it
        fleet.start()
        try:
            await wait_registered(client, fleet)
            began = time.monotonic()
            next_family = began
            next_fault = began + rng.uniform(1, 3)
            while (now := time.monotonic()) < began + seconds:
                fleet.check_alive()
                if now >= next_family and now < began + seconds * 0.7:
                    tag = f"f{len(run.families)}"
                    tree = family(tag, rng, doomed=len(run.families) % 2 == 1)
                    run.families[tag] = size(tree)
                    try:
                        run.roots.append((await client.enqueue(tree)).id)
                    except conveyor.BackendUnavailable:
                        run.uncertain.append(tag)  # stored or not: the checks look
                    next_family += FAMILY_EVERY
                if now >= next_fault:
                    kind = await fault(rng, fleet)
                    run.faults[kind] = run.faults.get(kind, 0) + 1
                    next_fault = time.monotonic() + rng.uniform(1, 3)
                if max_running:
                    await open_jobs(client, run)
                await asyncio.sleep(0.05)
            if heal is not None:
                await heal()
            stop = time.monotonic() + SETTLE_WITHIN
            while await open_jobs(client, run):
                fleet.check_alive()
                assert time.monotonic() < stop, f"families not settled {SETTLE_WITHIN:.0f} s after"
                await asyncio.sleep(0.5)
        finally:
            fleet.stop()
        storage = await client.storage()
        findings = await check(storage, read_journal(str(fleet.journal)), run)
    figures = {
        "scenario": name,
        "backend": url.split(":", 1)[0].split("+", 1)[0],
        "seed": seed,
        "seconds_of_faults": seconds,
        "faults": run.faults,
        "worker_starts": fleet.starts,
        "workers_forced_at_stop": len(fleet.forced),
        "enqueues_uncertain": len(run.uncertain),
        "max_running": max_running,
        "peak_running": run.peak_running,
        **findings.figures,
    }
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"{name}.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    assert not findings.problems, "\n".join(findings.problems)
    if max_running:
        assert run.peak_running <= max_running, f"{run.peak_running} running, limit {max_running}"
    assert not fleet.forced, f"workers {fleet.forced} ignored SIGTERM"
    assert sum(run.faults.values()) >= seconds / 3 - 1, "fewer faults than planned"
    assert figures["families_settled"] == figures["families"] >= len(run.roots)
    return figures
