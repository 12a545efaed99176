"""bench.capacity's report: every variant gets its row, ratios are to the same variant on
one shard, and the model's column uses the one-shard, one-namespace cost."""

from __future__ import annotations

import argparse

from bench.capacity import Measure, report


def test_the_report_sets_each_variant_beside_its_one_shard_run() -> None:
    found = {
        (1, 1, False): [Measure(1000.0, 100.0, 36.0, 0.10, 1000.0)] * 2,
        (3, 1, False): [Measure(1100.0, 110.0, 36.0, 0.11, 1100.0)] * 2,
        (1, 3, False): [Measure(2000.0, 100.0, 36.0, 0.20, 2000.0)] * 2,
        (3, 3, False): [Measure(3000.0, 120.0, 36.0, 0.12, 1000.0)] * 2,
        (1, 1, True): [Measure(1500.0, 100.0, 36.0, 0.15, 1500.0)] * 2,
        (3, 1, True): [Measure(1800.0, 130.0, 36.2, 0.07, 600.0)] * 2,
    }
    postgres = {
        "direct": [{"rate": 500.0, "server_us": 230.0, "bouncer_us": 0.0}],
        "pgbouncer": [{"rate": 450.0, "server_us": 210.0, "bouncer_us": 45.0}],
    }
    text = report(found, postgres, argparse.Namespace(jobs=100, rounds=2))
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert "| 1 | 1 | 1,000 | 1.00x | 100.0 | 36.0 | 10% of a core | 10% |" in rows
    assert "| 3 | 3 | 3,000 | 1.50x | 120.0 | 36.0 | 12% of a core | 10% |" in rows
    spread = "| 3 | 1 spread (3 workers, shards=3) | 1,800 | 1.20x | 130.0 | 36.2 "
    assert any(row.startswith(spread) and row.endswith("| 6% |") for row in rows)
    assert "| pgbouncer | 450 | 0.90x | 210.0 | 45.0 |" in rows
