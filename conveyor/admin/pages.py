"""The HTML pages: server-rendered, with htmx for actions and live refresh."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath
from litestar.response import Redirect, ServerSentEvent, ServerSentEventMessage
from litestar.static_files import create_static_files_router

from conveyor.core.errors import InvalidState

from .actions import Action, BulkResult, apply, apply_each, apply_matching
from .charts import Series, line_chart
from .render import external_path, page
from .state import AdminState
from .views import ORDER, Totals, decode, existing, family, job_filter, queue_rows

PAGE_SIZE = 50
HEARTBEAT = 15.0  # seconds between SSE comments that keep proxies from closing the stream

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # path: (title, filter)
    "scheduled": ("Scheduled", {"state": "scheduled"}),
    "retrying": ("Retrying", {"state": "scheduled", "retrying": True}),
    "failed": ("Failed", {"state": "failed"}),
}


def admin_base(request: Request, prefix: str) -> str:  # type: ignore[type-arg]
    """The URL path the admin is served under, however it was mounted.

    Routing strips a mount's prefix from ``path`` but not from ``raw_path``,
    so the difference between the two is where the host put us; a router's
    own ``prefix`` is still in ``path``.
    """
    path = request.scope["path"].rstrip("/")
    raw = request.scope.get("raw_path")
    outer = raw.decode("latin-1").rstrip("/") if raw else ""
    if raw and outer.endswith(path):
        mount = outer[: len(outer) - len(path)]
    else:
        mount = request.scope.get("root_path", "")
    return (mount + prefix).rstrip("/")


def pages_router(admin: AdminState, prefix: str) -> list[Any]:
    """The page handlers, bound to one admin."""

    def render(request: Request, template: str, **context: Any) -> Response[str]:  # type: ignore[type-arg]
        return page(request, template, base=admin_base(request, prefix), **context)

    @get("/", name="conveyor-dashboard")
    async def dashboard(request: Request) -> Response[str]:  # type: ignore[type-arg]
        storage = await admin.storage()
        stats = await storage.queue_stats()
        minutes = await storage.counters(minutes=60)
        labels = [m.minute for m in minutes]
        jobs_chart = line_chart(
            "Jobs per minute",
            labels,
            [
                Series("succeeded", "succeeded", [m.succeeded for m in minutes]),
                Series("retried", "retried", [m.retried for m in minutes]),
                Series("failed", "failed", [m.failed for m in minutes]),
            ],
        )
        workers_chart = line_chart(
            "Workers", labels, [Series("workers", "workers", [m.workers for m in minutes])]
        )
        return render(
            request,
            "dashboard.html",
            nav="dashboard",
            totals=Totals.of(stats),
            states=ORDER,
            queues=await queue_rows(storage, stats),
            jobs_chart=jobs_chart,
            workers_chart=workers_chart,
            workers=await storage.workers(),
            last=minutes[-2] if len(minutes) > 1 else minutes[-1],
        )

    @get("/queues")
    async def queues(request: Request) -> Response[str]:  # type: ignore[type-arg]
        storage = await admin.storage()
        rows = await queue_rows(storage, await storage.queue_stats())
        return render(request, "queues.html", nav="queues", queues=rows, states=ORDER)

    async def job_list(
        request: Request,  # type: ignore[type-arg]
        title: str,
        nav: str,
        fixed: dict[str, Any],
    ) -> Response[str]:
        q = request.query_params
        chosen: dict[str, Any] = {
            "state": q.get("state") or None,
            "queue": q.get("queue") or None,
            "type": q.get("type") or None,
            "id_prefix": q.get("id") or None,
            "retrying": False,
        } | fixed
        try:
            selection = job_filter(
                chosen["state"],
                chosen["queue"],
                chosen["type"],
                chosen["id_prefix"],
                bool(chosen["retrying"]),
            )
        except ValueError:
            raise ValidationException(f"no state named {chosen['state']!r}") from None
        storage = await admin.storage()
        page_ = await storage.list_jobs(selection, after=q.get("after") or None, limit=PAGE_SIZE)
        here = dict(q)
        without_cursor = {k: v for k, v in here.items() if k != "after"}
        path = external_path(request)
        return render(
            request,
            "jobs.html",
            here=f"{path}?{urlencode(here)}" if here else path,
            first_url=f"{path}?{urlencode(without_cursor)}" if "after" in here else None,
            next_url=(
                f"{path}?{urlencode(without_cursor | {'after': page_.next_cursor})}"
                if page_.next_cursor
                else None
            ),
            nav=nav,
            title=title,
            jobs=page_.jobs,
            chosen=chosen,
            fixed=fixed,
            states=ORDER,
            notice=None,
        )

    @get("/jobs")
    async def jobs(request: Request) -> Response[str]:  # type: ignore[type-arg]
        return await job_list(request, "Jobs", "jobs", {})

    @get("/queues/{queue:str}")
    async def queue_jobs(request: Request, queue: FromPath[str]) -> Response[str]:  # type: ignore[type-arg]
        return await job_list(request, f"Queue {queue}", "queues", {"queue": queue})

    @get(["/scheduled", "/retrying", "/failed"])
    async def preset(request: Request) -> Response[str]:  # type: ignore[type-arg]
        name = request.scope["path"].rstrip("/").rsplit("/", 1)[-1]
        title, fixed = PRESETS[name]
        return await job_list(request, title, name, fixed)

    @get("/jobs/{job_id:str}")
    async def job_page(request: Request, job_id: FromPath[str]) -> Response[str]:  # type: ignore[type-arg]
        storage = await admin.storage()
        job = await existing(storage, job_id)
        payload, payload_error = decode(await admin.registry(), job)
        return render(
            request,
            "job.html",
            nav="jobs",
            job=job,
            payload=payload,
            payload_error=payload_error,
            family=await family(storage, job),
            notice=None,
        )

    @get("/jobs/{job_id:str}/children")
    async def children(request: Request, job_id: FromPath[str]) -> Response[str]:  # type: ignore[type-arg]
        """One more level of a family tree (htmx fragment)."""
        storage = await admin.storage()
        job = await existing(storage, job_id)
        depth = int(request.query_params.get("depth", "1") or 1)
        return render(request, "family_rows.html", family=await family(storage, job), depth=depth)

    @get("/workers")
    async def workers(request: Request) -> Response[str]:  # type: ignore[type-arg]
        found = await (await admin.storage()).workers()
        return render(request, "workers.html", nav="workers", workers=found)

    @get("/search")
    async def search(request: Request) -> Response[Any]:  # type: ignore[type-arg]
        wanted = (request.query_params.get("q") or "").strip()
        base = admin_base(request, prefix)
        if not wanted:
            return Redirect(f"{base}/jobs")
        storage = await admin.storage()
        if await storage.get(wanted) is not None:
            return Redirect(f"{base}/jobs/{wanted}")
        found = await storage.list_jobs(job_filter(id_prefix=wanted), limit=2)
        if len(found.jobs) == 1:
            return Redirect(f"{base}/jobs/{found.jobs[0].id}")
        return Redirect(f"{base}/jobs?id={wanted}")

    @post("/jobs/{job_id:str}/{action:str}", status_code=200)
    async def act(
        request: Request,  # type: ignore[type-arg]
        job_id: FromPath[str],
        action: FromPath[str],
    ) -> Response[Any]:
        try:
            chosen = Action(action)
        except ValueError:
            raise NotFoundException(f"no action {action!r}") from None
        storage = await admin.storage()
        base = admin_base(request, prefix)
        htmx = request.headers.get("hx-request") == "true"
        try:
            job = await apply(storage, chosen, job_id)
        except InvalidState as exc:
            current = await storage.get(job_id)
            if not htmx or current is None:
                raise
            return render(
                request,
                "job_summary.html",
                job=current,
                notice=("error", str(exc)),
                status_code=409,
            )
        if chosen is Action.DISCARD:
            # The job is gone: back to the list it came from (``job`` is as it was).
            state = job.state.value
            listing = f"{base}/failed" if state == "failed" else f"{base}/jobs?state={state}"
            if htmx:
                return Response("", headers={"HX-Redirect": listing}, media_type="text/html")
            return Redirect(listing, status_code=303)
        if not htmx:
            return Redirect(f"{base}/jobs/{job_id}", status_code=303)
        done = {
            "cancel": "Cancelled, with its open family below it",
            "retry": "Queued again with fresh attempts",
        }[chosen.value]
        notice = ("ok", f"{done}; it is now {job.state.value}.")
        return render(request, "job_summary.html", job=job, notice=notice)

    @post("/bulk", status_code=200)
    async def bulk(request: Request) -> Response[str]:  # type: ignore[type-arg]
        form = await request.form()
        try:
            chosen = Action(str(form.get("action", "")))
        except ValueError:
            raise ValidationException("choose cancel, retry or discard") from None
        storage = await admin.storage()
        result: BulkResult
        if form.get("scope") == "matching":
            if form.get("confirm") != "yes":
                raise ValidationException("acting on every matching job needs confirmation")
            try:
                selection = job_filter(
                    state=str(form.get("state") or "") or None,
                    queue=str(form.get("queue") or "") or None,
                    type=str(form.get("type") or "") or None,
                    id_prefix=str(form.get("id") or "") or None,
                    retrying=form.get("retrying") == "true",
                )
            except ValueError:
                raise ValidationException("no such state") from None
            result = await apply_matching(storage, chosen, selection)
        else:
            ids = [str(v) for v in form.getall("ids", [])]
            if not ids:
                raise ValidationException("select at least one job")
            result = await apply_each(storage, chosen, ids)
        return render(request, "bulk_result.html", action=chosen, result=result)

    @get("/events")
    async def events(request: Request) -> ServerSentEvent:  # type: ignore[type-arg]
        """A ``tick`` whenever jobs changed (at most one a second), with their ids."""

        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            ticks = admin.hub.subscribe()
            next_tick = asyncio.ensure_future(anext(ticks))
            try:
                while True:
                    done, _ = await asyncio.wait({next_tick}, timeout=HEARTBEAT)
                    if not done:
                        yield ServerSentEventMessage(comment="keep-alive")
                        continue
                    tick = next_tick.result()
                    yield ServerSentEventMessage(data=json.dumps(tick.to_dict()), event="tick")
                    next_tick = asyncio.ensure_future(anext(ticks))
            finally:
                next_tick.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await next_tick  # the generator must be idle before it can close
                await ticks.aclose()

        return ServerSentEvent(stream())

    static = create_static_files_router(
        "/static",
        directories=[_static_dir()],
        cache_control=None,
        include_in_schema=False,
        name="conveyor-static",
    )
    return [
        dashboard,
        queues,
        jobs,
        queue_jobs,
        preset,
        job_page,
        children,
        workers,
        search,
        act,
        bulk,
        events,
        static,
    ]


def _static_dir() -> str:
    from importlib import resources

    return str(resources.files("conveyor.admin").joinpath("static"))
