"""The tutorial's worker with OpenTelemetry tracing (docs/tutorial.md, step 6).

Spans go to the console here; in production, add the OTLP exporter
(``opentelemetry-exporter-otlp``) and point it at your collector instead.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
trace.set_tracer_provider(provider)  # before any job runs

from worker import worker  # noqa: E402  the same handlers, now traced

__all__ = ["worker"]
