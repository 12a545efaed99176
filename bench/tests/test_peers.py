"""The peers' bookkeeping: the exactly-once ledger and the targets stated against peers.

Pure logic, no servers: the peers themselves run only in ``nox -s bench``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bench import peer_report
from bench.peers import ledger
from bench.run import plan


@pytest.fixture
def book(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ledger.Ledger:
    monkeypatch.setenv(ledger.ENV, str(tmp_path / "ledger"))
    made = ledger.Ledger(tmp_path / "ledger")
    monkeypatch.setattr(ledger, "_fd", None)
    return made


def test_the_ledger_counts_each_start_and_finds_repeats_gaps_and_strangers(
    book: ledger.Ledger,
) -> None:
    for index in (0, 1, 2, 2, 7):
        ledger.record(index)
    assert book.count() == 5
    check = book.check({0, 1, 2, 3})
    assert check.as_dict() == {
        "expected": 4,
        "ran": 5,
        "missing": 1,  # 3
        "duplicated": 1,  # 2 twice
        "unexpected": 1,  # 7
        "exactly_once": False,
    }


def test_a_cleared_ledger_keeps_counting_for_a_worker_that_has_it_open(
    book: ledger.Ledger,
) -> None:
    ledger.record(0)
    book.clear()
    assert book.count() == 0
    ledger.record(1)  # the same open file, appended after the truncation
    assert book.check({1}).exactly_once
    assert len(os.listdir(book.folder)) == 1


def _data(medians: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """A results document with one run per figure."""
    peers = {
        "dramatiq": {"backend": "redis", "title": "Dramatiq", "package": "dramatiq"},
        "arq": {"backend": "redis", "title": "arq", "package": "arq"},
        "procrastinate": {
            "backend": "postgres",
            "title": "procrastinate",
            "package": "procrastinate",
        },
    }
    measurements = {
        system: {name: [dict(figures, run=1)] for name, figures in by.items()}
        for system, by in medians.items()
    }
    return {"meta": {"peers": peers, "versions": {}}, "measurements": measurements}


def test_peer_targets_compare_with_the_best_peer_and_w5_with_redis_peers_only() -> None:
    data = _data(
        {
            "redis": {
                "w2_default": {"jobs_per_s": 8000.0},
                "w5": {"bytes_per_job": 470.0},
                "w1_single": {"jobs_per_s": 5000.0},
            },
            "postgres": {"w2_default": {"jobs_per_s": 900.0}},
            "dramatiq": {
                "w2_default": {"jobs_per_s": 2000.0},
                "w5": {"bytes_per_job": 495.0},
                "w1_single": {"jobs_per_s": 6000.0},
            },
            "arq": {
                "w2_default": {"jobs_per_s": 1000.0},
                "w5": {"bytes_per_job": 480.0},
                "w1_single": {"jobs_per_s": 4000.0},
            },
            "procrastinate": {
                "w2_default": {"jobs_per_s": 300.0},
                "w5": {"bytes_per_job": 300.0},  # a table's size: not compared with memory
            },
        }
    )
    rows = {row["label"]: row for row in peer_report.peer_targets(data)}
    w2 = rows["Redis W2 default >= 4x the best peer's default"]
    assert w2["other"] == ("dramatiq", 2000.0)
    assert w2["times"] == pytest.approx(4.0)
    assert w2["verdict"] == "met"
    w5 = rows["Redis W5 not above the best Redis peer"]
    assert w5["other"] == ("arq", 480.0)
    assert w5["verdict"] == "met"
    w1 = rows["Redis W1 one at a time not below the best peer"]
    assert w1["times"] == pytest.approx(5000 / 6000)
    assert w1["verdict"] == "MISSED"
    pg = rows["PostgreSQL W2 default >= 5x procrastinate's default"]
    assert pg["times"] == pytest.approx(3.0)
    assert pg["verdict"] == "MISSED"
    assert rows["Redis W4 >= 3x faster than the fastest peer construct"]["verdict"] == (
        "not measured"
    )


def test_a_peer_without_a_figure_is_left_out_of_the_best() -> None:
    data = _data(
        {
            "redis": {"w1_batched": {"jobs_per_s": 10000.0}},
            "dramatiq": {"w1_batched": {"unsupported": "no batch enqueue"}},  # type: ignore[dict-item]
            "arq": {"w1_batched": {"error": "not exactly once"}},  # type: ignore[dict-item]
        }
    )
    rows = {row["label"]: row for row in peer_report.peer_targets(data)}
    assert rows["Redis W1 batched not below the best peer"]["verdict"] == "not measured"


def test_the_plan_interleaves_peers_and_keeps_w6_to_conveyor() -> None:
    items = plan(["redis", "postgres"], ["w4", "w6"], baselines=False, peers=["rq", "celery"])
    assert items == ["redis/w4", "postgres/w4", "rq/w4", "celery/w4", "redis/w6"]
    both = plan(["redis", "postgres"], ["w6"], False, ["rq"], w6_backends=["redis", "postgres"])
    assert both == ["redis/w6", "postgres/w6"]
