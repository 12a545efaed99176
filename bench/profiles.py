"""Summarize py-spy ``--format raw`` profiles (collapsed stacks) written by ``--py-spy DIR``.

    python -m bench.profiles /tmp/prof/w2c10.txt [--top 25] [--group]

Prints the functions that hold the most samples on their own (self) and anywhere in the
stack (total), and with ``--group`` the share per area (conveyor core, Redis backend,
redis-py, protobuf, asyncio, the harness). Line numbers are dropped so that all samples of a
function add up. Task stacks under asyncio are partial (py-spy sees the running coroutine
chain only), so totals for outer frames are lower bounds.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")

AREAS = [
    ("conveyor/backends/redis/", "conveyor Redis backend"),
    ("conveyor/backends/sql/", "conveyor SQL backend"),
    ("conveyor/", "conveyor core"),
    ("bench/", "harness"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("psycopg", "psycopg"),
    ("aiosqlite", "aiosqlite"),
    ("sqlite3", "sqlite3"),
    ("redis/", "redis-py"),
    ("hiredis", "redis-py"),
    ("google/protobuf", "protobuf"),
    ("uuid_utils", "uuid-utils"),
    ("asyncio/", "asyncio"),
    ("json/", "json"),
]


def parse(text: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = []
        for raw in stack.split(";"):
            m = _FRAME.match(raw.strip())
            frames.append(f"{m['func']} ({m['file']})" if m else raw.strip())
        stacks.append((frames, int(count)))
    return stacks


def area(frame: str) -> str:
    for needle, name in AREAS:
        if needle in frame:
            return name
    return "other (stdlib, interpreter)"


def summarize(stacks: list[tuple[list[str], int]], top: int, group: bool) -> str:
    total = sum(n for _, n in stacks) or 1
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for frames, n in stacks:
        own[frames[-1]] += n
        for f in set(frames):
            anywhere[f] += n
        areas[area(frames[-1])] += n
    out = [f"{total} samples", "", "self:"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    out += ["", "total (in the stack):"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in anywhere.most_common(top)]
    if group:
        out += ["", "self, by area:"]
        out += [f"  {n / total:6.1%}  {a}" for a, n in areas.most_common()]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Summarize a py-spy raw profile.")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--group", action="store_true", help="also show self time by area")
    args = parser.parse_args(argv)
    for path in args.files:
        print(f"== {path}")
        print(summarize(parse(path.read_text()), args.top, args.group))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
