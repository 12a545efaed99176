"""When a worker's claim waits a moment for more slots (``worker.gathers``)."""

from __future__ import annotations

import pytest

from conveyor.core.worker import gathers


@pytest.mark.parametrize(
    ("free", "running", "concurrency", "waits"),
    [
        (1, 9, 10, True),  # the one slot beside a claim of nine: wait for the nine
        (5, 5, 10, True),
        (6, 4, 10, False),  # more than half free: claim at once
        (10, 0, 10, False),  # idle: a new job's latency is untouched
        (9, 1, 10, False),  # one job running, as under a steady trickle (W3)
        (1, 0, 10, False),  # nothing running to wait for
        (1, 0, 1, False),  # concurrency 1 never waits
        (1, 1, 2, True),
        (0, 10, 10, False),  # no slot: the loop waits for one anyway
    ],
)
def test_a_claim_for_few_slots_waits_for_the_rest_of_its_group(
    free: int, running: int, concurrency: int, waits: bool
) -> None:
    assert gathers(free, running, concurrency) is waits
