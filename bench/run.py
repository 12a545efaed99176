"""Run the benchmark: ``python -m bench.run [--backends redis,postgres,sqlite] [--runs 3]``.

Each round runs every selected workload on every selected backend, and every raw baseline,
once, in an order rotated from round to round (interleaved: the backends alternate within a
round, so drift hits all alike); figures are the median of the rounds with min and max.
Results go to ``--out`` (JSON) and ``--report`` (Markdown). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import peer_report, report
from .backends import (
    DEFAULT_PG_URL,
    NAMES,
    Backend,
    PostgresBackend,
    RedisBackend,
    SQLiteBackend,
)
from .baselines import BASELINES
from .census import pg_census
from .common import (
    DEFAULT_URL,
    busy_share,
    check_loopback,
    cpu_times,
    git_state,
    loadavg,
    machine,
    versions,
)
from .peers import DRIVER_WORKLOADS, PEERS
from .peers import launch as peer_launch
from .peers.bodies import BODIES
from .peers.bodies import ENV as BODY_ENV
from .workloads import WORKLOADS, Settings, WorkloadError

HERE = Path(__file__).resolve().parent
GROUPS = ("w1", "w2", "w3", "w4", "w5", "w6")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument(
        "--backends",
        default="redis,postgres",
        help="comma-separated: " + ",".join(NAMES) + " (default redis,postgres)",
    )
    p.add_argument("--url", default=DEFAULT_URL, help="Redis URL (loopback only)")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL URL (loopback only)")
    p.add_argument(
        "--sqlite-dir", type=Path, default=None, help="folder for the SQLite files (a temp dir)"
    )
    p.add_argument(
        "--peer-redis-url",
        default="redis://127.0.0.1:6379/12",
        help="the peers' Redis database (flushed before and after each measurement)",
    )
    p.add_argument(
        "--peer-pg-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="where the peers' drivers create (and drop) a database per measurement",
    )
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--jobs", type=int, default=10_000, help="Conveyor's jobs for W1, W2, W5 and baselines"
    )
    p.add_argument(
        "--peer-jobs",
        type=int,
        default=1_000,
        help="the peers' jobs for W1 and W2 (their rates at 10,000 would not fit the "
        "15-minute run; a rate either way)",
    )
    p.add_argument("--workloads", default=",".join(GROUPS), help="comma-separated: w1..w6")
    p.add_argument("--no-baselines", action="store_true", help="skip the raw baselines")
    p.add_argument(
        "--peers",
        default=",".join(PEERS),
        help="comma-separated peers to measure alike (empty: none): " + ",".join(PEERS),
    )
    p.add_argument("--concurrency", type=int, default=10, help="W2 default, W3, W4 concurrency")
    p.add_argument("--tuned-concurrency", type=int, default=64, help="W2 tuned concurrency")
    p.add_argument("--w3-rate", type=float, default=200.0, help="W3 jobs per second")
    p.add_argument("--w3-seconds", type=float, default=2.0, help="W3 duration")
    p.add_argument("--w4-children", type=int, default=2000)
    p.add_argument(
        "--w5-jobs", type=int, default=5_000, help="W5: jobs stored (Conveyor and peers alike)"
    )
    p.add_argument("--w6-children", type=int, default=100_000, help="W6 children (Conveyor alone)")
    p.add_argument("--w6-backends", default="redis", help="backends W6 runs on (of --backends)")
    p.add_argument("--w6-deadline", type=float, default=600.0, help="seconds W6 may take")
    p.add_argument("--rb-requests", type=int, default=100_000, help="redis-benchmark -n")
    p.add_argument(
        "--commandstats",
        action="store_true",
        help="count round trips (Redis: INFO commandstats) and statements (SQL: in-process "
        "counts, plus the PostgreSQL wire census) per job",
    )
    p.add_argument(
        "--census-jobs", type=int, default=1000, help="jobs per PostgreSQL wire-census workload"
    )
    p.add_argument("--deadline", type=float, default=120.0, help="seconds any one wait may take")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each round, wait up to this long for idle CPUs and no foreign client",
    )
    p.add_argument("--py-spy", type=Path, default=None, metavar="DIR", help="profile into DIR")
    p.add_argument(
        "--body",
        choices=BODIES,
        default="noop",
        help="what each job does (bench/peers/bodies.py): nothing, a Redis round trip, ~1 ms CPU",
    )
    p.add_argument("--out", type=Path, default=HERE / "results.json")
    p.add_argument("--report", type=Path, default=HERE / "RESULTS.md")
    args = p.parse_args(argv)
    backends = [b.strip().lower() for b in args.backends.split(",") if b.strip()]
    unknown_b = [b for b in backends if b not in NAMES]
    if unknown_b or not backends or len(set(backends)) != len(backends):
        p.error(f"--backends: choose from {', '.join(NAMES)} (got {backends})")
    args.backend_names = [b for b in NAMES if b in backends]
    groups = [w.strip().lower() for w in args.workloads.split(",") if w.strip()]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        p.error(f"unknown workloads {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    args.groups = groups
    args.w6_backends = [b.strip().lower() for b in args.w6_backends.split(",") if b.strip()]
    peers = [x.strip().lower() for x in args.peers.split(",") if x.strip()]
    if set(peers) - set(PEERS):
        p.error(f"--peers: choose from {', '.join(PEERS)} (got {peers})")
    args.peer_names = [x for x in PEERS if x in peers]
    if min(args.runs, args.jobs, args.peer_jobs, args.w5_jobs, args.census_jobs) < 1:
        p.error("--runs, --jobs, --peer-jobs, --w5-jobs and --census-jobs must be at least 1")
    if args.peer_names:
        check_loopback(args.peer_redis_url)
        check_loopback(args.peer_pg_url)
    if "redis" in backends:
        check_loopback(args.url)
    if "postgres" in backends:
        check_loopback(args.pg_url)
    return args


def schedule(names: list[str], runs: int) -> list[list[str]]:
    """One order per round, rotated so that each item moves through the positions."""
    step = max(1, len(names) // runs) if runs > 1 else 0
    orders = []
    for r in range(runs):
        k = (r * step) % len(names) if names else 0
        orders.append(names[k:] + names[:k])
    return orders


def plan(
    backends: list[str],
    groups: list[str],
    baselines: bool,
    peers: Sequence[str] = (),
    w6_backends: Sequence[str] = ("redis",),
) -> list[str]:
    """``system/name`` items: the baselines, then each workload on each backend and each
    peer in turn (so Conveyor and its peers alternate within a round). W6 is Conveyor's
    alone, on ``w6_backends``."""
    items: list[str] = []
    if baselines:
        for b in backends:
            items += [f"{b}/{name}" for name in BASELINES[b]]
    for name, (group, _) in WORKLOADS.items():
        if group in groups:
            on = [b for b in backends if name != "w6" or b in w6_backends]
            items += [f"{b}/{name}" for b in on]
            items += [f"{peer}/{name}" for peer in peers if name in DRIVER_WORKLOADS]
    return items


async def foreign_clients(backends: dict[str, Backend]) -> int:
    return sum([await be.foreign_clients() for be in backends.values()])


async def wait_quiet(
    backends: dict[str, Backend], limit: float, threshold: float = 0.15
) -> float | None:
    """Other work on the machine skews everything: wait (bounded) for idle CPUs and no
    foreign client (Redis: any client; PostgreSQL: any session running a statement) but the
    harness's.
    Returns the busy share of the last one-second window.
    """
    stop = time.monotonic() + limit
    while True:
        before = cpu_times()
        await asyncio.sleep(1.0)
        busy = busy_share(before, cpu_times())
        quiet = (busy is None or busy < threshold) and await foreign_clients(backends) == 0
        if quiet or time.monotonic() >= stop:
            return busy


BRIEF = {
    "raw_rtt": ("pairs_per_s", "lpush_per_s"),
    "raw_pipelined": ("pairs_per_s", "lpush_per_s"),
    "redis_benchmark": ("lpush_rps", "rpop_rps"),
    "pg_insert": ("inserts_per_s",),
    "pg_claim": ("claims_per_s",),
    "w1_single": ("jobs_per_s",),
    "w1_batched": ("jobs_per_s",),
    "w1_sync": ("jobs_per_s",),
    "w2_default": ("jobs_per_s", "jobs_per_s_from_spawn"),
    "w2_tuned": ("jobs_per_s", "jobs_per_s_from_spawn"),
    "w3": ("p50_ms", "p99_ms", "max_ms"),
    "w4": ("heir_seconds",),
    "w5": ("bytes_per_job",),
    "w6": ("heir_seconds", "peak_rss_mib"),
}


def brief(name: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return f"ERROR {result['error'].splitlines()[0]}"
    if "unsupported" in result:
        return f"unsupported: {result['unsupported']}"
    return "  ".join(f"{k}={result[k]:,.2f}" for k in BRIEF[name] if k in result)


def make_backends(args: argparse.Namespace, workdir: Path) -> dict[str, Backend]:
    made: dict[str, Backend] = {}
    for name in args.backend_names:
        if name == "redis":
            made[name] = RedisBackend(args.url, args.commandstats)
        elif name == "postgres":
            made[name] = PostgresBackend(args.pg_url, args.commandstats)
        else:
            made[name] = SQLiteBackend(args.sqlite_dir or workdir / "sqlite", args.commandstats)
    return made


async def run_peer(args: argparse.Namespace, peer: str, name: str) -> dict[str, Any]:
    return await peer_launch.run(
        peer,
        name,
        redis_url=args.peer_redis_url,
        pg_url=args.peer_pg_url,
        # W5 is a size per job: the same count as Conveyor's, since the keyspace and
        # index tables grow in steps.
        jobs=args.w5_jobs if name == "w5" else args.peer_jobs,
        w3_rate=args.w3_rate,
        w3_seconds=args.w3_seconds,
        w4_children=args.w4_children,
        deadline=args.deadline,
    )


async def run_one(settings: Settings, be: Backend, name: str) -> dict[str, Any]:
    if name in BASELINES[be.name]:
        return await BASELINES[be.name][name](settings, be)
    return await WORKLOADS[name][1](settings, be)


async def amain(args: argparse.Namespace, argv: Sequence[str]) -> int:
    # Every worker process, Conveyor's and the peers', inherits the body to run.
    os.environ[BODY_ENV] = args.body
    items = plan(
        args.backend_names, args.groups, not args.no_baselines, args.peer_names, args.w6_backends
    )
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    settings = Settings(
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
        w5_jobs=args.w5_jobs,
        w6_children=args.w6_children,
        w6_deadline=args.w6_deadline,
    )
    backends = make_backends(args, workdir)
    started = time.time()
    command = "python -m bench.run " + shlex.join(argv) if argv else "python -m bench.run"
    meta: dict[str, Any] = {
        "command": command.strip(),
        "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "backends": list(backends),
        "urls": {
            name: (be.url("<ns>") if name != "sqlite" else "sqlite:///<tempdir>/<ns>.db")
            for name, be in backends.items()
        },
        "url": args.url,
        "runs": args.runs,
        "out": str(args.out.resolve().relative_to(HERE.parent))
        if args.out.resolve().is_relative_to(HERE.parent)
        else str(args.out),
        "workloads": items,
        "settings": {
            "jobs": args.jobs,
            "peer_jobs": args.peer_jobs,
            "default_concurrency": args.concurrency,
            "tuned_concurrency": args.tuned_concurrency,
            "w3_rate": args.w3_rate,
            "w3_seconds": args.w3_seconds,
            "w4_children": args.w4_children,
            "w5_jobs": args.w5_jobs,
            "w6_children": args.w6_children,
            "w6_backends": args.w6_backends,
            "rb_requests": args.rb_requests,
            "commandstats": args.commandstats,
            "census_jobs": args.census_jobs,
            "poll_ms": 20,
            "body": args.body,
        },
        "machine": machine(),
        "loadavg_start": loadavg(),
        "git_start": git_state(),
        "py_spy": str(args.py_spy) if args.py_spy else None,
        "workdir": str(workdir),
        "notes": [],
        "cpu_busy_before_round": [],
    }
    meta["peers"] = {
        peer: {"backend": PEERS[peer][0], "title": PEERS[peer][2], "package": PEERS[peer][1]}
        for peer in args.peer_names
    }
    meta["peer_places"] = {"redis": args.peer_redis_url, "postgres": args.peer_pg_url}
    systems = [*backends, *args.peer_names]
    measurements: dict[str, dict[str, list[dict[str, Any]]]] = {b: {} for b in systems}
    for item in items:
        b, name = item.split("/", 1)
        measurements[b][name] = []
    foreign_max = 0
    failed_census = False
    try:
        vers = versions()
        for be in backends.values():
            await be.open()
            vers.update(await be.versions())
        if args.peer_names:
            print("--- the peers' virtualenvs", flush=True)
            vers.update(peer_launch.prepare(args.peer_names))
        meta["versions"] = vers
        pg = backends.get("postgres")
        if args.commandstats and isinstance(pg, PostgresBackend):
            print(f"--- PostgreSQL wire census ({args.census_jobs} jobs each)", flush=True)
            t0 = time.monotonic()
            try:
                meta["census"] = {"postgres": await pg_census(settings, pg, args.census_jobs)}
            except (WorkloadError, OSError, TimeoutError) as exc:
                meta["census"] = {"postgres": {"error": f"{type(exc).__name__}: {exc}"}}
                failed_census = True
                traceback.print_exc()
            meta["census_seconds"] = time.monotonic() - t0
            print(f"  done in {meta['census_seconds']:.1f}s", flush=True)
        for run, order in enumerate(schedule(items, args.runs), start=1):
            busy = await wait_quiet(backends, args.quiet_wait)
            meta["cpu_busy_before_round"].append(busy)
            shown = f"{busy:.0%}" if busy is not None else "?"
            print(f"--- round {run}/{args.runs} (CPU busy before: {shown})", flush=True)
            for position, item in enumerate(order, start=1):
                b, name = item.split("/", 1)
                gc.collect()
                foreign = await foreign_clients(backends)
                foreign_max = max(foreign_max, foreign)
                load = loadavg()
                t0 = time.monotonic()
                cpu0 = cpu_times()
                try:
                    if b in backends:
                        result = await run_one(settings, backends[b], name)
                    else:
                        result = await run_peer(args, b, name)
                except (WorkloadError, OSError, TimeoutError) as exc:
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                    traceback.print_exc()
                except Exception as exc:  # a driver error: recorded, and the run goes on
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
                measurements[b][name].append(result)
                print(
                    f"  {b:<14}{name:<12} {brief(name, result)}  ({result['wall_s']:.1f}s)",
                    flush=True,
                )
                await asyncio.sleep(0.05)
    finally:
        for be in backends.values():
            await be.aclose()
    meta["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    meta["duration_s"] = time.time() - started
    meta["foreign_clients_max"] = foreign_max
    meta["git_end"] = git_state()
    if meta["git_end"] != meta["git_start"]:
        meta["notes"].append(
            "The library changed during the run: git/conveyor tree at start "
            f"{meta['git_start']}, at the end {meta['git_end']}."
        )
    data = {"meta": meta, "measurements": measurements}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    text = report.render(data)
    args.report.write_text(text)
    print()
    for row in report.targets(data):
        s = row["stat"]
        print(
            f"{row['backend']:<9}{row['label']:<26} {report.med_range(s, row['unit'])} "
            f"{row['unit']:<9} target {row['op']} {row['bound']:g}: {row['verdict']}"
        )
    for backend, label, top, bottom in report.RATIOS:
        if backend in measurements:
            r = report.ratio(data, backend, top, bottom)
            print(f"{backend:<9}{label:<52} {report.num(r['median'], '')}")
    for line in peer_report.summary_lines(data):
        print(line)
    print(f"\nwrote {args.out} and {args.report} in {meta['duration_s']:.0f}s")
    failed = [
        f"{b}/{n}"
        for b, by in measurements.items()
        for n, rs in by.items()
        if any("error" in r for r in rs)
    ]
    return 1 if failed or failed_census else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    return asyncio.run(amain(args, argv))


if __name__ == "__main__":
    raise SystemExit(main())
