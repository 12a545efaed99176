"""Real worker processes (``conveyor worker tests.chaos.app:worker``) that a test can
SIGKILL, replace, pause, resume and stop, and never leaks."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = "tests.chaos.app:worker"


class Fleet:
    """``size`` worker processes on one URL and namespace, each logging to a file."""

    def __init__(self, url: str, namespace: str, folder: Path, size: int = 3, **env: str) -> None:
        self.env = env  # more environment for the workers (e.g. CHAOS_RETENTION)
        self.url = url
        self.namespace = namespace
        self.folder = folder
        self.size = size
        self.journal = folder / "journal"
        self.journal.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.everyone: list[subprocess.Popen[bytes]] = []
        self.kills = 0
        self.starts = 0
        self.forced: list[int] = []  # pids that ignored SIGTERM for ``grace`` seconds

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(
            os.environ,
            CONVEYOR_URL=self.url,  # by the environment: never a password on a command line
            CONVEYOR_NAMESPACE=self.namespace,
            CHAOS_JOURNAL=str(self.journal),
            PYTHONPATH=str(ROOT),
            **self.env,
        )
        argv = [sys.executable, "-m", "conveyor", "worker", TARGET, "--namespace", self.namespace]
        argv += ["--processes", "1"]  # one process each: the fleet kills and counts them
        argv += ["--log-level", "WARNING"]
        log = open(self.folder / f"worker-{self.starts}.log", "wb")  # noqa: SIM115 (the child keeps it)
        try:
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        self.starts += 1
        self.everyone.append(proc)
        return proc

    def start(self) -> None:
        while len(self.procs) < self.size:
            self.procs.append(self._spawn())

    def kill_one(self, rng: random.Random) -> int:
        """SIGKILL a random live worker and start another in its place; returns its pid."""
        victim = self.procs.pop(rng.randrange(len(self.procs)))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        self.kills += 1
        self.procs.append(self._spawn())
        return victim.pid

    def rss(self) -> int:
        """The live workers' resident memory, in bytes (Linux /proc)."""
        total = 0
        for proc in self.procs:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total

    def check_alive(self) -> None:
        """A worker that exits by itself is a failure: say why from its log."""
        for proc in self.procs:
            if proc.poll() is not None:
                index = self.everyone.index(proc)
                log = (self.folder / f"worker-{index}.log").read_text(errors="replace")
                raise AssertionError(f"worker {proc.pid} exited with {proc.returncode}:\n{log}")

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM every worker (a graceful stop), SIGKILL whatever is left after ``grace``."""
        for proc in self.everyone:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.everyone:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.forced.append(proc.pid)
                proc.kill()
                proc.wait(10)
        self.procs.clear()
