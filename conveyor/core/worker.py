"""``Worker``: claims jobs, runs their handlers, and reports outcomes in batches."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, TypeVar, Unpack, overload

from google.protobuf.message import DecodeError, Message

from . import tracing
from .backend_registry import open_storage
from .cancellation import CANCELLED, LEASE_LOST, STOPPING, Cancellation
from .client import AsyncClient
from .config import Backoff, Config
from .context import JobContext
from .control import Fail, RetryIn
from .errors import (
    BackendError,
    ConfigurationError,
    HandlerError,
    InvalidSchedule,
    LeaseLost,
    PayloadTypeError,
)
from .event_loop import loop_factory
from .handlers import CallNext, Handler, HandlerFunc, Middleware
from .ids import new_id
from .job import Job, JobSpec, Lease
from .joblog import job_fields
from .metrics import Labels, MetricsServer, WorkerMetrics, worker_metrics
from .payloads import encode_payload
from .plan import decode_plan
from .queues import QueueLimits
from .schedule import MAX_BACKFILL, Schedule, check_cron, default_name, zone
from .specs import EnqueueOptions, build_spec, validate_queue
from .states import JobState
from .storage import (
    Claimed,
    Failure,
    HandBack,
    JobFilter,
    Outcome,
    Retry,
    Storage,
    Success,
    WorkerInfo,
)
from .type_registry import descriptor_set

log = logging.getLogger("conveyor.worker")

F = TypeVar("F", bound=HandlerFunc)
#: In burst mode (``run_until_idle``), a claim waits at most this long for work.
BURST_CLAIM_WAIT = 0.2
#: Seconds a claim for half the slots or fewer first waits for more jobs to finish.
GATHER_SLOTS = 0.001
MAX_ERROR_CHARS = 8000
#: ``conveyor_jobs_total``'s outcome label for each outcome storage recorded.
OUTCOME_NAME: dict[type, str] = {
    Success: "succeeded",
    Retry: "retried",
    Failure: "failed",
    HandBack: "handed_back",
}


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class Worker:
    """Runs handlers for the job types registered on it.

    By default it listens on the queues named after the types it handles
    (a job's queue defaults to its type); pass ``queues`` to listen elsewhere.

    Args:
        config: where jobs live; defaults to ``Config()``.
        concurrency: jobs run at once (async handlers on the loop, sync ones
            in a thread pool of this size).
        queues: queues to claim from instead of the handled types' names.
        lease: how long a claim lasts without renewal; renewed every third of it.
        shutdown_timeout: on stop, how long running jobs may finish before they
            are cancelled and handed back.
        claim_wait: how long one claim blocks waiting for work.
        maintenance_interval: seconds between maintenance steps (promote due
            jobs, recover expired leases, prune).
        stage_batch: declarations buffered per job before they are staged.
        limits: queue limits to set when the worker starts (``QueueLimits`` by queue
            name); they hold for every worker, as ``AsyncClient.set_queue_limits``.
        storage: an opened storage to use instead of ``config.url`` (stays yours to close).
        metrics: count Prometheus metrics (``conveyor.core.metrics``) in
            prometheus_client's registry, for an application that serves it.
        metrics_port: serve them, with the gauges of this worker's queues, at
            ``http://metrics_host:metrics_port/metrics`` while it runs (0: any free
            port, then ``metrics_port`` says which). A port that cannot be had is a
            warning; the worker runs on without the endpoint.
        metrics_host: the interface that endpoint listens on.

    A finished job keeps its lease, renewed by the heartbeat, until storage has
    recorded its outcome; while more than ``MAX_UNSETTLED_FACTOR * concurrency``
    outcomes wait for a slow backend, the worker claims nothing new.
    """

    #: Finished jobs whose outcomes may wait to be recorded, per unit of concurrency.
    MAX_UNSETTLED_FACTOR = 4

    def __init__(
        self,
        config: Config | None = None,
        *,
        concurrency: int = 10,
        queues: Sequence[str] | None = None,
        lease: timedelta | float = timedelta(seconds=30),
        shutdown_timeout: timedelta | float = timedelta(seconds=30),
        claim_wait: float = 1.0,
        maintenance_interval: float = 1.0,
        stage_batch: int = 1000,
        limits: Mapping[str, QueueLimits] | None = None,
        storage: Storage | None = None,
        metrics: bool = False,
        metrics_port: int | None = None,
        metrics_host: str = "0.0.0.0",
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        if stage_batch < 1:
            raise ConfigurationError("stage_batch must be at least 1")
        self.config = config or Config()
        self.concurrency = concurrency
        self.id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-12:]}"
        self.lease = _seconds(lease)
        if self.lease <= 0:
            raise ConfigurationError("lease must be positive")
        self.shutdown_timeout = _seconds(shutdown_timeout)
        self.claim_wait = claim_wait
        self.maintenance_interval = maintenance_interval
        self.stage_batch = stage_batch
        self._queues = _checked_queues(queues) if queues is not None else None
        self._limits = dict(limits or {})
        for queue, queue_limits in self._limits.items():
            validate_queue(queue)
            if not isinstance(queue_limits, QueueLimits):
                raise ConfigurationError(
                    f"limits for {queue!r} must be a conveyor.QueueLimits, got {queue_limits!r}"
                )
        self._handlers: dict[str, Handler] = {}
        self._schedules: dict[str, Schedule] = {}
        self._middleware: list[Middleware] = []
        self._given_storage = storage
        self._storage: Storage | None = None
        self._job_client: AsyncClient | None = None
        self._stopping = asyncio.Event()
        self._closing = asyncio.Event()
        self._stop_now = False
        self._tasks: dict[str, tuple[asyncio.Task[None], Lease]] = {}
        # Running handlers' stop flags, and whether cancelling their task stops them.
        self._flags: dict[str, tuple[Cancellation, bool]] = {}
        # Jobs whose attempt storage has ended (cancelled, lease lost): outcomes dropped.
        self._lost: set[str] = set()
        self._slot_free = asyncio.Event()
        self._outcomes: list[Outcome] = []
        # Leases of finished jobs whose outcomes storage has not recorded yet.
        self._unsettled: dict[str, Lease] = {}
        self._outcome_ready = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._running_loop: asyncio.AbstractEventLoop | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._burst = False
        # Prometheus (core/metrics.py): on with metrics=True, or served on metrics_port.
        self._metrics: WorkerMetrics | None = worker_metrics() if metrics else None
        self.metrics_port: int | None = None
        self.metrics_host = metrics_host
        self._metrics_server: MetricsServer | None = None
        if metrics_port is not None:
            self.serve_metrics(metrics_port, metrics_host)
        self._labels: dict[Lease, Labels] = {}  # reported outcomes' queue and type

    def serve_metrics(self, port: int, host: str = "0.0.0.0") -> None:
        """Count Prometheus metrics and serve them at ``http://host:port/metrics``
        while the worker runs (``metrics_port``, ``conveyor worker --metrics-port``).

        Raises:
            ConfigurationError: prometheus-client is not installed, or the port is
                not one.
        """
        if not 0 <= port <= 65535:
            raise ConfigurationError(f"metrics port must be 0..65535, got {port}")
        self._metrics = worker_metrics()
        self.metrics_port, self.metrics_host = port, host

    # --- registration ---------------------------------------------------------------

    @overload
    def handler(self, func: F, /) -> F: ...
    @overload
    def handler(self, /, *, backoff: Backoff | None = None) -> Callable[[F], F]: ...

    def handler(self, func: HandlerFunc | None = None, /, *, backoff: Backoff | None = None) -> Any:
        """Decorator form of ``register``: ``@worker.handler`` or
        ``@worker.handler(backoff=Backoff(base=5))``."""

        def decorate(f: F) -> F:
            self.register(f, backoff=backoff)
            return f

        return decorate if func is None else decorate(func)

    def register(self, func: HandlerFunc, *, backoff: Backoff | None = None) -> None:
        """Handle jobs whose type is the annotation of ``func``'s second parameter.

        ``backoff`` replaces ``Config.backoff`` for this type's retries (a job
        enqueued with its own ``backoff`` keeps that).

        Raises:
            HandlerError: bad signature, or another handler already has that type.
        """
        if backoff is not None and not isinstance(backoff, Backoff):
            raise HandlerError(f"backoff must be a conveyor.Backoff, got {backoff!r}")
        handler = Handler.of(func, backoff=backoff)
        if handler.type_name in self._handlers:
            other = self._handlers[handler.type_name].func
            raise HandlerError(
                f"{handler.type_name} already has a handler "
                f"({getattr(other, '__qualname__', other)}); one handler per type"
            )
        self._handlers[handler.type_name] = handler

    def schedule(
        self,
        cron: str,
        message: object,
        *,
        tz: str | tzinfo = "UTC",
        name: str | None = None,
        backfill: timedelta | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Schedule:
        """Enqueue ``message`` at every tick of ``cron`` while this worker runs.

        Run the same schedule on as many workers as you like: each tick makes one
        job (its id comes from ``name`` and the tick). Ticks missed while no worker
        ran are skipped; ``backfill=timedelta(hours=1)`` enqueues those of the last
        hour when a worker starts. ``options`` are ``enqueue``'s, except ``delay``
        and ``run_at``: a tick's job runs at its tick.

        Args:
            cron: five fields (minute hour day month weekday), or six with seconds
                first; ``@daily``-style names are not read.
            tz: the IANA zone the expression is read in (daylight saving included).
            name: the schedule's identity across workers and deployments; by default
                its type, expression, zone and a hash of its payload and queue.

        Raises:
            InvalidSchedule: a bad expression, zone, backfill or option, or a name
                already used on this worker.
            PayloadTypeError, PayloadTooLarge, InvalidJobOptions: bad message or options.
        """
        where = zone(tz)
        check_cron(cron, where)
        if "delay" in options or "run_at" in options:
            raise InvalidSchedule("a schedule's jobs run at their tick: no delay or run_at")
        if backfill is not None and not (
            isinstance(backfill, timedelta) and timedelta(0) < backfill <= MAX_BACKFILL
        ):
            raise InvalidSchedule(f"backfill must be a timedelta of up to 7 days, got {backfill!r}")
        spec = build_spec(self.config, message, **options)
        name = default_name(spec, cron, where) if name is None else name
        if not isinstance(name, str) or not name:
            raise InvalidSchedule("a schedule's name must be a non-empty string")
        if name in self._schedules:
            raise InvalidSchedule(f"this worker already has a schedule named {name!r}")
        self._schedules[name] = schedule = Schedule(name, cron, where, spec, backfill)
        return schedule

    @property
    def schedules(self) -> list[Schedule]:
        """The periodic jobs this worker enqueues."""
        return list(self._schedules.values())

    def use(self, middleware: Middleware) -> None:
        """Wrap every handler call: ``async def mw(ctx, msg, call_next): await call_next()``.

        Middleware run in the order they were added, the first outermost.
        """
        self._middleware.append(middleware)

    @property
    def queues(self) -> list[str]:
        """The queues this worker claims from."""
        if self._queues is not None:
            return list(self._queues)
        return sorted(self._handlers)

    def set_queues(self, queues: Sequence[str]) -> None:
        """Claim from these queues instead (before ``run``; ``conveyor worker --queues``).

        Raises:
            ConfigurationError: not a non-empty list of queue names, or it is running.
        """
        if self._running_loop is not None:
            raise ConfigurationError("set the queues before the worker runs")
        self._queues = _checked_queues(queues)

    @property
    def types(self) -> list[str]:
        """The job types this worker handles."""
        return sorted(self._handlers)

    # --- running ------------------------------------------------------------------------

    def run_sync(self, loop: str = "auto") -> None:
        """Run until stopped by a signal; for programs without their own event loop.

        Args:
            loop: ``"auto"`` (uvloop when installed), ``"asyncio"`` or ``"uvloop"``.
        """
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            runner.run(self.run())

    async def run_until_idle(self, timeout: float | None = None) -> None:
        """Run until its queues have nothing left to do, then stop (burst mode).

        Idle means: a claim finds nothing ready, this worker runs nothing and has
        reported every outcome, and no job of its queues waits out a retry's back-off
        (jobs delayed to a later time are not waited for). Children and heirs that its
        jobs release are run too, so a test can drain whole families.

        Raises:
            TimeoutError: work was still left after ``timeout`` seconds; the worker
                stopped first, as on ``stop()``.
        """
        self._burst = True
        try:
            task = asyncio.ensure_future(self.run())
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                await self.stop()
                await task
                raise TimeoutError(f"worker {self.id} still had work after {timeout}s")
            task.result()
        finally:
            self._burst = False

    def drain(self, timeout: float | None = None) -> None:
        """``run_until_idle`` for programs (and tests) without their own event loop."""
        asyncio.run(self.run_until_idle(timeout))

    async def stop(self) -> None:
        """Stop claiming; ``run`` returns once running jobs finish or are handed back."""
        self._stopping.set()

    async def run(self) -> None:
        """Claim and run jobs until ``stop()``, SIGTERM/SIGINT, or cancellation.

        On stop it claims nothing more, lets running jobs finish for up to
        ``shutdown_timeout``, hands back the rest, and reports every outcome
        before it returns.
        """
        if not self._handlers:
            raise ConfigurationError("register at least one handler before running the worker")
        if self._running_loop is not None:
            raise ConfigurationError("this worker is already running")
        loop = asyncio.get_running_loop()
        self._running_loop = loop
        self._stopping = asyncio.Event()
        self._closing = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._outcome_ready = asyncio.Event()
        self._stop_now = False
        try:
            storage = self._given_storage or await open_storage(self.config)
        except BaseException:
            self._running_loop = None  # not running: a later run() may try again
            raise
        self._storage = storage
        # One client for every job's ``ctx.client``: it only wraps this storage.
        self._job_client = AsyncClient(self.config, storage=storage)
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="conveyor-job")
        signals = self._install_signals(loop)
        helpers: list[asyncio.Task[None]] = []
        try:
            await storage.publish_types(
                {h.type_name: descriptor_set(h.message_type) for h in self._handlers.values()}
            )
            for queue, queue_limits in self._limits.items():
                await storage.limit_queue(queue, queue_limits)
            await self._register(storage)
            self._start_metrics(storage, loop)
            helpers = [
                asyncio.create_task(self._report_outcomes(storage), name="conveyor-outcomes"),
                asyncio.create_task(self._heartbeat(storage), name="conveyor-heartbeat"),
                asyncio.create_task(self._maintain(storage), name="conveyor-maintenance"),
            ]
            if self._schedules:
                helpers.append(
                    asyncio.create_task(self._run_schedules(storage), name="conveyor-schedules")
                )
            # Not a helper: it leaves as soon as no job runs (it only listens).
            self._watcher = asyncio.create_task(
                self._watch_interrupts(storage), name="conveyor-interrupts"
            )
            log.info("worker %s started on queues %s", self.id, self.queues)
            await self._claim_loop(storage)
        finally:
            await self._shutdown(storage, helpers)
            self._stop_metrics()
            for sig in signals:
                loop.remove_signal_handler(sig)
            self._running_loop = None
            log.info("worker %s stopped", self.id)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[signal.Signals]:
        if threading.current_thread() is not threading.main_thread():
            return []
        installed: list[signal.Signals] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError):
                continue
            installed.append(sig)
        return installed

    def _on_signal(self, sig: int) -> None:
        if self._stopping.is_set():
            log.warning("second %s: handing back running jobs now", signal.Signals(sig).name)
            self._stop_now = True
            for job_id, (task, _) in list(self._tasks.items()):
                self._tell_stop(job_id, STOPPING)
                task.cancel()
        else:
            log.info("%s: finishing running jobs, then stopping", signal.Signals(sig).name)
        self._stopping.set()

    async def _claim_loop(self, storage: Storage) -> None:
        pause = 0.05
        idle_before = False  # burst mode: storage said idle before the last claim
        gathered = False  # the next claim has waited for more slots once already
        stop_wait = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                free = min(
                    self.concurrency - len(self._tasks),
                    self.concurrency * (1 + self.MAX_UNSETTLED_FACTOR)
                    - len(self._tasks)
                    - len(self._unsettled),
                )
                if free <= 0:
                    self._slot_free.clear()
                    slot_wait = asyncio.create_task(self._slot_free.wait())
                    await asyncio.wait({slot_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                    slot_wait.cancel()
                    continue
                if not gathered and gathers(free, len(self._tasks), self.concurrency):
                    gathered = True
                    await asyncio.wait({stop_wait}, timeout=GATHER_SLOTS)
                    continue
                gathered = False
                wait = min(self.claim_wait, BURST_CLAIM_WAIT) if self._burst else self.claim_wait
                claim = asyncio.create_task(
                    storage.claim(self.id, self.queues, free, self.lease, wait)
                )
                await asyncio.wait({claim, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not claim.done():
                    # Stopping: a claim cancelled mid-flight hands back what it took.
                    claim.cancel()
                    await asyncio.wait({claim}, timeout=10)
                    if claim.done() and not claim.cancelled() and claim.exception() is None:
                        for item in claim.result():  # the driver swallowed the cancel
                            self._report(HandBack(item.lease), item.job)
                    break
                try:
                    claimed = claim.result()
                except BackendError as exc:
                    _cancel_if_cancelling()
                    log.warning("claim failed, retrying in %.2fs: %s", pause, exc)
                    await asyncio.wait({stop_wait}, timeout=pause)
                    pause = min(pause * 2, 5.0)
                    continue
                pause = 0.05
                # Asked once a claim: OpenTelemetry reads the environment on every ask.
                traced = tracing.active()
                for item in claimed:
                    if self._stopping.is_set():
                        self._report(HandBack(item.lease), item.job)
                    else:
                        self._start(item, traced)
                if self._burst:
                    # Storage is asked before the claim that confirms it: a retry
                    # promoted from its back-off between an empty claim and the
                    # question would be seen by neither, and left behind.
                    if not claimed and idle_before and self._idle_here():
                        log.info("worker %s has nothing left to do: stopping", self.id)
                        self._stopping.set()
                    else:
                        idle_before = not claimed and await self._idle(storage)
        finally:
            stop_wait.cancel()

    async def _idle(self, storage: Storage) -> bool:
        """Burst mode: nothing runs here, every outcome is recorded, and no job of its
        queues waits out a back-off (its retry would come later)."""
        if not self._idle_here():
            return False
        for queue in self.queues:
            retrying = JobFilter(state=JobState.SCHEDULED, queue=queue, retrying=True)
            if (await storage.list_jobs(retrying, limit=1)).jobs:
                return False
        return True

    def _idle_here(self) -> bool:
        """Nothing runs in this worker and every outcome is recorded."""
        return not (self._tasks or self._unsettled or self._outcomes)

    def _start(self, claimed: Claimed, traced: bool) -> None:
        task = asyncio.create_task(
            self._execute(claimed, traced), name=f"conveyor-job-{claimed.job.id}"
        )
        self._tasks[claimed.job.id] = (task, claimed.lease)

        def done(_: asyncio.Task[None]) -> None:
            self._tasks.pop(claimed.job.id, None)
            self._flags.pop(claimed.job.id, None)
            self._lost.discard(claimed.job.id)
            self._slot_free.set()

        task.add_done_callback(done)

    async def _shutdown(self, storage: Storage, helpers: list[asyncio.Task[None]]) -> None:
        self._stopping.set()
        running = [task for task, _ in self._tasks.values()]
        if running:
            _, late = await asyncio.wait(running, timeout=self.shutdown_timeout)
            if late:
                log.warning("handing back %d jobs still running at shutdown", len(late))
                self._stop_now = True
                for job_id, (task, _) in list(self._tasks.items()):
                    if task in late:
                        self._tell_stop(job_id, STOPPING)
                        task.cancel()
                await asyncio.wait(late)
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.wait({self._watcher})
            self._watcher = None
        self._outcome_ready.set()
        if helpers:
            # The outcome reporter exits once every outcome is reported; the
            # heartbeat and maintenance loops exit when they see _closing.
            await asyncio.wait(helpers[:1], timeout=30)
            self._closing.set()
            _, stuck = await asyncio.wait(helpers, timeout=5)
            for task in stuck:  # e.g. a driver retrying a dead connection
                task.cancel()
            await asyncio.wait(helpers, timeout=5)
        with contextlib.suppress(BackendError):
            await storage.remove_worker(self.id)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._given_storage is None:
            await storage.aclose()
        self._storage = None

    def _start_metrics(self, storage: Storage, loop: asyncio.AbstractEventLoop) -> None:
        if self._metrics is None:
            return
        # Read when scraped: nothing to keep up to date on the hot path.
        self._metrics.running.labels(self.id).set_function(lambda: len(self._tasks))
        self._metrics.concurrency.labels(self.id).set(self.concurrency)
        if self.metrics_port is not None:
            self._metrics_server = MetricsServer.start(
                self.metrics_host, self.metrics_port, storage, self.queues, loop
            )
            if self._metrics_server is not None:
                self.metrics_port = self._metrics_server.port

    def _stop_metrics(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.stop()
            self._metrics_server = None
        if self._metrics is not None:
            for gauge in (self._metrics.running, self._metrics.concurrency):
                with contextlib.suppress(KeyError):
                    gauge.remove(self.id)

    # --- one job ----------------------------------------------------------------------

    async def _execute(self, claimed: Claimed, traced: bool) -> None:
        job, lease = claimed.job, claimed.lease
        handler = self._handlers.get(job.type)
        if handler is None:
            error = f"no handler for type {job.type} on {self.id}"
            self._report(self._error(job, lease, error), job)
            return
        message = handler.message_type()
        try:
            message.ParseFromString(job.payload_bytes)
        except DecodeError as exc:
            error = f"payload does not decode as {job.type}: {exc}"
            log.error("job %s failed for good: %s", job.id, error, extra=job_fields(job))
            self._report(Failure(lease, _storable(error)), job)
            return
        assert self._storage is not None
        assert self._job_client is not None
        assert self._running_loop is not None
        ctx = JobContext(
            job=job,
            lease=lease,
            client=self._job_client,
            stage=self._storage.stage,
            stage_batch=self.stage_batch,
            loop=self._running_loop,
            report=self._storage.progress,
        )
        self._flags[job.id] = (ctx.cancelled, handler.is_async)
        started = time.perf_counter()
        try:
            if traced:
                with tracing.processing(job):
                    await self._attempt(job, lease, handler, ctx, message)
            else:
                await self._attempt(job, lease, handler, ctx, message)
        finally:
            if self._metrics is not None:
                elapsed = time.perf_counter() - started
                self._metrics.attempt_took((job.queue, job.type), elapsed)

    async def _attempt(
        self, job: Job, lease: Lease, handler: Handler, ctx: JobContext, message: Message
    ) -> None:
        """Run one attempt and report its outcome (in its span, when tracing)."""
        # No timeout scope for a job without a timeout: entering one per job was a
        # tenth of a busy worker's time in asyncio's own code.
        deadline = asyncio.timeout(job.timeout) if job.timeout is not None else None
        try:
            if deadline is None:
                result, rest = await self._body(job, lease, handler, ctx, message)
            else:
                async with deadline:
                    result, rest = await self._body(job, lease, handler, ctx, message)
        except asyncio.CancelledError:
            if job.id in self._lost:
                self._dropped(job, ctx.cancelled.reason)
            elif self._stop_now:
                self._report(HandBack(lease), job)
            else:
                raise
        except LeaseLost:
            self._dropped(job, LEASE_LOST)
        except Exception as exc:
            if job.id in self._lost:  # a sync handler told to stop raised on its way out
                self._dropped(job, ctx.cancelled.reason, f" (raised {exc!r})")
            else:
                tracing.failed(exc)
                await ctx._last_progress()
                timed_out = deadline is not None and deadline.expired()
                self._report(self._raised(job, lease, exc, timed_out=timed_out), job)
        else:
            if job.id in self._lost:  # a sync handler told to stop returned
                self._dropped(job, ctx.cancelled.reason)
            else:
                self._report(Success(lease, rest, *result), job)
        finally:
            await ctx._close()

    async def _body(
        self, job: Job, lease: Lease, handler: Handler, ctx: JobContext, message: Message
    ) -> tuple[tuple[bytes | None, str | None], list[JobSpec]]:
        """The attempt itself: its plan staged, the handler called, its declarations
        flushed; returns the result to store and the declarations left to send."""
        if job.plan:
            await self._stage_plan(job, lease)
        returned = await self._call(handler, ctx, message)
        result = self._result(job, returned)
        return result, await ctx._finish()

    def _dropped(self, job: Job, reason: str | None, how: str = "") -> None:
        """Storage ended this attempt (cancelled, lease lost): nothing is reported."""
        log.warning("job %s stopped: %s%s", job.id, reason, how, extra=job_fields(job))
        if self._metrics is None:
            return
        if reason == LEASE_LOST:
            self._metrics.lease_losses.labels(job.queue, job.type).inc()
        elif reason == CANCELLED:
            self._metrics.ended((job.queue, job.type), "cancelled")

    async def _stage_plan(self, job: Job, lease: Lease) -> None:
        """Stage the members its producer declared (``enqueue_family``), as its handler
        would; members an earlier call of this attempt staged are skipped (rule 9)."""
        assert self._storage is not None
        assert job.plan is not None
        members = decode_plan(job.plan)
        for start in range(0, len(members), self.stage_batch):
            await self._storage.stage(lease, members[start : start + self.stage_batch])

    def _raised(self, job: Job, lease: Lease, exc: Exception, *, timed_out: bool) -> Outcome:
        """The outcome of a handler that raised ``exc`` (rules 2, 3 and 6)."""
        if isinstance(exc, Fail):
            log.error(
                "job %s (%s) failed for good by its handler: %s",
                job.id,
                job.type,
                exc,
                extra=job_fields(job),
            )
            return Failure(lease, _storable(exc.reason)[-MAX_ERROR_CHARS:])
        if isinstance(exc, RetryIn):
            return HandBack(lease, run_at=time.time() + exc.seconds)
        if isinstance(exc, TimeoutError) and timed_out:
            error = f"timed out after {job.timeout}s"
            log.warning("job %s (%s) %s", job.id, job.type, error, extra=job_fields(job))
            return self._error(job, lease, error)
        return self._failed_with(job, lease, exc)

    async def _call(self, handler: Handler, ctx: JobContext, message: Message) -> object:
        """Run the handler inside the middleware; returns what the handler returned
        (kept aside, so a middleware that drops ``call_next``'s value loses nothing)."""
        if handler.is_async and not self._middleware:
            # The common case, without the closure and the coroutine the chain needs.
            return await handler.func(ctx, message)  # type: ignore[misc]
        returned: list[object] = [None]

        async def innermost() -> None:
            if handler.is_async:
                returned[0] = await handler.func(ctx, message)  # type: ignore[misc]
            else:
                # The handler's thread runs in a copy of this task's context, so context
                # variables (tracing, Sentry, logging context) set around it reach it.
                call = functools.partial(contextvars.copy_context().run, handler.func, ctx, message)
                returned[0] = await asyncio.get_running_loop().run_in_executor(self._executor, call)

        call: CallNext = innermost
        for middleware in reversed(self._middleware):
            call = _wrap(middleware, ctx, message, call)
        await call()
        return returned[0]

    def _result(self, job: Job, returned: object) -> tuple[bytes | None, str | None]:
        """Rule 1: a handler's return value as a stored result, or none.

        Raises:
            PayloadTypeError: it returned something other than a message or ``None``.
            PayloadTooLarge: the message is over ``Config.max_payload_bytes``; like
                any error, the attempt is then retried.
        """
        if returned is None:
            return None, None
        if not isinstance(returned, Message):
            raise PayloadTypeError(
                f"handler for {job.type} returned {type(returned).__name__}; a handler returns "
                "a protobuf message (the job's result) or None"
            )
        type_name, data = encode_payload(returned, limit=self.config.max_payload_bytes)
        return data, type_name

    def _failed_with(self, job: Job, lease: Lease, exc: BaseException) -> Outcome:
        """A retry (logged at WARNING) or, after the last attempt, a failure (at ERROR),
        both with the traceback."""
        text = "".join(traceback.format_exception(exc))[-MAX_ERROR_CHARS:]
        outcome = self._error(job, lease, text, quiet=True)
        final = isinstance(outcome, Failure)
        log.log(
            logging.ERROR if final else logging.WARNING,
            "job %s (%s) attempt %d of %d raised %r%s",
            job.id,
            job.type,
            job.attempt,
            job.max_attempts,
            exc,
            ": failed for good" if final else ": retrying",
            exc_info=exc,
            extra=job_fields(job),
        )
        return outcome

    def _error(self, job: Job, lease: Lease, error: str, *, quiet: bool = False) -> Outcome:
        error = _storable(error)
        if job.attempt >= job.max_attempts:
            if not quiet:
                fields = job_fields(job)
                log.error("job %s (%s) failed for good: %s", job.id, job.type, error, extra=fields)
            return Failure(lease, error)
        delay = self._backoff(job).delay(job.attempt)
        return Retry(lease, error, time.time() + delay)

    def _backoff(self, job: Job) -> Backoff:
        """The job's own back-off, else its handler's, else the configuration's."""
        handler = self._handlers.get(job.type)
        return job.backoff or (handler and handler.backoff) or self.config.backoff

    # --- reporting, heartbeats and maintenance --------------------------------------

    def _report(self, outcome: Outcome, job: Job) -> None:
        if self._metrics is not None:
            self._labels[outcome.lease] = (job.queue, job.type)
        self._unsettled[outcome.lease.job_id] = outcome.lease
        self._outcomes.append(outcome)
        self._outcome_ready.set()

    def _recorded(self, batch: list[Outcome], accepted: Sequence[bool] = ()) -> None:
        """Storage has answered for these outcomes (``accepted``: which it took; none
        when it failed): their leases need no more renewal."""
        for outcome in batch:
            if self._unsettled.get(outcome.lease.job_id) == outcome.lease:
                del self._unsettled[outcome.lease.job_id]
        self._slot_free.set()  # a claim held back by the backlog may go on
        if self._metrics is not None:
            labelled = [(outcome, self._labels.pop(outcome.lease, None)) for outcome in batch]
            for (outcome, labels), ok in zip(labelled, accepted, strict=False):
                if labels is None:
                    continue
                if ok:
                    self._metrics.ended(labels, OUTCOME_NAME[type(outcome)])
                else:  # refused: its lease was gone by the time the outcome came
                    self._metrics.lease_losses.labels(*labels).inc()

    async def _report_outcomes(self, storage: Storage) -> None:
        """Send outcomes in batches: whatever accumulated during the previous round trip."""
        pause = 0.05
        while True:
            await self._outcome_ready.wait()
            self._outcome_ready.clear()
            if not self._outcomes:
                if self._stopping.is_set() and not self._tasks:
                    return
                continue
            batch, self._outcomes = self._outcomes, []
            try:
                accepted = await storage.record(batch)
            except BackendError as exc:
                _cancel_if_cancelling()
                log.warning("reporting %d outcomes failed, retrying: %s", len(batch), exc)
                self._outcomes[:0] = batch
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                self._outcome_ready.set()
                continue
            except Exception:
                # A bug, not an outage: retrying would fail the same way. The jobs'
                # leases expire and they run again, so nothing is lost.
                log.exception("reporting %d outcomes failed; their leases will expire", len(batch))
                self._recorded(batch)
                continue
            self._recorded(batch, accepted)
            pause = 0.05
            for outcome, ok in zip(batch, accepted, strict=True):
                if not ok:
                    log.warning(
                        "outcome for job %s refused: lease no longer held", outcome.lease.job_id
                    )
            if self._stopping.is_set():
                self._outcome_ready.set()

    async def _register(self, storage: Storage) -> None:
        info = WorkerInfo(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=tuple(self.queues),
            concurrency=self.concurrency,
            started_at=time.time(),
            running=len(self._tasks),
            schedules=tuple(s.describe() for s in self._schedules.values()),
        )
        await storage.register_worker(info, ttl=self.lease)

    async def _pause(self, seconds: float) -> bool:
        """Sleep; True when the worker is closing (helpers leave on that, not on cancel)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        return self._closing.is_set()

    async def _heartbeat(self, storage: Storage) -> None:
        # Three beats per lease, counted from the start of each beat: a slow round
        # trip shortens the next pause instead of pushing every later beat back.
        period = self.lease / 3
        started = time.monotonic()
        while not await self._pause(max(0.0, started + period - time.monotonic())):
            started = time.monotonic()
            try:
                held = {job_id: lease for job_id, (_, lease) in self._tasks.items()}
                held.update(self._unsettled)  # finished, outcome on its way: still ours
                leases = list(held.values())
                lost = await storage.renew(leases, self.lease) if leases else []
                await self._register(storage)
            except BackendError as exc:
                _cancel_if_cancelling()
                log.warning("heartbeat failed: %s", exc)
                continue
            for stale in lost:
                if stale.job_id in self._unsettled:
                    continue  # recorded meanwhile, or refused when its outcome lands
                self._interrupt(stale, LEASE_LOST)

    async def _watch_interrupts(self, storage: Storage) -> None:
        """Stop running attempts as soon as storage says they were cancelled."""
        pause = 0.05
        while True:
            try:
                async for lease in storage.interrupts():
                    self._interrupt(lease, CANCELLED)
                    pause = 0.05
            except BackendError as exc:
                _cancel_if_cancelling()
                log.warning("listening for cancellations failed, retrying: %s", exc)
            await asyncio.sleep(pause)  # the stream ended or failed: subscribe again
            pause = min(pause * 2, 5.0)

    def _interrupt(self, lease: Lease, reason: str) -> None:
        """Storage ended this attempt: drop its outcome and tell its handler to stop."""
        entry = self._tasks.get(lease.job_id)
        if entry is None or entry[1] != lease or lease.job_id in self._lost:
            return
        self._lost.add(lease.job_id)
        if self._tell_stop(lease.job_id, reason):
            entry[0].cancel()

    def _tell_stop(self, job_id: str, reason: str) -> bool:
        """Set the job's ``ctx.cancelled``; True when cancelling its task stops it (an
        async handler: a sync one runs on in its thread until it returns)."""
        flag, is_async = self._flags.get(job_id, (None, True))
        if flag is not None:
            flag._set(reason)
        return is_async

    async def _run_schedules(self, storage: Storage) -> None:
        """Enqueue each schedule's ticks as they come (and its backfill at start)."""
        now = datetime.now(UTC)
        due: dict[str, datetime] = {}
        for schedule in self._schedules.values():
            for tick in schedule.missed(now):
                await self._enqueue_tick(storage, schedule, tick)
            due[schedule.name] = schedule.next_tick(now)
        while True:
            name = min(due, key=due.__getitem__)
            if await self._pause(max(0.0, due[name].timestamp() - time.time())):
                return
            schedule = self._schedules[name]
            await self._enqueue_tick(storage, schedule, due[name])
            due[name] = schedule.next_tick(max(due[name], datetime.now(UTC)))

    async def _enqueue_tick(self, storage: Storage, schedule: Schedule, tick: datetime) -> None:
        """Enqueue one tick's job; retried while storage is down, for up to a minute."""
        pause = 0.05
        deadline = time.monotonic() + 60
        while True:
            try:
                await storage.enqueue([schedule.job_at(tick)])
                return
            except BackendError as exc:
                _cancel_if_cancelling()
                if time.monotonic() > deadline or self._closing.is_set():
                    log.error("schedule %r: the tick of %s is lost: %s", schedule.name, tick, exc)
                    return
                log.warning("schedule %r: enqueue failed, retrying: %s", schedule.name, exc)
                await self._pause(pause)
                pause = min(pause * 2, 5.0)

    async def _maintain(self, storage: Storage) -> None:
        while not await self._pause(self.maintenance_interval):
            try:
                report = await storage.maintain()
            except BackendError as exc:
                _cancel_if_cancelling()
                log.warning("maintenance failed: %s", exc)
                continue
            if self._metrics is not None:
                self._metrics.maintained(report)
            if report.recovered or report.lost:
                log.warning(
                    "recovered %d jobs from expired leases; %d failed as worker lost",
                    report.recovered,
                    len(report.lost),
                )
            for job_id in report.repaired:
                log.error(
                    "reconciler repaired job %s: its family's accounting was wrong "
                    "(docs/rules.md rule 7); please report how it happened",
                    job_id,
                )


def gathers(free: int, running: int, concurrency: int) -> bool:
    """Whether a claim for ``free`` slots waits ``GATHER_SLOTS`` for more to free first.

    Jobs claimed together tend to finish together. Claiming for the first slots
    that free would split them from the rest, and the claims would go on
    alternating between a few jobs and many: a family's 2,000 children were
    claimed 5 at a time at concurrency 10, and took 1.35x (Redis) and 1.5x
    (PostgreSQL) as long (bench/README.md). With more than half the slots free, or
    nothing running, the claim goes at once: an idle worker's latency is untouched.
    """
    return running > 0 and 0 < free <= concurrency // 2


def _checked_queues(queues: Sequence[str]) -> list[str]:
    if isinstance(queues, str) or not queues:
        raise ConfigurationError("queues must be a non-empty list of queue names")
    return [validate_queue(q) for q in queues]


def _storable(error: str) -> str:
    """Error text every backend can store: an error may echo payload text, but
    PostgreSQL refuses NUL in text, and a lone surrogate is not UTF-8 at all."""
    return error.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _cancel_if_cancelling() -> None:
    """Re-raise a cancellation that a driver turned into a connection error.

    Drivers may report a command interrupted by cancellation as a lost
    connection; a loop that catches that and goes on would never stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _wrap(middleware: Middleware, ctx: JobContext, message: Message, call: CallNext) -> CallNext:
    async def next_call() -> None:
        await middleware(ctx, message, call)

    return next_call


__all__ = ["Worker"]
