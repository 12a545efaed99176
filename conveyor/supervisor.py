"""The process supervisor behind ``conveyor worker --processes N``.

One Python process runs one event loop, so a worker that needs more than
one core runs as several processes. The supervisor starts N worker
processes, starts again one that dies (backing off while one keeps dying
at start, so a broken deployment does not spin), stops them all when one
reports a configuration error (restarting would not help), and forwards
SIGTERM and SIGINT so each worker stops gracefully, or at once on a second
signal. Each worker process, for its part, stops gracefully if the
supervisor dies without telling it (``run_supervised``), so no orphan keeps
claiming jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from .core.worker import Worker

EXIT_USAGE = 2  # a usage or configuration error, as the command line exits with it
# Backends whose storage lives in one process (memory) or behind one file's write lock
# (SQLite): more worker processes would not share the first or would queue on the second.
ONE_PROCESS_SCHEMES = ("memory:", "sqlite:", "sqlite+")
QUICK_EXIT_SECONDS = 10.0  # a child that exits sooner than this after its start backs off
MAX_RESTART_DELAY = 30.0

log = logging.getLogger(__name__)


def default_processes(url: str, burst: bool) -> int:
    """How many worker processes ``conveyor worker`` starts without ``--processes``.

    One per CPU this process may run on (its affinity, which container CPU sets
    narrow; not a CFS quota, which ``--processes`` or ``$CONVEYOR_PROCESSES`` should
    then state): one process runs one event loop on one core, and a drain through
    the command line on two CPUs went 1.1x (no-op jobs, PostgreSQL) to 2.0x (1 ms of
    CPU per job, Redis) faster with two processes than with one, and never slower
    (bench/PROCESSES_RESULTS.md).
    One in burst mode, and on the embedded backends (``ONE_PROCESS_SCHEMES``).
    """
    if burst or url.lower().startswith(ONE_PROCESS_SCHEMES):
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Child:
    """One supervised worker process and its restart bookkeeping.

    Attributes:
        argv: The command that starts the worker process.
        env: Its environment, or ``None`` for the supervisor's own.
        process: The running process, or ``None`` while it waits to start again.
        started: When it was last started (``time.monotonic()``).
        quick_exits: How many times in a row it exited soon after its start.
        restart_at: When it may start again (``time.monotonic()``).
        signalled: How many of the recorded signals it has been sent.
    """

    argv: list[str]
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_exits: int = 0
    restart_at: float = 0.0
    signalled: int = 0

    def start(self) -> int:
        """Start the worker process.

        Returns:
            Its process id.
        """
        # Its own process group: a Ctrl+C at the terminal reaches only the
        # supervisor, which forwards it once (twice would mean "stop now").
        self.process = subprocess.Popen(self.argv, env=self.env, process_group=0)
        self.started = time.monotonic()
        self.signalled = 0
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Whether its process is running."""
        return self.process is not None and self.process.poll() is None

    def forward(self, signals: list[int]) -> None:
        """Send the signals it has not been sent yet, in order.

        Args:
            signals: Every signal the supervisor has received, oldest first.
        """
        while self.process is not None and self.alive and self.signalled < len(signals):
            self.process.send_signal(signals[self.signalled])
            self.signalled += 1

    def schedule_restart(self, now: float) -> float:
        """Forget the exited process, and say when to start another.

        The delay doubles from 0.5 s (up to ``MAX_RESTART_DELAY``) for each
        exit in a row within ``QUICK_EXIT_SECONDS`` of its start.

        Args:
            now: The current ``time.monotonic()``.

        Returns:
            The delay before the next start, in seconds.
        """
        lived = now - self.started
        self.quick_exits = self.quick_exits + 1 if lived < QUICK_EXIT_SECONDS else 0
        delay = 0.0
        if self.quick_exits:
            delay = min(MAX_RESTART_DELAY, 0.5 * 2 ** (self.quick_exits - 1))
        self.process = None
        self.restart_at = now + delay
        return delay


def describe_exit(code: int) -> str:
    """How a process ended, for the log.

    Args:
        code: Its return code, negative for the signal that killed it.

    Returns:
        A phrase such as ``"was killed by SIGKILL"`` or ``"exited with code 1"``.
    """
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def supervise(
    argv: list[str],
    count: int,
    env: dict[str, str] | None = None,
    per_child: Callable[[int], list[str]] = lambda _: [],
) -> int:
    """Keep ``count`` children running until a signal; forward signals to them.

    A child that exits is started again, after a growing delay (up to 30 s)
    when it keeps exiting within seconds of its start. A child that exits
    with code 2 (configuration) stops them all: restarting would not help.
    Returns once every child has exited after a signal.

    Args:
        argv: The command that starts one worker process.
        count: How many to keep running.
        env: Their environment, or ``None`` for the supervisor's own.
        per_child: Arguments added to child ``i``'s command (``0 <= i < count``).

    Returns:
        The supervisor's exit code: ``EXIT_USAGE`` if a child stopped them all, else 0.
    """
    children = [Child(argv + per_child(i), env) for i in range(count)]
    # The handler only records; the loop forwards, so no child misses a signal
    # or gets one twice, even one that was starting when the signal came.
    signals: list[int] = []
    exit_code = 0

    def record(sig: int, _frame: object) -> None:
        signals.append(sig)

    signal.signal(signal.SIGTERM, record)
    signal.signal(signal.SIGINT, record)
    for child in children:
        log.info("started worker process %d", child.start())
    while True:
        time.sleep(0.1)
        if signals:
            for child in children:
                child.forward(signals)
            if not any(child.alive for child in children):
                log.info("all worker processes stopped")
                return exit_code
            continue
        if _restart_exited(children, time.monotonic()):
            exit_code = EXIT_USAGE
            signals.append(signal.SIGTERM)


def _restart_exited(children: list[Child], now: float) -> bool:
    """Start again the children that exited and whose delay is over.

    Returns:
        Whether one exited with a configuration error, which stops them all.
    """
    for child in children:
        code = child.process.poll() if child.process is not None else None
        if child.process is not None and code is not None:
            if code == EXIT_USAGE:
                log.error(
                    "worker process %d exited with a configuration error; stopping all",
                    child.process.pid,
                )
                return True
            pid = child.process.pid
            delay = child.schedule_restart(now)
            log.warning(
                "worker process %d %s; starting another%s",
                pid,
                describe_exit(code),
                f" in {delay:.1f}s" if delay else "",
            )
        if child.process is None and now >= child.restart_at:
            log.info("started worker process %d", child.start())
    return False


async def run_supervised(found: Worker, supervisor_pid: int) -> None:
    """Run a worker that stops gracefully if its supervisor dies without telling it.

    Args:
        found: The worker to run.
        supervisor_pid: The process id of the supervisor that started this process.
    """
    task = asyncio.create_task(found.run())
    told = False
    while not task.done():
        await asyncio.wait({task}, timeout=1.0)
        if not told and os.getppid() != supervisor_pid:
            log.warning("supervisor %d is gone; stopping", supervisor_pid)
            await found.stop()
            told = True
    task.result()
