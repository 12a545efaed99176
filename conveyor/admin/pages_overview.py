"""The overview pages: the dashboard, the queues (pausing and resuming them), the
live workers and the schedules they run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.response import Redirect
from markupsafe import Markup

from conveyor.core.storage import MinuteCount, set_paused

from .charts import Series, line_chart
from .pages_context import PageContext
from .views import ORDER, Totals, queue_rows, schedule_rows


def overview_pages(ctx: PageContext) -> list[HTTPRouteHandler]:
    """The dashboard, queues and workers pages, bound to one admin.

    Args:
        ctx: The admin the pages show.

    Returns:
        The route handlers, for the pages' router.
    """
    admin = ctx.admin

    @get("/", name="conveyor-dashboard")
    async def dashboard(request: Request) -> Response[str]:  # type: ignore[type-arg]
        storage = await admin.storage()
        stats = await storage.queue_stats()
        minutes = await storage.counters(minutes=60)
        jobs_chart, workers_chart = _charts(minutes)
        return ctx.render(
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
            repaired=sum(m.repaired for m in minutes),
        )

    @get("/queues")
    async def queues(request: Request) -> Response[str]:  # type: ignore[type-arg]
        storage = await admin.storage()
        rows = await queue_rows(storage, await storage.queue_stats())
        return ctx.render(request, "queues.html", nav="queues", queues=rows, states=ORDER)

    @get("/workers")
    async def workers(request: Request) -> Response[str]:  # type: ignore[type-arg]
        found = await (await admin.storage()).workers()
        return ctx.render(request, "workers.html", nav="workers", workers=found)

    @get("/schedules")
    async def schedules(request: Request) -> Response[str]:  # type: ignore[type-arg]
        rows = schedule_rows(await (await admin.storage()).workers())
        return ctx.render(request, "schedules.html", nav="schedules", schedules=rows)

    @post("/queues/{queue:str}/{verb:str}", status_code=200)
    async def pause_or_resume(
        request: Request,  # type: ignore[type-arg]
        queue: FromPath[str],
        verb: FromPath[str],
    ) -> Response[Any]:
        if verb not in ("pause", "resume"):
            raise NotFoundException(f"no queue action {verb!r}")
        storage = await ctx.admin.storage()
        await set_paused(storage, queue, verb == "pause")
        if request.headers.get("hx-request") != "true":
            return Redirect(f"{ctx.base(request)}/queues")
        rows = await queue_rows(storage, await storage.queue_stats())
        return ctx.render(request, "queues.html", nav="queues", queues=rows, states=ORDER)

    return [dashboard, queues, workers, schedules, pause_or_resume]


def _charts(minutes: Sequence[MinuteCount]) -> tuple[Markup, Markup]:
    """The dashboard's two SVG charts: jobs settled per minute, and live workers."""
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
    return jobs_chart, workers_chart
