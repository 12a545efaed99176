"""The command line: exit codes, messages, and a real worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.cli import main
from conveyor.core.type_registry import descriptor_set

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sqlite_cli_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_help_on_every_command() -> None:
    runner = CliRunner()
    for command in ([], ["worker"], ["migrate"], ["stats"], ["enqueue"]):
        result = runner.invoke(main, [*command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_migrate_then_stats_on_sqlite(sqlite_cli_url: str) -> None:
    runner = CliRunner()
    migrated = runner.invoke(main, ["migrate", "--url", sqlite_cli_url])
    assert migrated.exit_code == 0, migrated.output
    assert "schema ready" in migrated.output
    stats = runner.invoke(main, ["stats", "--url", sqlite_cli_url, "--minutes", "2"])
    assert stats.exit_code == 0, stats.output
    assert "workers: 0" in stats.output
    assert "succeeded" in stats.output


def test_url_comes_from_the_environment(sqlite_cli_url: str) -> None:
    result = CliRunner().invoke(main, ["migrate"], env={"CONVEYOR_URL": sqlite_cli_url})
    assert result.exit_code == 0, result.output


def test_unknown_scheme_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["stats", "--url", "mysql://x/y"])
    assert result.exit_code == 2
    assert "no backend" in result.output
    assert "Traceback" not in result.output


def test_server_down_is_a_runtime_error_without_the_password() -> None:
    result = CliRunner().invoke(main, ["stats", "--url", "redis://:hunter2@127.0.0.1:1/0"])
    assert result.exit_code == 1
    assert "unreachable" in result.output
    assert "hunter2" not in result.output


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module:worker", "cannot import"),
        ("tests.cli.app:not_a_worker", "not a conveyor.Worker"),
        ("tests.cli.app", "MODULE:ATTR"),
    ],
)
def test_bad_worker_target_is_a_usage_error(target: str, message: str) -> None:
    result = CliRunner().invoke(main, ["worker", target, "--url", "memory://cli"])
    assert result.exit_code == 2
    assert message in result.output


def test_enqueue_by_type_name_with_json(sqlite_cli_url: str) -> None:
    import asyncio

    from conveyor.core.backend_registry import open_storage

    config = conveyor.Config(url=sqlite_cli_url)

    async def publish() -> None:
        storage = await open_storage(config)
        await storage.publish_types({"conveyor.examples.BasicJob": descriptor_set(BasicJob)})
        await storage.aclose()

    asyncio.run(publish())
    runner = CliRunner()
    ok = runner.invoke(
        main,
        [
            "enqueue",
            "conveyor.examples.BasicJob",
            "--json",
            '{"name": "bob", "count": 3}',
            "--url",
            sqlite_cli_url,
        ],
    )
    assert ok.exit_code == 0, ok.output
    job_id = ok.output.strip()

    async def fetch() -> conveyor.Job | None:
        async with conveyor.AsyncClient(config) as client:
            return await client.get(job_id)

    job = asyncio.run(fetch())
    assert job is not None
    assert job.payload() == BasicJob(name="bob", count=3)
    bad = runner.invoke(
        main,
        ["enqueue", "conveyor.examples.BasicJob", "--json", '{"nope": 1}', "--url", sqlite_cli_url],
    )
    assert bad.exit_code == 1
    assert "does not match" in bad.output
    unknown = runner.invoke(
        main, ["enqueue", "acme.Missing", "--json", "{}", "--url", sqlite_cli_url]
    )
    assert unknown.exit_code == 1
    assert "no descriptor published" in unknown.output


@pytest.mark.sqlite
def test_worker_processes_run_jobs_and_stop_on_sigterm(sqlite_cli_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "runs.txt"
    config = conveyor.Config(url=sqlite_cli_url)
    with conveyor.Client(config) as client:
        jobs = client.enqueue_many([BasicJob(name=str(marker)) for _ in range(20)])
    env = {**os.environ, "CONVEYOR_URL": sqlite_cli_url, "PYTHONPATH": str(ROOT)}
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", "tests.cli.app:worker", "--processes", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if marker.exists() and len(marker.read_text().splitlines()) >= len(jobs):
                break
            time.sleep(0.1)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        output = supervisor.communicate(timeout=30)[0].decode()
    assert supervisor.returncode == 0, output
    runs = marker.read_text().splitlines()
    assert sorted(line.split()[1] for line in runs) == sorted(j.id for j in jobs)
    with conveyor.Client(config) as client:
        states = {client.wait(j.id, timeout=5).state for j in jobs}
    assert states == {conveyor.JobState.SUCCEEDED}
