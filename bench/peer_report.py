"""RESULTS.md's comparison of Conveyor with its peers: one table per workload, the
ratio of each figure to the same backend's raw baseline and to the best peer, and the
targets that are stated against the peers."""

from __future__ import annotations

from typing import Any

from .report import BACKEND_TITLES, D, med_range, ok_runs, stat, table

# workload -> (title, [(figure, label, unit, higher is better)], raw baseline per backend)
COMPARED: dict[str, tuple[str, list[tuple[str, str, str, bool]], dict[str, tuple[str, str]]]] = {
    "w1_single": (
        "W1 enqueue one at a time",
        [("jobs_per_s", "throughput", "jobs/s", True)],
        {"redis": ("raw_rtt", "lpush_per_s"), "postgres": ("pg_insert", "inserts_per_s")},
    ),
    "w1_batched": (
        "W1 enqueue in batches of 100",
        [("jobs_per_s", "throughput", "jobs/s", True)],
        {"redis": ("raw_pipelined", "lpush_per_s"), "postgres": ("pg_insert", "inserts_per_s")},
    ),
    "w2_default": (
        "W2 drain, the system's defaults (the worker processes and concurrency its CLI starts)",
        [("jobs_per_s", "throughput", "jobs/s", True)],
        {"redis": ("raw_rtt", "pairs_per_s"), "postgres": ("pg_claim", "claims_per_s")},
    ),
    "w2_tuned": (
        "W2 drain, one worker process, tuned",
        [("jobs_per_s", "throughput", "jobs/s", True)],
        {"redis": ("raw_rtt", "pairs_per_s"), "postgres": ("pg_claim", "claims_per_s")},
    ),
    "w3": (
        "W3 enqueue-to-start latency at a steady rate",
        [
            ("p50_ms", "p50", "ms", False),
            ("p99_ms", "p99", "ms", False),
            ("max_ms", "max", "ms", False),
        ],
        {},
    ),
    "w4": (
        "W4 one job after all of a group (Conveyor: a parent's heir; peers: their own construct)",
        [("heir_seconds", "submit to the last job's start", "s", False)],
        {},
    ),
    "w5": (
        "W5 storage per queued job (about 100 bytes of payload)",
        [("bytes_per_job", "size", "bytes/job", False)],
        {},
    ),
}

# (label, conveyor backend, workload, figure, peers compared, factor); the peers compared
# are "best" (any peer), "best <backend>" (W5: Redis memory is compared with Redis peers
# only, not with a PostgreSQL table's size) or one peer's name.
# Met when Conveyor is at least ``factor`` times better than the peer(s): faster,
# sooner or smaller, as the figure goes. A workload given as (Conveyor's, the peers')
# compares two of them: the peers' one-at-a-time enqueue is whatever API they offer.
PEER_TARGETS: list[tuple[str, str, str | tuple[str, str], str, str, float]] = [
    ("Redis W2 default >= 4x the best peer's default", "redis", "w2_default", "jobs_per_s",
     "best", 4.0),
    ("Redis W2 tuned >= 4x the best peer's tuned", "redis", "w2_tuned", "jobs_per_s", "best", 4.0),
    ("Redis W4 >= 3x faster than the fastest peer construct", "redis", "w4", "heir_seconds",
     "best", 3.0),
    ("Redis W1 one at a time not below the best peer", "redis", "w1_single", "jobs_per_s",
     "best", 1.0),
    ("Redis W1 one at a time from sync code (`Client`), the same", "redis",
     ("w1_sync", "w1_single"), "jobs_per_s", "best", 1.0),
    ("Redis W1 batched not below the best peer", "redis", "w1_batched", "jobs_per_s", "best", 1.0),
    ("Redis W5 not above the best Redis peer", "redis", "w5", "bytes_per_job", "best redis",
     1.0),
    ("PostgreSQL W2 default >= 5x procrastinate's default", "postgres", "w2_default",
     "jobs_per_s", "procrastinate", 5.0),
    ("PostgreSQL W2 tuned >= 5x procrastinate's tuned", "postgres", "w2_tuned", "jobs_per_s",
     "procrastinate", 5.0),
    ("PostgreSQL W3 p50 not above procrastinate's", "postgres", "w3", "p50_ms",
     "procrastinate", 1.0),
    ("PostgreSQL W5 not above procrastinate's", "postgres", "w5", "bytes_per_job",
     "procrastinate", 1.0),
]  # fmt: skip

HIGHER_IS_BETTER = {key: up for _, figs, _ in COMPARED.values() for key, _, _, up in figs}


def peers(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = data.get("meta", {}).get("peers", {})
    return found


def title(data: dict[str, Any], system: str) -> str:
    known = peers(data)
    if system in known:
        p = known[system]
        version = data.get("meta", {}).get("versions", {}).get(p["package"], "?")
        return f"{p['title']} {version} ({BACKEND_TITLES[p['backend']]})"
    return f"Conveyor ({BACKEND_TITLES.get(system, system)})"


def backend_of(data: dict[str, Any], system: str) -> str:
    known = peers(data)
    return str(known[system]["backend"]) if system in known else system


def better(value: float, other: float, key: str) -> float:
    """How many times better ``value`` is than ``other`` (>1: better)."""
    if HIGHER_IS_BETTER[key]:
        return value / other if other else float("inf")
    return other / value if value else float("inf")


def best_peer(
    data: dict[str, Any], name: str, key: str, backend: str | None = None
) -> tuple[str, float] | None:
    """The peer with the best median for this figure (unsupported and failed runs aside),
    among the peers on ``backend`` if given."""
    medians = [
        (p, m)
        for p in peers(data)
        if (backend is None or backend_of(data, p) == backend)
        and (m := stat(data, p, name, key)["median"]) is not None
    ]
    if not medians:
        return None
    pick = max if HIGHER_IS_BETTER[key] else min
    return pick(medians, key=lambda pm: pm[1])


def unsupported(data: dict[str, Any], system: str, name: str) -> str | None:
    for r in data.get("measurements", {}).get(system, {}).get(name, []):
        if "unsupported" in r:
            return str(r["unsupported"])
    return None


def verified(data: dict[str, Any], system: str, name: str) -> str:
    if system not in peers(data):
        return "counts checked"
    runs = ok_runs(data, system, name)
    checked = [r for r in runs if isinstance(r.get("verified"), dict)]
    if not checked:
        return D if not runs or "jobs_per_s" not in runs[0] else "queue length checked"
    good = sum(1 for r in checked if r["verified"].get("exactly_once"))
    text = f"exactly once in {good} of {len(runs)} runs"
    jobs = runs[0].get("jobs")
    cfg = data.get("meta", {}).get("settings", {})
    if name.startswith("w2") and jobs != cfg.get("peer_jobs", cfg.get("jobs")):
        text += f" ({jobs:,} jobs: its worker forks per job)"
    return text


def peer_targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    measured = data.get("measurements", {})
    for label, backend, names, key, against, factor in PEER_TARGETS:
        if backend not in measured or not peers(data):
            continue
        name, theirs = names if isinstance(names, tuple) else (names, names)
        mine = stat(data, backend, name, key)["median"]
        if against.startswith("best"):
            on = against.split()[1] if " " in against else None
            other = best_peer(data, theirs, key, on)
        else:
            m = stat(data, against, theirs, key)["median"] if against in peers(data) else None
            other = (against, m) if m is not None else None
        row: dict[str, Any] = {"label": label, "factor": factor, "mine": mine, "other": other}
        if mine is None or other is None:
            row["verdict"] = "not measured"
        else:
            row["times"] = better(mine, other[1], key)
            row["verdict"] = "met" if row["times"] >= factor else "MISSED"
        rows.append(row)
    return rows


def section(data: dict[str, Any]) -> list[str]:
    if not peers(data):
        return []
    out = ["## Conveyor and its peers", ""]
    out.append(
        "Every peer ran the same workloads in the same rounds, interleaved with Conveyor, "
        "each in a virtualenv of its own (`bench/peers/`), on a Redis database or a "
        "PostgreSQL database of its own, cleaned before and after. A peer's figure counts "
        "only when its ledger shows that every job ran exactly once. Ratios: to the same "
        "backend's raw baseline in the same run, and to the best peer's median "
        "(>1: better than it: faster, sooner or smaller; W5 against the best peer on the "
        "same backend). How each peer was driven, and why "
        "a peer has no figure for a workload, is in bench/README.md."
    )
    out.append("")
    rows = []
    for t in peer_targets(data):
        other = t["other"]
        against = f"{title(data, other[0])}" if other else D
        times = f"{t['times']:.2f}x" if "times" in t else D
        rows.append([t["label"], times, against, t["verdict"]])
    out += ["### Targets against the peers", ""]
    out += table(["target", "Conveyor is", "compared with", "verdict on the medians"], rows)
    out.append("")
    systems = [b for b in BACKEND_TITLES if b in data.get("measurements", {})] + list(peers(data))
    for name, (heading, figures, raw) in COMPARED.items():
        if not any(data["measurements"].get(s, {}).get(name) for s in systems):
            continue
        out += [f"### {heading}", ""]
        rows = []
        for s in systems:
            if not data["measurements"].get(s, {}).get(name):
                continue
            why = unsupported(data, s, name)
            if why is not None:
                rows.append([title(data, s), f"none: {why}", "", D, D, D])
                continue
            for key, label, unit, _ in figures:
                st = stat(data, s, name, key)
                cells = [title(data, s), f"{label}: {med_range(st, unit)}", unit]
                base = raw.get(backend_of(data, s))
                base_med = stat(data, backend_of(data, s), *base)["median"] if base else None
                cells.append(f"{st['median'] / base_med:.2f}" if st["median"] and base_med else D)
                # A size is compared on the same backend (memory with memory, tables
                # with tables); speeds with every peer.
                same = backend_of(data, s) if name == "w5" else None
                top = best_peer(data, name, key, same)
                cells.append(f"{better(st['median'], top[1], key):.2f}x" if st["median"] and
                             top else D)  # fmt: skip
                cells.append(verified(data, s, name))
                rows.append(cells)
        header = ["system", f"median (min{D}max)", "unit", "/ raw baseline", "vs best peer",
                  "checked"]  # fmt: skip
        out += table(header, rows)
        out.append("")
    return out


def summary_lines(data: dict[str, Any]) -> list[str]:
    """One line per peer target, for the console."""
    lines = []
    for t in peer_targets(data):
        times = f"{t['times']:.2f}x" if "times" in t else D
        other = title(data, t["other"][0]) if t["other"] else D
        lines.append(f"{t['label']:<58} {times:>8} vs {other}: {t['verdict']}")
    return lines
