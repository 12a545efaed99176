"""``conveyor worker --processes N``: real processes, killed, restarted and stopped."""

from __future__ import annotations

import os
import signal
import socket
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.supervisor import EXIT_USAGE, default_processes, supervise

from .procs import alive, child_env, children_of, spawn, wait_until

WORKER = ["-m", "conveyor", "worker", "tests.cli.app:worker", "--processes", "2"]


def _children(pid: int, count: int) -> set[int]:
    kids = children_of(pid)
    return kids if len(kids) == count else set()


def _two_children(pid: int) -> set[int]:
    return _children(pid, 2)


@pytest.mark.sqlite
def test_a_killed_worker_process_is_replaced_and_sigterm_stops_all_gracefully(
    sqlite_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "runs"
    config = conveyor.Config(url=sqlite_url)
    with spawn(WORKER, child_env(sqlite_url)) as (supervisor, output):
        first = wait_until(lambda: _two_children(supervisor.pid), "two worker processes")
        for pid in first:  # the URL (maybe with a password) is not on a command line
            assert b"--url" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        def replaced() -> set[int]:
            kids = _two_children(supervisor.pid)
            return kids if victim not in kids else set()

        second = wait_until(replaced, "a replacement worker process")
        output.wait_for(f"worker process {victim} was killed by SIGKILL; starting another")

        # The processes work (jobs come only now, so none was lost with the victim);
        # then a slow job is running when SIGTERM arrives.
        with conveyor.Client(config) as client:
            quick = client.enqueue_many([BasicJob(name=str(marker)) for _ in range(10)])
        wait_until(
            lambda: marker.exists() and len(marker.read_text().splitlines()) >= len(quick),
            "the quick jobs",
        )
        slow_marker = tmp_path / "slow"
        with conveyor.Client(config) as client:
            slow = client.enqueue(BasicJob(name=str(slow_marker), count=1500))
        wait_until(lambda: Path(f"{slow_marker}.started").exists(), "the slow job to start")
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0, output.text()

    text = output.text()
    assert "Traceback" not in text, text
    assert "all worker processes stopped" in text
    assert not any(alive(pid) for pid in second)
    with conveyor.Client(config) as client:
        states = {client.wait(j.id, timeout=5).state for j in [*quick, slow]}
    assert states == {conveyor.JobState.SUCCEEDED}  # the slow job finished, not handed back
    assert len(slow_marker.read_text().splitlines()) == 1
    runs = marker.read_text().splitlines()
    assert sorted(line.split()[1] for line in runs) == sorted(j.id for j in quick)


@pytest.mark.sqlite
def test_worker_processes_stop_when_their_supervisor_is_killed(sqlite_url: str) -> None:
    with spawn(WORKER, child_env(sqlite_url)) as (supervisor, output):
        kids = wait_until(lambda: _two_children(supervisor.pid), "two worker processes")
        # Each has started its worker, and so watches its parent.
        wait_until(lambda: output.text().count(" started on queues ") >= 2, "two started workers")
        supervisor.kill()
        supervisor.wait(timeout=30)
        wait_until(lambda: not any(alive(pid) for pid in kids), "orphaned workers to stop")
    assert output.text().count("is gone; stopping") == 2, output.text()


def test_a_configuration_error_in_a_worker_process_stops_them_all(tmp_path: Path) -> None:
    # The first child to start exits with code 2; the other would sleep for a minute.
    script = (
        "import os, sys, time\n"
        "try:\n"
        "    os.close(os.open(sys.argv[1], os.O_CREAT | os.O_EXCL))\n"
        "except FileExistsError:\n"
        "    time.sleep(60)\n"
        "sys.exit(2)\n"
    )
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = supervise([sys.executable, "-c", script, str(tmp_path / "first")], 2)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert code == EXIT_USAGE


def _two_free_ports() -> int:
    """A port that is free, and so is the next one (bounded tries)."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two neighbouring free ports")


@pytest.mark.sqlite
def test_each_worker_process_serves_metrics_on_its_own_port(sqlite_url: str) -> None:
    port = _two_free_ports()
    args = [*WORKER, "--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
    with spawn(args, child_env(sqlite_url)) as (supervisor, output):
        wait_until(lambda: output.text().count("metrics: serving on") >= 2, "two metrics endpoints")
        workers = set()
        for each in (port, port + 1):
            with urllib.request.urlopen(f"http://127.0.0.1:{each}/metrics", timeout=10) as got:
                text = got.read().decode()
            [family] = [
                f
                for f in text_string_to_metric_families(text)
                if f.name == "conveyor_worker_concurrency"
            ]
            workers |= {s.labels["worker"] for s in family.samples}
            assert "conveyor_storage_up 1.0" in text
        assert len(workers) == 2  # one worker per process, one port each
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0, output.text()


def test_default_processes_is_one_per_cpu_on_server_backends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert default_processes("redis://127.0.0.1:6379/0", burst=False) == 3
    assert default_processes("postgresql+psycopg://h/db", burst=False) == 3
    assert default_processes("redis://127.0.0.1:6379/0", burst=True) == 1
    for url in ("memory://x", "sqlite:///jobs.db", "sqlite+aiosqlite:///jobs.db", "SQLITE:///x"):
        assert default_processes(url, burst=False) == 1


@pytest.mark.redis
@pytest.mark.parametrize("processes", ["default", "3"])
def test_a_redis_worker_starts_one_process_per_cpu_unless_told(
    redis_url: str, namespace: str, processes: str
) -> None:
    env = child_env(redis_url, CONVEYOR_NAMESPACE=namespace)
    expected = default_processes(redis_url, burst=False)
    if processes != "default":
        env["CONVEYOR_PROCESSES"] = processes
        expected = int(processes)
    with spawn(WORKER[:-2], env) as (supervisor, output):
        if expected > 1:
            kids = wait_until(
                lambda: _children(supervisor.pid, expected), f"{expected} worker processes"
            )
            # Each child runs one process itself, whatever $CONVEYOR_PROCESSES says.
            for pid in kids:
                assert b"--processes\x001\x00" in Path(f"/proc/{pid}/cmdline").read_bytes()
        else:  # a one-CPU machine: the worker runs in the command's own process
            assert not children_of(supervisor.pid)
        output.wait_for("started on queues", timeout=30)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0, output.text()
