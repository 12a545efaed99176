"""The examples, run as a user would: ``python examples/...`` against a fresh SQLite file."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor._proto.examples.shop_pb2 import Summary
from tests.cli.procs import ROOT, child_env, spawn

pytestmark = pytest.mark.sqlite


def _produce(script: str, url: str) -> str:
    """Run a producer; return the job id it printed."""
    done = subprocess.run(
        [sys.executable, script],
        cwd=ROOT,
        env=child_env(url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def test_basic_producer_and_worker(sqlite_url: str) -> None:
    job_id = _produce("examples/basic/producer.py", sqlite_url)
    with spawn(["examples/basic/worker.py"], child_env(sqlite_url)) as (worker, output):
        with conveyor.Client(conveyor.Config(url=sqlite_url)) as client:
            job = client.wait(job_id, timeout=60)
        assert job.state is conveyor.JobState.SUCCEEDED
        assert job.payload() == BasicJob(name="Bob", count=123)
        output.wait_for(f"hello Bob, count 123 (job {job_id}, attempt 1)")
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=30) == 0, output.text()
    assert "Traceback" not in output.text()


def test_basic_worker_through_the_cli(sqlite_url: str) -> None:
    job_id = _produce("examples/basic/producer.py", sqlite_url)
    args = ["-m", "conveyor", "worker", "examples.basic.worker:worker"]
    with spawn(args, child_env(sqlite_url)) as (worker, output):
        with conveyor.Client(conveyor.Config(url=sqlite_url)) as client:
            assert client.wait(job_id, timeout=60).state is conveyor.JobState.SUCCEEDED
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, output.text()


def test_family_producer_and_worker(sqlite_url: str) -> None:
    order_id = _produce("examples/family/producer.py", sqlite_url)
    with spawn(["examples/family/worker.py"], child_env(sqlite_url)) as (worker, output):
        with conveyor.Client(conveyor.Config(url=sqlite_url)) as client:
            order = client.wait(order_id, timeout=60)
            assert order.state is conveyor.JobState.SUCCEEDED
        output.wait_for("summary: order A-1001 succeeded, 0 job(s) failed for good")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, output.text()
    text = output.text()
    # The one retry logs at WARNING with its traceback (a final failure would at ERROR).
    assert text.count("Traceback") == 1
    assert "WARNING conveyor.worker: job " in text
    assert "attempt 1 of 5 raised TimeoutError('payment provider timed out" in text
    assert "): retrying\nTraceback (most recent call last):" in text
    assert "charged 6600 cents for order A-1001 (attempt 2)" in text
    assert text.count("summary: order") == 1  # the heir ran once, after everything
    assert text.index("summary: order") > text.index("(attempt 2)")
    assert Summary.DESCRIPTOR.full_name == "conveyor.examples.Summary"


def test_repair_example_retries_what_failed_and_the_heir_runs_once(sqlite_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "examples/repair/repair.py"],
        cwd=ROOT,
        env=child_env(sqlite_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    assert "order failed: Failed at " in text
    assert "retried 1 job(s); the order is waiting again" in text
    assert "summary of A-7: charged 9800 cents in all" in text  # 2 mugs, 2 posters, 2 tees
    assert "summary succeeded, ran 1 time(s)" in text
    assert text.index("order failed") < text.index("retried 1 job(s)") < text.index("summary of")


def test_the_testing_example_passes_under_pytest() -> None:
    """docs/testing.md's example, run as a user would: pytest and the plugin's fixtures."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/testing", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=child_env(None),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    """docs/tutorial.md, step by step: compile the .proto with protoc, enqueue, run a burst worker."""
    for name in ("greet.proto", "producer.py", "worker.py"):
        shutil.copy(ROOT / "examples" / "tutorial" / name, tmp_path / name)
    env = child_env(f"sqlite:///{tmp_path / 'tutorial.db'}")
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    run("-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--pyi_out=.", "greet.proto")
    assert (tmp_path / "greet_pb2.py").exists()
    job_id = run("producer.py").strip()
    logs = run("-m", "conveyor", "worker", "worker:worker", "--burst")
    for name in ("Ann", "Bob", "Cy"):
        assert f"hello, {name}" in logs
    assert "greeted 3 of 3: succeeded" in logs
    with conveyor.Client(conveyor.Config(url=env["CONVEYOR_URL"])) as client:
        assert client.get(job_id).state is conveyor.JobState.SUCCEEDED  # type: ignore[union-attr]


@pytest.mark.redis
def test_the_tutorial_runs_on_redis_with_tracing_and_metrics(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    """docs/tutorial.md step 6: the traced worker on Redis, scraped on its metrics port."""
    for name in ("greet.proto", "producer.py", "worker.py", "traced.py"):
        shutil.copy(ROOT / "examples" / "tutorial" / name, tmp_path / name)
    env = child_env(redis_url, CONVEYOR_NAMESPACE=namespace)
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    for args in (
        ["-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--pyi_out=.", "greet.proto"],
        ["producer.py"],
    ):
        done = subprocess.run(
            [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["-m", "conveyor", "worker", "traced:worker", "--processes", "1"]
    command += ["--metrics-port", str(port)]
    with spawn([*command, "--metrics-host", "127.0.0.1"], env, cwd=tmp_path) as (proc, output):
        output.wait_for("greeted 3 of 3: succeeded", timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as got:
            text = got.read().decode()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    succeeded = {
        s.labels["type"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "conveyor_jobs_total" and s.labels["outcome"] == "succeeded"
    }
    assert succeeded == {"tutorial.v1.Greet": 3, "tutorial.v1.GreetAll": 1, "tutorial.v1.Tally": 1}
    logs = output.text()
    assert '"name": "process tutorial.v1.Greet"' in logs  # the console exporter's spans
