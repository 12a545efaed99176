"""The harness's side: a virtualenv per peer, and one driver run in it per measurement.

Each peer's dependency group (``peer-<group>`` in pyproject.toml) is installed with
``uv`` into ``.bench/venvs/<group>``; a stamp file holds the group's requirements, so a
changed pin rebuilds that virtualenv and nothing else. Peers never share a process or a
redis-py version with Conveyor (arq needs redis-py < 6 where Celery 5.7 needs >= 6.4).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from . import DRIVER_WORKLOADS, PEERS

REPO = Path(__file__).resolve().parents[2]
VENVS = REPO / ".bench" / "venvs"


class PeerSetupError(RuntimeError):
    """A peer's virtualenv could not be made."""


def requirements(group: str) -> list[str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    groups: dict[str, list[str]] = data.get("dependency-groups", {})
    if f"peer-{group}" not in groups:
        raise PeerSetupError(f"pyproject.toml has no dependency group peer-{group}")
    return list(groups[f"peer-{group}"])


def python_of(peer: str) -> Path:
    """The peer's virtualenv's python, made (or remade) when missing or stale."""
    group = PEERS[peer][1]
    venv = VENVS / group
    python = venv / "bin" / "python"
    wanted = json.dumps(requirements(group))
    stamp = venv / "conveyor-bench-requirements.json"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    uv = shutil.which("uv")
    if uv is None:
        raise PeerSetupError("the peers' virtualenvs are made with uv: pip install uv")
    shutil.rmtree(venv, ignore_errors=True)
    print(f"  making {venv.relative_to(REPO)} (peer-{group})", flush=True)
    steps = [
        [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
        [uv, "pip", "install", "--quiet", "--python", str(python), "--group", f"peer-{group}"],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise PeerSetupError(f"{' '.join(cmd[:3])} failed:\n{done.stderr[-2000:]}")
    stamp.write_text(wanted)
    return python


#: The client libraries under each peer whose versions RESULTS.md reports with it.
UNDERLYING = ("redis", "hiredis", "kombu", "psycopg", "psycopg-pool", "asyncpg")


def prepare(peers: list[str]) -> dict[str, str]:
    """Make every virtualenv up front (not inside a timed round); returns the versions:
    each peer's own (``<package>``) and its client libraries' (``env:<peer>``)."""
    versions: dict[str, str] = {}
    probe = (
        "import importlib.metadata as m, json, sys\n"
        "found = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(found))"
    )
    for peer in peers:
        python = python_of(peer)
        package = PEERS[peer][1]  # each group is named after its distribution
        out = subprocess.run(
            [str(python), "-c", probe, package, *UNDERLYING],
            capture_output=True,
            text=True,
            timeout=60,
        )
        try:
            found: dict[str, str] = json.loads(out.stdout)
        except ValueError:
            found = {}
        versions[package] = found.pop(package, "?")
        versions[f"env:{peer}"] = ", ".join(f"{k} {v}" for k, v in found.items()) or "?"
    return versions


async def run(
    peer: str,
    workload: str,
    *,
    redis_url: str,
    pg_url: str,
    jobs: int,
    w3_rate: float,
    w3_seconds: float,
    w4_children: int,
    deadline: float,
) -> dict[str, Any]:
    """One measurement: the driver in the peer's virtualenv, bounded in time."""
    python = python_of(peer)
    with tempfile.TemporaryDirectory(prefix="peer-run-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            str(python), "-m", "bench.peers.driver", peer, DRIVER_WORKLOADS[workload],
            "--redis-url", redis_url, "--pg-url", pg_url, "--jobs", str(jobs),
            "--w3-rate", str(w3_rate), "--w3-seconds", str(w3_seconds),
            "--w4-children", str(w4_children), "--deadline", str(deadline), "--out", str(out),
        ]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), deadline * 2 + 120)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return {"error": f"the {peer} driver ran past {deadline * 2 + 120:.0f} s"}
        if not out.exists():
            tail = output.decode(errors="replace").strip().splitlines()[-12:]
            return {"error": f"the {peer} driver wrote nothing (exit {proc.returncode}):\n"
                    + "\n".join(tail)}  # fmt: skip
        result: dict[str, Any] = json.loads(out.read_text())
        return result
