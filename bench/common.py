"""Shared pieces: namespaces, Redis key cleanup, INFO commandstats deltas, statistics,
the machine and versions."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from conveyor._proto.examples.basic_pb2 import BasicJob

DEFAULT_URL = "redis://127.0.0.1:6379/14"
QUEUE = BasicJob.DESCRIPTOR.full_name  # a job's queue defaults to its type name
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
REPO = Path(__file__).resolve().parent.parent
MAX_DELETE = 2_000_000  # a bound on one namespace's cleanup

# Commands that only a client can send (a Lua script cannot call them), so every call in a
# commandstats delta is one round trip of some client. Everything else may also be a
# redis.call() inside a Conveyor script.
CLIENT_ONLY = frozenset(
    {
        "evalsha",
        "eval",
        "evalsha_ro",
        "eval_ro",
        "blpop",
        "brpop",
        "ping",
        "select",
        "hello",
        "info",
        "multi",
        "exec",
        "subscribe",
        "script|load",
        "script|exists",
        "client|setinfo",
        "client|setname",
        "client|list",
        "config|get",
        "memory|usage",
        "object|encoding",
    }
)


def check_loopback(url: str) -> None:
    """Refuse any server that is not on this machine's loopback."""
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"refusing {url!r}: the benchmark talks to 127.0.0.1 only")


def new_namespace(tag: str) -> str:
    """A fresh Conveyor namespace (<= 40 chars of [a-z0-9_])."""
    clean = re.sub(r"[^a-z0-9_]", "_", tag.lower())[:24]
    return f"bench_{clean}_{secrets.token_hex(4)}"


async def delete_namespace(redis: aioredis.Redis, namespace: str) -> int:
    """SCAN MATCH "{ns}:*" and DEL in batches; returns how many keys went."""
    deleted = 0
    batch: list[bytes] = []
    seen = 0
    async for key in redis.scan_iter(match="{" + namespace + "}:*", count=1000):
        batch.append(key)
        seen += 1
        if len(batch) >= 1000:
            deleted += await redis.delete(*batch)
            batch = []
        if seen >= MAX_DELETE:
            break
    if batch:
        deleted += await redis.delete(*batch)
    return deleted


# --- INFO commandstats ------------------------------------------------------------------


async def commandstats(redis: aioredis.Redis) -> dict[str, dict[str, int]]:
    """``INFO commandstats`` as {command: {"calls": n, "usec": n}}."""
    raw = await redis.info("commandstats")
    out: dict[str, dict[str, int]] = {}
    for key, value in raw.items():
        name = key.removeprefix("cmdstat_")
        out[name] = {"calls": int(value["calls"]), "usec": int(value["usec"])}
    return out


def commandstats_delta(
    before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    """Per command, calls and usec added between two snapshots (commands with calls only)."""
    delta: dict[str, dict[str, int]] = {}
    for name, now in after.items():
        was = before.get(name, {"calls": 0, "usec": 0})
        calls = now["calls"] - was["calls"]
        if calls > 0:
            delta[name] = {"calls": calls, "usec": now["usec"] - was["usec"]}
    return dict(sorted(delta.items()))


def round_trips(
    delta: Mapping[str, Mapping[str, int]],
    jobs: int,
    *,
    harness: Mapping[str, int] | None = None,
    library_client: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Split a commandstats delta into client round trips and commands run inside Lua.

    ``harness`` are calls the harness itself made in the window (its INFO snapshots, its
    progress polls): they are removed. ``library_client`` are calls of commands that a
    script could also make but that the library sent as a client (e.g. the HSET of
    ``publish_types`` at worker start): they count as round trips, not as Lua calls.
    Figures are per job.
    """
    harness = dict(harness or {})
    library_client = dict(library_client or {})
    trips: dict[str, int] = {}
    lua: dict[str, int] = {}
    script_usec = 0
    client_usec = 0
    for name, stat in delta.items():
        calls = stat["calls"] - harness.get(name, 0)
        if name == "info":  # only ever the harness's snapshots
            continue
        if calls <= 0:
            continue
        if name in CLIENT_ONLY:
            trips[name] = calls
            client_usec += stat["usec"]
            if name.startswith("eval"):
                script_usec += stat["usec"]
        else:
            from_client = min(calls, library_client.get(name, 0))
            if from_client:
                trips[name] = from_client
            if calls - from_client:
                lua[name] = calls - from_client
    per = float(jobs) if jobs else 1.0
    return {
        "jobs": jobs,
        "round_trips_per_job": sum(trips.values()) / per,
        "round_trips": {k: v / per for k, v in sorted(trips.items())},
        "evalsha_per_job": trips.get("evalsha", 0) / per,
        "blpop_per_job": trips.get("blpop", 0) / per,
        "lua_calls_per_job": sum(lua.values()) / per,
        "lua_calls": {k: v / per for k, v in sorted(lua.items(), key=lambda kv: -kv[1])},
        "server_usec_per_job": client_usec / per,
        "script_usec_per_job": script_usec / per,
    }


# --- statistics ---------------------------------------------------------------------------


def summarize(values: Iterable[float]) -> dict[str, Any]:
    """Median, min and max of the runs (and the runs themselves)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "values": []}
    return {
        "median": statistics.median(vals),
        "min": min(vals),
        "max": max(vals),
        "values": vals,
    }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, min(len(sorted_values), -(-len(sorted_values) * q // 100)))
    return sorted_values[int(rank) - 1]


# --- redis-benchmark ------------------------------------------------------------------------

_RB_LINE = re.compile(r"^\s*([A-Z_]+[A-Za-z_ ()0-9]*?):\s*([0-9.]+)\s+requests per second")


def parse_redis_benchmark(output: str) -> dict[str, float]:
    """Requests/s per test from ``redis-benchmark -q`` output (progress lines use \\r)."""
    rates: dict[str, float] = {}
    for line in re.split(r"[\r\n]+", output):
        match = _RB_LINE.match(line)
        if match:
            rates[match.group(1).strip().lower()] = float(match.group(2))
    return rates


# --- the machine ----------------------------------------------------------------------------


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_kb = int(line.split()[1])
    os_name = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    return {
        "nproc": (_run(["nproc"]).strip() or str(os.cpu_count())),
        "cpu_model": cpu,
        "ram_gib": round(ram_kb / 1024 / 1024, 1),
        "os": os_name,
        "kernel": platform.release(),
        "arch": platform.machine(),
    }


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_state() -> dict[str, Any]:
    """The commit checked out, and which tracked files under conveyor/ differ from it."""
    commit = _run(["git", "-C", str(REPO), "rev-parse", "HEAD"]).strip()
    status = ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]
    modified = [ln[3:] for ln in _run([*status, "--", "conveyor"]).splitlines() if ln.strip()]
    return {
        "commit": commit,
        "conveyor_modified": modified,
        "conveyor_tree_sha256": tree_digest(REPO / "conveyor"),
    }


def versions() -> dict[str, Any]:
    """Versions that every backend shares (each backend adds its own)."""
    import google.protobuf

    git = git_state()
    dirty = " (tracked files under conveyor/ modified)" if git["conveyor_modified"] else ""
    return {
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "protobuf": google.protobuf.__version__,
        "protobuf_backend": _protobuf_backend(),
        "conveyor": _dist_version("conveyor-jobs"),
        "conveyor_git": git["commit"] + dirty,
        "conveyor_modified": git["conveyor_modified"],
        "conveyor_tree_sha256": git["conveyor_tree_sha256"],
        "uuid_utils": _dist_version("uuid-utils") or _dist_version("uuid_utils"),
    }


def tree_digest(folder: Path) -> str:
    """SHA-256 over the package's .py and .lua files as they are on disk (what was measured)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".py", ".lua") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _protobuf_backend() -> str:
    try:
        from google.protobuf.internal import api_implementation

        return str(api_implementation.Type())
    except ImportError:  # pragma: no cover
        return "unknown"


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """Share of all CPUs busy between two ``cpu_times()`` readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else None


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []
