"""Checks of the harness's own logic (no timing assertions: figures are never judged here).

pytest bench/tests            # the pure tests, and one tiny end-to-end run against Redis
pytest bench/tests -m "not redis"
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report
from bench.common import (
    commandstats_delta,
    new_namespace,
    parse_redis_benchmark,
    percentile,
    round_trips,
    summarize,
)
from bench.run import schedule

REPO = Path(__file__).resolve().parents[2]

RB_OUTPUT = (
    "LPUSH: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r"
    "LPUSH: 91240.88 requests per second, p50=0.279 msec                    \n"
    "RPOP: rps=88000.0 (overall: 88000.0) avg_msec=0.3\r"
    "RPOP: 92506.94 requests per second, p50=0.271 msec                    \n\n"
)


def test_parse_redis_benchmark_reads_the_final_lines() -> None:
    assert parse_redis_benchmark(RB_OUTPUT) == {"lpush": 91240.88, "rpop": 92506.94}


def test_namespace_is_a_valid_conveyor_namespace() -> None:
    import conveyor

    ns = new_namespace("W2-c64 tuned!")
    conveyor.Config(url="redis://127.0.0.1:6379/14", namespace=ns)  # raises if invalid
    assert ns != new_namespace("W2-c64 tuned!")


def test_summarize_and_percentile() -> None:
    s = summarize([3.0, 1.0, 2.0])
    assert (s["median"], s["min"], s["max"]) == (2.0, 1.0, 3.0)
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert summarize([])["median"] is None


def test_commandstats_delta_and_round_trips() -> None:
    before = {"evalsha": {"calls": 10, "usec": 100}, "hgetall": {"calls": 5, "usec": 5}}
    after = {
        "evalsha": {"calls": 30, "usec": 500},
        "hgetall": {"calls": 25, "usec": 25},
        "hset": {"calls": 41, "usec": 41},
        "blpop": {"calls": 2, "usec": 4},
        "info": {"calls": 1, "usec": 80},
    }
    delta = commandstats_delta(before, after)
    assert delta["evalsha"] == {"calls": 20, "usec": 400}
    counted = round_trips(delta, 10, harness={"hgetall": 4}, library_client={"hset": 1})
    # 20 EVALSHA + 2 BLPOP + 1 HSET (publish_types) = 23 round trips for 10 jobs.
    assert counted["round_trips_per_job"] == pytest.approx(2.3)
    assert counted["evalsha_per_job"] == pytest.approx(2.0)
    # HGETALL: 20 in the delta, 4 of them the harness's polls: 16 ran inside Lua.
    assert counted["lua_calls"]["hgetall"] == pytest.approx(1.6)
    assert counted["lua_calls"]["hset"] == pytest.approx(4.0)
    assert "info" not in counted["round_trips"]


def test_schedule_rotates_the_order() -> None:
    orders = schedule(list("abcdef"), 3)
    assert orders[0] == list("abcdef")
    assert [o[0] for o in orders] == ["a", "c", "e"]
    assert all(sorted(o) == list("abcdef") for o in orders)


def _fake_results() -> dict[str, object]:
    def run(n: int, **figures: object) -> dict[str, object]:
        return {"run": n, **figures}

    return {
        "meta": {"command": "python -m bench.run", "runs": 3, "settings": {"jobs": 10}},
        "measurements": {
            "raw_rtt": [run(i, pairs_per_s=1000.0 * i, lpush_per_s=2000.0 * i) for i in (1, 2, 3)],
            "w1_single": [run(i, jobs=10, jobs_per_s=5000.0 + i) for i in (1, 2, 3)],
            "w3": [
                run(1, p50_ms=1.0, p99_ms=12.0),
                run(2, p50_ms=2.0, p99_ms=8.0),
                {"run": 3, "error": "WorkloadError: boom"},
            ],
            "w5": [run(i, bytes_per_job=600.0) for i in (1, 2, 3)],
        },
    }


def test_targets_are_judged_on_the_median() -> None:
    rows = {t["label"]: t for t in report.targets(_fake_results())}
    assert rows["W1 one-at-a-time"]["verdict"] == "met"
    assert rows["W3 p50"]["verdict"] == "met"
    assert rows["W3 p99"]["stat"]["median"] == 10.0  # median of 12 and 8: the failed run drops
    assert rows["W3 p99"]["verdict"] == "MISSED"
    assert rows["W3 p99"]["runs_met"] == 1
    assert rows["W5 memory"]["verdict"] == "MISSED"
    assert rows["W4 heir start"]["verdict"] == "not measured"


def test_ratio_pairs_runs_by_round() -> None:
    r = report.ratio(_fake_results(), ("w1_single", "jobs_per_s"), ("raw_rtt", "lpush_per_s"))
    assert r["median"] == pytest.approx(5002.0 / 4000.0)
    assert r["per_run"] == pytest.approx([5001 / 2000, 5002 / 4000, 5003 / 6000])


def test_render_mentions_every_section() -> None:
    text = report.render(_fake_results())
    for needle in ("## Targets", "## Ratios", "W1 enqueue, one at a time", "MISSED", "boom"):
        assert needle in text


@pytest.mark.redis
@pytest.mark.slow
def test_a_tiny_run_end_to_end(tmp_path: Path) -> None:
    """Runs every workload once at toy sizes and checks the shape of what it wrote."""
    out, md = tmp_path / "r.json", tmp_path / "R.md"
    cmd = [sys.executable, "-m", "bench.run", "--runs", "1", "--jobs", "200"]
    cmd += ["--w3-rate", "100", "--w3-seconds", "0.5", "--w4-children", "20"]
    cmd += ["--rb-requests", "2000", "--commandstats", "--quiet-wait", "0"]
    cmd += ["--out", str(out), "--report", str(md)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    runs = data["measurements"]
    assert set(runs) >= {"w1_single", "w1_batched", "w2_default", "w2_tuned", "w3", "w4", "w5"}
    assert all("error" not in r for rs in runs.values() for r in rs)
    assert runs["w1_single"][0]["commandstats"]["evalsha_per_job"] == pytest.approx(1.0)
    assert runs["w3"][0]["jobs"] == 50
    assert runs["w4"][0]["children"] == 20
    assert "## Round trips per job" in md.read_text()
