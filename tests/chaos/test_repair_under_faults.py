"""Repair under worker crashes: families whose leaves fail for good settle failed; the
cause is fixed and every family is repaired with ``retry_failed`` while a worker is
SIGKILLed every 1-3 s; afterwards every family has succeeded, every heir ran exactly
once in the accounting (re-armed ones after the repair, SETTLED ones only before it),
and the counters add up (docs/rules.md rules 6, 7 and 8).

``CHAOS_REPAIR_SECONDS`` sets how long the killing goes on (12 in CI; ``nox -s chaos`` runs 300).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path

import pytest

import conveyor
from conveyor import JobState

from .app import CURED_ENV, read_journal
from .checks import all_jobs, check, name_of
from .families import family, size
from .fleet import Fleet
from .scenario import OUTPUT, Run, open_jobs, wait_registered

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SECONDS = float(os.environ.get("CHAOS_REPAIR_SECONDS", "12"))
FAMILIES = 3
SETTLE_WITHIN = 240.0


async def _settle(client: conveyor.AsyncClient, fleet: Fleet) -> None:
    stop = time.monotonic() + SETTLE_WITHIN
    while await open_jobs(client):
        fleet.check_alive()
        assert time.monotonic() < stop, f"families not settled within {SETTLE_WITHIN:.0f} s"
        await asyncio.sleep(0.5)


async def test_families_repaired_while_workers_are_killed_settle_exactly_once(
    server_url: str, namespace: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CHAOS_SEED", str(time.time_ns() % 1_000_000)))
    rng = random.Random(seed)
    backend = server_url.split(":", 1)[0].split("+", 1)[0]
    cured_file = tmp_path / "cured.txt"
    run = Run(f"repair-{backend}", seed, SECONDS)
    fleet = Fleet(server_url, namespace, tmp_path, **{CURED_ENV: str(cured_file)})
    config = conveyor.Config(url=server_url, namespace=namespace)
    async with conveyor.AsyncClient(config) as client:
        storage = await client.storage()
        fleet.start()
        try:
            await wait_registered(client, fleet)
            for i in range(FAMILIES):  # every one doomed: a few subs hold a leaf failing for good
                tree = family(f"f{i}", rng, doomed=True, branches=4, subs=6, leaves=6)
                run.families[f"f{i}"] = size(tree)
                run.roots.append((await client.enqueue(tree)).id)
            await _settle(client, fleet)
            jobs = await all_jobs(storage)
            failed = frozenset(j.id for j in jobs if j.state is JobState.FAILED)
            broken = [name_of(j) for j in jobs if j.id in failed and _leaf(name_of(j))]
            starts = {
                job_id: len(s) for job_id, s in read_journal(str(fleet.journal))["starts"].items()
            }
            cured_file.write_text("\n".join(broken) + "\n")  # the fix, before the repair

            kills = 0
            began = time.monotonic()
            repaired: list[conveyor.Job] = []
            pending = list(run.roots)
            while time.monotonic() < began + SECONDS:
                fleet.check_alive()
                if pending:
                    repaired += await client.retry_failed(pending.pop())
                fleet.kill_one(rng)
                kills += 1
                await asyncio.sleep(rng.uniform(1, 3))
            for root in pending:  # a short run: repair what is left
                repaired += await client.retry_failed(root)
            await _settle(client, fleet)
        finally:
            fleet.stop()
        findings = await check(
            storage,
            read_journal(str(fleet.journal)),
            run,
            before_repair=starts,
            failed_before_repair=failed,
        )
        roots = [await client.get(r) for r in run.roots]
    figures = {
        "scenario": run.name,
        "seed": seed,
        "seconds_of_faults": SECONDS,
        "kills": kills,
        "failed_before_repair": len(failed),
        "leaves_repaired": len(repaired),
        **findings.figures,
    }
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"{run.name}.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    assert not findings.problems, "\n".join(findings.problems)
    assert sorted(j.id for j in repaired) == sorted(j for j in failed if _leaf(name_of_id(jobs, j)))
    assert all(r is not None and r.state is JobState.SUCCEEDED for r in roots)
    assert findings.figures["heirs_cancelled"] == 0  # every re-armed heir ran


def _leaf(name: str) -> bool:
    """Leaves are named ``<tag>/b<i>/s<j>/l<k>`` (tests/chaos/families.py)."""
    return name.rsplit("/", 1)[-1].startswith("l")


def name_of_id(jobs: list[conveyor.Job], job_id: str) -> str:
    return next(name_of(j) for j in jobs if j.id == job_id)
