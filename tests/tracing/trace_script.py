"""Runs a traced family on a real backend in a process of its own (a tracer provider is
set once per process), and prints the spans and jobs as JSON for test_tracing.py.

    python tests/tracing/trace_script.py URL NAMESPACE
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor._proto.examples.shop_pb2 import Step

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
warnings: list[str] = []


class Keep(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        warnings.append(record.getMessage())


async def main(url: str, namespace: str) -> None:
    config = conveyor.Config(url=url, namespace=namespace)
    worker = conveyor.Worker(config, claim_wait=0.2)

    @worker.handler
    async def parent(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        if msg.name == "root":
            ctx.enqueue_child(Step(name="sync-child"))
            ctx.enqueue_child(BasicJob(name="child"))
            ctx.enqueue_heir(BasicJob(name="heir"))
        elif msg.name == "broken":
            raise conveyor.Fail("broken on purpose")

    @worker.handler
    def sync_child(ctx: conveyor.JobContext, msg: Step) -> None:  # in the thread pool
        ctx.enqueue_child(BasicJob(name="grandchild"))

    def from_sync_code() -> str:
        """A web request's handler enqueueing with the sync client, inside its own span."""
        with (
            trace.get_tracer("app").start_as_current_span("request"),
            conveyor.Client(config) as sync_client,
        ):
            return sync_client.enqueue(BasicJob(name="from-sync")).id

    logging.getLogger("conveyor.tracing").addHandler(Keep())
    async with conveyor.AsyncClient(config) as client:
        root = await client.enqueue(BasicJob(name="root"))
        odd = await client.enqueue(BasicJob(name="odd"), headers={"traceparent": "not-a-trace"})
        broken = await client.enqueue(BasicJob(name="broken"))
        from_sync = await asyncio.to_thread(from_sync_code)
        await worker.run_until_idle(timeout=60)
        storage = await client.storage()
        jobs = [await storage.get(j) for j in (odd.id, broken.id, from_sync)]
        tree = await storage.family_tree(root.id)
    spans = [
        {
            "name": s.name,
            "kind": s.kind.name,
            "trace": format(s.context.trace_id, "032x"),
            "span": format(s.context.span_id, "016x"),
            "parent": format(s.parent.span_id, "016x") if s.parent else None,
            "links": [format(link.context.span_id, "016x") for link in s.links],
            "status": s.status.status_code.name,
            "attributes": dict(s.attributes or {}),
        }
        for s in exporter.get_finished_spans()
    ]
    members = [
        {"id": j.id, "name": j.payload().name, "headers": dict(j.headers), "state": j.state.value}  # type: ignore[attr-defined]
        for j in [*tree, *[j for j in jobs if j is not None]]
    ]
    print(json.dumps({"spans": spans, "jobs": members, "warnings": warnings}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
