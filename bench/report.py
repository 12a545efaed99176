"""Render bench/RESULTS.md from the JSON written by ``python -m bench.run``.

    python -m bench.report [--in bench/results.json] [--out bench/RESULTS.md]

Every figure is the median of the runs with their min and max; ratios are medians over
medians (the per-run ratios, taken within one interleaved round, in brackets).
The JSON's ``measurements`` are ``{backend: {workload: [one dict per run]}}``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import summarize

HERE = Path(__file__).resolve().parent
_NS_NAME = re.compile(r"bench_[a-z0-9_]*_[0-9a-f]{8}_")  # a namespace inside a part's name

BACKEND_TITLES = {"redis": "Redis", "postgres": "PostgreSQL", "sqlite": "SQLite"}

# name -> title, and the figures shown for it: (key, label, unit)
WORKLOAD_TITLES = {
    "w1_single": "W1 enqueue, one at a time (`await client.enqueue(...)`)",
    "w1_batched": "W1 enqueue, batched (`client.enqueue_many`, 100 per call)",
    "w1_sync": "W1 enqueue, one at a time from synchronous code (`conveyor.Client.enqueue`)",
    "w2_default": "W2 drain, the CLI's default processes and concurrency",
    "w2_tuned": "W2 drain, one worker process, tuned concurrency",
    "w3": "W3 enqueue-to-start latency at a steady rate",
    "w4": "W4 family: one parent, its children, one heir",
    "w5": "W5 storage per queued job (100-byte payload)",
    "w6": "W6 a parent with 100,000 children and one heir (Conveyor alone)",
    "raw_rtt": "Raw redis-py asyncio LPUSH + RPOP, one round trip each",
    "raw_pipelined": "Raw redis-py asyncio LPUSH + RPOP, pipelined by 100",
    "redis_benchmark": "redis-benchmark -t lpush,rpop (50 parallel clients)",
    "pg_insert": "Raw psycopg 3 (async, autocommit): single-row INSERT, one round trip and "
    "commit each",
    "pg_claim": "Raw psycopg 3 (async, autocommit): one-at-a-time claim "
    "(UPDATE … FOR UPDATE SKIP LOCKED … RETURNING), one per transaction",
}

_W2 = [
    ("jobs_per_s", "throughput, from the worker's first claim", "jobs/s"),
    ("jobs_per_s_from_spawn", "throughput, from spawning the process", "jobs/s"),
    (
        "jobs_per_s_to_last_settle",
        "cross-check: first claim to last settle (as the backend recorded it)",
        "jobs/s",
    ),
    ("startup_seconds", "spawn to first claim", "s"),
    ("jobs_per_claim", "jobs per claim call", ""),
    ("outcomes_per_settle", "outcomes per settle call", ""),
]

FIGURES: dict[str, list[tuple[str, str, str]]] = {
    "w1_single": [("jobs_per_s", "throughput", "jobs/s"), ("seconds", "elapsed", "s")],
    "w1_batched": [("jobs_per_s", "throughput", "jobs/s"), ("seconds", "elapsed", "s")],
    "w1_sync": [("jobs_per_s", "throughput", "jobs/s"), ("seconds", "elapsed", "s")],
    "w2_default": _W2,
    "w2_tuned": _W2,
    "w3": [
        ("p50_ms", "p50", "ms"),
        ("p90_ms", "p90", "ms"),
        ("p99_ms", "p99", "ms"),
        ("max_ms", "max", "ms"),
        ("mean_ms", "mean", "ms"),
        ("achieved_rate", "achieved enqueue rate", "jobs/s"),
    ],
    "w4": [
        ("heir_seconds", "parent enqueue to heir start", "s"),
        ("phases.enqueue_to_parent_start", "  enqueue to parent start", "s"),
        ("phases.parent_declaring", "  parent handler declaring children + heir", "s"),
        (
            "phases.declared_to_first_child",
            "  declared to first child start (staging, settle)",
            "s",
        ),
        ("phases.first_to_last_child", "  first to last child start", "s"),
        ("phases.last_child_to_heir", "  last child start to heir start", "s"),
        ("children_per_s", "children started per second", "jobs/s"),
    ],
    "w5": [
        ("bytes_per_job", "used_memory delta / jobs", "bytes/job"),
        ("memory_usage_per_job.job hashes", "  MEMORY USAGE: job hashes", "bytes/job"),
        (
            "memory_usage_per_job.state index (zset)",
            "  MEMORY USAGE: state index zset",
            "bytes/job",
        ),
        ("memory_usage_per_job.queue list", "  MEMORY USAGE: queue list", "bytes/job"),
        (
            "unattributed_per_job",
            "  not in any key's MEMORY USAGE (keyspace table, allocator)",
            "bytes/job",
        ),
    ],
    "w6": [
        ("heir_seconds", "parent enqueue to heir start", "s"),
        ("parent_declaring", "  parent handler declaring (flushed 1,000 at a time)", "s"),
        ("children_per_s", "children started per second", "jobs/s"),
        ("peak_rss_mib", "worker peak RSS (VmHWM)", "MiB"),
        ("rss_at_first_claim_mib", "  worker RSS at its first claim", "MiB"),
        ("rss_growth_mib", "  growth while running the family", "MiB"),
    ],
    "raw_rtt": [
        ("pairs_per_s", "LPUSH+RPOP pairs", "pairs/s"),
        ("lpush_per_s", "LPUSH alone (time spent in LPUSH awaits)", "LPUSH/s"),
        ("round_trips_per_s", "round trips", "/s"),
    ],
    "raw_pipelined": [
        ("pairs_per_s", "LPUSH+RPOP pairs", "pairs/s"),
        ("lpush_per_s", "LPUSH alone (time spent in LPUSH pipelines)", "LPUSH/s"),
    ],
    "redis_benchmark": [
        ("lpush_rps", "LPUSH", "requests/s"),
        ("rpop_rps", "RPOP", "requests/s"),
    ],
    "pg_insert": [("inserts_per_s", "single-row INSERTs", "rows/s"), ("seconds", "elapsed", "s")],
    "pg_claim": [("claims_per_s", "claims", "claims/s"), ("seconds", "elapsed", "s")],
}

SQL_W5 = {
    "postgres": [
        ("bytes_per_job", "pg_total_relation_size(jobs) delta / jobs", "bytes/job"),
        ("live_tuple_bytes_per_job", "  pgstattuple: live tuple bytes / jobs", "bytes/job"),
        ("dead_tuples_per_job", "  pgstattuple: dead tuples / jobs", ""),
        ("dead_tuple_bytes_per_job", "  pgstattuple: dead tuple bytes / jobs", "bytes/job"),
        ("free_bytes_per_job", "  pgstattuple: free space in the heap / jobs", "bytes/job"),
    ],
    "sqlite": [
        ("bytes_per_job", "file size delta / jobs (after a WAL checkpoint)", "bytes/job"),
    ],
}

# (backend, label, (workload, figure), (baseline, figure))
RATIOS = [
    (
        "redis",
        "W1 one-at-a-time / raw one-round-trip LPUSH",
        ("w1_single", "jobs_per_s"),
        ("raw_rtt", "lpush_per_s"),
    ),
    (
        "redis",
        "W1 batched / pipelined LPUSH (100 per round trip)",
        ("w1_batched", "jobs_per_s"),
        ("raw_pipelined", "lpush_per_s"),
    ),
    (
        "redis",
        "W2 default / raw LPUSH+RPOP pairs",
        ("w2_default", "jobs_per_s"),
        ("raw_rtt", "pairs_per_s"),
    ),
    (
        "redis",
        "W2 tuned / raw LPUSH+RPOP pairs",
        ("w2_tuned", "jobs_per_s"),
        ("raw_rtt", "pairs_per_s"),
    ),
    (
        "postgres",
        "W1 one-at-a-time / raw single-row INSERT",
        ("w1_single", "jobs_per_s"),
        ("pg_insert", "inserts_per_s"),
    ),
    (
        "postgres",
        "W1 batched / raw single-row INSERT",
        ("w1_batched", "jobs_per_s"),
        ("pg_insert", "inserts_per_s"),
    ),
    (
        "postgres",
        "W2 default / raw one-at-a-time claim",
        ("w2_default", "jobs_per_s"),
        ("pg_claim", "claims_per_s"),
    ),
    (
        "postgres",
        "W2 tuned / raw one-at-a-time claim",
        ("w2_tuned", "jobs_per_s"),
        ("pg_claim", "claims_per_s"),
    ),
]

# (backend, label, workload, figure, comparison, bound, unit)
TARGETS = [
    ("redis", "W1 one-at-a-time", "w1_single", "jobs_per_s", ">=", 4000.0, "jobs/s"),
    ("redis", "W1 batched", "w1_batched", "jobs_per_s", ">=", 20000.0, "jobs/s"),
    ("redis", "W2 (default concurrency)", "w2_default", "jobs_per_s", ">=", 5000.0, "jobs/s"),
    ("redis", "W2 (tuned concurrency)", "w2_tuned", "jobs_per_s", ">=", 5000.0, "jobs/s"),
    ("redis", "W3 p50", "w3", "p50_ms", "<", 3.0, "ms"),
    ("redis", "W3 p99", "w3", "p99_ms", "<", 10.0, "ms"),
    ("redis", "W4 heir start", "w4", "heir_seconds", "<=", 1.0, "s"),
    ("redis", "W5 memory", "w5", "bytes_per_job", "<", 500.0, "bytes/job"),
    ("postgres", "W1 one-at-a-time", "w1_single", "jobs_per_s", ">=", 1500.0, "jobs/s"),
    ("postgres", "W2 (default concurrency)", "w2_default", "jobs_per_s", ">=", 2000.0, "jobs/s"),
    ("postgres", "W2 (tuned concurrency)", "w2_tuned", "jobs_per_s", ">=", 2000.0, "jobs/s"),
    ("postgres", "W3 p50", "w3", "p50_ms", "<", 20.0, "ms"),
    ("postgres", "W3 p99", "w3", "p99_ms", "<", 100.0, "ms"),
    ("postgres", "W4 heir start", "w4", "heir_seconds", "<", 3.0, "s"),
    # Round 2 (performance issue): the same figures, tighter.
    ("redis", "W3 p50 (round 2)", "w3", "p50_ms", "<=", 1.0, "ms"),
    ("redis", "W4 heir start (round 2)", "w4", "heir_seconds", "<=", 0.3, "s"),
    ("redis", "W6 worker peak RSS (round 2)", "w6", "peak_rss_mib", "<=", 64.0, "MiB"),
    ("postgres", "W4 heir start (round 2)", "w4", "heir_seconds", "<=", 1.0, "s"),
]

ROUND_TRIP_ROWS = ["w1_single", "w1_batched", "w2_default", "w2_tuned", "w3", "w4"]


# --- analysis -------------------------------------------------------------------------------


def figure(run: dict[str, Any], key: str) -> float | None:
    """A figure of one run; dotted keys reach into nested dicts."""
    value: Any = run
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, int | float) else None


def ok_runs(data: dict[str, Any], backend: str, name: str) -> list[dict[str, Any]]:
    runs = data.get("measurements", {}).get(backend, {}).get(name, [])
    return [r for r in runs if "error" not in r]


def stat(data: dict[str, Any], backend: str, name: str, key: str) -> dict[str, Any]:
    values = [v for r in ok_runs(data, backend, name) if (v := figure(r, key)) is not None]
    return summarize(values)


def ratio(
    data: dict[str, Any], backend: str, top: tuple[str, str], bottom: tuple[str, str]
) -> dict[str, Any]:
    num_, den = stat(data, backend, *top), stat(data, backend, *bottom)
    if num_["median"] is None or not den["median"]:
        return {"median": None, "per_run": []}
    by_run = {r["run"]: figure(r, bottom[1]) for r in ok_runs(data, backend, bottom[0])}
    per_run = []
    for r in ok_runs(data, backend, top[0]):
        a, b = figure(r, top[1]), by_run.get(r["run"])
        if a is not None and b:
            per_run.append(a / b)
    return {"median": num_["median"] / den["median"], "per_run": per_run}


def met(value: float, op: str, bound: float) -> bool:
    return {">=": value >= bound, "<": value < bound, "<=": value <= bound}[op]


def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of a backend that was run, judged on the median."""
    backends = set(data.get("measurements", {}))
    rows = []
    for backend, label, name, key, op, bound, unit in TARGETS:
        if backend not in backends:
            continue
        s = stat(data, backend, name, key)
        row: dict[str, Any] = {"backend": backend, "label": label, "workload": name}
        row.update({"figure": key, "op": op, "bound": bound, "unit": unit, "stat": s})
        if s["median"] is None:
            row["verdict"] = "not measured"
        else:
            runs_met = sum(met(v, op, bound) for v in s["values"])
            row["met"] = met(s["median"], op, bound)
            row["runs_met"] = runs_met
            row["verdict"] = "met" if row["met"] else "MISSED"
        rows.append(row)
    return rows


def trips_summary(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    """Redis: the commandstats counts of a workload, median over runs."""
    runs = [r["commandstats"] for r in ok_runs(data, "redis", name) if r.get("commandstats")]
    if not runs:
        return None
    keys = ["round_trips_per_job", "evalsha_per_job", "blpop_per_job", "lua_calls_per_job"]
    keys += ["server_usec_per_job", "script_usec_per_job"]
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in keys}
    names = {n for r in runs for n in r["round_trips"]}
    out["round_trips"] = {
        n: statistics.median(r["round_trips"].get(n, 0) for r in runs) for n in names
    }
    lua = {n for r in runs for n in r["lua_calls"]}
    out["lua_calls"] = dict(
        sorted(
            ((n, statistics.median(r["lua_calls"].get(n, 0) for r in runs)) for n in lua),
            key=lambda kv: (-kv[1], kv[0]),
        )
    )
    out["runs"] = len(runs)
    return out


def sql_summary(data: dict[str, Any], backend: str, name: str) -> dict[str, Any] | None:
    """SQL: the in-process statement counts of a workload, median over runs."""
    runs = [r["sql_counts"] for r in ok_runs(data, backend, name) if r.get("sql_counts")]
    if not runs:
        return None
    keys = ["statements_per_job", "transactions_per_job", "commits_per_job", "pre_pings_per_job"]
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in keys}
    names = {n for r in runs for n in r["statements"]}
    out["statements"] = dict(
        sorted(
            ((n, statistics.median(r["statements"].get(n, 0) for r in runs)) for n in names),
            key=lambda kv: (-kv[1], kv[0]),
        )
    )
    out["runs"] = len(runs)
    return out


# --- formatting -----------------------------------------------------------------------------

ADMIN_POINTER = (
    "Admin page latency (dashboard, queue page, job page with 1,000,000 finished jobs) is "
    "measured by `python -m bench.admin_pages`: see [ADMIN_RESULTS.md](ADMIN_RESULTS.md). "
    "Family repair and family reads on 10,000 members are measured by "
    "`python -m bench.repair`: see [REPAIR_RESULTS.md](REPAIR_RESULTS.md). The cost of a "
    "unique key (`python -m bench.keys`), the time from `client.cancel` to a running "
    "handler (`python -m bench.cancel`) and what Prometheus metrics cost "
    "(`python -m bench.metrics`) are in [KEYS_RESULTS.md](KEYS_RESULTS.md), "
    "[CANCEL_RESULTS.md](CANCEL_RESULTS.md) and [METRICS_RESULTS.md](METRICS_RESULTS.md). "
    "What `conveyor worker`'s process count and event loop gain, per job body "
    "(`python -m bench.processes`), and W7, families under contention against flat jobs "
    "on three worker processes (`python -m bench.families`), are in "
    "[PROCESSES_RESULTS.md](PROCESSES_RESULTS.md) and [FAMILIES_RESULTS.md](FAMILIES_RESULTS.md). "
    "W2 with job bodies that do I/O or use CPU: [RESULTS_BODY_REDIS.md](RESULTS_BODY_REDIS.md), "
    "[RESULTS_BODY_CPU.md](RESULTS_BODY_CPU.md). Server CPU per job on a Redis Cluster of 1 "
    "and 3 shards and on PostgreSQL directly and through PgBouncer (`python -m "
    "bench.capacity`), the figures behind docs/scaling.md's capacity model: "
    "[CAPACITY_RESULTS.md](CAPACITY_RESULTS.md)."
)
D = "\u2013"  # an en dash, for ranges
BODY_NOTES = {
    "noop": "Job body: none (`--body noop`): every handler, Conveyor's and the peers', only "
    "records that it ran, so each figure is the queue's own cost at its largest share.",
    "redis": "Job body: one Redis round trip (`--body redis`, bench/peers/bodies.py): five "
    "pipelined commands to database 13 of the same server, redis-py asyncio in async "
    "handlers and redis-py in sync ones, after the ledger record, in every job of W2 and "
    "every W4 child.",
    "cpu": "Job body: ~1 ms of pure-Python CPU (`--body cpu`, bench/peers/bodies.py: the "
    "same loop for everyone), after the ledger record, in every job of W2 and every W4 child.",
}


def num(value: float | None, unit: str = "") -> str:
    if value is None:
        return D
    if unit == "s":
        return f"{value:,.3f}" if abs(value) >= 0.01 else f"{value:.4f}"
    if unit == "ms" or abs(value) < 100:
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def med_range(s: dict[str, Any], unit: str = "") -> str:
    if s["median"] is None:
        return D
    return f"{num(s['median'], unit)} ({num(s['min'], unit)}{D}{num(s['max'], unit)})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _backends(data: dict[str, Any]) -> list[str]:
    present = data.get("measurements", {})
    return [b for b in BACKEND_TITLES if b in present]


def render(data: dict[str, Any]) -> str:
    meta = data.get("meta", {})
    out: list[str] = ["# Conveyor benchmark results", ""]
    out.append(
        f"Rendered by `python -m bench.report` from `{meta.get('out', 'bench/results.json')}`. "
        f"Each figure is the **median of {meta.get('runs', '?')} runs (min{D}max)**. The runs "
        "were interleaved: every round ran each workload on each backend and each baseline "
        "once, in an order rotated from round to round (the backends alternate within a "
        "round), so that drift hits Conveyor, the backends and the baselines alike."
    )
    out += ["", "Command:", "", "```sh", meta.get("command", "?"), "```", ""]
    body = meta.get("settings", {}).get("body", "noop")
    out += [BODY_NOTES.get(body, f"Job body: {body}."), "", ADMIN_POINTER, ""]
    v = meta.get("versions", {})
    out.append(
        f"Started {meta.get('started', '?')}, took {num(meta.get('duration_s'), 's')} s, on git "
        f"commit `{v.get('conveyor_git', '?')}` (conveyor/ tree digest "
        f"`{v.get('conveyor_tree_sha256', '?')}`). Backends: "
        + "; ".join(f"{BACKEND_TITLES.get(b, b)} at `{u}`" for b, u in meta.get("urls", {}).items())
        + ". Every measurement gets a fresh namespace, removed afterwards (Redis: SCAN MATCH + "
        'DEL; PostgreSQL: `DROP SCHEMA "<ns>" CASCADE`; SQLite: the file deleted).'
    )
    out.append("")
    out += _targets_section(data)
    out += peer_section(data)
    out += _missed_section(data)
    out += _ratios_section(data)
    out += ["## Figures", ""]
    for backend in _backends(data):
        out += [f"### {BACKEND_TITLES[backend]}", ""]
        for name, title in WORKLOAD_TITLES.items():
            if data["measurements"][backend].get(name):
                out += _workload_section(data, backend, name, title)
    out += _round_trips_section(data)
    out += _sql_counts_section(data)
    out += _machine(meta)
    out += _notes(data)
    return "\n".join(out).rstrip() + "\n"


#: Hand-written: why each missed target is missed, with its profile and what would
#: close it (it names the run it was written from).
MISSED = Path(__file__).with_name("MISSED.md")


def _missed_section(data: dict[str, Any]) -> list[str]:
    """MISSED.md, under the no-op run's targets (the job-body runs have their own)."""
    if data.get("meta", {}).get("settings", {}).get("body", "noop") != "noop":
        return []
    if not MISSED.exists():
        return []
    return [MISSED.read_text(encoding="utf-8").rstrip(), ""]


def peer_section(data: dict[str, Any]) -> list[str]:
    from .peer_report import section  # it builds on this module's helpers

    return section(data)


def _targets_section(data: dict[str, Any]) -> list[str]:
    rows = []
    for t in targets(data):
        s, unit = t["stat"], t["unit"]
        verdict = t["verdict"]
        if "runs_met" in t:
            verdict += f" ({t['runs_met']} of {len(s['values'])} runs met it)"
        bound = f"{t['op']} {num(t['bound'], unit)} {unit}"
        rows.append(
            [
                BACKEND_TITLES[t["backend"]],
                t["label"],
                f"{med_range(s, unit)} {unit}",
                bound,
                verdict,
            ]
        )
    header = ["backend", "figure", f"median (min{D}max)", "target", "verdict on the median"]
    note = "SQLite has no targets: its figures are reported below."
    return ["## Targets", "", *table(header, rows), "", note, ""]


def _ratios_section(data: dict[str, Any]) -> list[str]:
    rows = []
    present = set(_backends(data))
    for backend, label, top, bottom in RATIOS:
        if backend not in present:
            continue
        r = ratio(data, backend, top, bottom)
        per = ", ".join(f"{v:.3f}" for v in r["per_run"])
        rows.append(
            [BACKEND_TITLES[backend], label, num(r["median"], ""), f"[{per}]" if per else D]
        )
    header = ["backend", "ratio", "median / median", "per round (same round's baseline)"]
    return ["## Ratios to the raw baselines", "", *table(header, rows), ""]


def _figures_for(data: dict[str, Any], backend: str, name: str) -> list[tuple[str, str, str]]:
    if name == "w5" and backend in SQL_W5:
        rows = list(SQL_W5[backend])
        parts: dict[str, None] = {}
        for r in ok_runs(data, backend, name):
            for key in r.get("parts_per_job", {}):
                if not _NS_NAME.search(key):
                    parts.setdefault(key)
        what = "relation" if backend == "postgres" else "dbstat"
        rows += [(f"parts_per_job.{k}", f"  {what}: {k}", "bytes/job") for k in parts]
        return rows
    return FIGURES.get(name, [])


def _workload_section(data: dict[str, Any], backend: str, name: str, title: str) -> list[str]:
    out = [f"#### {title}", "", _workload_note(data, backend, name), ""]
    rows = []
    for key, label, unit in _figures_for(data, backend, name):
        s = stat(data, backend, name, key)
        if s["median"] is not None:
            runs = ", ".join(num(v, unit) for v in s["values"])
            rows.append([label, med_range(s, unit), unit, runs])
    for b, label, top, bottom in RATIOS:
        if b == backend and top[0] == name:
            r = ratio(data, backend, top, bottom)
            runs = ", ".join(f"{v:.3f}" for v in r["per_run"])
            rows.append([f"ratio: {label}", num(r["median"], ""), "", runs])
    for t in targets(data):
        if t["backend"] == backend and t["workload"] == name:
            bound = f"{t['op']} {num(t['bound'], t['unit'])} {t['unit']}"
            rows.append([f"target: {t['label']} {bound}", t["verdict"], "", ""])
    out += table(["figure", f"median (min{D}max)", "unit", "each run"], rows)
    for r in data["measurements"][backend][name]:
        if "error" in r:
            out += ["", f"**Run {r['run']} failed:** `{r['error']}`"]
    out.append("")
    return out


def _round_trips_section(data: dict[str, Any]) -> list[str]:
    out = ["## Round trips per job", ""]
    out += _redis_trips(data)
    out += _census_section(data)
    return out


def _redis_trips(data: dict[str, Any]) -> list[str]:
    if "redis" not in data.get("measurements", {}):
        return []
    out = ["### Redis (INFO commandstats deltas)", ""]
    rows = []
    lua_lines = []
    for name in ROUND_TRIP_ROWS:
        s = trips_summary(data, name)
        if s is None:
            continue
        other = {k: v for k, v in s["round_trips"].items() if k not in ("evalsha", "blpop") and v}
        other_txt = ", ".join(f"{k} {v:.4f}" for k, v in sorted(other.items()))
        rows.append(
            [
                name,
                f"{s['round_trips_per_job']:.4f}",
                f"{s['evalsha_per_job']:.4f}",
                f"{s['blpop_per_job']:.4f}",
                other_txt or D,
                f"{s['lua_calls_per_job']:.1f}",
                f"{s['server_usec_per_job']:.1f}",
            ]
        )
        busiest = [(k, v) for k, v in s["lua_calls"].items() if v >= 0.005][:12]
        top = ", ".join(f"{k} {v:.2f}" for k, v in busiest)
        lua_lines.append(f"- **{name}**: {top}")
    if not rows:
        return [*out, "Not measured in this run (pass `--commandstats`).", ""]
    out.append(
        "Calls per job, median over runs. *Round trips* are the commands that only a client "
        "can send (EVALSHA, BLPOP, connection set-up such as HELLO / CLIENT SETNAME / SELECT / "
        "PING / CONFIG GET); the harness's own INFO snapshots and progress polls (one HGETALL "
        "each) are subtracted. Every other command in the delta ran inside a Lua script "
        "(`redis.call`). *Server µs* is the server's time in the client-sent commands (an "
        "EVALSHA's includes its script's calls). W3 and W4 count the producer's enqueues too; "
        "W1 and W2 count one side each (W2 from just before the worker is spawned)."
    )
    out.append("")
    header = ["workload", "round trips/job", "EVALSHA/job", "BLPOP/job"]
    header += ["other client commands/job", "redis.call in Lua/job", "server µs/job"]
    out += table(header, rows)
    out += ["", "Commands run inside the scripts, per job (most frequent first):", ""]
    out += lua_lines
    out.append("")
    out += _worker_calls(data, "redis")
    return out


def _census_section(data: dict[str, Any]) -> list[str]:
    census = data.get("meta", {}).get("census", {}).get("postgres")
    if not census:
        return []
    out = ["### PostgreSQL, counted on the wire (census)", ""]
    if "error" in census:
        return [*out, f"**The census failed:** `{census['error']}`", ""]
    jobs = data.get("meta", {}).get("settings", {}).get("census_jobs", "?")
    out.append(
        f"Once per run, before the rounds, each workload ran once at {jobs} jobs (W3: "
        "50 jobs/s for 2 s into an idle worker) with the library connected through "
        "`bench.pgwire`, a proxy that parses the protocol in both directions. *Round trips* "
        "are client write bursts that had to wait for the server's reply; *statements* are the "
        "server's CommandComplete messages, *transactions* the in-transaction→idle transitions of "
        "ReadyForQuery plus the statements run in autocommit. The library's LISTEN "
        "connections are counted apart (notifications received). W1 counts the producer; "
        "W2 the worker from its first claim (it waits for the harness to start counting) "
        "until all jobs succeeded; W3 both sides."
    )
    out.append("")
    rows = []
    kinds = []
    for name in ("w1_single", "w1_batched", "w2_default", "w2_tuned", "w3"):
        r = census.get(name)
        if not r or "wire" not in r or not r["wire"]:
            continue
        w = r["wire"]
        label = name + (f" (c{r['concurrency']})" if "concurrency" in r else "")
        rows.append(
            [
                label,
                str(w["jobs"]),
                f"{w['round_trips_per_job']:.3f}",
                f"{w['statements_per_job']:.3f}",
                f"{w['transactions_per_job']:.3f}",
                f"{w['notifications_received_per_job']:.2f}",
            ]
        )
        top = ", ".join(f"{k} {v:.3f}" for k, v in w["statements"].items() if v >= 0.0005)
        kinds.append(f"- **{label}**: {top}")
    header = ["workload", "jobs", "round trips/job", "statements/job", "transactions/job"]
    header.append("notifications received/job")
    out += table(header, rows)
    out += ["", "Statements per job by kind:", "", *kinds, ""]
    return out


def _sql_counts_section(data: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for backend in ("postgres", "sqlite"):
        if backend not in data.get("measurements", {}):
            continue
        rows = []
        kinds = []
        for name in ROUND_TRIP_ROWS:
            s = sql_summary(data, backend, name)
            if s is None:
                continue
            rows.append(
                [
                    name,
                    f"{s['statements_per_job']:.3f}",
                    f"{s['transactions_per_job']:.3f}",
                    f"{s['pre_pings_per_job']:.3f}",
                ]
            )
            top = ", ".join(f"{k} {v:.3f}" for k, v in s["statements"].items() if v >= 0.0005)
            kinds.append(f"- **{name}**: {top}")
        if not rows:
            continue
        out += [f"### {BACKEND_TITLES[backend]}, counted in-process in the timed runs", ""]
        hidden = (
            "psycopg's implicit BEGIN, and the one-statement enqueue, claim and settle that "
            "run on the driver connection, bypass these events: the wire census above sees "
            "them."
            if backend == "postgres"
            else "The library's `BEGIN IMMEDIATE` is a statement here; the DBAPI's COMMIT "
            "bypasses the statement events (one more call into aiosqlite's thread)."
        )
        out.append(
            "SQLAlchemy events on the library's engine (`bench.sqlcount`), median over runs: "
            "statements SQLAlchemy sent (an executemany counts once), transactions (COMMIT and "
            "ROLLBACK events, and statements run in autocommit) and pool checkouts (the "
            "library no longer pings a connection on checkout). "
            f"{hidden} W1 counts the producer, W2 the worker from its first claim to its last "
            "settle, W3 and W4 both sides."
        )
        out.append("")
        out += table(["workload", "statements/job", "transactions/job", "checkouts/job"], rows)
        out += ["", "By kind:", "", *kinds, ""]
        out += _worker_calls(data, backend)
    return out


def _workload_note(data: dict[str, Any], backend: str, name: str) -> str:
    cfg = data.get("meta", {}).get("settings", {})
    runs = ok_runs(data, backend, name)
    first = runs[0] if runs else {}
    jobs = first.get("jobs", cfg.get("jobs"))
    conc = first.get("concurrency", cfg.get("default_concurrency"))
    poll = {
        "redis": "`queue_stats()` (one HGETALL)",
        "postgres": "the namespace's `counters` table (`sum(succeeded)`: a few rows)",
        "sqlite": "the namespace's `counters` table (`sum(succeeded)`, its own connection)",
    }[backend]
    if name == "w1_single":
        return f"{jobs} no-op `BasicJob`s from one producer process, each awaited before the next."
    if name == "w1_batched":
        return f"{jobs} no-op `BasicJob`s, `enqueue_many` of {first.get('batch', 100)} per call."
    if name == "w2_default":
        procs = first.get("processes", 1)
        return (
            f"{jobs} already-queued no-op jobs drained by {procs} `python -m bench.worker_app` "
            f"process(es), as many as `conveyor worker` starts by default here (one per "
            f"CPU; one on SQLite), each at concurrency {conc}. Timed from the first "
            f"`claim` call of any of them (each prints its `time.time()`) until {poll}, "
            "polled every 20 ms, shows all succeeded. The from-spawn figure adds "
            "interpreter start-up, imports and connecting."
        )
    if name == "w2_tuned":
        return f"As above, with one worker process at concurrency {conc}: what one core does."
    if name == "w3":
        extra = ""
        if backend == "sqlite":
            extra = (
                " On SQLite an idle worker learns of another process's jobs only by polling "
                "(every 0.5 s, `POLL` in conveyor/backends/sql/pooling.py), so latency is "
                "dominated by that interval."
            )
        return (
            f"{first.get('jobs', '?')} jobs at {cfg.get('w3_rate')} jobs/s for "
            f"{cfg.get('w3_seconds')} s into one idle worker process (concurrency "
            f"{cfg.get('default_concurrency')}); latency = the handler's start minus the "
            "producer's `time.time()` just before `enqueue`. Percentiles are per run "
            "(nearest rank), then the median over runs." + extra
        )
    if name == "w4":
        return (
            f"The parent's handler calls `ctx.enqueue_child` "
            f"{first.get('children', cfg.get('w4_children'))} times and `ctx.enqueue_heir` "
            f"once; one worker process at concurrency {conc}. Timed from just before "
            "`client.enqueue(parent)` to the heir handler's `time.time()`."
        )
    if name == "w6":
        return (
            f"The parent's handler calls `ctx.enqueue_child` "
            f"{first.get('children', cfg.get('w6_children'))} times, `await ctx.flush()` "
            "after every 1,000 (staged while it runs, so its memory stays bounded), then "
            f"`ctx.enqueue_heir` once; one worker process at concurrency {conc}. Timed from "
            "just before `client.enqueue(parent)` to the heir handler's `time.time()`; peak "
            "RSS is the worker process's own peak resident set (`VmHWM`; `ru_maxrss` also "
            "counts the harness that spawned it). No peer runs this one."
        )
    if name == "w5":
        if backend == "postgres":
            return (
                f"`pg_total_relation_size` of the namespace's jobs table (heap, TOAST and all "
                f"its indexes) before and after enqueueing {jobs} jobs (100-byte `BasicJob` "
                "payload, `enqueue_many` of 100), divided by the jobs; below it, each "
                "relation's growth and `pgstattuple`'s live and dead tuples right after the "
                "enqueues (each job is inserted as `held` and then updated to `queued`, so "
                "each leaves a dead row version until VACUUM)."
            )
        if backend == "sqlite":
            return (
                f"Size of the database file after `PRAGMA wal_checkpoint(TRUNCATE)`, before "
                f"and after enqueueing {jobs} jobs (100-byte `BasicJob` payload, "
                "`enqueue_many` of 100), divided by the jobs; below it, each table's and "
                f"index's growth from the `dbstat` table (page size {first.get('page_size')}, "
                f"{first.get('freelist_pages', '?')} free pages after)."
            )
        return (
            f"`INFO memory` used_memory before and after enqueueing {jobs} jobs (100-byte "
            "`BasicJob` payload, `enqueue_many` of 100) into a fresh namespace, divided by "
            "the jobs; the MEMORY USAGE rows break it down by key. Encodings (OBJECT ENCODING): "
            f"{first.get('encodings', first.get('job_hash_encoding', '?'))}; server settings: "
            f"{first.get('hash_max_listpack', '?')}."
        )
    if name == "raw_rtt":
        return (
            "Sequential awaits on one redis-py asyncio connection (hiredis parser): "
            "`await r.lpush(k, v)` then `await r.rpop(k)`, a 36-byte value (a job id's length)."
        )
    if name == "raw_pipelined":
        return "Per 100 pairs: one pipeline (transaction=False) of 100 LPUSH, then one of 100 RPOP."
    if name == "pg_insert":
        return (
            f"{first.get('rows', jobs)} rows, each `INSERT INTO t (id, queue, payload, state, "
            "priority, created) VALUES (…)` awaited alone on one psycopg 3 `AsyncConnection` "
            "in autocommit mode (one round trip, one commit). Table: `id text PRIMARY KEY, "
            "queue text, payload bytea, state text, priority integer, created double "
            "precision` + a partial index `(priority DESC, id) WHERE state = 'queued'`; ids "
            "(UUIDv7) and payloads (the W1 `BasicJob`) made before the clock starts."
        )
    if name == "pg_claim":
        return (
            f"The same table pre-filled with {first.get('rows', jobs)} queued rows (one "
            "transaction, then ANALYZE; not timed), then one at a time, autocommit: `UPDATE t "
            "SET state='running' WHERE id = (SELECT id FROM t WHERE state='queued' ORDER BY "
            "priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id`."
        )
    return (
        f"`{first.get('command', 'redis-benchmark')}`: **50 parallel clients** (its default) "
        "written in C, so not comparable one-to-one with one Python connection."
    )


def _worker_calls(data: dict[str, Any], backend: str) -> list[str]:
    lines = []
    for name in ("w2_default", "w2_tuned", "w3", "w4"):
        runs = ok_runs(data, backend, name)
        calls: list[dict[str, int]] = [r["worker_calls"] for r in runs if r.get("worker_calls")]
        if not calls:
            continue
        jobs = runs[0].get("jobs") or (runs[0].get("children", 0) + 2)
        keys = sorted({k for c in calls for k in c})
        parts = [f"{k} {statistics.median(c.get(k, 0) for c in calls):,.0f}" for k in keys]
        lines.append(f"- **{name}** ({jobs} jobs): " + ", ".join(parts))
    if not lines:
        return []
    head = [
        "Storage operations the worker called (counted by `bench.worker_app`'s wrapper; "
        "one `claim` call may look for work more than once while it waits), median over runs:",
        "",
    ]
    return [*head, *lines, ""]


def _machine(meta: dict[str, Any]) -> list[str]:
    m = meta.get("machine", {})
    v = meta.get("versions", {})
    out = ["## Machine", ""]
    out += table(
        ["", ""],
        [
            ["CPUs (nproc)", str(m.get("nproc", "?"))],
            ["CPU model", str(m.get("cpu_model", "?"))],
            ["RAM", f"{m.get('ram_gib', '?')} GiB"],
            ["OS", f"{m.get('os', '?')}, kernel {m.get('kernel', '?')} ({m.get('arch', '?')})"],
            ["load average at start", str(meta.get("loadavg_start", "?"))],
        ],
    )
    out += ["", "## Versions", ""]
    rows = [
        ["Python", f"{v.get('python', '?')} ({v.get('python_impl', '?')})"],
        ["protobuf", f"{v.get('protobuf', '?')} ({v.get('protobuf_backend', '?')} backend)"],
        ["uuid-utils", str(v.get("uuid_utils", "?"))],
        ["conveyor-jobs", f"{v.get('conveyor', '?')}, git {v.get('conveyor_git', '?')}"],
        ["conveyor/ tree digest", f"`{v.get('conveyor_tree_sha256', '?')}` (sha256 of .py/.lua)"],
    ]
    if "redis_server" in v:
        rows += [
            ["Redis server (INFO)", str(v.get("redis_server"))],
            ["redis-py", str(v.get("redis_py", "?"))],
            [
                "hiredis",
                f"{v.get('hiredis', '?')} (used by redis-py: {v.get('hiredis_in_use', '?')})",
            ],
            ["redis-benchmark", str(v.get("redis_benchmark", "?"))],
        ]
    if "postgres_server" in v:
        settings = ", ".join(f"{k}={x}" for k, x in v.get("postgres_settings", {}).items())
        rows += [
            ["PostgreSQL server", f"{v.get('postgres_server')} ({settings})"],
            [
                "psycopg",
                f"{v.get('psycopg', '?')} ({v.get('psycopg_impl', '?')} implementation, "
                f"libpq {v.get('libpq', '?')})",
            ],
            ["SQLAlchemy", str(v.get("sqlalchemy", "?"))],
        ]
    if "sqlite_library" in v:
        rows += [
            ["SQLite library", f"{v.get('sqlite_library')} ({v.get('sqlite_pragmas', '')})"],
            ["aiosqlite", str(v.get("aiosqlite", "?"))],
        ]
    for peer, about in meta.get("peers", {}).items():
        package = about.get("package", peer)
        under = v.get(f"env:{peer}")
        on = BACKEND_TITLES.get(str(about.get("backend")), "?")
        version = f"{package} {v.get(package, '?')}" + (f"; {under}" if under else "")
        rows.append([f"{about.get('title', peer)} (peer, on {on})", version])
    out += table(["", ""], rows)
    out.append("")
    return out


def _notes(data: dict[str, Any]) -> list[str]:
    meta = data.get("meta", {})
    notes = list(meta.get("notes", []))
    foreign = meta.get("foreign_clients_max", 0)
    if foreign:
        hit = [
            f"{backend}/{name} (round {r['run']})"
            for backend, by in data.get("measurements", {}).items()
            for name, runs in by.items()
            for r in runs
            if r.get("foreign_clients")
        ]
        notes.append(
            f"Up to {foreign} client(s) not belonging to the benchmark (Redis: connected; "
            "PostgreSQL: a session running a statement) were on the servers at the start of: "
            + (", ".join(hit) or "some measurement")
            + ". Such other work on this machine can add to those measurements' timings "
            "and counts."
        )
    busy = [b for b in meta.get("cpu_busy_before_round", []) if b is not None]
    if busy:
        shares = ", ".join(f"{b:.0%}" for b in busy)
        text = f"CPU busy (all cores) in the second before each round: {shares}."
        if max(busy) > 0.15:
            text += " **Other work was running on this machine; expect noisier figures.**"
        notes.append(text)
    if meta.get("py_spy"):
        notes.append(
            "py-spy was attached (`--py-spy`): sampling perturbs the timings; use these "
            "figures for the profiles, not as results."
        )
    if not notes:
        return []
    return ["## Notes", "", *[f"- {n}" for n in notes], ""]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render RESULTS.md from the benchmark JSON.")
    parser.add_argument("--in", dest="src", default=str(HERE / "results.json"))
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args(argv)
    data = json.loads(Path(args.src).read_text())
    Path(args.out).write_text(render(data))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
