"""One job's page: its fields, its decoded payload and result, why it is where it is,
its family tree, and its whole family at a glance (summary and timeline)."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from conveyor.core.explain import explain
from conveyor.core.family import summarize

from .pages_context import PageContext
from .views import decode, decode_result, existing, family
from .waterfall import ROWS, waterfall

LIVE_IDS = 200  # open members whose changes refresh the overview


def job_pages(ctx: PageContext) -> list[HTTPRouteHandler]:
    """The job page and its family-tree fragment, bound to one admin.

    Args:
        ctx: The admin whose jobs the pages show.

    Returns:
        The route handlers, for the pages' router.
    """
    admin = ctx.admin

    @get("/jobs/{job_id:str}")
    async def job_page(request: Request, job_id: FromPath[str]) -> Response[str]:  # type: ignore[type-arg]
        storage = await admin.storage()
        job = await existing(storage, job_id)
        registry = await admin.registry()
        payload, payload_error = decode(registry, job)
        result, result_error = decode_result(registry, job)
        return ctx.render(
            request,
            "job.html",
            nav="jobs",
            job=job,
            payload=payload,
            payload_error=payload_error,
            result=result,
            result_error=result_error,
            explanation=None if job.state.settled else await explain(storage, job.id),
            family=await family(storage, job),
            notice=None,
        )

    @get("/jobs/{job_id:str}/children")
    async def children(request: Request, job_id: FromPath[str]) -> Response[str]:  # type: ignore[type-arg]
        """One more level of a family tree (htmx fragment)."""
        storage = await admin.storage()
        job = await existing(storage, job_id)
        depth = int(request.query_params.get("depth", "1") or 1)
        return ctx.render(
            request, "family_rows.html", family=await family(storage, job), depth=depth
        )

    @get("/jobs/{job_id:str}/overview")
    async def overview(request: Request, job_id: FromPath[str]) -> Response[str]:  # type: ignore[type-arg]
        """The job's whole family: summary and timeline (htmx fragment, loaded lazily)."""
        storage = await admin.storage()
        await existing(storage, job_id)
        summary = await summarize(storage, job_id)
        live = [m.job.id for m in summary.members if not m.job.state.settled][:LIVE_IDS]
        return ctx.render(
            request,
            "family_overview.html",
            summary=summary,
            timeline=waterfall(summary, ctx.base(request)) if summary.size > 1 else None,
            live_ids=" ".join([job_id, *live]),
            grouped=summary.size > ROWS,
        )

    return [job_page, children, overview]
