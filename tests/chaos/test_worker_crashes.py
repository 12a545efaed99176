"""Worker crashes: three real worker processes run families of ~1,000 jobs while a
driver SIGKILLs a random one every 1-3 s and starts another; afterwards nothing is
lost, no family is stranded, every heir ran when (and only when) its condition held,
and the counters add up (DESIGN §4 rules 6 and 7).

``CHAOS_SECONDS`` sets how long the killing goes on (60 in CI; ``nox -s chaos`` runs
600). Each run writes its figures to ``test-output/chaos/`` and prints them.
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

from .app import read_journal
from .checks import SETTLED, check
from .families import family, size
from .fleet import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "chaos"
SECONDS = float(os.environ.get("CHAOS_SECONDS", "60"))
FAMILY_EVERY = 10.0  # seconds between new families while the killing goes on
SETTLE_WITHIN = 240.0  # seconds, after the killing stops


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("postgres", marks=pytest.mark.postgres)])  # fmt: skip
def chaos_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


async def settled(client: conveyor.AsyncClient, ids: list[str]) -> bool:
    for job_id in ids:
        job = await client.get(job_id)
        if job is None or job.state not in SETTLED:
            return False
    return True


async def test_families_survive_workers_killed_at_random(
    chaos_url: str, namespace: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CHAOS_SEED", str(time.time_ns() % 1_000_000)))
    rng = random.Random(seed)
    config = conveyor.Config(url=chaos_url, namespace=namespace)
    fleet = Fleet(chaos_url, namespace, tmp_path)
    roots: list[str] = []
    expected = 0
    async with conveyor.AsyncClient(config) as client:
        await client.storage()  # the schema exists before three workers race to make it
        fleet.start()
        try:
            began = time.monotonic()
            next_family = began
            next_kill = began + rng.uniform(1, 3)
            while (now := time.monotonic()) < began + SECONDS:
                fleet.check_alive()
                if now >= next_family and now < began + SECONDS * 0.7:
                    tree = family(f"f{len(roots)}", rng, doomed=len(roots) % 2 == 1)
                    expected += size(tree)
                    roots.append((await client.enqueue(tree)).id)
                    next_family += FAMILY_EVERY
                if now >= next_kill:
                    fleet.kill_one(rng)
                    next_kill = now + rng.uniform(1, 3)
                await asyncio.sleep(0.05)
            # The dust settles: no more kills; every family must settle.
            stop = time.monotonic() + SETTLE_WITHIN
            while not await settled(client, roots):
                fleet.check_alive()
                assert time.monotonic() < stop, f"families not settled {SETTLE_WITHIN:.0f} s after"
                await asyncio.sleep(0.5)
            # A settled root whose heirs stayed open would be a stranded family: every
            # job must be settled, which the checks below say job by job.
        finally:
            fleet.stop()
        storage = await client.storage()
        findings = await check(storage, read_journal(str(fleet.journal)), expected, roots)

    backend = chaos_url.split(":", 1)[0].split("+", 1)[0]
    figures = {
        "backend": backend,
        "seed": seed,
        "seconds_of_kills": SECONDS,
        "kills": fleet.kills,
        "worker_starts": fleet.starts,
        **findings.figures,
    }
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"worker-crashes-{backend}.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    assert fleet.kills >= SECONDS / 3 - 1, "the driver did not kill as often as it should"
    assert not findings.problems, "\n".join(findings.problems)
    assert findings.figures["families_settled"] == len(roots)
    assert findings.figures["states"].get(JobState.SUCCEEDED.value, 0) > 0
