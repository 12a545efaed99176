"""The JSON API under ``/api``: read jobs, families, queues, workers and stats;
cancel, retry, discard; enqueue any published type from JSON."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Annotated, Any

from google.protobuf.message import DecodeError
from litestar import Router, get, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from conveyor.core.errors import PayloadDecodeError
from conveyor.core.explain import explain
from conveyor.core.family import summarize
from conveyor.core.queues import QueueControls, QueueLimits, Rate
from conveyor.core.specs import build_spec, validate_queue
from conveyor.core.states import JobState
from conveyor.core.storage import set_paused
from conveyor.core.type_registry import TypeRegistry

from .actions import Action, ActionResult, apply, apply_each, apply_matching
from .state import AdminState
from .views import (
    ExplanationOut,
    FamilyOut,
    FamilySummaryOut,
    JobOut,
    MinuteOut,
    QueueRow,
    ScheduleRow,
    Totals,
    WorkerOut,
    existing,
    family,
    job_filter,
    queue_rows,
    schedule_rows,
)

API = {"conveyor_api": True}  # marks a handler for the CSRF guard's JSON rule


@dataclass(slots=True)
class JobList:
    jobs: list[JobOut]
    next_cursor: str | None


@dataclass(slots=True)
class QueueOut:
    name: str
    counts: dict[str, int]
    last_minute: int
    paused: bool = False
    limits: str = ""
    oldest_queued_at: float | None = None
    """When its longest-waiting queued job became queued (epoch seconds); none waits: null."""

    @classmethod
    def of(cls, row: QueueRow) -> QueueOut:
        return cls(
            row.name, row.counts, row.last_minute, row.paused, row.limits, row.oldest_queued_at
        )


@dataclass(slots=True)
class LimitsIn:
    """Rule 14's limits for one queue; a missing one is no limit."""

    max_running: int | None = None
    rate: int | None = None
    per_seconds: float = 1.0


@dataclass(slots=True)
class ControlsOut:
    queue: str
    paused: bool
    max_running: int | None
    rate: int | None
    per_seconds: float | None

    @classmethod
    def of(cls, controls: QueueControls) -> ControlsOut:
        rate = controls.limits.rate
        return cls(
            controls.queue,
            controls.paused,
            controls.limits.max_running,
            rate.limit if rate else None,
            rate.per if rate else None,
        )


@dataclass(slots=True)
class StatsOut:
    totals: dict[str, int]
    queues: list[QueueOut]
    minutes: list[MinuteOut]
    workers: int


@dataclass(slots=True)
class CancelIn:
    reason: str = "cancelled from the admin API"


@dataclass(slots=True)
class Empty:
    """No fields: POST ``{}`` (as ``application/json``)."""


@dataclass(slots=True)
class FilterIn:
    state: JobState | None = None
    queue: str | None = None
    type: str | None = None
    id_prefix: str | None = None
    retrying: bool = False


@dataclass(slots=True)
class BulkIn:
    """Give ``ids``, or a ``filter`` to act on every job it matches (up to 10,000)."""

    action: Action
    ids: list[str] | None = None
    filter: FilterIn | None = None


@dataclass(slots=True)
class BulkOut:
    done: int
    results: list[ActionResult]
    more: bool


@dataclass(slots=True)
class EnqueueIn:
    """A job of any published type: ``payload`` is the message as protobuf JSON, or
    ``payload_base64`` its binary encoding (what storage keeps), base64-encoded."""

    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    payload_base64: str | None = None
    queue: str | None = None
    delay_seconds: float | None = None
    max_attempts: int | None = None
    priority: int = 0
    timeout_seconds: float | None = None


def _payload_bytes(registry: TypeRegistry, data: EnqueueIn) -> bytes:
    """The payload's binary encoding, from its JSON form or its base64 one.

    Raises:
        PayloadDecodeError: both forms given, bad base64, or bytes that are not the type.
    """
    if data.payload_base64 is None:
        return registry.from_json(data.type, data.payload)
    if data.payload:
        raise PayloadDecodeError("give payload (JSON) or payload_base64, not both")
    try:
        raw = base64.b64decode(data.payload_base64, validate=True)
        registry.message_class(data.type)().ParseFromString(raw)  # refuse what does not parse
    except (ValueError, DecodeError) as exc:  # binascii.Error, and non-ASCII text
        raise PayloadDecodeError(f"payload_base64 is not a {data.type} in base64: {exc}") from None
    return raw


def api_router(admin: AdminState) -> Router:
    """The API's handlers, bound to one admin's state (so two admins never share one).

    Args:
        admin: The admin's state, which every handler reads (and acts) through.

    Returns:
        A router for ``/api``, its handlers tagged ``conveyor`` in the OpenAPI schema.
    """
    return Router(
        "/api",
        route_handlers=[
            *_overview_handlers(admin),
            *_job_handlers(admin),
            *_action_handlers(admin),
            _enqueue_handler(admin),
        ],
        tags=["conveyor"],
    )


def _overview_handlers(admin: AdminState) -> list[HTTPRouteHandler]:
    """Stats, queues, workers and the published types."""

    @get("/stats", opt=API)
    async def stats(minutes: Annotated[int, QueryParameter(ge=1, le=1440)] = 60) -> StatsOut:
        """Totals by state, per-queue counts and per-minute rates."""
        storage = await admin.storage()
        queue_stats = await storage.queue_stats()
        rows = await queue_rows(storage, queue_stats)
        return StatsOut(
            totals=Totals.of(queue_stats).by_state,
            queues=[QueueOut.of(r) for r in rows],
            minutes=[MinuteOut.of(m) for m in await storage.counters(minutes=minutes)],
            workers=len(await storage.workers()),
        )

    @get("/queues", opt=API)
    async def queues() -> list[QueueOut]:
        """Every queue with its jobs by state and its throughput in the last minute."""
        storage = await admin.storage()
        rows = await queue_rows(storage, await storage.queue_stats())
        return [QueueOut.of(r) for r in rows]

    @get("/workers", opt=API)
    async def workers() -> list[WorkerOut]:
        """Live workers."""
        return [WorkerOut.of(w) for w in await (await admin.storage()).workers()]

    @get("/types", opt=API)
    async def types() -> list[str]:
        """Message types that can be decoded and enqueued by name."""
        return (await admin.registry(fresh=True)).names()

    @get("/schedules", opt=API)
    async def schedules() -> list[ScheduleRow]:
        """The periodic jobs the live workers enqueue, soonest first."""
        return schedule_rows(await (await admin.storage()).workers())

    @post("/queues/{queue:str}/pause", opt=API, status_code=200)
    async def pause(queue: FromPath[str], data: JSONBody[Empty]) -> list[ControlsOut]:
        """Stop every worker claiming from the queue (404 for a queue nothing names);
        returns every queue's controls."""
        storage = await admin.storage()
        await set_paused(storage, queue, True)
        return [ControlsOut.of(c) for c in await storage.queue_controls()]

    @post("/queues/{queue:str}/resume", opt=API, status_code=200)
    async def resume(queue: FromPath[str], data: JSONBody[Empty]) -> list[ControlsOut]:
        """Let workers claim from the queue again; returns every queue's controls."""
        storage = await admin.storage()
        await set_paused(storage, queue, False)
        return [ControlsOut.of(c) for c in await storage.queue_controls()]

    @put("/queues/{queue:str}/limits", opt=API, status_code=200)
    async def limits(queue: FromPath[str], data: JSONBody[LimitsIn]) -> list[ControlsOut]:
        """Replace the queue's limits (422 when out of range); returns every queue's
        controls."""
        rate = Rate(data.rate, data.per_seconds) if data.rate is not None else None
        wanted = QueueLimits(max_running=data.max_running, rate=rate)
        storage = await admin.storage()
        await storage.limit_queue(validate_queue(queue), wanted)
        return [ControlsOut.of(c) for c in await storage.queue_controls()]

    return [stats, queues, workers, types, schedules, pause, resume, limits]


def _job_handlers(admin: AdminState) -> list[HTTPRouteHandler]:
    """Reading jobs: a filtered page of them, one job, one job's family."""

    @get("/jobs", opt=API)
    async def list_jobs(
        job_state: Annotated[JobState | None, QueryParameter(name="state")] = None,
        queue: FromQuery[str | None] = None,
        type: FromQuery[str | None] = None,
        id_prefix: FromQuery[str | None] = None,
        retrying: FromQuery[bool] = False,
        after: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> JobList:
        """Jobs newest first; pass ``next_cursor`` as ``after`` for the next page."""
        chosen = job_state.value if job_state else None
        selection = job_filter(chosen, queue, type, id_prefix, retrying)
        page = await (await admin.storage()).list_jobs(selection, after=after, limit=limit)
        return JobList([JobOut.of(j) for j in page.jobs], page.next_cursor)

    @get("/jobs/{job_id:str}", opt=API)
    async def get_job(job_id: FromPath[str]) -> JobOut:
        """One job with its payload decoded from the published descriptors."""
        job = await existing(await admin.storage(), job_id)
        return JobOut.of(job, await admin.registry())

    @get("/jobs/{job_id:str}/family", opt=API)
    async def get_family(job_id: FromPath[str]) -> FamilyOut:
        """The job's parent, predecessor, children (first 200) and heirs."""
        storage = await admin.storage()
        job = await existing(storage, job_id)
        return FamilyOut.of(await family(storage, job))

    @get("/jobs/{job_id:str}/family/summary", opt=API)
    async def get_family_summary(job_id: FromPath[str]) -> FamilySummaryOut:
        """The job's whole workflow at a glance: members by state and type, depth,
        open members and held heirs (the first 10,000 members)."""
        storage = await admin.storage()
        await existing(storage, job_id)
        return FamilySummaryOut.of(await summarize(storage, job_id))

    @get("/jobs/{job_id:str}/explain", opt=API)
    async def get_explanation(job_id: FromPath[str]) -> ExplanationOut:
        """Why the job is in its state, and the ids it waits for (at most 1,000)."""
        storage = await admin.storage()
        await existing(storage, job_id)
        return ExplanationOut.of(await explain(storage, job_id))

    return [list_jobs, get_job, get_family, get_family_summary, get_explanation]


def _action_handlers(admin: AdminState) -> list[HTTPRouteHandler]:
    """Cancel, retry or discard one job, or many at once."""

    @post("/jobs/{job_id:str}/cancel", opt=API, status_code=200)
    async def cancel(job_id: FromPath[str], data: JSONBody[CancelIn]) -> JobOut:
        """Cancel the job and its unsettled family below it (409 once settled)."""
        job = await (await admin.storage()).cancel(job_id, data.reason)
        return JobOut.of(job)

    @post("/jobs/{job_id:str}/retry", opt=API, status_code=200)
    async def retry(job_id: FromPath[str], data: JSONBody[Empty]) -> JobOut:
        """Queue a failed or cancelled job again with fresh attempts, re-opening its
        family (409, with the reason, when rule 8 refuses)."""
        return JobOut.of(await apply(await admin.storage(), Action.RETRY, job_id))

    @post("/jobs/{job_id:str}/retry-failed", opt=API, status_code=200)
    async def retry_failed(job_id: FromPath[str], data: JSONBody[Empty]) -> list[JobOut]:
        """Queue again every member of the job's workflow whose own handler failed,
        re-opening the family (404 for an unknown job); returns them."""
        return [JobOut.of(j) for j in await (await admin.storage()).retry_failed(job_id)]

    @post("/jobs/{job_id:str}/discard", opt=API, status_code=200)
    async def discard(job_id: FromPath[str], data: JSONBody[Empty]) -> JobOut:
        """Delete a settled job and its family below it; returns it as it was."""
        return JobOut.of(await apply(await admin.storage(), Action.DISCARD, job_id))

    @post("/jobs/bulk", opt=API, status_code=200)
    async def bulk(data: JSONBody[BulkIn]) -> BulkOut:
        """Cancel, retry or discard many jobs; each refusal is reported, none stops the rest."""
        storage = await admin.storage()
        if data.ids is not None:
            result = await apply_each(storage, data.action, data.ids)
        else:
            f = data.filter or FilterIn()
            selection = job_filter(
                f.state.value if f.state else None, f.queue, f.type, f.id_prefix, f.retrying
            )
            result = await apply_matching(storage, data.action, selection)
        return BulkOut(result.done, result.results, result.more)

    return [cancel, retry, retry_failed, discard, bulk]


def _enqueue_handler(admin: AdminState) -> HTTPRouteHandler:
    """Enqueueing a job of any published type from JSON."""

    @post("/jobs", opt=API, status_code=201)
    async def enqueue(data: JSONBody[EnqueueIn]) -> JobOut:
        """Enqueue a job of a published type from its JSON form."""
        storage = await admin.storage()
        registry = await admin.registry()
        if data.type not in registry.names():
            registry = await admin.registry(fresh=True)
        message = registry.message_class(data.type)()
        message.ParseFromString(_payload_bytes(registry, data))
        spec = build_spec(
            admin.config,
            message,
            queue=data.queue,
            delay=data.delay_seconds or None,
            max_attempts=data.max_attempts,
            priority=data.priority,
            timeout=data.timeout_seconds,
        )
        await storage.enqueue([spec])
        job = await storage.get(spec.id)
        assert job is not None
        return JobOut.of(job, registry)

    return enqueue
