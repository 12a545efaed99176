"""W7, families under contention: several worker processes draining many families at
once, against the same processes draining as many flat jobs.

python -m bench.families [--backends redis,postgres] [--families 20] [--children 500]
                         [--processes 3] [--rounds 3] [--body noop]

Per round and backend, in fresh namespaces, through ``conveyor worker
bench.cli_app:worker --processes P`` (every other option at its default):

- *families*: ``--families`` parents enqueued at once; each declares ``--children``
  children and one heir, so the processes settle children of every family at the same
  time and each settle counts its family's parent down;
- *flat*: as many independent jobs as the families hold (parents, children, heirs).

Jobs/s from the first job seen succeeded to the last (``bench.processes``' drain), median
of the rounds (min-max), interleaved; the target is families >= 50 % of flat on
PostgreSQL. Writes bench/FAMILIES_RESULTS.md. Loopback servers only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from conveyor._proto.examples.basic_pb2 import BasicJob

from .processes import cell, cli_drain

HERE = Path(__file__).resolve().parent
KINDS = ("families", "flat")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="redis,postgres")
    parser.add_argument("--families", type=int, default=20)
    parser.add_argument("--children", type=int, default=500)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--body", default="noop")
    parser.add_argument("--report", type=Path, default=HERE / "FAMILIES_RESULTS.md")
    args = parser.parse_args()
    total = args.families * (args.children + 2)
    jobs = {
        "families": [BasicJob(name="parent", count=args.children)] * args.families,
        "flat": [BasicJob(count=i) for i in range(total)],
    }
    rates: dict[tuple[str, str], list[float]] = {}
    for round_no in range(args.rounds):
        for backend in args.backends.split(","):
            kinds = KINDS if round_no % 2 == 0 else KINDS[::-1]
            for kind in kinds:
                _, drained = await cli_drain(
                    backend, args.body, args.processes, "auto", jobs[kind], total
                )
                rates.setdefault((backend, kind), []).append(drained)
                print(f"round {round_no + 1} {backend} {kind}: {drained:,.0f} jobs/s", flush=True)
    command = (
        f"python -m bench.families --backends {args.backends} --families {args.families} "
        f"--children {args.children} --processes {args.processes} --rounds {args.rounds} "
        f"--body {args.body}"
    )
    lines = [
        "# W7: families under contention (bench/families.py)",
        "",
        f"`{command}`, {time.strftime('%Y-%m-%d')}. {args.processes} worker processes "
        f"(`conveyor worker --processes {args.processes}`, concurrency 10 each) drain "
        f"{args.families} families of {args.children} children and an heir each, all "
        f"enqueued at once, or the same number of jobs ({total:,}) without families; "
        "jobs/s from the first job seen succeeded to the last, median of the rounds "
        "(min-max).",
        "",
        "| backend | families | flat | families / flat |",
        "|---|---|---|---|",
    ]
    for backend in args.backends.split(","):
        fam, flat = rates[(backend, "families")], rates[(backend, "flat")]
        ratio = statistics.median(fam) / statistics.median(flat)
        lines.append(f"| {backend} | {cell(fam)} | {cell(flat)} | {ratio:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.report.write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
