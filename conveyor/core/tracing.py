"""OpenTelemetry tracing of jobs, active once the application has set a tracer provider.

With the ``otel`` extra (``opentelemetry-api``) and an SDK configured by the
application, an enqueue is a PRODUCER span that injects W3C trace context into the
job's ``headers``; each attempt runs in a CONSUMER span whose parent that context
is; declarations carry the running attempt's context, so a whole family is one trace
(an heir is also linked to its predecessor's attempt). Without the API, or with no
provider set, every call here is a no-op that costs one check.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .job import Job

log = logging.getLogger("conveyor.tracing")

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError:  # the otel extra is not installed
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.trace import Span

TRACEPARENT = "traceparent"
SYSTEM = "conveyor"


def active() -> bool:
    """Whether spans are recorded: the API is installed and a real provider is set."""
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _tracer() -> Any:
    from conveyor.__about__ import __version__

    return trace.get_tracer("conveyor", __version__)


@contextlib.contextmanager
def producing(type_name: str, queue: str | None) -> Iterator[dict[str, str]]:
    """A PRODUCER span around an enqueue; yields the headers that carry its context
    (empty when tracing is off)."""
    if not active():
        yield {}
        return
    name = f"send {queue or type_name}"
    with _tracer().start_as_current_span(name, kind=SpanKind.PRODUCER) as span:
        span.set_attribute("messaging.system", SYSTEM)
        span.set_attribute("messaging.operation.type", "send")
        span.set_attribute("messaging.destination.name", queue or type_name)
        span.set_attribute("conveyor.job.type", type_name)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield carrier


def sent(job: Job) -> None:
    """Name the job on the enqueue's span, once storage has answered."""
    if active():
        trace.get_current_span().set_attribute("messaging.message.id", job.id)


def carried() -> dict[str, str]:
    """The current context as headers, for a declaration of the running attempt."""
    if not active():
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def with_headers(options: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
    """Enqueue ``options`` with trace ``headers`` added; a job's own headers win."""
    given = options.get("headers")
    if not headers or (given is not None and not isinstance(given, Mapping)):
        return dict(options)  # a bad ``headers`` is build_spec's to refuse
    return {**options, "headers": {**headers, **(given or {})}}


@contextlib.contextmanager
def processing(job: Job) -> Iterator[None]:
    """A CONSUMER span around one attempt, child of the context in the job's headers."""
    if not active():
        yield
        return
    parent = propagate.extract(dict(job.headers))
    given = job.headers.get(TRACEPARENT)
    remote = trace.get_current_span(parent).get_span_context()
    if given is not None and not remote.is_valid:
        log.warning("job %s: its traceparent header %r is malformed; traced apart", job.id, given)
    links = [Link(remote)] if job.predecessor_id and remote.is_valid else []
    with _tracer().start_as_current_span(
        f"process {job.queue}", context=parent, kind=SpanKind.CONSUMER, links=links
    ) as span:
        for key, value in _attributes(job).items():
            span.set_attribute(key, value)
        yield


def failed(exc: BaseException) -> None:
    """Mark the current attempt's span as failed by ``exc``."""
    if active():
        span: Span = trace.get_current_span()
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))


def _attributes(job: Job) -> dict[str, str | int]:
    found: dict[str, str | int] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.destination.name": job.queue,
        "messaging.message.id": job.id,
        "conveyor.job.type": job.type,
        "conveyor.job.attempt": job.attempt,
        "conveyor.family.root": job.family_root,
    }
    if job.parent_id:
        found["conveyor.job.parent_id"] = job.parent_id
    if job.predecessor_id:
        found["conveyor.job.predecessor_id"] = job.predecessor_id
    return found


__all__ = ["active", "carried", "failed", "processing", "producing", "sent", "with_headers"]
