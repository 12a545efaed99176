"""What every peer's job handler writes when it runs, and how the driver reads it back.

A handler calls ``record(index)``: one fixed-width line, ``index`` and the wall-clock
start time, appended (``O_APPEND``, one ``write``) to a file of its own process in the
folder ``$BENCH_LEDGER``. The driver counts finished jobs from the files' sizes alone
(no parsing while it polls), and at the end checks that every index ran exactly once.
One short syscall per job, the same for every peer, so the ledger costs them alike.

Standard library only: it runs inside each peer's own virtualenv.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

WIDTH = 29  # b"%010d %017.6f\n": index, space, epoch seconds to the microsecond, newline
ENV = "BENCH_LEDGER"

_fd: int | None = None
_pid: int | None = None


def record(index: int) -> None:
    """Note that job ``index`` started now (called first thing in every peer's handler)."""
    global _fd, _pid
    if _fd is None or _pid != os.getpid():  # a forked child gets a file of its own
        folder = os.environ[ENV]
        _pid = os.getpid()
        path = os.path.join(folder, f"{_pid}-{time.monotonic_ns()}.log")
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_fd, b"%010d %017.6f\n" % (index, time.time()))


@dataclass(frozen=True)
class Check:
    """The ledger's verdict for indices ``0..n-1`` (plus any extra ones expected)."""

    expected: int
    ran: int
    missing: int
    duplicated: int
    unexpected: int

    @property
    def exactly_once(self) -> bool:
        return self.missing == 0 and self.duplicated == 0 and self.unexpected == 0

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "expected": self.expected,
            "ran": self.ran,
            "missing": self.missing,
            "duplicated": self.duplicated,
            "unexpected": self.unexpected,
            "exactly_once": self.exactly_once,
        }


class Ledger:
    """The driver's side: a folder the handlers write into."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def count(self) -> int:
        """How many records are complete (sizes only: cheap enough to poll)."""
        return sum(p.stat().st_size for p in self.folder.glob("*.log")) // WIDTH

    def starts(self) -> dict[int, list[float]]:
        """Every index with the start time of each run of it."""
        runs: dict[int, list[float]] = {}
        for path in self.folder.glob("*.log"):
            data = path.read_bytes()
            for at in range(0, len(data) - len(data) % WIDTH, WIDTH):
                index, started = data[at : at + WIDTH].split()
                runs.setdefault(int(index), []).append(float(started))
        return runs

    def check(self, expected: set[int]) -> Check:
        runs = self.starts()
        counts = Counter({index: len(times) for index, times in runs.items()})
        return Check(
            expected=len(expected),
            ran=sum(counts.values()),
            missing=sum(1 for i in expected if i not in counts),
            duplicated=sum(c - 1 for i, c in counts.items() if c > 1),
            unexpected=sum(c for i, c in counts.items() if i not in expected),
        )

    def clear(self) -> None:
        """Empty every file (truncated, not removed: a worker process that outlives the
        clear keeps its file open and goes on appending to it)."""
        for path in self.folder.glob("*.log"):
            os.truncate(path, 0)
