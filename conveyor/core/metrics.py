"""Prometheus metrics: what workers do, counted where it happens, and what storage
holds, read when scraped.

Two sources, so nothing is counted twice:

- **A worker's events** (``WorkerMetrics``): attempts by outcome, queue and type;
  attempt durations; lease losses; jobs running now; what its maintenance passes
  repaired. Counted in the process (prometheus_client's registry), served by
  ``Worker(metrics_port=...)`` / ``conveyor worker --metrics-port``. Summed over
  workers, they are the namespace's totals.
- **Storage's state** (``read_namespace``): jobs per queue and state, the age of
  each queue's oldest queued job, paused queues, and (at the admin) what each live
  worker last reported. The admin's ``/metrics`` serves it for the whole namespace;
  a worker serving metrics adds the gauges of its own queues, the same values from
  every worker of those queues (``max by (queue)`` in queries).

Needs ``prometheus-client`` (the ``metrics`` or ``admin`` extra).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .queues import QueueControls
from .storage import MaintenanceReport, QueueStats, Storage, WorkerInfo

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric


log = logging.getLogger("conveyor.metrics")

#: Attempt durations: from a cache hit to a long report.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
#: A scrape waits this long for storage before reporting it down.
READ_TIMEOUT = 5.0

Labels = tuple[str, str]  # queue, type


def require() -> None:
    """Raises ConfigurationError when prometheus-client is not installed.

    prometheus-client itself is imported only where metrics are used: a worker
    without them does not pay for it at start-up (about 80 ms and a few MiB).
    """
    if importlib.util.find_spec("prometheus_client") is None:
        raise ConfigurationError(
            "metrics need prometheus-client: pip install 'conveyor-jobs[metrics]'"
        )


class WorkerMetrics:
    """The event metrics of every worker of one process, in one registry."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.jobs = Counter(
            "conveyor_jobs",
            "Attempts whose outcome storage recorded (succeeded, retried, failed, "
            "handed_back), or that a cancel stopped (cancelled).",
            ["queue", "type", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "conveyor_attempt_duration_seconds",
            "How long attempts ran, from claim to outcome, whatever the outcome.",
            ["queue", "type"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.lease_losses = Counter(
            "conveyor_lease_losses",
            "Attempts whose lease this worker lost (heartbeat too late, outcome refused): "
            "storage hands the job to another attempt.",
            ["queue", "type"],
            registry=registry,
        )
        self.running = Gauge(
            "conveyor_worker_running_jobs", "Handlers running now.", ["worker"], registry=registry
        )
        self.concurrency = Gauge(
            "conveyor_worker_concurrency",
            "Jobs the worker runs at once at most.",
            ["worker"],
            registry=registry,
        )
        self.repairs = Counter(
            "conveyor_reconciler_repairs",
            "Accounting mismatches this process's maintenance found and repaired (rule 7).",
            registry=registry,
        )
        self.expired = Counter(
            "conveyor_expired_leases",
            "Running jobs whose worker stopped renewing their lease, found by this "
            "process's maintenance: requeued, or failed past the lost-lease limit.",
            ["result"],
            registry=registry,
        )

        # Children by label values: prometheus_client's labels() takes a lock and
        # builds a key on every call; a job's hot path looks them up here instead.
        self._timers: dict[Labels, Any] = {}
        self._counts: dict[tuple[str, str, str], Any] = {}

    def attempt_took(self, labels: Labels, seconds: float) -> None:
        timer = self._timers.get(labels)
        if timer is None:
            timer = self._timers[labels] = self.duration.labels(*labels)
        timer.observe(seconds)

    def ended(self, labels: Labels, outcome: str) -> None:
        key = (*labels, outcome)
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = self.jobs.labels(*key)
        count.inc()

    def maintained(self, report: MaintenanceReport) -> None:
        if report.repaired:
            self.repairs.inc(len(report.repaired))
        if report.recovered:
            self.expired.labels("requeued").inc(report.recovered)
        if report.lost:
            self.expired.labels("failed").inc(len(report.lost))


_registered: dict[int, WorkerMetrics] = {}


def worker_metrics(registry: Any = None) -> WorkerMetrics:
    """The one ``WorkerMetrics`` of ``registry`` (default: prometheus_client's own),
    created on first use: a metric name registers once per registry.

    Raises:
        ConfigurationError: prometheus-client is not installed.
    """
    require()
    import prometheus_client

    registry = registry if registry is not None else prometheus_client.REGISTRY
    found = _registered.get(id(registry))
    if found is None:
        found = _registered[id(registry)] = WorkerMetrics(registry)
    return found


# --- storage's state -----------------------------------------------------------------


@dataclass(frozen=True)
class NamespaceState:
    """What one scrape read from storage; ``error`` when it could not."""

    at: float
    queues: list[QueueStats] = field(default_factory=list)
    oldest: dict[str, float] = field(default_factory=dict)
    controls: list[QueueControls] = field(default_factory=list)
    workers: list[WorkerInfo] | None = None
    error: str | None = None


async def read_namespace(
    storage: Storage, queues: Sequence[str] | None = None, *, workers: bool = True
) -> NamespaceState:
    """Storage's state for a scrape: every queue's, or only ``queues``'; with the live
    workers unless ``workers=False``. Storage errors are returned, not raised: a
    scrape reports storage down and the process goes on."""
    try:
        stats = await storage.queue_stats()
        oldest = await storage.oldest_queued()
        controls = await storage.queue_controls()
        live = await storage.workers() if workers else None
    except Exception as exc:  # any failure to read is "storage down" to a scrape
        log.warning("metrics: reading storage failed: %s", exc)
        return NamespaceState(time.time(), error=str(exc) or type(exc).__name__)
    if queues is not None:
        wanted = set(queues)
        stats = [s for s in stats if s.queue in wanted]
        oldest = {q: at for q, at in oldest.items() if q in wanted}
        controls = [c for c in controls if c.queue in wanted]
    return NamespaceState(time.time(), stats, oldest, controls, live)


def namespace_metrics(state: NamespaceState) -> Iterator[Metric]:
    """Prometheus families for what ``read_namespace`` read."""
    from prometheus_client.core import GaugeMetricFamily

    up = GaugeMetricFamily("conveyor_storage_up", "1 when the scrape could read storage.")
    up.add_metric([], 0 if state.error else 1)
    yield up
    if state.error:
        return
    jobs = GaugeMetricFamily(
        "conveyor_queue_jobs",
        "Jobs per queue and state (settled ones while retained).",
        labels=["queue", "state"],
    )
    age = GaugeMetricFamily(
        "conveyor_queue_oldest_queued_age_seconds",
        "How long the queue's longest-waiting queued job has waited since it became "
        "queued (0 when none waits).",
        labels=["queue"],
    )
    for stats in state.queues:
        for job_state, number in sorted(stats.counts.items(), key=lambda kv: kv[0].value):
            jobs.add_metric([stats.queue, job_state.value], number)
    known = sorted({s.queue for s in state.queues} | set(state.oldest))
    for queue in known:
        ready = state.oldest.get(queue)
        age.add_metric([queue], max(0.0, state.at - ready) if ready is not None else 0.0)
    paused = GaugeMetricFamily(
        "conveyor_queue_paused", "1 while the queue is paused.", labels=["queue"]
    )
    for control in state.controls:
        paused.add_metric([control.queue], 1 if control.paused else 0)
    yield from (jobs, age, paused)
    if state.workers is not None:
        yield from _worker_families(state.workers, state.at)


def _worker_families(workers: Iterable[WorkerInfo], now: float) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    labels = ["worker", "host"]
    running = GaugeMetricFamily(
        "conveyor_heartbeat_running_jobs",
        "Jobs each live worker ran at its last heartbeat.",
        labels=labels,
    )
    concurrency = GaugeMetricFamily(
        "conveyor_heartbeat_concurrency", "Each live worker's concurrency.", labels=labels
    )
    age = GaugeMetricFamily(
        "conveyor_heartbeat_age_seconds",
        "Time since each live worker's last heartbeat.",
        labels=labels,
    )
    for info in workers:
        running.add_metric([info.id, info.host], info.running)
        concurrency.add_metric([info.id, info.host], info.concurrency)
        age.add_metric([info.id, info.host], max(0.0, now - info.last_seen))
    yield from (running, concurrency, age)


class Fixed:
    """A collector of families read beforehand (the admin reads storage in its handler)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def exposition(*collectors: Any) -> tuple[bytes, str]:
    """The text exposition of ``collectors`` and its content type."""
    require()
    import prometheus_client

    body = b"".join(prometheus_client.generate_latest(c) for c in collectors)
    return body, prometheus_client.CONTENT_TYPE_LATEST


# --- a worker's own endpoint ----------------------------------------------------------


class _QueueGauges:
    """A worker's queues' gauges, read from storage on its event loop when scraped
    (the scrape runs in the HTTP server's thread)."""

    def __init__(
        self, storage: Storage, queues: Sequence[str], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._storage, self._queues, self._loop = storage, list(queues), loop

    def collect(self) -> Iterable[Metric]:
        read = read_namespace(self._storage, self._queues, workers=False)
        try:
            future = asyncio.run_coroutine_threadsafe(read, self._loop)
        except RuntimeError as exc:  # its loop has closed: the worker has stopped
            read.close()
            return list(namespace_metrics(NamespaceState(time.time(), error=str(exc))))
        try:
            state = future.result(READ_TIMEOUT)
        except Exception as exc:  # storage slower than a scrape waits
            future.cancel()
            state = NamespaceState(time.time(), error=str(exc) or type(exc).__name__)
        return list(namespace_metrics(state))


class _Both:
    def __init__(self, *collectors: Any) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


@dataclass
class MetricsServer:
    """A worker's ``/metrics`` HTTP endpoint (prometheus_client's server thread)."""

    server: WSGIServer
    port: int

    @classmethod
    def start(
        cls,
        host: str,
        port: int,
        storage: Storage,
        queues: Sequence[str],
        loop: asyncio.AbstractEventLoop,
    ) -> MetricsServer | None:
        """Serve the process's metrics and the queues' gauges; ``None``, with a
        warning, when the port cannot be had (jobs run on without the endpoint)."""
        require()
        import prometheus_client

        collector = _Both(prometheus_client.REGISTRY, _QueueGauges(storage, queues, loop))
        try:
            server, _ = prometheus_client.start_http_server(port, host, registry=collector)
        except OSError as exc:
            log.warning("metrics: cannot listen on %s:%d (%s); running without", host, port, exc)
            return None
        bound = server.server_address[1]
        log.info("metrics: serving on http://%s:%d/metrics", host, bound)
        return cls(server, int(bound))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
