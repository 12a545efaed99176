"""The job, queue purge, health and burst commands, and the namespace from the
environment (an empty namespace is pointed out)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.cli import main
from tests.cli.procs import ROOT, child_env

WORKER = [sys.executable, "-m", "conveyor", "worker", "tests.cli.app:worker"]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_job_show_cancel_and_retry(url: str) -> None:
    with conveyor.Client(conveyor.Config(url=url)) as client:
        job = client.enqueue(BasicJob(name="x"), queue="mail", key="only-one")
    runner = CliRunner()
    shown = runner.invoke(main, ["job", "show", job.id, "--url", url])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert f"id:             {job.id}" in lines
    assert "state:          queued" in lines
    assert "attempt:        0 of 5" in lines
    assert "key:            only-one" in lines
    assert any(line.startswith("why:") and "no live worker" in line for line in lines)
    cancelled = runner.invoke(main, ["job", "cancel", job.id, "--url", url])
    assert (cancelled.exit_code, cancelled.output) == (0, f"job {job.id} cancelled\n")
    again = runner.invoke(main, ["job", "cancel", job.id, "--url", url])
    assert again.exit_code == 1 and "already settled" in again.output
    retried = runner.invoke(main, ["job", "retry", job.id, "--url", url])
    assert (retried.exit_code, retried.output) == (0, f"job {job.id} queued\n")
    as_json = json.loads(
        runner.invoke(main, ["job", "show", job.id, "--url", url, "--json"]).output
    )
    assert (as_json["id"], as_json["state"], as_json["queue"]) == (job.id, "queued", "mail")
    missing = runner.invoke(
        main, ["job", "show", "0190f2a4-0000-7000-8000-000000000000", "--url", url]
    )
    assert missing.exit_code == 1
    assert "no job with id" in missing.output and "Traceback" not in missing.output


def test_queue_purge_cancels_what_waits_and_asks_first(url: str) -> None:
    with conveyor.Client(conveyor.Config(url=url)) as client:
        waiting = [client.enqueue(BasicJob(name=str(i)), queue="mail") for i in range(3)]
        later = client.enqueue(BasicJob(name="later"), queue="mail", delay=3600)
        other = client.enqueue(BasicJob(name="other"), queue="other")
    runner = CliRunner()
    declined = runner.invoke(main, ["queue", "purge", "mail", "--url", url], input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    with conveyor.Client(conveyor.Config(url=url)) as client:
        assert client.get(later.id).state is JobState.SCHEDULED  # type: ignore[union-attr]
    purged = runner.invoke(main, ["queue", "purge", "mail", "--url", url, "--yes"])
    assert (purged.exit_code, purged.output) == (0, "queue 'mail': 4 job(s) cancelled\n")
    with conveyor.Client(conveyor.Config(url=url)) as client:
        for job in [*waiting, later]:
            found = client.get(job.id)
            assert found is not None
            assert (found.state, found.reason) == (JobState.CANCELLED, "queue purged")
        assert client.get(other.id).state is JobState.QUEUED  # type: ignore[union-attr]
    unknown = runner.invoke(main, ["queue", "purge", "nowhere", "--url", url, "--yes"])
    assert unknown.exit_code == 1 and "no queue named 'nowhere'" in unknown.output


def test_the_namespace_comes_from_the_environment_and_an_empty_one_is_pointed_out(
    url: str,
) -> None:
    runner = CliRunner()
    made = runner.invoke(main, ["migrate", "--url", url], env={"CONVEYOR_NAMESPACE": "shop"})
    assert made.output == "schema ready for namespace 'shop'\n"
    assert conveyor.Config(url=url).namespace == "conveyor"
    with conveyor.Client(conveyor.Config(url=url, namespace="shop")) as client:
        client.enqueue(BasicJob(name="x"))
    elsewhere = runner.invoke(main, ["stats", "--url", url, "--namespace", "shpo"])
    assert elsewhere.exit_code == 0, elsewhere.output
    assert "nothing in this namespace; the URL has: shop" in elsewhere.output
    right = runner.invoke(main, ["stats", "--url", url], env={"CONVEYOR_NAMESPACE": "shop"})
    assert "nothing in this namespace" not in right.output
    assert "conveyor.examples.BasicJob" in right.output


def test_stats_watch_prints_until_interrupted(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("conveyor.cli.time.sleep", nap)
    result = CliRunner().invoke(main, ["stats", "--url", url, "--watch", "1.5"])
    assert result.exit_code == 0, result.output
    assert naps == [1.5, 1.5]
    assert result.output.count("workers: 0") == 2


def test_health(url: str) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["health", "--url", url])
    assert (ok.exit_code, ok.output) == (0, "storage answers; 0 live worker(s)\n")
    no_worker = runner.invoke(main, ["health", "--url", url, "--host", "web-1"])
    assert no_worker.exit_code == 1
    assert "no live worker from host 'web-1'" in no_worker.output
    down = runner.invoke(main, ["health", "--url", "redis://127.0.0.1:1/0"])
    assert down.exit_code == 1 and "unreachable" in down.output


def test_a_burst_worker_runs_what_there_is_then_exits(url: str, tmp_path: Path) -> None:
    with conveyor.Client(conveyor.Config(url=url)) as client:
        for i in range(5):
            client.enqueue(BasicJob(name=str(tmp_path / f"job{i}")), queue="batch")
        client.enqueue(BasicJob(name=str(tmp_path / "elsewhere")), queue="other")
    done = subprocess.run(
        [*WORKER, "--burst", "--queues", "batch"],
        cwd=ROOT,
        env=child_env(url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert all((tmp_path / f"job{i}").exists() for i in range(5))
    assert not (tmp_path / "elsewhere").exists()  # not one of its queues
    assert "nothing left to do" in done.stderr


def test_burst_is_one_process() -> None:
    result = CliRunner().invoke(
        main,
        ["worker", "tests.cli.app:worker", "--burst", "--processes", "2", "--url", "memory://x"],
    )
    assert result.exit_code == 2 and "--burst runs one worker process" in result.output
