"""SIGTERM finishes running jobs; a second SIGTERM hands them back at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("signal_script.py")
ROOT = Path(__file__).resolve().parents[2]


def _run(signals: int) -> str:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(signals)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_first_sigterm_lets_the_running_job_finish() -> None:
    assert _run(1) == "state=succeeded attempt=1 workers=0"


def test_second_sigterm_hands_the_job_back() -> None:
    assert _run(2) == "state=queued attempt=0 workers=0"
