"""The ``conveyor`` command line: worker, admin, demo, enqueue, migrate, stats.

Every command reads ``CONVEYOR_URL`` when ``--url`` is absent. Exit codes:
0 success, 1 a runtime failure (server down, bad payload, a family that
failed), 2 a usage or configuration error, 130 interrupted. Errors are one
line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.resources
import importlib.util
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from .core.backend_registry import namespaces, open_storage
from .core.client import AsyncClient
from .core.config import DEFAULT_NAMESPACE, Config, mask_url
from .core.errors import (
    BackendUnavailable,
    ConfigurationError,
    ConveyorError,
    JobNotFound,
    UnknownType,
)
from .core.event_loop import LOOPS, LoopFactory, loop_factory
from .core.job import Job
from .core.joblog import JOB_FIELDS
from .core.queues import QueueLimits, Rate
from .core.specs import build_spec
from .core.states import JobState
from .core.type_registry import TypeRegistry
from .core.worker import Worker
from .supervisor import EXIT_USAGE, default_processes, run_supervised, supervise

if TYPE_CHECKING:
    from .admin import BasicAuth

T = TypeVar("T")

# EXIT_USAGE (2) is defined in .supervisor, which stops every worker process when one exits with it.
EXIT_RUNTIME = 1
EXIT_INTERRUPTED = 130

url_option = click.option(
    "--url",
    envvar="CONVEYOR_URL",
    default=None,
    help="Storage URL (redis://, postgresql+psycopg://, sqlite:///path, memory://); "
    "default $CONVEYOR_URL, else redis://localhost:6379/0.",
)
namespace_option = click.option(
    "--namespace",
    envvar="CONVEYOR_NAMESPACE",
    default=DEFAULT_NAMESPACE,
    show_default=True,
    help="Installation namespace; default $CONVEYOR_NAMESPACE, else conveyor.",
)


class CommandError(click.ClickException):
    """A usage or configuration error: one line on stderr (``Error: ...``), exit code 2."""

    exit_code = EXIT_USAGE


class RuntimeFailure(CommandError):
    """Something failed at run time: one line on stderr, exit code 1."""

    exit_code = EXIT_RUNTIME


def _config(url: str | None, namespace: str, **extra: Any) -> Config:
    try:
        if url is None:
            return Config(namespace=namespace, **extra)
        return Config(url=url, namespace=namespace, **extra)
    except ConveyorError as exc:
        raise CommandError(str(exc)) from None


def _run(coro: Awaitable[T], factory: LoopFactory | None = None) -> T:
    """Run a coroutine; a ConveyorError becomes one line on stderr.

    Exit code 2 when the configuration is wrong (fix the command), 1 otherwise;
    130 on Ctrl+C outside a worker's own graceful handling.
    """
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)  # type: ignore[arg-type]
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from None
    except BackendUnavailable as exc:
        raise RuntimeFailure(
            f"{exc} (check --url or $CONVEYOR_URL, and that the server is up)"
        ) from None
    except ConveyorError as exc:
        raise RuntimeFailure(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _require_extra(extra: str, *modules: str) -> None:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise CommandError(
            f"this command needs {', '.join(missing)}: pip install 'conveyor-jobs[{extra}]'"
        )


class _JsonFormatter(logging.Formatter):
    """One JSON object a line; a record about a job carries the job (``JOB_FIELDS``)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in JOB_FIELDS:
            if hasattr(record, name):
                data[name] = getattr(record, name)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def _setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    try:
        logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    except ValueError:
        raise CommandError(
            f"unknown log level {level!r}; use debug, info, warning or error"
        ) from None


log_format_option = click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
log_level_option = click.option("--log-level", default="info", show_default=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="conveyor-jobs")
def main() -> None:
    """Conveyor: background jobs with families (children, and heirs after the whole family).

    Every command reads CONVEYOR_URL when --url is absent. Exit codes: 0 done,
    1 a runtime failure, 2 a usage or configuration error, 130 interrupted.
    """


# --- worker ---------------------------------------------------------------------------


@main.command()
@click.argument("target")
@url_option
@click.option(
    "--namespace",
    envvar="CONVEYOR_NAMESPACE",
    default=None,
    help="Override the Worker's configured namespace (default $CONVEYOR_NAMESPACE).",
)
@click.option("--concurrency", type=click.IntRange(min=1), help="Jobs run at once per process.")
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    envvar="CONVEYOR_PROCESSES",
    default=None,
    help="Worker processes (default: one per CPU; one with --burst, SQLite or memory://).",
)
@click.option(
    "--loop",
    type=click.Choice(LOOPS),
    default="auto",
    show_default=True,
    help="Event loop: uvloop when installed (the uvloop extra), else asyncio's.",
)
@click.option(
    "--queues", default=None, help="Comma-separated queues to claim from instead of the Worker's."
)
@click.option(
    "--burst", is_flag=True, help="Exit once its queues have nothing left to do (one process)."
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on this port (process i of --processes: port + i).",
)
@click.option(
    "--metrics-host", default="0.0.0.0", show_default=True, help="Interface of --metrics-port."
)
@log_format_option
@log_level_option
@click.option("--supervisor-pid", type=int, default=None, hidden=True)
def worker(
    target: str,
    url: str | None,
    namespace: str | None,
    concurrency: int | None,
    processes: int | None,
    loop: str,
    queues: str | None,
    burst: bool,
    metrics_port: int | None,
    metrics_host: str,
    log_format: str,
    log_level: str,
    supervisor_pid: int | None,
) -> None:
    """Run the Worker found at TARGET (MODULE:ATTR), e.g. myapp.jobs:worker.

    SIGTERM or SIGINT stops it gracefully: it claims nothing more, lets running
    jobs finish, and hands back the rest; a second signal hands them back at once.

    With --processes N, a supervisor runs N worker processes, restarts one that
    dies (with back-off if it keeps dying at start), and forwards SIGTERM/SIGINT.

    With --burst it works until its queues have nothing left (nothing ready or
    running, no retry waiting out its back-off), then exits 0: for cron-driven
    batches and CI.
    """
    _setup_logging(log_format, log_level)
    if burst and processes is not None and processes > 1:
        raise CommandError("--burst runs one worker process; drop --processes")
    found = _load_worker(target)
    if queues is not None:
        try:
            found.set_queues([q.strip() for q in queues.split(",") if q.strip()])
        except ConveyorError as exc:
            raise CommandError(str(exc)) from None
    changes: dict[str, Any] = {}
    if url is not None:
        changes["url"] = url
    if namespace is not None:
        changes["namespace"] = namespace
    if changes:
        try:
            found.config = replace(found.config, **changes)
        except ConveyorError as exc:
            raise CommandError(str(exc)) from None
    if concurrency is not None:
        found.concurrency = concurrency
    if processes is None:
        processes = default_processes(found.config.url, burst)
    try:
        factory = loop_factory(loop)
    except ConveyorError as exc:
        raise CommandError(str(exc)) from None
    if metrics_port and metrics_port + processes - 1 > 65535:
        raise CommandError(
            f"--metrics-port {metrics_port} leaves no port for {processes} processes"
        )
    if metrics_port is not None:
        try:
            found.serve_metrics(metrics_port, metrics_host)
        except ConveyorError as exc:
            raise CommandError(str(exc)) from None
    if processes > 1:
        # Fail fast, once, on a bad URL or a server that is down (and migrate once).
        _run(_check_storage(found.config))
        argv = [sys.executable, "-m", "conveyor", "worker", target]
        argv += ["--log-format", log_format, "--log-level", log_level, "--loop", loop]
        argv += ["--namespace", found.config.namespace, "--supervisor-pid", str(os.getpid())]
        argv += ["--processes", "1"]  # each child is one process, whatever the environment says
        if concurrency:
            argv += ["--concurrency", str(concurrency)]
        if queues:
            argv += ["--queues", queues]
        per_child = _metrics_args(metrics_port, metrics_host)
        # The URL goes by the environment: a password in argv would show in `ps`.
        env = {**os.environ, "CONVEYOR_URL": found.config.url}
        sys.exit(supervise(argv, processes, env, per_child))
    if supervisor_pid is not None:
        _run(run_supervised(found, supervisor_pid), factory)
    elif burst:
        _run(found.run_until_idle(), factory)
    else:
        _run(found.run(), factory)


def _metrics_args(port: int | None, host: str) -> Callable[[int], list[str]]:
    """Each supervised process's metrics port: the next one up (0 stays any free port)."""

    def args(index: int) -> list[str]:
        if port is None:
            return []
        return ["--metrics-port", str(port + index if port else 0), "--metrics-host", host]

    return args


async def _check_storage(config: Config) -> None:
    storage = await open_storage(config)
    await storage.aclose()


def _load_worker(target: str) -> Worker:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise CommandError(
            f"worker target {target!r}: expected MODULE:ATTR, e.g. myapp.jobs:worker"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandError(
            f"cannot import {module_name!r}: {exc} (run from your project's folder, "
            "or add it to PYTHONPATH)"
        ) from None
    except Exception as exc:
        raise RuntimeFailure(
            f"importing {module_name!r} raised {type(exc).__name__}: {exc} "
            f"(python -c 'import {module_name}' shows the traceback)"
        ) from None
    found = getattr(module, attr, None)
    if not isinstance(found, Worker):
        kind = "nothing" if found is None else f"a {type(found).__name__}"
        raise CommandError(f"{target} is {kind}, not a conveyor.Worker")
    return found


# --- admin and demo -------------------------------------------------------------------


@main.command()
@url_option
@namespace_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free."
)
@click.option(
    "--username",
    envvar="CONVEYOR_ADMIN_USERNAME",
    default=None,
    help="Turn on HTTP basic auth with this user; $CONVEYOR_ADMIN_USERNAME.",
)
@click.option(
    "--password",
    envvar="CONVEYOR_ADMIN_PASSWORD",
    default=None,
    help="Its password; prefer $CONVEYOR_ADMIN_PASSWORD (command lines are visible to others).",
)
@log_level_option
def admin(
    url: str | None,
    namespace: str,
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    log_level: str,
) -> None:
    """Serve the admin app: jobs, families, queues, workers, and a JSON API under /api."""
    if bool(username) != bool(password):
        raise CommandError("basic auth needs both a username and a password, or neither")
    _require_extra("admin", "litestar", "uvicorn")
    config = _config(url, namespace)
    from .admin import BasicAuth

    auth = BasicAuth(username, password) if username and password else None
    _run(_serve_admin(config, host, port, auth, log_level))


async def _serve_admin(
    config: Config, host: str, port: int, auth: BasicAuth | None, log_level: str
) -> None:
    from .admin import create_app
    from .admin.server import AdminServer, bind

    await _check_storage(config)  # a bad URL or a server that is down: one line, now
    app = create_app(config, auth=auth)
    _setup_logging("text", log_level)  # after the app, which sets up logging of its own
    server = AdminServer(app, bind(host, port), log_level=log_level)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl+C interrupts instead
            loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        click.echo(
            f"Conveyor admin at {server.url} for {mask_url(config.url)} "
            f"(namespace {config.namespace!r}); Ctrl+C stops it",
            err=True,
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({server.task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        await server.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


@main.command()
@click.option(
    "--url",
    envvar="CONVEYOR_URL",
    default=None,
    help="Storage URL; $CONVEYOR_URL; default: a fresh SQLite file, deleted on exit.",
)
@click.option("--namespace", default="demo", show_default=True, help="Installation namespace.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Where the admin listens.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="The admin's port; 0: any free port.",
)
@click.option(
    "--serve", is_flag=True, help="Keep the admin (and worker) up after the family settles."
)
@click.option("--fast", is_flag=True, help="Handlers do not pretend to work (for tests).")
@click.option("--lines", type=click.IntRange(1, 100), default=None, help="Line items (20-50).")
@click.option("--seed", type=int, default=None, help="Repeat the same order.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds the family may take to settle.",
)
@click.pass_context
def demo(
    ctx: click.Context,
    url: str | None,
    namespace: str,
    host: str,
    port: int,
    serve: bool,
    fast: bool,
    lines: int | None,
    seed: int | None,
    timeout: float,
) -> None:
    """Run a family of jobs live: an order, its line items, retries and a summary.

    A worker and the admin run in this process; the terminal shows the family's
    progress, and the command exits once the whole family has settled (exit 0
    if it succeeded) unless --serve keeps the admin up until Ctrl+C.
    """
    _require_extra("admin", "litestar", "uvicorn", "rich")
    if url is not None:
        _config(url, namespace)  # a bad URL or namespace is a usage error, before anything runs
    else:
        _require_extra("sqlite", "sqlalchemy", "aiosqlite")
        _config("sqlite:///demo.db", namespace)
    from rich.console import Console

    from .admin.server import bind
    from .demo import DemoOptions, ServeError, run_demo

    console = Console()
    if port and ctx.get_parameter_source("port") is ParameterSource.DEFAULT:
        try:
            bind(host, port).close()
        except ServeError:
            console.print(f"Port {port} is busy; the admin takes a free one instead.")
            port = 0
    options = DemoOptions(
        url=url,
        namespace=namespace,
        host=host,
        port=port,
        serve=serve,
        fast=fast,
        lines=lines,
        seed=seed,
        timeout=timeout,
    )
    sys.exit(_run(run_demo(options, console)))


# --- producing and inspecting ---------------------------------------------------------


@main.command()
@url_option
@namespace_option
def migrate(url: str | None, namespace: str) -> None:
    """Create or upgrade the storage schema (SQL backends; others need none)."""
    config = _config(url, namespace, migrate=True)
    _run(_check_storage(config))
    click.echo(f"schema ready for namespace {namespace!r}")


@main.command()
@url_option
@namespace_option
@click.option("--minutes", type=click.IntRange(1, 1440), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option(
    "--watch",
    type=click.FloatRange(min=0.5),
    default=None,
    metavar="SECONDS",
    help="Print again every SECONDS until Ctrl+C.",
)
def stats(
    url: str | None, namespace: str, minutes: int, as_json: bool, watch: float | None
) -> None:
    """Jobs per queue and state, live workers, and per-minute rates.

    Rates are averages over the last --minutes minutes: jobs that succeeded,
    were retried or failed for good, per minute. A namespace with no jobs and no
    workers is pointed out, with the namespaces the URL does have.
    """
    config = _config(url, namespace)
    while True:
        report = _run(_gather_stats(config, minutes))
        if watch is not None and not as_json:
            click.clear()
        if as_json:
            click.echo(json.dumps(report, indent=2))
        else:
            _print_stats(report, minutes)
        if watch is None:
            return
        try:
            time.sleep(watch)
        except KeyboardInterrupt:
            return


async def _gather_stats(config: Config, minutes: int) -> dict[str, Any]:
    storage = await open_storage(config)
    try:
        queues = await storage.queue_stats()
        workers = await storage.workers()
        totals = await storage.counters(minutes=minutes)
        per_queue = [await storage.counters(minutes=minutes, queue=q.queue) for q in queues]
        controls = await storage.queue_controls()
        oldest = await storage.oldest_queued()
    finally:
        await storage.aclose()
    now = time.time()

    def rates(counts: list[Any]) -> dict[str, float]:
        return {
            kind: round(sum(getattr(m, kind) for m in counts) / minutes, 2)
            for kind in ("succeeded", "retried", "failed")
        }

    return {
        "queues": [
            {
                "queue": q.queue,
                "counts": {state.value: q.count(state) for state in JobState},
                "per_minute": rates(counts),
                # How long its longest-waiting queued job has waited (null: none waits).
                "longest_wait": (
                    round(max(0.0, now - oldest[q.queue]), 3) if q.queue in oldest else None
                ),
            }
            for q, counts in zip(queues, per_queue, strict=True)
        ],
        "controls": [
            {"queue": c.queue, "paused": c.paused, "limits": c.limits.describe()} for c in controls
        ],
        "workers": [{**w.to_dict(), "last_seen": w.last_seen} for w in workers],
        "minutes": [
            {
                "minute": m.minute.isoformat(),
                "succeeded": m.succeeded,
                "retried": m.retried,
                "failed": m.failed,
                "workers": m.workers,
                "repaired": m.repaired,
            }
            for m in totals
        ],
        "per_minute": rates(totals),
        "repaired": sum(m.repaired for m in totals),
        "other_namespaces": (
            [n for n in await namespaces(config) if n != config.namespace]
            if not queues and not workers
            else []
        ),
    }


@main.group()
def queue() -> None:
    """Pause, resume and limit queues (docs/rules.md rule 14)."""


@queue.command("pause")
@click.argument("name")
@url_option
@namespace_option
def queue_pause(name: str, url: str | None, namespace: str) -> None:
    """Stop every worker claiming from queue NAME (enqueue still works)."""
    _run(_with_client(_config(url, namespace), lambda c: c.pause(name)))
    click.echo(f"queue {name!r} paused")


@queue.command("resume")
@click.argument("name")
@url_option
@namespace_option
def queue_resume(name: str, url: str | None, namespace: str) -> None:
    """Let workers claim from queue NAME again."""
    _run(_with_client(_config(url, namespace), lambda c: c.resume(name)))
    click.echo(f"queue {name!r} resumed")


@queue.command("limit")
@click.argument("name")
@url_option
@namespace_option
@click.option("--max-running", type=int, default=None, help="Jobs of NAME running at once.")
@click.option("--rate", type=int, default=None, help="Jobs claimed per --per seconds.")
@click.option("--per", type=float, default=1.0, show_default=True, help="The rate's period.")
def queue_limit(
    name: str,
    url: str | None,
    namespace: str,
    max_running: int | None,
    rate: int | None,
    per: float,
) -> None:
    """Set queue NAME's limits for all workers; with neither option, remove them."""

    async def go(client: AsyncClient) -> QueueLimits:
        pace = Rate(rate, per) if rate is not None else None
        return await client.set_queue_limits(name, max_running=max_running, rate=pace)

    limits = _run(_with_client(_config(url, namespace), go))
    click.echo(f"queue {name!r}: {limits.describe()}")


@queue.command("purge")
@click.argument("name")
@url_option
@namespace_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def queue_purge(name: str, url: str | None, namespace: str, yes: bool) -> None:
    """Cancel every job of queue NAME waiting to run (queued or scheduled).

    Each is cancelled with its family below it, as `conveyor job cancel` does;
    running jobs go on.
    """
    if not yes:
        click.confirm(f"cancel every queued and scheduled job of {name!r}?", abort=True)
    count = _run(_with_client(_config(url, namespace), lambda c: c.purge(name)))
    click.echo(f"queue {name!r}: {count} job(s) cancelled")


# --- jobs --------------------------------------------------------------------------------


@main.group()
def job() -> None:
    """Show, cancel and retry one job by its id."""


@job.command("show")
@click.argument("job_id")
@url_option
@namespace_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def job_show(job_id: str, url: str | None, namespace: str, as_json: bool) -> None:
    """A job's state, attempts, family, progress, error, and why it is in its state."""

    async def go(client: AsyncClient) -> tuple[Job, str]:
        found = await client.get(job_id)
        if found is None:
            raise JobNotFound(job_id)
        return found, (await client.explain(job_id)).text

    found, why = _run(_with_client(_config(url, namespace), go))
    facts = _job_facts(found, why)
    if as_json:
        click.echo(json.dumps(facts, indent=2, default=str))
        return
    for name, value in facts.items():
        if value not in (None, "", [], 0) or name in ("state", "attempt"):
            click.echo(f"{name + ':':<16}{value}")


def _job_facts(found: Job, why: str) -> dict[str, Any]:
    progress = found.progress
    return {
        "id": found.id,
        "type": found.type,
        "queue": found.queue,
        "state": found.state.value,
        "attempt": f"{found.attempt} of {found.max_attempts}",
        "parent": found.parent_id,
        "predecessor": found.predecessor_id,
        "open_children": found.open_children,
        "created": found.created_at,
        "started": found.started_at,
        "finished": found.finished_at,
        "worker": found.worker_id,
        "progress": (
            f"{progress.fraction:.0%}" + (f" {progress.note}" if progress.note else "")
            if progress
            else None
        ),
        "key": found.key,
        "reason": found.reason,
        "why": why,
        "last_error": found.last_error,
    }


@job.command("cancel")
@click.argument("job_id")
@url_option
@namespace_option
def job_cancel(job_id: str, url: str | None, namespace: str) -> None:
    """Cancel a job that has not settled, with its family below it; a running one is
    stopped at once (docs/rules.md rule 12)."""
    found = _run(_with_client(_config(url, namespace), lambda c: c.cancel(job_id)))
    click.echo(f"job {found.id} {found.state.value}")


@job.command("retry")
@click.argument("job_id")
@url_option
@namespace_option
def job_retry(job_id: str, url: str | None, namespace: str) -> None:
    """Queue a failed or cancelled job again, re-opening its family (rule 8)."""
    found = _run(_with_client(_config(url, namespace), lambda c: c.retry(job_id)))
    click.echo(f"job {found.id} {found.state.value}")


# --- health ------------------------------------------------------------------------------


@main.command()
@url_option
@namespace_option
@click.option(
    "--host",
    default=None,
    help="Also require a live worker registered from this host (e.g. $(hostname)).",
)
def health(url: str | None, namespace: str, host: str | None) -> None:
    """Exit 0 when storage answers (and, with --host, a worker there beats); else 1.

    For liveness probes: a worker whose heartbeat stops drops out of the live
    workers within its lease.
    """

    async def go(client: AsyncClient) -> str:
        storage = await client.storage()
        live = await storage.workers()
        if host is None:
            return f"storage answers; {len(live)} live worker(s)"
        mine = [w for w in live if w.host == host]
        if not mine:
            raise RuntimeFailure(f"no live worker from host {host!r} (heartbeat stale or stopped)")
        return f"storage answers; {len(mine)} live worker(s) on {host}"

    click.echo(_run(_with_client(_config(url, namespace), go)))


async def _with_client(config: Config, call: Callable[[AsyncClient], Awaitable[T]]) -> T:
    async with AsyncClient(config) as client:
        return await call(client)


def _print_stats(report: dict[str, Any], minutes: int) -> None:
    states = [state.value for state in JobState]
    rate_names = ["ok/min", "retry/min", "fail/min", "wait (s)"]
    width = max([5, *(len(q["queue"]) for q in report["queues"])])
    click.echo(
        "queue".ljust(width)
        + "".join(s.rjust(10) for s in states)
        + "".join(r.rjust(10) for r in rate_names)
    )
    for q in report["queues"]:
        rates = q["per_minute"]
        wait = q["longest_wait"]
        click.echo(
            q["queue"].ljust(width)
            + "".join(str(q["counts"][s]).rjust(10) for s in states)
            + "".join(f"{rates[k]:10.2f}" for k in ("succeeded", "retried", "failed"))
            + ("-".rjust(10) if wait is None else f"{wait:10.1f}")
        )
    if not report["queues"]:
        click.echo("(no jobs)")
    for c in report["controls"]:
        paused = "paused; " if c["paused"] else ""
        click.echo(f"  {c['queue']}: {paused}{c['limits']}")
    click.echo(f"\nworkers: {len(report['workers'])}")
    for w in report["workers"]:
        queues = ",".join(w["queues"])
        click.echo(f"  {w['id']}  running {w['running']}/{w['concurrency']}  queues {queues}")
    click.echo(f"\nlast {minutes} min (UTC)  succeeded   retried    failed   workers  repaired")
    for m in report["minutes"]:
        click.echo(
            f"{m['minute'][:16].replace('T', ' '):<20}"
            f"{m['succeeded']:>10}{m['retried']:>10}{m['failed']:>10}{m['workers']:>10}"
            f"{m['repaired']:>10}"
        )
    if report["other_namespaces"]:
        click.echo(
            "\nnothing in this namespace; the URL has: "
            + ", ".join(report["other_namespaces"])
            + " (--namespace or $CONVEYOR_NAMESPACE)"
        )
    if report["repaired"]:
        click.echo(
            f"\nthe reconciler repaired {report['repaired']} job(s) whose family accounting was "
            "wrong; the workers' logs name them (docs/rules.md rule 7)"
        )


@main.command()
@click.argument("type_name", metavar="TYPE")
@click.option(
    "--json",
    "payload",
    required=True,
    help="The payload as JSON (protobuf's JSON mapping); '-' reads it from stdin.",
)
@url_option
@namespace_option
@click.option(
    "--proto-path",
    "proto_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="A .proto file or a folder of them, compiled now (needs grpcio-tools); repeatable.",
)
@click.option("--queue", default=None, help="Default: the type's name.")
@click.option("--delay", type=float, default=None, help="Seconds before it may run.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None)
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
def enqueue(
    type_name: str,
    payload: str,
    url: str | None,
    namespace: str,
    proto_paths: tuple[Path, ...],
    queue: str | None,
    delay: float | None,
    max_attempts: int | None,
    priority: int,
) -> None:
    """Enqueue a job of TYPE (a full protobuf name, e.g. acme.mail.v1.SendEmail); print its id.

    The type comes from the descriptors that workers publish, or from
    --proto-path, so no Python code for it is needed here.
    """
    config = _config(url, namespace)
    text = sys.stdin.read() if payload == "-" else payload
    compiled = _compile_protos(proto_paths) if proto_paths else None

    async def go() -> str:
        storage = await open_storage(config)
        try:
            if compiled is not None:
                registry = TypeRegistry()
                registry.add_set(compiled)
            else:
                registry = TypeRegistry(await storage.descriptor_sets())
            try:
                message = registry.message_class(type_name)()
            except UnknownType:
                where = (
                    "the given --proto-path"
                    if compiled is not None
                    else f"the descriptors published in namespace {namespace!r}"
                )
                hint = (
                    "" if compiled is not None else "; start a worker for it or pass --proto-path"
                )
                raise UnknownType(f"no message {type_name!r} in {where}{hint}") from None
            message.ParseFromString(registry.from_json(type_name, text))
            spec = build_spec(
                config,
                message,
                queue=queue,
                delay=delay,
                max_attempts=max_attempts,
                priority=priority,
            )
            await storage.enqueue([spec])
            return spec.id
        finally:
            await storage.aclose()

    click.echo(_run(go()))


def _compile_protos(paths: tuple[Path, ...]) -> bytes:
    """A FileDescriptorSet (imports included) of every .proto file in ``paths``."""
    try:
        from grpc_tools import protoc
    except ImportError:
        raise CommandError(
            "--proto-path compiles .proto files with grpcio-tools: pip install grpcio-tools"
        ) from None
    includes: list[Path] = []
    files: list[str] = []
    for path in paths:
        root = path if path.is_dir() else path.parent
        found = sorted(path.rglob("*.proto")) if path.is_dir() else [path]
        if not found:
            raise CommandError(f"no .proto files in {path}")
        includes.append(root.resolve())
        files += [str(f.resolve().relative_to(root.resolve())) for f in found]
    well_known = Path(str(importlib.resources.files("grpc_tools") / "_proto"))
    with tempfile.TemporaryDirectory(prefix="conveyor-protoc-") as folder:
        out = Path(folder) / "set.binpb"
        args = ["protoc", *(f"-I{p}" for p in includes), f"-I{well_known}"]
        args += ["--include_imports", f"--descriptor_set_out={out}", *files]
        if protoc.main(args) != 0 or not out.exists():
            raise CommandError(f"protoc could not compile {', '.join(map(str, paths))} (see above)")
        return out.read_bytes()


__all__ = ["main"]
