"""``conveyor worker --loop`` and ``Worker.run_sync(loop=)``: uvloop when installed
(the ``uvloop`` extra, part of ``all``), asyncio's loop when asked or when it is not."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor.cli import main
from conveyor.core.event_loop import loop_factory


def _loop_of_a_burst(tmp_path: Path, *loop: str) -> str:
    """Runs one job through ``conveyor worker --burst`` and returns its loop's module."""
    url = f"sqlite:///{tmp_path / 'loop.db'}"
    out = tmp_path / "loop.txt"
    with conveyor.Client(conveyor.Config(url=url)) as client:
        client.enqueue(BasicJob(name=str(out)))
    result = CliRunner().invoke(
        main, ["worker", "tests.cli.loop_app:worker", "--url", url, "--burst", *loop]
    )
    assert result.exit_code == 0, result.output
    return out.read_text()


@pytest.mark.parametrize(("args", "module"), [((), "uvloop"), (("--loop", "uvloop"), "uvloop")])
def test_the_worker_runs_on_uvloop_by_default_when_installed(
    tmp_path: Path, args: tuple[str, ...], module: str
) -> None:
    assert _loop_of_a_burst(tmp_path, *args) == module


def test_loop_asyncio_keeps_asyncios_own_loop(tmp_path: Path) -> None:
    assert _loop_of_a_burst(tmp_path, "--loop", "asyncio") == "asyncio"


def test_auto_falls_back_to_asyncio_without_uvloop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now fails
    assert loop_factory("auto") is None
    assert _loop_of_a_burst(tmp_path) == "asyncio"


def test_asking_for_uvloop_without_it_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    result = CliRunner().invoke(
        main, ["worker", "tests.cli.loop_app:worker", "--url", "memory://x", "--loop", "uvloop"]
    )
    assert result.exit_code == 2
    assert "pip install 'conveyor-jobs[uvloop]'" in result.output


def test_unknown_loops_are_refused() -> None:
    with pytest.raises(conveyor.ConfigurationError, match="unknown event loop 'trio'"):
        loop_factory("trio")
    result = CliRunner().invoke(
        main, ["worker", "tests.cli.loop_app:worker", "--url", "memory://x", "--loop", "trio"]
    )
    assert result.exit_code == 2 and "'trio' is not one of" in result.output


def test_run_sync_takes_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    worker = conveyor.Worker(conveyor.Config(url="memory://run-sync-loop"))

    async def run() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__.split(".")[0])

    monkeypatch.setattr(worker, "run", run)
    worker.run_sync(loop="uvloop")
    worker.run_sync(loop="asyncio")
    assert seen == ["uvloop", "asyncio"]
