"""The ``conveyor`` command line: worker, migrate, stats, enqueue.

Every command reads ``CONVEYOR_URL`` when ``--url`` is absent. Exit codes:
0 success, 1 a runtime failure (server down, bad payload), 2 a usage error.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, TypeVar

import click

from .core.backend_registry import open_storage
from .core.config import Config
from .core.errors import ConfigurationError, ConveyorError
from .core.specs import build_spec
from .core.states import JobState
from .core.type_registry import TypeRegistry
from .core.worker import Worker

T = TypeVar("T")

url_option = click.option(
    "--url",
    envvar="CONVEYOR_URL",
    default=None,
    help="Storage URL (redis://, postgresql://, sqlite:///path, memory://); $CONVEYOR_URL.",
)
namespace_option = click.option(
    "--namespace", default="conveyor", show_default=True, help="Installation namespace."
)


def _config(url: str | None, namespace: str, **extra: Any) -> Config:
    try:
        if url is None:
            return Config(namespace=namespace, **extra)
        return Config(url=url, namespace=namespace, **extra)
    except ConveyorError as exc:
        raise click.UsageError(str(exc)) from exc


def _run(coro: Awaitable[T]) -> T:
    """Run a coroutine; a ConveyorError becomes one line on stderr.

    Exit code 2 when the configuration is wrong (fix the command), 1 otherwise.
    """
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except ConfigurationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ConveyorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data)


def _setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


@click.group()
@click.version_option(package_name="conveyor-jobs")
def main() -> None:
    """Conveyor: background jobs with families (children, and heirs after the whole family)."""


@main.command()
@click.argument("target")
@url_option
@click.option("--concurrency", type=click.IntRange(min=1), help="Jobs run at once per process.")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text")
@click.option("--log-level", default="info", show_default=True)
def worker(
    target: str,
    url: str | None,
    concurrency: int | None,
    processes: int,
    log_format: str,
    log_level: str,
) -> None:
    """Run the Worker found at TARGET (MODULE:ATTR), e.g. myapp.jobs:worker.

    With --processes N, a supervisor runs N worker processes, restarts one that
    dies, and forwards SIGTERM/SIGINT (a second signal stops them at once).
    """
    _setup_logging(log_format, log_level)
    found = _load_worker(target)
    if processes > 1:
        argv = [sys.executable, "-m", "conveyor", "worker", target, "--log-format", log_format]
        argv += ["--log-level", log_level]
        if url:
            argv += ["--url", url]
        if concurrency:
            argv += ["--concurrency", str(concurrency)]
        sys.exit(_supervise(argv, processes))
    if url is not None:
        found.config = replace(found.config, url=url)
    if concurrency is not None:
        found.concurrency = concurrency
    _run(found.run())


def _load_worker(target: str) -> Worker:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(
            "expected MODULE:ATTR, e.g. myapp.jobs:worker", param_hint="TARGET"
        )
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="TARGET"
        ) from exc
    found = getattr(module, attr, None)
    if not isinstance(found, Worker):
        kind = "nothing" if found is None else type(found).__name__
        raise click.BadParameter(f"{target} is {kind}, not a conveyor.Worker", param_hint="TARGET")
    return found


def _supervise(argv: list[str], count: int) -> int:
    """Keep ``count`` children running until a signal; forward signals to them."""
    log = logging.getLogger("conveyor.supervisor")
    children: list[subprocess.Popen[bytes]] = [subprocess.Popen(argv) for _ in range(count)]
    signals_seen = 0

    def forward(sig: int, _frame: object) -> None:
        nonlocal signals_seen
        signals_seen += 1
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        time.sleep(0.2)
        if signals_seen:
            if all(child.poll() is not None for child in children):
                return 0
            continue
        for index, child in enumerate(children):
            code = child.poll()
            if code is not None:
                log.warning("worker process %d exited with %s; starting another", child.pid, code)
                children[index] = subprocess.Popen(argv)


@main.command()
@url_option
@namespace_option
def migrate(url: str | None, namespace: str) -> None:
    """Create or upgrade the storage schema (SQL backends; others need none)."""
    config = _config(url, namespace, migrate=True)

    async def go() -> None:
        storage = await open_storage(config)
        await storage.aclose()

    _run(go())
    click.echo(f"schema ready for namespace {namespace!r}")


@main.command()
@url_option
@namespace_option
@click.option("--minutes", type=click.IntRange(1, 1440), default=5, show_default=True)
def stats(url: str | None, namespace: str, minutes: int) -> None:
    """Queues by state, live workers, and per-minute rates."""
    config = _config(url, namespace)

    async def go() -> None:
        storage = await open_storage(config)
        try:
            queues = await storage.queue_stats()
            workers = await storage.workers()
            counts = await storage.counters(minutes=minutes)
        finally:
            await storage.aclose()
        states = list(JobState)
        width = max([5, *(len(q.queue) for q in queues)])
        click.echo("queue".ljust(width) + "".join(s.value.rjust(11) for s in states))
        for q in queues:
            click.echo(q.queue.ljust(width) + "".join(str(q.count(s)).rjust(11) for s in states))
        click.echo(f"\nworkers: {len(workers)}")
        for w in workers:
            click.echo(
                f"  {w.id}  running {w.running}/{w.concurrency}  queues {','.join(w.queues)}"
            )
        click.echo("\nminute            succeeded  retried   failed")
        for m in counts:
            click.echo(f"{m.minute:%Y-%m-%d %H:%M} {m.succeeded:>10} {m.retried:>8} {m.failed:>8}")

    _run(go())


@main.command()
@click.argument("type_name")
@click.option("--json", "payload", required=True, help="The payload as JSON (protobuf's mapping).")
@url_option
@namespace_option
@click.option("--queue", default=None)
@click.option("--delay", type=float, default=None, help="Seconds before it may run.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None)
def enqueue(
    type_name: str,
    payload: str,
    url: str | None,
    namespace: str,
    queue: str | None,
    delay: float | None,
    max_attempts: int | None,
) -> None:
    """Enqueue a job of TYPE_NAME, for any type whose descriptors workers have published."""
    config = _config(url, namespace)

    async def go() -> str:
        storage = await open_storage(config)
        try:
            registry = TypeRegistry(await storage.descriptor_sets())
            message = registry.message_class(type_name)()
            message.ParseFromString(registry.from_json(type_name, payload))
            spec = build_spec(config, message, queue=queue, delay=delay, max_attempts=max_attempts)
            await storage.enqueue([spec])
            return spec.id
        finally:
            await storage.aclose()

    click.echo(_run(go()))


__all__ = ["main"]
