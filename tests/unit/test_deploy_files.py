"""compose.yaml and the Dockerfile say what the README's "Deploying" promises: Redis that
keeps jobs, a worker whose health check is `conveyor health`, the admin behind a
password, and commands that name things that exist. (No container runtime runs here:
these check the files, and the commands themselves are tested in tests/cli.)"""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

import conveyor
from conveyor.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, dict[str, object]]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services: dict[str, dict[str, object]] = data["services"]
    return services


def test_compose_runs_redis_a_worker_and_the_admin() -> None:
    services = _compose()
    assert set(services) == {"redis", "worker", "admin"}
    redis_command = services["redis"]["command"]
    assert "--appendonly" in redis_command and "noeviction" in redis_command  # type: ignore[operator]
    for name in ("worker", "admin"):
        env = services[name]["environment"]
        assert env["CONVEYOR_URL"] == "redis://redis:6379/0"  # type: ignore[index]
        assert services[name]["depends_on"] == {"redis": {"condition": "service_healthy"}}


def test_the_worker_command_names_a_worker_and_its_health_check_is_conveyor_health() -> None:
    worker = _compose()["worker"]
    command: list[str] = worker["command"]  # type: ignore[assignment]
    assert command[:2] == ["conveyor", "worker"]
    module, _, attr = command[2].partition(":")
    assert isinstance(getattr(importlib.import_module(module), attr), conveyor.Worker)
    check = " ".join(worker["healthcheck"]["test"])  # type: ignore[index]
    assert "conveyor health --host" in check and "hostname" in check
    assert main.get_command(None, "health") is not None  # type: ignore[arg-type]


def test_the_admin_needs_a_password_from_the_environment() -> None:
    admin = _compose()["admin"]
    env: dict[str, str] = admin["environment"]  # type: ignore[assignment]
    assert env["CONVEYOR_ADMIN_USERNAME"] and env["CONVEYOR_ADMIN_PASSWORD"]
    assert "--password" not in admin["command"]  # type: ignore[operator]
    assert admin["ports"] == ["127.0.0.1:8000:8000"]


def test_the_dockerfile_installs_the_package_and_the_examples() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir '.[redis,admin,metrics]'" in text
    assert "COPY examples ./examples" in text
    assert "USER conveyor" in text


def test_compose_publishes_one_metrics_port_per_worker_process_on_loopback() -> None:
    worker = _compose()["worker"]
    command: list[str] = worker["command"]  # type: ignore[assignment]
    port = int(command[command.index("--metrics-port") + 1])
    processes = int(command[command.index("--processes") + 1])
    last = port + processes - 1  # process i serves port + i (conveyor/cli.py)
    assert worker["ports"] == [f"127.0.0.1:{port}-{last}:{port}-{last}"]
