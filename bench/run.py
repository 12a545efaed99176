"""Run the benchmark: ``python -m bench.run [--runs 3] [--jobs 10000] [--workloads w1,w2,...]``.

Each round runs every selected workload and every raw baseline once, in an order rotated
from round to round (interleaved, so drift hits all alike); figures are the median of the
rounds with min and max. Results go to ``--out`` (JSON) and ``--report`` (Markdown).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from . import report
from .common import (
    DEFAULT_URL,
    busy_share,
    check_loopback,
    cpu_times,
    loadavg,
    machine,
    versions,
)
from .workloads import WORKLOADS, Settings, WorkloadError

HERE = Path(__file__).resolve().parent
GROUPS = ("w1", "w2", "w3", "w4", "w5")
BENCH_CLIENT_PREFIXES = ("bench:", "conveyor:bench_")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--backends", default="redis", help="only 'redis' is benchmarked")
    p.add_argument("--url", default=DEFAULT_URL, help="Redis URL (loopback only)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--jobs", type=int, default=10_000, help="jobs for W1, W2, W5 and baselines")
    p.add_argument("--workloads", default=",".join(GROUPS), help="comma-separated: w1..w5")
    p.add_argument("--no-baselines", action="store_true", help="skip the raw baselines")
    p.add_argument("--concurrency", type=int, default=10, help="W2 default, W3, W4 concurrency")
    p.add_argument("--tuned-concurrency", type=int, default=64, help="W2 tuned concurrency")
    p.add_argument("--w3-rate", type=float, default=200.0, help="W3 jobs per second")
    p.add_argument("--w3-seconds", type=float, default=5.0, help="W3 duration")
    p.add_argument("--w4-children", type=int, default=2000)
    p.add_argument("--rb-requests", type=int, default=100_000, help="redis-benchmark -n")
    p.add_argument(
        "--commandstats",
        action="store_true",
        help="count round trips per job from INFO commandstats deltas",
    )
    p.add_argument("--deadline", type=float, default=120.0, help="seconds any one wait may take")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each round, wait up to this long for idle CPUs and no foreign Redis client",
    )
    p.add_argument("--py-spy", type=Path, default=None, metavar="DIR", help="profile into DIR")
    p.add_argument("--out", type=Path, default=HERE / "results.json")
    p.add_argument("--report", type=Path, default=HERE / "RESULTS.md")
    args = p.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if backends != ["redis"]:
        p.error(f"only the redis backend is benchmarked, not {backends}")
    groups = [w.strip().lower() for w in args.workloads.split(",") if w.strip()]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        p.error(f"unknown workloads {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    args.groups = groups
    if args.runs < 1 or args.jobs < 1:
        p.error("--runs and --jobs must be at least 1")
    check_loopback(args.url)
    return args


def schedule(names: list[str], runs: int) -> list[list[str]]:
    """One order per round, rotated so that each item moves through the positions."""
    step = max(1, len(names) // runs) if runs > 1 else 0
    orders = []
    for r in range(runs):
        k = (r * step) % len(names) if names else 0
        orders.append(names[k:] + names[:k])
    return orders


async def foreign_clients(admin: aioredis.Redis) -> int:
    clients = await admin.client_list()
    return sum(1 for c in clients if not str(c.get("name", "")).startswith(BENCH_CLIENT_PREFIXES))


async def wait_quiet(admin: aioredis.Redis, limit: float, threshold: float = 0.15) -> float | None:
    """Other work on the machine skews everything: wait (bounded) for idle CPUs and no
    Redis client but the harness's own. Returns the busy share of the last one-second window.
    """
    stop = time.monotonic() + limit
    while True:
        before = cpu_times()
        await asyncio.sleep(1.0)
        busy = busy_share(before, cpu_times())
        quiet = (busy is None or busy < threshold) and await foreign_clients(admin) == 0
        if quiet or time.monotonic() >= stop:
            return busy


def brief(name: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return f"ERROR {result['error'].splitlines()[0]}"
    keys = {
        "raw_rtt": ("pairs_per_s", "lpush_per_s"),
        "raw_pipelined": ("pairs_per_s", "lpush_per_s"),
        "redis_benchmark": ("lpush_rps", "rpop_rps"),
        "w1_single": ("jobs_per_s",),
        "w1_batched": ("jobs_per_s",),
        "w2_default": ("jobs_per_s", "jobs_per_s_from_spawn"),
        "w2_tuned": ("jobs_per_s", "jobs_per_s_from_spawn"),
        "w3": ("p50_ms", "p99_ms", "max_ms"),
        "w4": ("heir_seconds",),
        "w5": ("bytes_per_job",),
    }[name]
    return "  ".join(f"{k}={result[k]:,.2f}" for k in keys if k in result)


async def amain(args: argparse.Namespace, argv: Sequence[str]) -> int:
    names = [n for n, (group, _) in WORKLOADS.items() if group in args.groups]
    if not args.no_baselines:
        names = [n for n, (group, _) in WORKLOADS.items() if group == "baseline"] + names
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    settings = Settings(
        url=args.url,
        jobs=args.jobs,
        default_concurrency=args.concurrency,
        tuned_concurrency=args.tuned_concurrency,
        w3_rate=args.w3_rate,
        w3_seconds=args.w3_seconds,
        w4_children=args.w4_children,
        rb_requests=args.rb_requests,
        commandstats=args.commandstats,
        workdir=workdir,
        deadline=args.deadline,
        py_spy=args.py_spy,
    )
    admin = aioredis.Redis.from_url(args.url, client_name="bench:admin")
    started = time.time()
    command = "python -m bench.run " + shlex.join(argv) if argv else "python -m bench.run"
    meta: dict[str, Any] = {
        "command": command.strip(),
        "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "url": args.url,
        "runs": args.runs,
        "out": str(args.out.resolve().relative_to(HERE.parent))
        if args.out.resolve().is_relative_to(HERE.parent)
        else str(args.out),
        "workloads": names,
        "settings": {
            "jobs": args.jobs,
            "default_concurrency": args.concurrency,
            "tuned_concurrency": args.tuned_concurrency,
            "w3_rate": args.w3_rate,
            "w3_seconds": args.w3_seconds,
            "w4_children": args.w4_children,
            "rb_requests": args.rb_requests,
            "commandstats": args.commandstats,
            "poll_ms": 20,
        },
        "machine": machine(),
        "loadavg_start": loadavg(),
        "py_spy": str(args.py_spy) if args.py_spy else None,
        "workdir": str(workdir),
        "notes": [],
        "cpu_busy_before_round": [],
    }
    measurements: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    foreign_max = 0
    try:
        await admin.ping()
        meta["versions"] = await versions(admin)
        for run, order in enumerate(schedule(names, args.runs), start=1):
            busy = await wait_quiet(admin, args.quiet_wait)
            meta["cpu_busy_before_round"].append(busy)
            shown = f"{busy:.0%}" if busy is not None else "?"
            print(
                f"--- round {run}/{args.runs} (CPU busy before: {shown}): {', '.join(order)}",
                flush=True,
            )
            for position, name in enumerate(order, start=1):
                gc.collect()
                foreign = await foreign_clients(admin)
                foreign_max = max(foreign_max, foreign)
                load = loadavg()
                t0 = time.monotonic()
                cpu0 = cpu_times()
                try:
                    result = await WORKLOADS[name][1](settings, admin)
                except (WorkloadError, OSError, TimeoutError) as exc:
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                    traceback.print_exc()
                result.update(
                    run=run,
                    position=position,
                    loadavg=load,
                    cpu_busy=busy_share(cpu0, cpu_times()),
                    foreign_clients=foreign,
                    wall_s=time.monotonic() - t0,
                )
                measurements[name].append(result)
                print(f"  {name:<16} {brief(name, result)}  ({result['wall_s']:.1f}s)", flush=True)
                await asyncio.sleep(0.2)
    finally:
        await admin.aclose()
    meta["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    meta["duration_s"] = time.time() - started
    meta["foreign_clients_max"] = foreign_max
    data = {"meta": meta, "measurements": measurements}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    text = report.render(data)
    args.report.write_text(text)
    print()
    for row in report.targets(data):
        s = row["stat"]
        print(
            f"{row['label']:<26} {report.med_range(s, row['unit'])} {row['unit']:<9} "
            f"target {row['op']} {row['bound']:g}: {row['verdict']}"
        )
    for label, top, bottom in report.RATIOS:
        r = report.ratio(data, top, bottom)
        print(f"{label:<52} {report.num(r['median'], '')}")
    print(f"\nwrote {args.out} and {args.report} in {meta['duration_s']:.0f}s")
    failed = [n for n, runs in measurements.items() if any("error" in r for r in runs)]
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    return asyncio.run(amain(args, argv))


if __name__ == "__main__":
    raise SystemExit(main())
