"""``conveyor demo``: a family of jobs, run live, with the admin in the same process.

It enqueues an order (a parent with 20-50 line items, most of which reserve
stock and all of which charge, and a summary as the order's heir), runs a
worker and the admin app on one event loop, draws the family's progress in
the terminal, and returns once the whole family has settled (or keeps the
admin up with ``serve=True``). One reservation fails on its first attempt and
is retried, so a retry shows up on the way.

By default everything lives in a fresh SQLite file in a temporary directory,
deleted on exit; any URL works (``memory://`` too, since it is one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, RenderableType
from rich.live import Live
from rich.logging import RichHandler

from ..admin.server import AdminServer, ServeError, bind
from ..core.backend_registry import open_storage
from ..core.client import AsyncClient
from ..core.config import mask_url
from ..core.states import JobState
from .shop import SHOP_TYPES, Outcome, Pace, build_order, demo_config, is_digital, shop_worker
from .view import PARENT_TYPES, FamilyWatch, Node, render

EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``conveyor demo`` was asked for.

    Attributes:
        url: storage URL; ``None`` for a fresh SQLite file in a temporary directory.
        namespace: the installation namespace the demo's jobs go to.
        host, port: where the admin listens (port 0: any free port).
        serve: keep the worker and the admin up after the family settled, until a signal.
        fast: handlers do not pretend to work, and the retry comes at once (for tests).
        lines: line items in the order (default: 20 to 50 at random).
        seed: makes the order (and which reservation fails once) repeatable.
        timeout: seconds the family may take to settle before the demo gives up.
    """

    url: str | None = None
    namespace: str = "demo"
    host: str = "127.0.0.1"
    port: int = 8000
    serve: bool = False
    fast: bool = False
    lines: int | None = None
    seed: int | None = None
    timeout: float = 300.0


async def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    """Run the demo; the exit code: 0 the family succeeded, 1 it did not, 130 interrupted.

    Raises:
        ConfigurationError: a bad URL or namespace, or a backend's extra is missing.
        BackendUnavailable: the storage server is down.
        ServeError: the admin could not listen or start.
    """
    console = console or Console()
    if options.url is not None:
        return await _run(options, options.url, console)
    with tempfile.TemporaryDirectory(prefix="conveyor-demo-") as folder:
        return await _run(options, f"sqlite:///{Path(folder) / 'demo.db'}", console)


async def _run(options: DemoOptions, url: str, console: Console) -> int:
    from ..admin import create_app

    pace = Pace.fast() if options.fast else Pace()
    config = demo_config(url, options.namespace, pace)
    rng = random.Random(options.seed)
    lines = options.lines or rng.randint(20, 50)
    order, flaky_sku = build_order(rng, lines)
    outcome = Outcome()

    storage = await open_storage(config)
    worker_task: asyncio.Task[None] | None = None
    server: AdminServer | None = None
    worker = shop_worker(config, pace=pace, flaky_sku=flaky_sku, outcome=outcome)
    try:
        app = create_app(config, types=SHOP_TYPES)
        _log_to(console)  # after the app, which sets up logging of its own
        server = AdminServer(app, bind(options.host, options.port))
        await server.start()
        worker_task = asyncio.create_task(worker.run(), name="conveyor-demo-worker")
        job = await AsyncClient(config, storage=storage).enqueue(order)
        console.print(
            f"[bold]Conveyor demo[/]: order {order.order_id} with {len(order.items)} line items "
            f"on {mask_url(url)} (namespace {options.namespace!r})",
            soft_wrap=True,
        )
        console.print(
            f"Admin: [link={server.url}]{server.url}[/link]   order job: {job.id}", soft_wrap=True
        )
        physical = sum(1 for item in order.items if not is_digital(item.sku))
        expected = 2 + len(order.items) * 2 + physical  # order, lines, charges, reserves, summary
        root, started = await _watch(
            console, FamilyWatch(storage, job.id, PARENT_TYPES), worker_task, expected, options
        )
        code = _report(console, root, outcome, time.monotonic() - started, worker_task)
        if options.serve and code != EXIT_INTERRUPTED:
            console.print(f"Serving the admin at {server.url} until Ctrl+C.")
            await asyncio.wait({worker_task, server.task}, return_when=asyncio.FIRST_COMPLETED)
        return code
    finally:
        await worker.stop()
        if worker_task is not None:
            done, _ = await asyncio.wait({worker_task}, timeout=worker.shutdown_timeout + 10)
            if worker_task in done and not worker_task.cancelled():
                worker_task.result()  # the worker's own failure, if any
        if server is not None:
            await server.stop()
        await storage.aclose()


def _log_to(console: Console) -> None:
    """Warnings and errors (a retried attempt, say) above the live picture, not through it."""
    handler = RichHandler(console=console, show_path=False, show_time=False)
    handler.addFilter(_one_line_warnings)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True, format="%(message)s")


def _one_line_warnings(record: logging.LogRecord) -> bool:
    """The demo's retries are staged: one line each, without the traceback a worker logs."""
    if record.levelno < logging.ERROR:
        record.exc_info = None
        record.exc_text = None
    return True


async def _watch(
    console: Console,
    watch: FamilyWatch,
    worker_task: asyncio.Task[None],
    expected: int,
    options: DemoOptions,
) -> tuple[Node | None, float]:
    started = time.monotonic()
    deadline = started + options.timeout
    max_lines = max(5, min(20, console.height - 12))
    root: Node | None = None
    view: RenderableType | None = None
    # A terminal redraws the family in place; a pipe or a file gets the last picture only.
    live = Live(console=console, refresh_per_second=8) if console.is_terminal else None
    with live or contextlib.nullcontext():
        while True:
            root = await watch.snapshot()
            if root is not None:
                elapsed = time.monotonic() - started
                view = render(root, expected=expected, elapsed=elapsed, max_lines=max_lines)
                if live is not None:
                    live.update(view)
            if root is None or root.settled or worker_task.done():
                break
            if time.monotonic() > deadline:
                break
            await asyncio.wait({worker_task}, timeout=0.2)
    if live is None and view is not None:
        console.print(view)
    return root, started


def _report(
    console: Console,
    root: Node | None,
    outcome: Outcome,
    elapsed: float,
    worker_task: asyncio.Task[None],
) -> int:
    if root is None:
        console.print("[red]The order is gone from storage (pruned?); nothing to show.[/]")
        return 1
    if not root.settled:
        if worker_task.done():
            console.print("Interrupted: the worker stopped before the family settled.")
            return EXIT_INTERRUPTED
        console.print("[red]The family did not settle in time; see the admin for why.[/]")
        return 1
    nodes = list(root.walk())
    retries = sum(node.job.attempt - 1 for node in nodes if node.job.attempt > 1)
    succeeded = all(node.job.state is JobState.SUCCEEDED for node in nodes)
    mark = "[green]✔[/]" if succeeded else "[red]✖[/]"
    console.print(
        f"{mark} The family settled in {elapsed:.1f}s: {len(nodes)} jobs, "
        f"{retries} retr{'y' if retries == 1 else 'ies'}, order {root.job.state}."
    )
    if outcome.summary:
        console.print(f"  Summary (the heir, written after everything else): {outcome.summary}")
    return 0 if succeeded else 1


__all__ = ["DemoOptions", "ServeError", "run_demo"]
