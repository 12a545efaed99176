"""Checks of the harness's own logic (no timing assertions: figures are never judged here).

pytest bench/tests            # the pure tests, and one tiny end-to-end run on every backend
pytest bench/tests -m "not slow"
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report, sqlcount
from bench.common import (
    commandstats_delta,
    new_namespace,
    parse_redis_benchmark,
    percentile,
    round_trips,
    summarize,
)
from bench.pgwire import ConnStats, _Session
from bench.run import plan, schedule
from conveyor.backends.sql import pg_claim, pg_enqueue, pg_settle

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


def test_plan_alternates_the_backends() -> None:
    items = plan(["redis", "postgres", "sqlite"], ["w1", "w5"], baselines=True)
    assert items[:5] == [
        "redis/raw_rtt",
        "redis/raw_pipelined",
        "redis/redis_benchmark",
        "postgres/pg_insert",
        "postgres/pg_claim",
    ]
    assert items[5:8] == ["redis/w1_single", "postgres/w1_single", "sqlite/w1_single"]
    assert items[-3:] == ["redis/w5", "postgres/w5", "sqlite/w5"]
    assert plan(["sqlite"], ["w2"], baselines=True) == ["sqlite/w2_default", "sqlite/w2_tuned"]


def test_classify_labels_the_library_statements() -> None:
    c = sqlcount.classify
    assert c('INSERT INTO "bench_x".jobs (id) VALUES (%(id)s)') == "INSERT jobs"
    assert c("INSERT INTO bench_x_counters (minute) VALUES (?) ON CONFLICT (minute) DO UPDATE")
    assert c("INSERT INTO bench_x_counters (m) VALUES (?) ON CONFLICT (m) DO NOTHING") == (
        "INSERT counters ON CONFLICT"
    )
    assert c('SELECT "bench_x".jobs.id FROM "bench_x".jobs WHERE x FOR UPDATE') == (
        "SELECT jobs FOR UPDATE"
    )
    assert c("SELECT pg_notify(%(p)s, %(q)s) AS pg_notify_1") == "SELECT pg_notify"
    assert c("UPDATE bench_ab_jobs SET state=?") == "UPDATE jobs"
    assert c("SELECT min(jobs.run_at) FROM bench_x_jobs AS jobs") == "SELECT jobs (aggregate)"
    assert c("BEGIN IMMEDIATE") == "BEGIN IMMEDIATE"
    assert c("SELECT 1") == "SELECT 1 (pool pre-ping)"
    one = "(one statement)"
    assert c(pg_enqueue.enqueue_statement("x")) == f"enqueue {one}"
    assert c(pg_enqueue.single_enqueue_statement("x", keyed=True)) == f"enqueue {one}"
    assert c(pg_claim.claim_statement("x")) == f"claim {one}"
    assert c(pg_settle.settle_statement("x")) == f"settle {one}"
    assert c("WITH t AS (SELECT 1) SELECT * FROM t") == "WITH"


def test_sql_counts_per_job() -> None:
    before = {"statements": {"INSERT jobs": 1}, "executemany_rows": 0, "commits": 1}
    before |= {"rollbacks": 0, "checkouts": 1}
    after = {"statements": {"INSERT jobs": 11, "SELECT pg_notify": 20}, "executemany_rows": 0}
    after |= {"commits": 11, "rollbacks": 0, "checkouts": 11}
    d = sqlcount.delta(before, after)
    worker = {"statements": {"UPDATE jobs": 5}, "executemany_rows": 0, "commits": 5}
    worker |= {"rollbacks": 0, "checkouts": 5}
    counted = sqlcount.per_job(sqlcount.add(d, worker), 10)
    assert counted["statements_per_job"] == pytest.approx(3.5)
    assert counted["transactions_per_job"] == pytest.approx(1.5)
    assert counted["statements"]["SELECT pg_notify"] == pytest.approx(2.0)


def _msg(kind: bytes, body: bytes) -> bytes:
    return kind + (len(body) + 4).to_bytes(4, "big") + body


def test_pgwire_counts_round_trips_statements_and_transactions() -> None:
    stats = ConnStats()
    s = _Session(stats)
    startup = (196608).to_bytes(4, "big") + b"user\0postgres\0application_name\0app\0\0"
    s.from_client((len(startup) + 4).to_bytes(4, "big") + startup)
    s.from_server(_msg(b"Z", b"I"))
    s.from_client(_msg(b"Q", b"BEGIN\0"))
    s.from_server(_msg(b"C", b"BEGIN\0") + _msg(b"Z", b"T"))
    # Extended protocol in two reads: Parse + Bind + Execute + Sync.
    first = _msg(b"P", b"s1\0INSERT INTO jobs (id) VALUES ($1)\0\0\0")
    s.from_client(first[:7])
    s.from_client(first[7:] + _msg(b"B", b"\0s1\0rest") + _msg(b"E", b"\0\0\0\0\0"))
    s.from_client(_msg(b"S", b""))
    s.from_server(_msg(b"1", b"") + _msg(b"2", b"") + _msg(b"C", b"INSERT 0 1\0"))
    s.from_server(_msg(b"Z", b"T"))
    s.from_client(_msg(b"Q", b"COMMIT\0"))
    s.from_server(_msg(b"C", b"COMMIT\0") + _msg(b"Z", b"I"))
    s.from_client(_msg(b"Q", b";\0"))
    s.from_server(_msg(b"I", b"") + _msg(b"Z", b"I"))
    snap = stats.snapshot()
    assert snap["application_name"] == "app"
    assert snap["round_trips"] == 5  # startup, BEGIN, the insert, COMMIT, the ping
    assert snap["implicit_transactions"] == 0  # the ping ran nothing
    assert snap["transactions"] == 1
    s.from_client(_msg(b"Q", b"SELECT pg_notify('a', 'b')\0"))  # autocommit: its own tx
    s.from_server(_msg(b"C", b"SELECT 1\0") + _msg(b"Z", b"I"))
    assert stats.snapshot()["transactions"] == 2
    assert stats.snapshot()["implicit_transactions"] == 1
    assert snap["statements"] == {
        "BEGIN": 1,
        "INSERT jobs": 1,
        "COMMIT": 1,
        "empty query (pool pre-ping)": 1,
    }


def _fake_results() -> dict[str, object]:
    def run(n: int, **figures: object) -> dict[str, object]:
        return {"run": n, **figures}

    return {
        "meta": {"command": "python -m bench.run", "runs": 3, "settings": {"jobs": 10}},
        "measurements": {
            "redis": {
                "raw_rtt": [
                    run(i, pairs_per_s=1000.0 * i, lpush_per_s=2000.0 * i) for i in (1, 2, 3)
                ],
                "w1_single": [run(i, jobs=10, jobs_per_s=5000.0 + i) for i in (1, 2, 3)],
                "w3": [
                    run(1, p50_ms=1.0, p99_ms=12.0),
                    run(2, p50_ms=2.0, p99_ms=8.0),
                    {"run": 3, "error": "WorkloadError: boom"},
                ],
                "w5": [run(i, bytes_per_job=600.0) for i in (1, 2, 3)],
            },
            "postgres": {
                "pg_insert": [run(i, inserts_per_s=3000.0) for i in (1, 2, 3)],
                "w1_single": [run(i, jobs=10, jobs_per_s=1000.0 * i) for i in (1, 2, 3)],
                "w5": [
                    run(i, bytes_per_job=900.0, parts_per_job={"index jobs_pkey": 90.0})
                    for i in (1, 2, 3)
                ],
            },
            "sqlite": {"w1_single": [run(i, jobs=10, jobs_per_s=700.0) for i in (1, 2, 3)]},
        },
    }


def test_targets_are_judged_on_the_median() -> None:
    rows = {(t["backend"], t["label"]): t for t in report.targets(_fake_results())}
    assert rows["redis", "W1 one-at-a-time"]["verdict"] == "met"
    assert rows["redis", "W3 p50"]["verdict"] == "met"
    assert rows["redis", "W3 p99"]["stat"]["median"] == 10.0  # the failed run drops
    assert rows["redis", "W3 p99"]["verdict"] == "MISSED"
    assert rows["redis", "W3 p99"]["runs_met"] == 1
    assert rows["redis", "W5 memory"]["verdict"] == "MISSED"
    assert rows["redis", "W4 heir start"]["verdict"] == "not measured"
    assert rows["postgres", "W1 one-at-a-time"]["verdict"] == "met"  # median 2,000
    assert rows["postgres", "W1 one-at-a-time"]["runs_met"] == 2
    assert rows["postgres", "W4 heir start"]["verdict"] == "not measured"
    assert not any(b == "sqlite" for b, _ in rows)  # SQLite has no targets


def test_ratio_pairs_runs_by_round() -> None:
    data = _fake_results()
    r = report.ratio(data, "redis", ("w1_single", "jobs_per_s"), ("raw_rtt", "lpush_per_s"))
    assert r["median"] == pytest.approx(5002.0 / 4000.0)
    assert r["per_run"] == pytest.approx([5001 / 2000, 5002 / 4000, 5003 / 6000])
    r = report.ratio(data, "postgres", ("w1_single", "jobs_per_s"), ("pg_insert", "inserts_per_s"))
    assert r["median"] == pytest.approx(2000.0 / 3000.0)


def test_render_mentions_every_section() -> None:
    text = report.render(_fake_results())
    for needle in (
        "## Targets",
        "## Ratios",
        "### Redis",
        "### PostgreSQL",
        "### SQLite",
        "W1 enqueue, one at a time",
        "MISSED",
        "boom",
        "index jobs_pkey",
    ):
        assert needle in text


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.sqlite
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_tiny_run_end_to_end(tmp_path: Path) -> None:
    """Runs every workload once on every backend at toy sizes; checks what it wrote."""
    out, md = tmp_path / "r.json", tmp_path / "R.md"
    cmd = [sys.executable, "-m", "bench.run", "--runs", "1", "--jobs", "100"]
    cmd += ["--w3-rate", "100", "--w3-seconds", "0.5", "--w4-children", "20"]
    cmd += ["--backends", "redis,postgres,sqlite", "--w6-backends", "redis,sqlite"]
    cmd += ["--w6-children", "1500", "--rb-requests", "2000", "--commandstats"]
    cmd += ["--census-jobs", "100", "--w5-jobs", "300"]
    cmd += ["--quiet-wait", "0", "--out", str(out), "--report", str(md)]
    cmd += ["--peers", ""]  # the peers need their own virtualenvs: not in the suite
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=360, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    runs = data["measurements"]
    names = {"w1_single", "w1_batched", "w2_default", "w2_tuned", "w3", "w4", "w5"}
    assert set(runs) == {"redis", "postgres", "sqlite"}
    for backend in runs:
        assert set(runs[backend]) >= names
    assert "w6" in runs["redis"]
    assert "w6" in runs["sqlite"]
    assert "w6" not in runs["postgres"]
    w6 = runs["redis"]["w6"][0]
    assert w6["children"] == 1500
    assert w6["peak_rss_mib"] >= w6["rss_at_first_claim_mib"] > 0
    assert {"pg_insert", "pg_claim"} <= set(runs["postgres"])
    assert all("error" not in r for by in runs.values() for rs in by.values() for r in rs)
    # INFO commandstats is server-wide: another client's scripts (a test suite running at the
    # same time) can only add to it. The SQL counts below are the library's own, exactly.
    assert runs["redis"]["w1_single"][0]["commandstats"]["evalsha_per_job"] >= 1.0
    # Every enqueue is durable on its own: at least one transaction each, counted on the wire
    # (the PostgreSQL enqueue runs on the driver connection, unseen by SQLAlchemy's events).
    census = data["meta"]["census"]["postgres"]
    assert census["w1_single"]["wire"]["transactions_per_job"] >= 1.0
    assert census["w1_single"]["wire"]["round_trips_per_job"] >= 1.0
    assert census["w2_default"]["wire"]["jobs"] == 100
    assert runs["postgres"]["w3"][0]["jobs"] == 50
    assert runs["sqlite"]["w4"][0]["children"] == 20
    text = md.read_text()
    assert "## Round trips per job" in text
    assert "counted on the wire" in text
