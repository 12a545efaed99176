"""One chaos run: a fleet of real workers, families enqueued as it goes, a fault every
1-3 s for a while, then the dust settles and everything is checked.

The fault is the caller's: SIGKILL a worker, restart the server, kill connections.
Each run writes its figures to ``test-output/chaos/<name>.json`` and prints them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import conveyor
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.core.storage import JobFilter

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
    # Rule 15: per key, (enqueue returned at, job id) of each enqueue that took it.
    key_takes: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    duplicates: int = 0
    keyed_enqueues: int = 0
    peak_key_holders: int = 0  # the most open jobs seen with one key at once (sampled)


KEYED_SLEEP = 0.3  # seconds a keyed job runs: long enough for enqueues to find it held


async def enqueue_keyed(client: conveyor.AsyncClient, run: Run, keys: int) -> None:
    """One job with one of ``keys`` unique keys (rule 15); a family of one, when stored."""
    tag, key = f"k{run.keyed_enqueues}", f"slot-{run.keyed_enqueues % keys}"
    run.keyed_enqueues += 1
    step = Step(name=f"{tag}/root", sleep_seconds=KEYED_SLEEP)
    run.families[tag] = 1
    try:
        job = await client.enqueue(step, key=key)
    except conveyor.BackendUnavailable:
        run.uncertain.append(tag)  # the check keeps it if it was stored
        return
    if job.duplicate:
        run.families.pop(tag)
        run.duplicates += 1
        return
    run.roots.append(job.id)
    run.key_takes.setdefault(key, []).append((time.time(), job.id))


async def key_holders(client: conveyor.AsyncClient, run: Run) -> None:
    """Notes the most open jobs seen holding one key at once."""
    storage = await client.storage()
    held: dict[str, set[str]] = {}
    for state in (conveyor.JobState.QUEUED, conveyor.JobState.RUNNING):
        page = await patiently(lambda s=state: storage.list_jobs(JobFilter(state=s), limit=1000))
        for job in page.jobs:
            if job.key is not None:  # by id: a job may be read queued, then running
                held.setdefault(job.key, set()).add(job.id)
    run.peak_key_holders = max([run.peak_key_holders, *map(len, held.values())])


def keys_held_twice(run: Run, finished: dict[str, float | None]) -> list[str]:
    """Rule 15 over the whole run: each job that took a key did so after the one before
    it had settled (its ``finished_at`` is before the later enqueue returned)."""
    problems = []
    for key, takes in run.key_takes.items():
        for (_, earlier), (returned, later) in itertools.pairwise(takes):
            settled = finished.get(earlier)
            if settled is None or settled > returned:
                problems.append(f"key {key}: {later} took it while {earlier} held it")
    return problems


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
    keys: int = 0,
    min_faults: int | None = None,
) -> dict[str, Any]:
    """Run the fleet under ``fault`` for ``seconds``; returns the figures, and raises
    with every problem the checks found. With ``max_running``, the workers limit their
    queue to it (rule 14), and more running at once, sampled all along, is a problem.
    With ``keys``, jobs with that many unique keys (rule 15) are enqueued all along too,
    and a key held by two jobs at once is a problem. ``min_faults`` is how many faults
    the run must have made (by default, one per 3 s but one)."""
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
                if keys and now < began + seconds * 0.7:
                    await enqueue_keyed(client, run, keys)
                    await key_holders(client, run)
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
        taken = [job_id for takes in run.key_takes.values() for _, job_id in takes]
        finished = {
            job_id: job.finished_at.timestamp() if job and job.finished_at else None
            for job_id in taken
            for job in [await storage.get(job_id)]
        }
        for problem in keys_held_twice(run, finished):
            findings.problem(problem)
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
        "keys": keys,
        "keyed_jobs": len(taken),
        "keyed_duplicates": run.duplicates,
        "peak_key_holders": run.peak_key_holders,
        **findings.figures,
    }
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"{name}.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    assert not findings.problems, "\n".join(findings.problems)
    if max_running:
        assert run.peak_running <= max_running, f"{run.peak_running} running, limit {max_running}"
    if keys:
        assert run.peak_key_holders <= 1, f"{run.peak_key_holders} open jobs held one key"
        assert run.duplicates > 0 and len(taken) > keys, "the keys were never contended"
    assert not fleet.forced, f"workers {fleet.forced} ignored SIGTERM"
    planned = seconds / 3 - 1 if min_faults is None else min_faults
    assert sum(run.faults.values()) >= planned, "fewer faults than planned"
    assert figures["families_settled"] == figures["families"] >= len(run.roots)
    return figures
